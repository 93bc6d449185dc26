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

/// The oldest segment to keep, from `%r`. `None` when nothing may go: `%r` is
/// the all-zero name the server passes before redo starts, or it sorts after
/// the requested segment (pg_standby's "better safe than sorry" rule, which
/// compares whole names, timeline included).
pub fn cutoff_from_restart(restart: SegmentName, requested: SegmentName) -> Option<SegmentName> {
    if restart.is_zero() || restart.to_string() > requested.to_string() {
        None
    } else {
        Some(restart)
    }
}

/// The oldest segment to keep with `-k N`: the N segments before the
/// requested one survive. Unlike pg_standby 13 this counts the real number
/// of segments per log file, so exactly N are kept across a log boundary.
pub fn cutoff_keeping(keep: u64, requested: SegmentName, segment_size: u64) -> Option<SegmentName> {
    if keep == 0 {
        return None;
    }
    let segno = requested.segno(segment_size)?;
    let oldest_kept = segno.checked_sub(keep)?;
    Some(SegmentName::from_segno(
        requested.tli,
        oldest_kept,
        segment_size,
    ))
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
    // The usual call: `%r` moves at restart points only, so most find it
    // where the last cleanup left it. On a local archive one read of this
    // standby's entry says so, and no process is started for nothing (on
    // a store that read is a request: the cleanup process makes it).
    if let Some(reg) = registration
        && !crate::archive::is_object_storage(&archive.to_string_lossy())
        && let Ok(local) = Archive::open(archive)
        && nothing_new(&local, cutoff, dry_run, reg)
    {
        return true;
    }
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
    if nothing_new(archive, cutoff, dry_run, reg) {
        return;
    }
    let entry = Entry {
        name: me.name.clone(),
        system_identifier: me.system_identifier,
        segment_size: me.segment_size,
        restart: cutoff,
        written: now,
        host: registry::host_name(),
        data_directory: reg.data_directory.display().to_string(),
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

/// The same position as the last cleanup, recently published: that
/// cleanup removed what could go, and what the others' moves free is
/// removed by their own cleanups. One read instead of a write, a listing
/// and a read per standby (on a store, a request each).
fn nothing_new(archive: &Archive, cutoff: SegmentName, dry_run: bool, reg: &Registration) -> bool {
    let file_name = Entry::file_name(reg.me.system_identifier, &reg.me.name);
    let unchanged = !dry_run
        && archive.entry(&file_name).is_some_and(|last| {
            last.restart == cutoff
                && registry::now().saturating_sub(last.written) < registry::REFRESH.as_secs()
        });
    if unchanged {
        tracing::debug!("archive cleanup: nothing new since the last one, up to {cutoff}");
    }
    unchanged
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

/// Whether a directory entry is removed: only segment names, bare or with
/// a compression suffix, of any timeline, strictly before the cutoff.
pub fn is_removable(file_name: &str, cutoff: SegmentName) -> bool {
    crate::archive::segment_of(file_name).is_some_and(|n| n.position() < cutoff.position())
}

/// One page of a listing of object storage, names in byte order: adds the
/// names to remove to `doomed`, and answers where the listing may go on
/// (`None`: after this page). Within a timeline, names sort by position
/// (fixed-width upper-case hex), so after the first of its segments at or
/// past the cutoff nothing more of that timeline goes: the listing skips
/// to the next timeline ("TTTTTTTTG" sorts after every segment name of
/// timeline TTTTTTTT and before those of the next). The selection is
/// [`is_removable`]'s, timeline ignored, as pg_archivecleanup's (which
/// compares names from the ninth character on).
pub fn sift(
    page: &[(String, u64)],
    cutoff: SegmentName,
    doomed: &mut Vec<String>,
) -> Option<String> {
    let mut skip: Option<String> = None;
    for (name, _) in page {
        if skip.as_ref().is_some_and(|past| name <= past) {
            continue;
        }
        skip = None;
        if is_removable(name, cutoff) {
            doomed.push(name.clone());
        } else if let Some(kept) = crate::archive::segment_of(name)
            && kept.position() >= cutoff.position()
        {
            skip = Some(format!("{:08X}G", kept.tli));
        }
    }
    skip
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

    const MIB: u64 = 1024 * 1024;

    fn seg(name: &str) -> SegmentName {
        SegmentName::parse(name).unwrap()
    }

    #[test]
    fn restart_cutoff_rules() {
        let next = seg("000000010000000000000010");
        assert_eq!(
            cutoff_from_restart(seg("00000001000000000000000C"), next),
            Some(seg("00000001000000000000000C"))
        );
        assert_eq!(
            cutoff_from_restart(seg("000000000000000000000000"), next),
            None
        );
        // %r after %f: never clean up.
        assert_eq!(
            cutoff_from_restart(seg("000000010000000000000011"), next),
            None
        );
        // Whole-name comparison: a later timeline sorts after, so no cleanup
        // (pg_standby 13's strcmp(restartWALFileName, nextWALFileName) in
        // contrib/pg_standby/pg_standby.c SetWALFileNameForCleanup).
        assert_eq!(
            cutoff_from_restart(
                seg("000000020000000000000003"),
                seg("000000010000000000000004")
            ),
            None
        );
    }

    /// `-k` arithmetic. Where pg_standby 13 differs (it assumed 255 segments
    /// per log file), its result is in the comment.
    #[test]
    fn keep_n_cutoffs() {
        let next = seg("000000010000000100000003");
        let cases = [
            (0, None),
            (1, Some("000000010000000100000002")),
            (3, Some("000000010000000100000000")),
            (5, Some("0000000100000000000000FE")), // pg_standby 13: ...FD
            (256, Some("000000010000000000000003")), // pg_standby 13: ...02
            (259, Some("000000010000000000000000")),
            (260, None),
        ];
        for (keep, expected) in cases {
            assert_eq!(
                cutoff_keeping(keep, next, 16 * MIB).map(|c| c.to_string()),
                expected.map(str::to_string),
                "-k {keep}"
            );
        }
        assert_eq!(
            cutoff_keeping(2, seg("000000010000000100000004"), 1024 * MIB),
            None,
            "seg 4 does not exist with 1 GiB segments"
        );
        assert_eq!(
            cutoff_keeping(2, seg("000000010000000100000001"), 1024 * MIB)
                .unwrap()
                .to_string(),
            "000000010000000000000003" // pg_standby 13: ...02
        );
        assert_eq!(
            cutoff_keeping(1, seg("000000010000000000000000"), 16 * MIB),
            None
        );
        assert_eq!(
            cutoff_keeping(2, seg("000000010000000100000000"), MIB)
                .unwrap()
                .to_string(),
            "000000010000000000000FFE"
        );
    }

    /// pg_archivecleanup's TAP fixtures (src/bin/pg_archivecleanup/t/
    /// 010_pg_archivecleanup.pl), run through our selection. pg_standby
    /// removes segments plain or compressed (pg_archivecleanup needs `-x`
    /// for one extension), keeps backup-history files (its `-b`), and, as
    /// it does, `.partial` and unrelated files.
    #[test]
    fn pg_archivecleanup_fixtures() {
        let cutoff = seg("00000001000000370000000E");
        // A build without a codec leaves its files alone, as unrelated.
        let table = [
            ("00000001000000370000000C.gz", cfg!(feature = "gzip")),
            ("00000001000000370000000C.zst", cfg!(feature = "zstd")),
            ("00000001000000370000000E.gz", false),
            ("00000001000000370000000C.gz.tmp", false),
            ("00000001000000370000000F.partial.gz", false),
            ("00000001000000370000000D", true),
            ("00000001000000370000000D.backup", false),
            ("00000001000000370000000D.00000028.backup", false),
            ("00000001000000370000000E", false),
            ("00000001000000370000000F.partial", false),
            ("unrelated_file", false),
            // Timeline ignored, lowercase and 25-char names never touched.
            ("00000009000000370000000D", true),
            ("00000001000000360000000F", true),
            ("00000001000000370000000d", false),
            ("00000001000000370000000D0", false),
            ("00000001000000370000000F", false),
        ];
        for (name, removed) in table {
            assert_eq!(is_removable(name, cutoff), removed, "{name}");
        }
    }

    /// A listing in pages of `size`, each going on where [`sift`] says:
    /// what a store's listing with `start-after` does.
    fn sift_listing(names: &[&str], cutoff: SegmentName, size: usize) -> (Vec<String>, usize) {
        let mut sorted: Vec<(String, u64)> = names.iter().map(|n| (n.to_string(), 0)).collect();
        sorted.sort();
        let (mut doomed, mut read, mut from) = (Vec::new(), 0, 0);
        while from < sorted.len() {
            let page = &sorted[from..(from + size).min(sorted.len())];
            read += page.len();
            from += page.len();
            if let Some(after) = sift(page, cutoff, &mut doomed) {
                from = sorted.partition_point(|(n, _)| *n <= after);
            }
        }
        (doomed, read)
    }

    #[test]
    fn a_listing_skips_what_it_keeps_and_misses_nothing() {
        let cutoff = seg("000000010000000000000005");
        let names = [
            "00000001.history",
            "000000010000000000000001",
            "000000010000000000000001.gz",
            "000000010000000000000002",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000004.partial",
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000007",
            "000000010000000000000008",
            "00000002.history",
            "000000020000000000000003",
            "000000020000000000000009",
            "00000002000000000000000A",
            "00000003000000000000000A",
            "0000000A0000000000000001",
            "0000000A0000000000000010",
            "0000000A0000000000000011",
            "standbys/x",
            "unrelated",
        ];
        let expected: Vec<String> = {
            let mut v: Vec<_> = names
                .iter()
                .filter(|n| is_removable(n, cutoff))
                .map(|n| n.to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(expected.len(), 5, "{expected:?}");
        for size in 1..=names.len() {
            let (doomed, read) = sift_listing(&names, cutoff, size);
            assert_eq!(doomed, expected, "pages of {size}");
            assert!(read <= names.len(), "pages of {size}: read {read}");
        }
        // One name at a time, the kept ones past the first of each
        // timeline are never read.
        let (_, read) = sift_listing(&names, cutoff, 1);
        assert_eq!(read, names.len() - 5, "read {read}");
    }

    #[test]
    fn sift_says_where_to_go_on() {
        let cutoff = seg("000000010000000000000005");
        let page = |names: &[&str]| -> Vec<(String, u64)> {
            names.iter().map(|n| (n.to_string(), 0)).collect()
        };
        let mut doomed = Vec::new();
        // Nothing kept yet: after the page.
        assert_eq!(
            sift(&page(&["000000010000000000000001"]), cutoff, &mut doomed),
            None
        );
        // A kept segment ends the timeline: on after all of it.
        assert_eq!(
            sift(&page(&["000000010000000000000006"]), cutoff, &mut doomed).as_deref(),
            Some("00000001G")
        );
        // A later timeline in the same page is read on.
        assert_eq!(
            sift(
                &page(&["000000010000000000000006", "000000020000000000000001"]),
                cutoff,
                &mut doomed
            ),
            None
        );
        assert_eq!(
            doomed,
            ["000000010000000000000001", "000000020000000000000001"]
        );
        assert!("00000001G" > "000000010000000000000006.zst");
        assert!("00000009G" < "0000000A0000000000000000");
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
