//! One fault against a real server: a segment from another cluster lands in
//! the archive under the name a warm standby is waiting for. pg_standby
//! refuses it and exits 250, so PostgreSQL stops recovery with FATAL
//! instead of replaying a foreign segment, reading it as the end of WAL
//! and promoting (what pg_standby 13 led to).
//!
//! Uses the real-server harness in tests/support (see tests/real_pg.rs).

mod support;

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pg_standby::wal::SegmentName;
use support::pg::{PrimaryOptions, Sandbox, StandbyOptions, wait_until};
use support::{Must, binary_under_test};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn foreign_segment_stops_the_standby_instead_of_promoting_it() {
    let sb = Sandbox::new("faults_pg").must();
    eprintln!("[faults_pg] {} in {}", sb.pg().version, sb.path().display());
    let bin = sb.install_binary(&binary_under_test()).must();
    let primary = sb.primary("primary", &PrimaryOptions::default()).must();
    let backup = primary.cold_backup("base").must();
    let trigger = sb.trigger_path("standby");
    let opts = format!("-s 1 --bad-file-timeout 1 -t {}", trigger.display());
    let so = StandbyOptions {
        restore_command: sb.restore_command(&bin, &opts, false),
        trigger: Some(trigger),
        ..Default::default()
    };
    let standby = sb.standby("standby", &backup, &so).must();
    standby.start().must();

    // A normal segment first: the standby replays it and waits for the next.
    let seg = primary.insert_and_switch(1).must();
    primary.wait_archived(&seg, WAIT).must();
    wait_until(WAIT, "row 1 on the standby", || standby.has_row(1)).must();
    let size = primary.wal_segment_size().must();
    let current = SegmentName::parse(&seg).unwrap();
    let next = SegmentName::from_segno(current.tli, current.segno(size).unwrap() + 1, size);
    let next = next.to_string();

    // The primary stays idle, so the real `next` is not archived; a
    // segment of another cluster lands under its name, atomically.
    let foreign = support::segment_bytes(&next, size, 42, size);
    let incoming = sb.path().join(format!("{next}.incoming"));
    sb.write_file(&incoming, &foreign).must();
    fs::rename(&incoming, sb.archive().join(&next)).unwrap();

    standby.wait_stopped(WAIT).must();
    let log = standby.log();
    for line in log
        .lines()
        .filter(|l| l.contains("another cluster") || l.contains("FATAL:"))
    {
        eprintln!("[faults_pg] {line}");
    }
    assert!(
        log.contains("it belongs to another cluster (system identifier 42"),
        "our message is not in the server log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("FATAL:") && l.contains("could not restore file")),
        "no FATAL from the server:\n{log}"
    );
    assert!(
        !standby.log_shows_promotion(),
        "the standby promoted:\n{log}"
    );
    assert!(
        !standby.data.join("pg_wal").join(&next).exists(),
        "the foreign segment reached pg_wal"
    );
    assert!(!standby.data.join("pg_wal/RECOVERYXLOG").exists());
    // The archive still holds it, untouched, for the operator to inspect.
    assert!(fs::read(sb.archive().join(&next)).unwrap() == foreign);
}

/// A trigger file left from an earlier failover, present when a freshly
/// built standby first starts: pg_standby 13 promoted at once, onto a new
/// timeline. It predates the server's start (postmaster.pid), so it is
/// logged as an error and not taken; touching it afterwards fails over.
#[test]
fn a_trigger_older_than_the_server_does_not_promote_until_touched() {
    let sb = Sandbox::new("stale_trigger").must();
    eprintln!(
        "[stale_trigger] {} in {}",
        sb.pg().version,
        sb.path().display()
    );
    let bin = sb.install_binary(&binary_under_test()).must();
    let primary = sb.primary("primary", &PrimaryOptions::default()).must();
    let backup = primary.cold_backup("base").must();
    let trigger = sb.trigger_path("standby");
    sb.write_file(&trigger, b"").must();
    let opts = format!("-s 1 -t {}", trigger.display());
    let so = StandbyOptions {
        restore_command: sb.restore_command(&bin, &opts, false),
        trigger: Some(trigger.clone()),
        ..Default::default()
    };
    let standby = sb.standby("standby", &backup, &so).must();
    // postmaster.pid's start time has whole seconds: start in a later
    // second than the trigger's, as a standby built afterwards would.
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let made = secs(fs::metadata(&trigger).unwrap().modified().unwrap());
    wait_until(WAIT, "the next second", || {
        Ok(secs(SystemTime::now()) > made)
    })
    .must();
    standby.start().must();

    for id in 1..=2 {
        let seg = primary.insert_and_switch(id).must();
        primary.wait_archived(&seg, WAIT).must();
        standby.wait_row(id, WAIT).must();
    }
    assert!(standby.in_recovery().must(), "the standby promoted");
    assert!(!standby.log_shows_promotion(), "{}", standby.log());
    assert!(trigger.exists(), "the trigger file was consumed");
    let log = standby.log();
    let stale: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("older than this server's start"))
        .collect();
    for line in &stale {
        eprintln!("[stale_trigger] {line}");
    }
    assert!(
        stale.iter().any(|l| l.contains("ERROR:")
            && l.contains(&trigger.display().to_string())
            && l.contains("Remove it")
            && l.contains("touch")),
        "no error naming the stale trigger:\n{log}"
    );
    assert!(!log.contains("smart failover: trigger file found"), "{log}");

    // Touched now: a request made after the start, so a failover.
    sb.write_file(&trigger, b"").must();
    standby.wait_promoted(WAIT).must();
    assert!(standby.has_row(2).must());
    let log = standby.log();
    for line in log.lines().filter(|l| l.contains("pg_standby[")) {
        eprintln!("[stale_trigger] {line}");
    }
    // The server then asks again for the last segment it replayed: that
    // is said as what it is, not as a second failover.
    assert_eq!(
        log.matches("smart failover: trigger file found").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("recovery is ending: the server asks again for"),
        "{log}"
    );
    // The mark that told it is gone once the timeline switched.
    assert!(!standby.data.join("pg_wal/.pg_standby.ended").exists());
}
