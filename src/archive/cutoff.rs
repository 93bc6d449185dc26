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

/// One page of a listing of object storage, names in byte order: adds the
/// names to remove to `doomed`, and answers where the listing may go on
/// (`None`: after this page). Within a timeline, names sort by position
/// (fixed-width upper-case hex), so after the first of its segments at or
/// past the cutoff nothing more of that timeline goes: the listing skips
/// to the next timeline ("TTTTTTTTG" sorts after every segment name of
/// timeline TTTTTTTT and before those of the next). The selection is
/// [`is_removable`]'s, timeline ignored, as pg_archivecleanup's (which
/// compares names from the ninth character on).
#[cfg(feature = "remote")]
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
    #[cfg(feature = "remote")]
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

    #[cfg(feature = "remote")]
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
        // A build without gzip leaves `.gz` files alone, as unrelated.
        let gz = usize::from(cfg!(feature = "gzip"));
        assert_eq!(expected.len(), 4 + gz, "{expected:?}");
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

    #[cfg(feature = "remote")]
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
}
