//! Fault injection: one test per way the archive, the destination, the
//! caller or the operator can go wrong. Each test checks the exit code (or
//! the signal the process died of), what is at %p (nothing, or a complete
//! byte-identical copy), that the archive is untouched, that no temporary
//! file is left behind, and the key phrase of the log line.
//!
//! Tests that need an unprivileged user run the binary as uid/gid 65534
//! (nobody) through `pre_exec` when the suite runs as root (CI, containers),
//! and as the current user otherwise.

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const NAME: &str = "000000010000000000000005";
const NOBODY: u32 = 65534;
const GIB: u64 = 1024 * MIB;

fn args(env: &Env, opts: &[&str], name: &str) -> Vec<String> {
    env.restore_args(opts, name, &[])
}

fn cmd(env: &Env, args: &[String]) -> Command {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.command(&args)
}

/// `pg_standby -d -s 1 --bad-file-timeout 1 [opts] ARCHIVE name pg_wal/RECOVERYXLOG`
fn start(env: &Env, opts: &[&str], name: &str) -> Job {
    Job::launch(env, cmd(env, &args(env, &quick(opts), name)))
}

fn quick<'a>(opts: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["-d", "-s", "1", "--bad-file-timeout", "1"];
    all.extend_from_slice(opts);
    all
}

// ---------------------------------------------------------------------------
// Outcome checks.

#[track_caller]
fn assert_nothing_delivered(env: &Env) {
    assert!(!env.restored().exists(), "something was left at %p");
    assert_eq!(env.stray_files(), Vec::<String>::new(), "stray files");
}

#[track_caller]
fn assert_archive_holds(env: &Env, name: &str, bytes: &[u8]) {
    let got = fs::read(env.archive_file(name)).expect("archive file gone");
    assert!(got == bytes, "the archive file was changed");
    let temps: Vec<String> = fs::read_dir(&env.archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".pg_standby"))
        .collect();
    assert!(
        temps.is_empty(),
        "temporary files in the archive: {temps:?}"
    );
}

/// Compare two possibly huge files without loading them whole.
fn same_content(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let (mut ba, mut bb) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

fn temp_files_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".pg_standby."))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Privileges.

/// As root, make the whole environment nobody's, so that the binary can
/// run as nobody; otherwise a no-op (the files are already ours).
fn hand_over(env: &Env) {
    if is_root() {
        chown_tree(env.root.path());
    }
}

fn chown_tree(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    if path.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path());
        }
    }
}

/// Run the child unprivileged: as nobody when we are root (root ignores
/// file modes), as ourselves otherwise. As nobody it runs a copy of the
/// binary inside the environment, since the build directory may be out of
/// nobody's reach (a clone in root's home).
fn unprivileged(env: &Env, cmd: Command) -> Command {
    if !is_root() {
        return cmd;
    }
    let bin = env.root.path().join("pg_standby");
    fs::copy(binary(), &bin).unwrap();
    std::os::unix::fs::chown(&bin, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut c = Command::new(&bin);
    c.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        c.current_dir(dir);
    }
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------
// Files in the archive that are not (yet) a deliverable segment.

/// An archive_command that died mid-copy leaves a file that never grows.
/// Stopping the server would block the failover the operator now needs:
/// keep waiting, say so once, and let the trigger or `-w` decide.
#[test]
fn truncated_file_that_never_grows_is_waited_for_until_failover() {
    let env = Env::new();
    let half = segment(NAME)[..(SEG / 2) as usize].to_vec();
    env.archive_atomically(NAME, &half);
    let done = start(&env, &["-w", "3"], NAME).finish_within(Duration::from_secs(8));
    done.exited(1)
        .logged("has stayed incomplete for ")
        .logged("s: it is incomplete (8388608 of 16777216 bytes); still waiting")
        .logged("-w expired: 000000010000000000000005 is in the archive but not restored: it is incomplete (8388608 of 16777216 bytes)");
    assert!(done.elapsed >= Duration::from_secs(3), "{:?}", done.elapsed);
    assert_eq!(
        done.log.matches("has stayed incomplete").count(),
        1,
        "warned once"
    );
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &half);
}

#[test]
fn growing_file_is_delivered_only_once_complete() {
    let env = Env::new();
    let bytes = segment(NAME);
    let mut job = start(&env, &[], NAME);
    job.wait_ready();
    let path = env.archive_file(NAME);
    let mut f = fs::File::create(&path).unwrap();
    let chunks: Vec<&[u8]> = bytes.chunks(bytes.len() / 6 + 1).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        std::io::Write::write_all(&mut f, chunk).unwrap();
        if i + 1 < chunks.len() {
            // Pauses shorter than --bad-file-timeout: a growing file is
            // waited for, never delivered early, never given up on.
            std::thread::sleep(Duration::from_millis(200));
            assert!(!env.restored().exists(), "delivered while incomplete");
            assert!(job.is_running(), "gave up on a growing file");
        }
    }
    drop(f);
    let done = job.finish_within(Duration::from_secs(4));
    done.exited(0)
        .logged("restored 000000010000000000000005 after");
    assert_delivered(&env, &bytes);
    assert_archive_holds(&env, NAME, &bytes);
}

#[test]
fn zero_length_file_is_waited_for_until_failover() {
    let env = Env::new();
    env.archive_atomically(NAME, b"");
    let done = start(&env, &["-w", "2"], NAME).finish_within(Duration::from_secs(6));
    done.exited(1)
        .logged("-w expired: 000000010000000000000005 is in the archive but not restored: it is incomplete (0 bytes, header not yet written)");
    assert!(done.elapsed >= Duration::from_secs(2));
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, b"");
}

/// `-w` must not skip past a bad segment: that would promote the standby
/// without it and everything after it.
#[test]
fn max_wait_does_not_fail_over_past_a_foreign_segment() {
    let env = Env::new();
    let foreign = segment_bytes(NAME, SEG, 42, SEG);
    env.archive_atomically(NAME, &foreign);
    let done = start(&env, &["-w", "1", "--bad-file-timeout", "60"], NAME)
        .finish_within(Duration::from_secs(5));
    done.exited(FATAL)
        .logged("it belongs to another cluster")
        .logged("not failing over past it");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &foreign);
}

/// A smart failover restores what the archive holds; a segment there that
/// cannot be used stops recovery instead of being skipped.
#[test]
fn smart_failover_does_not_skip_an_oversized_segment() {
    let env = Env::new();
    let big = segment_bytes(NAME, SEG, SYSID, SEG + 8192);
    env.archive_atomically(NAME, &big);
    let trigger = env.path("trigger");
    fs::write(&trigger, "").unwrap();
    let t = trigger.display().to_string();
    let done = start(&env, &["-t", &t], NAME).finish_within(Duration::from_secs(5));
    done.exited(FATAL).logged("it is larger than a segment");
    assert_nothing_delivered(&env);
}

#[test]
fn zero_length_file_that_fills_in_time_is_delivered() {
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, b"");
    let mut job = start(&env, &[], NAME);
    job.wait_ready();
    fs::write(env.archive_file(NAME), &bytes).unwrap();
    job.finish_within(Duration::from_secs(4)).exited(0);
    assert_delivered(&env, &bytes);
}

#[test]
fn file_larger_than_a_segment_is_fatal() {
    let env = Env::new();
    let big = segment_bytes(NAME, SEG, SYSID, SEG + 8192);
    env.archive_atomically(NAME, &big);
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("it is larger than a segment (16785408 bytes, its header says 16777216)");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &big);
}

#[test]
fn file_larger_than_a_segment_with_legacy_exit_codes_is_3() {
    let env = Env::new();
    let big = segment_bytes(NAME, SEG, SYSID, SEG + 8192);
    env.archive_atomically(NAME, &big);
    start(&env, &["--legacy-exit-codes"], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(3)
        .logged("exiting with 3 (--legacy-exit-codes)");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &big);
}

#[test]
fn garbage_header_is_fatal() {
    let env = Env::new();
    let garbage = vec![0x41u8; SEG as usize];
    env.archive_atomically(NAME, &garbage);
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("it is not a WAL segment (unknown magic 0x4141")
        .logged("waiting up to 1 s for a valid copy");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &garbage);
}

#[test]
fn right_header_under_the_wrong_name_is_fatal() {
    let env = Env::new();
    // The segment for ...05 stored as ...06.
    let other = "000000010000000000000006";
    let bytes = segment(NAME);
    env.archive_atomically(other, &bytes);
    start(&env, &[], other)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("it starts at LSN 0/5000000 but its name belongs at 0/6000000")
        .logged("stored under the wrong name");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, other, &bytes);
}

#[test]
fn segment_from_another_cluster_is_fatal() {
    let env = Env::new();
    let foreign = segment_bytes(NAME, SEG, 42, SEG);
    env.archive_atomically(NAME, &foreign);
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("it belongs to another cluster (system identifier 42, this standby's is 7300000000000000001)");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &foreign);
}

#[test]
fn sysid_check_is_skipped_without_pg_control() {
    let env = Env::new();
    fs::remove_file(env.datadir.join("global/pg_control")).unwrap();
    let foreign = segment_bytes(NAME, SEG, 42, SEG);
    env.archive_atomically(NAME, &foreign);
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(3))
        .exited(0)
        .logged("not checking segments' system identifier: cannot read global/pg_control");
    assert_delivered(&env, &foreign);
    assert_archive_holds(&env, NAME, &foreign);
}

// ---------------------------------------------------------------------------
// The destination.

#[test]
fn destination_full_retries_then_fatal_without_leftovers() {
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes);
    let mut c = cmd(&env, &args(&env, &quick(&["-r", "1"]), NAME));
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            // A write past 1 MiB fails with EFBIG, as on a full disk, and
            // SIGXFSZ is ignored so it is an error, not a death.
            let limit = libc::rlimit {
                rlim_cur: MIB,
                rlim_max: MIB,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    Job::launch(&env, c)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("File too large")
        .logged("retrying in 0 s (attempt 1 of 2 failed)")
        .logged("(failed 2 time(s)); free space or fix permissions in pg_wal")
        .logged("exiting with 250");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &bytes);
}

#[test]
fn destination_read_only_retries_then_fatal() {
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes);
    hand_over(&env);
    chmod(&env.datadir.join("pg_wal"), 0o555);
    let c = unprivileged(&env, cmd(&env, &args(&env, &quick(&["-r", "1"]), NAME)));
    let done = Job::launch(&env, c).finish_within(Duration::from_secs(5));
    chmod(&env.datadir.join("pg_wal"), 0o755);
    done.exited(FATAL)
        .logged("could not create a temporary file in \"pg_wal\"")
        .logged("(failed 2 time(s)); free space or fix permissions in pg_wal")
        .logged("exiting with 250");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &bytes);
}

// ---------------------------------------------------------------------------
// The archive.

#[test]
fn archive_missing_is_fatal_not_a_failover() {
    let env = Env::new();
    fs::remove_dir(&env.archive).unwrap();
    let done = start(&env, &[], NAME).finish_within(Duration::from_secs(2));
    done.exited(FATAL).logged("does not exist");
    assert_nothing_delivered(&env);
    // pg_standby 13's code, which promotes, only on request.
    start(&env, &["--legacy-exit-codes"], NAME)
        .finish_within(Duration::from_secs(2))
        .exited(2);
}

#[test]
fn archive_directory_removed_and_recreated_during_the_wait() {
    let env = Env::new();
    let bytes = segment(NAME);
    let mut job = start(&env, &[], NAME);
    job.wait_ready();
    fs::remove_dir_all(&env.archive).unwrap();
    job.wait_log("is gone");
    assert!(job.is_running(), "gave up when the archive vanished");
    fs::create_dir(&env.archive).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    env.archive_atomically(NAME, &bytes);
    job.finish_within(Duration::from_secs(4))
        .exited(0)
        .logged("restored 000000010000000000000005");
    assert_delivered(&env, &bytes);
    assert_archive_holds(&env, NAME, &bytes);
}

#[test]
fn unreadable_archive_file_is_fatal_after_the_bad_file_timeout() {
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes);
    hand_over(&env);
    chmod(&env.archive_file(NAME), 0o000);
    let c = unprivileged(&env, cmd(&env, &args(&env, &quick(&[]), NAME)));
    let done = Job::launch(&env, c).finish_within(Duration::from_secs(5));
    chmod(&env.archive_file(NAME), 0o644);
    let path = env.archive_file(NAME).display().to_string();
    done.exited(FATAL)
        .logged("it cannot be read: Permission denied")
        .logged("unchanged for 1 s")
        // Who owns it, its mode, and the fix that keeps the only copy.
        .logged(&format!("the file \"{path}\" is owned by "))
        .logged("with mode 0000")
        .logged(&format!("chmod u+r \"{path}\""));
    assert!(!done.log.contains("remove or replace"), "{}", done.log);
    assert!(done.elapsed >= Duration::from_secs(1));
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &bytes);
}

/// The common case: a segment copied in by root (rsync, a restore from
/// backup) with mode 0600, which the server's user cannot read.
#[test]
fn a_segment_only_root_may_read_gets_a_chmod_or_chown_never_a_removal() {
    if !is_root() {
        eprintln!("needs root to make a file another user owns: covered by access::tests");
        return;
    }
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes);
    hand_over(&env);
    std::os::unix::fs::chown(env.archive_file(NAME), Some(0), Some(0)).unwrap();
    chmod(&env.archive_file(NAME), 0o600);
    let c = unprivileged(&env, cmd(&env, &args(&env, &quick(&[]), NAME)));
    let done = Job::launch(&env, c).finish_within(Duration::from_secs(5));
    let path = env.archive_file(NAME).display().to_string();
    done.exited(FATAL)
        .logged(&format!(
            "the file \"{path}\" is owned by root:root with mode 0600"
        ))
        .logged(&format!("chmod o+r \"{path}\" (or chown nobody \"{path}\""));
    assert!(!done.log.contains("remove or replace"), "{}", done.log);
    assert_archive_holds(&env, NAME, &bytes);
}

#[test]
fn unreadable_archive_directory_is_fatal_after_the_bad_file_timeout() {
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes);
    hand_over(&env);
    chmod(&env.archive, 0o000);
    let c = unprivileged(&env, cmd(&env, &args(&env, &quick(&[]), NAME)));
    let done = Job::launch(&env, c).finish_within(Duration::from_secs(5));
    chmod(&env.archive, 0o755);
    done.exited(FATAL)
        .logged("it cannot be read: Permission denied")
        .logged("unchanged for 1 s")
        .logged(&format!(
            "the directory \"{}\" is owned by ",
            env.archive.display()
        ))
        .logged("chmod u+rx");
    assert!(!done.log.contains("remove or replace"), "{}", done.log);
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &bytes);
}

/// An archive this standby may only read (the primary's host writes it):
/// the segment is restored; the cleanup and this standby's registry entry
/// are skipped with a WARNING, and nothing is removed.
#[test]
fn a_read_only_archive_restores_and_skips_the_cleanup() {
    const OLD: &str = "000000010000000000000001";
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(OLD, &segment(OLD));
    env.archive_atomically(NAME, &bytes);
    hand_over(&env);
    if is_root() {
        std::os::unix::fs::chown(&env.archive, Some(0), Some(0)).unwrap();
    }
    chmod(&env.archive, 0o555);
    let mut a = args(&env, &quick(&[]), NAME);
    a.push(NAME.to_string());
    let job = Job::launch(&env, unprivileged(&env, cmd(&env, &a)));
    let log = job.log_file();
    let done = job.finish_within(Duration::from_secs(5));
    done.exited(0);
    assert_delivered(&env, &bytes);
    // The cleanup runs apart, after the exit.
    wait_until(Duration::from_secs(5), "the cleanup's warning", || {
        Ok(fs::read_to_string(&log).is_ok_and(|l| l.contains("archive cleanup skipped")))
    })
    .must();
    chmod(&env.archive, 0o755);
    assert!(env.archive_file(OLD).exists());
    assert!(!env.archive.join(".pg_standby").exists());
}

#[test]
fn read_only_archive_file_is_restored() {
    // pg_standby 13 opened the archive file O_RDWR and never restored it.
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes);
    hand_over(&env);
    if is_root() {
        std::os::unix::fs::chown(env.archive_file(NAME), Some(0), Some(0)).unwrap();
    }
    chmod(&env.archive_file(NAME), 0o444);
    let c = unprivileged(&env, cmd(&env, &args(&env, &quick(&[]), NAME)));
    Job::launch(&env, c)
        .finish_within(Duration::from_secs(3))
        .exited(0);
    assert_delivered(&env, &bytes);
    assert_archive_holds(&env, NAME, &bytes);
}

#[test]
fn flood_of_unrelated_files_does_not_delay_delivery() {
    // On tmpfs where possible: creating 10,000 files on a disk filesystem
    // alone can take seconds.
    let env = if shm_free() >= GIB {
        Env::new_in(Path::new("/dev/shm"))
    } else {
        Env::new()
    };
    let bytes = segment(NAME);
    let mut job = start(&env, &[], NAME);
    job.wait_ready();
    for i in 0..10_000 {
        fs::write(env.archive.join(format!("unrelated.{i}")), b"x").unwrap();
    }
    assert!(job.is_running());
    let landed = Instant::now();
    env.archive_atomically(NAME, &bytes);
    let done = job.finish_within(Duration::from_secs(5));
    let after = landed.elapsed();
    done.exited(0).logged("restored 000000010000000000000005");
    assert!(
        after < Duration::from_millis(1500),
        "delivered {after:?} after the segment landed"
    );
    assert_delivered(&env, &bytes);
    assert_archive_holds(&env, NAME, &bytes);
    assert_eq!(fs::read_dir(&env.archive).unwrap().count(), 10_001);
}

// ---------------------------------------------------------------------------
// The trigger file.

#[test]
fn unreadable_trigger_file_warns_and_keeps_waiting() {
    let env = Env::new();
    let bytes = segment(NAME);
    let trigger = env.path("trigger");
    fs::write(&trigger, "fast").unwrap();
    hand_over(&env);
    chmod(&trigger, 0o000);
    let trigger_arg = trigger.display().to_string();
    let c = unprivileged(
        &env,
        cmd(&env, &args(&env, &quick(&["-t", &trigger_arg]), NAME)),
    );
    let mut job = Job::launch(&env, c);
    job.wait_log("cannot read trigger file");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        job.is_running(),
        "failed over on an unreadable trigger file"
    );
    env.archive_atomically(NAME, &bytes);
    let done = job.finish_within(Duration::from_secs(4));
    chmod(&trigger, 0o644);
    done.exited(0)
        .logged("WARNING: cannot read trigger file")
        .logged("no failover, still waiting");
    assert_eq!(
        done.log.matches("cannot read trigger file").count(),
        1,
        "warned more than once:\n{}",
        done.log
    );
    assert_delivered(&env, &bytes);
    assert_eq!(
        fs::read_to_string(&trigger).unwrap(),
        "fast",
        "trigger touched"
    );
}

#[test]
fn fast_trigger_as_the_segment_lands_never_leaves_a_partial_file() {
    for delay_us in [0u64, 200, 1000, 3000, 10_000] {
        let env = Env::new();
        let bytes = segment(NAME);
        let trigger = env.path("trigger");
        let trigger_arg = trigger.display().to_string();
        let mut job = start(&env, &["-t", &trigger_arg], NAME);
        job.wait_ready();
        env.archive_atomically(NAME, &bytes);
        std::thread::sleep(Duration::from_micros(delay_us));
        fs::write(&trigger, "fast").unwrap();
        let done = job.finish_within(Duration::from_secs(4));
        match done.status.code() {
            Some(0) => assert_delivered(&env, &bytes),
            Some(1) => {
                done.logged("fast failover (trigger file says \"fast\")");
                assert_nothing_delivered(&env);
            }
            _ => panic!("unexpected {}; log:\n{}", done.status, done.log),
        }
        assert_archive_holds(&env, NAME, &bytes);
    }
}

// ---------------------------------------------------------------------------
// Signals.

fn signal_during_wait(signal: i32) -> (Env, Done) {
    let env = Env::new();
    let mut job = start(&env, &[], NAME);
    job.wait_ready();
    job.signal(signal);
    let sent = Instant::now();
    let done = job.finish_within(Duration::from_secs(3));
    assert!(sent.elapsed() < Duration::from_secs(1), "slow to react");
    assert_nothing_delivered(&env);
    (env, done)
}

#[test]
fn sigterm_during_the_wait_dies_of_sigterm() {
    let (_env, done) = signal_during_wait(libc::SIGTERM);
    done.died_of(libc::SIGTERM)
        .logged("shutdown requested (SIGTERM): not restored");
}

#[test]
fn sigquit_during_the_wait_dies_of_sigint() {
    let (_env, done) = signal_during_wait(libc::SIGQUIT);
    done.died_of(libc::SIGINT)
        .logged("immediate shutdown requested (SIGQUIT): not restored");
    // SIGINT, not SIGQUIT's core dump: the server takes it for an abort.
    assert!(!done.status.core_dumped());
}

#[test]
fn sigusr1_during_the_wait_is_a_fast_failover() {
    let (_env, done) = signal_during_wait(libc::SIGUSR1);
    done.exited(1).logged(
        "fast failover (SIGUSR1 received): not restoring 000000010000000000000005; recovery ends",
    );
}

#[test]
fn sigint_during_the_wait_is_a_fast_failover() {
    let (_env, done) = signal_during_wait(libc::SIGINT);
    done.exited(1).logged("fast failover (SIGINT received)");
}

/// Bytes free in /dev/shm (tmpfs), 0 if there is none.
fn shm_free() -> u64 {
    // SAFETY: statvfs on a valid C string into a zeroed struct.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c"/dev/shm".as_ptr(), &mut s) != 0 {
            0
        } else {
            s.f_bavail as u64 * s.f_frsize as u64
        }
    }
}

/// The 1 GiB segment of the copy-in-progress tests.
const BIG: &str = "000000010000000000000002";

/// An environment on tmpfs with room for 1 GiB segments.
fn big_segment_env() -> Env {
    let free = shm_free();
    assert!(
        free >= 8 * GIB,
        "/dev/shm has {free} bytes free; these tests need 8 GiB there for 1 GiB segments"
    );
    Env::new_in(Path::new("/dev/shm"))
}

/// Write the 1 GiB segment `BIG` of cluster `sysid` in place (truncate,
/// write, extend), as a plain `cp` does.
fn write_big_segment(path: &Path, sysid: u64) {
    let mut f = fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, &segment_bytes(BIG, GIB, sysid, 16384)).unwrap();
    f.set_len(GIB).unwrap();
}

/// Wait for the copy's temporary file in pg_wal: false if the call ended
/// or 3 s passed first.
fn copy_started(job: &mut Job, pg_wal: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while temp_files_in(pg_wal).is_empty() {
        if !job.is_running() || Instant::now() > deadline {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

/// A 1 GiB segment on tmpfs, so that the copy lasts long enough to signal
/// the process while its temporary file exists.
fn signal_during_copy(signal: i32) -> (Env, Done) {
    let env = big_segment_env();
    let path = env.archive_file(BIG);
    write_big_segment(&path, SYSID);
    let mut job = Job::launch(&env, cmd(&env, &args(&env, &quick(&[]), BIG)));
    let pg_wal = env.datadir.join("pg_wal");
    if !copy_started(&mut job, &pg_wal) {
        let done = job.finish_within(Duration::from_secs(1));
        panic!(
            "never saw the copy in progress ({}, {:?}); log:\n{}",
            done.status, done.elapsed, done.log
        );
    }
    job.signal(signal);
    // A deadline, not a measurement: a loaded machine copies 1 GiB slowly.
    let done = job.finish_within(Duration::from_secs(60));
    assert_eq!(temp_files_in(&pg_wal), Vec::<String>::new(), "temp left");
    assert_eq!(fs::metadata(&path).unwrap().len(), GIB, "archive changed");
    (env, done)
}

#[test]
fn sigterm_during_a_copy_dies_of_sigterm_and_removes_the_temporary_file() {
    let (env, done) = signal_during_copy(libc::SIGTERM);
    done.died_of(libc::SIGTERM)
        .logged("shutdown requested (SIGTERM)");
    assert_nothing_delivered(&env);
}

#[test]
fn sigquit_during_a_copy_dies_of_sigint_and_removes_the_temporary_file() {
    let (env, done) = signal_during_copy(libc::SIGQUIT);
    done.died_of(libc::SIGINT)
        .logged("immediate shutdown requested (SIGQUIT)");
    assert_nothing_delivered(&env);
}

#[test]
fn sigusr1_during_a_copy_never_leaves_a_partial_file() {
    let (env, done) = signal_during_copy(libc::SIGUSR1);
    match done.status.code() {
        // A copy under way is finished (pg_standby 13 did not look at
        // the flag during a copy either): complete and identical.
        Some(0) => {
            eprintln!("SIGUSR1 during a copy: copy finished, exit 0");
            assert!(same_content(&env.restored(), &env.archive_file(BIG)));
            assert_eq!(env.stray_files(), Vec::<String>::new());
        }
        Some(1) => {
            eprintln!("SIGUSR1 during a copy: exit 1, nothing delivered");
            assert_nothing_delivered(&env);
        }
        _ => panic!("unexpected {}; log:\n{}", done.status, done.log),
    }
}

// ---------------------------------------------------------------------------
// Bad calls.

#[test]
fn malformed_wal_file_names_are_fatal_and_named() {
    let env = Env::new();
    for bad in [
        "../000000010000000000000005",
        "archive/000000010000000000000005",
        "00000001000000000000000a",
        "00000001000000000000005",
        "0000000100000000000000050",
    ] {
        let out = env.run(&["-s", "1"], bad, &[]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(FATAL), "{bad}: {log}");
        let line = log
            .lines()
            .find(|l| l.contains(&format!("invalid WAL file name \"{bad}\"")))
            .unwrap_or_else(|| panic!("{bad}: argument not named:\n{log}"));
        assert!(is_log_line(line), "{line}");
        assert!(log.contains("so that PostgreSQL stops recovery instead of promoting"));
        assert_nothing_delivered(&env);
    }
}

#[test]
fn two_invocations_racing_for_the_same_destination() {
    let env = Env::new();
    let bytes = segment(NAME);
    let mut a = start(&env, &[], NAME);
    let mut b = start(&env, &[], NAME);
    a.wait_ready();
    b.wait_ready();
    env.archive_atomically(NAME, &bytes);
    a.finish_within(Duration::from_secs(4)).exited(0);
    b.finish_within(Duration::from_secs(4)).exited(0);
    assert_delivered(&env, &bytes);
    assert_archive_holds(&env, NAME, &bytes);
}

#[test]
fn two_invocations_racing_for_a_present_segment() {
    let env = Env::new();
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes);
    let a = start(&env, &[], NAME);
    let b = start(&env, &[], NAME);
    a.finish_within(Duration::from_secs(4)).exited(0);
    b.finish_within(Duration::from_secs(4)).exited(0);
    assert_delivered(&env, &bytes);
    assert_archive_holds(&env, NAME, &bytes);
}

// ---------------------------------------------------------------------------
// Standby mode and other callers: never wait.

#[test]
fn standby_mode_missing_segment_answers_1_at_once() {
    let env = Env::standby_mode();
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(3))
        .exited(1)
        .within(Duration::from_secs(1));
    assert_nothing_delivered(&env);
}

#[test]
fn standby_mode_invalid_segment_answers_1_with_an_error() {
    let env = Env::standby_mode();
    let foreign = segment_bytes(NAME, SEG, 42, SEG);
    env.archive_atomically(NAME, &foreign);
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(3))
        .exited(1)
        .within(Duration::from_secs(1))
        .logged("ERROR: not restoring 000000010000000000000005: it belongs to another cluster")
        .logged("answering \"not available\": in standby mode the server retries; exiting with 1");
    assert_nothing_delivered(&env);
    assert_archive_holds(&env, NAME, &foreign);
}

#[test]
fn pg_rewind_style_call_never_waits() {
    let env = Env::new();
    let final_path = format!("pg_wal/{NAME}");
    let call = |opts: &[&str]| {
        let mut a: Vec<String> = quick(opts).iter().map(|s| s.to_string()).collect();
        a.extend([
            env.archive.display().to_string(),
            NAME.to_string(),
            final_path.clone(),
        ]);
        Job::launch(&env, cmd(&env, &a)).finish_within(Duration::from_secs(3))
    };
    // Missing: "not available" at once.
    call(&[])
        .exited(1)
        .within(Duration::from_secs(1))
        .logged("called by a tool such as pg_rewind, not waiting");
    assert!(!env.datadir.join(&final_path).exists());
    // Incomplete: also "not available" at once, not a wait.
    let bytes = segment(NAME);
    env.archive_atomically(NAME, &bytes[..(SEG / 2) as usize]);
    call(&[])
        .exited(1)
        .within(Duration::from_secs(1))
        .logged("not restored: 000000010000000000000005: it is incomplete");
    assert!(!env.datadir.join(&final_path).exists());
    // Complete: delivered to the final name.
    env.archive_atomically(NAME, &bytes);
    call(&[]).exited(0).within(Duration::from_secs(1));
    assert!(fs::read(env.datadir.join(&final_path)).unwrap() == bytes);
    assert!(temp_files_in(&env.datadir.join("pg_wal")).is_empty());
}

// ---------------------------------------------------------------------------
// History files: complete when they appear, answered at once.

#[test]
fn missing_history_file_answers_1_at_once() {
    let env = Env::new();
    // Neither the sleep time nor the retries delay the answer.
    start(&env, &["-s", "5", "-r", "3"], "00000002.history")
        .finish_within(Duration::from_secs(3))
        .exited(1)
        .within(Duration::from_secs(1));
    assert!(!env.datadir.join("pg_wal/RECOVERYHISTORY").exists());
    assert_nothing_delivered(&env);
}

#[test]
fn unreadable_history_file_is_fatal_not_missing() {
    let env = Env::new();
    let history = "00000002.history";
    fs::write(
        env.archive_file(history),
        "1\t0/5000000\tno recovery target specified\n",
    )
    .unwrap();
    hand_over(&env);
    chmod(&env.archive_file(history), 0o000);
    let c = unprivileged(&env, cmd(&env, &args(&env, &quick(&[]), history)));
    let done = Job::launch(&env, c).finish_within(Duration::from_secs(3));
    chmod(&env.archive_file(history), 0o644);
    done.exited(FATAL)
        .within(Duration::from_secs(1))
        .logged("cannot restore 00000002.history")
        .logged("Permission denied");
    assert!(!env.datadir.join("pg_wal/RECOVERYHISTORY").exists());
    assert_nothing_delivered(&env);
}

/// pg_standby 13 decides "size 0 → smart failover" from `stat` alone,
/// before opening the file (CheckForExternalTrigger in REL_13_STABLE's
/// contrib/pg_standby/pg_standby.c), so an empty trigger file
/// the server user cannot read (e.g. `touch`ed by root under umask 077)
/// still fails over. So does ours.
#[test]
fn empty_unreadable_trigger_file_is_a_smart_failover() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "").unwrap();
    hand_over(&env);
    if is_root() {
        std::os::unix::fs::chown(&trigger, Some(0), Some(0)).unwrap();
    }
    chmod(&trigger, 0o000);
    let trigger_arg = trigger.display().to_string();
    let c = unprivileged(
        &env,
        cmd(&env, &args(&env, &quick(&["-t", &trigger_arg]), NAME)),
    );
    let done = Job::launch(&env, c).finish_within(Duration::from_secs(3));
    chmod(&trigger, 0o644);
    done.exited(1).logged("smart failover");
    assert_nothing_delivered(&env);
}

// ---------------------------------------------------------------------------
// An operator's bad day: faults that used to hang, promote or
// deliver the wrong data.

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Old: open() blocked on the FIFO for ever; no signal could end the call.
#[test]
fn fifo_under_a_segment_name_is_a_bad_file_and_never_blocks() {
    let env = Env::new();
    mkfifo(&env.archive_file(NAME));
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("it is a FIFO (named pipe), not a regular file")
        .logged("remove or replace");
    assert_nothing_delivered(&env);
}

#[test]
fn sigterm_ends_a_wait_on_a_fifo() {
    let env = Env::new();
    mkfifo(&env.archive_file(NAME));
    let mut job = start(&env, &["--bad-file-timeout", "60"], NAME);
    job.wait_log("FIFO");
    job.signal(libc::SIGTERM);
    job.finish_within(Duration::from_secs(2))
        .died_of(libc::SIGTERM);
}

#[test]
fn fifo_or_directory_under_a_history_name_is_fatal_at_once() {
    let env = Env::new();
    let history = "00000002.history";
    mkfifo(&env.archive_file(history));
    start(&env, &[], history)
        .finish_within(Duration::from_secs(3))
        .exited(FATAL)
        .within(Duration::from_secs(1))
        .logged("FIFO");
    fs::remove_file(env.archive_file(history)).unwrap();
    fs::create_dir(env.archive_file(history)).unwrap();
    start(&env, &[], history)
        .finish_within(Duration::from_secs(3))
        .exited(FATAL)
        .logged("it is a directory");
}

/// Old: the retry after "source shrank" copied the rewritten inode
/// unchecked and delivered another cluster's segment with exit 0.
#[test]
fn segment_rewritten_in_place_during_the_copy_is_never_delivered() {
    let env = big_segment_env();
    let path = env.archive_file(BIG);
    write_big_segment(&path, SYSID);
    let mut job = start(&env, &[], BIG);
    let pg_wal = env.datadir.join("pg_wal");
    assert!(copy_started(&mut job, &pg_wal), "{}", job.log());
    // Another cluster archiving into the same directory with a plain cp.
    write_big_segment(&path, SYSID + 1);
    let done = job.finish_within(Duration::from_secs(20));
    done.exited(FATAL).logged("belongs to another cluster");
    assert!(!env.restored().exists(), "a foreign segment reached %p");
    assert_eq!(temp_files_in(&pg_wal), Vec::<String>::new());
}

/// Old: a renamed-away archive was waited on silently, and a smart
/// failover then promoted without the segments it could not see.
#[test]
fn archive_renamed_away_is_reported_and_never_a_reason_to_promote() {
    let env = Env::new();
    let trigger = env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = start(&env, &["-t", &trigger_arg, "-s", "10"], NAME);
    job.wait_ready();
    fs::rename(&env.archive, env.path("archive.moved")).unwrap();
    job.wait_log("is gone");
    fs::write(&trigger, "").unwrap();
    let done = job.finish_within(Duration::from_secs(3));
    done.exited(FATAL)
        .within(Duration::from_secs(3))
        .logged("WARNING: archive location")
        .logged("not failing over without it");
    assert_nothing_delivered(&env);
}

/// A new directory at the archive's path (remounted, restored) is seen
/// at once, not after -s.
#[test]
fn archive_coming_back_is_seen_without_waiting_for_the_polling_floor() {
    let env = Env::new();
    let mut job = start(&env, &["-s", "30"], NAME);
    job.wait_ready();
    let moved = env.path("archive.moved");
    fs::rename(&env.archive, &moved).unwrap();
    job.wait_log("is gone");
    let bytes = segment(NAME);
    fs::write(moved.join(NAME), &bytes).unwrap();
    let back = Instant::now();
    fs::rename(&moved, &env.archive).unwrap();
    let done = job.finish_within(Duration::from_secs(5));
    done.exited(0);
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "{:?}",
        back.elapsed()
    );
    assert_delivered(&env, &bytes);
}

/// An unmounted archive leaves the empty directory beneath: it must not
/// look like an archive that lacks the segment.
#[test]
fn archive_unmounted_during_the_wait_is_never_a_reason_to_promote() {
    require_root("to mount a tmpfs");
    let env = Env::new();
    let mount = |what: &str| {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", what])
            .arg(&env.archive)
            .status();
        matches!(status, Ok(s) if s.success())
    };
    assert!(mount("archive"), "cannot mount a tmpfs on the archive");
    let trigger = env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = start(&env, &["-t", &trigger_arg, "-s", "10"], NAME);
    job.wait_ready();
    assert!(
        Command::new("umount")
            .arg(&env.archive)
            .status()
            .unwrap()
            .success()
    );
    job.wait_log("its filesystem was unmounted");
    // Mounted again, with the segment: delivered, not -s later.
    let staging = env.path("staging");
    fs::create_dir(&staging).unwrap();
    assert!(mount("archive"));
    let bytes = segment(NAME);
    fs::write(env.archive_file(NAME), &bytes).unwrap();
    let done = job.finish_within(Duration::from_secs(3));
    let _ = Command::new("umount").arg(&env.archive).status();
    done.exited(0);
    assert_delivered(&env, &bytes);

    // Unmounted, then a smart failover: stop, never promote.
    assert!(mount("archive"));
    let mut job = start(
        &env,
        &["-t", &trigger_arg, "-s", "10"],
        "000000010000000000000006",
    );
    job.wait_ready();
    assert!(
        Command::new("umount")
            .arg(&env.archive)
            .status()
            .unwrap()
            .success()
    );
    job.wait_log("its filesystem was unmounted");
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(3))
        .exited(FATAL)
        .logged("not failing over without it");
}

/// Old: a SIGKILLed copy left its temporary file in pg_wal for good.
#[test]
fn temporary_file_of_a_killed_copy_is_removed_by_the_next_call() {
    let env = big_segment_env();
    write_big_segment(&env.archive_file(BIG), SYSID);
    let pg_wal = env.datadir.join("pg_wal");
    let mut job = start(&env, &[], BIG);
    assert!(copy_started(&mut job, &pg_wal), "{}", job.log());
    // A live copy's temporary file is never touched by another call.
    let concurrent = start(&env, &[], "00000002.history").finish_within(Duration::from_secs(3));
    concurrent.exited(1);
    assert_eq!(temp_files_in(&pg_wal).len(), 1, "{}", concurrent.log);
    job.signal(libc::SIGKILL);
    job.finish_within(Duration::from_secs(2))
        .died_of(libc::SIGKILL);
    let left = temp_files_in(&pg_wal);
    assert_eq!(left.len(), 1, "the kill should leave its temporary file");
    // Age it past the sweep's guard for files being created.
    let old = std::time::SystemTime::now() - Duration::from_secs(10);
    fs::File::options()
        .write(true)
        .open(pg_wal.join(&left[0]))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let done = start(&env, &[], "00000002.history").finish_within(Duration::from_secs(3));
    done.exited(1).logged("killed mid-copy");
    assert_eq!(temp_files_in(&pg_wal), Vec::<String>::new());
}

/// Old: -w cut off a segment still being archived and promoted.
#[test]
fn max_wait_finishes_a_segment_still_being_written() {
    let env = Env::new();
    let bytes = segment(NAME);
    let path = env.archive_file(NAME);
    let mut job = start(&env, &["-w", "1", "-s", "2"], NAME);
    job.wait_ready();
    let mut f = fs::File::create(&path).unwrap();
    let chunk = bytes.len() / 8;
    for part in bytes.chunks(chunk) {
        std::io::Write::write_all(&mut f, part).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(f);
    let done = job.finish_within(Duration::from_secs(5));
    done.exited(0);
    assert!(done.elapsed > Duration::from_secs(2), "{:?}", done.elapsed);
    assert_delivered(&env, &bytes);
}

/// Old: a smart trigger answered 1 at once while `%f.tmp` was being
/// written by the README's own archive_command.
#[test]
fn smart_failover_waits_for_a_segment_arriving_under_a_temporary_name() {
    for temp in [format!("{NAME}.tmp"), format!(".{NAME}.x7Yz2Q")] {
        let env = Env::new();
        let trigger = env.path("trigger");
        let trigger_arg = trigger.display().to_string();
        let bytes = segment(NAME);
        let tmp = env.archive_file(&temp);
        let mut f = fs::File::create(&tmp).unwrap();
        std::io::Write::write_all(&mut f, &bytes[..bytes.len() / 4]).unwrap();
        fs::write(&trigger, "").unwrap();
        let job = start(&env, &["-t", &trigger_arg, "-s", "2"], NAME);
        for part in bytes[bytes.len() / 4..].chunks(bytes.len() / 4) {
            std::thread::sleep(Duration::from_millis(300));
            std::io::Write::write_all(&mut f, part).unwrap();
        }
        drop(f);
        fs::rename(&tmp, env.archive_file(NAME)).unwrap();
        let done = job.finish_within(Duration::from_secs(5));
        done.exited(0);
        assert_delivered(&env, &bytes);
    }
}

#[test]
fn smart_failover_gives_up_on_a_stalled_temporary_file() {
    let env = Env::new();
    let trigger = env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    fs::write(env.archive_file(&format!("{NAME}.tmp")), b"half a segment").unwrap();
    fs::write(&trigger, "").unwrap();
    start(&env, &["-t", &trigger_arg], NAME)
        .finish_within(Duration::from_secs(4))
        .exited(1)
        .logged("it is still being written under another name, unchanged for 1 s; recovery ends");
    assert_nothing_delivered(&env);
}

/// Old: `pg_standby ARCHIVE %f %r` wrote the segment under %r's name into
/// the data directory and exited 0; the server then promoted.
#[test]
fn forgotten_percent_p_is_a_configuration_error() {
    let env = Env::new();
    env.archive_atomically(NAME, &segment(NAME));
    let archive = env.archive.display().to_string();
    let out = env
        .command(&[&archive, NAME, "000000010000000000000003"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(FATAL), "{err}");
    assert!(err.contains("is %p missing from restore_command"), "{err}");
    assert!(!env.datadir.join("000000010000000000000003").exists());

    let out = env.command(&[&archive, NAME, "pg_wal"]).output().unwrap();
    assert_eq!(out.status.code(), Some(FATAL));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));

    let out = env
        .command(&[&archive, NAME, "RECOVERYXLOG"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(FATAL));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the data directory's pg_wal"));

    // pg_rewind's call, with the final name, still works.
    let out = env
        .command(&[&archive, NAME, &format!("pg_wal/{NAME}")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Old: "smart failover: … recovery ends" every 5 s while the standby
/// never promoted.
#[test]
fn trigger_in_standby_mode_says_it_cannot_promote() {
    let env = Env::standby_mode();
    let trigger = env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    fs::write(&trigger, "").unwrap();
    let done = start(&env, &["-t", &trigger_arg, "--standby-wait", "5"], NAME)
        .finish_within(Duration::from_secs(3));
    done.exited(1)
        .within(Duration::from_secs(1))
        .logged("WARNING: trigger file found, but this server runs in standby mode")
        .logged("pg_ctl promote");
    assert!(!done.log.contains("recovery ends"), "{}", done.log);
    assert_eq!(done.log.matches("standby mode (standby.signal)").count(), 1);
}
