//! Delivering a file: copy into a temporary file beside the destination,
//! check the copy, rename it into place. The destination is either absent
//! or complete, never partial. A temporary file is locked while it is
//! written, so one left by a killed process (SIGKILL, the OOM killer, a
//! host crash) is recognised and removed by a later call.
//!
//! Flushing the copy is optional: the server moves a restored file into
//! pg_wal with `durable_rename()`, which flushes it (fsync = on), and after
//! a crash it deletes a leftover `%p` and restores again from the archive.
//! A flush of ours would only move that cost earlier, or add one the user
//! turned off.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};

use crate::sys::flock;
use crate::sys::signals;

/// Bytes per copy_file_range call: small enough to notice a shutdown
/// signal within milliseconds, large enough to cost nothing.
const CHUNK: usize = 4 << 20;
/// Buffer for the read/write fallback (filesystems without copy_file_range).
const FALLBACK_BUFFER: usize = 256 << 10;
const TEMP_PREFIX: &str = ".pg_standby.";
const TEMP_SUFFIX: &str = ".tmp";
/// A temporary file younger than this is never swept: its writer may not
/// have locked it yet.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub enum CopyError {
    /// A shutdown signal arrived; the temporary file is gone.
    Interrupted,
    Failed(anyhow::Error),
    /// The copy was made but failed the caller's check; it is gone.
    Rejected(String),
}

impl From<anyhow::Error> for CopyError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// Copy `len` bytes of `src` beside `dest`, have `verify` accept the copy,
/// then rename it onto `dest`.
pub fn deliver(
    src: &File,
    len: u64,
    source: &Path,
    dest: &Path,
    flush: bool,
    verify: &dyn Fn(&File) -> Result<(), String>,
) -> Result<(), CopyError> {
    let mut staged = Staged::beside(dest)?;
    let tmp_path = staged.path().to_path_buf();
    copy_range(src, staged.file(), len).map_err(|e| match e {
        CopyError::Failed(e) => CopyError::Failed(e.context(format!(
            "could not copy \"{}\" to \"{}\"",
            source.display(),
            tmp_path.display()
        ))),
        interrupted => interrupted,
    })?;
    verify(staged.file()).map_err(CopyError::Rejected)?;
    staged.commit(dest, flush)
}

/// A temporary file beside the destination, locked while it is written,
/// removed unless committed.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
}

/// The directory `dest` is written in, where its temporary copy goes: a
/// bare file name (`%p` relative to the data directory) is in ".".
pub fn destination_dir(dest: &Path) -> &Path {
    match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl Staged {
    pub fn beside(dest: &Path) -> Result<Self, CopyError> {
        let dir = destination_dir(dest);
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            // As cp would: the server's umask (0077, or 0027 with group
            // access) decides the mode.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .with_context(|| {
                format!("could not create a temporary file in \"{}\"", dir.display())
            })?;
        // Held until the file is renamed or removed: it tells a later call
        // that this file is not a leftover.
        lock(tmp.as_file())
            .with_context(|| format!("could not lock \"{}\"", tmp.path().display()))?;
        Ok(Self { tmp })
    }

    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Rename onto `dest` (after a flush, if asked), unless a shutdown
    /// was requested meanwhile.
    pub fn commit(self, dest: &Path, flush: bool) -> Result<(), CopyError> {
        if flush {
            self.tmp
                .as_file()
                .sync_data()
                .with_context(|| format!("could not flush \"{}\"", self.tmp.path().display()))?;
        }
        if signals::terminating().is_some() {
            return Err(CopyError::Interrupted);
        }
        self.tmp
            .persist(dest)
            .map_err(|e| anyhow!(e.error))
            .with_context(|| format!("could not rename the copy onto \"{}\"", dest.display()))?;
        Ok(())
    }
}

fn lock(file: &File) -> io::Result<()> {
    flock::exclusive(file, flock::Wait::NoWait)
}

/// Remove the temporary files that killed calls left in `dir`. One is
/// provably dead when nobody holds its lock (a lock dies with its process)
/// and it is not brand new. Returns how many were removed.
pub fn sweep_leftovers(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let path = entry.path();
        // Anyone who can write into pg_wal chooses this name: escaped.
        let shown = format!(
            "{}/{}",
            dir.display(),
            crate::obs::logging::escape(name.as_bytes())
        );
        match remove_if_dead(&path) {
            Ok(Some(len)) => {
                removed += 1;
                tracing::warn!(
                    "removed \"{shown}\" ({len} bytes): a temporary file left by a pg_standby that was killed mid-copy"
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("could not remove the leftover temporary file \"{shown}\": {e}")
            }
        }
    }
    removed
}

fn remove_if_dead(path: &Path) -> io::Result<Option<u64>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let young = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_none_or(|age| age < SWEEP_MIN_AGE);
    if !meta.is_file() || young || lock(&file).is_err() {
        return Ok(None);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn copy_range(src: &File, dst: &mut File, len: u64) -> Result<(), CopyError> {
    let mut offset: u64 = 0;
    while offset < len {
        if signals::terminating().is_some() {
            return Err(CopyError::Interrupted);
        }
        let want = usize::try_from(len - offset).unwrap_or(CHUNK).min(CHUNK);
        let copied = match kernel_copy(src, dst, offset, want) {
            Ok(n) => n,
            Err(e) if offset == 0 && falls_back(&e) => {
                return user_space_copy(src, dst, len);
            }
            Err(e) => return Err(anyhow!(e).into()),
        };
        if copied == 0 && offset == 0 {
            // Some filesystems answer 0 instead of an error (overlayfs).
            return user_space_copy(src, dst, len);
        }
        if copied == 0 {
            return Err(anyhow!("the source shrank to {offset} bytes during the copy").into());
        }
        offset += copied as u64;
    }
    Ok(())
}

/// Errors meaning "this pair of files cannot use copy_file_range".
fn falls_back(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::EPERM)
    )
}

/// One copy_file_range call from `offset` in `src` to the current position
/// of `dst`; the data never passes through user space.
fn kernel_copy(src: &File, dst: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut off_in = libc::loff_t::try_from(offset).map_err(io::Error::other)?;
    loop {
        // SAFETY: both descriptors are open for the duration of the call;
        // off_in points to a live local; a null off_out uses dst's position.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                0,
            )
        };
        if n >= 0 {
            return Ok(n.unsigned_abs());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn user_space_copy(src: &File, dst: &mut File, len: u64) -> Result<(), CopyError> {
    let mut buf = vec![0u8; FALLBACK_BUFFER];
    let mut offset = 0;
    while offset < len {
        if signals::terminating().is_some() {
            return Err(CopyError::Interrupted);
        }
        let want = usize::try_from(len - offset)
            .unwrap_or(buf.len())
            .min(buf.len());
        let n = src
            .read_at(&mut buf[..want], offset)
            .map_err(anyhow::Error::from)?;
        if n == 0 {
            return Err(anyhow!("the source shrank to {offset} bytes during the copy").into());
        }
        dst.write_all(&buf[..n]).map_err(anyhow::Error::from)?;
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_dir_of_each_form_of_p() {
        let table = [
            ("pg_wal/RECOVERYXLOG", "pg_wal"),
            ("/data/pg_wal/RECOVERYXLOG", "/data/pg_wal"),
            ("RECOVERYXLOG", "."),
            ("./RECOVERYXLOG", "."),
            ("/RECOVERYXLOG", "/"),
        ];
        for (dest, dir) in table {
            assert_eq!(destination_dir(Path::new(dest)), Path::new(dir), "{dest}");
        }
    }

    #[test]
    fn copies_exactly_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let data: Vec<u8> = (0..(9 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        let dest_dir = dir.path().join("pg_wal");
        std::fs::create_dir(&dest_dir).unwrap();
        let dest = dest_dir.join("RECOVERYXLOG");
        let src = File::open(&src_path).unwrap();
        deliver(&src, data.len() as u64, &src_path, &dest, true, &|_| Ok(())).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(std::fs::read_dir(&dest_dir).unwrap().count(), 1);
    }

    /// tmpfs to disk: copy_file_range refuses (EXDEV), the fallback copies.
    #[test]
    fn copies_across_filesystems() {
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm: skipped");
            return;
        };
        let src_path = shm.path().join("src");
        let data: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i % 253) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        let src = File::open(&src_path).unwrap();
        deliver(
            &src,
            data.len() as u64,
            &src_path,
            &dest,
            false,
            &|_| Ok(()),
        )
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    #[test]
    fn a_short_source_is_an_error_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, b"short").unwrap();
        let dest = dir.path().join("out");
        let src = File::open(&src_path).unwrap();
        let err = deliver(&src, 100, &src_path, &dest, false, &|_| Ok(())).unwrap_err();
        assert!(matches!(err, CopyError::Failed(_)));
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_rejected_copy_is_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, b"0123456789").unwrap();
        let dest = dir.path().join("out");
        let src = File::open(&src_path).unwrap();
        let err = deliver(&src, 10, &src_path, &dest, false, &|_| Err("no".into())).unwrap_err();
        assert!(matches!(err, CopyError::Rejected(ref why) if why == "no"));
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sweeps_dead_leftovers_only() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        let dead = dir.path().join(".pg_standby.dead.tmp");
        let live = dir.path().join(".pg_standby.live.tmp");
        let fresh = dir.path().join(".pg_standby.fresh.tmp");
        let other = dir.path().join("000000010000000000000001");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"x").unwrap();
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        std::fs::write(&fresh, b"x").unwrap();
        let held = File::open(&live).unwrap();
        lock(&held).unwrap();
        assert_eq!(sweep_leftovers(dir.path()), 1);
        assert!(!dead.exists());
        assert!(live.exists() && fresh.exists() && other.exists());
        drop(held);
        assert_eq!(sweep_leftovers(dir.path()), 1);
        assert!(!live.exists());
    }
}
