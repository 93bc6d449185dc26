//! The trigger file protocol: empty or "smart" asks for a smart failover,
//! "fast" for a fast one, anything else is ignored with a warning. Reading
//! never changes the file: the call that acts on a fast failover truncates
//! it ([`disarm_fast`]) so that later calls see "smart".

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::open;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Absent,
    Smart,
    Fast,
    /// Present but not understood: no failover. The content, escaped for
    /// the log ([`crate::logging::escape`]): it is untrusted text.
    Invalid(String),
    /// Present but unreadable: no failover.
    Unreadable(String),
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
        Trigger::Invalid(crate::logging::escape(&content[..end]))
    }
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
    fn invalid_content_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trigger");
        fs::write(&path, "promote please").unwrap();
        assert_eq!(read(&path), Trigger::Invalid("promote please".into()));
        assert_eq!(fs::read_to_string(&path).unwrap(), "promote please");
    }
}
