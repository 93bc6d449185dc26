//! Property tests: the name parser, the segment-header check and the `-k`
//! cleanup arithmetic never panic and agree with small reference
//! implementations written from PostgreSQL's definitions
//! (src/include/access/xlog_internal.h: XLogFileName, IsXLogFileName and
//! friends, XLogLongPageHeaderData, XLOG_PAGE_MAGIC; the `-k` rule of
//! contrib/pg_standby/pg_standby.c in PostgreSQL 13), independently of the
//! code under test.

use pg_standby::cutoff_keeping;
use pg_standby::header::{self, Defect, LONG_HEADER_LEN, LongPageHeader};
use pg_standby::wal::{SegmentName, WalFileName};
use proptest::prelude::*;

const MIB: u64 = 1024 * 1024;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// (a) WAL file names (xlog_internal.h, XLogFileName and the Is*FileName
// macros): uppercase hex only, exact lengths.

fn upper_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Segment(String),
    TimelineHistory(u32),
    BackupHistory(String),
    Partial(String),
}

/// What the name is, by xlog_internal.h's definitions.
fn reference_kind(name: &str) -> Option<Kind> {
    if upper_hex(name, 24) {
        return Some(Kind::Segment(name.to_string()));
    }
    if name.len() == 16 && name.ends_with(".history") && upper_hex(&name[..8], 8) {
        return Some(Kind::TimelineHistory(
            u32::from_str_radix(&name[..8], 16).unwrap(),
        ));
    }
    if name.len() == 32 && name.ends_with(".partial") && upper_hex(&name[..24], 24) {
        return Some(Kind::Partial(name[..24].to_string()));
    }
    if name.len() == 40
        && name.ends_with(".backup")
        && upper_hex(&name[..24], 24)
        && name.as_bytes()[24] == b'.'
        && upper_hex(&name[25..33], 8)
    {
        return Some(Kind::BackupHistory(name[..24].to_string()));
    }
    None
}

fn kind_of(parsed: WalFileName) -> Kind {
    match parsed {
        WalFileName::Segment(s) => Kind::Segment(s.to_string()),
        WalFileName::TimelineHistory(t) => Kind::TimelineHistory(t),
        WalFileName::BackupHistory(s) => Kind::BackupHistory(s.to_string()),
        WalFileName::Partial(s) => Kind::Partial(s.to_string()),
    }
}

/// Valid names of every kind, near misses, and arbitrary text.
fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9A-F]{24}",
        "[0-9A-Fa-f]{24}",
        "[0-9A-F+ G-]{22,26}",
        "[0-9A-F]{7,9}\\.histor[yY]",
        "[0-9A-F]{24}\\.partia[l]?",
        "[0-9A-F]{23,25}\\.[0-9A-Fa-f]{7,9}\\.backup",
        "[0-9A-F]{24}\\.(backup|history|partial|gz)",
        "(\\.\\./|pg_wal/)?[0-9A-F]{24}",
        "[0-9A-F.a-z/]{0,44}",
        "[0-9A-F]{24}[\u{80}-\u{10FFFF}]{1,3}",
    ]
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn wal_file_names_agree_with_the_reference(name in names()) {
        let parsed = WalFileName::parse(&name);
        prop_assert_eq!(parsed.map(kind_of), reference_kind(&name), "{:?}", name);
        if let Some(p) = parsed {
            // Only segments are waited for.
            prop_assert_eq!(p.is_answered_at_once(), !matches!(p, WalFileName::Segment(_)));
        }
    }

    #[test]
    fn segment_names_round_trip(tli in any::<u32>(), log in any::<u32>(), seg in any::<u32>()) {
        let n = SegmentName { tli, log, seg };
        let text = n.to_string();
        prop_assert_eq!(text.len(), 24);
        prop_assert_eq!(&text, &format!("{tli:08X}{log:08X}{seg:08X}"));
        prop_assert_eq!(SegmentName::parse(&text), Some(n));
        prop_assert_eq!(WalFileName::parse(&text), Some(WalFileName::Segment(n)));
        // Lowercase is never a segment name (unless there is no letter).
        let lower = text.to_ascii_lowercase();
        prop_assert_eq!(SegmentName::parse(&lower).is_some(), lower == text);
    }

    #[test]
    fn parsed_segment_names_print_as_given(name in "[0-9A-F]{24}") {
        prop_assert_eq!(SegmentName::parse(&name).unwrap().to_string(), name);
    }
}

// ---------------------------------------------------------------------------
// (b) The long page header at offset 0 (XLogLongPageHeaderData) and its
// magic (XLOG_PAGE_MAGIC, one value per major version).

const XLP_LONG_HEADER: u16 = 0x0002;
const XLP_ALL_FLAGS: u16 = 0x000F;
const MAGICS: [(u16, u32); 9] = [
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

#[derive(Debug, Clone, Copy)]
struct Fields {
    magic: u16,
    info: u16,
    tli: u32,
    pageaddr: u64,
    rem_len: u32,
    sysid: u64,
    seg_size: u32,
    blcksz: u32,
}

/// Lay the fields out at XLogLongPageHeaderData's offsets, in native byte
/// order.
fn encode(f: &Fields) -> [u8; LONG_HEADER_LEN] {
    let mut b = [0u8; LONG_HEADER_LEN];
    b[0..2].copy_from_slice(&f.magic.to_ne_bytes());
    b[2..4].copy_from_slice(&f.info.to_ne_bytes());
    b[4..8].copy_from_slice(&f.tli.to_ne_bytes());
    b[8..16].copy_from_slice(&f.pageaddr.to_ne_bytes());
    b[16..20].copy_from_slice(&f.rem_len.to_ne_bytes());
    b[20..24].copy_from_slice(&0xA5A5_A5A5u32.to_ne_bytes()); // padding
    b[24..32].copy_from_slice(&f.sysid.to_ne_bytes());
    b[32..36].copy_from_slice(&f.seg_size.to_ne_bytes());
    b[36..40].copy_from_slice(&f.blcksz.to_ne_bytes());
    b
}

/// Whether a header may be handed to the server as `name`, and its segment
/// size: a long header with only known flags, a valid segment size and
/// block size, the page address the name stands for (log = high 32 bits of
/// the LSN, seg = low 32 bits / size, as in XLogFromFileName), no timeline
/// after the name's, and this cluster's system identifier when that is
/// known. The magic does not decide: a new major's magic is accepted when
/// all else fits.
fn reference_accepts(h: &Fields, name: SegmentName, sysid: Option<u64>) -> Option<u64> {
    if h.info & XLP_LONG_HEADER == 0 || h.info & !XLP_ALL_FLAGS != 0 {
        return None;
    }
    let size = u64::from(h.seg_size);
    if !size.is_power_of_two() || !(MIB..=1024 * MIB).contains(&size) {
        return None;
    }
    if !h.blcksz.is_power_of_two() || !(1024..=65536).contains(&h.blcksz) {
        return None;
    }
    let low = u64::from(name.seg).checked_mul(size)?;
    if low >= 1 << 32 {
        return None;
    }
    let lsn = (u64::from(name.log) << 32) | low;
    if h.pageaddr != lsn || h.tli > name.tli {
        return None;
    }
    if sysid.is_some_and(|s| s != h.sysid) {
        return None;
    }
    Some(size)
}

const SYSID: u64 = 7_300_000_000_000_000_001;

/// A header, the name it is checked against and the standby's sysid:
/// mostly a correct header with a few fields disturbed, so that both
/// acceptance and every kind of rejection are common.
fn header_cases() -> impl Strategy<Value = (Fields, SegmentName, Option<u64>)> {
    let name = (
        prop_oneof![Just(1u32), 1u32..5, any::<u32>()],
        prop_oneof![0u32..3, any::<u32>()],
        prop_oneof![0u32..5, 0u32..4096, any::<u32>()],
    );
    let size_exp = 20u32..=30;
    let magic = prop_oneof![
        3 => prop::sample::select(MAGICS.map(|(m, _)| m).to_vec()),
        1 => any::<u16>(),
    ];
    fn maybe<T: std::fmt::Debug + Clone + 'static>(
        s: impl Strategy<Value = T> + 'static,
    ) -> BoxedStrategy<Option<T>> {
        prop_oneof![4 => Just(None), 1 => s.prop_map(Some)].boxed()
    }
    let disturb = (
        maybe(prop_oneof![any::<u16>(), 0u16..16]),
        maybe(prop_oneof![any::<u32>(), 0u32..6]),
        maybe(prop_oneof![any::<u64>(), (0u64..8).prop_map(|n| n << 24)]),
        maybe(prop_oneof![any::<u32>(), (19u32..32).prop_map(|e| 1 << e)]),
        maybe(prop_oneof![any::<u32>(), (9u32..18).prop_map(|e| 1 << e)]),
        maybe(any::<u64>()),
    );
    let sysid = prop_oneof![Just(None), Just(Some(SYSID)), any::<u64>().prop_map(Some)];
    (
        name,
        size_exp,
        magic,
        any::<u32>(),
        disturb,
        sysid,
        any::<bool>(),
    )
        .prop_map(
            |((tli, log, seg), exp, magic, rem_len, d, sysid, older_tli)| {
                let size = 1u64 << exp;
                let name = SegmentName { tli, log, seg };
                let per_log = (1u64 << 32) / size;
                let pageaddr = (u64::from(log) << 32) + (u64::from(seg) % per_log) * size;
                let mut h = Fields {
                    magic,
                    info: XLP_LONG_HEADER,
                    tli: if older_tli { tli / 2 } else { tli },
                    pageaddr,
                    rem_len,
                    sysid: SYSID,
                    seg_size: size as u32,
                    blcksz: 8192,
                };
                if let Some(v) = d.0 {
                    h.info = v;
                }
                if let Some(v) = d.1 {
                    h.tli = v;
                }
                if let Some(v) = d.2 {
                    h.pageaddr = v;
                }
                if let Some(v) = d.3 {
                    h.seg_size = v;
                }
                if let Some(v) = d.4 {
                    h.blcksz = v;
                }
                if let Some(v) = d.5 {
                    h.sysid = v;
                }
                (h, name, sysid)
            },
        )
}

fn check_against_reference(
    raw: &[u8; LONG_HEADER_LEN],
    name: SegmentName,
    sysid: Option<u64>,
) -> Result<bool, TestCaseError> {
    let parsed = LongPageHeader::parse(raw);
    let fields = Fields {
        magic: u16::from_ne_bytes([raw[0], raw[1]]),
        info: u16::from_ne_bytes([raw[2], raw[3]]),
        tli: u32::from_ne_bytes(raw[4..8].try_into().unwrap()),
        pageaddr: u64::from_ne_bytes(raw[8..16].try_into().unwrap()),
        rem_len: 0,
        sysid: u64::from_ne_bytes(raw[24..32].try_into().unwrap()),
        seg_size: u32::from_ne_bytes(raw[32..36].try_into().unwrap()),
        blcksz: u32::from_ne_bytes(raw[36..40].try_into().unwrap()),
    };
    prop_assert_eq!(
        (parsed.magic, parsed.info, parsed.tli, parsed.pageaddr),
        (fields.magic, fields.info, fields.tli, fields.pageaddr)
    );
    prop_assert_eq!(
        (parsed.sysid, parsed.seg_size, parsed.xlog_blcksz),
        (fields.sysid, fields.seg_size, fields.blcksz)
    );
    let got = header::accept(&parsed, &name, sysid);
    let expected = reference_accepts(&fields, name, sysid);
    let major = MAGICS
        .iter()
        .find(|(m, _)| *m == fields.magic)
        .map(|(_, v)| *v);
    prop_assert_eq!(header::major_for_magic(fields.magic), major);
    match (&got, expected) {
        (Ok(a), Some(size)) => {
            prop_assert_eq!(a.seg_size, size);
            prop_assert_eq!(a.major, major);
        }
        (Err(defect), None) => {
            // Unknown magic plus any defect: "not WAL at all".
            prop_assert_eq!(
                matches!(defect, Defect::NotWal { .. }),
                major.is_none(),
                "{:?}",
                defect
            );
            prop_assert!(!defect.to_string().is_empty());
        }
        _ => prop_assert!(
            false,
            "check says {:?}, reference says {:?} for {:?} as {}",
            got,
            expected,
            fields,
            name
        ),
    }
    Ok(expected.is_some())
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn near_valid_headers_agree_with_the_reference((h, name, sysid) in header_cases()) {
        check_against_reference(&encode(&h), name, sysid)?;
    }

    #[test]
    fn arbitrary_bytes_and_names_never_panic(
        raw in prop::collection::vec(any::<u8>(), LONG_HEADER_LEN),
        tli in any::<u32>(), log in any::<u32>(), seg in any::<u32>(),
        sysid in prop::option::of(any::<u64>()),
    ) {
        let raw: [u8; LONG_HEADER_LEN] = raw.try_into().unwrap();
        check_against_reference(&raw, SegmentName { tli, log, seg }, sysid)?;
    }
}

/// The generator is worth something only if it produces both outcomes.
#[test]
fn header_cases_cover_acceptance_and_rejection() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = header_cases();
    let (mut yes, mut no) = (0, 0);
    for _ in 0..2000 {
        let (h, name, sysid) = strategy.new_tree(&mut runner).unwrap().current();
        if reference_accepts(&h, name, sysid).is_some() {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 200 && no > 200, "accepted {yes}, rejected {no}");
}

// ---------------------------------------------------------------------------
// (c) `-k N`: keep exactly the N segments before the requested one.

/// By segment numbers (XLogFromFileName): segno = log * (2^32 / size) + seg;
/// the oldest kept is segno - N, on the requested timeline; nothing when N
/// is 0, the name does not fit the size, or fewer than N segments precede
/// it.
fn reference_cutoff(keep: u64, name: SegmentName, size: u64) -> Option<String> {
    let per_log = (1u64 << 32) / size;
    if keep == 0 || u64::from(name.seg) >= per_log {
        return None;
    }
    let segno = u64::from(name.log) * per_log + u64::from(name.seg);
    let oldest = segno.checked_sub(keep)?;
    Some(format!(
        "{:08X}{:08X}{:08X}",
        name.tli,
        oldest / per_log,
        oldest % per_log
    ))
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn keep_cutoff_agrees_with_segment_numbers(
        tli in any::<u32>(),
        log in prop_oneof![0u32..4, any::<u32>()],
        seg in prop_oneof![0u32..8, 0u32..4100, any::<u32>()],
        exp in 20u32..=30,
        keep in prop_oneof![0u64..10, 0u64..20_000, any::<u64>()],
    ) {
        let size = 1u64 << exp;
        let name = SegmentName { tli, log, seg };
        let got = cutoff_keeping(keep, name, size);
        let expected = reference_cutoff(keep, name, size);
        prop_assert_eq!(got.map(|c| c.to_string()), expected.clone());
        if let Some(cut) = got {
            // Exactly `keep` segments lie in [cutoff, requested).
            let per_log = (1u64 << 32) / size;
            let n = |s: SegmentName| u64::from(s.log) * per_log + u64::from(s.seg);
            prop_assert_eq!(n(name) - n(cut), keep);
            prop_assert!(cut.position() < name.position());
        }
    }
}
