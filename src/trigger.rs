//! The trigger file protocol: empty or "smart" asks for a smart failover,
//! "fast" for a fast one, anything else is ignored with a warning. Reading
//! never changes the file: the call that acts on a fast failover truncates
//! it ([`disarm_fast`]) so that later calls see "smart".
//!
//! A trigger file last changed before the server started is taken as left
//! over from an earlier failover, never as a request: it would promote a
//! freshly built standby onto a new timeline. Without a server to compare
//! with (no postmaster.pid in the working directory) every trigger counts,
//! as in pg_standby 13.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys::open;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Absent,
    Smart,
    Fast,
    /// Present but not understood: no failover. The content, escaped for
    /// the log ([`crate::obs::logging::escape`]): it is untrusted text.
    Invalid(String),
    /// Present but unreadable: no failover.
    Unreadable(String),
    /// Last changed before the server started: left over, no failover.
    Stale(Stale),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    /// How long ago the file was last changed.
    pub age: Duration,
    /// How long before the server's start.
    pub before_start: Duration,
}

/// How many bytes of the file decide its meaning (pg_standby reads 31).
const READ_LIMIT: u64 = 31;

pub fn classify(content: &[u8]) -> Trigger {
    if content.is_empty() || content.starts_with(b"smart") {
        Trigger::Smart
    } else if content.starts_with(b"fast") {
        Trigger::Fast
    } else {
        let end = content
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        Trigger::Invalid(crate::obs::logging::escape(&content[..end]))
    }
}

/// When a file was last created, written or renamed into place: the later
/// of its mtime and ctime (a rename or `touch` changes one of them).
pub fn changed_at(meta: &fs::Metadata) -> SystemTime {
    let at = |secs: i64, nsecs: i64| {
        UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32)
    };
    at(meta.mtime(), meta.mtime_nsec()).max(at(meta.ctime(), meta.ctime_nsec()))
}

/// Whether a trigger file changed at `changed` is left over from before
/// the server started at `server_start` (postmaster.pid's start time, in
/// whole seconds, rounded down: a file changed during the second the
/// server started in counts as a request). No server: never stale.
pub fn staleness(
    changed: SystemTime,
    server_start: Option<SystemTime>,
    now: SystemTime,
) -> Option<Stale> {
    let before_start = server_start?
        .duration_since(changed)
        .ok()
        .filter(|d| !d.is_zero())?;
    Some(Stale {
        age: now.duration_since(changed).unwrap_or_default(),
        before_start,
    })
}

/// The trigger file as the restore reads it: [`Trigger::Stale`] (and left
/// untouched) when it predates the server's start, else [`read`].
pub fn read_for(path: &Path, server_start: Option<SystemTime>) -> Trigger {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Trigger::Absent,
        Ok(meta) => {
            if let Some(stale) = staleness(changed_at(&meta), server_start, SystemTime::now()) {
                return Trigger::Stale(stale);
            }
        }
        Err(_) => {}
    }
    read(path)
}

/// Read the trigger file, without changing it: a call may look many times
/// (a wait on the spool, the retries), and only the one that fails over
/// fast may turn the file into a smart trigger.
pub fn read(path: &Path) -> Trigger {
    // An empty file means smart failover even when we may not open it (a
    // root `touch` under umask 077), as in pg_standby 13, which looks at
    // the size first.
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Trigger::Absent,
        Ok(meta) if meta.len() == 0 => return Trigger::Smart,
        _ => {}
    }
    let mut content = Vec::new();
    // Never a blocking open: the file may have been replaced meanwhile.
    let opened = open::regular(path);
    let result = opened.and_then(|f| f.take(READ_LIMIT).read_to_end(&mut content));
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Trigger::Absent,
        Err(e) => Trigger::Unreadable(e.to_string()),
        Ok(_) => classify(&content),
    }
}

/// After a fast failover: truncate the file so that a repeated request
/// for an already restored segment is answered as in smart mode, as
/// pg_standby 13 does.
pub fn disarm_fast(path: &Path) {
    if let Err(e) = truncate(path) {
        tracing::warn!(
            "could not truncate trigger file \"{}\" after a fast failover: {e}; \
             a later call will fail over fast again",
            path.display()
        );
    }
}

fn truncate(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?
        .set_len(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_content_as_pg_standby_does() {
        assert_eq!(classify(b""), Trigger::Smart);
        assert_eq!(classify(b"smart"), Trigger::Smart);
        assert_eq!(classify(b"smart\n"), Trigger::Smart);
        assert_eq!(classify(b"smartXYZ"), Trigger::Smart);
        assert_eq!(classify(b"fast"), Trigger::Fast);
        assert_eq!(classify(b"fast\n"), Trigger::Fast);
        assert_eq!(classify(b"FAST"), Trigger::Invalid("FAST".into()));
        assert_eq!(classify(b" fast"), Trigger::Invalid(" fast".into()));
        assert_eq!(classify(b"now\n"), Trigger::Invalid("now".into()));
        assert_eq!(
            classify(b"x\nLOG:  forged\0"),
            Trigger::Invalid("x\\nLOG:  forged\\0".into())
        );
    }

    #[test]
    fn reading_fast_leaves_it_fast_until_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trigger");
        assert_eq!(read(&path), Trigger::Absent);
        fs::write(&path, "fast\n").unwrap();
        assert_eq!(read(&path), Trigger::Fast);
        assert_eq!(read(&path), Trigger::Fast);
        disarm_fast(&path);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(read(&path), Trigger::Smart);
    }

    #[test]
    fn a_trigger_older_than_the_server_is_stale() {
        let t = |secs: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms);
        let now = t(2000, 0);
        // (changed, server start) -> stale, and by how much before the start
        let table = [
            (t(1000, 0), None, None),
            (t(1000, 0), Some(t(1500, 0)), Some(500_000)),
            (t(1499, 0), Some(t(1500, 0)), Some(1000)),
            // Changed during the second the server started in: counts.
            (t(1500, 300), Some(t(1500, 0)), None),
            (t(1499, 999), Some(t(1500, 0)), Some(1)),
            (t(1500, 0), Some(t(1500, 0)), None),
            (t(1600, 0), Some(t(1500, 0)), None),
            (t(1999, 0), Some(t(1500, 0)), None),
        ];
        for (changed, start, want) in table {
            let got = staleness(changed, start, now);
            assert_eq!(
                got.map(|s| s.before_start.as_millis() as u64),
                want,
                "{changed:?} {start:?}"
            );
            if let Some(s) = got {
                assert_eq!(s.age, now.duration_since(changed).unwrap());
            }
        }
    }

    #[test]
    fn a_stale_trigger_is_not_read_nor_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trigger");
        fs::write(&path, "fast\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(matches!(read_for(&path, Some(later)), Trigger::Stale(_)));
        assert_eq!(fs::read_to_string(&path).unwrap(), "fast\n");
        let earlier = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(read_for(&path, Some(earlier)), Trigger::Fast);
        assert_eq!(
            read_for(&dir.path().join("none"), Some(later)),
            Trigger::Absent
        );
    }

    #[test]
    fn invalid_content_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trigger");
        fs::write(&path, "promote please").unwrap();
        assert_eq!(read(&path), Trigger::Invalid("promote please".into()));
        assert_eq!(fs::read_to_string(&path).unwrap(), "promote please");
    }
}
