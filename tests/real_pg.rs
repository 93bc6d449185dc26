//! Scenario tests against real PostgreSQL servers: a primary archiving into a
//! directory, warm standbys (archive recovery, hot_standby = on) using
//! pg_standby as restore_command.
//!
//!     cargo test --test real_pg                      # local server (Debian: PG 15)
//!     PG_BINDIR=/path/to/bin cargo test --test real_pg
//!     scripts/pg-matrix test                         # PostgreSQL 10..18
//!
//! * `PG_BINDIR`: server binaries; else `pg_config --bindir`, else the newest
//!   `/usr/lib/postgresql/*/bin` (see tests/support/pg.rs).
//! * `PG_STANDBY_BIN`: run the scenarios against another restore command
//!   (e.g. the original pg_standby 13); default: this crate's `pg_standby`.
//! * `PG_HARNESS_KEEP=1`: keep the temp dirs (`/tmp/pgsb-<test>-*`) for a look.
//!
//! Every test has its own temp dir, servers and ports, so they run in
//! parallel; each takes 5-25 s. Server logs (with pg_standby's own messages,
//! which go to the server's stderr) are printed when a test fails. Run as
//! root, the servers run as `postgres` (see the harness).
//!
//! a  rows arrive over 25 segments        h  recovery across a timeline switch
//! b  smart failover keeps every row      i  misconfiguration: FATAL, not promotion
//! c  fast failover skips archived WAL    j  SIGUSR1: fast failover
//! d  -w timeout failover                 k  standby mode: answers at once
//! e  %r cleanup, restart mid-stream
//! f  stop (fast, immediate) while waiting
//! g  1 MB and 64 MB WAL segments         o  a gs:// archive (Cloud Storage)
//!                                        p  three standbys share one archive
//!                                        q  an azure:// archive (Azurite)

mod support;

#[path = "support/s3_server.rs"]
mod s3_server;

#[path = "support/gcs_server.rs"]
mod gcs_server;

#[cfg(feature = "azure")]
#[path = "support/azure_server.rs"]
mod azure_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::pg::{
    BaseBackup, PrimaryOptions, Sandbox, Server, StandbyOptions, pids_running, wait_until,
};
use support::{Must, binary_under_test};

const WAIT: Duration = Duration::from_secs(30);

struct Env {
    sb: Sandbox,
    bin: PathBuf,
    primary: Server,
    /// Cold copy of the primary taken right after initdb (table `t` empty).
    backup: BaseBackup,
}

fn setup(label: &str, popts: PrimaryOptions) -> Env {
    setup_with(label, |_| popts)
}

/// As [`setup`], with primary options that may name the sandbox's paths.
fn setup_with(label: &str, popts: impl FnOnce(&Sandbox) -> PrimaryOptions) -> Env {
    let sb = Sandbox::new(label).must();
    let popts = popts(&sb);
    eprintln!("[{label}] {} in {}", sb.pg().version, sb.path().display());
    let bin = sb.install_binary(&binary_under_test()).must();
    let primary = sb.primary("primary", &popts).must();
    let backup = primary.cold_backup("base").must();
    Env {
        sb,
        bin,
        primary,
        backup,
    }
}

impl Env {
    /// Options for a warm standby using `-s 1 -t <trigger> <options>`.
    fn standby_opts(&self, name: &str, options: &str, with_r: bool) -> (StandbyOptions, PathBuf) {
        let trigger = self.sb.trigger_path(name);
        let opts = format!("-s 1 -t {} {options}", trigger.display());
        let so = StandbyOptions {
            restore_command: self.sb.restore_command(&self.bin, &opts, with_r),
            trigger: Some(trigger.clone()),
            ..Default::default()
        };
        (so, trigger)
    }

    /// A started warm standby from the initial backup; returns it and its trigger path.
    fn standby(&self, name: &str, options: &str, with_r: bool) -> (Server, PathBuf) {
        let (so, trigger) = self.standby_opts(name, options, with_r);
        let s = self.sb.standby(name, &self.backup, &so).must();
        s.start().must();
        (s, trigger)
    }

    /// Insert row `id`, switch WAL, wait until the segment is in the archive.
    fn archive_row(&self, id: i64) -> String {
        let seg = self.primary.insert_and_switch(id).must();
        self.primary.wait_archived(&seg, WAIT).must();
        seg
    }
}

fn binary_processes(bin: &Path) -> Vec<u32> {
    pids_running(bin)
}

fn describe_process(pid: u32) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    format!(
        "{pid}: {} [{}]",
        String::from_utf8_lossy(&cmd).replace('\0', " "),
        stat.trim()
    )
}

/// FATAL lines other than refused connections while the server starts.
fn fatal_lines(s: &Server) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("FATAL:"))
        .filter(|l| !l.contains("the database system is starting up"))
        .filter(|l| !l.contains("not yet accepting connections"))
        .filter(|l| !l.contains("the database system is shutting down"))
        .filter(|l| !l.contains("terminating connection due to administrator command"))
        .map(str::to_string)
        .collect()
}

fn assert_not_promoted(s: &Server) {
    assert!(
        !s.log_shows_promotion(),
        "{} promoted (\"selected new timeline ID\" in its log)",
        s.name
    );
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// a. Rows inserted on the primary, each followed by pg_switch_wal(), appear
/// on the hot standby, over 25 segments.
#[test]
fn a_rows_appear_on_hot_standby_over_many_segments() {
    let env = setup("a", PrimaryOptions::default());
    let (standby, _) = env.standby("standby", "", false);
    let mut lat = Vec::new();
    for id in 1..=25 {
        env.primary.insert_and_switch(id).must();
        let t0 = Instant::now();
        standby.wait_row(id, WAIT).must();
        lat.push(t0.elapsed());
    }
    assert_eq!(standby.count().must(), 25);
    assert!(standby.in_recovery().must(), "standby left recovery");
    assert_not_promoted(&standby);
    let max = *lat.iter().max().unwrap();
    eprintln!(
        "[a] switch -> visible: p50 {:?}, max {:?}",
        median(&mut lat),
        max
    );
}

/// b. Smart failover: an empty trigger file; every row of every archived
/// segment is on the promoted standby, which accepts writes; the trigger file
/// is gone (recovery_end_command removed it).
#[test]
fn b_smart_failover_keeps_every_archived_row() {
    let env = setup("b", PrimaryOptions::default());
    let metrics = env.sb.path().join("pg_standby.prom");
    let (standby, trigger) = env.standby(
        "standby",
        &format!("--metrics-file {}", metrics.display()),
        false,
    );
    env.archive_row(1);
    standby.wait_row(1, WAIT).must();
    // Several segments archived back to back, then the trigger at once:
    // smart failover must still restore all of them.
    for id in 2..=7 {
        env.archive_row(id);
    }
    let t0 = Instant::now();
    env.sb.write_file(&trigger, b"").must();
    standby.wait_promoted(WAIT).must();
    let failover = t0.elapsed();
    for id in 1..=7 {
        assert!(
            standby.has_row(id).must(),
            "row {id} missing after smart failover"
        );
    }
    standby
        .psql("INSERT INTO t VALUES (1000, 'written after failover')")
        .must();
    assert!(standby.has_row(1000).must());
    wait_until(Duration::from_secs(5), "trigger file removal", || {
        Ok(!trigger.exists())
    })
    .must();
    assert!(standby.log_shows_promotion());
    // The metrics saw every restore and the one smart failover.
    let prom = std::fs::read_to_string(&metrics).unwrap();
    let value = |key: &str| {
        prom.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert!(
        value("pg_standby_restores_total").unwrap_or(0.0) >= 7.0,
        "{prom}"
    );
    assert_eq!(
        value("pg_standby_failovers_total{kind=\"smart\"}"),
        Some(1.0),
        "{prom}"
    );
    eprintln!("[b] trigger -> writable: {failover:?}");
    assert!(
        failover < Duration::from_secs(15),
        "smart failover took {failover:?}"
    );
}

/// c. Fast failover: segments sit unreplayed in the archive (replay paused on
/// the standby while they were archived), "fast" is written into the trigger
/// file, replay resumes: the standby promotes at the next request without
/// restoring them.
#[test]
fn c_fast_failover_skips_archived_segments() {
    let env = setup("c", PrimaryOptions::default());
    let (standby, trigger) = env.standby("standby", "", false);
    for id in 1..=3 {
        env.archive_row(id);
    }
    standby.wait_row(3, WAIT).must();

    // The standby now waits in restore_command for the next segment. Ask for
    // a pause: it takes effect at the first record of that segment.
    standby.psql("SELECT pg_wal_replay_pause()").must();
    let seg_a = env.archive_row(10);
    wait_until(WAIT, "replay to pause", || {
        let log = standby.log();
        Ok(log.contains(&format!("restored log file \"{seg_a}\""))
            && log.contains("recovery has paused"))
    })
    .must();

    // Archived while replay is paused: the standby has not asked for these.
    let mut skipped = Vec::new();
    for id in 20..=23 {
        skipped.push(env.archive_row(id));
    }
    env.sb.write_file(&trigger, b"fast").must();
    let t0 = Instant::now();
    standby.psql("SELECT pg_wal_replay_resume()").must();
    standby.wait_promoted(WAIT).must();
    eprintln!("[c] resume -> promoted: {:?}", t0.elapsed());

    assert!(standby.has_row(3).must());
    assert!(
        standby.has_row(10).must(),
        "row 10 (segment {seg_a}, restored before the trigger) missing"
    );
    for id in 20..=23 {
        assert!(
            !standby.has_row(id).must(),
            "row {id} was replayed despite the fast failover"
        );
    }
    let log = standby.log();
    for seg in &skipped {
        assert!(
            !log.contains(&format!("restored log file \"{seg}\"")),
            "{seg} was restored"
        );
    }
    standby
        .psql("INSERT INTO t VALUES (1000, 'after fast failover')")
        .must();
    wait_until(Duration::from_secs(5), "trigger file removal", || {
        Ok(!trigger.exists())
    })
    .must();
}

/// d. `-w 2`: while segments keep coming (every 0.5 s) nothing happens; once
/// they stop, the standby promotes by itself after about 2 s.
#[test]
fn d_max_wait_promotes_after_timeout() {
    let env = setup("d", PrimaryOptions::default());
    // -w 5 leaves room for a slow archiver on a loaded 2-core machine.
    let (standby, _) = env.standby("standby", "-w 5", false);
    // One segment about every 0.5 s for 3 s: longer than -w in total, but no
    // single wait reaches 5 s.
    let mut last_switch = Instant::now();
    for id in 1..=6 {
        if id > 1 {
            std::thread::sleep(Duration::from_millis(300));
        }
        last_switch = Instant::now();
        env.archive_row(id);
        standby.wait_row(id, WAIT).must();
        assert!(
            standby.in_recovery().must(),
            "promoted while segments kept arriving"
        );
    }
    // The request for segment 7 (the one that never comes) started after
    // segment 6 was complete, so after `last_switch`: -w 5 means at least 5 s.
    standby.wait_promoted(WAIT).must();
    let took = last_switch.elapsed();
    eprintln!("[d] last switch -> promoted: {took:?}");
    assert!(
        took >= Duration::from_secs(5),
        "promoted too early: {took:?}"
    );
    assert!(
        took <= Duration::from_secs(15),
        "promoted too late: {took:?}"
    );
    assert_eq!(standby.count().must(), 6);
    standby
        .psql("INSERT INTO t VALUES (1000, 'after timeout failover')")
        .must();
}

/// e. `%r` cleanup: the archive shrinks while the standby keeps up, and a
/// restart of the standby mid-stream still recovers every row.
#[test]
fn e_restartfile_cleanup_and_restart() {
    let env = setup("e", PrimaryOptions::default());
    let (standby, _) = env.standby("standby", "", true);
    let first = env.sb.archived_segments();
    let mut id = 0;
    let mut produced = first.len();
    for round in 0..4 {
        for _ in 0..3 {
            id += 1;
            env.archive_row(id);
            produced += 1;
        }
        // A checkpoint on the primary, replayed, then a restartpoint on the
        // standby: %r moves forward.
        env.primary.psql("CHECKPOINT").must();
        id += 1;
        env.archive_row(id);
        produced += 1;
        standby.wait_row(id, WAIT).must();
        standby.psql("CHECKPOINT").must();
        // the next restore carries the new %r and cleans up
        id += 1;
        env.archive_row(id);
        produced += 1;
        standby.wait_row(id, WAIT).must();
        if round == 1 {
            standby.stop("fast").must();
            assert_not_promoted(&standby);
            id += 1;
            env.archive_row(id); // archived while the standby is down
            produced += 1;
            standby.start().must();
            standby.wait_row(id, WAIT).must();
        }
    }
    let last = env.sb.archived_segments();
    eprintln!(
        "[e] {} segments produced; archive before {:?}.., now {} files from {:?}",
        produced,
        first.first(),
        last.len(),
        last.first()
    );
    assert!(
        last.first() > first.first(),
        "the oldest archived segment did not move"
    );
    assert!(
        last.len() < produced / 2,
        "archive not cleaned up: {last:?}"
    );
    assert_eq!(standby.count().must(), id, "rows missing on the standby");
    assert!(standby.in_recovery().must());
    assert_not_promoted(&standby);
    let fatal = fatal_lines(&standby);
    assert!(fatal.is_empty(), "FATAL in standby log: {fatal:?}");
}

/// f. The standby is stopped (fast, then immediate) while the binary waits:
/// it does not promote, and after a restart it continues where it was.
#[test]
fn f_stop_while_waiting_does_not_promote() {
    let env = setup("f", PrimaryOptions::default());
    let (standby, _) = env.standby("standby", "", false);
    let mut id = 0;
    for mode in ["fast", "immediate"] {
        for _ in 0..2 {
            id += 1;
            env.archive_row(id);
        }
        standby.wait_row(id, WAIT).must();
        // the binary is waiting for the next segment
        wait_until(WAIT, "the restore command to be waiting", || {
            Ok(!binary_processes(&env.bin).is_empty())
        })
        .must();
        standby.stop(mode).must();
        assert!(!standby.is_running());
        assert_not_promoted(&standby);
        if let Err(e) = wait_until(
            Duration::from_secs(5),
            "the restore command to exit",
            || Ok(binary_processes(&env.bin).is_empty()),
        ) {
            let left: Vec<String> = binary_processes(&env.bin)
                .iter()
                .map(|p| describe_process(*p))
                .collect();
            panic!("{e:#} after -m {mode} stop; still running: {left:?}");
        }
        id += 1;
        env.archive_row(id); // archived while the standby is down
        standby.start().must();
        assert!(
            standby.in_recovery().must(),
            "standby left recovery after -m {mode} stop"
        );
        standby.wait_row(id, WAIT).must();
        id += 1;
        env.archive_row(id);
        standby.wait_row(id, WAIT).must();
        assert!(standby.in_recovery().must());
        assert_not_promoted(&standby);
    }
    assert_eq!(standby.count().must(), id);
}

fn wal_segsize_scenario(label: &str, mb: u32) {
    let pg = support::pg::PgInstall::detect().must();
    if pg.major < 11 {
        // The segment size is fixed when PostgreSQL 10 is built: there is
        // no scenario to run, but the premise is checked, not assumed.
        let mut help = std::process::Command::new(pg.bindir.join("initdb"));
        if let Some(lib) = &pg.libdir {
            help.env("LD_LIBRARY_PATH", lib);
        }
        let out = help.arg("--help").output().unwrap();
        assert!(out.status.success(), "initdb --help: {out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("--wal-segsize"),
            "[{label}] PostgreSQL {} has initdb --wal-segsize: the scenario applies",
            pg.major
        );
        return;
    }
    let env = setup(
        label,
        PrimaryOptions {
            wal_segsize_mb: Some(mb),
            ..Default::default()
        },
    );
    let (standby, trigger) = env.standby("standby", "", true);
    assert_eq!(standby.wal_segment_size().must(), u64::from(mb) << 20);
    for id in 1..=5 {
        env.archive_row(id);
        standby.wait_row(id, WAIT).must();
    }
    for id in 6..=8 {
        env.archive_row(id);
    }
    env.sb.write_file(&trigger, b"smart").must();
    standby.wait_promoted(WAIT).must();
    assert_eq!(standby.count().must(), 8);
    standby
        .psql("INSERT INTO t VALUES (1000, 'after failover')")
        .must();
}

/// g. wal_segment_size 1 MB (initdb --wal-segsize, 11+).
#[test]
fn g_wal_segsize_1mb() {
    wal_segsize_scenario("g1", 1);
}

/// g. wal_segment_size 64 MB (initdb --wal-segsize, 11+).
#[test]
fn g_wal_segsize_64mb() {
    wal_segsize_scenario("g64", 64);
}

/// h. Timeline switch: standby A is promoted and archives 00000002.history and
/// TLI-2 segments into the same archive; standby B, built from the primary's
/// original (older) backup, recovers across the switch and sees A's rows.
#[test]
fn h_timeline_switch() {
    let env = setup("h", PrimaryOptions::default());
    let (mut so_a, trig_a) = env.standby_opts("a", "", false);
    so_a.archive_mode = true;
    let a = env.sb.standby("a", &env.backup, &so_a).must();
    a.start().must();
    for id in 1..=3 {
        env.archive_row(id);
    }
    a.wait_row(3, WAIT).must();
    // The old primary goes away; nothing more reaches the archive on TLI 1.
    env.primary.stop("fast").must();
    env.sb.write_file(&trig_a, b"").must();
    a.wait_promoted(WAIT).must();
    let history = env.sb.archive().join("00000002.history");
    wait_until(WAIT, "00000002.history in the archive", || {
        Ok(history.exists())
    })
    .must();
    let mut tli2 = Vec::new();
    for id in 11..=13 {
        let seg = a.insert_and_switch(id).must();
        a.wait_archived(&seg, WAIT).must();
        tli2.push(seg);
    }
    assert!(
        tli2.iter().all(|s| s.starts_with("00000002")),
        "A's segments: {tli2:?}"
    );

    let (so_b, _) = env.standby_opts("b", "", false);
    let b = env.sb.standby("b", &env.backup, &so_b).must();
    let t0 = Instant::now();
    b.start().must();
    b.wait_row(13, WAIT).must();
    eprintln!(
        "[h] B started -> row from TLI 2 visible: {:?}",
        t0.elapsed()
    );
    for id in [1, 2, 3, 11, 12, 13] {
        assert!(b.has_row(id).must(), "row {id} missing on B");
    }
    assert!(b.in_recovery().must());
    assert_not_promoted(&b);
    assert!(b.log().contains("restored log file \"00000002.history\""));
    // and it keeps following A
    let seg = a.insert_and_switch(14).must();
    a.wait_archived(&seg, WAIT).must();
    b.wait_row(14, WAIT).must();
}

fn misconfigured(label: &str, restore_command: impl Fn(&Env) -> String, expect_in_log: &[&str]) {
    let env = setup(label, PrimaryOptions::default());
    env.archive_row(1);
    let so = StandbyOptions {
        restore_command: restore_command(&env),
        ..Default::default()
    };
    let standby = env.sb.standby("standby", &env.backup, &so).must();
    standby.start_nowait().must();
    // Exit 250 makes PostgreSQL abort recovery with FATAL: the server stops
    // instead of promoting.
    let stopped = wait_until(
        Duration::from_secs(30),
        "the standby to stop with FATAL",
        || {
            assert_not_promoted(&standby);
            Ok(!standby.is_running() && !fatal_lines(&standby).is_empty())
        },
    );
    assert_not_promoted(&standby);
    stopped.must();
    let fatal = fatal_lines(&standby);
    assert!(
        fatal.iter().any(|l| l.contains("exit code 250")),
        "no FATAL naming exit code 250: {fatal:?}"
    );
    let log = standby.log();
    for needle in expect_in_log {
        assert!(log.contains(needle), "server log lacks {needle:?}");
    }
}

/// i1. The archive directory does not exist: no promotion, and the log names it.
#[test]
fn i_missing_archive_does_not_promote() {
    misconfigured(
        "i1",
        |env| {
            let missing = env.sb.path().join("no-such-archive");
            format!("{} -s 1 {} %f %p %r", env.bin.display(), missing.display())
        },
        &["no-such-archive", "archive location"],
    );
}

/// i4. `%p` forgotten (`pg_standby ARCHIVE %f %r`): %r would become the
/// destination; a configuration error instead, and no promotion.
#[test]
fn i_forgotten_percent_p_does_not_promote() {
    misconfigured(
        "i4",
        |env| {
            format!(
                "{} -s 1 {} %f %r",
                env.bin.display(),
                env.sb.archive().display()
            )
        },
        &["is %p missing from restore_command"],
    );
}

/// i2. An invalid option (`-s 0`): no promotion, and the log names it.
#[test]
fn i_invalid_option_does_not_promote() {
    misconfigured(
        "i2",
        |env| {
            format!(
                "{} -s 0 {} %f %p %r",
                env.bin.display(),
                env.sb.archive().display()
            )
        },
        &["-s"],
    );
}

/// j. SIGUSR1 to the waiting binary: fast failover, at once.
#[test]
fn j_sigusr1_fast_failover() {
    let env = setup("j", PrimaryOptions::default());
    let (standby, _) = env.standby("standby", "", false);
    for id in 1..=2 {
        env.archive_row(id);
    }
    standby.wait_row(2, WAIT).must();
    let mut pids = Vec::new();
    wait_until(WAIT, "the restore command to be waiting", || {
        pids = binary_processes(&env.bin);
        Ok(!pids.is_empty())
    })
    .must();
    let t0 = Instant::now();
    for pid in &pids {
        let st = std::process::Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -USR1 {pid}");
    }
    standby.wait_promoted(WAIT).must();
    let took = t0.elapsed();
    eprintln!("[j] SIGUSR1 -> promoted: {took:?}");
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    assert_eq!(standby.count().must(), 2);
    standby
        .psql("INSERT INTO t VALUES (1000, 'after SIGUSR1')")
        .must();
}

/// k. In PostgreSQL's own standby mode (standby.signal; standby_mode = on on
/// 10/11) the binary answers at once instead of waiting: segments still
/// arrive through the server's retry loop, and `pg_ctl promote` is prompt.
#[test]
fn k_standby_mode_answers_at_once() {
    let env = setup("k", PrimaryOptions::default());
    let (mut so, _) = env.standby_opts("standby", "", false);
    so.standby_mode = true;
    so.extra_conf = "wal_retrieve_retry_interval = '200ms'\n".into();
    let standby = env.sb.standby("standby", &env.backup, &so).must();
    standby.start().must();
    for id in 1..=3 {
        env.archive_row(id);
        standby.wait_row(id, WAIT).must();
    }
    let t0 = Instant::now();
    standby.promote().must();
    let took = t0.elapsed();
    eprintln!("[k] pg_ctl promote took {took:?}");
    assert!(took < Duration::from_secs(10), "promotion took {took:?}");
    assert!(!standby.in_recovery().must());
    assert_eq!(standby.count().must(), 3);
    standby
        .psql("INSERT INTO t VALUES (1000, 'after promote')")
        .must();
}

/// i3. The same missing archive with `--legacy-exit-codes`: exit 2, as
/// pg_standby 13 did, which PostgreSQL reads as "not available" and so ends
/// archive recovery and promotes (the reason 250 is the default).
#[test]
fn i_legacy_exit_codes_promote_like_pg_standby_13() {
    let env = setup("i3", PrimaryOptions::default());
    env.archive_row(1);
    let missing = env.sb.path().join("no-such-archive");
    let so = StandbyOptions {
        restore_command: format!(
            "{} --legacy-exit-codes -s 1 {} %f %p",
            env.bin.display(),
            missing.display()
        ),
        ..Default::default()
    };
    let standby = env.sb.standby("standby", &env.backup, &so).must();
    standby.start_nowait().must();
    standby.wait_ready(WAIT).must();
    standby.wait_promoted(WAIT).must();
    assert!(standby.log_shows_promotion());
    assert!(standby.log().contains("no-such-archive"));
}

/// l. A compressed archive: the primary archives with `archive_command`
/// (`gzip` in place as PostgreSQL's documentation writes it, or `zstd`
/// under a temporary name), the warm standby restores through pg_standby,
/// a smart failover replays every archived row.
fn compressed_archive(label: &str, archive_command: &str, suffix: &str) {
    let env = setup_with(label, |sb| PrimaryOptions {
        extra_conf: format!(
            "archive_command = '{}'",
            archive_command.replace("{ARCHIVE}", &sb.archive().display().to_string())
        ),
        ..Default::default()
    });
    let (standby, trigger) = env.standby("standby", "", false);
    for id in 1..=5 {
        env.primary.insert_and_switch(id).must();
        standby.wait_row(id, WAIT).must();
    }
    // Archived (archive_command succeeded), not yet replayed.
    env.archive_row(6);
    env.sb.write_file(&trigger, b"").must();
    standby.wait_promoted(WAIT).must();
    for id in 1..=6 {
        assert!(
            standby.has_row(id).must(),
            "row {id} missing after failover"
        );
    }
    let log = standby.log();
    assert!(
        log.contains(&format!("{suffix} (")),
        "no restore from {suffix} in the log"
    );
    assert!(
        env.sb.archive_files().iter().all(|f| !is_plain_segment(f)),
        "the archive holds plain segments: {:?}",
        env.sb.archive_files()
    );
}

fn is_plain_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn l_gzip_archive_in_place_as_documented() {
    compressed_archive("l1", "gzip < %p > {ARCHIVE}/%f.gz", ".gz");
}

#[test]
fn l_zstd_archive_under_a_temporary_name() {
    compressed_archive(
        "l2",
        "zstd -q -c %p > {ARCHIVE}/%f.zst.tmp && mv {ARCHIVE}/%f.zst.tmp {ARCHIVE}/%f.zst",
        ".zst",
    );
}

/// m. Object storage as the archive: the primary uploads each segment to a
/// real S3-compatible server (s3s-fs on 127.0.0.1) with curl's SigV4 (the
/// system's curl: the matrix's servers carry an older libcurl in the
/// library path they pass on), the
/// warm standby restores through pg_standby from `s3://`, a smart failover
/// replays every archived row.
#[test]
fn m_object_storage_archive() {
    let server = s3_server::S3Server::start();
    server.bucket("wal");
    let upload = format!(
        "env -u LD_LIBRARY_PATH curl -sSf --aws-sigv4 aws:amz:{region}:s3 --user {ak}:{sk} \
         -H x-amz-content-sha256:UNSIGNED-PAYLOAD -T %p {endpoint}/wal/primary/%f",
        region = s3_server::REGION,
        ak = s3_server::ACCESS_KEY,
        sk = s3_server::SECRET_KEY,
        endpoint = server.endpoint
    );
    let env = setup_with("m", |_| PrimaryOptions {
        extra_conf: format!("archive_command = '{upload}'"),
        ..Default::default()
    });
    // The server's environment is the operator's to set; here the command
    // carries it, as `env` in restore_command can.
    let aws = format!(
        "env AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION={}",
        server.endpoint,
        s3_server::ACCESS_KEY,
        s3_server::SECRET_KEY,
        s3_server::REGION
    );
    let trigger = env.sb.trigger_path("standby");
    let so = StandbyOptions {
        restore_command: format!(
            "{aws} {} -s 1 -t {} s3://wal/primary %f %p",
            env.bin.display(),
            trigger.display()
        ),
        trigger: Some(trigger.clone()),
        ..Default::default()
    };
    let standby = env.sb.standby("standby", &env.backup, &so).must();
    standby.start().must();
    for id in 1..=3 {
        env.primary.insert_and_switch(id).must();
        standby.wait_row(id, WAIT).must();
    }
    let seg = env.primary.insert_and_switch(4).must();
    env.primary.wait_archived(&seg, WAIT).must();
    env.sb.write_file(&trigger, b"").must();
    standby.wait_promoted(WAIT).must();
    for id in 1..=4 {
        assert!(
            standby.has_row(id).must(),
            "row {id} missing after failover"
        );
    }
    assert!(
        standby.log().contains("restored 0000000"),
        "no restore logged"
    );
}

/// o. A gs:// archive (fake-gcs-server, Cloud Storage's JSON API): the
/// primary uploads each segment with curl, the standby restores through
/// pg_standby, a smart failover keeps every row.
#[test]
fn o_cloud_storage_archive() {
    let server = gcs_server::GcsServer::start();
    server.bucket("wal");
    let upload = format!(
        "env -u LD_LIBRARY_PATH curl -sSf -X POST --data-binary @%p \
         -H Content-Type:application/octet-stream \
         \"{}/upload/storage/v1/b/wal/o?uploadType=media&name=primary/%f\"",
        server.endpoint
    );
    let env = setup_with("o", |_| PrimaryOptions {
        extra_conf: format!("archive_command = '{upload}'"),
        ..Default::default()
    });
    let trigger = env.sb.trigger_path("standby");
    let so = StandbyOptions {
        restore_command: format!(
            "env STORAGE_EMULATOR_HOST={} {} -s 1 -t {} gs://wal/primary %f %p",
            server.endpoint,
            env.bin.display(),
            trigger.display()
        ),
        trigger: Some(trigger.clone()),
        ..Default::default()
    };
    let standby = env.sb.standby("standby", &env.backup, &so).must();
    standby.start().must();
    for id in 1..=3 {
        env.primary.insert_and_switch(id).must();
        standby.wait_row(id, WAIT).must();
    }
    let seg = env.primary.insert_and_switch(4).must();
    env.primary.wait_archived(&seg, WAIT).must();
    env.sb.write_file(&trigger, b"").must();
    standby.wait_promoted(WAIT).must();
    for id in 1..=4 {
        assert!(
            standby.has_row(id).must(),
            "row {id} missing after failover"
        );
    }
    assert!(
        standby.log().contains("restored 0000000"),
        "no restore logged"
    );
}

/// p. Three standbys share one archive, each with %r cleanup. One is
/// stopped while the primary writes and the others clean up: they keep
/// what it needs (its entry in the archive's registry), so it catches up
/// without a missing segment when it starts again, and every row reaches
/// every standby. Once all are past them, old segments go.
#[test]
fn p_three_standbys_share_one_archive() {
    let env = setup("p", PrimaryOptions::default());
    three_standbys_share_one_archive(
        &env,
        |name| env.standby(name, "", true).0,
        || env.sb.archived_segments().first().cloned(),
    );
}

/// p, with the archive on S3 (s3s-fs): the entries are objects.
#[test]
fn p_three_standbys_share_one_s3_archive() {
    let server = s3_server::S3Server::start();
    let bucket = server.bucket("wal");
    let upload = format!(
        "env -u LD_LIBRARY_PATH curl -sSf --aws-sigv4 aws:amz:{region}:s3 --user {ak}:{sk} \
         -H x-amz-content-sha256:UNSIGNED-PAYLOAD -T %p {endpoint}/wal/primary/%f",
        region = s3_server::REGION,
        ak = s3_server::ACCESS_KEY,
        sk = s3_server::SECRET_KEY,
        endpoint = server.endpoint
    );
    let env = setup_with("p3", |_| PrimaryOptions {
        extra_conf: format!("archive_command = '{upload}'"),
        ..Default::default()
    });
    let aws = format!(
        "env AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION={}",
        server.endpoint,
        s3_server::ACCESS_KEY,
        s3_server::SECRET_KEY,
        s3_server::REGION
    );
    let start = |name: &str| {
        let so = StandbyOptions {
            restore_command: format!("{aws} {} -s 1 s3://wal/primary %f %p %r", env.bin.display()),
            ..Default::default()
        };
        let s = env.sb.standby(name, &env.backup, &so).must();
        s.start().must();
        s
    };
    let oldest = || {
        let mut names: Vec<String> = fs::read_dir(bucket.join("primary"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.len() == 24)
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.first().cloned()
    };
    three_standbys_share_one_archive(&env, start, oldest);
}

fn three_standbys_share_one_archive(
    env: &Env,
    start: impl Fn(&str) -> Server,
    oldest: impl Fn() -> Option<String>,
) {
    let standbys: Vec<Server> = ["s1", "s2", "s3"].iter().map(|name| start(name)).collect();
    let mut id = 0;
    let mut add_row = |env: &Env| {
        id += 1;
        env.archive_row(id);
        id
    };
    let first = add_row(env);
    for s in &standbys {
        s.wait_row(first, WAIT).must();
    }
    let oldest_before = oldest();
    standbys[2].stop("fast").must();
    // The others move on, their restart points with them.
    for _ in 0..4 {
        for _ in 0..3 {
            add_row(env);
        }
        env.primary.psql("CHECKPOINT").must();
        let last = add_row(env);
        for s in &standbys[..2] {
            s.wait_row(last, WAIT).must();
            s.psql("CHECKPOINT").must();
        }
        // The next restore carries the new %r and cleans up.
        let last = add_row(env);
        for s in &standbys[..2] {
            s.wait_row(last, WAIT).must();
        }
    }
    assert_eq!(
        oldest(),
        oldest_before,
        "a segment the stopped standby needs was removed"
    );
    standbys[2].start().must();
    let last = add_row(env);
    for s in &standbys {
        s.wait_row(last, WAIT).must();
        assert_eq!(s.count().must(), last, "rows missing on a standby");
    }
    // All three past the old segments: the next cleanups remove them.
    env.primary.psql("CHECKPOINT").must();
    let last = add_row(env);
    for s in &standbys {
        s.wait_row(last, WAIT).must();
        s.psql("CHECKPOINT").must();
    }
    let last = add_row(env);
    for s in &standbys {
        s.wait_row(last, WAIT).must();
    }
    wait_until(
        WAIT,
        "old segments removed",
        || Ok(oldest() > oldest_before),
    )
    .must();
    for s in &standbys {
        assert!(s.in_recovery().must());
        assert_not_promoted(s);
        let fatal = fatal_lines(s);
        assert!(fatal.is_empty(), "FATAL in a standby's log: {fatal:?}");
    }
}

/// q. An azure:// archive (Azurite, which checks signatures): the primary
/// uploads each segment with curl to a SAS URL (Put Blob, as
/// docs/guide.md shows), the standby restores through pg_standby with the
/// account key, a smart failover keeps every row.
#[cfg(feature = "azure")]
#[test]
fn q_azure_blob_storage_archive() {
    let server = azure_server::AzureServer::start();
    server.container("wal");
    // archive_command expands %-escapes: the SAS's own percent-escapes
    // are written %% (PostgreSQL 18 refuses an unknown one, "%3"; older
    // servers copied it as it was).
    let sas = server.account_sas("rwlc").replace('%', "%%");
    let upload = format!(
        "env -u LD_LIBRARY_PATH curl -sSf -X PUT -H x-ms-blob-type:BlockBlob \
         --upload-file %p \"{}/wal/primary/%f?{sas}\"",
        server.endpoint
    );
    let env = setup_with("q", |_| PrimaryOptions {
        extra_conf: format!("archive_command = '{upload}'"),
        ..Default::default()
    });
    let trigger = env.sb.trigger_path("standby");
    let so = StandbyOptions {
        restore_command: format!(
            "env AZURE_STORAGE_ACCOUNT={} AZURE_STORAGE_KEY={} AZURE_STORAGE_BLOB_ENDPOINT={} \
             {} -s 1 -t {} azure://wal/primary %f %p",
            azure_server::ACCOUNT,
            azure_server::KEY,
            server.endpoint,
            env.bin.display(),
            trigger.display()
        ),
        trigger: Some(trigger.clone()),
        ..Default::default()
    };
    let standby = env.sb.standby("standby", &env.backup, &so).must();
    standby.start().must();
    for id in 1..=3 {
        env.primary.insert_and_switch(id).must();
        standby.wait_row(id, WAIT).must();
    }
    let seg = env.primary.insert_and_switch(4).must();
    env.primary.wait_archived(&seg, WAIT).must();
    env.sb.write_file(&trigger, b"").must();
    standby.wait_promoted(WAIT).must();
    for id in 1..=4 {
        assert!(
            standby.has_row(id).must(),
            "row {id} missing after failover"
        );
    }
    assert!(
        standby.log().contains("restored 0000000"),
        "no restore logged"
    );
}

/// n. Prefetch: a warm standby started behind a gzip archive catches up
/// through the spool (on by default for a compressed archive), follows the
/// primary, and a smart failover replays every archived row; afterwards
/// no spool and no fetcher is left, and nothing of it was ever in the
/// data directory.
#[test]
fn n_prefetch_catch_up_and_failover() {
    let env = setup_with("n", |sb| PrimaryOptions {
        extra_conf: format!(
            "archive_command = 'gzip -1 < %p > {a}/%f.gz.tmp && mv {a}/%f.gz.tmp {a}/%f.gz'",
            a = sb.archive().display()
        ),
        ..Default::default()
    });
    // Behind by a dozen segments before the standby starts.
    for id in 1..=12 {
        env.archive_row(id);
    }
    let (standby, trigger) = env.standby("standby", "-d", false);
    standby.wait_row(6, WAIT).must();
    // A stop mid-catch-up ends the fetcher with the server; the restarted
    // server does not use what was fetched for the previous run.
    standby.stop("fast").must();
    wait_until(Duration::from_secs(10), "no fetcher after the stop", || {
        Ok(binary_processes(&env.bin).is_empty())
    })
    .must();
    standby.start().must();
    standby.wait_row(12, WAIT).must();
    for id in 13..=15 {
        env.primary.insert_and_switch(id).must();
        standby.wait_row(id, WAIT).must();
    }
    let spool = standby.data.with_file_name("data.pg_standby-spool");
    assert!(spool.is_dir() || standby.log().contains("from the prefetch spool"));
    for id in 16..=18 {
        env.archive_row(id);
    }
    env.sb.write_file(&trigger, b"").must();
    standby.wait_promoted(WAIT).must();
    for id in 1..=18 {
        assert!(
            standby.has_row(id).must(),
            "row {id} missing after failover"
        );
    }
    let log = standby.log();
    let hits = log.matches("from the prefetch spool after").count();
    eprintln!("[n] {hits} segments from the spool");
    assert!(hits >= 5, "too few segments came from the spool:\n{log}");
    assert!(!spool.exists(), "the spool outlived the failover");
    wait_until(Duration::from_secs(10), "no fetcher left", || {
        Ok(binary_processes(&env.bin).is_empty())
    })
    .must();
    let inside = walkdir(&standby.data)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("spool"))
        .collect::<Vec<_>>();
    assert!(
        inside.is_empty(),
        "spool files in the data directory: {inside:?}"
    );
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        }
        out.push(path);
    }
    out
}
