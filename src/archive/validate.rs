//! Is the requested segment in the archive, complete, and really the
//! segment asked for?

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::archive::RemoteObject;
use crate::archive::codec::Codec;
use crate::sys::open::{self, Identity};
use crate::wal::SegmentName;
use crate::wal::header::{self, Accepted, Defect, LONG_HEADER_LEN, LongPageHeader};

#[derive(Debug)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub enum Probe {
    Absent,
    /// Still being written, we assume: shorter than its segment size.
    Incomplete {
        size: u64,
        expected: Option<u64>,
    },
    Invalid(Defect),
    Oversized {
        size: u64,
        expected: u64,
    },
    /// Present but cannot be read (permissions, I/O error).
    Unreadable(io::Error),
    Ready(ReadySegment),
    /// A compressed form of the segment: whether it is complete and valid
    /// shows only once it is decompressed.
    Compressed(CompressedEntry),
    /// An object in object storage, still to be downloaded.
    Remote(RemoteObject),
    /// Object storage did not answer (timeout, refused, 5xx): may pass.
    /// `retry_after`: when the store asked to be asked again, if it did.
    Unreachable {
        why: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Object storage refused us (credentials, bucket): will not pass.
    Misconfigured(String),
}

#[derive(Debug)]
pub struct CompressedEntry {
    pub file: File,
    pub codec: Codec,
    pub file_name: String,
    pub len: u64,
    pub identity: Identity,
}

/// An open, validated, complete segment. Copying from this handle copies
/// exactly what was checked, even if the archive entry is replaced.
#[derive(Debug)]
pub struct ReadySegment {
    pub file: File,
    pub len: u64,
    pub accepted: Accepted,
    /// The file as it was validated: a copy is delivered only if the file
    /// still is exactly this afterwards.
    pub identity: Identity,
}

impl Probe {
    /// Object storage failed in a way waiting may mend.
    #[cfg(feature = "remote")]
    pub fn unreachable(e: &crate::archive::store::Error) -> Self {
        Probe::Unreachable {
            why: e.to_string(),
            retry_after: e.retry_after(),
        }
    }

    /// A one-line account of why the file cannot be delivered yet.
    pub fn describe(&self) -> String {
        match self {
            Self::Absent => "it is not in the archive".into(),
            Self::Incomplete {
                size,
                expected: Some(e),
            } => format!("it is incomplete ({size} of {e} bytes)"),
            Self::Incomplete {
                size,
                expected: None,
            } => format!("it is incomplete ({size} bytes, header not yet written)"),
            Self::Invalid(defect) => defect.to_string(),
            Self::Oversized { size, expected } => {
                format!("it is larger than a segment ({size} bytes, its header says {expected})")
            }
            Self::Unreadable(e) if e.kind() == io::ErrorKind::InvalidInput => e.to_string(),
            Self::Unreadable(e) => format!("it cannot be read: {e}"),
            Self::Ready(r) => format!("it is ready ({} bytes)", r.len),
            Self::Compressed(c) => format!("it is in the archive as {}", c.file_name),
            Self::Remote(r) => format!("it is in the archive as {} ({} bytes)", r.key, r.size),
            Self::Unreachable { why, .. } | Self::Misconfigured(why) => why.clone(),
        }
    }
}

/// Open and validate the file at `path` as the segment `name`.
pub fn path(path: &Path, name: &SegmentName, sysid: Option<u64>) -> Probe {
    // Read-only: pg_standby 13 opened read-write and so never restored from
    // a read-only archive.
    match open::regular(path) {
        Ok(opened) => file(opened, name, sysid),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Probe::Absent,
        Err(e) => Probe::Unreadable(e),
    }
}

/// Validate an open file as the segment `name`.
pub fn file(file: File, name: &SegmentName, sysid: Option<u64>) -> Probe {
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Probe::Unreadable(e),
    };
    let size = meta.len();
    let mut raw = [0u8; LONG_HEADER_LEN];
    if size < LONG_HEADER_LEN as u64 {
        return Probe::Incomplete {
            size,
            expected: None,
        };
    }
    if let Err(e) = file.read_exact_at(&mut raw, 0) {
        return Probe::Unreadable(e);
    }
    let accepted = match header::accept(&LongPageHeader::parse(&raw), name, sysid) {
        Ok(a) => a,
        Err(defect) => return Probe::Invalid(defect),
    };
    let expected = accepted.seg_size;
    match size.cmp(&expected) {
        std::cmp::Ordering::Less => Probe::Incomplete {
            size,
            expected: Some(expected),
        },
        std::cmp::Ordering::Greater => Probe::Oversized { size, expected },
        std::cmp::Ordering::Equal => Probe::Ready(ReadySegment {
            file,
            len: size,
            accepted,
            identity: Identity::of(&meta),
        }),
    }
}

/// Check the header of a copy before it is renamed into place: what
/// reaches `%p` must be the segment that was validated.
pub fn recheck(
    copy: &File,
    name: &SegmentName,
    sysid: Option<u64>,
    want: Accepted,
) -> Result<(), String> {
    let mut raw = [0u8; LONG_HEADER_LEN];
    copy.read_exact_at(&mut raw, 0)
        .map_err(|e| format!("cannot read back the copy's header: {e}"))?;
    match header::accept(&LongPageHeader::parse(&raw), name, sysid) {
        Ok(got) if got == want => Ok(()),
        Ok(_) => Err("the copy's header differs from the validated one".into()),
        Err(defect) => Err(format!("the copy's header does not check out: {defect}")),
    }
}

/// The segment size of the archive, learned from the header of the first
/// valid segment found (used only on the rare never-exists path).
pub fn archive_segment_size(archive: &Path, sysid: Option<u64>) -> Option<u64> {
    std::fs::read_dir(archive)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = SegmentName::parse(e.file_name().to_str()?)?;
            let file = open::regular(&e.path()).ok()?;
            let mut raw = [0u8; LONG_HEADER_LEN];
            file.read_exact_at(&mut raw, 0).ok()?;
            header::accept(&LongPageHeader::parse(&raw), &name, sysid).ok()
        })
        .map(|a| a.seg_size)
        .next()
}
