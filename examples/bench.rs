//! Benchmarks against what users would run instead.
//!
//! `cargo build --release && cargo run --release --example bench -- <scenario>`
//! with scenario one of: latency, failover, catchup, percall, idle, busy,
//! cleanup, bigseg, compressed, s3, s3call, s3gz, pgbrs3, poller, all.
//!
//! * The binary under test: `$PG_STANDBY_BIN`, else `target/release/pg_standby`.
//! * The original pg_standby 13 is compared when `$PG_STANDBY_13` names its
//!   binary (`scripts/fetch-pg-standby-13` fetches it); `percall` and
//!   `bigseg` also run an earlier build of ours named by `$PG_STANDBY_BASE`.
//! * Servers: the real-server harness of the integration suite
//!   (tests/support/pg.rs; `$PG_BINDIR` picks the PostgreSQL build).
//! * Programs that are compared run alternately (or side by side) in one run,
//!   because this machine is shared and noisy: read the ratios.
//! * Sample counts: `LATENCY_SAMPLES` (50), `FAILOVER_ROUNDS` (3),
//!   `CATCHUP_ROUNDS` (3), `CATCHUP_SEGMENTS` (200), `PERCALL_RUNS` (30),
//!   `IDLE_SECS` (60), `BUSY_FILES` (10000), `CLEANUP_ROUNDS` (3),
//!   `BIGSEG_RUNS` (5), `S3_SAMPLES` (20), `S3_IDLE_SECS` (60),
//!   `PGBRS3_SEGMENTS` (100).
//! * `pgbrs3` needs pgBackRest and stunnel (`apt-get install pgbackrest
//!   stunnel4`) and the three emulators; `PGBRS3_STORES` (`s3,gcs,azure`)
//!   picks the stores.
//!
//! Results are printed as Markdown and appended to `target/bench/results.md`;
//! `latency` and `catchup` also draw their results as SVG plots,
//! `target/bench/latency.svg` and `target/bench/catchup.svg` (BENCHMARKS.md
//! shows copies of them from docs/bench/).

#[path = "bench/archivesize.rs"]
mod archivesize;
#[path = "../tests/support/azure_server.rs"]
mod azure_server;
#[path = "../tests/support/fault_proxy.rs"]
mod fault_proxy;
#[path = "../tests/support/gcs_server.rs"]
mod gcs_server;
#[path = "../tests/support/pg.rs"]
mod pg;
#[path = "bench/pgbackrest.rs"]
mod pgbackrest;
#[path = "bench/pgbrs3.rs"]
mod pgbrs3;
#[path = "bench/poller.rs"]
mod poller;
#[path = "bench/registry.rs"]
mod registry;
#[path = "../tests/support/s3_server.rs"]
mod s3_server;
#[path = "bench/s3gz.rs"]
mod s3gz;
#[path = "bench/slowdown.rs"]
mod slowdown;

use anyhow::{Context, Result, bail, ensure};
use pg::{BaseBackup, PgInstall, PrimaryOptions, Sandbox, Server, StandbyOptions, wait_until};
use pg_standby::header::LongPageHeader;
use pg_standby::wal::SegmentName;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const SYSID: u64 = 7_300_000_000_000_000_001;

fn main() -> Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let progs = Progs::find()?;
    header(&progs, &scenario)?;
    let run = |name: &str| -> Result<()> {
        let started = Instant::now();
        let r = match name {
            "latency" => latency(&progs),
            "failover" => failover(&progs),
            "catchup" => catchup(&progs),
            "percall" => percall(&progs),
            "idle" => idle(&progs),
            "busy" => busy(&progs),
            "cleanup" => cleanup(&progs),
            "bigseg" => bigseg(&progs),
            "compressed" => compressed(&progs),
            "s3" => object_storage(&progs),
            "s3call" => s3_call(&progs),
            "s3gz" => s3gz::s3_gzip_catch_up(&progs),
            "pgbrs3" => pgbrs3::pgbackrest_s3(&progs),
            "slowdown" => slowdown::slowdown(&progs),
            "registry" => registry::registry(&progs),
            "poller" => poller::poller(&progs),
            "archivesize" => archivesize::archive_size(&progs),
            other => bail!(
                "unknown scenario {other:?}: latency, failover, catchup, percall, idle, busy, cleanup, bigseg, compressed, s3, s3gz, slowdown, registry, poller, archivesize, all"
            ),
        };
        say(&format!(
            "\n_{name}: {:.0} s, load average after: {}_\n",
            started.elapsed().as_secs_f64(),
            loadavg()
        ));
        r
    };
    if scenario == "all" {
        let mut failed = Vec::new();
        for s in [
            "percall",
            "cleanup",
            "idle",
            "busy",
            "latency",
            "failover",
            "catchup",
            "bigseg",
            "compressed",
            "s3",
            "s3call",
            "s3gz",
            "pgbrs3",
            "slowdown",
            "registry",
            "poller",
            "archivesize",
        ] {
            if let Err(e) = run(s) {
                say(&format!("\n**{s} failed:** {e:#}\n"));
                failed.push(s);
            }
        }
        ensure!(failed.is_empty(), "failed scenarios: {failed:?}");
        Ok(())
    } else {
        run(&scenario)
    }
}

// ---------------------------------------------------------------- helpers

struct Progs {
    ours: PathBuf,
    orig: Option<PathBuf>,
}

impl Progs {
    fn find() -> Result<Progs> {
        let ours = std::env::var_os("PG_STANDBY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pg_standby")
            });
        ensure!(
            ours.is_file(),
            "{} is missing: run `cargo build --release` first (or set PG_STANDBY_BIN)",
            ours.display()
        );
        let orig = match std::env::var_os("PG_STANDBY_13") {
            Some(p) if !p.is_empty() => {
                let p = PathBuf::from(p);
                ensure!(p.is_file(), "PG_STANDBY_13={} is not a file", p.display());
                Some(p)
            }
            _ => None,
        };
        Ok(Progs { ours, orig })
    }
}

/// `nseg` segments of rows of random text (WAL that compresses as real WAL
/// does, not the zeros of a switched-out segment), each switched out and
/// archived within `archived_within`: the LSN a standby must replay to.
fn write_compressible_segments(
    primary: &Server,
    nseg: u64,
    archived_within: Duration,
) -> Result<String> {
    primary.psql(&format!(
        "DO $$BEGIN FOR i IN 1..{nseg} LOOP \
           INSERT INTO t SELECT i * 100000 + g, md5(random()::text) || md5(g::text) \
             FROM generate_series(1, 60000) g; \
           PERFORM pg_switch_wal(); END LOOP; END$$"
    ))?;
    let target = primary.psql("SELECT pg_current_wal_insert_lsn()")?;
    let last = primary.switch_wal()?;
    primary.wait_archived(&last, archived_within)?;
    Ok(target)
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn results_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/results.md")
}

/// Print and append to target/bench/results.md.
fn say(s: &str) {
    println!("{s}");
    let p = results_file();
    let _ = fs::create_dir_all(p.parent().unwrap());
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(p) {
        let _ = writeln!(f, "{s}");
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn header(p: &Progs, scenario: &str) -> Result<()> {
    let pg = PgInstall::detect()?;
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let ours_id = format!(
        "{} ({}, sha256 {})",
        sh(&format!("{} --version", p.ours.display())),
        p.ours.display(),
        sh(&format!("sha256sum {} | cut -c1-16", p.ours.display()))
    );
    say(&format!(
        "\n## bench {scenario} — {}\n\n- machine: {} cores, {cpu}, kernel {}, {} \n- PostgreSQL: {} ({})\n- ours: {}\n- original: {}\n- load average at start: {}\n",
        sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        sh("nproc"),
        sh("uname -r"),
        sh("free -g | awk '/Mem:/ {print $2 \" GiB RAM\"}'"),
        pg.version,
        pg.bindir.display(),
        ours_id,
        match &p.orig {
            Some(o) => sh(&format!("{} --version", o.display())),
            None => "not given (PG_STANDBY_13 unset)".into(),
        },
        loadavg(),
    ));
    Ok(())
}

/// Copy `src` into the sandbox's bin/ as `name`, runnable by the server user.
fn install_as(sb: &Sandbox, src: &Path, name: &str) -> Result<PathBuf> {
    let dst = sb.path().join("bin").join(name);
    sb.write_file(
        &dst,
        &fs::read(src).with_context(|| format!("read {}", src.display()))?,
    )?;
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
    Ok(dst)
}

/// Turn a (not yet started) archive-recovery standby into a standby-mode one.
fn to_standby_mode(sb: &Sandbox, srv: &Server) -> Result<()> {
    if srv.major() >= 12 {
        fs::remove_file(srv.data.join("recovery.signal"))?;
        sb.write_file(&srv.data.join("standby.signal"), b"")?;
    } else {
        sb.append_file(&srv.data.join("recovery.conf"), "standby_mode = on\n")?;
    }
    Ok(())
}

fn cp_command(sb: &Sandbox) -> String {
    format!("cp {}/%f %p", sb.archive().display())
}

fn psql_cmd(srv: &Server, sqls: &[&str]) -> Command {
    let mut c = srv.psql_command(sqls);
    c.env("PGOPTIONS", "-c statement_timeout=180000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A child whose exit time is recorded: (exit instant, success, stderr).
type Waiter = JoinHandle<(Instant, bool, String)>;

fn spawn_waiter(mut cmd: Command) -> Result<Waiter> {
    let child = cmd.spawn().context("spawn psql")?;
    Ok(thread::spawn(move || match child.wait_with_output() {
        Ok(o) => (
            Instant::now(),
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (Instant::now(), false, e.to_string()),
    }))
}

/// When each file that is new in `archive` reached `size` bytes (directory
/// polled every 0.5 ms until `stop` is set).
fn watch_archive(
    archive: PathBuf,
    size: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> JoinHandle<std::collections::HashMap<String, Instant>> {
    use std::sync::atomic::Ordering;
    let complete = move |archive: &Path| -> Vec<String> {
        fs::read_dir(archive)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.metadata().map(|m| m.len() == size).unwrap_or(false))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let before: std::collections::HashSet<String> = complete(&archive).into_iter().collect();
    thread::spawn(move || {
        let mut seen = std::collections::HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            for n in complete(&archive) {
                if !before.contains(&n) {
                    seen.entry(n).or_insert_with(Instant::now);
                }
            }
            thread::sleep(Duration::from_micros(500));
        }
        seen
    })
}

/// Signed milliseconds from `from` to `to`.
fn ms(to: Instant, from: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[idx]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn median(v: &[f64]) -> f64 {
    pct(v, 50.0)
}

/// A segment as a PostgreSQL 15 server writes it: the long page header of
/// `name`, padded to `len` bytes.
fn segment_bytes(name: &str, seg_size: u64, sysid: u64, len: u64) -> Vec<u8> {
    let parsed = SegmentName::parse(name).expect("a segment name");
    let header = LongPageHeader::for_segment(&parsed, seg_size as u32, sysid).expect("fits");
    let mut bytes = header.to_bytes().to_vec();
    bytes.resize(len as usize, 0);
    bytes
}

/// Segment `n` (counted from 0) of timeline 1 for 16 MiB segments.
fn seg_name(n: u64) -> String {
    format!("{:08X}{:08X}{:08X}", 1, n / 256, n % 256)
}

/// A throw-away archive + data directory (pg_control, recovery.signal,
/// pg_wal/) for calling the programs by hand, as the server would.
struct Scratch {
    root: tempfile::TempDir,
    archive: PathBuf,
    data: PathBuf,
}

impl Scratch {
    fn new(label: &str, sysid: u64) -> Result<Scratch> {
        let root = tempfile::Builder::new()
            .prefix(&format!("pgsb-bench-{label}-"))
            .tempdir_in("/tmp")?;
        let archive = root.path().join("archive");
        let data = root.path().join("data");
        fs::create_dir_all(&archive)?;
        fs::create_dir_all(data.join("pg_wal"))?;
        fs::create_dir_all(data.join("global"))?;
        let mut control = sysid.to_ne_bytes().to_vec();
        control.resize(8192, 0);
        fs::write(data.join("global/pg_control"), control)?;
        fs::write(data.join("recovery.signal"), "")?;
        Ok(Scratch {
            root,
            archive,
            data,
        })
    }

    fn data_for(&self, name: &str) -> Result<PathBuf> {
        let d = self.root.path().join(name);
        fs::create_dir_all(d.join("pg_wal"))?;
        fs::create_dir_all(d.join("global"))?;
        fs::copy(
            self.data.join("global/pg_control"),
            d.join("global/pg_control"),
        )?;
        fs::write(d.join("recovery.signal"), "")?;
        Ok(d)
    }
}

struct Usage {
    wall_ms: f64,
    cpu_ms: f64,
    maxrss_kib: i64,
    status: i32,
}

/// Run to completion and collect wall time, CPU and peak RSS. Peak RSS and
/// CPU come from `/usr/bin/time -f "%M %U %S"` when it is installed (a forked
/// child's ru_maxrss starts from its parent's peak, so wait4() here would
/// report this benchmark's own size); they cover the program and the children
/// it waited for.
fn run_usage(cmd: &mut Command) -> Result<Usage> {
    let time = Path::new("/usr/bin/time");
    let out = std::env::temp_dir().join(format!("pgsb-bench-time-{}", std::process::id()));
    let mut wrapped;
    let cmd = if time.is_file() {
        wrapped = Command::new(time);
        wrapped
            .args(["-f", "%M %U %S", "-o"])
            .arg(&out)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(d) = cmd.get_current_dir() {
            wrapped.current_dir(d);
        }
        &mut wrapped
    } else {
        cmd
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let (status, ru) = wait_rusage(child)?;
    let wall_ms = t.elapsed().as_secs_f64() * 1e3;
    let (mut cpu, mut rss) = (cpu_ms(&ru), ru.ru_maxrss);
    if time.is_file() {
        let s = fs::read_to_string(&out).unwrap_or_default();
        // with a non-zero exit, /usr/bin/time writes "Command exited..." first
        if let Some(l) = s.lines().last() {
            let f: Vec<f64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() == 3 {
                rss = f[0] as i64;
                cpu = (f[1] + f[2]) * 1e3;
            }
        }
        let _ = fs::remove_file(&out);
    }
    Ok(Usage {
        wall_ms,
        cpu_ms: cpu,
        maxrss_kib: rss,
        status,
    })
}

fn wait_rusage(child: Child) -> Result<(i32, libc::rusage)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 on our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    ensure!(
        r == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, ru))
}

fn cpu_ms(ru: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// utime + stime of a running process (all threads), in ms.
fn proc_cpu_ms(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').context("bad stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks * 1e3 / hz)
}

/// Peak resident set size of a running process (VmHWM), in KiB.
fn vm_hwm_kib(pid: u32) -> i64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

// ---------------------------------------------------------------- latency

fn wait_row_sql(id: i64) -> String {
    format!(
        "DO $$BEGIN WHILE NOT EXISTS (SELECT 1 FROM t WHERE id = {id}) LOOP PERFORM pg_sleep(0.002); END LOOP; END$$"
    )
}

fn latency(p: &Progs) -> Result<()> {
    let n = env_num("LATENCY_SAMPLES", 50) as i64;
    let sb = Sandbox::new("lat")?;
    let primary = sb.primary("primary", &PrimaryOptions::default())?;
    let backup = primary.cold_backup("base")?;
    let segsize = primary.wal_segment_size()?;
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    let mut standbys: Vec<(String, Server)> = Vec::new();
    let rc = sb.restore_command(&ours, "", false);
    standbys.push(("ours".into(), standby(&sb, &backup, "ours", &rc, None)?));
    if let Some(o) = &p.orig {
        let orig = install_as(&sb, o, "pg_standby13")?;
        let rc = sb.restore_command(&orig, "-s 1", false);
        standbys.push((
            "original 13 -s 1".into(),
            standby(&sb, &backup, "orig", &rc, None)?,
        ));
    }
    let cps = standby(&sb, &backup, "cpstandby", &cp_command(&sb), None)?;
    to_standby_mode(&sb, &cps)?;
    standbys.push(("standby mode + cp".into(), cps));
    for (_, s) in &standbys {
        s.start()?;
    }
    primary.insert_and_switch(1)?;
    for (_, s) in &standbys {
        s.wait_row(1, Duration::from_secs(60))?;
    }
    say(&format!(
        "### Arrival latency ({n} samples, all standbys side by side, one primary)\n\n\
         Hot standbys from one cold backup: ours `{}`; original `-s 1`; standby.signal + `cp`. \
         recovery_prefetch = off on the standbys (PG 15+). Per sample: a DO loop polling every 2 ms on each \
         standby is connected, then `INSERT` + `pg_switch_wal()` on the primary; \
         *end-to-end* = switch returned → row visible; *restore side* = segment complete in the archive → row visible; \
         *archiver* = switch returned → segment complete in the archive (polled every 0.5 ms).\n",
        sb.restore_command(Path::new("pg_standby"), "", false)
    ));
    let mut e2e: Vec<Vec<f64>> = vec![Vec::new(); standbys.len()];
    let mut rest: Vec<Vec<f64>> = vec![Vec::new(); standbys.len()];
    let mut arch = Vec::new();
    let mut failures = 0;
    for i in 0..n {
        let id = 1000 + i;
        let waiters = standbys
            .iter()
            .map(|(_, s)| spawn_waiter(psql_cmd(s, &[&wait_row_sql(id)])))
            .collect::<Result<Vec<_>>>()?;
        thread::sleep(Duration::from_millis(300));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let aw = watch_archive(sb.archive(), segsize, stop.clone());
        let switched = primary.insert_and_switch(id)?;
        let t0 = Instant::now();
        let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let ta = aw.join().unwrap().get(&switched).copied();
        if ta.is_none() {
            eprintln!("sample {i}: {switched} not seen arriving in the archive");
        }
        if let Some(ta) = ta {
            arch.push(ms(ta, t0));
        }
        for (k, (t, ok, err)) in results.into_iter().enumerate() {
            if !ok {
                failures += 1;
                eprintln!("sample {i} {}: {}", standbys[k].0, err.trim());
                continue;
            }
            e2e[k].push(ms(t, t0));
            if let Some(ta) = ta {
                rest[k].push(ms(t, ta));
            }
        }
        eprint!(".");
    }
    eprintln!();
    say("| program | end-to-end p50 | p90 | max | restore side p50 | p90 | max | samples |");
    say("|---|---|---|---|---|---|---|---|");
    for (k, (name, _)) in standbys.iter().enumerate() {
        say(&format!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} |",
            median(&e2e[k]),
            pct(&e2e[k], 90.0),
            max(&e2e[k]),
            median(&rest[k]),
            pct(&rest[k], 90.0),
            max(&rest[k]),
            e2e[k].len()
        ));
    }
    say(&format!(
        "\narchiver (switch returned → segment complete in the archive): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms; failed samples: {failures}",
        median(&arch),
        pct(&arch, 90.0),
        max(&arch)
    ));
    // ours logs "restored X after waiting W s (16 MiB copied in C s)"
    let copies: Vec<f64> = standbys[0]
        .1
        .log()
        .lines()
        .filter_map(|l| l.split("copied in ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<f64>().ok())
        .map(|s| s * 1e3)
        .collect();
    say(&format!(
        "ours' own log, copy + rename per segment ({} restores): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        copies.len(),
        median(&copies),
        pct(&copies, 90.0),
        max(&copies)
    ));
    let k = 0;
    let mut sorted = e2e[k].clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    say(&format!(
        "ours, end-to-end, all samples (ms, sorted): {:?}",
        sorted.iter().map(|x| x.round() as i64).collect::<Vec<_>>()
    ));
    let series: Vec<(String, Vec<f64>)> = standbys
        .iter()
        .map(|(name, _)| name.clone())
        .zip(e2e)
        .collect();
    write_plot(
        "latency",
        &latency_plot(
            &format!(
                "Arrival latency, PostgreSQL {}: share of samples within a time",
                sb.major()
            ),
            &series,
        ),
    );
    Ok(())
}

fn standby(
    sb: &Sandbox,
    backup: &BaseBackup,
    name: &str,
    restore_command: &str,
    trigger: Option<PathBuf>,
) -> Result<Server> {
    sb.standby(
        name,
        backup,
        &StandbyOptions {
            restore_command: restore_command.to_string(),
            trigger,
            ..Default::default()
        },
    )
}

// ---------------------------------------------------------------- failover

/// (label, program and options (None: `cp`), how the failover is asked for)
type Variant<'a> = (String, Option<(PathBuf, &'a str)>, How);

#[derive(Clone, Copy, PartialEq)]
enum How {
    Trigger(&'static str),
    Promote,
}

fn pg_ctl_promote(srv: &Server) -> Command {
    let mut c = srv.pg_ctl();
    c.args(["-W", "promote"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn failover(p: &Progs) -> Result<()> {
    let rounds = env_num("FAILOVER_ROUNDS", 3);
    let sb = Sandbox::new("fo")?;
    let primary = sb.primary("primary", &PrimaryOptions::default())?;
    let backup = primary.cold_backup("base")?;
    primary.insert_and_switch(1)?;
    let last = primary.insert_and_switch(2)?;
    primary.wait_archived(&last, Duration::from_secs(30))?;
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    let orig = match &p.orig {
        Some(o) => Some(install_as(&sb, o, "pg_standby13")?),
        None => None,
    };
    // (label, binary + options or None for cp, how)
    let mut variants: Vec<Variant> = vec![
        (
            "ours, smart (empty trigger)".into(),
            Some((ours.clone(), "")),
            How::Trigger(""),
        ),
        (
            "ours, fast (\"fast\")".into(),
            Some((ours.clone(), "")),
            How::Trigger("fast"),
        ),
    ];
    if let Some(o) = &orig {
        variants.push((
            "original 13 -s 1, smart".into(),
            Some((o.clone(), "-s 1")),
            How::Trigger(""),
        ));
        variants.push((
            "original 13 -s 1, fast".into(),
            Some((o.clone(), "-s 1")),
            How::Trigger("fast"),
        ));
    }
    variants.push((
        "standby.signal + cp, `pg_ctl promote`".into(),
        None,
        How::Promote,
    ));
    say(&format!(
        "### Failover ({rounds} rounds, variants alternated)\n\n\
         Each sample: a fresh hot standby from one cold backup, started and idle (waiting for the next segment) for 1.5 s; \
         a psql on it polls `pg_is_in_recovery()` every 5 ms; then the trigger file is written (or `pg_ctl promote -W` runs); \
         time until an `INSERT` on the standby has committed. Restore command `<program> [-s 1] -t TRIGGER ARCHIVE %f %p`.\n"
    ));
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        for (k, (label, prog, how)) in variants.iter().enumerate() {
            let name = format!("fo{r}v{k}");
            let trig = sb.trigger_path(&name);
            let (rc, trigger) = match prog {
                Some((bin, opts)) => (
                    sb.restore_command(bin, &format!("{opts} -t {}", trig.display()), false),
                    Some(trig.clone()),
                ),
                None => (cp_command(&sb), None),
            };
            let s = standby(&sb, &backup, &name, &rc, trigger)?;
            if *how == How::Promote {
                to_standby_mode(&sb, &s)?;
            }
            s.start()?;
            s.wait_row(2, Duration::from_secs(60))?;
            thread::sleep(Duration::from_millis(1500));
            let w = spawn_waiter(psql_cmd(
                &s,
                &[
                    "DO $$BEGIN WHILE pg_is_in_recovery() LOOP PERFORM pg_sleep(0.005); END LOOP; END$$",
                    &format!("INSERT INTO t VALUES ({}, 'after failover')", 100 + k),
                ],
            ))?;
            thread::sleep(Duration::from_millis(300));
            let t0 = Instant::now();
            match how {
                How::Trigger(content) => sb.write_file(&trig, content.as_bytes())?,
                How::Promote => {
                    pg_ctl_promote(&s).status()?;
                }
            }
            let (mut t, ok, err) = w.join().unwrap();
            if !ok {
                // the connection did not survive: retry the write until it works
                eprintln!("{label}: {}", err.trim());
                wait_until(Duration::from_secs(300), "a write after failover", || {
                    Ok(s.psql(&format!(
                        "INSERT INTO t VALUES ({}, 'after failover')",
                        100 + k
                    ))
                    .is_ok())
                })?;
                t = Instant::now();
            }
            let dt = ms(t, t0);
            eprintln!("{label}: {dt:.0} ms");
            times[k].push(dt);
            let dir = s.dir.clone();
            drop(s);
            let _ = fs::remove_dir_all(dir);
        }
    }
    say("| variant | median | min | max | samples (ms) |");
    say("|---|---|---|---|---|");
    for (k, (label, _, _)) in variants.iter().enumerate() {
        let v = &times[k];
        say(&format!(
            "| {label} | {:.0} ms | {:.0} ms | {:.0} ms | {:?} |",
            median(v),
            v.iter().copied().fold(f64::NAN, f64::min),
            max(v),
            v.iter().map(|x| x.round() as i64).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- catch-up

fn catchup(p: &Progs) -> Result<()> {
    let rounds = env_num("CATCHUP_ROUNDS", 3);
    let nseg = env_num("CATCHUP_SEGMENTS", 200);
    let sb = Sandbox::new("cu")?;
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            extra_conf: "max_wal_size = 8GB\ncheckpoint_timeout = 1h\n".into(),
            ..Default::default()
        },
    )?;
    let backup = primary.cold_backup("base")?;
    let before = sb.archived_segments().len();
    let t = Instant::now();
    primary.psql(&format!(
        "DO $$BEGIN FOR i IN 1..{nseg} LOOP \
           INSERT INTO t SELECT i * 1000 + g, repeat('x', 200) FROM generate_series(1, 500) g; \
           PERFORM pg_switch_wal(); END LOOP; END$$"
    ))?;
    let target = primary.psql("SELECT pg_current_wal_insert_lsn()")?;
    let last = primary.switch_wal()?;
    primary.wait_archived(&last, Duration::from_secs(900))?;
    let segs = sb.archived_segments().len() - before;
    eprintln!(
        "archived {segs} segments in {:.1} s; target LSN {target}",
        t.elapsed().as_secs_f64()
    );
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    let mut progs: Vec<(String, String, bool)> = vec![
        ("ours".into(), sb.restore_command(&ours, "", false), false),
        ("cp (standby.signal)".into(), cp_command(&sb), true),
        (
            "cp && sync %p (standby.signal; cp + fsync)".into(),
            format!("{} && sync %p", cp_command(&sb)),
            true,
        ),
    ];
    if let Some(o) = &p.orig {
        let orig = install_as(&sb, o, "pg_standby13")?;
        progs.push((
            "original 13 -s 1".into(),
            sb.restore_command(&orig, "-s 1", false),
            false,
        ));
    }
    say(&format!(
        "### Catch-up ({segs} segments of {} MiB, {rounds} rounds, programs alternated)\n\n\
         The primary wrote {nseg} × (500 rows + `pg_switch_wal()`) after the cold backup, while no standby ran; \
         each sample: a fresh hot standby from that backup, `pg_ctl start` → `pg_last_wal_replay_lsn()` ≥ the primary's \
         last insert LSN (polled every 50 ms; server start-up included). Restore commands: ours `pg_standby ARCHIVE %f %p`, \
         `cp ARCHIVE/%f %p` (and `cp ARCHIVE/%f %p && sync %p`) with standby.signal, original `pg_standby -s 1 ARCHIVE %f %p`. No %r (the archive is shared by all samples).\n",
        primary.wal_segment_size()? / MIB
    ));
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    let mut copy_totals: Vec<f64> = Vec::new();
    for r in 0..rounds {
        let n = progs.len();
        for j in 0..n {
            // rotate the order every round
            let k = (j + r as usize) % n;
            let (label, rc, standby_mode) = &progs[k];
            let (dt, log) = time_catch_up(
                &sb,
                &backup,
                &format!("cu{r}p{k}"),
                rc,
                *standby_mode,
                &target,
            )?;
            // ours logs "(16 MiB copied in C s)": copy + fdatasync + rename
            let copy_ms: f64 = log
                .lines()
                .filter_map(|l| l.split("copied in ").nth(1))
                .filter_map(|r| r.split(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
                * 1e3;
            if copy_ms > 0.0 {
                copy_totals.push(copy_ms);
            }
            eprintln!("{label}: {dt:.0} ms");
            totals[k].push(dt);
        }
    }
    catch_up_table(&progs, &totals, 1, segs);
    say(&format!(
        "\nours' own log: copy + rename summed over all restores of one run: median {:.0} ms ({:.1} ms per segment)",
        median(&copy_totals),
        median(&copy_totals) / segs as f64
    ));
    let bars: Vec<(String, Vec<f64>)> = progs
        .iter()
        .zip(&totals)
        .map(|((label, _, _), t)| (label.clone(), t.iter().map(|x| x / segs as f64).collect()))
        .collect();
    write_plot(
        "catchup",
        &catchup_plot(
            &format!(
                "Catch-up: {segs} archived segments replayed by a fresh standby, PostgreSQL {}",
                sb.major()
            ),
            &bars,
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------- per call

/// Alternate `cmds` for `runs` rounds; print wall/CPU/peak RSS per program.
fn alternate(cwd: &Path, cmds: &[(String, Vec<String>)], runs: u64) -> Result<Vec<Vec<Usage>>> {
    let mut res: Vec<Vec<Usage>> = (0..cmds.len()).map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (k, (label, argv)) in cmds.iter().enumerate() {
            // the server unlinks %p before it runs restore_command
            let _ = fs::remove_file(cwd.join("pg_wal/RECOVERYXLOG"));
            let u = run_usage(Command::new(&argv[0]).args(&argv[1..]).current_dir(cwd))?;
            ensure!(u.status == 0, "{label} exited with {}", u.status);
            res[k].push(u);
        }
    }
    say("| program | wall p50 | wall p90 | × cp (p50) | CPU p50 | peak RSS max |");
    say("|---|---|---|---|---|---|");
    let cp50 = median(&res[0].iter().map(|u| u.wall_ms).collect::<Vec<_>>());
    for (k, (label, _)) in cmds.iter().enumerate() {
        let wall: Vec<f64> = res[k].iter().map(|u| u.wall_ms).collect();
        let cpu: Vec<f64> = res[k].iter().map(|u| u.cpu_ms).collect();
        let rss = res[k].iter().map(|u| u.maxrss_kib).max().unwrap_or(0);
        say(&format!(
            "| {label} | {:.1} ms | {:.1} ms | {:.2} | {:.1} ms | {:.1} MiB |",
            median(&wall),
            pct(&wall, 90.0),
            median(&wall) / cp50,
            median(&cpu),
            rss as f64 / 1024.0
        ));
    }
    Ok(res)
}

fn copy_cmds(p: &Progs, archive: &Path, seg: &str) -> Vec<(String, Vec<String>)> {
    let a = archive.display().to_string();
    let src = archive.join(seg).display().to_string();
    let mut v = vec![
        (
            "cp".to_string(),
            vec!["cp".into(), src.clone(), "pg_wal/RECOVERYXLOG".into()],
        ),
        (
            "cp && sync FILE (cp + fsync)".to_string(),
            vec![
                "sh".into(),
                "-c".into(),
                format!("cp {src} pg_wal/RECOVERYXLOG && sync pg_wal/RECOVERYXLOG"),
            ],
        ),
        (
            "ours".to_string(),
            vec![
                p.ours.display().to_string(),
                a.clone(),
                seg.into(),
                "pg_wal/RECOVERYXLOG".into(),
            ],
        ),
    ];
    // What --metrics-file costs a call.
    let prom = archive.with_file_name("pg_standby.prom");
    v.push((
        "ours --metrics-file".to_string(),
        vec![
            p.ours.display().to_string(),
            "--metrics-file".into(),
            prom.display().to_string(),
            a.clone(),
            seg.into(),
            "pg_wal/RECOVERYXLOG".into(),
        ],
    ));
    // An earlier build of ours, to see what a change cost the hot path.
    if let Some(base) = std::env::var_os("PG_STANDBY_BASE") {
        v.push((
            "ours, earlier build ($PG_STANDBY_BASE)".to_string(),
            vec![
                PathBuf::from(base).display().to_string(),
                a.clone(),
                seg.into(),
                "pg_wal/RECOVERYXLOG".into(),
            ],
        ));
    }
    if let Some(o) = &p.orig {
        v.push((
            "original 13".to_string(),
            vec![
                o.display().to_string(),
                a,
                seg.into(),
                "pg_wal/RECOVERYXLOG".into(),
            ],
        ));
    }
    v
}

fn hyperfine(cwd: &Path, cmds: &[(String, Vec<String>)], runs: u64, out: &Path) {
    let mut c = Command::new("hyperfine");
    c.current_dir(cwd)
        .args([
            "-N",
            "-w",
            "3",
            "-r",
            &runs.to_string(),
            "--prepare",
            "rm -f pg_wal/RECOVERYXLOG",
            "--export-markdown",
        ])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (label, argv) in cmds {
        if argv[0] == "sh" {
            continue; // -N splits on spaces; the shell variant is in the table above
        }
        c.arg("-n").arg(label).arg(argv.join(" "));
    }
    match c.status() {
        Ok(s) if s.success() => {
            say(&format!(
                "\nhyperfine (each program's runs back to back, `hyperfine -N -w 3 -r {runs} --prepare 'rm -f pg_wal/RECOVERYXLOG'` in the data directory):\n"
            ));
            say(&fs::read_to_string(out).unwrap_or_default());
        }
        _ => say("\n(hyperfine not available or failed: `apt-get install hyperfine`)\n"),
    }
}

fn percall(p: &Progs) -> Result<()> {
    let runs = env_num("PERCALL_RUNS", 30);
    let sc = Scratch::new("percall", SYSID)?;
    let seg = seg_name(5);
    fs::write(
        sc.archive.join(&seg),
        segment_bytes(&seg, 16 * MIB, SYSID, 16 * MIB),
    )?;
    let cmds = copy_cmds(p, &sc.archive, &seg);
    say(&format!(
        "### Per call: restore one existing 16 MiB segment ({runs} rounds, programs alternated)\n\n\
         In a data directory with recovery.signal: `<program> ARCHIVE {seg} pg_wal/RECOVERYXLOG` vs `cp ARCHIVE/{seg} pg_wal/RECOVERYXLOG`; \
         archive and data directory on the same ext4 file system, source in the page cache; \
         pg_wal/RECOVERYXLOG is removed before each call, as the server does. \
         Wall time around each call (`/usr/bin/time` included, same for all); CPU (user+sys, 10 ms resolution) and peak RSS from `/usr/bin/time -f \"%M %U %S\"` (includes waited-for children: `sh` and `cp` for the original).\n"
    ));
    alternate(&sc.data, &cmds, runs)?;
    hyperfine(
        &sc.data,
        &cmds,
        runs,
        &results_file().with_file_name("percall-hyperfine.md"),
    );
    Ok(())
}

fn bigseg(p: &Progs) -> Result<()> {
    let runs = env_num("BIGSEG_RUNS", 5);
    let sb = Sandbox::new("big")?;
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            wal_segsize_mb: Some(1024),
            ..Default::default()
        },
    )?;
    let seg = primary.switch_wal()?;
    primary.wait_archived(&seg, Duration::from_secs(600))?;
    let sysid: u64 = {
        let raw = fs::read(primary.data.join("global/pg_control"))?;
        u64::from_ne_bytes(raw[..8].try_into()?)
    };
    let sc = Scratch::new("bigseg", sysid)?;
    let cmds = copy_cmds(p, &sb.archive(), &seg);
    say(&format!(
        "### Per call with 1 GiB segments (`initdb --wal-segsize=1024`, a real archived segment, {runs} rounds alternated)\n\n\
         `<program> ARCHIVE {seg} pg_wal/RECOVERYXLOG` in a data directory carrying the primary's system identifier.\n"
    ));
    alternate(&sc.data, &cmds, runs)?;
    Ok(())
}

// ---------------------------------------------------------------- idle / busy

/// Start ours and the original waiting for a segment that never comes.
fn spawn_waiting(p: &Progs, sc: &Scratch, seg: &str) -> Result<Vec<(String, Child)>> {
    let mut v = Vec::new();
    let mut progs = vec![("ours".to_string(), p.ours.clone(), vec![])];
    if let Some(o) = &p.orig {
        progs.push(("original 13 -s 1".to_string(), o.clone(), vec!["-s", "1"]));
    }
    for (label, bin, opts) in progs {
        let d = sc.data_for(&label.replace(' ', "_"))?;
        let child = Command::new(bin)
            .args(opts)
            .arg(&sc.archive)
            .arg(seg)
            .arg("pg_wal/RECOVERYXLOG")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        v.push((label, child));
    }
    Ok(v)
}

fn idle(p: &Progs) -> Result<()> {
    let secs = env_num("IDLE_SECS", 60);
    let sc = Scratch::new("idle", SYSID)?;
    fs::write(
        sc.archive.join(seg_name(1)),
        segment_bytes(&seg_name(1), 16 * MIB, SYSID, 16 * MIB),
    )?;
    let kids = spawn_waiting(p, &sc, &seg_name(2))?;
    thread::sleep(Duration::from_secs(2));
    let start: Vec<f64> = kids
        .iter()
        .map(|(_, c)| proc_cpu_ms(c.id()))
        .collect::<Result<_>>()?;
    thread::sleep(Duration::from_secs(secs));
    say(&format!(
        "### Idle: waiting {secs} s for a segment that does not come (side by side)\n\n\
         `<program> [-s 1] ARCHIVE {} pg_wal/RECOVERYXLOG` in a data directory with recovery.signal; CPU = utime+stime \
         from /proc/PID/stat (10 ms ticks) from 2 s after the start to {secs} s later; *total* = wait4() rusage of the whole life \
         (start-up included, µs resolution).\n",
        seg_name(2)
    ));
    say(
        "| program | CPU over the window | share of one core | total CPU (rusage) | peak RSS (VmHWM) |",
    );
    say("|---|---|---|---|---|");
    for ((label, c), s0) in kids.into_iter().zip(start) {
        let s1 = proc_cpu_ms(c.id())?;
        let hwm = vm_hwm_kib(c.id());
        signal(c.id(), libc::SIGKILL);
        let (_, ru) = wait_rusage(c)?;
        say(&format!(
            "| {label} | {:.0} ms | {:.3} % | {:.1} ms | {:.1} MiB |",
            s1 - s0,
            (s1 - s0) / (secs as f64 * 10.0),
            cpu_ms(&ru),
            hwm as f64 / 1024.0
        ));
    }
    Ok(())
}

fn busy(p: &Progs) -> Result<()> {
    let files = env_num("BUSY_FILES", 10_000);
    let sc = Scratch::new("busy", SYSID)?;
    let kids = spawn_waiting(p, &sc, &seg_name(2))?;
    thread::sleep(Duration::from_secs(2));
    let start: Vec<f64> = kids
        .iter()
        .map(|(_, c)| proc_cpu_ms(c.id()))
        .collect::<Result<_>>()?;
    let t = Instant::now();
    let payload = vec![b'x'; 8192];
    for i in 0..files {
        // unrelated: other tools' files, partial names, other segments' temp files
        let name = match i % 3 {
            0 => format!("unrelated-{i}.txt"),
            1 => format!("{}.tmp{i}", seg_name(3)),
            _ => format!("{:08X}{:016X}.backup", 1, i),
        };
        fs::write(sc.archive.join(name), &payload)?;
    }
    let gen_ms = t.elapsed().as_secs_f64() * 1e3;
    thread::sleep(Duration::from_secs(2));
    let window = t.elapsed().as_secs_f64();
    say(&format!(
        "### Busy: {files} unrelated 8 KiB files written into the archive during the wait (side by side)\n\n\
         Same set-up as idle; the files (`unrelated-N.txt`, `<segment>.tmpN`, `<name>.backup`) were written as fast as one \
         thread could ({gen_ms:.0} ms); CPU from just before the first file to 2 s after the last ({window:.1} s).\n"
    ));
    say(
        "| program | CPU over the window | CPU per 1,000 files | peak RSS (VmHWM) | still waiting |",
    );
    say("|---|---|---|---|---|");
    for ((label, mut c), s0) in kids.into_iter().zip(start) {
        let s1 = proc_cpu_ms(c.id())?;
        let hwm = vm_hwm_kib(c.id());
        let alive = c.try_wait()?.is_none();
        signal(c.id(), libc::SIGKILL);
        let _ = wait_rusage(c);
        say(&format!(
            "| {label} | {:.0} ms | {:.1} ms | {:.1} MiB | {} |",
            s1 - s0,
            (s1 - s0) * 1000.0 / files as f64,
            hwm as f64 / 1024.0,
            if alive { "yes" } else { "NO (exited)" }
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- cleanup

fn fill_archive(archive: &Path, n: u64) -> Result<String> {
    for i in 1..=n {
        let f = fs::File::create(archive.join(seg_name(i)))?;
        f.set_len(16 * MIB)?; // sparse: names are what cleanup looks at
    }
    let req = seg_name(n + 1);
    fs::write(
        archive.join(&req),
        segment_bytes(&req, 16 * MIB, SYSID, 16 * MIB),
    )?;
    Ok(req)
}

fn cleanup(p: &Progs) -> Result<()> {
    let rounds = env_num("CLEANUP_ROUNDS", 3);
    let pg = PgInstall::detect()?;
    let archivecleanup = pg.bindir.join("pg_archivecleanup");
    say(&format!(
        "### Cleanup with %r ({rounds} rounds, programs alternated)\n\n\
         A fresh archive of N sparse 16 MiB segment files plus the requested segment R; one call \
         `<program> ARCHIVE R pg_wal/RECOVERYXLOG R` (restore R, remove the N older segments), wall time. \
         `pg_archivecleanup ARCHIVE R` (removal only) as a reference.\n"
    ));
    say("| segments | program | wall p50 | wall max | left in archive |");
    say("|---|---|---|---|---|");
    for n in [10_000u64, 100_000] {
        let mut progs: Vec<(String, PathBuf, bool)> = vec![("ours".into(), p.ours.clone(), true)];
        if let Some(o) = &p.orig {
            progs.push(("original 13".into(), o.clone(), true));
        }
        if archivecleanup.is_file() {
            progs.push((
                "pg_archivecleanup (reference)".into(),
                archivecleanup.clone(),
                false,
            ));
        }
        let mut walls: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
        let mut left: Vec<usize> = vec![0; progs.len()];
        for _ in 0..rounds {
            for (k, (label, bin, restore)) in progs.iter().enumerate() {
                let sc = Scratch::new("cleanup", SYSID)?;
                let req = fill_archive(&sc.archive, n)?;
                let mut c = Command::new(bin);
                c.current_dir(&sc.data).arg(&sc.archive).arg(&req);
                if *restore {
                    c.args(["pg_wal/RECOVERYXLOG", &req]);
                }
                let u = run_usage(&mut c)?;
                ensure!(u.status == 0, "{label} exited with {}", u.status);
                walls[k].push(u.wall_ms);
                left[k] = fs::read_dir(&sc.archive)?.count();
            }
        }
        for (k, (label, _, _)) in progs.iter().enumerate() {
            say(&format!(
                "| {n} | {label} | {:.0} ms | {:.0} ms | {} |",
                median(&walls[k]),
                max(&walls[k]),
                left[k]
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- plots

/// Where the plots go: target/bench/<name>.svg, next to results.md.
fn write_plot(name: &str, svg: &Svg) {
    let p = results_file().with_file_name(format!("{name}.svg"));
    match fs::write(&p, svg.finish()) {
        Ok(()) => say(&format!("\nplot: {}", p.display())),
        Err(e) => eprintln!("could not write {}: {e}", p.display()),
    }
}

const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#7f7f7f", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A hand-written SVG canvas with a plot area and axes: enough for the two
/// charts in BENCHMARKS.md without pulling a plotting crate into the build.
struct Svg {
    width: f64,
    height: f64,
    /// plot area: left, top, right, bottom
    area: (f64, f64, f64, f64),
    body: String,
}

impl Svg {
    /// `left` and `bottom`: room for the labels beside and under the plot area.
    fn new(width: f64, height: f64, left: f64, bottom: f64, title: &str) -> Svg {
        let mut s = Svg {
            width,
            height,
            area: (left, 40.0, width - 20.0, height - bottom),
            body: String::new(),
        };
        s.text(width / 2.0, 22.0, "middle", 15.0, title);
        s
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, size: f64, t: &str) {
        self.body += &format!(
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" font-size=\"{size}\">{}</text>\n",
            esc(t)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        self.body += &format!(
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\" stroke-width=\"{width}\"/>\n"
        );
    }

    fn polyline(&mut self, pts: &[(f64, f64)], stroke: &str) {
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        self.body += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"2\"/>\n",
            p.join(" ")
        );
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        self.body += &format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\"/>\n"
        );
    }

    fn circle(&mut self, x: f64, y: f64, fill: &str) {
        self.body += &format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{fill}\" stroke=\"black\" stroke-width=\"0.7\"/>\n"
        );
    }

    /// A vertical grid line with its label under the plot area.
    fn x_tick(&mut self, x: f64, label: &str) {
        let (_, top, _, bottom) = self.area;
        self.line(x, top, x, bottom, "#dddddd", 1.0);
        self.text(x, bottom + 16.0, "middle", 11.0, label);
    }

    fn x_label(&mut self, t: &str) {
        let (left, _, right, bottom) = self.area;
        self.text((left + right) / 2.0, bottom + 36.0, "middle", 12.0, t);
    }

    fn frame(&mut self) {
        let (l, t, r, b) = self.area;
        self.body += &format!(
            "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n",
            r - l,
            b - t
        );
    }

    fn finish(&self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}</svg>\n",
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

/// Tick step for a linear axis from 0 to `max`: 1, 2 or 5 × a power of ten.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", v / 1000.0)
    } else {
        format!("{v} ms")
    }
}

/// Cumulative distribution of each program's samples, log-scaled time axis.
fn latency_plot(title: &str, series: &[(String, Vec<f64>)]) -> Svg {
    // the legend goes under the axis, where no curve can hide it
    let legend = 18.0 * series.len() as f64;
    let mut svg = Svg::new(720.0, 400.0 + legend, 60.0, 50.0 + legend, title);
    let all = series.iter().flat_map(|(_, v)| v.iter().copied());
    let lo = all.clone().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = all.fold(1.0, f64::max);
    let (d0, d1) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let (l, t, r, b) = svg.area;
    let x = |v: f64| l + (v.max(1.0).log10() - d0) / (d1 - d0) * (r - l);
    let y = |f: f64| b - f * (b - t);
    for d in d0 as i32..=d1 as i32 {
        let v = 10f64.powi(d);
        svg.x_tick(x(v), &fmt_ms(v));
    }
    for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
        svg.line(l, y(q), r, y(q), "#dddddd", 1.0);
        svg.text(
            l - 6.0,
            y(q) + 4.0,
            "end",
            11.0,
            &format!("{:.0} %", q * 100.0),
        );
    }
    svg.x_label(
        "time from pg_switch_wal() on the primary to the row visible on the standby (log scale)",
    );
    for (k, (name, v)) in series.iter().enumerate() {
        let mut v = v.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len() as f64;
        let mut pts = Vec::new();
        for (i, s) in v.iter().enumerate() {
            pts.push((x(*s), y(i as f64 / n)));
            pts.push((x(*s), y((i + 1) as f64 / n)));
        }
        let colour = COLOURS[k % COLOURS.len()];
        svg.polyline(&pts, colour);
        let ly = b + 58.0 + 18.0 * k as f64;
        svg.line(l + 12.0, ly - 4.0, l + 36.0, ly - 4.0, colour, 3.0);
        svg.text(
            l + 42.0,
            ly,
            "start",
            12.0,
            &format!("{name} (p50 {:.0} ms, n = {})", median(&v), v.len()),
        );
    }
    svg.frame();
    svg
}

/// One bar per program (median time per segment), one dot per round.
fn catchup_plot(title: &str, bars: &[(String, Vec<f64>)]) -> Svg {
    let row = 34.0;
    let mut svg = Svg::new(760.0, 90.0 + row * bars.len() as f64, 290.0, 50.0, title);
    let (l, t, r, _) = svg.area;
    let hi = bars
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0);
    let step = nice_step(hi);
    let top = (hi / step).ceil() * step;
    let x = |v: f64| l + v / top * (r - l);
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        svg.x_tick(x(v), &format!("{v}"));
        v += step;
    }
    svg.x_label("milliseconds per segment (bar: median of the rounds; dots: each round)");
    for (k, (name, vals)) in bars.iter().enumerate() {
        let cy = t + row * (k as f64 + 0.5);
        let colour = COLOURS[k % COLOURS.len()];
        let m = median(vals);
        svg.rect(l, cy - row * 0.3, x(m) - l, row * 0.6, colour);
        for s in vals {
            svg.circle(x(*s), cy, "white");
        }
        svg.text(l - 8.0, cy + 4.0, "end", 12.0, name);
        svg.text(
            x(m) + 6.0,
            cy - row * 0.3 - 2.0,
            "start",
            11.0,
            &format!("{m:.1}"),
        );
    }
    svg.frame();
    svg
}

// -------------------------------------------------------------- compressed

/// A fresh standby from `backup` restoring with `rc`: milliseconds from
/// `pg_ctl start` until it has replayed up to `target`, and its log. The
/// standby's directory is removed afterwards.
fn time_catch_up(
    sb: &Sandbox,
    backup: &BaseBackup,
    name: &str,
    rc: &str,
    standby_mode: bool,
    target: &str,
) -> Result<(f64, String)> {
    let s = standby(sb, backup, name, rc, None)?;
    if standby_mode {
        to_standby_mode(sb, &s)?;
    }
    let t0 = Instant::now();
    s.start_nowait()?;
    wait_until(Duration::from_secs(900), "catch-up", || {
        Ok(s.psql(&format!(
            "SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
        ))? == "t")
    })?;
    let dt = t0.elapsed().as_secs_f64() * 1e3;
    let log = s.log();
    let dir = s.dir.clone();
    drop(s);
    let _ = fs::remove_dir_all(dir);
    Ok((dt, log))
}

/// The catch-up table: totals per program, against program `base`.
fn catch_up_table(progs: &[(String, String, bool)], totals: &[Vec<f64>], base: usize, segs: usize) {
    say(
        "| program | median total | per segment | × cp (median of per-round ratios) | totals (ms) |",
    );
    say("|---|---|---|---|---|");
    for (k, (label, _, _)) in progs.iter().enumerate() {
        let ratios: Vec<f64> = totals[k]
            .iter()
            .zip(&totals[base])
            .map(|(a, b)| a / b)
            .collect();
        say(&format!(
            "| {label} | {:.0} ms | {:.1} ms | {:.2} | {:?} |",
            median(&totals[k]),
            median(&totals[k]) / segs as f64,
            median(&ratios),
            totals[k]
                .iter()
                .map(|x| x.round() as i64)
                .collect::<Vec<_>>()
        ));
    }
}

/// Compressed archives: one call restoring a real 16 MiB segment
/// from `.gz` and `.zst` against the command a user would write, then a
/// standby catching up through full segments from a gzip archive against
/// the documented `gunzip` restore_command and against `cp` from a plain
/// archive. The primary archives both forms at once, so every standby
/// replays the same WAL.
fn compressed(p: &Progs) -> Result<()> {
    let runs = env_num("COMPRESSED_RUNS", 30);
    let rounds = env_num("CATCHUP_ROUNDS", 3);
    let nseg = env_num("COMPRESSED_SEGMENTS", 30);
    let sb = Sandbox::new("cz")?;
    let arch = sb.archive();
    let plain = sb.path().join("plain");
    sb.mkdir(&plain)?;
    let pgbr = pgbackrest::PgBackRest::set_up(&sb)?;
    let push = pgbr
        .as_ref()
        .map(|b| format!(" && {}", b.push_command(&sb.path().join("primary/data"))))
        .unwrap_or_default();
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            extra_conf: format!(
                "max_wal_size = 8GB\ncheckpoint_timeout = 1h\n\
                 archive_command = 'gzip -c %p > {a}/%f.gz.tmp && mv {a}/%f.gz.tmp {a}/%f.gz \
                 && zstd -q -c %p > {a}/%f.zst.tmp && mv {a}/%f.zst.tmp {a}/%f.zst && cp %p {p}/%f{push}'\n",
                a = arch.display(),
                p = plain.display()
            ),
            ..Default::default()
        },
    )?;
    if let Some(b) = &pgbr {
        b.create_stanza(&primary)?;
    }
    let backup = primary.cold_backup("base")?;
    let target = write_compressible_segments(&primary, nseg, Duration::from_secs(900))?;
    let segs = fs::read_dir(&plain)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24)
        .count();
    // One call: the segment that compresses least, i.e. holds the most rows.
    let seg = fs::read_dir(&plain)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24)
        .max_by_key(|n| {
            fs::metadata(arch.join(format!("{n}.gz")))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .context("no archived segment")?;
    let gz = fs::metadata(arch.join(format!("{seg}.gz")))?.len();
    let zst = fs::metadata(arch.join(format!("{seg}.zst")))?.len();
    let sc = Scratch::new("compressed", 0)?;
    fs::copy(
        primary.data.join("global/pg_control"),
        sc.data.join("global/pg_control"),
    )?;
    let only = |suffix: &str| -> Result<PathBuf> {
        let d = sc.root.path().join(format!("archive{suffix}"));
        fs::create_dir_all(&d)?;
        let name = format!("{seg}{suffix}");
        let from = if suffix.is_empty() {
            plain.join(&seg)
        } else {
            arch.join(&name)
        };
        fs::copy(from, d.join(&name))?;
        Ok(d)
    };
    let (a_gz, a_zst, a_plain) = (only(".gz")?, only(".zst")?, only("")?);
    let ours = p.ours.display().to_string();
    let call = |a: &Path| {
        vec![
            ours.clone(),
            a.display().to_string(),
            seg.clone(),
            "pg_wal/RECOVERYXLOG".to_string(),
        ]
    };
    let shell = |c: String| vec!["sh".to_string(), "-c".to_string(), c];
    say(&format!(
        "### Compressed archives: one call ({runs} rounds, programs alternated)\n\n\
         A real 16 MiB segment of `md5()` rows ({seg}: {:.1} MiB as .gz, {:.1} MiB as .zst, \
         default levels), restored into pg_wal/RECOVERYXLOG of a data directory with recovery.signal. \
         The first row of each table is the baseline of the × column.\n",
        gz as f64 / MIB as f64,
        zst as f64 / MIB as f64
    ));
    for (what, cmds) in [
        (
            "gzip",
            vec![
                (
                    "`gunzip < ARCHIVE/%f.gz > %p`".to_string(),
                    shell(format!(
                        "gunzip < {}/{seg}.gz > pg_wal/RECOVERYXLOG",
                        a_gz.display()
                    )),
                ),
                ("ours, from %f.gz".to_string(), call(&a_gz)),
            ],
        ),
        (
            "zstd",
            vec![
                (
                    "`zstd -dcq ARCHIVE/%f.zst > %p`".to_string(),
                    shell(format!(
                        "zstd -dcq {}/{seg}.zst > pg_wal/RECOVERYXLOG",
                        a_zst.display()
                    )),
                ),
                ("ours, from %f.zst".to_string(), call(&a_zst)),
            ],
        ),
        (
            "plain",
            vec![
                (
                    "`cp ARCHIVE/%f %p`".to_string(),
                    vec![
                        "cp".to_string(),
                        a_plain.join(&seg).display().to_string(),
                        "pg_wal/RECOVERYXLOG".to_string(),
                    ],
                ),
                ("ours, plain".to_string(), call(&a_plain)),
            ],
        ),
    ] {
        say(&format!("\n{what}:\n"));
        alternate(&sc.data, &cmds, runs)?;
    }

    // Catch-up.
    let ours_installed = install_as(&sb, &p.ours, "pg_standby")?;
    let progs: Vec<(String, String, bool)> = vec![
        (
            "`cp` from the plain archive (standby.signal)".into(),
            format!("cp {}/%f %p", plain.display()),
            true,
        ),
        (
            "ours from the gzip archive".into(),
            sb.restore_command(&ours_installed, "", false),
            false,
        ),
        (
            "`gunzip < %f.gz > %p` (standby.signal)".into(),
            format!("gunzip < {}/%f.gz > %p", arch.display()),
            true,
        ),
        (
            "ours from the gzip archive, `--prefetch=0`".into(),
            sb.restore_command(&ours_installed, "--prefetch=0", false),
            false,
        ),
    ];
    let mut progs = progs;
    if let Some(b) = &pgbr {
        for process_max in [1, 2] {
            progs.push((
                format!("pgBackRest 2.45 `archive-get`, async, process-max={process_max} (standby.signal)"),
                b.get_command(&sb, process_max),
                true,
            ));
        }
    }
    say(&format!(
        "\n### Compressed archives: catch-up through {nseg} segments of rows ({rounds} rounds, programs rotated)\n\n\
         A fresh hot standby from the cold backup replays everything the primary archived ({segs} segments in all); \
         from `pg_ctl start` until `pg_last_wal_replay_lsn()` reaches the primary's last insert position. \
         ours reads `%f.gz` (the archive also holds `.zst` files, never looked at since `.gz` comes first); \
         the others run with standby.signal, as a non-waiting restore_command must.\n"
    ));
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    for r in 0..rounds {
        for j in 0..progs.len() {
            let k = (j + r as usize) % progs.len();
            let (label, rc, standby_mode) = &progs[k];
            let name = format!("cz{r}p{k}");
            let rc = rc.replace("{NAME}", &name);
            let (dt, log) = time_catch_up(&sb, &backup, &name, &rc, *standby_mode, &target)?;
            let hits = log.matches("from the prefetch spool").count();
            eprintln!("{label}: {dt:.0} ms ({hits} from our spool)");
            totals[k].push(dt);
        }
    }
    catch_up_table(&progs, &totals, 0, segs);
    Ok(())
}

// -------------------------------------------------------------- s3

/// One call restoring a present object with keys in the environment: what
/// choosing a credential source costs the first request, against `curl`
/// fetching the same object and an earlier build ($PG_STANDBY_BASE).
fn s3_call(p: &Progs) -> Result<()> {
    let runs = env_num("S3CALL_RUNS", 30);
    let server = s3_server::S3Server::start();
    let bucket = server.bucket("wal");
    let seg = seg_name(5);
    fs::create_dir_all(bucket.join("a"))?;
    fs::write(
        bucket.join("a").join(&seg),
        segment_bytes(&seg, 16 * MIB, SYSID, 16 * MIB),
    )?;
    let sc = Scratch::new("s3call", SYSID)?;
    let keys = [
        format!("AWS_ENDPOINT_URL={}", server.endpoint),
        format!("AWS_ACCESS_KEY_ID={}", s3_server::ACCESS_KEY),
        format!("AWS_SECRET_ACCESS_KEY={}", s3_server::SECRET_KEY),
        format!("AWS_REGION={}", s3_server::REGION),
    ];
    let call = |bin: &Path| -> Vec<String> {
        let mut v = vec!["env".to_string()];
        v.extend(keys.iter().cloned());
        v.extend([
            bin.display().to_string(),
            "--prefetch=0".into(),
            "s3://wal/a".into(),
            seg.clone(),
            "pg_wal/RECOVERYXLOG".into(),
        ]);
        v
    };
    let mut cmds = vec![
        (
            "curl --aws-sigv4 (GET to pg_wal/RECOVERYXLOG)".to_string(),
            vec![
                "curl".into(),
                "-sSf".into(),
                "--aws-sigv4".into(),
                format!("aws:amz:{}:s3", s3_server::REGION),
                "--user".into(),
                format!("{}:{}", s3_server::ACCESS_KEY, s3_server::SECRET_KEY),
                "-H".into(),
                "x-amz-content-sha256:UNSIGNED-PAYLOAD".into(),
                "-o".into(),
                "pg_wal/RECOVERYXLOG".into(),
                format!("{}/wal/a/{seg}", server.endpoint),
            ],
        ),
        ("ours, keys in the environment".to_string(), call(&p.ours)),
    ];
    if let Some(base) = std::env::var_os("PG_STANDBY_BASE") {
        cmds.push((
            "ours, earlier build ($PG_STANDBY_BASE)".to_string(),
            call(Path::new(&base)),
        ));
    }
    say(&format!(
        "### Object storage, one call: a present 16 MiB object, keys in the environment ({runs} rounds, programs alternated)\n\n\
         s3s-fs on 127.0.0.1; `--prefetch=0` (no fetcher); the host has no metadata service.\n"
    ));
    alternate(&sc.data, &cmds, runs)?;
    Ok(())
}

/// Object storage: arrival latency (upload by the primary's
/// archive_command → row visible), the requests of a wait that lasts, and
/// catch-up, for pg_standby reading `s3://` (and an earlier build,
/// `$PG_STANDBY_BASE`) and for a plain polling loop with curl (a GET every
/// 100 ms), the loop a user would write. Each standby reaches s3s-fs
/// through a counting proxy of its own, so the requests each one made are
/// counted.
fn object_storage(p: &Progs) -> Result<()> {
    let samples = env_num("S3_SAMPLES", 20);
    let idle_secs = env_num("S3_IDLE_SECS", 60);
    let server = s3_server::S3Server::start();
    server.bucket("wal");
    let sigv4 = format!(
        "--aws-sigv4 aws:amz:{}:s3 --user {}:{} -H x-amz-content-sha256:UNSIGNED-PAYLOAD",
        s3_server::REGION,
        s3_server::ACCESS_KEY,
        s3_server::SECRET_KEY
    );
    let upload = format!(
        "env -u LD_LIBRARY_PATH curl -sSf {sigv4} -T %p {}/wal/primary/%f",
        server.endpoint
    );
    let sb = Sandbox::new("s3")?;
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            extra_conf: format!("archive_command = '{upload}'\n"),
            ..Default::default()
        },
    )?;
    let backup = primary.cold_backup("base")?;
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    let aws = |port: u16| {
        format!(
            "env AWS_ENDPOINT_URL=http://127.0.0.1:{port} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION={}",
            s3_server::ACCESS_KEY,
            s3_server::SECRET_KEY,
            s3_server::REGION
        )
    };
    let mut progs: Vec<(String, CountingProxy, String)> = Vec::new();
    let proxy = CountingProxy::start(server.port)?;
    let rc = format!(
        "{} {} s3://wal/primary %f %p",
        aws(proxy.port),
        ours.display()
    );
    progs.push(("ours (`pg_standby s3://…`)".into(), proxy, rc));
    if let Some(base) = std::env::var_os("PG_STANDBY_BASE") {
        let base = install_as(&sb, Path::new(&base), "pg_standby_base")?;
        let proxy = CountingProxy::start(server.port)?;
        let rc = format!(
            "{} {} s3://wal/primary %f %p",
            aws(proxy.port),
            base.display()
        );
        progs.push(("ours, earlier build ($PG_STANDBY_BASE)".into(), proxy, rc));
    }
    let proxy = CountingProxy::start(server.port)?;
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let get = format!("env -u LD_LIBRARY_PATH curl -sf {sigv4} -o %p {via}/wal/primary/%f");
    let rc = format!("case %f in *.history) exec {get};; esac; until {get}; do sleep 0.1; done");
    progs.push(("curl every 100 ms".into(), proxy, rc));
    let count = |k: usize| progs[k].1.counts().iter().sum::<u64>();
    say(&format!(
        "### Object storage: arrival latency ({samples} samples, the standbys side by side)\n\n\
         s3s-fs on 127.0.0.1, each standby behind a counting proxy of its own; the primary uploads \
         each segment with `curl --aws-sigv4` in archive_command; per sample `INSERT` + \
         `pg_switch_wal()` on the primary, then the time until the row is visible on each hot \
         standby. Requests: what each standby sent through its proxy, per minute of the run. \
         pg_standby runs with its defaults (`-s 5`).\n"
    ));
    let mut standbys = Vec::new();
    for (k, (_, _, rc)) in progs.iter().enumerate() {
        let s = standby(&sb, &backup, &format!("s3s{k}"), rc, None)?;
        s.start()?;
        standbys.push(s);
    }
    primary.insert_and_switch(1)?;
    for s in &standbys {
        s.wait_row(1, Duration::from_secs(60))?;
    }
    let counted: Vec<u64> = (0..progs.len()).map(count).collect();
    let t_run = Instant::now();
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    for i in 0..samples {
        let id = 100 + i as i64;
        let waiters = standbys
            .iter()
            .map(|s| spawn_waiter(psql_cmd(s, &[&wait_row_sql(id)])))
            .collect::<Result<Vec<_>>>()?;
        primary.insert_and_switch(id)?;
        let t0 = Instant::now();
        for (k, w) in waiters.into_iter().enumerate() {
            let (at, ok, err) = w.join().map_err(|_| anyhow::anyhow!("waiter panicked"))?;
            ensure!(ok, "row {id} on standby {k}: {err}");
            lat[k].push(ms(at, t0));
        }
    }
    let minutes = t_run.elapsed().as_secs_f64() / 60.0;
    say("| restore_command | p50 | p90 | max | requests per minute |");
    say("|---|---|---|---|---|");
    for (k, (label, _, _)) in progs.iter().enumerate() {
        let n = count(k) - counted[k];
        say(&format!(
            "| {label} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} |",
            median(&lat[k]),
            pct(&lat[k], 90.0),
            max(&lat[k]),
            n as f64 / minutes
        ));
    }
    // Nothing more is archived: each standby waits for the next segment
    // from the moment it restored the last one.
    let counted: Vec<u64> = (0..progs.len()).map(count).collect();
    thread::sleep(Duration::from_secs(idle_secs));
    say(&format!(
        "\nRequests in the first {idle_secs} s of a wait for a segment that does not come \
         (right after the last sample):\n"
    ));
    for (k, (label, _, _)) in progs.iter().enumerate() {
        say(&format!("- {label}: {}", count(k) - counted[k]));
    }
    drop(standbys);

    let nseg = env_num("S3_CATCHUP_SEGMENTS", 100);
    primary.psql(&format!(
        "DO $$BEGIN FOR i IN 1..{nseg} LOOP \
           INSERT INTO t SELECT 1000000 + i * 1000 + g, repeat('x', 200) FROM generate_series(1, 500) g; \
           PERFORM pg_switch_wal(); END LOOP; END$$"
    ))?;
    let target = primary.psql("SELECT pg_current_wal_insert_lsn()")?;
    let last = primary.switch_wal()?;
    primary.wait_archived(&last, Duration::from_secs(900))?;
    say(&format!(
        "\n### Object storage: catch-up through {nseg} more segments\n\n\
         A fresh hot standby from the cold backup replays everything in the bucket, from \
         `pg_ctl start` until `pg_last_wal_replay_lsn()` reaches the primary's last insert \
         position; one round each, in turn.\n"
    ));
    say("| restore_command | total | requests |");
    say("|---|---|---|");
    for (k, (label, _, rc)) in progs.iter().enumerate() {
        let before = count(k);
        let (dt, _) = time_catch_up(&sb, &backup, &format!("s3c{k}"), rc, false, &target)?;
        say(&format!("| {label} | {dt:.0} ms | {} |", count(k) - before));
    }
    Ok(())
}

/// A TCP proxy to 127.0.0.1:`port` that counts HTTP requests, by the
/// client's User-Agent: index 0 for ours, 1 for curl, 2 for pgBackRest.
struct CountingProxy {
    port: u16,
    counts: std::sync::Arc<[std::sync::atomic::AtomicU64; 3]>,
}

impl CountingProxy {
    fn start(upstream: u16) -> Result<Self> {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counts = std::sync::Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let c = counts.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_in, mut c_out) = (server, client);
                let counts = c.clone();
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match std::io::Read::read(&mut c_in, &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                        for line in text.lines().filter(|l| l.starts_with("user-agent:")) {
                            let k = if line.contains("curl") {
                                1
                            } else if line.contains("pgbackrest") {
                                2
                            } else {
                                0
                            };
                            counts[k].fetch_add(1, Ordering::Relaxed);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(Self { port, counts })
    }

    fn counts(&self) -> [u64; 3] {
        use std::sync::atomic::Ordering;
        [
            self.counts[0].load(Ordering::Relaxed),
            self.counts[1].load(Ordering::Relaxed),
            self.counts[2].load(Ordering::Relaxed),
        ]
    }
}
