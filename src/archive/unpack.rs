//! Decompressing an archived file into a staged file beside `%p`. A
//! segment is checked while it is written: its header as soon as the
//! first bytes come out (a foreign or misnamed segment stops at once), and
//! its size against the header's segment size (a bomb never writes past
//! it). What is committed afterwards got every check a plain segment gets.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use crate::archive::codec::{self, Codec, DecodeError};
use crate::destination::{CopyError, Staged};
use crate::exit::Fatal;
use crate::sys::signals;
use crate::wal::SegmentName;
use crate::wal::header::{self, Accepted, LONG_HEADER_LEN, LongPageHeader};

/// The largest segment PostgreSQL can be built with.
const MAX_SEGMENT: u64 = 1 << 30;
/// History and backup-history files are a few lines of text.
const MAX_SMALL_FILE: u64 = 16 << 20;
/// Compressed bytes read at once.
const READ_BUFFER: usize = 128 << 10;

pub enum Unpacked {
    Ready {
        staged: Staged,
        len: u64,
        accepted: Option<Accepted>,
    },
    /// The stream ends early: still being written, we assume.
    Incomplete(String),
    /// Never deliverable as it is.
    Bad(Fatal, String),
    /// Writing beside `%p` failed (full disk, permissions).
    Failed(anyhow::Error),
    Interrupted,
}

/// Decompress a segment and check it against `name` and `sysid`.
pub fn segment(
    src: &File,
    codec: Codec,
    name: &SegmentName,
    sysid: Option<u64>,
    dest: &Path,
) -> Unpacked {
    let mut staged = match stage(dest) {
        Ok(s) => s,
        Err(failed) => return failed,
    };
    let mut sink = SegmentSink::new(staged.file(), name, sysid);
    let result = decode(src, codec, MAX_SEGMENT, &mut sink);
    ready(staged, result)
}

/// Decompress a file that has no header to check (history files).
pub fn small_file(src: &File, codec: Codec, dest: &Path) -> Unpacked {
    let mut staged = match stage(dest) {
        Ok(s) => s,
        Err(failed) => return failed,
    };
    let mut sink = PlainSink::new(staged.file());
    let result = decode(src, codec, MAX_SMALL_FILE, &mut sink);
    ready(staged, result)
}

trait Sink: Write {
    /// The verdict on what was written, once the stream ended cleanly.
    fn finish(&self, written: u64) -> Result<Option<Accepted>, (Fatal, String)>;
    /// Why a write was refused, if the sink itself refused it.
    fn refusal(&mut self) -> Option<Refusal>;
}

enum Refusal {
    Bad(Fatal, String),
    Destination(io::Error),
}

fn stage(dest: &Path) -> Result<Staged, Unpacked> {
    match Staged::beside(dest) {
        Ok(s) => Ok(s),
        Err(CopyError::Failed(e)) => Err(Unpacked::Failed(e)),
        Err(_) => Err(Unpacked::Interrupted),
    }
}

fn decode(
    src: &File,
    codec: Codec,
    limit: u64,
    sink: &mut impl Sink,
) -> Result<(u64, Option<Accepted>), Unpacked> {
    let reader = BufReader::with_capacity(READ_BUFFER, src);
    let stop = || signals::terminating().is_some();
    match codec::decompress_to(codec, reader, sink, limit, &stop) {
        Ok(written) => sink
            .finish(written)
            .map(|accepted| (written, accepted))
            .map_err(|(kind, why)| Unpacked::Bad(kind, why)),
        Err(e) => Err(verdict(e, sink.refusal(), codec)),
    }
}

fn ready(staged: Staged, result: Result<(u64, Option<Accepted>), Unpacked>) -> Unpacked {
    match result {
        Ok((len, accepted)) => Unpacked::Ready {
            staged,
            len,
            accepted,
        },
        Err(not_ready) => not_ready,
    }
}

fn verdict(error: DecodeError, refusal: Option<Refusal>, codec: Codec) -> Unpacked {
    match (error, refusal) {
        (_, Some(Refusal::Bad(kind, why))) => Unpacked::Bad(kind, why),
        (_, Some(Refusal::Destination(e))) => {
            Unpacked::Failed(anyhow::Error::new(e).context("could not write the decompressed copy"))
        }
        (DecodeError::Truncated, None) => Unpacked::Incomplete(format!(
            "its {codec} stream ends early (still being written?)"
        )),
        (DecodeError::Corrupt(why), None) => Unpacked::Bad(Fatal::BadSegment, why),
        (DecodeError::TooLarge { limit }, None) => Unpacked::Bad(
            Fatal::Oversized,
            format!("it decompresses to more than {limit} bytes"),
        ),
        (DecodeError::Io(e), None) => Unpacked::Bad(Fatal::Io, format!("it cannot be read: {e}")),
        (DecodeError::Interrupted, None) => Unpacked::Interrupted,
    }
}

/// Checks a segment as it is written.
struct SegmentSink<'a> {
    out: &'a mut File,
    name: &'a SegmentName,
    sysid: Option<u64>,
    head: Vec<u8>,
    accepted: Option<Accepted>,
    written: u64,
    refusal: Option<Refusal>,
}

impl<'a> SegmentSink<'a> {
    fn new(out: &'a mut File, name: &'a SegmentName, sysid: Option<u64>) -> Self {
        Self {
            out,
            name,
            sysid,
            head: Vec::with_capacity(LONG_HEADER_LEN),
            accepted: None,
            written: 0,
            refusal: None,
        }
    }

    fn refuse(&mut self, refusal: Refusal) -> io::Error {
        self.refusal = Some(refusal);
        io::Error::other("refused")
    }
}

impl Write for SegmentSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.accepted.is_none() {
            let take = (LONG_HEADER_LEN - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..take]);
            if let Ok(raw) = <&[u8; LONG_HEADER_LEN]>::try_from(self.head.as_slice()) {
                match header::accept(&LongPageHeader::parse(raw), self.name, self.sysid) {
                    Ok(accepted) => self.accepted = Some(accepted),
                    Err(defect) => {
                        return Err(self.refuse(Refusal::Bad(
                            Fatal::BadSegment,
                            format!("it decompresses to a wrong segment: {defect}"),
                        )));
                    }
                }
            }
        }
        if let Some(accepted) = self.accepted
            && self.written + buf.len() as u64 > accepted.seg_size
        {
            return Err(self.refuse(Refusal::Bad(
                Fatal::Oversized,
                format!(
                    "it decompresses to more than a segment ({} bytes)",
                    accepted.seg_size
                ),
            )));
        }
        match self.out.write_all(buf) {
            Ok(()) => {
                self.written += buf.len() as u64;
                Ok(buf.len())
            }
            Err(e) => {
                let kind = e.kind();
                Err(self.refuse(Refusal::Destination(io::Error::new(kind, e))))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for SegmentSink<'_> {
    fn finish(&self, written: u64) -> Result<Option<Accepted>, (Fatal, String)> {
        match self.accepted {
            Some(a) if a.seg_size == written => Ok(Some(a)),
            Some(a) => Err((
                Fatal::BadSegment,
                format!(
                    "it decompresses to {written} bytes, not a whole segment ({} bytes)",
                    a.seg_size
                ),
            )),
            None => Err((
                Fatal::BadSegment,
                format!("it decompresses to {written} bytes, too few for a segment header"),
            )),
        }
    }

    fn refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }
}

struct PlainSink<'a> {
    out: &'a mut File,
    refusal: Option<Refusal>,
}

impl<'a> PlainSink<'a> {
    fn new(out: &'a mut File) -> Self {
        Self { out, refusal: None }
    }
}

impl Write for PlainSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write_all(buf).map_err(|e| {
            let kind = e.kind();
            self.refusal = Some(Refusal::Destination(io::Error::new(kind, e)));
            io::Error::other("refused")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for PlainSink<'_> {
    fn finish(&self, _written: u64) -> Result<Option<Accepted>, (Fatal, String)> {
        Ok(None)
    }

    fn refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }
}
