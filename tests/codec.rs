//! The codec layer against real compressors' output (issue 10): round trip,
//! truncation, corruption, wrong magic, bombs, concatenation, trailing data,
//! interruption. The CLI tools come from Debian's gzip, zstd, lz4, bzip2 and
//! xz-utils packages; a test whose tool is missing says so loudly and skips.

use pg_standby::codec::{Codec, DecodeError, decompress_to};
use pg_standby::header::LongPageHeader;
use pg_standby::wal::SegmentName;
use std::collections::HashMap;
use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const SEG: u64 = 16 * 1024 * 1024;
const NEVER: &dyn Fn() -> bool = &|| false;

/// A 16 MiB WAL-like segment: a long page header, then 8 KiB pages of
/// records (a repetitive part and a pseudo-random part) with zero tails,
/// as a segment switched early or with full-page images looks.
fn segment() -> &'static [u8] {
    static SEGMENT: OnceLock<Vec<u8>> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let name = SegmentName::parse("00000001000000000000002A").unwrap();
        let header = LongPageHeader::for_segment(&name, SEG as u32, 7_300_000_000_000_000_001)
            .unwrap()
            .to_bytes();
        let mut data = vec![0u8; SEG as usize];
        data[..header.len()].copy_from_slice(&header);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (i, page) in data.chunks_mut(8192).enumerate() {
            let start = if i == 0 { header.len() } else { 24 };
            // Pages fill up to a varying point; the rest stays zero.
            let used = start + (next() % (8192 - start as u64)) as usize;
            let mut pos = start;
            while pos + 64 <= used {
                let len = 24 + (next() % 200) as usize;
                let end = (pos + len).min(used);
                let kind = next() % 4;
                for b in &mut page[pos..end] {
                    *b = if kind == 0 {
                        next() as u8
                    } else {
                        (pos % 251) as u8 ^ kind as u8
                    };
                }
                pos = end;
            }
        }
        data
    })
}

fn tool_args(codec: Codec) -> (&'static str, &'static [&'static str]) {
    match codec.name() {
        "gzip" => ("gzip", &["-c"]),
        "zstd" => ("zstd", &["-c", "-q"]),
        "lz4" => ("lz4", &["-c", "-q"]),
        "bzip2" => ("bzip2", &["-c"]),
        "xz" => ("xz", &["-c"]),
        "lzma" => ("xz", &["--format=lzma", "-c"]),
        other => panic!("no tool for {other}"),
    }
}

/// `data` compressed by the codec's command-line tool with `extra` options.
/// When the tool is not installed this says so loudly and, for the default
/// options, falls back to the crate's own encoder; otherwise None (skip).
fn cli_compress(codec: Codec, extra: &[&str], data: &[u8]) -> Vec<u8> {
    let (tool, args) = tool_args(codec);
    let mut child = match Command::new(tool)
        .args(args)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        // Not a skip: these tests are about the tools' own output.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("`{tool}` is not installed: apt-get install gzip zstd lz4 bzip2 xz-utils")
        }
        Err(e) => panic!("running {tool}: {e}"),
    };
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

/// `data` compressed by the crate behind each codec, with the checksums the
/// command-line tools write by default.
fn crate_compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        #[cfg(feature = "gzip")]
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(&mut out, flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap();
        }
        #[cfg(feature = "zstd")]
        Codec::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(&mut out, 3).unwrap();
            e.include_checksum(true).unwrap();
            e.write_all(data).unwrap();
            e.finish().unwrap();
        }
        #[cfg(feature = "lz4")]
        Codec::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, &mut out);
            e.write_all(data).unwrap();
            e.finish().unwrap();
        }
        #[cfg(feature = "bzip2")]
        Codec::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(&mut out, bzip2::Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap();
        }
        #[cfg(feature = "xz")]
        Codec::Xz => {
            let mut e = liblzma::write::XzEncoder::new(&mut out, 6);
            e.write_all(data).unwrap();
            e.finish().unwrap();
        }
        #[cfg(feature = "xz")]
        Codec::Lzma => {
            let opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
            let stream = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
            let mut e = liblzma::write::XzEncoder::new_stream(&mut out, stream);
            e.write_all(data).unwrap();
            e.finish().unwrap();
        }
    }
    out
}

/// Every crate's own encoder output round-trips and has a working checksum.
#[test]
fn crate_encoders_round_trip() {
    let data = &segment()[..2 << 20];
    for &codec in Codec::ALL {
        let packed = crate_compress(codec, data);
        assert!(decode(codec, &packed, SEG).unwrap() == data, "{codec}");
        let r = decode(codec, &packed[..packed.len() - 1], SEG);
        assert!(matches!(r, Err(DecodeError::Truncated)), "{codec}: {r:?}");
    }
}

/// The segment compressed by each codec's tool, computed once.
fn compressed(codec: Codec) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<Codec, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&codec) {
        return v.clone();
    }
    let v = cli_compress(codec, &[], segment());
    cache.lock().unwrap().insert(codec, v.clone());
    v
}

fn decode(codec: Codec, input: &[u8], limit: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let n = decompress_to(codec, input, &mut out, limit, NEVER)?;
    assert_eq!(
        n,
        out.len() as u64,
        "the returned count is what was written"
    );
    Ok(out)
}

#[test]
fn round_trip_of_each_tool_output() {
    for &codec in Codec::ALL {
        let packed = compressed(codec);
        assert!(
            codec.magic_matches(&packed),
            "{codec}: magic of the tool's output"
        );
        let out = decode(codec, &packed, SEG).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert!(out == segment(), "{codec}: round trip differs");
    }
}

#[test]
fn round_trip_into_a_file() {
    let packed = compressed(Codec::ALL[0]);
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join(format!("seg{}", Codec::ALL[0].suffix()));
    std::fs::write(&src_path, &packed).unwrap();
    let src = std::fs::File::open(&src_path).unwrap();
    let mut dst = std::fs::File::create(dir.path().join("out")).unwrap();
    let n = decompress_to(Codec::ALL[0], &src, &mut dst, SEG, NEVER).unwrap();
    assert_eq!(n, SEG);
    assert!(std::fs::read(dir.path().join("out")).unwrap() == segment());
}

/// What the caller sees while an archive_command writes the file in place.
#[test]
fn a_growing_file_is_truncated_until_complete() {
    let packed = compressed(Codec::ALL[0]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing");
    let mut writer = std::fs::File::create(&path).unwrap();
    for chunk in packed.chunks(packed.len() / 3 + 1) {
        let r = decompress_to(
            Codec::ALL[0],
            std::fs::File::open(&path).unwrap(),
            &mut io::sink(),
            SEG,
            NEVER,
        );
        assert!(matches!(r, Err(DecodeError::Truncated)), "{r:?}");
        writer.write_all(chunk).unwrap();
    }
    let r = decompress_to(
        Codec::ALL[0],
        std::fs::File::open(&path).unwrap(),
        &mut io::sink(),
        SEG,
        NEVER,
    );
    assert_eq!(r.unwrap(), SEG);
}

#[test]
fn empty_file_is_truncated() {
    for &codec in Codec::ALL {
        let r = decode(codec, &[], SEG);
        assert!(matches!(r, Err(DecodeError::Truncated)), "{codec}: {r:?}");
    }
}

#[test]
fn truncated_streams_are_truncated() {
    for &codec in Codec::ALL {
        let packed = compressed(codec);
        let len = packed.len();
        for cut in [
            1,
            3,
            5,
            12,
            20,
            100,
            len / 3,
            len / 2,
            len - 8,
            len - 4,
            len - 1,
        ] {
            let r = decode(codec, &packed[..cut], SEG);
            assert!(
                matches!(r, Err(DecodeError::Truncated)),
                "{codec} cut at {cut} of {len}: {:?}",
                r.map(|v| v.len())
            );
        }
    }
}

/// Every cut of a small stream near its start and end, and many between.
#[test]
fn dense_cuts_are_truncated() {
    let data = &segment()[..1 << 20];
    for &codec in Codec::ALL {
        let packed = cli_compress(codec, &[], data);
        let len = packed.len();
        let cuts = (0..40.min(len))
            .chain((1..64).map(|i| len * i / 64))
            .chain(len.saturating_sub(40)..len);
        for cut in cuts {
            let r = decode(codec, &packed[..cut], 1 << 20);
            assert!(
                matches!(r, Err(DecodeError::Truncated)),
                "{codec} cut at {cut} of {len}: {:?}",
                r.map(|v| v.len())
            );
        }
    }
}

/// A flipped byte a checksum or the stream structure must catch.
#[test]
fn flipped_bytes_are_corrupt() {
    for &codec in Codec::ALL {
        let packed = compressed(codec);
        let len = packed.len();
        // The middle of the data; the last byte (gzip ISIZE, zstd and lz4
        // content checksum, bzip2 stream CRC, xz stream footer).
        let mut spots = vec![len / 2, len / 2 + 1001, len - 1];
        if codec.name() == "lzma" {
            // No checksum and no footer: damage shows only if it breaks
            // the stream; the segment checks after decoding catch the rest.
            spots = vec![];
        }
        for at in spots {
            let mut bad = packed.clone();
            bad[at] ^= 0xff;
            let r = decode(codec, &bad, SEG);
            assert!(
                matches!(r, Err(DecodeError::Corrupt(_))),
                "{codec} flipped at {at} of {len}: {:?}",
                r.map(|v| v.len())
            );
        }
    }
}

#[test]
fn wrong_magic_is_corrupt() {
    for &codec in Codec::ALL {
        // A plain segment under a compressed name.
        let r = decode(codec, segment(), SEG);
        assert!(matches!(r, Err(DecodeError::Corrupt(_))), "{codec}: {r:?}");
        // Another format's output.
        for &other in Codec::ALL {
            if other == codec || (codec.name() == "lzma" && other.name() == "xz") {
                continue;
            }
            let packed = compressed(other);
            let r = decode(codec, &packed, SEG);
            assert!(
                matches!(r, Err(DecodeError::Corrupt(_))),
                "{other} read as {codec}: {:?}",
                r.map(|v| v.len())
            );
        }
    }
}

/// Counts what is written, keeping nothing, and fails past `cap`.
struct Counter {
    written: u64,
    cap: u64,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len() as u64;
        assert!(self.written <= self.cap, "wrote past the limit");
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn bombs_stop_at_the_limit() {
    let zeros = vec![0u8; 100 * 1024 * 1024];
    for &codec in Codec::ALL {
        let bomb = cli_compress(codec, &[], &zeros);
        let mut sink = Counter {
            written: 0,
            cap: SEG,
        };
        let started = Instant::now();
        let r = decompress_to(codec, &bomb[..], &mut sink, SEG, NEVER);
        let took = started.elapsed();
        assert!(
            matches!(r, Err(DecodeError::TooLarge { limit: SEG })),
            "{codec}: {r:?}"
        );
        assert!(sink.written <= SEG);
        eprintln!("{codec}: a 100 MiB bomb stopped after {took:?}");
        // Decoding stops near 16 MiB instead of going through 100 MiB.
        assert!(took < Duration::from_secs(10), "{codec}: {took:?}");
    }
}

#[test]
fn exactly_the_limit_is_fine() {
    for &codec in Codec::ALL {
        let packed = compressed(codec);
        assert_eq!(decode(codec, &packed, SEG).unwrap().len() as u64, SEG);
        let r = decode(codec, &packed, SEG - 1);
        assert!(
            matches!(r, Err(DecodeError::TooLarge { .. })),
            "{codec}: {r:?}"
        );
    }
}

#[test]
fn concatenated_streams_are_one_file() {
    let (a, b) = segment().split_at(5_000_000);
    for &codec in Codec::ALL {
        if codec.name() == "lzma" {
            continue; // LZMA-alone is a single stream by definition.
        }
        let mut packed = cli_compress(codec, &[], a);
        let second = cli_compress(codec, &[], b);
        packed.extend_from_slice(&second);
        let out = decode(codec, &packed, SEG).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert!(out == segment(), "{codec}: concatenation differs");
    }
}

#[test]
fn trailing_garbage_is_corrupt() {
    for &codec in Codec::ALL {
        let mut packed = cli_compress(codec, &[], &segment()[..100_000]);
        packed.extend_from_slice(b"this is not a compressed stream at all");
        let r = decode(codec, &packed, SEG);
        assert!(
            matches!(r, Err(DecodeError::Corrupt(_))),
            "{codec}: {:?}",
            r.map(|v| v.len())
        );
    }
}

#[test]
fn interrupted_between_chunks() {
    for &codec in Codec::ALL {
        let packed = compressed(codec);
        let calls = std::cell::Cell::new(0);
        let stop = || {
            calls.set(calls.get() + 1);
            calls.get() > 3
        };
        let r = decompress_to(codec, &packed[..], &mut io::sink(), SEG, &stop);
        assert!(matches!(r, Err(DecodeError::Interrupted)), "{codec}: {r:?}");
    }
}

#[test]
fn read_errors_are_io() {
    struct Failing(usize);
    impl io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            buf[..n].fill(0);
            Ok(n)
        }
    }
    for &codec in Codec::ALL {
        let r = decompress_to(codec, Failing(0), &mut io::sink(), SEG, NEVER);
        assert!(matches!(r, Err(DecodeError::Io(_))), "{codec}: {r:?}");
    }
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let packed = compressed(Codec::ALL[0]);
    let r = decompress_to(Codec::ALL[0], &packed[..], &mut Full, SEG, NEVER);
    assert!(
        matches!(&r, Err(DecodeError::Io(e)) if e.kind() == io::ErrorKind::StorageFull && e.to_string().contains("writing")),
        "{r:?}"
    );
}

#[cfg(feature = "lz4")]
mod lz4 {
    use super::*;

    /// lz4_flex reads a cut between two blocks as the end of the stream;
    /// the frame tracking must still call it truncated.
    #[test]
    fn cut_at_a_block_boundary_is_truncated() {
        for extra in [
            &["-B4"][..],
            &["-B4", "-BX"],
            &["-B4", "-BD"],
            &["-B4", "--content-size"],
        ] {
            let packed = cli_compress(Codec::Lz4, extra, segment());
            let flg = packed[4];
            let mut at = 4 + 2 + if flg & 0x08 != 0 { 8 } else { 0 } + 1;
            let mut cuts = vec![at];
            for _ in 0..3 {
                let size = u32::from_le_bytes(packed[at..at + 4].try_into().unwrap());
                at += 4 + (size & 0x7fff_ffff) as usize + if flg & 0x10 != 0 { 4 } else { 0 };
                cuts.push(at);
            }
            // Just before the content checksum, too.
            if flg & 0x04 != 0 {
                cuts.push(packed.len() - 4);
            }
            for cut in cuts {
                let r = decode(Codec::Lz4, &packed[..cut], SEG);
                assert!(
                    matches!(r, Err(DecodeError::Truncated)),
                    "{extra:?} cut at {cut}: {:?}",
                    r.map(|v| v.len())
                );
            }
            let out = decode(Codec::Lz4, &packed, SEG).unwrap();
            assert!(out == segment(), "{extra:?}: round trip");
        }
    }

    #[test]
    fn cli_writes_a_content_checksum() {
        let packed = compressed(Codec::Lz4);
        assert_ne!(packed[4] & 0x04, 0, "FLG content checksum bit");
    }

    #[test]
    fn crate_encoder_output() {
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        enc.write_all(segment()).unwrap();
        let packed = enc.finish().unwrap();
        assert!(decode(Codec::Lz4, &packed, SEG).unwrap() == segment());
    }
}
