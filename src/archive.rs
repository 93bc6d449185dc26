//! The archive: where segments come from. One boundary answers "is this
//! name there, in which form, is it complete, open it, remove what
//! precedes a cutoff", so the waiting logic never touches paths itself.
//! Today's archive is a local (or mounted) directory.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cleanup::{self, Summary};
use crate::codec::Codec;
use crate::open::{self, Identity};
use crate::probe::{self, CompressedEntry, Probe};
use crate::timeline;
use crate::wal::SegmentName;

pub struct Archive {
    dir: PathBuf,
    /// Whether the directory was a mount point when we started: if it stops
    /// being one, its filesystem was unmounted and what we see is the empty
    /// directory beneath.
    was_mount_point: bool,
}

/// A file answered at once (history, backup history, partial), opened.
pub struct Entry {
    pub file: File,
    pub len: u64,
    pub identity: Identity,
    /// `Some` for a compressed form of the file.
    pub codec: Option<Codec>,
}

impl Archive {
    /// The archive must be there when a call starts: a missing one is a
    /// misconfiguration, never "not available".
    pub fn open(dir: &Path) -> Result<Self, String> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(Self {
                dir: dir.to_path_buf(),
                was_mount_point: is_mount_point(dir, &m),
            }),
            Ok(_) => Err(format!(
                "archive location \"{}\" is not a directory",
                dir.display()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "archive location \"{}\" does not exist",
                dir.display()
            )),
            Err(e) => Err(format!(
                "archive location \"{}\" cannot be used: {e}",
                dir.display()
            )),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The segment, plain or compressed. Plain wins when both exist.
    pub fn segment(&self, name: &SegmentName, sysid: Option<u64>) -> Probe {
        let plain = name.to_string();
        match probe::probe_segment(&self.path_of(&plain), name, sysid) {
            Probe::Absent => {}
            found => return found,
        }
        match self.compressed(&plain) {
            Ok(Some(entry)) => Probe::Compressed(entry),
            Ok(None) => Probe::Absent,
            Err(e) => Probe::Unreadable(e),
        }
    }

    /// The first compressed form of `name` there is, by codec order.
    fn compressed(&self, name: &str) -> io::Result<Option<CompressedEntry>> {
        for codec in Codec::ALL.iter().copied() {
            let file_name = format!("{name}{}", codec.suffix());
            let file = match open::regular(&self.path_of(&file_name)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{file_name}: {e}"))),
            };
            let meta = file.metadata()?;
            return Ok(Some(CompressedEntry {
                file,
                codec,
                file_name,
                len: meta.len(),
                identity: Identity::of(&meta),
            }));
        }
        Ok(None)
    }

    /// A file that is complete when it appears, plain or compressed.
    /// `Ok(None)`: not there.
    pub fn file(&self, name: &str) -> io::Result<Option<Entry>> {
        let file = match open::regular(&self.path_of(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(self.compressed(name)?.map(|c| Entry {
                    file: c.file,
                    len: c.len,
                    identity: c.identity,
                    codec: Some(c.codec),
                }));
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        Ok(Some(Entry {
            len: meta.len(),
            identity: Identity::of(&meta),
            file,
            codec: None,
        }))
    }

    /// Why the archive cannot be seen any more, if it cannot: removed,
    /// renamed, unmounted, or its mount went stale.
    pub fn gone(&self) -> Option<String> {
        match fs::metadata(&self.dir) {
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_dir() => Some("it is no longer a directory".into()),
            Ok(m) if self.was_mount_point && !is_mount_point(&self.dir, &m) => {
                Some("its filesystem was unmounted".into())
            }
            Ok(_) => None,
        }
    }

    /// Files that will become `name` once written and renamed: `name`
    /// followed by a suffix (`.tmp`, `.partial`, a copier's own) or rsync's
    /// `.name.XXXXXX`. Returns their names, sizes and times, which change
    /// while they are written; `None` if there are none.
    pub fn in_flight(&self, name: &str) -> Option<String> {
        let hidden = format!(".{name}.");
        let mut found: Vec<String> = fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file_name = e.file_name().into_string().ok()?;
                let ours = (file_name.len() > name.len() && file_name.starts_with(name))
                    || file_name.starts_with(&hidden);
                let meta = e.metadata().ok().filter(|m| m.is_file() && ours)?;
                Some(format!(
                    "{file_name} {} {}.{}",
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec()
                ))
            })
            .collect();
        found.sort();
        (!found.is_empty()).then(|| found.join(", "))
    }

    /// Start LSN and timeline of the newest segment in the archive (by
    /// position, then timeline), for monitoring.
    pub fn newest_segment(&self, sysid: Option<u64>) -> Option<(u64, u32)> {
        let newest = fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| SegmentName::parse(e.file_name().to_str()?))
            .max_by_key(|n| (n.position(), n.tli))?;
        let seg_size = match self.segment(&newest, sysid) {
            Probe::Ready(ready) => ready.accepted.seg_size,
            _ => self.segment_size(sysid)?,
        };
        Some((newest.start_lsn(seg_size)?, newest.tli))
    }

    pub fn history(&self, tli: u32) -> Option<String> {
        timeline::find_history(tli, &[&self.dir])
    }

    pub fn segment_size(&self, sysid: Option<u64>) -> Option<u64> {
        probe::archive_segment_size(&self.dir, sysid)
    }

    /// Remove (or list, with `dry_run`) the segments before `cutoff`.
    pub fn remove_before(&self, cutoff: SegmentName, dry_run: bool) -> io::Result<Summary> {
        cleanup::run(&self.dir, cutoff, dry_run)
    }
}

/// A directory on another device than its parent is a mount point.
fn is_mount_point(dir: &Path, meta: &fs::Metadata) -> bool {
    fs::metadata(dir.join(".."))
        .map(|parent| parent.dev() != meta.dev())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_not_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Archive::open(&dir.path().join("nope")).err().unwrap();
        assert!(err.contains("does not exist"), "{err}");
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let err = Archive::open(&file).err().unwrap();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn notices_the_directory_going_away_and_coming_back() {
        let dir = tempfile::tempdir().unwrap();
        let archive_dir = dir.path().join("archive");
        fs::create_dir(&archive_dir).unwrap();
        let archive = Archive::open(&archive_dir).unwrap();
        assert_eq!(archive.gone(), None);
        fs::rename(&archive_dir, dir.path().join("moved")).unwrap();
        assert!(archive.gone().is_some());
        fs::create_dir(&archive_dir).unwrap();
        assert_eq!(archive.gone(), None);
    }

    #[test]
    fn in_flight_names() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let name = "000000010000000000000005";
        assert_eq!(archive.in_flight(name), None);
        fs::write(dir.path().join("000000010000000000000006.tmp"), b"x").unwrap();
        fs::write(dir.path().join("000000010000000000000004"), b"x").unwrap();
        assert_eq!(archive.in_flight(name), None);
        for in_flight in [
            format!("{name}.tmp"),
            format!("{name}.partial"),
            format!(".{name}.Ab12Cd"),
        ] {
            let path = dir.path().join(&in_flight);
            fs::write(&path, b"x").unwrap();
            assert!(archive.in_flight(name).unwrap().contains(&in_flight));
            fs::remove_file(path).unwrap();
        }
    }
}
