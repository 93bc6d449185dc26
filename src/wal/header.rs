//! The long page header at offset 0 of every WAL segment, and the checks
//! that tell a real segment of this cluster from anything else.

use std::fmt;

use crate::wal::{SegmentName, is_valid_segment_size};

/// `SizeOfXLogLongPHD`: the bytes we need to judge a segment.
pub const LONG_HEADER_LEN: usize = 40;

const XLP_LONG_HEADER: u16 = 0x0002;
/// Every flag bit any release 10-18 may set (`XLP_ALL_FLAGS` from 13 on).
const XLP_ALL_FLAGS: u16 = 0x000F;

/// `XLOG_PAGE_MAGIC` of each supported major version.
const KNOWN_MAGICS: [(u16, u32); 9] = [
    (0xD097, 10),
    (0xD098, 11),
    (0xD101, 12),
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
    (0xD118, 18),
];

pub fn major_for_magic(magic: u16) -> Option<u32> {
    KNOWN_MAGICS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, major)| *major)
}

/// `XLogLongPageHeaderData`, in the machine's byte order, as the server
/// writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPageHeader {
    pub magic: u16,
    pub info: u16,
    pub tli: u32,
    pub pageaddr: u64,
    pub sysid: u64,
    pub seg_size: u32,
    pub xlog_blcksz: u32,
}

impl LongPageHeader {
    pub fn parse(bytes: &[u8; LONG_HEADER_LEN]) -> Self {
        Self {
            magic: u16::from_ne_bytes(field(bytes, 0)),
            info: u16::from_ne_bytes(field(bytes, 2)),
            tli: u32::from_ne_bytes(field(bytes, 4)),
            pageaddr: u64::from_ne_bytes(field(bytes, 8)),
            sysid: u64::from_ne_bytes(field(bytes, 24)),
            seg_size: u32::from_ne_bytes(field(bytes, 32)),
            xlog_blcksz: u32::from_ne_bytes(field(bytes, 36)),
        }
    }
}

impl LongPageHeader {
    /// The header a PostgreSQL 15 server writes at the start of segment
    /// `name`, or `None` if the name does not fit `seg_size`. For tools and
    /// tests that build segments.
    pub fn for_segment(name: &SegmentName, seg_size: u32, sysid: u64) -> Option<Self> {
        Some(Self {
            magic: 0xD110,
            info: XLP_LONG_HEADER,
            tli: name.tli,
            pageaddr: name.start_lsn(u64::from(seg_size))?,
            sysid,
            seg_size,
            xlog_blcksz: 8192,
        })
    }

    /// The inverse of [`LongPageHeader::parse`]; padding bytes are zero.
    pub fn to_bytes(&self) -> [u8; LONG_HEADER_LEN] {
        let mut b = [0u8; LONG_HEADER_LEN];
        b[0..2].copy_from_slice(&self.magic.to_ne_bytes());
        b[2..4].copy_from_slice(&self.info.to_ne_bytes());
        b[4..8].copy_from_slice(&self.tli.to_ne_bytes());
        b[8..16].copy_from_slice(&self.pageaddr.to_ne_bytes());
        b[24..32].copy_from_slice(&self.sysid.to_ne_bytes());
        b[32..36].copy_from_slice(&self.seg_size.to_ne_bytes());
        b[36..40].copy_from_slice(&self.xlog_blcksz.to_ne_bytes());
        b
    }
}

/// Fixed offsets inside a fixed-size array: cannot go out of bounds.
fn field<const N: usize>(bytes: &[u8; LONG_HEADER_LEN], offset: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

/// Why a file is not a segment we may hand to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    NotLongHeader {
        info: u16,
    },
    UnknownFlags {
        info: u16,
    },
    BadSegmentSize {
        seg_size: u32,
    },
    BadBlockSize {
        blcksz: u32,
    },
    WrongName {
        pageaddr: u64,
        expected: u64,
    },
    NameDoesNotFitSize {
        seg_size: u32,
    },
    FutureTimeline {
        header: u32,
        name: u32,
    },
    ForeignCluster {
        found: u64,
        expected: u64,
    },
    /// The magic is unknown and something else is wrong too: not WAL at all.
    NotWal {
        magic: u16,
        also: Box<Defect>,
    },
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLongHeader { info } => write!(
                f,
                "the first page has no long header (xlp_info 0x{info:04X})"
            ),
            Self::UnknownFlags { info } => {
                write!(
                    f,
                    "the first page has unknown flag bits (xlp_info 0x{info:04X})"
                )
            }
            Self::BadSegmentSize { seg_size } => write!(
                f,
                "its header gives a segment size of {seg_size} bytes, not a power of two between 1 MiB and 1 GiB"
            ),
            Self::BadBlockSize { blcksz } => {
                write!(f, "its header gives a WAL block size of {blcksz} bytes")
            }
            Self::WrongName { pageaddr, expected } => write!(
                f,
                "it starts at LSN {} but its name belongs at {}: a segment stored under the wrong name",
                fmt_lsn(*pageaddr),
                fmt_lsn(*expected)
            ),
            Self::NameDoesNotFitSize { seg_size } => write!(
                f,
                "its name is out of range for its segment size of {seg_size} bytes"
            ),
            Self::FutureTimeline { header, name } => write!(
                f,
                "its first page is on timeline {header}, after the name's timeline {name}"
            ),
            Self::ForeignCluster { found, expected } => write!(
                f,
                "it belongs to another cluster (system identifier {found}, this standby's is {expected})"
            ),
            Self::NotWal { magic, also } => write!(
                f,
                "it is not a WAL segment (unknown magic 0x{magic:04X}, and {also})"
            ),
        }
    }
}

/// A header that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub seg_size: u64,
    /// `None` for a magic no release 10-18 uses (a newer major, accepted
    /// because every other field checks out).
    pub major: Option<u32>,
}

/// Accept a segment's header, or say what is wrong with it, judged
/// against its name and, when known, the standby's system identifier.
pub fn accept(
    header: &LongPageHeader,
    name: &SegmentName,
    expected_sysid: Option<u64>,
) -> Result<Accepted, Defect> {
    let major = major_for_magic(header.magic);
    match check_fields(header, name, expected_sysid) {
        Ok(seg_size) => Ok(Accepted { seg_size, major }),
        Err(defect) if major.is_none() => Err(Defect::NotWal {
            magic: header.magic,
            also: Box::new(defect),
        }),
        Err(defect) => Err(defect),
    }
}

fn check_fields(
    header: &LongPageHeader,
    name: &SegmentName,
    expected_sysid: Option<u64>,
) -> Result<u64, Defect> {
    if header.info & XLP_LONG_HEADER == 0 {
        return Err(Defect::NotLongHeader { info: header.info });
    }
    if header.info & !XLP_ALL_FLAGS != 0 {
        return Err(Defect::UnknownFlags { info: header.info });
    }
    let seg_size = u64::from(header.seg_size);
    if !is_valid_segment_size(seg_size) {
        return Err(Defect::BadSegmentSize {
            seg_size: header.seg_size,
        });
    }
    let blcksz = header.xlog_blcksz;
    if !blcksz.is_power_of_two() || !(1024..=65536).contains(&blcksz) {
        return Err(Defect::BadBlockSize { blcksz });
    }
    let expected = name.start_lsn(seg_size).ok_or(Defect::NameDoesNotFitSize {
        seg_size: header.seg_size,
    })?;
    if header.pageaddr != expected {
        return Err(Defect::WrongName {
            pageaddr: header.pageaddr,
            expected,
        });
    }
    if header.tli > name.tli {
        return Err(Defect::FutureTimeline {
            header: header.tli,
            name: name.tli,
        });
    }
    if let Some(expected) = expected_sysid
        && header.sysid != expected
    {
        return Err(Defect::ForeignCluster {
            found: header.sysid,
            expected,
        });
    }
    Ok(seg_size)
}

pub fn fmt_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSID: u64 = 7_300_000_000_000_000_001;

    fn header_for(name: &str, seg_size: u32) -> LongPageHeader {
        LongPageHeader::for_segment(&SegmentName::parse(name).unwrap(), seg_size, SYSID).unwrap()
    }

    const NAME: &str = "000000020000000100000003";
    const MIB: u32 = 1024 * 1024;

    fn name() -> SegmentName {
        SegmentName::parse(NAME).unwrap()
    }

    #[test]
    fn round_trips_through_bytes() {
        let h = header_for(NAME, 16 * MIB);
        assert_eq!(LongPageHeader::parse(&h.to_bytes()), h);
    }

    #[test]
    fn accepts_a_good_header_of_every_known_major() {
        for (magic, major) in KNOWN_MAGICS {
            let h = LongPageHeader {
                magic,
                ..header_for(NAME, 16 * MIB)
            };
            assert_eq!(
                accept(&h, &name(), Some(SYSID)),
                Ok(Accepted {
                    seg_size: 16 * 1024 * 1024,
                    major: Some(major)
                })
            );
        }
    }

    #[test]
    fn accepts_an_unknown_magic_when_all_else_checks_out() {
        let h = LongPageHeader {
            magic: 0xD121,
            ..header_for(NAME, 16 * MIB)
        };
        assert_eq!(accept(&h, &name(), Some(SYSID)).unwrap().major, None);
    }

    #[test]
    fn each_defect_is_named() {
        let good = header_for(NAME, 16 * MIB);
        let cases: Vec<(LongPageHeader, Defect)> = vec![
            (
                LongPageHeader { info: 0, ..good },
                Defect::NotLongHeader { info: 0 },
            ),
            (
                LongPageHeader {
                    info: 0x0012,
                    ..good
                },
                Defect::UnknownFlags { info: 0x0012 },
            ),
            (
                LongPageHeader {
                    seg_size: 12345,
                    ..good
                },
                Defect::BadSegmentSize { seg_size: 12345 },
            ),
            (
                LongPageHeader {
                    pageaddr: 0x1_0400_0000,
                    ..good
                },
                Defect::WrongName {
                    pageaddr: 0x1_0400_0000,
                    expected: 0x1_0300_0000,
                },
            ),
            (
                LongPageHeader { tli: 3, ..good },
                Defect::FutureTimeline { header: 3, name: 2 },
            ),
            (
                LongPageHeader { sysid: 42, ..good },
                Defect::ForeignCluster {
                    found: 42,
                    expected: SYSID,
                },
            ),
        ];
        for (h, defect) in cases {
            assert_eq!(accept(&h, &name(), Some(SYSID)), Err(defect));
        }
        let fifth = SegmentName::parse("000000020000000100000004").unwrap();
        let h = LongPageHeader {
            seg_size: 1024 * MIB,
            ..good
        };
        assert_eq!(
            accept(&h, &fifth, Some(SYSID)),
            Err(Defect::NameDoesNotFitSize {
                seg_size: 1024 * MIB
            })
        );
    }

    #[test]
    fn a_parent_timeline_page_is_fine() {
        let h = LongPageHeader {
            tli: 1,
            ..header_for(NAME, 16 * MIB)
        };
        assert!(accept(&h, &name(), Some(SYSID)).is_ok());
    }

    #[test]
    fn sysid_is_skipped_when_unknown() {
        let h = LongPageHeader {
            sysid: 42,
            ..header_for(NAME, 16 * MIB)
        };
        assert!(accept(&h, &name(), None).is_ok());
    }

    #[test]
    fn garbage_is_not_wal() {
        let h = LongPageHeader::parse(&[0x41; LONG_HEADER_LEN]);
        let err = accept(&h, &name(), Some(SYSID)).unwrap_err();
        assert!(matches!(err, Defect::NotWal { magic: 0x4141, .. }), "{err}");
        assert!(err.to_string().contains("not a WAL segment"));
    }

    #[test]
    fn formats_lsns_as_the_server_does() {
        assert_eq!(fmt_lsn(0x1_0300_0000), "1/3000000");
    }
}
