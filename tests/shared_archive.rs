//! Many standbys, one archive: each standby's `%r` cleanup keeps what the
//! others still need, through the registry each one publishes in the
//! archive (`.pg_standby/standbys/`). Real calls of the binary, from data
//! directories of one cluster sharing one archive, on a directory and on
//! S3 (s3s-fs).

mod support;

#[path = "support/s3_server.rs"]
mod s3_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

fn seg(n: u32) -> String {
    format!("00000001000000000000{n:04X}")
}

/// A standby of the same cluster: a data directory with the same
/// pg_control, sharing `env`'s archive.
fn standby(env: &Env, label: &str) -> PathBuf {
    let dir = env.path(label);
    fs::create_dir_all(dir.join("pg_wal")).unwrap();
    fs::create_dir_all(dir.join("global")).unwrap();
    fs::copy(
        env.datadir.join("global/pg_control"),
        dir.join("global/pg_control"),
    )
    .unwrap();
    fs::write(dir.join("recovery.signal"), "").unwrap();
    dir
}

/// One call as the server makes it: restores `n` with `%r` = `restart`.
/// `output()` returns once the cleanup it hands off has finished too (it
/// writes to the same stderr).
fn call(
    data: &Path,
    archive: &str,
    opts: &[&str],
    n: u32,
    restart: u32,
    env_vars: &[(&str, &str)],
) -> Output {
    let out = Command::new(binary())
        .current_dir(data)
        .args(["-d", "--prefetch=0"])
        .args(opts)
        .args([archive, &seg(n), "pg_wal/RECOVERYXLOG", &seg(restart)])
        .envs(env_vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn log(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fill(env: &Env, range: std::ops::RangeInclusive<u32>) {
    for n in range {
        env.archive_atomically(&seg(n), &segment(&seg(n)));
    }
}

/// The segments left in the archive, by number.
fn left(env: &Env) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(&env.archive)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            (name.len() == 24).then(|| u32::from_str_radix(&name[16..], 16).unwrap())
        })
        .collect();
    v.sort();
    v
}

fn entries(archive: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(archive.join(".pg_standby/standbys"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_lagging_standby_keeps_what_it_needs_until_it_catches_up() {
    let env = Env::new();
    let archive = env.archive.display().to_string();
    fill(&env, 1..=8);
    let (a, b) = (standby(&env, "a"), standby(&env, "b"));
    // B is behind: it needs 2 on.
    call(&b, &archive, &[], 3, 2, &[]);
    assert_eq!(left(&env), (2..=8).collect::<Vec<_>>());
    // A is ahead: its %r is 7, but B still needs 2 on.
    let metrics = env.path("a.prom");
    let metrics_arg = metrics.display().to_string();
    let out = call(&a, &archive, &["--metrics-file", &metrics_arg], 8, 7, &[]);
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("pg_standby_registry_standbys 2\n"), "{prom}");
    assert!(prom.contains("pg_standby_registry_expired 0\n"), "{prom}");
    // Segment 2's start: 2 × 16 MiB.
    assert!(
        prom.contains("pg_standby_archive_oldest_kept_lsn 33554432\n"),
        "{prom}"
    );
    assert_eq!(left(&env), (2..=8).collect::<Vec<_>>());
    assert!(log(&out).contains("which standby"), "{}", log(&out));
    assert_eq!(entries(&env.archive).len(), 2);
    // B catches up: now nobody needs what is before 7.
    call(&b, &archive, &[], 8, 7, &[]);
    assert_eq!(left(&env), vec![7, 8]);
    // Each entry says who wrote it and what it needs, for a person too.
    let texts: Vec<String> = entries(&env.archive)
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    for t in &texts {
        assert!(t.contains(&format!("restart = {}", seg(7))), "{t}");
        assert!(t.contains("system_identifier = 7300000000000000001"), "{t}");
        assert!(t.contains("written_at = "), "{t}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!(":{}", a.display())))
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!(":{}", b.display())))
    );
    // The registry as an operator sees it, from the archive alone.
    let report = check(&archive, &[]);
    assert!(
        report.contains("ok: 2 standby(s) registered in the archive"),
        "{report}"
    );
    assert!(
        report.contains(&format!("needs {} on (written ", seg(7))),
        "{report}"
    );
}

/// `pg_standby --check ARCHIVELOCATION`: the registry, on stdout.
fn check(archive: &str, opts: &[&str]) -> String {
    let out = Command::new(binary())
        .args(["--check", archive])
        .args(opts)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_standby_alone_removes_what_pg_standby_13_removes() {
    let env = Env::new();
    fill(&env, 1..=8);
    call(
        &env.datadir,
        &env.archive.display().to_string(),
        &[],
        8,
        6,
        &[],
    );
    assert_eq!(left(&env), vec![6, 7, 8]);
    assert_eq!(entries(&env.archive).len(), 1);
}

#[test]
fn a_standby_gone_past_the_expiry_no_longer_holds_cleanup_back() {
    let env = Env::new();
    let archive = env.archive.display().to_string();
    fill(&env, 1..=8);
    let (a, b) = (standby(&env, "a"), standby(&env, "b"));
    call(&b, &archive, &["--standby-name", "reporting"], 3, 2, &[]);
    // Its last word, two days ago.
    let entry = entries(&env.archive).pop().unwrap();
    let text = fs::read_to_string(&entry).unwrap();
    let old = (std::time::SystemTime::now() - Duration::from_secs(48 * 3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("written =") {
                format!("written = {old}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(&entry, text).unwrap();
    let out = call(&a, &archive, &["--standby-expiry", "24"], 8, 7, &[]);
    assert_eq!(left(&env), vec![7, 8]);
    let log = log(&out);
    assert!(
        log.contains("standby \"reporting\" has not updated its entry for 2 d 0 h"),
        "{log}"
    );
    assert!(
        log.contains(&format!("remove \"{}\"", entry.display())),
        "{log}"
    );
    let report = check(&archive, &["--standby-expiry", "24"]);
    assert!(
        report.contains("WARNING: standby \"reporting\""),
        "{report}"
    );
    assert!(report.contains("[registry-entry-expired]"), "{report}");
    // Within the default expiry, the same entry holds it back.
    fill(&env, 1..=9);
    call(&a, &archive, &[], 9, 8, &[]);
    assert_eq!(left(&env), (2..=9).collect::<Vec<_>>());
}

#[test]
fn an_unreadable_entry_of_this_cluster_stops_the_cleanup() {
    let env = Env::new();
    let archive = env.archive.display().to_string();
    fill(&env, 1..=8);
    let dir = env.archive.join(".pg_standby/standbys");
    fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("7300000000000000001-0000000000000000.standby");
    fs::write(&bad, "name = half-writ").unwrap();
    let out = call(&env.datadir, &archive, &[], 8, 7, &[]);
    assert_eq!(left(&env), (1..=8).collect::<Vec<_>>());
    assert!(log(&out).contains("cannot be read"), "{}", log(&out));
    // Another cluster's, even unreadable, changes nothing: the next
    // cleanup (the next restart point) removes what can go.
    fs::rename(&bad, dir.join("42-0000000000000000.standby")).unwrap();
    fill(&env, 9..=9);
    call(&env.datadir, &archive, &[], 9, 8, &[]);
    assert_eq!(left(&env), vec![8, 9]);
}

/// A cleanup with the same `%r` as the last one, published minutes ago,
/// reads its own entry and stops: on a store, one request instead of a
/// write, a listing and a read per standby.
#[test]
fn an_unchanged_position_is_not_published_again() {
    let env = Env::new();
    let archive = env.archive.display().to_string();
    fill(&env, 1..=8);
    call(&env.datadir, &archive, &[], 8, 7, &[]);
    let entry = entries(&env.archive).pop().unwrap();
    let written = fs::read_to_string(&entry).unwrap();
    fill(&env, 1..=2);
    let out = call(&env.datadir, &archive, &[], 8, 7, &[]);
    assert!(
        log(&out).contains("nothing new since the last one"),
        "{}",
        log(&out)
    );
    assert_eq!(fs::read_to_string(&entry).unwrap(), written);
    assert_eq!(left(&env), vec![1, 2, 7, 8]);
}

#[test]
fn entries_of_another_cluster_are_ignored() {
    let env = Env::new();
    let archive = env.archive.display().to_string();
    fill(&env, 1..=8);
    let other = standby(&env, "other");
    let mut control = 42u64.to_ne_bytes().to_vec();
    control.resize(8192, 0);
    fs::write(other.join("global/pg_control"), control).unwrap();
    // Another cluster's standby, far behind (it restores nothing of ours:
    // -n, a dry run, publishes nothing; so its entry is written by a call
    // of its own on a segment of its own).
    env.archive_atomically(
        "000000010000000000000009",
        &segment_bytes("000000010000000000000009", SEG, 42, SEG),
    );
    call(&other, &archive, &[], 9, 1, &[]);
    call(&env.datadir, &archive, &[], 8, 7, &[]);
    assert_eq!(left(&env), vec![7, 8, 9]);
}

/// Two standbys cleaning up at once, round after round: never a segment
/// either still needs is removed.
#[test]
fn two_standbys_cleaning_at_once_keep_what_each_needs() {
    let env = Env::new();
    let archive = env.archive.display().to_string();
    fill(&env, 1..=40);
    let (a, b) = (standby(&env, "a"), standby(&env, "b"));
    // B joins before the race (see docs/safety.md: a standby is kept from
    // its first cleanup on).
    call(&b, &archive, &[], 6, 5, &[]);
    for round in 0..15 {
        let (ra, rb) = (10 + round, 5 + round);
        let (x, y) = std::thread::scope(|s| {
            let x = s.spawn(|| call(&a, &archive, &[], ra + 1, ra, &[]));
            let y = s.spawn(|| call(&b, &archive, &[], rb + 1, rb, &[]));
            (x.join().unwrap(), y.join().unwrap())
        });
        let _ = (x, y);
        let kept = left(&env);
        assert!(
            (rb..=40).all(|n| kept.contains(&n)),
            "round {round}: B needs {rb} on, left {kept:?}"
        );
    }
}

/// The same on S3: entries are objects, written whole by one PUT.
#[test]
fn a_lagging_standby_keeps_what_it_needs_on_object_storage() {
    let server = s3_server::S3Server::start();
    let bucket = server.bucket("wal");
    let env = Env::new();
    let dir = bucket.join("archive");
    fs::create_dir_all(&dir).unwrap();
    for n in 1..=8 {
        fs::write(dir.join(seg(n)), segment(&seg(n))).unwrap();
    }
    let keys = [
        ("AWS_ENDPOINT_URL", server.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", s3_server::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", s3_server::SECRET_KEY),
        ("AWS_REGION", s3_server::REGION),
    ];
    let (a, b) = (standby(&env, "a"), standby(&env, "b"));
    let url = "s3://wal/archive";
    let objects = || {
        let mut v: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.len() == 24)
            .collect();
        v.sort();
        v
    };
    call(&b, url, &[], 3, 2, &keys);
    call(&a, url, &[], 8, 7, &keys);
    assert_eq!(objects(), (2..=8).map(seg).collect::<Vec<_>>());
    assert_eq!(entries(&dir).len(), 2);
    call(&b, url, &[], 8, 7, &keys);
    assert_eq!(objects(), vec![seg(7), seg(8)]);
}

/// A postgresql.conf copied from one standby to another, `--standby-name`
/// and all: the second standby's cleanup would overwrite the first one's
/// position. It removes nothing and says why; the first standby's entry
/// and the segments it needs stay.
#[test]
fn two_standbys_given_one_name_skip_the_cleanup_and_say_so() {
    let env = Env::new();
    let archive = env.archive.display().to_string();
    fill(&env, 1..=8);
    let (a, b) = (standby(&env, "a"), standby(&env, "b"));
    let name = ["--standby-name", "replica"];
    call(&a, &archive, &name, 3, 2, &[]);
    assert_eq!(left(&env), (2..=8).collect::<Vec<_>>());
    let first = fs::read_to_string(&entries(&env.archive)[0]).unwrap();
    let out = call(&b, &archive, &name, 8, 7, &[]);
    let log = log(&out);
    assert!(
        log.contains("archive cleanup skipped: the standby name \"replica\" is also used"),
        "{log}"
    );
    assert!(log.contains(&a.display().to_string()), "{log}");
    assert_eq!(left(&env), (2..=8).collect::<Vec<_>>());
    assert_eq!(entries(&env.archive).len(), 1);
    assert_eq!(
        fs::read_to_string(&entries(&env.archive)[0]).unwrap(),
        first
    );
    // --check on the second standby says so, as an error with the fix.
    fs::write(b.join("PG_VERSION"), "15\n").unwrap();
    fs::write(
        b.join("postgresql.conf"),
        format!(
            "restore_command = '{} --standby-name replica {archive} %f %p %r'\n",
            binary().display()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["--check", "--json", "-D"])
        .arg(&b)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("\"registry-name-taken\""), "{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
}
