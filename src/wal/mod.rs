//! WAL file names: segments, timeline history, backup history and partial
//! segments, and the arithmetic that relates a segment name to an LSN.

pub mod header;
pub(crate) mod timeline;

use std::fmt;

/// Bytes of LSN space covered by one "log" (the middle 8 hex digits).
const LOG_SPAN: u64 = 0x1_0000_0000;

/// Smallest and largest segment sizes PostgreSQL accepts (`IsValidWalSegSize`).
pub const MIN_SEGMENT_SIZE: u64 = 1024 * 1024;
pub const MAX_SEGMENT_SIZE: u64 = 1024 * 1024 * 1024;

pub fn is_valid_segment_size(size: u64) -> bool {
    size.is_power_of_two() && (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size)
}

/// A segment name `TTTTTTTTLLLLLLLLSSSSSSSS`: timeline, log and seg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentName {
    pub tli: u32,
    pub log: u32,
    pub seg: u32,
}

impl SegmentName {
    /// Exactly 24 uppercase hex digits, as the server writes them.
    pub fn parse(name: &str) -> Option<Self> {
        if name.len() != 24 || !is_upper_hex(name) {
            return None;
        }
        let field = |i: usize| u32::from_str_radix(&name[i * 8..(i + 1) * 8], 16).ok();
        Some(Self {
            tli: field(0)?,
            log: field(1)?,
            seg: field(2)?,
        })
    }

    /// The all-zero name the server passes as `%r` before redo starts.
    pub fn is_zero(&self) -> bool {
        self.tli == 0 && self.log == 0 && self.seg == 0
    }

    /// Position in the WAL stream, ignoring the timeline: the order in which
    /// cleanup compares names (`strcmp(name + 8, ...)` in PostgreSQL's tools).
    pub fn position(&self) -> (u32, u32) {
        (self.log, self.seg)
    }

    /// Segment number, or `None` when `seg` is out of range for this size.
    pub fn segno(&self, segment_size: u64) -> Option<u64> {
        let per_log = LOG_SPAN / segment_size;
        (u64::from(self.seg) < per_log).then(|| u64::from(self.log) * per_log + u64::from(self.seg))
    }

    pub fn from_segno(tli: u32, segno: u64, segment_size: u64) -> Self {
        let per_log = LOG_SPAN / segment_size;
        Self {
            tli,
            log: (segno / per_log) as u32,
            seg: (segno % per_log) as u32,
        }
    }

    /// LSN of the segment's first byte, or `None` when the name does not
    /// fit this segment size.
    pub fn start_lsn(&self, segment_size: u64) -> Option<u64> {
        self.segno(segment_size).map(|n| n * segment_size)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.tli, self.log, self.seg)
    }
}

/// Every kind of name the server (or another caller) may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFileName {
    Segment(SegmentName),
    /// `TTTTTTTT.history`
    TimelineHistory(u32),
    /// `<segment>.OOOOOOOO.backup`
    BackupHistory(SegmentName),
    /// `<segment>.partial`
    Partial(SegmentName),
}

impl WalFileName {
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(segment) = SegmentName::parse(name) {
            return Some(Self::Segment(segment));
        }
        if let Some(tli) = name.strip_suffix(".history") {
            if tli.len() == 8 && is_upper_hex(tli) {
                return u32::from_str_radix(tli, 16).ok().map(Self::TimelineHistory);
            }
            return None;
        }
        if let Some(segment) = name.strip_suffix(".partial") {
            return SegmentName::parse(segment).map(Self::Partial);
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (segment, offset) = rest.split_once('.')?;
            if offset.len() == 8 && is_upper_hex(offset) {
                return SegmentName::parse(segment).map(Self::BackupHistory);
            }
        }
        None
    }

    /// Files written once and complete when they appear: answered at once,
    /// without waiting.
    pub fn is_answered_at_once(&self) -> bool {
        !matches!(self, Self::Segment(_))
    }
}

pub fn is_upper_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn parses_segment_names() {
        let n = SegmentName::parse("0000000200000001000000FE").unwrap();
        assert_eq!((n.tli, n.log, n.seg), (2, 1, 0xFE));
        assert_eq!(n.to_string(), "0000000200000001000000FE");
    }

    #[test]
    fn rejects_malformed_segment_names() {
        for bad in [
            "",
            "0000000100000001000000fe",  // lowercase
            "0000000100000001000000F",   // 23 chars
            "0000000100000001000000FE0", // 25 chars
            "00000001000000010000/0FE",
            "0000000100000001000000GE",
            "+0000001000000010000000F",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn classifies_every_kind_of_name() {
        use WalFileName::*;
        let seg = SegmentName::parse("00000001000000370000000E").unwrap();
        assert_eq!(
            WalFileName::parse("00000001000000370000000E"),
            Some(Segment(seg))
        );
        assert_eq!(
            WalFileName::parse("0000000A.history"),
            Some(TimelineHistory(10))
        );
        assert_eq!(
            WalFileName::parse("00000001000000370000000E.partial"),
            Some(Partial(seg))
        );
        assert_eq!(
            WalFileName::parse("00000001000000370000000E.00000028.backup"),
            Some(BackupHistory(seg))
        );
        for bad in [
            "0000000a.history",
            "000000001.history",
            "RECOVERYXLOG",
            "pg_wal/RECOVERYXLOG",
            "../00000001000000370000000E",
            "00000001000000370000000E.backup",
            "00000001000000370000000E.zzzzzzzz.backup",
            "00000001000000370000000E.gz",
        ] {
            assert_eq!(WalFileName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn segment_numbers_follow_the_segment_size() {
        let n = SegmentName::parse("000000010000000100000003").unwrap();
        assert_eq!(n.segno(16 * MIB), Some(256 + 3));
        assert_eq!(n.segno(MIB), Some(4096 + 3));
        assert_eq!(
            n.segno(1024 * MIB),
            Some(4 + 3),
            "seg 3 is the last of 4 per log"
        );
        assert_eq!(n.start_lsn(16 * MIB), Some(0x1_0300_0000));
        let big = SegmentName::parse("000000010000000100000004").unwrap();
        assert_eq!(big.segno(1024 * MIB), None);
        assert_eq!(SegmentName::from_segno(1, 256 + 3, 16 * MIB), n);
        assert_eq!(
            SegmentName::from_segno(1, 255, 16 * MIB).to_string(),
            "0000000100000000000000FF"
        );
    }

    #[test]
    fn valid_segment_sizes_are_powers_of_two_from_1_mib_to_1_gib() {
        assert!(is_valid_segment_size(MIB));
        assert!(is_valid_segment_size(16 * MIB));
        assert!(is_valid_segment_size(1024 * MIB));
        assert!(!is_valid_segment_size(MIB / 2));
        assert!(!is_valid_segment_size(2048 * MIB));
        assert!(!is_valid_segment_size(12345));
        assert!(!is_valid_segment_size(0));
    }

    #[test]
    fn position_ignores_the_timeline() {
        let a = SegmentName::parse("000000090000000000000005").unwrap();
        let b = SegmentName::parse("000000010000000000000006").unwrap();
        assert!(a.position() < b.position());
    }
}
