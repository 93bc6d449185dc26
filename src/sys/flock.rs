//! Whole-file advisory locks (flock(2)): a lock lives as long as the open
//! file description it was taken on, so a process that dies drops its
//! locks, and two opens of one file by one process exclude each other.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Until the holder lets go.
    Block,
    /// Not at all: a lock held elsewhere is an error of kind `WouldBlock`.
    NoWait,
}

/// Take an exclusive lock on `file`, held until its descriptor is closed.
pub fn exclusive(file: &impl AsFd, wait: Wait) -> io::Result<()> {
    let flags = match wait {
        Wait::Block => libc::LOCK_EX,
        Wait::NoWait => libc::LOCK_EX | libc::LOCK_NB,
    };
    // SAFETY: flock on a descriptor borrowed for the duration of the call.
    if unsafe { libc::flock(file.as_fd().as_raw_fd(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn a_lock_excludes_every_other_open_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        File::create(&path).unwrap();
        // Another open holds the lock (still open, or closed again), then
        // this open asks: is the lock taken?
        let table = [
            (None, Wait::NoWait, true),
            (None, Wait::Block, true),
            (Some(true), Wait::NoWait, false),
            (Some(false), Wait::NoWait, true),
            (Some(false), Wait::Block, true),
        ];
        for (holder_open, wait, taken) in table {
            let holder = File::open(&path).unwrap();
            if holder_open.is_some() {
                exclusive(&holder, Wait::NoWait).unwrap();
            }
            if holder_open == Some(false) {
                drop(holder);
            }
            let other = File::open(&path).unwrap();
            let result = exclusive(&other, wait);
            assert_eq!(result.is_ok(), taken, "{holder_open:?} {wait:?}");
            if let Err(e) = result {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            }
        }
    }
}
