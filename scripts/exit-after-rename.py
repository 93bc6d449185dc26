#!/usr/bin/env python3
# Where a waiting restore_command's milliseconds go after its segment lands,
# without PostgreSQL: each program waits for SEGMENT in its own archive, the
# segment is copied in place with cp (as an archiver does), and an inotify
# watch on pg_wal times the delivery (rename, or cp's close for the poller);
# the exit is timed by wait(). Programs alternate round by round.
#
#   scripts/exit-after-rename.py ROUNDS SEGMENT label="BINARY ARGS" ... [poller=poller]
#
# SEGMENT: a real 16 MiB segment named 000000010000000000000001 (initdb's
# first one). A label ending in "r" passes %r (two older segments are there
# to remove). The figures in BENCHMARKS.md name the command that made them.
import os, sys, time, subprocess, shutil, statistics, threading, ctypes, struct
libc = ctypes.CDLL('libc.so.6', use_errno=True)
import tempfile
base = tempfile.mkdtemp(prefix='exit-after-rename-')
SEG = os.path.abspath(sys.argv[2])
SZ = os.path.getsize(SEG)
rounds = int(sys.argv[1])
progs = [(a.split('=',1)[0], a.split('=',1)[1]) for a in sys.argv[3:]]
name = '000000010000000000000001'
IN_CLOSE_WRITE=0x8; IN_MOVED_TO=0x80
def run(label, spec):
    d = f'{base}/w_{label}'
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d+'/arch'); os.makedirs(d+'/dd/pg_wal')
    for old in ['000000010000000000000000','0000000100000000000000FF']:
        shutil.copy(SEG, f'{d}/arch/{old}')
    fd = libc.inotify_init()
    libc.inotify_add_watch(fd, (d+'/dd/pg_wal').encode(), IN_CLOSE_WRITE|IN_MOVED_TO)
    got = {}
    def reader():
        while True:
            import select
            r, _, _ = select.select([fd], [], [], 3)
            if not r: return
            buf = os.read(fd, 4096)
            t = time.monotonic()
            i = 0
            while i < len(buf):
                wd, mask, cookie, ln = struct.unpack_from('iIII', buf, i)
                nm = buf[i+16:i+16+ln].rstrip(b'\0').decode()
                i += 16+ln
                if nm == 'RECOVERYXLOG' and 'del' not in got:
                    got['del'] = t
                    return
    th = threading.Thread(target=reader, daemon=True); th.start()
    if spec == 'poller':
        cmd = ['sh','-c', f'while [ "$(stat -c %s {d}/arch/{name} 2>/dev/null)" != {SZ} ]; do sleep 0.005; done; exec cp {d}/arch/{name} pg_wal/RECOVERYXLOG']
    else:
        cmd = spec.split() + [d+'/arch', name, 'pg_wal/RECOVERYXLOG'] + (['000000010000000000000001'] if label.endswith('r') else [])
    p = subprocess.Popen(cmd, cwd=d+'/dd', stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    subprocess.run(['cp', SEG, f'{d}/arch/{name}'])
    t1 = time.monotonic()
    p.wait()
    t2 = time.monotonic()
    th.join(5)
    os.close(fd)
    return ((got.get('del', t2)-t1)*1e3, (t2-got.get('del',t2))*1e3, (t2-t1)*1e3)
res = {l: [] for l, _ in progs}
for r in range(rounds):
    for l, s in (progs if r % 2 == 0 else progs[::-1]):
        res[l].append(run(l, s))
for l, v in res.items():
    cols = list(zip(*v))
    f = lambda c: f'p50 {statistics.median(c):6.2f} p90 {sorted(c)[int(len(c)*0.9)]:6.2f}'
    print(f'{l:10s} complete->delivered {f(cols[0])} | delivered->exit {f(cols[1])} | total {f(cols[2])}')
shutil.rmtree(base, ignore_errors=True)
