//! Prefetch through the binary, from gzip's own output: the fetcher fills
//! a spool outside the data directory, calls take their segment from it,
//! and every hazard of a spool (stale, foreign, corrupt, another
//! timeline, two fetchers, a killed fetcher, an unusable or full spool
//! directory, a failover) ends in the segment the archive holds, or in
//! the failover, never in anything else at `%p`.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn name(n: u32) -> String {
    format!("0000000100000000{n:08X}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-1", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Segments `from..=to` of timeline 1, gzip'ed into the archive.
fn archive_gz(env: &Env, from: u32, to: u32) {
    for n in from..=to {
        let name = name(n);
        env.archive_atomically(&format!("{name}.gz"), &gzip(&segment(&name)));
    }
}

fn spool_dir(env: &Env) -> PathBuf {
    env.path("data.pg_standby-spool")
}

fn spooled(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(spool_dir(env))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.len() == 24)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn wait_spooled(env: &Env, name: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("{name} in the spool"),
        || Ok(spooled(env).iter().any(|n| n == name)),
    )
    .unwrap();
}

fn fetcher_pid(env: &Env) -> Option<i32> {
    let pid: i32 = fs::read_to_string(spool_dir(env).join("lock"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

fn wait_fetcher_gone(env: &Env) {
    wait_until(Duration::from_secs(20), "the fetcher to exit", || {
        Ok(fetcher_pid(env).is_none())
    })
    .unwrap();
}

/// SIGKILL the fetcher, as the OOM killer would.
fn kill_fetcher(env: &Env) {
    if let Some(pid) = fetcher_pid(env) {
        // SAFETY: a plain kill of the fetcher a call of ours started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    wait_fetcher_gone(env);
}

fn restore(env: &Env, opts: &[&str], seg: &str) -> Done {
    let mut all = vec!["-d", "-s", "1"];
    all.extend_from_slice(opts);
    env.spawn(&all, seg, &[])
        .finish_within(Duration::from_secs(30))
}

#[track_caller]
fn assert_not_from_spool(done: &Done) {
    assert!(
        !done.log.contains("from the prefetch spool after"),
        "{}",
        done.log
    );
}

#[track_caller]
fn assert_restored(env: &Env, seg: &str) {
    assert!(
        fs::read(env.restored()).unwrap() == segment(seg),
        "%p is not {seg}"
    );
    assert_eq!(env.stray_files(), Vec::<String>::new());
}

#[test]
fn catching_up_takes_the_next_segments_from_the_spool() {
    let env = Env::new();
    archive_gz(&env, 1, 6);
    restore(&env, &[], &name(1)).exited(0);
    assert_restored(&env, &name(1));
    wait_spooled(&env, &name(6));
    for n in 2..=6 {
        restore(&env, &[], &name(n))
            .exited(0)
            .logged("from the prefetch spool");
        assert_restored(&env, &name(n));
    }
    // Outside the data directory, and nothing of it in pg_wal.
    assert!(!spool_dir(&env).starts_with(&env.datadir));
    assert_eq!(env.stray_files(), Vec::<String>::new());
    wait_fetcher_gone(&env);
}

#[test]
fn a_plain_local_archive_has_no_spool_unless_asked() {
    let env = Env::new();
    for n in 1..=3 {
        env.archive_atomically(&name(n), &segment(&name(n)));
    }
    restore(&env, &[], &name(1)).exited(0);
    assert!(!spool_dir(&env).exists());
    // Asked for: copies ahead, as it would decompress.
    restore(&env, &["--prefetch=2"], &name(1)).exited(0);
    wait_spooled(&env, &name(3));
    restore(&env, &["--prefetch=2"], &name(2))
        .exited(0)
        .logged("from the prefetch spool");
    assert_restored(&env, &name(2));
}

#[test]
fn pg_rewind_never_uses_a_spool() {
    let env = Env::new();
    archive_gz(&env, 1, 3);
    let args = [
        env.archive.display().to_string(),
        name(1),
        format!("pg_wal/{}", name(1)),
    ];
    let out = env
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!spool_dir(&env).exists());
}

#[test]
fn a_foreign_or_corrupt_spooled_file_is_never_delivered() {
    let env = Env::new();
    archive_gz(&env, 1, 4);
    restore(&env, &["--prefetch=3"], &name(1)).exited(0);
    wait_spooled(&env, &name(4));
    kill_fetcher(&env);
    // Another cluster's segment under the right name; a truncated one.
    let dir = spool_dir(&env);
    fs::write(
        dir.join(name(2)),
        segment_bytes(&name(2), SEG, SYSID + 1, SEG),
    )
    .unwrap();
    fs::write(dir.join(name(3)), &segment(&name(3))[..1 << 20]).unwrap();
    for n in 2..=3 {
        let done = restore(&env, &["--prefetch=3"], &name(n));
        done.exited(0);
        assert_not_from_spool(&done);
        assert_restored(&env, &name(n));
    }
}

#[test]
fn a_spool_from_another_server_start_is_not_used() {
    let env = Env::new();
    archive_gz(&env, 1, 3);
    let pid = std::process::id();
    fs::write(
        env.datadir.join("postmaster.pid"),
        format!("{pid}\n/data\n1000\n"),
    )
    .unwrap();
    restore(&env, &[], &name(1)).exited(0);
    wait_spooled(&env, &name(3));
    // The server restarted: its start time changed. A spooled file must
    // then prove itself again: it is not used, and is gone after the call.
    fs::write(
        env.datadir.join("postmaster.pid"),
        format!("{pid}\n/data\n2000\n"),
    )
    .unwrap();
    let done = restore(&env, &[], &name(2));
    done.exited(0);
    assert_not_from_spool(&done);
    assert_restored(&env, &name(2));
    let stamp = fs::read_to_string(spool_dir(&env).join("stamp")).unwrap();
    assert!(stamp.contains(" 2000"), "{stamp}");
}

#[test]
fn a_timeline_switch_leaves_the_old_timeline_behind() {
    let env = Env::new();
    archive_gz(&env, 1, 5);
    restore(&env, &["--prefetch=3"], &name(1)).exited(0);
    wait_spooled(&env, &name(4));
    // The server moves to timeline 2 at segment 2.
    let tl2 = "000000020000000000000002";
    env.archive_atomically(tl2, &segment(tl2));
    let done = restore(&env, &["--prefetch=3"], tl2);
    done.exited(0);
    assert_not_from_spool(&done);
    assert_restored(&env, tl2);
    assert!(
        spooled(&env).iter().all(|n| n.starts_with("00000002")),
        "{:?}",
        spooled(&env)
    );
}

#[test]
fn two_fetchers_never_run_at_once() {
    let env = Env::new();
    archive_gz(&env, 1, 2);
    // An empty archive ahead keeps the fetcher waiting.
    restore(&env, &["--prefetch=4"], &name(1)).exited(0);
    wait_until(Duration::from_secs(10), "a fetcher", || {
        Ok(fetcher_pid(&env).is_some())
    })
    .unwrap();
    let first = fetcher_pid(&env).unwrap();
    let out = Command::new(binary())
        .current_dir(&env.datadir)
        .arg(format!("--prefetch-worker={}", spool_dir(&env).display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fetcher_pid(&env), Some(first));
}

#[test]
fn a_killed_fetcher_leaves_nothing_that_is_used() {
    let env = Env::new();
    archive_gz(&env, 1, 3);
    restore(&env, &["--prefetch=2"], &name(1)).exited(0);
    wait_spooled(&env, &name(3));
    kill_fetcher(&env);
    // What a SIGKILL mid-file leaves: a temporary file nobody locks, and
    // `current` naming the segment.
    let dir = spool_dir(&env);
    for n in fs::read_dir(&dir).unwrap() {
        let p = n.unwrap().path();
        if p.file_name().unwrap().len() == 24 {
            fs::remove_file(p).unwrap();
        }
    }
    let leftover = dir.join(".pg_standby.killed.tmp");
    fs::write(&leftover, &segment(&name(2))[..4 << 20]).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(10);
    fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(old)
        .unwrap();
    fs::write(dir.join("current"), name(2)).unwrap();
    let done = restore(&env, &["--prefetch=2"], &name(2));
    done.exited(0).within(Duration::from_secs(5));
    assert_not_from_spool(&done);
    assert_restored(&env, &name(2));
    // The new fetcher swept the leftover.
    wait_until(Duration::from_secs(10), "the leftover to go", || {
        Ok(!leftover.exists())
    })
    .unwrap();
}

#[test]
fn a_fetcher_killed_at_any_moment_changes_nothing_delivered() {
    let env = Env::new();
    archive_gz(&env, 1, 8);
    for n in 1..=8 {
        kill_fetcher(&env);
        restore(&env, &["--prefetch=3"], &name(n)).exited(0);
        assert_restored(&env, &name(n));
    }
}

#[test]
fn an_unusable_spool_directory_only_costs_the_prefetch() {
    let env = Env::new();
    archive_gz(&env, 1, 2);
    let file = env.path("not-a-directory");
    fs::write(&file, "").unwrap();
    let spool = format!("--spool-dir={}/spool", file.display());
    restore(&env, &[&spool], &name(1))
        .exited(0)
        .logged("prefetch off for this call");
    assert_restored(&env, &name(1));
}

/// A tmpfs of `size` at `dir`, unmounted when dropped.
fn tmpfs(dir: &Path, size: &str) -> Unmount {
    require_root("to mount a tmpfs");
    fs::create_dir(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(mounted.success());
    Unmount(dir.to_path_buf())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_spool_on_another_filesystem_is_copied_from() {
    let env = Env::new();
    archive_gz(&env, 1, 3);
    let other = env.path("other");
    let _unmount = tmpfs(&other, "64m");
    let spool = format!("--spool-dir={}/spool", other.display());
    restore(&env, &[&spool], &name(1)).exited(0);
    wait_until(Duration::from_secs(30), "the spool to fill", || {
        Ok(other.join("spool").join(name(3)).exists())
    })
    .unwrap();
    for n in 2..=3 {
        restore(&env, &[&spool], &name(n))
            .exited(0)
            .logged("from the prefetch spool after");
        assert_restored(&env, &name(n));
        assert!(!other.join("spool").join(name(n)).exists());
    }
}

#[test]
fn a_full_spool_disk_falls_back_to_restoring_directly() {
    let env = Env::new();
    archive_gz(&env, 1, 4);
    let small = env.path("small");
    let _unmount = tmpfs(&small, "4m");
    let spool = format!("--spool-dir={}/spool", small.display());
    restore(&env, &[&spool], &name(1)).exited(0);
    wait_until(Duration::from_secs(20), "the fetcher to give up", || {
        Ok(small.join("spool/backoff").exists())
    })
    .unwrap();
    for n in 2..=4 {
        let done = restore(&env, &[&spool], &name(n));
        done.exited(0);
        assert_restored(&env, &name(n));
        if n == 2 {
            done.logged("prefetch stopped")
                .logged("No space left on device");
        }
    }
}

fn start_spooling(env: &Env, trigger: &Path) {
    archive_gz(env, 1, 4);
    let t = format!("-t{}", trigger.display());
    restore(env, &[&t], &name(1)).exited(0);
    wait_spooled(env, &name(4));
}

#[test]
fn a_fast_failover_discards_the_spool() {
    let env = Env::new();
    let trigger = env.path("trigger");
    start_spooling(&env, &trigger);
    fs::write(&trigger, "fast").unwrap();
    let t = format!("-t{}", trigger.display());
    restore(&env, &[&t], &name(2)).exited(1);
    assert!(!spool_dir(&env).exists());
    wait_fetcher_gone(&env);
}

#[test]
fn a_fast_trigger_while_a_call_waits_on_the_spool_fails_over_fast() {
    let env = Env::new();
    let trigger = env.path("trigger");
    start_spooling(&env, &trigger);
    // A stand-in for a fetcher still writing segment 2: a child that holds
    // the spool's lock (the call stops it on a failover), and segment 2
    // named as in progress.
    kill_fetcher(&env);
    fs::remove_file(spool_dir(&env).join(name(2))).unwrap();
    let stand_in = hold_lock(&spool_dir(&env).join("lock"));
    fs::write(spool_dir(&env).join("current"), format!("{}\n", name(2))).unwrap();
    wait_until(Duration::from_secs(10), "the stand-in's lock", || {
        Ok(fetcher_pid(&env) == Some(stand_in.pid()))
    })
    .unwrap();
    fs::remove_file(env.restored()).unwrap();
    let t = format!("-t{}", trigger.display());
    let mut job = env.spawn(&["-d", &t], &name(2), &[]);
    job.wait_log(&format!("waiting for the fetcher to finish {}", name(2)));
    fs::write(&trigger, "fast").unwrap();
    // Segment 2 is in the archive: a smart failover would restore it.
    job.finish_within(Duration::from_secs(10))
        .exited(1)
        .logged("trigger file says \"fast\"");
    assert!(!env.restored().exists());
    // The call that failed over fast made it a smart trigger for the next.
    assert_eq!(fs::metadata(&trigger).unwrap().len(), 0);
}

/// A `sleep` that holds an exclusive flock on `path` and has written its
/// pid there, as a fetcher does; killed and reaped when dropped.
fn hold_lock(path: &Path) -> Reaped {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut cmd = Command::new("sleep");
    cmd.arg("60");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_TRUNC);
            if fd < 0 || libc::flock(fd, libc::LOCK_EX) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut buf = [0u8; 12];
            let mut n = libc::getpid() as u32;
            let mut i = buf.len();
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i);
            Ok(())
        });
    }
    Reaped(cmd.spawn().unwrap())
}

struct Reaped(std::process::Child);

impl Reaped {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_smart_failover_restores_what_is_spooled_then_discards_it() {
    let env = Env::new();
    let trigger = env.path("trigger");
    start_spooling(&env, &trigger);
    fs::write(&trigger, "smart").unwrap();
    let t = format!("-t{}", trigger.display());
    for n in 2..=4 {
        restore(&env, &[&t], &name(n)).exited(0);
        assert_restored(&env, &name(n));
    }
    restore(&env, &[&t], &name(5)).exited(1);
    assert!(!spool_dir(&env).exists());
}

#[test]
fn a_shutdown_discards_the_spool() {
    let env = Env::new();
    archive_gz(&env, 1, 2);
    restore(&env, &[], &name(1)).exited(0);
    wait_spooled(&env, &name(2));
    restore(&env, &[], &name(2)).exited(0);
    let mut job = env.spawn(&["-d"], &name(3), &[]);
    job.wait_ready();
    let_it_start();
    job.signal(libc::SIGTERM);
    job.finish_within(Duration::from_secs(10))
        .died_of(libc::SIGTERM);
    assert!(!spool_dir(&env).exists());
}

#[test]
fn a_spool_directory_inside_the_data_directory_is_refused() {
    let env = Env::new();
    archive_gz(&env, 1, 2);
    for dir in ["pg_wal/spool", "spool", "./pg_wal/../spool"] {
        let opt = format!("--spool-dir={dir}");
        restore(&env, &[&opt], &name(1))
            .exited(0)
            .logged("is inside the data directory");
        assert_restored(&env, &name(1));
        assert!(!env.datadir.join(dir).exists(), "{dir} was made");
    }
}

#[test]
fn the_fetcher_ends_with_the_server_run_that_started_it() {
    let env = Env::new();
    archive_gz(&env, 1, 2);
    // A "server" that is this test process; its next segments do not come.
    let pid = std::process::id();
    let pidfile = env.datadir.join("postmaster.pid");
    fs::write(&pidfile, format!("{pid}\n/data\n1000\n")).unwrap();
    restore(&env, &[], &name(1)).exited(0);
    wait_spooled(&env, &name(2));
    assert!(fetcher_pid(&env).is_some());
    // The server stopped (its pid may be anyone's now): well before the
    // fetcher's 5 s idle exit, it is gone.
    fs::remove_file(&pidfile).unwrap();
    wait_until(Duration::from_secs(3), "the fetcher to exit", || {
        Ok(fetcher_pid(&env).is_none())
    })
    .unwrap();
}
