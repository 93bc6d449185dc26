//! The binary's behaviour on temporary archives: waiting, delivery,
//! triggers, signals, cleanup and exit codes.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::*;

const S1: &str = "000000010000000000000003";
const S2: &str = "000000010000000000000004";
/// Far under every polling interval and retry schedule these tests set
/// (`-s 5` and more), so it tells a wake-up by an event from one by a poll
/// even on a loaded 2-core machine (100 ms failed there under a load of
/// 7). How fast the event path is, is measured in BENCHMARKS.md.
const PROMPT: Duration = Duration::from_secs(1);

#[test]
fn delivers_a_segment_already_in_the_archive() {
    let env = Env::new();
    env.archive_atomically(S1, &segment(S1));
    let out = env.run(&[], S1, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(fs::read(env.restored()).unwrap(), segment(S1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("restored {S1}")));
    assert!(out.stdout.is_empty());
    assert!(env.stray_files().is_empty());
}

#[test]
fn a_segment_renamed_into_the_archive_is_delivered_promptly() {
    let env = Env::new();
    let bytes = segment(S1);
    let mut run = env.spawn(&["-d", "-s", "60"], S1, &[]);
    run.wait_ready();
    env.archive_atomically(S1, &bytes);
    let landed = Instant::now();
    let done = run.finish_within(Duration::from_secs(10));
    let after_landing = landed.elapsed();
    assert_eq!(done.status.code(), Some(0), "{}", done.log);
    assert!(
        after_landing < PROMPT,
        "took {after_landing:?} after the rename"
    );
    assert_eq!(fs::read(env.restored()).unwrap(), segment(S1));
}

#[test]
fn a_segment_written_slowly_is_not_delivered_early() {
    let env = Env::new();
    let mut run = env.spawn(&["-d", "-s", "60"], S1, &[]);
    run.wait_ready();
    let bytes = segment(S1);
    write_slowly(&env.archive_file(S1), &bytes, 8, Duration::from_millis(40));
    let done = run.finish_within(Duration::from_secs(10));
    assert_eq!(done.status.code(), Some(0), "{}", done.log);
    assert_eq!(
        fs::read(env.restored()).unwrap(),
        bytes,
        "a partial copy was delivered"
    );
    assert!(env.stray_files().is_empty());
}

#[test]
fn without_events_the_polling_floor_still_finds_the_segment() {
    let env = Env::new();
    let mut run = env.spawn(&["-d", "--no-watch", "-s", "1"], S1, &[]);
    run.wait_ready();
    env.archive_atomically(S1, &segment(S1));
    let done = run.finish_within(Duration::from_secs(5));
    assert_eq!(done.status.code(), Some(0), "{}", done.log);
    assert!(
        done.elapsed >= Duration::from_millis(500),
        "found before the first poll?"
    );
}

#[test]
fn an_empty_trigger_ends_the_wait_promptly_with_a_smart_failover() {
    let env = Env::new();
    let trigger = env.path("trigger");
    let t = trigger.display().to_string();
    let mut run = env.spawn(&["-d", "-s", "60", "-t", &t], S1, &[]);
    run.wait_ready();
    let created = Instant::now();
    fs::write(&trigger, "").unwrap();
    let done = run.finish_within(Duration::from_secs(10));
    let after = created.elapsed();
    assert_eq!(done.status.code(), Some(1), "{}", done.log);
    assert!(after < PROMPT, "took {after:?} after the trigger");
    assert!(done.log.contains("smart failover"), "{}", done.log);
    assert!(
        trigger.exists(),
        "the trigger file is the operator's to remove"
    );
    assert!(!env.restored().exists());
}

/// Set a file's mtime `ago` in the past (its ctime stays now).
fn age_mtime(path: &std::path::Path, ago: Duration) {
    let then = std::time::SystemTime::now() - ago;
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(then)
        .unwrap();
}

/// No server (no postmaster.pid in the working directory): any trigger
/// fails over, however old, as in pg_standby 13.
#[test]
fn without_a_server_an_old_trigger_still_fails_over() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "").unwrap();
    age_mtime(&trigger, Duration::from_secs(86_400));
    let t = trigger.display().to_string();
    let done = env
        .spawn(&["-s", "60", "-t", &t], S1, &[])
        .finish_within(Duration::from_secs(10));
    assert_eq!(done.status.code(), Some(1), "{}", done.log);
    assert!(done.log.contains("smart failover"), "{}", done.log);
    assert!(!done.log.contains("older than this server's start"));
}

/// A server that started after the trigger was last changed: the trigger
/// is stale, an ERROR says so once, and the call keeps waiting (here
/// until -w ends it).
#[test]
fn a_trigger_older_than_the_server_is_an_error_not_a_failover() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "fast\n").unwrap();
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let made = secs(fs::metadata(&trigger).unwrap().modified().unwrap());
    let deadline = Instant::now() + Duration::from_secs(3);
    while secs(std::time::SystemTime::now()) <= made {
        assert!(Instant::now() < deadline, "the clock does not move");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = secs(std::time::SystemTime::now());
    fs::write(
        env.datadir.join("postmaster.pid"),
        format!("{}\n/data\n{started}\n", std::process::id()),
    )
    .unwrap();
    let t = trigger.display().to_string();
    let done = env
        .spawn(&["-s", "60", "-w", "1", "-t", &t], S1, &[])
        .finish_within(Duration::from_secs(10));
    assert_eq!(done.status.code(), Some(1), "{}", done.log);
    assert!(done.elapsed >= Duration::from_secs(1), "{:?}", done.elapsed);
    assert_eq!(
        done.log.matches("older than this server's start").count(),
        1,
        "{}",
        done.log
    );
    assert!(
        done.log.contains(&format!("ERROR: trigger file \"{t}\"")),
        "{}",
        done.log
    );
    assert!(done.log.contains("failover after -w"), "{}", done.log);
    assert!(!done.log.contains("fast failover"), "{}", done.log);
    // Not read, so not truncated either.
    assert_eq!(fs::read_to_string(&trigger).unwrap(), "fast\n");
}

#[test]
fn smart_failover_still_restores_what_the_archive_holds() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "smart\n").unwrap();
    env.archive_atomically(S1, &segment(S1));
    let t = trigger.display().to_string();
    assert_eq!(env.run(&["-t", &t], S1, &[]).status.code(), Some(0));
    let out = env.run(&["-t", &t], S2, &[]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn fast_trigger_fails_over_at_once_and_is_truncated() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "fast\n").unwrap();
    env.archive_atomically(S1, &segment(S1));
    let t = trigger.display().to_string();
    let out = env.run(&["-t", &t], S1, &[]);
    assert_eq!(out.status.code(), Some(1), "fast failover does not restore");
    assert!(!env.restored().exists());
    assert_eq!(
        fs::read(&trigger).unwrap(),
        b"",
        "truncated so later calls are smart"
    );
    assert_eq!(env.run(&["-t", &t], S1, &[]).status.code(), Some(0));
}

#[test]
fn unknown_trigger_content_is_ignored_with_a_warning() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "FAST").unwrap();
    let t = trigger.display().to_string();
    let out = env.run(&["-t", &t, "-w", "1"], S1, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid content in trigger file"), "{err}");
    assert!(err.contains("-w 1"), "it waited for the timeout: {err}");
    assert_eq!(
        err.matches("invalid content").count(),
        1,
        "warned once: {err}"
    );
}

/// The trigger file's content is untrusted: it reaches the server's log
/// escaped, on one line, and cannot forge a line of its own.
#[test]
fn trigger_content_cannot_forge_a_log_line() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "x\nLOG:  forged\0").unwrap();
    let t = trigger.display().to_string();
    let out = env.run(&["-t", &t, "-w", "1"], S1, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("forged")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("WARNING: invalid content in trigger file")
            && lines[0].contains(r#""x\nLOG:  forged\0""#),
        "{err}"
    );
    assert!(err.lines().all(is_log_line), "{err}");
    assert!(!err.contains('\0'), "{err:?}");
}

#[test]
fn max_wait_fails_over_after_the_given_seconds() {
    let env = Env::new();
    let run = env.spawn(&["-w", "1", "-s", "5"], S1, &[]);
    let done = run.finish_within(Duration::from_secs(5));
    assert_eq!(done.status.code(), Some(1));
    assert!(done.elapsed >= Duration::from_secs(1), "{:?}", done.elapsed);
    assert!(
        done.elapsed < Duration::from_millis(2500),
        "{:?}",
        done.elapsed
    );
    assert!(
        done.log.contains("failover after -w: waited 1 s"),
        "{}",
        done.log
    );
}

#[test]
fn a_history_file_is_copied() {
    let env = Env::new();
    let history = "1\t0/3000060\tno recovery target specified\n";
    env.archive_atomically("00000002.history", history.as_bytes());
    let out = env.run(&[], "00000002.history", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(env.datadir.join("pg_wal/RECOVERYHISTORY")).unwrap(),
        history
    );
}

#[test]
fn bad_arguments_stop_recovery_and_name_the_problem() {
    let env = Env::new();
    let a = env.archive.display().to_string();
    let missing = env.path("no-such-archive").display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "must specify archive location"),
        (vec![&a], "use \"%f\""),
        (vec![&a, S1], "use \"%p\""),
        (vec!["-s", "0", &a, S1, "p"], "-s sleeptime"),
        (vec!["-s", "61", &a, S1, "p"], "-s sleeptime"),
        (vec!["-k", "-1", &a, S1, "p"], "-k keepfiles"),
        (vec!["-r", "-2", &a, S1, "p"], "-r maxretries"),
        (vec!["-w", "x", &a, S1, "p"], "-w maxwaittime"),
        (vec!["-x", &a, S1, "p"], "-x"),
        (vec!["-t", &a, S1, "p"], "use \"%p\""),
        (vec![&missing, S1, "p"], "does not exist"),
        (vec![&a, "pg_wal/RECOVERYXLOG", S1], "invalid WAL file name"),
        (
            vec![&a, "000000010000000000000003x", "p"],
            "invalid WAL file name",
        ),
        (
            vec![&a, "00000001000000000000000a", "p"],
            "invalid WAL file name",
        ),
        (vec![&a, S1, "p", "%r"], "invalid restart file name"),
    ];
    for (args, needle) in cases {
        let out = env.command(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(FATAL), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} should mention {needle:?}: {err}"
        );
        assert!(
            err.to_lowercase().contains("exiting with 250"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
        // As the README promises: every line is ours, no clap noise.
        assert!(err.lines().all(is_log_line), "{args:?}: {err}");
        assert!(!err.contains("tip:") && !err.contains("Usage:"), "{err}");
        assert!(!err.contains("?;") && !err.contains(".;"), "{err}");
    }
}

#[test]
fn a_usage_error_says_what_is_wrong_and_points_to_the_help() {
    let out = std::process::Command::new(binary())
        .args(["-x", "/a", S1, "p"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].contains("ERROR: unexpected argument '-x' found; exiting with 250"));
    assert!(lines[1].ends_with("HINT: Try \"pg_standby --help\" for more information."));
}

#[test]
fn legacy_exit_codes_are_pg_standby_13s() {
    let env = Env::new();
    let missing = env.path("nope").display().to_string();
    let out = env
        .command(&["--legacy-exit-codes", &missing, S1, "p"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = env
        .command(&["--legacy-exit-codes", "-s", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let mut big = segment(S1);
    big.extend_from_slice(&[0; 8192]);
    env.archive_atomically(S1, &big);
    let out = env.run(&["--legacy-exit-codes", "--bad-file-timeout", "1"], S1, &[]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn help_and_version_go_to_stdout() {
    for flag in ["--help", "-?", "--version", "-V"] {
        let out = std::process::Command::new(binary())
            .arg(flag)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(!out.stdout.is_empty(), "{flag}");
        assert!(out.stderr.is_empty(), "{flag}");
    }
}

#[test]
fn help_and_version_follow_postgresqls_tools() {
    let run = |flag| {
        let out = std::process::Command::new(binary())
            .arg(flag)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // PostgreSQL's tools print "NAME VERSION" first; then what is built in.
    let version = run("-V");
    let mut lines = version.lines();
    assert_eq!(
        lines.next(),
        Some(format!("pg_standby {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert!(
        lines.next().unwrap().starts_with("codecs: gzip zstd"),
        "{version}"
    );
    assert!(lines.next().unwrap().starts_with("stores: directory s3"));
    assert_eq!(run("--version"), version);
    let help = run("--help");
    // The archive's forms, the compressed names, the environment, and -w
    // described as what it does (it finishes what is in flight, as a
    // smart failover does).
    for needle in [
        "s3://BUCKET/PREFIX",
        "%f.zst",
        "AWS_ACCESS_KEY_ID",
        "like a smart failover",
    ] {
        assert!(help.contains(needle), "{needle} not in {help}");
    }
    assert!(!help.contains("(fast) after"), "{help}");
    assert!(help.contains(
        "Usage:\n  pg_standby [OPTION]... ARCHIVELOCATION NEXTWALFILE XLOGFILEPATH [RESTARTWALFILE]\n"
    ));
    assert!(!help.contains("[ARCHIVELOCATION]"), "{help}");
    assert!(help.contains("\n  -l  "), "{help}");
    assert!(help.contains("\n  -?, --help "), "{help}");
    assert!(help.contains("\nReport bugs "), "{help}");
}

/// The archive's files, without the standbys' registry (`.pg_standby/`).
fn archive_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(&env.archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".pg_standby")
        .collect();
    names.sort();
    names
}

fn fill_archive(env: &Env, names: &[&str]) {
    for name in names {
        env.archive_atomically(name, &segment(name));
    }
}

#[test]
fn restart_file_cleanup_removes_older_segments_only() {
    let env = Env::new();
    let old = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003",
        "000000010000000000000004",
    ];
    fill_archive(&env, &old);
    env.archive_atomically("000000010000000000000002.partial", b"x");
    env.archive_atomically("00000002.history", b"x");
    let out = env.run(&[], S2, &["000000010000000000000003"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        archive_names(&env),
        [
            "000000010000000000000002.partial",
            "000000010000000000000003",
            "000000010000000000000004",
            "00000002.history"
        ]
    );
}

#[test]
fn cleanup_is_skipped_when_the_restart_file_is_later() {
    let env = Env::new();
    fill_archive(&env, &["000000010000000000000001", S1]);
    let out = env.run(&[], S1, &["000000010000000000000009"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(archive_names(&env).len(), 2);
    let out = env.run(&[], S1, &["000000000000000000000000"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(archive_names(&env).len(), 2);
}

#[test]
fn dry_run_only_logs() {
    let env = Env::new();
    fill_archive(
        &env,
        &["000000010000000000000001", "000000010000000000000002", S1],
    );
    let out = env.run(&["-n"], S1, &[S1]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(archive_names(&env).len(), 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would remove"), "{err}");
}

#[test]
fn keep_files_keeps_n_before_the_requested_segment() {
    let env = Env::new();
    fill_archive(
        &env,
        &[
            "000000010000000000000001",
            "000000010000000000000002",
            S1,
            S2,
        ],
    );
    let out = env.run(&["-k", "1"], S2, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(archive_names(&env), [S1, S2]);
}

#[test]
fn standby_mode_answers_at_once() {
    let env = Env::standby_mode();
    let started = Instant::now();
    let out = env.run(&["-s", "5"], S1, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    env.archive_atomically(S1, &segment(S1));
    assert_eq!(env.run(&[], S1, &[]).status.code(), Some(0));
}

#[test]
fn standby_wait_bounds_the_wait_in_standby_mode() {
    let env = Env::standby_mode();
    let run = env.spawn(&["--standby-wait", "1"], S1, &[]);
    let done = run.finish_within(Duration::from_secs(5));
    assert_eq!(done.status.code(), Some(1));
    assert!(done.elapsed >= Duration::from_secs(1));
}

/// PostgreSQL 12 and older ask for the newest timeline's name first, even
/// for segments from before that timeline began.
#[test]
fn a_name_before_its_timeline_began_is_answered_at_once() {
    let env = Env::new();
    env.archive_atomically(
        "00000002.history",
        b"1\t0/5000060\tno recovery target specified\n",
    );
    env.archive_atomically(S1, &segment(S1));
    let started = Instant::now();
    let out = env.run(&["-s", "5"], "000000020000000000000003", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can never exist"), "{err}");
    // The timeline's first segment (holding the switch point) is waited for.
    let out = env.run(&["-w", "1"], "000000020000000000000005", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-w 1"));
}

#[test]
fn smart_failover_waits_for_a_segment_still_being_archived() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "").unwrap();
    let t = trigger.display().to_string();
    let bytes = segment(S1);
    let path = env.archive_file(S1);
    fs::write(&path, &bytes[..bytes.len() / 4]).unwrap();
    let mut run = env.spawn(&["-d", "-s", "2", "-t", &t], S1, &[]);
    run.wait_ready();
    fs::write(&path, &bytes).unwrap();
    let done = run.finish_within(Duration::from_secs(5));
    assert_eq!(done.status.code(), Some(0), "{}", done.log);
    assert_eq!(fs::read(env.restored()).unwrap(), bytes);
}

#[test]
fn smart_failover_gives_up_on_a_stalled_partial_segment() {
    let env = Env::new();
    let trigger = env.path("trigger");
    fs::write(&trigger, "").unwrap();
    let t = trigger.display().to_string();
    let bytes = segment(S1);
    fs::write(env.archive_file(S1), &bytes[..bytes.len() / 4]).unwrap();
    let done = env
        .spawn(&["-s", "1", "-t", &t], S1, &[])
        .finish_within(Duration::from_secs(5));
    assert_eq!(done.status.code(), Some(1), "{}", done.log);
    assert!(done.elapsed >= Duration::from_secs(1));
    assert!(
        done.log.contains("is in the archive but not restored"),
        "{}",
        done.log
    );
    assert!(!env.restored().exists());
}

#[test]
fn fsync_option_delivers_the_same_file() {
    let env = Env::new();
    env.archive_atomically(S1, &segment(S1));
    let out = env.run(&["--fsync"], S1, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(fs::read(env.restored()).unwrap(), segment(S1));
    assert!(env.stray_files().is_empty());
}

/// CPU time (user + system) a running process has used so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Our own looks at a present but incomplete file, and at an invalid
/// trigger file, must not wake us again (inotify reports opens too).
#[test]
fn waiting_on_an_incomplete_file_does_not_spin() {
    let env = Env::new();
    fs::write(env.archive_file(S1), &segment(S1)[..100_000]).unwrap();
    let trigger = env.path("trigger");
    fs::write(&trigger, "not a trigger").unwrap();
    let t = trigger.display().to_string();
    let mut run = env.spawn(&["-s", "60", "-t", &t], S1, &[]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(run.is_running());
    let used = cpu_time(run.pid());
    run.signal(libc::SIGTERM);
    let _ = run.finish_within(Duration::from_secs(5));
    assert!(
        used < Duration::from_millis(200),
        "used {used:?} of CPU in 1 s of waiting"
    );
}

/// The restored file's mode follows the server's umask, as cp's would
/// (0640 on a cluster initialised with --allow-group-access).
#[test]
fn the_restored_file_mode_follows_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    env.archive_atomically(S1, &segment(S1));
    let args = env.restore_args(&[], S1, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.command(&args);
    // SAFETY: umask is async-signal-safe and cannot fail.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o027);
            Ok(())
        });
    }
    assert_eq!(cmd.output().unwrap().status.code(), Some(0));
    let mode = fs::metadata(env.restored()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

/// A uid nobody else on the machine uses: its inotify instances can be
/// exhausted without slowing down anyone else's watches.
const LONELY: u32 = 61_234;

fn chown_tree(path: &std::path::Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

/// With no inotify instance left for its user (fs.inotify.max_user_instances
/// reached), the wait falls back to polling: one WARNING says so, names the
/// sysctl, and the segment still arrives within -s.
#[test]
fn exhausted_inotify_instances_warn_once_and_poll() {
    use std::os::unix::process::CommandExt;
    require_root("to run the binary as a user of its own");
    let env = Env::new();
    let bin = env.path("pg_standby");
    fs::copy(binary(), &bin).unwrap();
    chown_tree(env.root.path(), LONELY);
    let args = env.restore_args(&["-d", "-s", "1"], S1, &[]);
    let mut cmd = std::process::Command::new(&bin);
    cmd.current_dir(&env.datadir).args(&args);
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(LONELY) != 0
                || libc::setuid(LONELY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Take every instance this user may have; the descriptors
            // (without close-on-exec) stay open in the program.
            for _ in 0..100_000 {
                if libc::inotify_init1(0) < 0 {
                    let e = std::io::Error::last_os_error();
                    return match e.raw_os_error() {
                        Some(libc::EMFILE) => Ok(()),
                        _ => Err(e),
                    };
                }
            }
            Err(std::io::Error::other("inotify instances never ran out"))
        });
    }
    let mut job = Job::launch(&env, cmd);
    job.wait_log("fs.inotify.max_user_instances");
    env.archive_atomically(S1, &segment(S1));
    let landed = Instant::now();
    let done = job.finish_within(Duration::from_secs(10));
    done.exited(0).logged("WARNING: cannot watch file events");
    assert!(
        landed.elapsed() < Duration::from_millis(2500),
        "{}",
        done.log
    );
    assert_eq!(
        done.log.matches("max_user_instances").count(),
        1,
        "{}",
        done.log
    );
    assert_eq!(fs::read(env.restored()).unwrap(), segment(S1));
}

/// The cleanup for `%r` runs after the call has answered: here another
/// cleanup holds the archive's lock, and the call still exits at once with
/// its segment in place; the old segments go once the lock is released.
#[test]
fn the_exit_does_not_wait_for_the_cleanup() {
    use std::os::fd::AsRawFd;
    let env = Env::new();
    fill_archive(
        &env,
        &["000000010000000000000001", "000000010000000000000002", S1],
    );
    let dir = fs::File::open(&env.archive).unwrap();
    // SAFETY: flock on a descriptor this test holds open.
    assert_eq!(unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) }, 0);
    let done = env
        .spawn(&[], S1, &[S1])
        .finish_within(Duration::from_secs(10));
    done.exited(0);
    assert!(env.restored().exists());
    assert_eq!(archive_names(&env).len(), 3, "removed before the exit");
    drop(dir);
    wait_until(Duration::from_secs(10), "the cleanup", || {
        Ok(archive_names(&env) == [S1])
    })
    .unwrap();
}

/// A call that has to wait cleans up while it waits, before its segment
/// arrives: not while the server replays the segment it delivers.
#[test]
fn a_waiting_call_cleans_up_before_its_segment_arrives() {
    let env = Env::new();
    fill_archive(
        &env,
        &["000000010000000000000001", "000000010000000000000002"],
    );
    let job = env.spawn(&["-d"], S1, &[S1]);
    wait_until(Duration::from_secs(10), "the cleanup", || {
        Ok(archive_names(&env).is_empty())
    })
    .unwrap();
    assert!(!env.restored().exists());
    env.archive_atomically(S1, &segment(S1));
    let done = job.finish_within(Duration::from_secs(10));
    done.exited(0);
    assert!(!done.log.contains("cleanup handed off"), "{}", done.log);
    assert!(env.restored().exists());
}

/// A server that reads WAL ahead (recovery_prefetch left at its default
/// on 15 and later) asks for segments before it has replayed the one
/// before, and recovery stalls: a call that has to wait says why in the
/// server's log; with recovery_prefetch = off it says nothing of it.
#[test]
fn a_waiting_call_names_recovery_prefetch_when_the_server_reads_ahead() {
    for (conf, warned) in [("", true), ("recovery_prefetch = off\n", false)] {
        let env = Env::new();
        fs::write(env.datadir.join("PG_VERSION"), "15\n").unwrap();
        fs::write(
            env.datadir.join("postgresql.conf"),
            format!(
                "restore_command = 'pg_standby {} %f %p'\n{conf}",
                env.archive.display()
            ),
        )
        .unwrap();
        let mut run = env.spawn(&["-d", "-s", "60"], S1, &[]);
        run.wait_log("wake-ups in place");
        env.archive_atomically(S1, &segment(S1));
        let done = run.finish_within(Duration::from_secs(10));
        done.exited(0);
        assert_eq!(
            done.log.contains("recovery_prefetch"),
            warned,
            "{conf:?}:\n{}",
            done.log
        );
    }
}
