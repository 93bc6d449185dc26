//! `--metrics-file`: what each call did, in Prometheus' text format, for
//! node_exporter's textfile collector. Counters carry across calls: each
//! call reads the previous file under a lock, adds its own, and replaces
//! the file by a rename, so the collector never reads a partial file.
//! Nothing here may change a call's outcome: failures are warnings.
//! Every counter is written from the first call on, at 0, and the file is
//! world-readable (0644), for a collector that runs as another user.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// What one call did, as the metrics see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallReport {
    pub outcome: CallOutcome,
    /// Start LSN and timeline of the segment restored by this call.
    pub restored: Option<(u64, u32)>,
    pub bytes: u64,
    pub wait_seconds: f64,
    pub copy_seconds: f64,
    /// Start LSN and timeline of the newest segment seen in the archive.
    pub newest_in_archive: Option<(u64, u32)>,
    /// Whether the segment was found in the prefetch spool, if it was
    /// looked for there.
    pub spool: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CallOutcome {
    Restored,
    #[default]
    NotAvailable,
    Failover(FailoverKind),
    Error(&'static str),
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverKind {
    Smart,
    Fast,
    MaxWait,
    Signal,
}

impl FailoverKind {
    const ALL: [FailoverKind; 4] = [Self::Smart, Self::Fast, Self::MaxWait, Self::Signal];

    fn label(self) -> &'static str {
        match self {
            Self::Smart => "smart",
            Self::Fast => "fast",
            Self::MaxWait => "max_wait",
            Self::Signal => "signal",
        }
    }
}

impl CallOutcome {
    /// One of each label value.
    const ALL: [CallOutcome; 5] = [
        Self::Restored,
        Self::NotAvailable,
        Self::Failover(FailoverKind::Smart),
        Self::Error("io"),
        Self::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Restored => "restored",
            Self::NotAvailable => "not_available",
            Self::Failover(_) => "failover",
            Self::Error(_) => "error",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Samples by metric line key (`name{labels}`): the state carried over.
type Samples = BTreeMap<String, f64>;

const HELP: &[(&str, &str, &str)] = &[
    ("pg_standby_calls_total", "counter", "Calls by outcome."),
    (
        "pg_standby_restores_total",
        "counter",
        "Segments and files restored.",
    ),
    (
        "pg_standby_restored_bytes_total",
        "counter",
        "Bytes written to %p.",
    ),
    (
        "pg_standby_failovers_total",
        "counter",
        "Failovers by kind (smart, fast, max_wait, signal).",
    ),
    (
        "pg_standby_errors_total",
        "counter",
        "Calls that stopped recovery, by kind.",
    ),
    (
        "pg_standby_prefetch_total",
        "counter",
        "Segments looked for in the prefetch spool, by result (hit, miss).",
    ),
    (
        "pg_standby_last_restored_lsn",
        "gauge",
        "Start LSN (as a number) of the last restored segment.",
    ),
    (
        "pg_standby_last_restored_timeline",
        "gauge",
        "Timeline of the last restored segment.",
    ),
    (
        "pg_standby_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last restore.",
    ),
    (
        "pg_standby_last_call_wait_seconds",
        "gauge",
        "Seconds the last call waited.",
    ),
    (
        "pg_standby_last_call_copy_seconds",
        "gauge",
        "Seconds the last call spent copying.",
    ),
    (
        "pg_standby_archive_newest_lsn",
        "gauge",
        "Start LSN (as a number) of the newest segment seen in the archive.",
    ),
    (
        "pg_standby_archive_newest_timeline",
        "gauge",
        "Timeline of the newest segment seen in the archive.",
    ),
    (
        "pg_standby_registry_standbys",
        "gauge",
        "Standbys of this cluster whose entries hold the archive's cleanup back, this one included (at the last cleanup).",
    ),
    (
        "pg_standby_registry_expired",
        "gauge",
        "Entries of this cluster older than --standby-expiry, which no longer hold cleanup back (at the last cleanup).",
    ),
    (
        "pg_standby_archive_oldest_kept_lsn",
        "gauge",
        "Start LSN (as a number) of the oldest segment the last cleanup kept: the slowest live standby's restart point.",
    ),
];

/// Every counter with every label value, at 0: a counter that appears
/// only at its first increase has no earlier sample, so `increase()` and
/// `rate()` would not see that increase.
fn zero_counters() -> Vec<String> {
    let mut keys = vec![
        "pg_standby_restores_total".to_string(),
        "pg_standby_restored_bytes_total".to_string(),
    ];
    for outcome in CallOutcome::ALL {
        keys.push(format!(
            "pg_standby_calls_total{{outcome=\"{}\"}}",
            outcome.label()
        ));
    }
    for kind in FailoverKind::ALL {
        keys.push(format!(
            "pg_standby_failovers_total{{kind=\"{}\"}}",
            kind.label()
        ));
    }
    for kind in crate::exit::Fatal::ALL {
        keys.push(format!(
            "pg_standby_errors_total{{kind=\"{}\"}}",
            kind.label()
        ));
    }
    for result in ["hit", "miss"] {
        keys.push(format!("pg_standby_prefetch_total{{result=\"{result}\"}}"));
    }
    keys
}

/// Add one call to the carried-over samples.
pub fn apply(mut samples: Samples, report: &CallReport, now: f64) -> Samples {
    for key in zero_counters() {
        samples.entry(key).or_insert(0.0);
    }
    let mut add = |key: String, by: f64| *samples.entry(key).or_insert(0.0) += by;
    add(
        format!(
            "pg_standby_calls_total{{outcome=\"{}\"}}",
            report.outcome.label()
        ),
        1.0,
    );
    match report.outcome {
        CallOutcome::Failover(kind) => add(
            format!("pg_standby_failovers_total{{kind=\"{}\"}}", kind.label()),
            1.0,
        ),
        CallOutcome::Error(kind) => add(format!("pg_standby_errors_total{{kind=\"{kind}\"}}"), 1.0),
        _ => {}
    }
    if report.outcome == CallOutcome::Restored {
        add("pg_standby_restores_total".into(), 1.0);
        add(
            "pg_standby_restored_bytes_total".into(),
            report.bytes as f64,
        );
    }
    if let Some(hit) = report.spool {
        let result = if hit { "hit" } else { "miss" };
        add(
            format!("pg_standby_prefetch_total{{result=\"{result}\"}}"),
            1.0,
        );
    }
    let mut set = |key: &str, value: f64| {
        samples.insert(key.to_string(), value);
    };
    if report.outcome == CallOutcome::Restored {
        set("pg_standby_last_success_timestamp_seconds", now);
    }
    if let Some((lsn, tli)) = report.restored {
        set("pg_standby_last_restored_lsn", lsn as f64);
        set("pg_standby_last_restored_timeline", f64::from(tli));
    }
    if let Some((lsn, tli)) = report.newest_in_archive {
        set("pg_standby_archive_newest_lsn", lsn as f64);
        set("pg_standby_archive_newest_timeline", f64::from(tli));
    }
    set("pg_standby_last_call_wait_seconds", report.wait_seconds);
    set("pg_standby_last_call_copy_seconds", report.copy_seconds);
    samples
}

pub fn render(samples: &Samples) -> String {
    let mut out = String::new();
    for (name, kind, help) in HELP {
        let lines: Vec<_> = samples
            .iter()
            .filter(|(key, _)| metric_name(key) == *name)
            .collect();
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (key, value) in lines {
            out.push_str(&format!("{key} {value}\n"));
        }
    }
    out
}

/// Read back what [`render`] wrote. `Err` on anything else: the caller
/// starts again from zero.
pub fn parse(text: &str) -> Result<Samples, String> {
    let mut samples = Samples::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("line {}: no value", n + 1))?;
        let known = HELP.iter().any(|(name, _, _)| *name == metric_name(key));
        let value: f64 = value
            .parse()
            .map_err(|_| format!("line {}: bad value {value:?}", n + 1))?;
        if !known || !value.is_finite() {
            return Err(format!("line {}: unexpected sample", n + 1));
        }
        samples.insert(key.to_string(), value);
    }
    Ok(samples)
}

fn metric_name(key: &str) -> &str {
    key.split('{').next().unwrap_or(key)
}

/// Add `report` to the metrics file at `path`. Never fails the call:
/// problems are logged as warnings.
pub fn record(path: &Path, report: &CallReport) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    update(path, |samples| apply(samples, report, now));
}

/// What the last cleanup saw of the archive's registry of standbys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegistryReport {
    pub standbys: usize,
    pub expired: usize,
    /// Start LSN of the oldest segment kept, where the segment size is known.
    pub oldest_kept: Option<u64>,
}

/// Set the registry's gauges (the cleanup process, after a cleanup).
pub fn record_registry(path: &Path, report: &RegistryReport) {
    update(path, |mut samples| {
        samples.insert(
            "pg_standby_registry_standbys".into(),
            report.standbys as f64,
        );
        samples.insert("pg_standby_registry_expired".into(), report.expired as f64);
        if let Some(lsn) = report.oldest_kept {
            samples.insert("pg_standby_archive_oldest_kept_lsn".into(), lsn as f64);
        }
        samples
    });
}

/// Read, change and replace the metrics file under its lock. Never fails
/// the caller: problems are logged as warnings.
fn update(path: &Path, change: impl FnOnce(Samples) -> Samples) {
    if let Err(e) = try_update(path, change) {
        tracing::warn!(
            "could not write the metrics file \"{}\": {e:#} (the restore itself is not affected)",
            path.display()
        );
    }
}

fn try_update(path: &Path, change: impl FnOnce(Samples) -> Samples) -> Result<()> {
    let lock_path = with_suffix(path, ".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening \"{}\"", lock_path.display()))?;
    crate::sys::flock::exclusive(&lock, crate::sys::flock::Wait::Block)
        .context("locking the metrics file")?;
    let previous = match fs::read_to_string(path) {
        Ok(text) => parse(&text).unwrap_or_else(|why| {
            tracing::warn!(
                "metrics file \"{}\" is not ours or is damaged ({why}): counters start again at zero",
                path.display()
            );
            Samples::new()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Samples::new(),
        Err(e) => return Err(e).context("reading the previous metrics"),
    };
    let text = render(&change(previous));
    let tmp = with_suffix(path, &format!(".{}.tmp", std::process::id()));
    // 0644 whatever the server's umask (often 077): node_exporter's
    // textfile collector reads the file as another user. The file holds
    // counters only.
    let written = File::create(&tmp)
        .and_then(|mut f| {
            f.set_permissions(fs::Permissions::from_mode(0o644))?;
            f.write_all(text.as_bytes())
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing \"{}\"", path.display()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restored() -> CallReport {
        CallReport {
            outcome: CallOutcome::Restored,
            restored: Some((0x2A00_0000, 1)),
            bytes: 16 << 20,
            wait_seconds: 0.5,
            copy_seconds: 0.01,
            newest_in_archive: Some((0x2B00_0000, 1)),
            spool: Some(true),
        }
    }

    #[test]
    fn counters_carry_across_calls_and_gauges_are_replaced() {
        let once = apply(Samples::new(), &restored(), 100.0);
        let text = render(&once);
        let failover = CallReport {
            outcome: CallOutcome::Failover(FailoverKind::Smart),
            ..CallReport::default()
        };
        let twice = apply(parse(&text).unwrap(), &restored(), 200.0);
        let thrice = apply(twice, &failover, 300.0);
        let text = render(&thrice);
        assert!(text.contains("pg_standby_restores_total 2\n"), "{text}");
        assert!(text.contains("pg_standby_restored_bytes_total 33554432\n"));
        assert!(text.contains("pg_standby_calls_total{outcome=\"restored\"} 2\n"));
        assert!(text.contains("pg_standby_failovers_total{kind=\"smart\"} 1\n"));
        assert!(text.contains("pg_standby_last_success_timestamp_seconds 200\n"));
        assert!(text.contains("pg_standby_last_restored_lsn 704643072\n"));
        assert!(text.contains("pg_standby_prefetch_total{result=\"hit\"} 2\n"));
        assert!(text.contains("# TYPE pg_standby_restores_total counter\n"));
        assert_eq!(parse(&text).unwrap(), thrice);
    }

    #[test]
    fn every_counter_and_label_is_there_from_the_first_call() {
        let text = render(&apply(Samples::new(), &CallReport::default(), 1.0));
        for key in [
            "pg_standby_errors_total{kind=\"bad_segment\"} 0\n",
            "pg_standby_errors_total{kind=\"usage\"} 0\n",
            "pg_standby_failovers_total{kind=\"max_wait\"} 0\n",
            "pg_standby_calls_total{outcome=\"shutdown\"} 0\n",
            "pg_standby_calls_total{outcome=\"not_available\"} 1\n",
            "pg_standby_prefetch_total{result=\"miss\"} 0\n",
            "pg_standby_restores_total 0\n",
        ] {
            assert!(text.contains(key), "{key} missing from\n{text}");
        }
        assert_eq!(zero_counters().len(), 2 + 5 + 4 + 5 + 2);
    }

    #[test]
    fn foreign_or_damaged_text_is_refused() {
        assert!(parse("node_load1 3\n").is_err());
        assert!(parse("pg_standby_restores_total x\n").is_err());
        assert!(parse("pg_standby_restores_total\n").is_err());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn records_through_a_rename_and_recovers_from_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg_standby.prom");
        record(&path, &restored());
        record(&path, &restored());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("pg_standby_restores_total 2\n"), "{text}");
        fs::write(&path, "garbage\n").unwrap();
        record(&path, &restored());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("pg_standby_restores_total 1\n"), "{text}");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn an_unwritable_directory_is_only_a_warning() {
        record(Path::new("/nonexistent-dir/pg_standby.prom"), &restored());
    }
}
