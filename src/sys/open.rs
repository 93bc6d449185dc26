//! Opening files that other programs control (the archive, the trigger
//! file, pg_wal's leftovers) without ever blocking, and telling whether a
//! file changed between two looks.
//!
//! A plain `open()` of a FIFO blocks until a writer appears, and no signal
//! handler of ours can end that: the server's shutdown would leave us
//! behind. `O_NONBLOCK` makes such an open return at once; only regular
//! files are then accepted.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Open `path` for reading if it is a regular file (symlinks followed).
/// Anything else is an error of kind `InvalidInput` naming what it is.
pub fn regular(path: &Path) -> io::Result<File> {
    // Look first, so a device is never opened at all (opening a tape
    // rewinds it); check the opened file again, as it may have been
    // replaced in between.
    ensure_regular(&fs::metadata(path)?)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    ensure_regular(&file.metadata()?)?;
    Ok(file)
}

fn ensure_regular(meta: &Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let t = meta.file_type();
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    ))
}

/// What changes when a file is written, truncated or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The identity of an open file now.
    pub fn now(file: &File) -> io::Result<Self> {
        Ok(Self::of(&file.metadata()?))
    }
}

/// Whether an open source file is still exactly as it was validated.
pub fn unchanged(file: &File, validated: Identity) -> Result<(), String> {
    match Identity::now(file) {
        Ok(now) if now == validated => Ok(()),
        Ok(_) => Err("changed in the archive during the copy".into()),
        Err(e) => Err(format!("cannot be checked after the copy: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("000000010000000000000001");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = regular(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[test]
    fn directories_are_refused_and_files_accepted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            regular(dir.path())
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        assert!(regular(&path).is_ok());
        assert_eq!(
            regular(&dir.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn identity_changes_when_the_file_is_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"first").unwrap();
        let file = regular(&path).unwrap();
        let before = Identity::now(&file).unwrap();
        assert_eq!(before, Identity::now(&file).unwrap());
        let mut w = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        w.write_all(b"other").unwrap();
        assert_ne!(before, Identity::now(&file).unwrap());
    }
}
