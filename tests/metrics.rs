//! `--metrics-file` through the binary: counters carried across calls,
//! failovers and errors counted, and a broken metrics file never changing
//! the outcome of a restore.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use support::*;

const S5: &str = "000000010000000000000005";
const S6: &str = "000000010000000000000006";

fn value(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn restores_and_failovers_are_counted_across_calls() {
    let env = Env::new();
    let prom = env.path("pg_standby.prom");
    let prom_arg = prom.display().to_string();
    let trigger = env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    env.archive_atomically(S5, &segment(S5));
    env.archive_atomically(S6, &segment(S6));
    for name in [S5, S6] {
        let out = env.run(&["--metrics-file", &prom_arg], name, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::write(&trigger, "").unwrap();
    let out = env.run(
        &["--metrics-file", &prom_arg, "-t", &trigger_arg],
        "000000010000000000000007",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = fs::read_to_string(&prom).unwrap();
    assert_eq!(
        value(&text, "pg_standby_restores_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "pg_standby_restored_bytes_total"),
        Some(2.0 * SEG as f64)
    );
    assert_eq!(
        value(&text, "pg_standby_failovers_total{kind=\"smart\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "pg_standby_calls_total{outcome=\"restored\"}"),
        Some(2.0)
    );
    // Segment 6 starts at 6 * 16 MiB; it is also the newest in the archive.
    assert_eq!(
        value(&text, "pg_standby_last_restored_lsn"),
        Some(6.0 * SEG as f64)
    );
    assert_eq!(
        value(&text, "pg_standby_archive_newest_lsn"),
        Some(6.0 * SEG as f64)
    );
    assert_eq!(value(&text, "pg_standby_last_restored_timeline"), Some(1.0));
    assert!(value(&text, "pg_standby_last_success_timestamp_seconds").unwrap() > 1.7e9);
    assert!(text.contains("# TYPE pg_standby_restores_total counter"));
}

#[test]
fn errors_are_counted_by_kind() {
    let env = Env::new();
    let prom = env.path("pg_standby.prom");
    let prom_arg = prom.display().to_string();
    let mut foreign = segment_bytes(S5, SEG, SYSID + 1, SEG);
    foreign.truncate(SEG as usize);
    env.archive_atomically(S5, &foreign);
    let out = env.run(
        &[
            "--metrics-file",
            &prom_arg,
            "--bad-file-timeout",
            "1",
            "-s",
            "1",
        ],
        S5,
        &[],
    );
    assert_eq!(out.status.code(), Some(FATAL));
    let text = fs::read_to_string(&prom).unwrap();
    assert_eq!(
        value(&text, "pg_standby_errors_total{kind=\"bad_segment\"}"),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn a_metrics_file_that_cannot_be_written_changes_nothing() {
    let env = Env::new();
    env.archive_atomically(S5, &segment(S5));
    let blocked = env.path("not-a-dir");
    fs::write(&blocked, "").unwrap();
    let prom = blocked.join("pg_standby.prom").display().to_string();
    let out = env.run(&["--metrics-file", &prom], S5, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("could not write the metrics file"), "{err}");
    assert_eq!(fs::read(env.restored()).unwrap(), segment(S5));
}

#[test]
fn the_file_is_world_readable_under_a_strict_umask() {
    let env = Env::new();
    env.archive_atomically(S5, &segment(S5));
    let prom = env.path("pg_standby.prom");
    let prom_arg = prom.display().to_string();
    let args = env.restore_args(&["--metrics-file", &prom_arg], S5, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.command(&args);
    // SAFETY: umask is async-signal-safe; it changes only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the metrics file is {mode:o}");
}

#[test]
fn compressed_segments_count_as_the_newest_in_the_archive() {
    let env = Env::new();
    let prom = env.path("pg_standby.prom");
    let prom_arg = prom.display().to_string();
    env.archive_atomically(S5, &segment(S5));
    // Segment 6 only in its gzip form, as the restore would take it.
    let mut gz = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let bytes = segment(S6);
    let mut stdin = gz.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    env.archive_atomically(&format!("{S6}.gz"), &out.stdout);
    let out = env.run(&["--metrics-file", &prom_arg], S5, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&prom).unwrap();
    assert_eq!(
        value(&text, "pg_standby_archive_newest_lsn"),
        Some(6.0 * SEG as f64),
        "{text}"
    );
    // Every counter is there from the first call, at 0.
    assert_eq!(
        value(&text, "pg_standby_errors_total{kind=\"bad_segment\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "pg_standby_failovers_total{kind=\"smart\"}"),
        Some(0.0)
    );
}
