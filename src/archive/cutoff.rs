//! Which archived names the cleanup removes: the cutoff from `%r` or
//! `-k`, and the names before it. Pure rules; the removal itself is in
//! `cleanup`.

use crate::wal::SegmentName;

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

/// Whether a directory entry is removed: only segment names, bare or with
/// a compression suffix, of any timeline, strictly before the cutoff.
pub fn is_removable(file_name: &str, cutoff: SegmentName) -> bool {
    crate::archive::segment_of(file_name).is_some_and(|n| n.position() < cutoff.position())
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
}
