//! A directory archive and what is in it: readable, segments of this
//! cluster and size, no gap before the next checkpoint's redo; and the
//! primary's archive_command.

use super::*;

/// A standby that archives into the archive it restores from.
pub(super) fn check_archiving(setup: &Setup, archive: &Path, out: &mut Vec<Finding>) {
    if setup.mode == Mode::None || !setup.conf_found {
        return;
    }
    // archive_mode is an enum: off, on, always and the boolean aliases
    // (archive_mode_options in guc_tables.c).
    let mode = setup
        .conf
        .value("archive_mode")
        .unwrap_or("off")
        .trim()
        .to_ascii_lowercase();
    let always = mode == "always";
    if !always && !matches!(mode.as_str(), "on" | "true" | "yes" | "1") {
        out.push(ok(
            "archiving",
            format!("archive_mode = {mode}: this standby archives nothing"),
        ));
        return;
    }
    // From 15 on an archive_library replaces archive_command.
    if let Some(lib) = setup
        .conf
        .value("archive_library")
        .filter(|l| !l.is_empty())
    {
        out.push(finding(
            Severity::Note,
            "archive-library",
            format!("archive_library = {lib}: where it archives was not checked"),
            String::new(),
        ));
        return;
    }
    let command = setup.conf.value("archive_command").unwrap_or("");
    let raw = archive.to_string_lossy();
    let mut targets: Vec<String> = Vec::new();
    if let Some(l) = raw
        .strip_prefix("s3://")
        .filter(|_| is_object_storage(&raw))
    {
        // s3://BUCKET/PREFIX, or BUCKET/PREFIX in an endpoint URL (curl).
        targets.push(l.trim_end_matches('/').to_string());
    } else {
        let abs = setup.datadir.join(archive);
        targets.push(abs.to_string_lossy().trim_end_matches('/').to_string());
        if let Ok(c) = fs::canonicalize(&abs) {
            targets.push(c.to_string_lossy().trim_end_matches('/').to_string());
        }
        if archive.is_relative() {
            targets.push(raw.trim_end_matches('/').to_string());
        }
    }
    let hit = targets
        .iter()
        .any(|t| !t.is_empty() && command.contains(&format!("{t}/")));
    if !hit {
        out.push(ok(
            "archiving",
            format!("archive_mode = {mode}: archive_command does not write into {raw}"),
        ));
        return;
    }
    let (message, fix) = if always {
        (
            format!(
                "archive_mode = always and archive_command writes into {raw}, the archive this \
                 standby restores from: with always, every segment it restores is archived \
                 again (KeepFileRestoredFromArchive), into the archive its primary writes too; an \
                 archive_command that refuses to overwrite (test ! -f) then fails for ever and \
                 pg_wal fills up"
            ),
            "archive_mode = on (or off) on this standby, or an archive_command into an archive \
             of its own",
        )
    } else {
        (
            format!(
                "archive_mode = on and archive_command writes into {raw}, the archive this \
                 standby restores from: nothing is archived while it is a standby, but once \
                 promoted it archives its new timeline there, where the old primary (if it still \
                 runs) keeps archiving and the other standbys read: they follow the new \
                 timeline (recovery_target_timeline = latest, the default from 12) whether or \
                 not the old primary was stopped, and a %r cleanup removes segments others \
                 still need"
            ),
            "if this standby is the one to take over: stop the old primary for good before \
             promoting, and let only one standby pass %r; else give it an archive_command into \
             an archive of its own, or archive_mode = off until it is promoted",
        )
    };
    out.push(finding(
        Severity::Warning,
        "archives-into-own-archive",
        message,
        fix.into(),
    ));
}

/// Segments in the archive, plain or compressed (`.gz`, `.zst`, ...), with
/// their file names, sorted by position then timeline.
pub(super) fn archived_segments(archive: &Path) -> Vec<(SegmentName, String)> {
    let mut v: Vec<(SegmentName, String)> = fs::read_dir(archive)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let file = e.file_name().into_string().ok()?;
                    let base = Codec::split_name(&file).map_or(file.as_str(), |(_, b)| b);
                    Some((SegmentName::parse(base)?, file))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|(s, _)| (s.log, s.seg, s.tli));
    v
}

/// Keeps the first bytes written to it, then refuses more: decompressing
/// just the header.
pub(super) struct Head(Vec<u8>);

impl std::io::Write for Head {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = LONG_HEADER_LEN - self.0.len();
        if room == 0 {
            return Err(std::io::Error::other("enough"));
        }
        let n = room.min(buf.len());
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) fn read_header(path: &Path) -> Option<LongPageHeader> {
    let mut file = fs::File::open(path).ok()?;
    let name = path.file_name()?.to_str()?;
    let mut buf = [0u8; LONG_HEADER_LEN];
    if let Some((codec, _)) = Codec::split_name(name) {
        let mut head = Head(Vec::with_capacity(LONG_HEADER_LEN));
        // The writer stops the decoder once it has the header.
        let _ = decompress_to(codec, file, &mut head, u64::MAX, &|| false);
        buf.copy_from_slice(head.0.get(..LONG_HEADER_LEN)?);
    } else {
        file.read_exact(&mut buf).ok()?;
    }
    Some(LongPageHeader::parse(&buf))
}

pub(super) fn check_local_archive(setup: &Setup, archive: &Path, out: &mut Vec<Finding>) {
    let before = out.len();
    check_archive(setup, archive, out);
    if clean_since(out, before) {
        let segments = archived_segments(archive);
        let newest = segments.last().map_or("", |(_, f)| f.as_str());
        out.push(ok(
            "archive",
            format!(
                "the archive {} is readable by {}: {} segment(s), newest {newest}, of this \
                 cluster and segment size, none missing since the redo point",
                archive.display(),
                setup.owner_name(),
                segments.len()
            ),
        ));
    }
}

pub(super) fn check_archive(setup: &Setup, archive: &Path, out: &mut Vec<Finding>) {
    use Severity::*;
    let owner = setup.owner_name();
    match fs::metadata(archive) {
        Err(e) => {
            out.push(finding(
                Error,
                "archive-missing",
                format!("the archive {} cannot be found: {e}", archive.display()),
                "create it (or mount it) or correct ARCHIVELOCATION in restore_command".into(),
            ));
            return;
        }
        Ok(m) if !m.is_dir() => {
            out.push(finding(
                Error,
                "archive-not-a-directory",
                format!("the archive {} is not a directory", archive.display()),
                "correct ARCHIVELOCATION in restore_command".into(),
            ));
            return;
        }
        Ok(_) => {}
    }
    if setup.may(archive, libc::R_OK | libc::X_OK) == Some(false) {
        out.push(finding(
            Error,
            "archive-not-readable",
            format!(
                "{owner}, who runs restore_command, cannot list and read the archive {}",
                archive.display()
            ),
            format!(
                "give {owner} read and search permission on {} and its parents",
                archive.display()
            ),
        ));
        return;
    }
    let segments = archived_segments(archive);
    let control = match Control::read(&setup.datadir) {
        Ok(c) => c,
        Err(e) => {
            out.push(finding(
                Warning,
                "pg-control",
                format!("{e:#}: the archive's segments were not compared with this cluster"),
                "check the data directory (pg_controldata)".into(),
            ));
            return;
        }
    };
    if segments.is_empty() {
        out.push(finding(
            Warning,
            "archive-empty",
            format!(
                "the archive {} holds no WAL segment yet: the standby will wait for its first one",
                archive.display()
            ),
            "check the primary's archive_command".into(),
        ));
        return;
    }
    // The newest few segments: the ones recovery is about to ask for.
    let mut foreign = Vec::new();
    let mut wrong_size = Vec::new();
    let mut unreadable = Vec::new();
    for (name, file) in segments.iter().rev().take(3) {
        let path = archive.join(file);
        if setup.may(&path, libc::R_OK) == Some(false) {
            unreadable.push(path.clone());
        }
        let Some(h) = read_header(&path) else {
            continue;
        };
        if h.sysid != control.system_identifier {
            foreign.push((name, h.sysid));
        }
        if u64::from(h.seg_size) != control.wal_segment_size {
            wrong_size.push((name, h.seg_size));
        }
    }
    if let Some(path) = unreadable.first() {
        out.push(finding(
            Error,
            "archive-segment-not-readable",
            format!(
                "{owner}, who runs restore_command, cannot read {}",
                path.display()
            ),
            "make the archived files readable by the standby's user (the primary's \
             archive_command or its umask creates them)"
                .into(),
        ));
    }
    if let Some((name, sysid)) = foreign.first() {
        out.push(finding(
            Error,
            "archive-foreign-cluster",
            format!(
                "segment {name} in the archive belongs to another cluster (system identifier \
                 {sysid}, this standby's is {}): the archive is not this standby's primary's",
                control.system_identifier
            ),
            "point ARCHIVELOCATION at the primary's archive, or rebuild the standby from a \
             base backup of that primary"
                .into(),
        ));
    }
    if let Some((name, size)) = wrong_size.first() {
        out.push(finding(
            Error,
            "archive-segment-size",
            format!(
                "segment {name} in the archive is made for {size}-byte segments, pg_control \
                 says {}",
                control.wal_segment_size
            ),
            "point ARCHIVELOCATION at this cluster's archive".into(),
        ));
    }
    if !foreign.is_empty() || !wrong_size.is_empty() {
        return;
    }
    if let Some(gap) = find_gap(&segments, &control) {
        out.push(gap);
    }
}

/// Segments missing from the archive between the segment holding the redo
/// point of pg_control's latest checkpoint (where the next start of recovery
/// begins) and the newest archived segment.
pub(super) fn find_gap(segments: &[(SegmentName, String)], control: &Control) -> Option<Finding> {
    let size = control.wal_segment_size;
    let start = control.redo / size;
    let newest = segments.iter().filter_map(|(s, _)| s.segno(size)).max()?;
    if newest <= start {
        return None;
    }
    let present: HashSet<u64> = segments
        .iter()
        .map(|(s, _)| s)
        .filter(|s| s.tli >= control.timeline)
        .filter_map(|s| s.segno(size))
        .filter(|n| (start..=newest).contains(n))
        .collect();
    let span = newest - start + 1;
    let missing = span - present.len() as u64;
    if missing == 0 {
        return None;
    }
    let first_missing = (start..=newest).find(|n| !present.contains(n))?;
    let first = SegmentName::from_segno(control.timeline, first_missing, size);
    Some(finding(
        Severity::Error,
        "archive-gap",
        format!(
            "{missing} segment(s) missing from the archive between the standby's redo point \
             {} and the newest archived segment, first {first}: recovery would wait there for \
             ever",
            fmt_lsn(control.redo)
        ),
        "copy the missing segments into the archive (from the primary's pg_wal), or rebuild \
         the standby from a new base backup"
            .into(),
    ))
}
