//! Timeline history files, to recognise segment names that can never exist.
//!
//! On PostgreSQL 12 and older the server asks for each segment on the
//! newest timeline first, even for positions before that timeline began.
//! Waiting for such a name would block recovery for ever.

use std::io::Read;
use std::path::Path;

use crate::sys::open;
use crate::wal::SegmentName;

/// The LSN at which a timeline begins: the switch point on the last line of
/// its history file (`parentTLI <tab> X/Y <tab> reason`).
pub fn begin_lsn(history: &str) -> Option<u64> {
    history
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(parse_lsn)
        .next_back()
}

fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some(
        u64::from(u32::from_str_radix(hi, 16).ok()?) << 32
            | u64::from(u32::from_str_radix(lo, 16).ok()?),
    )
}

/// Whether `name` lies before the start of its own timeline. The first
/// segment of a timeline is the one holding its switch point.
pub fn precedes_timeline_start(name: SegmentName, begin: u64, segment_size: u64) -> bool {
    name.segno(segment_size)
        .is_some_and(|segno| segno < begin / segment_size)
}

/// Read `TTTTTTTT.history` from the first directory that has it as a
/// regular file.
pub fn find_history(tli: u32, dirs: &[&Path]) -> Option<String> {
    let file = format!("{tli:08X}.history");
    dirs.iter().find_map(|d| {
        let mut text = String::new();
        open::regular(&d.join(&file))
            .and_then(|mut f| f.read_to_string(&mut text))
            .ok()
            .map(|_| text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn reads_the_switch_point_of_the_newest_line() {
        let history = "1\t0/3000000\tno recovery target specified\n\n\
                       2\t0/5000060\tno recovery target specified\n";
        assert_eq!(begin_lsn(history), Some(0x500_0060));
        assert_eq!(begin_lsn("# comment only\n"), None);
        assert_eq!(begin_lsn("1\tgarbage\n"), None);
    }

    #[test]
    fn names_before_the_switch_segment_never_exist() {
        let begin = 0x500_0060;
        let on3 = |s: &str| SegmentName::parse(s).unwrap();
        assert!(precedes_timeline_start(
            on3("000000030000000000000004"),
            begin,
            16 * MIB
        ));
        assert!(!precedes_timeline_start(
            on3("000000030000000000000005"),
            begin,
            16 * MIB
        ));
        assert!(!precedes_timeline_start(
            on3("000000030000000000000006"),
            begin,
            16 * MIB
        ));
        assert!(precedes_timeline_start(
            on3("000000030000000000000004"),
            0x1_0000_0000,
            16 * MIB
        ));
        assert!(!precedes_timeline_start(
            on3("000000030000000100000000"),
            0x1_0000_0000,
            16 * MIB
        ));
    }
}
