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

/// `promtool`, from Debian's `prometheus` package: required, never skipped.
fn promtool() -> std::process::Command {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool is missing: `apt-get install prometheus` (Debian's package ships it); \
         the metrics format and docs/alerts.yml are tested with it"
    );
    std::process::Command::new("promtool")
}

/// Metrics files from real calls: a standby that restored the first of
/// six archived segments ("behind"), the same once it caught up
/// ("current"), and one that restored a segment and then met a segment of
/// another cluster ("stopped": before, after).
fn real_runs() -> Vec<(&'static str, String)> {
    let env = Env::new();
    let prom = env.path("behind.prom").display().to_string();
    let names: Vec<String> = (5..=10)
        .map(|n| format!("0000000100000000000000{n:02X}"))
        .collect();
    for name in &names {
        env.archive_atomically(name, &segment(name));
    }
    let run = |env: &Env, opts: &[&str], name: &str, code: i32| {
        let out = env.run(opts, name, &[]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&env, &["--metrics-file", &prom], &names[0], 0);
    let behind = fs::read_to_string(&prom).unwrap();
    for name in &names[1..] {
        run(&env, &["--metrics-file", &prom], name, 0);
    }
    let current = fs::read_to_string(&prom).unwrap();

    let env = Env::new();
    let prom = env.path("stopped.prom").display().to_string();
    env.archive_atomically(S5, &segment(S5));
    run(&env, &["--metrics-file", &prom], S5, 0);
    let before = fs::read_to_string(&prom).unwrap();
    let mut foreign = segment_bytes(S6, SEG, SYSID + 1, SEG);
    foreign.truncate(SEG as usize);
    env.archive_atomically(S6, &foreign);
    let opts = [
        "--metrics-file",
        &prom,
        "--bad-file-timeout",
        "1",
        "-s",
        "1",
    ];
    run(&env, &opts, S6, FATAL);
    let after = fs::read_to_string(&prom).unwrap();
    vec![
        ("behind", behind),
        ("current", current),
        ("stopped before the error", before),
        ("stopped after the error", after),
    ]
}

/// Samples of a metrics file, by series (`name{labels}`).
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// promtool input series for one instance: minute by minute, the samples
/// of the file that was current then (`_` where a series was absent).
fn input_series(instance: &str, timeline: &[(&str, usize)]) -> String {
    let mut keys: Vec<String> = Vec::new();
    for (text, _) in timeline {
        for (key, _) in samples(text) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut out = String::new();
    for key in keys {
        let labels = format!("instance=\"{instance}\",job=\"node\"");
        let series = match key.split_once('{') {
            Some((name, rest)) => format!("{name}{{{labels},{rest}"),
            None => format!("{key}{{{labels}}}"),
        };
        let mut values = Vec::new();
        for (text, minutes) in timeline {
            let value = samples(text)
                .into_iter()
                .find(|(k, _)| *k == key)
                .map_or("_".to_string(), |(_, v)| v);
            values.extend(std::iter::repeat_n(value, *minutes));
        }
        out.push_str(&format!(
            "      - series: '{series}'\n        values: '{}'\n",
            values.join(" ")
        ));
    }
    out
}

#[test]
fn real_metrics_files_pass_promtool_check_metrics() {
    promtool();
    for (what, text) in real_runs() {
        let mut child = promtool()
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "promtool check metrics ({what}): exit {:?} {said}",
            out.status.code()
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool check metrics on the file of a real run ({what}):\n{said}\n{text}"
        );
    }
}

/// The documented rules (docs/alerts.yml), with series from real runs: a
/// standby that falls behind the archive, one stopped by an error, and
/// one that keeps up (which must not fire).
#[test]
fn documented_alert_rules_fire_on_real_runs() {
    promtool();
    let runs = real_runs();
    let text = |what: &str| runs.iter().find(|(w, _)| *w == what).unwrap().1.as_str();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts.yml");
    let mut series = input_series("behind", &[(text("behind"), 31)]);
    series += &input_series("current", &[(text("current"), 31)]);
    series += &input_series(
        "stopped",
        &[
            (text("stopped before the error"), 5),
            (text("stopped after the error"), 26),
        ],
    );
    let tests = format!(
        "rule_files:\n  - '{}'\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}
    alert_rule_test:
      - eval_time: 5m
        alertname: WarmStandbyBehindArchive
        exp_alerts: []
      - eval_time: 15m
        alertname: WarmStandbyBehindArchive
        exp_alerts:
          - exp_labels: {{severity: warning, instance: behind, job: node}}
      - eval_time: 4m
        alertname: WarmStandbyStopped
        exp_alerts: []
      - eval_time: 10m
        alertname: WarmStandbyStopped
        exp_alerts:
          - exp_labels: {{severity: critical, instance: stopped, job: node, kind: bad_segment}}
",
        rules.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts_test.yml");
    fs::write(&path, &tests).unwrap();
    let out = promtool()
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool test rules: exit {:?}\n{said}", out.status.code());
    assert!(out.status.success(), "{said}\n{tests}");
}

/// Every metric a real run writes is in the guide's table, with its type.
#[test]
fn every_metric_written_is_documented() {
    let guide =
        fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guide.md"))
            .unwrap();
    for (_, text) in real_runs() {
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            let row = guide
                .lines()
                .find(|l| {
                    l.starts_with('|')
                        && (l.contains(&format!("`{name}`")) || l.contains(&format!("`{name}{{")))
                })
                .unwrap_or_else(|| panic!("{name} is not in docs/guide.md's metrics table"));
            assert!(
                row.contains(&format!("| {kind} |")),
                "{name} is not a {kind} in: {row}"
            );
        }
    }
}

/// A failover asked for by a signal is counted as one, and a fast trigger
/// as fast: the outcome follows the cause, not the log's wording.
#[test]
fn a_signal_and_a_fast_trigger_are_counted_apart() {
    let env = Env::new();
    let prom = env.path("pg_standby.prom");
    let prom_arg = prom.display().to_string();
    let mut job = env.spawn(&["-d", "--metrics-file", &prom_arg], S5, &[]);
    job.wait_ready();
    job.signal(libc::SIGUSR1);
    job.finish_within(std::time::Duration::from_secs(10))
        .exited(1);
    let trigger = env.path("trigger");
    fs::write(&trigger, "fast").unwrap();
    let out = env.run(
        &[
            "--metrics-file",
            &prom_arg,
            "-t",
            &trigger.display().to_string(),
        ],
        S5,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = fs::read_to_string(&prom).unwrap();
    for (kind, n) in [("signal", 1.0), ("fast", 1.0), ("smart", 0.0)] {
        assert_eq!(
            value(
                &text,
                &format!("pg_standby_failovers_total{{kind=\"{kind}\"}}")
            ),
            Some(n),
            "{kind}: {text}"
        );
    }
}
