//! Archive cleanup after a successful restore: remove the segments the
//! standby will never ask for again.
//!
//! The removal runs in a process of its own, started after the segment is
//! in place: the server waits for our exit before it replays, and
//! unlinking 16 MiB files (whose pages the archiver may still be writing
//! back) or listing a large archive is no business of that wait.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::archive::Archive;
use crate::archive::cutoff::is_removable;
use crate::archive::registry::{self, Entry, Me};
use crate::obs::logging::human_duration;
use crate::sys::flock;
use crate::wal::SegmentName;

/// This standby in the archive's registry of standbys
/// (src/archive/registry.rs): its entry, and how long the others' count.
#[derive(Debug, Clone)]
pub struct Registration {
    pub me: Me,
    pub expiry: Duration,
    pub data_directory: PathBuf,
    /// `--metrics-file`: the registry's gauges go there too.
    pub metrics_file: Option<PathBuf>,
}

impl Registration {
    /// From the cleanup process's arguments: `SYSID[:SEGMENT_SIZE]`.
    pub fn from_args(
        cluster: &str,
        name: String,
        expiry: Duration,
        metrics_file: Option<PathBuf>,
        cwd: &Path,
    ) -> Result<Self> {
        let (sysid, seg_size) = match cluster.split_once(':') {
            Some((id, size)) => (id, Some(size)),
            None => (cluster, None),
        };
        Ok(Registration {
            me: Me {
                name,
                system_identifier: sysid.parse().context("--cleanup-cluster")?,
                segment_size: seg_size
                    .map(str::parse)
                    .transpose()
                    .context("--cleanup-cluster")?,
            },
            expiry,
            data_directory: cwd.to_path_buf(),
            metrics_file,
        })
    }

    fn args(&self) -> Vec<String> {
        let me = &self.me;
        let mut args = vec![
            format!(
                "--cleanup-cluster={}{}",
                me.system_identifier,
                me.segment_size.map_or(String::new(), |s| format!(":{s}"))
            ),
            format!("--standby-name={}", me.name),
            format!("--standby-expiry={}", (self.expiry.as_secs() / 3600).max(1)),
        ];
        args.extend(
            self.metrics_file
                .iter()
                .map(|f| format!("--metrics-file={}", f.display())),
        );
        args
    }
}

/// Start the removal of what precedes `cutoff` in its own process. `false`
/// if it could not be started: the caller removes inline.
pub fn hand_off(
    archive: &Path,
    cutoff: SegmentName,
    dry_run: bool,
    debug: bool,
    registration: Option<&Registration>,
) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let mut cmd = Command::new(exe);
    cmd.arg(format!("--cleanup-before={cutoff}"));
    if let Some(r) = registration {
        cmd.args(r.args());
    }
    if dry_run {
        cmd.arg("-n");
    }
    if debug {
        cmd.arg("-d");
    }
    // Its log lines go where ours go.
    cmd.arg("--")
        .arg(archive)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match cmd.spawn() {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("could not start the archive cleanup apart: {e}; cleaning up now");
            false
        }
    }
}

/// The process [`hand_off`] starts. Cleanups of one local archive run one
/// at a time (a lock on the directory), so two never race over its files.
pub fn detached(
    cutoff: &str,
    archive: Option<&Path>,
    dry_run: bool,
    registration: Option<Registration>,
) -> ExitCode {
    let (Some(cutoff), Some(location)) = (SegmentName::parse(cutoff), archive) else {
        tracing::error!("internal error: a cleanup needs a segment name and an archive");
        return ExitCode::SUCCESS;
    };
    let archive = match Archive::open(location) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("archive cleanup stopped: {e} (the restore itself succeeded)");
            return ExitCode::SUCCESS;
        }
    };
    let _lock = (!archive.is_remote())
        .then(|| File::open(location).ok())
        .flatten()
        .inspect(|dir| {
            let _ = flock::exclusive(dir, flock::Wait::Block);
        });
    clean(&archive, cutoff, dry_run, registration.as_ref());
    ExitCode::SUCCESS
}

/// One cleanup: publish this standby's position, read the others', and
/// remove what none of the live ones needs ([`registry::plan`]). Without a
/// registration (the cluster unknown), as before the registry: up to
/// `cutoff`.
pub fn clean(archive: &Archive, cutoff: SegmentName, dry_run: bool, reg: Option<&Registration>) {
    let Some(reg) = reg else {
        report(archive.remove_before(cutoff, dry_run), cutoff, dry_run);
        return;
    };
    let now = registry::now();
    let me = &reg.me;
    let file_name = Entry::file_name(me.system_identifier, &me.name);
    let host = registry::host_name();
    let data_directory = reg.data_directory.display().to_string();
    let last = archive.entry(&file_name);
    if let Some(other) = &last
        && registry::written_by_another(other, &host, &data_directory, now, reg.expiry)
    {
        tracing::warn!(
            "archive cleanup skipped: the standby name \"{}\" is also used by the standby at \
             {}:{} (its entry \"{}\" was written {} ago): two standbys with one name overwrite \
             each other's position, and the one behind may lose segments it needs. Give each \
             standby its own --standby-name (if that entry is this standby's own from before it \
             moved, remove the file)",
            me.name,
            other.host,
            other.data_directory,
            archive
                .path_of(&format!("{}/{file_name}", registry::DIR))
                .display(),
            human_duration(Duration::from_secs(now.saturating_sub(other.written)))
        );
        return;
    }
    // The same position as the last cleanup, recently published: that
    // cleanup removed what could go, and what the others' moves free is
    // removed by their own cleanups. One read instead of a write, a listing
    // and a read per standby (on a store, a request each).
    if !dry_run
        && let Some(last) = last
        && last.restart == cutoff
        && now.saturating_sub(last.written) < registry::REFRESH.as_secs()
    {
        tracing::debug!("archive cleanup: nothing new since the last one, up to {cutoff}");
        return;
    }
    let entry = Entry {
        name: me.name.clone(),
        system_identifier: me.system_identifier,
        segment_size: me.segment_size,
        restart: cutoff,
        written: now,
        host,
        data_directory,
    };
    if !dry_run && let Err(e) = archive.publish(&file_name, &entry.encode()) {
        tracing::warn!(
            "archive cleanup skipped: cannot write this standby's entry \"{}/{file_name}\" in \
             the archive: {e} (the restore itself succeeded; a read-only archive is never cleaned)",
            registry::DIR
        );
        return;
    }
    let found = match archive.registry() {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(
                "archive cleanup skipped: cannot read the standbys' entries under \"{}\": {e} \
                 (the restore itself succeeded)",
                registry::DIR
            );
            return;
        }
    };
    let plan = registry::plan(cutoff, me, &found, now, reg.expiry);
    for (name, age) in &plan.expired {
        tracing::warn!(
            "archive cleanup: standby \"{name}\" has not updated its entry for {} (more than \
             --standby-expiry): it no longer holds cleanup back. If it is gone for good, remove \
             \"{}\"",
            human_duration(*age),
            archive
                .path_of(&format!(
                    "{}/{}",
                    registry::DIR,
                    Entry::file_name(me.system_identifier, name)
                ))
                .display()
        );
    }
    for (file, why) in &plan.unreadable {
        tracing::warn!(
            "archive cleanup skipped: the standby entry \"{}\" cannot be read ({why}), and it \
             may be a standby of this cluster: nothing is removed until it is fixed or removed",
            archive
                .path_of(&format!("{}/{file}", registry::DIR))
                .display()
        );
    }
    if let Some(path) = &reg.metrics_file {
        let report = crate::obs::metrics::RegistryReport {
            standbys: plan.live.len() + 1,
            expired: plan.expired.len(),
            oldest_kept: plan
                .cutoff
                .zip(me.segment_size)
                .and_then(|(c, size)| c.start_lsn(size)),
        };
        crate::obs::metrics::record_registry(path, &report);
    }
    let Some(cutoff) = plan.cutoff else { return };
    if let Some(by) = &plan.held_by {
        tracing::debug!(
            "archive cleanup: keeping from {cutoff} on, which standby \"{by}\" still needs"
        );
    }
    report(archive.remove_before(cutoff, dry_run), cutoff, dry_run);
}

/// The one log line of a cleanup.
pub fn report(result: io::Result<Summary>, cutoff: SegmentName, dry_run: bool) {
    match result {
        Ok(s) if s.removed > 0 => tracing::info!(
            "archive cleanup: {} {} segment(s) older than {cutoff}",
            if dry_run { "would remove" } else { "removed" },
            s.removed
        ),
        Ok(_) => tracing::debug!("archive cleanup: nothing older than {cutoff}"),
        Err(e) => tracing::warn!("archive cleanup stopped: {e} (the restore itself succeeded)"),
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub removed: usize,
}

/// Remove (or with `dry_run`, only log) every removable file. Stops at the
/// first file that cannot be removed, as pg_standby does: the rest would
/// most likely fail the same way.
pub fn run(archive: &Path, cutoff: SegmentName, dry_run: bool) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for entry in fs::read_dir(archive)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_removable(name, cutoff) {
            continue;
        }
        let path = entry.path();
        if dry_run {
            tracing::info!("cleanup dry run: would remove \"{}\"", path.display());
        } else {
            tracing::debug!("removing \"{}\"", path.display());
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("could not remove \"{}\": {e}", path.display()),
                    ));
                }
            }
        }
        summary.removed += 1;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(name: &str) -> SegmentName {
        SegmentName::parse(name).unwrap()
    }

    #[test]
    fn removes_and_dry_runs() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "00000001000000370000000C",
            "00000001000000370000000D",
            "00000001000000370000000E",
            "00000001000000370000000D.partial",
            "00000002.history",
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        let cutoff = seg("00000001000000370000000E");
        assert_eq!(run(dir.path(), cutoff, true).unwrap().removed, 2);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 5);
        assert_eq!(run(dir.path(), cutoff, false).unwrap().removed, 2);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "00000001000000370000000D.partial",
                "00000001000000370000000E",
                "00000002.history"
            ]
        );
    }
}
