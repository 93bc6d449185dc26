//! Decompressing archived segments: gzip, zstd, lz4 (frame
//! format), bzip2, xz and WAL-G's legacy .lzma, each behind a Cargo feature.
//!
//! Why this shape:
//! * Streaming with bounded memory: one 256 KiB output buffer and a 128 KiB
//!   input buffer, plus what the format itself needs (zstd's window, capped
//!   as the zstd CLI caps it; lz4's block buffers; xz's dictionary, capped
//!   by a memory limit). A 1 GiB segment never sits in memory.
//! * A bomb limit: the caller passes the segment size; output that would
//!   exceed it stops the decompression at once, before anything past the
//!   limit is written, so a hostile or mislabelled file can never fill
//!   pg_wal.
//! * Truncated versus corrupt: an archive_command writing `%f.gz` in place
//!   leaves a growing file that is a valid prefix of a stream. Such a file
//!   ends early ([`DecodeError::Truncated`]) and is waited for; a stream the
//!   format itself rejects (bad magic, failed checksum, invalid data,
//!   garbage after the end) is [`DecodeError::Corrupt`] and goes through the
//!   bad-file rules. The formats' own checks are all verified: gzip CRC-32
//!   and ISIZE, zstd content checksum (when the frame has one; the zstd CLI
//!   writes it), lz4 block and content checksums (when present; the lz4 CLI
//!   writes the content checksum), bzip2 block and stream CRCs, xz's check.
//!   Legacy .lzma has no checksum: only the segment validation after it
//!   catches damage there.
//! * A complete stream can still be a prefix of what is being written when
//!   the writer concatenates members or frames (`pigz`/`pbzip2`/`pzstd`
//!   style output cut between two members): such a file decodes cleanly to
//!   fewer bytes than a segment, and only the caller's size check sees it.

// Builds with only some codec features leave helpers unused; the default
// build (every codec) keeps every lint.
#![cfg_attr(
    not(all(
        feature = "gzip",
        feature = "zstd",
        feature = "lz4",
        feature = "bzip2",
        feature = "xz"
    )),
    allow(unused, unreachable_code, clippy::large_enum_variant)
)]

use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// Decompressed bytes handed to the destination per write.
const OUT_BUF: usize = 256 * 1024;
/// Compressed bytes read from the source per read.
const IN_BUF: usize = 128 * 1024;
/// Longest prefix [`Codec::magic_matches`] needs (the .lzma header).
pub const MAGIC_PROBE_LEN: usize = 13;

/// A compression format an archive may hold a segment in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    #[cfg(feature = "gzip")]
    Gzip,
    #[cfg(feature = "zstd")]
    Zstd,
    #[cfg(feature = "lz4")]
    Lz4,
    #[cfg(feature = "bzip2")]
    Bzip2,
    #[cfg(feature = "xz")]
    Xz,
    /// The legacy LZMA-alone format WAL-G wrote as `.lzma` (not xz).
    #[cfg(feature = "xz")]
    Lzma,
}

impl Codec {
    /// Every compiled-in codec, in the order candidates are looked for.
    pub const ALL: &'static [Codec] = &[
        #[cfg(feature = "gzip")]
        Codec::Gzip,
        #[cfg(feature = "zstd")]
        Codec::Zstd,
        #[cfg(feature = "lz4")]
        Codec::Lz4,
        #[cfg(feature = "bzip2")]
        Codec::Bzip2,
        #[cfg(feature = "xz")]
        Codec::Xz,
        #[cfg(feature = "xz")]
        Codec::Lzma,
    ];

    /// The file name suffix, with its dot.
    pub fn suffix(self) -> &'static str {
        match self {
            #[cfg(feature = "gzip")]
            Codec::Gzip => ".gz",
            #[cfg(feature = "zstd")]
            Codec::Zstd => ".zst",
            #[cfg(feature = "lz4")]
            Codec::Lz4 => ".lz4",
            #[cfg(feature = "bzip2")]
            Codec::Bzip2 => ".bz2",
            #[cfg(feature = "xz")]
            Codec::Xz => ".xz",
            #[cfg(feature = "xz")]
            Codec::Lzma => ".lzma",
        }
    }

    /// A short name for logs ("gzip", "zstd", ...).
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "gzip")]
            Codec::Gzip => "gzip",
            #[cfg(feature = "zstd")]
            Codec::Zstd => "zstd",
            #[cfg(feature = "lz4")]
            Codec::Lz4 => "lz4",
            #[cfg(feature = "bzip2")]
            Codec::Bzip2 => "bzip2",
            #[cfg(feature = "xz")]
            Codec::Xz => "xz",
            #[cfg(feature = "xz")]
            Codec::Lzma => "lzma",
        }
    }

    /// The compiled-in codec whose suffix is `suffix` (with its dot).
    pub fn from_suffix(suffix: &str) -> Option<Codec> {
        Codec::ALL.iter().copied().find(|c| c.suffix() == suffix)
    }

    /// The codec and base name of a file name ending in a known suffix:
    /// `"000000010000000000000001.gz"` gives `(Gzip, "0000...01")`.
    pub fn split_name(file_name: &str) -> Option<(Codec, &str)> {
        Codec::ALL.iter().copied().find_map(|c| {
            file_name
                .strip_suffix(c.suffix())
                .filter(|base| !base.is_empty())
                .map(|base| (c, base))
        })
    }

    /// Whether `head`, the first bytes of a file, start like this format.
    /// Needs up to [`MAGIC_PROBE_LEN`] bytes (13 for .lzma, at most 6 for the
    /// others); a shorter `head` never matches.
    pub fn magic_matches(self, head: &[u8]) -> bool {
        match self {
            #[cfg(feature = "gzip")]
            Codec::Gzip => head.starts_with(&[0x1f, 0x8b]),
            #[cfg(feature = "zstd")]
            Codec::Zstd => {
                head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
                    // A skippable frame first (pzstd writes one).
                    || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
            }
            #[cfg(feature = "lz4")]
            Codec::Lz4 => head.starts_with(&[0x04, 0x22, 0x4d, 0x18]),
            #[cfg(feature = "bzip2")]
            Codec::Bzip2 => {
                head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3])
            }
            #[cfg(feature = "xz")]
            Codec::Xz => head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]),
            #[cfg(feature = "xz")]
            Codec::Lzma => lzma_header_ok(head),
        }
    }

    /// The compiled-in codec whose magic `head` matches, for archives that
    /// store compressed files without a suffix (barman's wals/ directory).
    /// .lzma has no real magic and is never guessed.
    pub fn sniff(head: &[u8]) -> Option<Codec> {
        Codec::ALL
            .iter()
            .copied()
            .filter(|c| c.suffix() != ".lzma")
            .find(|c| c.magic_matches(head))
    }

    fn magic_len(self) -> usize {
        match self {
            #[cfg(feature = "gzip")]
            Codec::Gzip => 2,
            #[cfg(feature = "zstd")]
            Codec::Zstd => 4,
            #[cfg(feature = "lz4")]
            Codec::Lz4 => 4,
            #[cfg(feature = "bzip2")]
            Codec::Bzip2 => 4,
            #[cfg(feature = "xz")]
            Codec::Xz => 6,
            #[cfg(feature = "xz")]
            Codec::Lzma => MAGIC_PROBE_LEN,
        }
    }

    /// Whether `head`, shorter than the magic, could still grow into it.
    fn could_become_magic(self, head: &[u8]) -> bool {
        let prefix_of = |magic: &[u8]| magic.starts_with(head);
        match self {
            #[cfg(feature = "gzip")]
            Codec::Gzip => prefix_of(&[0x1f, 0x8b]),
            #[cfg(feature = "zstd")]
            Codec::Zstd => match head.split_first() {
                Some((first, rest)) if first & 0xf0 == 0x50 => [0x2a, 0x4d, 0x18].starts_with(rest),
                _ => prefix_of(&[0x28, 0xb5, 0x2f, 0xfd]),
            },
            #[cfg(feature = "lz4")]
            Codec::Lz4 => prefix_of(&[0x04, 0x22, 0x4d, 0x18]),
            #[cfg(feature = "bzip2")]
            Codec::Bzip2 => head.iter().zip(b"BZh").all(|(a, b)| a == b),
            #[cfg(feature = "xz")]
            Codec::Xz => prefix_of(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]),
            #[cfg(feature = "xz")]
            Codec::Lzma => head.first().is_none_or(|p| *p < 225),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The checks xz-utils' LZMA-alone decoder makes on the 13-byte header
/// (liblzma `lzma_decoder.c`/`alone_decoder.c`, picky mode as `xz` uses
/// for .lzma files): properties byte below 225, a dictionary size of
/// 2^n or 2^n + 2^(n-1), and an unknown or below-256-GiB uncompressed size.
#[cfg(feature = "xz")]
fn lzma_header_ok(head: &[u8]) -> bool {
    if head.len() < MAGIC_PROBE_LEN || head[0] >= 225 {
        return false;
    }
    let dict = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let dict_ok = dict.is_power_of_two() || {
        let high = 1u32 << (31 - dict.max(1).leading_zeros());
        high >= 2 && dict == high | (high >> 1)
    };
    let size = u64::from_le_bytes(head[5..13].try_into().expect("8 bytes"));
    dict_ok && (size == u64::MAX || size < 1 << 38)
}

/// Why a compressed file did not decompress.
#[derive(Debug)]
pub enum DecodeError {
    /// The stream ends early: a file still being written or cut short
    /// (incomplete: wait for it). An empty file is truncated too.
    Truncated,
    /// Bad magic, a failed checksum, an invalid stream or bytes after the
    /// end of the stream (invalid: the bad-file rules apply).
    Corrupt(String),
    /// The output would exceed `limit` bytes; at most `limit` were written.
    TooLarge { limit: u64 },
    /// Reading the compressed file or writing the output failed.
    Io(io::Error),
    /// `should_stop` returned true.
    Interrupted,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => {
                f.write_str("compressed stream ends early (truncated or still being written)")
            }
            DecodeError::Corrupt(why) => write!(f, "corrupt compressed stream: {why}"),
            DecodeError::TooLarge { limit } => {
                write!(f, "decompressed data exceeds {limit} bytes")
            }
            DecodeError::Io(e) => write!(f, "{e}"),
            DecodeError::Interrupted => f.write_str("decompression interrupted"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Decompresses `src` (a whole compressed file, read from its start) into
/// `dst`, returning the number of bytes written.
///
/// The magic is checked first (a file shorter than it is `Truncated` if its
/// bytes could still become the magic, else `Corrupt`). Output beyond
/// `limit` bytes is never written: `TooLarge` comes at once. `should_stop`
/// is called before each read of compressed input and each write of output
/// (every 128/256 KiB at most); when it returns true the call ends with
/// `Interrupted`. `dst` gets plain `write_all` calls and no flush or sync:
/// that is the caller's.
pub fn decompress_to<R: Read, W: Write + ?Sized>(
    codec: Codec,
    src: R,
    dst: &mut W,
    limit: u64,
    should_stop: &dyn Fn() -> bool,
) -> Result<u64, DecodeError> {
    let state = State::default();
    let mut source = Source {
        inner: src,
        state: &state,
        should_stop,
    };

    let mut head = [0u8; MAGIC_PROBE_LEN];
    let want = codec.magic_len();
    let mut got = 0;
    while got < want {
        match source.read(&mut head[got..want]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !state.stopped.get() => {}
            Err(e) => return Err(state.classify(codec, e)),
        }
    }
    let head = &head[..got];
    if got < want {
        return Err(if codec.could_become_magic(head) {
            DecodeError::Truncated
        } else {
            DecodeError::Corrupt(format!("not a {codec} file: it starts with {}", hex(head)))
        });
    }
    if !codec.magic_matches(head) {
        return Err(DecodeError::Corrupt(format!(
            "not a {codec} file: it starts with {}",
            hex(head)
        )));
    }

    let input = io::Cursor::new(head.to_vec()).chain(source);
    let mut decoder = Decoder::new(codec, input, limit).map_err(|e| state.classify(codec, e))?;

    let mut buf = vec![0u8; OUT_BUF];
    let mut written: u64 = 0;
    loop {
        if should_stop() {
            return Err(DecodeError::Interrupted);
        }
        let room = limit - written;
        // One byte more than fits shows a bomb without writing past limit.
        let ask = (OUT_BUF as u64).min(room.saturating_add(1)) as usize;
        let n = match decoder.read(&mut buf[..ask]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !state.stopped.get() => continue,
            Err(e) => return Err(state.classify(codec, e)),
        };
        if n == 0 {
            match decoder.finished(codec, &state) {
                Ok(true) => return Ok(written),
                // lz4: a frame ended and more input may follow.
                Ok(false) => continue,
                Err(e) => return Err(e),
            }
        }
        if n as u64 > room {
            return Err(DecodeError::TooLarge { limit });
        }
        dst.write_all(&buf[..n]).map_err(|e| {
            DecodeError::Io(io::Error::new(
                e.kind(),
                format!("writing the decompressed data: {e}"),
            ))
        })?;
        written += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (empty file)".into();
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the source saw, shared with the decoder that owns it.
#[derive(Default)]
struct State {
    eof: std::cell::Cell<bool>,
    stopped: std::cell::Cell<bool>,
    io_error: std::cell::RefCell<Option<io::Error>>,
    #[cfg(feature = "lz4")]
    lz4: std::cell::RefCell<Lz4Tracker>,
}

impl State {
    fn classify(&self, codec: Codec, e: io::Error) -> DecodeError {
        if self.stopped.get() {
            return DecodeError::Interrupted;
        }
        if let Some(e) = self.io_error.borrow_mut().take() {
            return DecodeError::Io(io::Error::new(
                e.kind(),
                format!("reading the compressed file: {e}"),
            ));
        }
        // Every decoder reports input ending inside a stream as
        // UnexpectedEof; only believe it when the file really ended.
        if e.kind() == io::ErrorKind::UnexpectedEof && self.eof.get() {
            return DecodeError::Truncated;
        }
        DecodeError::Corrupt(format!("{codec}: {e}"))
    }
}

/// The compressed file, noting end of file, read errors and stop requests
/// so that the decoders' io::Errors can be told apart.
struct Source<'a, R> {
    inner: R,
    state: &'a State,
    should_stop: &'a dyn Fn() -> bool,
}

impl<R: Read> Read for Source<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.should_stop)() {
            self.state.stopped.set(true);
            return Err(io::Error::other("stop requested"));
        }
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.state.eof.set(true);
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                *self.state.io_error.borrow_mut() = Some(e);
                Err(copy)
            }
        }
    }
}

type Input<'a, R> = io::Chain<io::Cursor<Vec<u8>>, Source<'a, R>>;

enum Decoder<'a, R: Read> {
    #[cfg(feature = "gzip")]
    Gzip(flate2::bufread::MultiGzDecoder<io::BufReader<Input<'a, R>>>),
    #[cfg(feature = "zstd")]
    Zstd(zstd::stream::read::Decoder<'static, io::BufReader<Input<'a, R>>>),
    #[cfg(feature = "lz4")]
    Lz4(lz4_flex::frame::FrameDecoder<Lz4Tap<'a, Input<'a, R>>>),
    #[cfg(feature = "bzip2")]
    Bzip2(bzip2::bufread::MultiBzDecoder<io::BufReader<Input<'a, R>>>),
    #[cfg(feature = "xz")]
    Xz(liblzma::bufread::XzDecoder<io::BufReader<Input<'a, R>>>),
    /// Keeps the type well-formed with every codec feature off.
    #[allow(dead_code)]
    Never(
        std::convert::Infallible,
        std::marker::PhantomData<Input<'a, R>>,
    ),
}

impl<'a, R: Read> Decoder<'a, R> {
    fn new(codec: Codec, input: Input<'a, R>, limit: u64) -> io::Result<Self> {
        #[cfg(any(feature = "gzip", feature = "zstd", feature = "bzip2", feature = "xz"))]
        let buffered = |input| io::BufReader::with_capacity(IN_BUF, input);
        let _ = limit;
        Ok(match codec {
            #[cfg(feature = "gzip")]
            Codec::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(buffered(input))),
            #[cfg(feature = "zstd")]
            Codec::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(buffered(input))?;
                // libzstd refuses windows above 2^27 by default, as the zstd
                // CLI does without --memory; allow one the size of the
                // output, as a frame never needs a larger one.
                let need = 64 - limit.max(1).saturating_sub(1).leading_zeros();
                d.window_log_max(need.clamp(27, 31))?;
                Decoder::Zstd(d)
            }
            #[cfg(feature = "lz4")]
            Codec::Lz4 => {
                let state = input.get_ref().1.state;
                Decoder::Lz4(lz4_flex::frame::FrameDecoder::new(Lz4Tap {
                    inner: input,
                    state,
                }))
            }
            #[cfg(feature = "bzip2")]
            Codec::Bzip2 => Decoder::Bzip2(bzip2::bufread::MultiBzDecoder::new(buffered(input))),
            #[cfg(feature = "xz")]
            Codec::Xz | Codec::Lzma => {
                // xz -9 needs 65 MiB to decode; a dictionary larger than
                // the output is legal but pointless. Twice the larger of
                // the two bounds what a hostile header can make us allocate.
                let memlimit = limit.max(64 << 20).saturating_mul(2);
                let stream = if codec == Codec::Xz {
                    liblzma::stream::Stream::new_stream_decoder(
                        memlimit,
                        liblzma::stream::CONCATENATED,
                    )
                } else {
                    liblzma::stream::Stream::new_lzma_decoder(memlimit)
                }
                .map_err(io::Error::from)?;
                Decoder::Xz(liblzma::bufread::XzDecoder::new_stream(
                    buffered(input),
                    stream,
                ))
            }
        })
    }

    /// After a read returned 0: Ok(true) when the input is used up at the
    /// end of a stream, Ok(false) when more frames may follow (lz4).
    fn finished(&mut self, codec: Codec, state: &State) -> Result<bool, DecodeError> {
        match self {
            #[cfg(feature = "gzip")]
            Decoder::Gzip(d) => input_used_up(d.get_mut(), codec, state),
            #[cfg(feature = "zstd")]
            Decoder::Zstd(d) => input_used_up(d.get_mut(), codec, state),
            #[cfg(feature = "lz4")]
            Decoder::Lz4(_) => {
                // lz4_flex returns 0 both at the end of a frame and when the
                // input ends between two blocks: only the frame layout, as
                // tracked, tells a complete frame from a cut one.
                if !state.lz4.borrow().between_frames() {
                    return Err(if state.eof.get() {
                        DecodeError::Truncated
                    } else {
                        DecodeError::Corrupt("lz4: frame ended early".into())
                    });
                }
                Ok(state.eof.get())
            }
            #[cfg(feature = "bzip2")]
            Decoder::Bzip2(d) => input_used_up(d.get_mut(), codec, state),
            #[cfg(feature = "xz")]
            Decoder::Xz(d) => input_used_up(d.get_mut(), codec, state),
            Decoder::Never(never, _) => match *never {},
        }
    }
}

/// At the end of a stream: Ok(true) if no input is left, else Corrupt.
#[cfg(any(feature = "gzip", feature = "zstd", feature = "bzip2", feature = "xz"))]
fn input_used_up(
    rest: &mut impl BufRead,
    codec: Codec,
    state: &State,
) -> Result<bool, DecodeError> {
    match rest.fill_buf() {
        Ok([]) => Ok(true),
        Ok(more) => Err(DecodeError::Corrupt(format!(
            "{codec}: {}{} bytes of trailing data after the end of the stream",
            if more.len() >= IN_BUF {
                "at least "
            } else {
                ""
            },
            more.len()
        ))),
        Err(e) => Err(state.classify(codec, e)),
    }
}

impl<R: Read> Read for Decoder<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            #[cfg(feature = "gzip")]
            Decoder::Gzip(d) => d.read(buf),
            #[cfg(feature = "zstd")]
            Decoder::Zstd(d) => d.read(buf),
            #[cfg(feature = "lz4")]
            Decoder::Lz4(d) => d.read(buf),
            #[cfg(feature = "bzip2")]
            Decoder::Bzip2(d) => d.read(buf),
            #[cfg(feature = "xz")]
            Decoder::Xz(d) => d.read(buf),
            Decoder::Never(never, _) => match *never {},
        }
    }
}

/// Feeds the bytes lz4_flex consumes to an [`Lz4Tracker`]. No buffering in
/// front of the decoder, so what the tracker saw is what was decoded.
#[cfg(feature = "lz4")]
struct Lz4Tap<'a, R> {
    inner: R,
    state: &'a State,
}

#[cfg(feature = "lz4")]
impl<R: Read> Read for Lz4Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.state.lz4.borrow_mut().feed(&buf[..n]);
        Ok(n)
    }
}

/// Follows the LZ4 frame layout (lz4 `doc/lz4_Frame_format.md`) over the
/// consumed bytes, only to know whether the input stopped between frames.
#[cfg(feature = "lz4")]
#[derive(Default)]
struct Lz4Tracker {
    field: Lz4Field,
    acc: [u8; 4],
    have: usize,
    skip: u64,
    after_skip: Lz4Field,
    flg: u8,
}

#[cfg(feature = "lz4")]
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Lz4Field {
    #[default]
    Magic,
    Flg,
    BlockSize,
}

#[cfg(feature = "lz4")]
impl Lz4Tracker {
    fn between_frames(&self) -> bool {
        self.field == Lz4Field::Magic && self.have == 0 && self.skip == 0
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(data.len() as u64);
                data = &data[k as usize..];
                self.skip -= k;
                if self.skip == 0 {
                    self.field = self.after_skip;
                }
                continue;
            }
            let width = if self.field == Lz4Field::Flg { 1 } else { 4 };
            let k = (width - self.have).min(data.len());
            self.acc[self.have..self.have + k].copy_from_slice(&data[..k]);
            self.have += k;
            data = &data[k..];
            if self.have < width {
                continue;
            }
            self.have = 0;
            match self.field {
                // The decoder checks the magic itself.
                Lz4Field::Magic => self.field = Lz4Field::Flg,
                Lz4Field::Flg => {
                    self.flg = self.acc[0];
                    // BD, content size, dictionary id, header checksum.
                    let content_size = if self.flg & 0x08 != 0 { 8 } else { 0 };
                    let dict_id = if self.flg & 0x01 != 0 { 4 } else { 0 };
                    self.skip_then(1 + content_size + dict_id + 1, Lz4Field::BlockSize);
                }
                Lz4Field::BlockSize => {
                    let size = u32::from_le_bytes(self.acc);
                    if size == 0 {
                        let checksum = if self.flg & 0x04 != 0 { 4 } else { 0 };
                        self.skip_then(checksum, Lz4Field::Magic);
                    } else {
                        let checksum = if self.flg & 0x10 != 0 { 4 } else { 0 };
                        self.skip_then(
                            u64::from(size & 0x7fff_ffff) + checksum,
                            Lz4Field::BlockSize,
                        );
                    }
                }
            }
        }
    }

    fn skip_then(&mut self, skip: u64, next: Lz4Field) {
        self.skip = skip;
        self.after_skip = next;
        if skip == 0 {
            self.field = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_names() {
        for &c in Codec::ALL {
            assert_eq!(Codec::from_suffix(c.suffix()), Some(c));
            let name = format!("000000010000000000000001{}", c.suffix());
            assert_eq!(
                Codec::split_name(&name),
                Some((c, "000000010000000000000001"))
            );
        }
        assert_eq!(Codec::from_suffix(".br"), None);
        assert_eq!(Codec::split_name("000000010000000000000001"), None);
        assert_eq!(Codec::split_name("000000010000000000000001.partial"), None);
    }

    #[cfg(all(
        feature = "gzip",
        feature = "zstd",
        feature = "lz4",
        feature = "bzip2",
        feature = "xz"
    ))]
    #[test]
    fn sniffing_magic() {
        assert_eq!(Codec::sniff(&[0x1f, 0x8b, 8, 0]), Some(Codec::Gzip));
        assert_eq!(
            Codec::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Codec::Zstd)
        );
        assert_eq!(Codec::sniff(&[0x50, 0x2a, 0x4d, 0x18]), Some(Codec::Zstd));
        assert_eq!(Codec::sniff(&[0x04, 0x22, 0x4d, 0x18]), Some(Codec::Lz4));
        assert_eq!(Codec::sniff(b"BZh9"), Some(Codec::Bzip2));
        assert_eq!(Codec::sniff(b"BZh0"), None);
        assert_eq!(
            Codec::sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Some(Codec::Xz)
        );
        // A PostgreSQL 15 segment starts with its page magic.
        assert_eq!(Codec::sniff(&[0x10, 0xd1, 2, 0]), None);
        assert_eq!(Codec::sniff(&[]), None);
    }

    #[cfg(feature = "xz")]
    #[test]
    fn lzma_alone_header() {
        // xz --format=lzma: lc=3 lp=0 pb=2, 8 MiB dictionary, size unknown.
        let mut h = [
            0x5d, 0, 0, 0x80, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(lzma_header_ok(&h));
        assert!(!lzma_header_ok(&h[..12]));
        h[1..5].copy_from_slice(&(3u32 << 20).to_le_bytes()); // 2^21 + 2^20
        assert!(lzma_header_ok(&h));
        h[1..5].copy_from_slice(&(5u32 << 20).to_le_bytes());
        assert!(!lzma_header_ok(&h));
        h[1..5].copy_from_slice(&(1u32 << 23).to_le_bytes());
        h[5..13].copy_from_slice(&(16u64 << 20).to_le_bytes());
        assert!(lzma_header_ok(&h));
        h[5..13].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(!lzma_header_ok(&h));
        h[5..13].copy_from_slice(&[0xff; 8]);
        h[0] = 225;
        assert!(!lzma_header_ok(&h));
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn lz4_tracker_follows_frames() {
        let mut t = Lz4Tracker::default();
        assert!(t.between_frames());
        // Magic, FLG (content checksum), BD, HC.
        t.feed(&[0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7]);
        assert!(!t.between_frames());
        // One 3-byte uncompressed block, fed byte by byte.
        for b in [3, 0, 0, 0x80, b'a', b'b', b'c'] {
            t.feed(&[b]);
            assert!(!t.between_frames());
        }
        t.feed(&[0, 0, 0, 0, 1, 2, 3]);
        assert!(!t.between_frames(), "one byte of the content checksum left");
        t.feed(&[4]);
        assert!(t.between_frames());
    }
}
