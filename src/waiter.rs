//! Sleeping until something may have changed: a filesystem event in the
//! archive or next to the trigger file, a signal, or the polling floor.
//!
//! Events are hints; the caller re-checks the filesystem after every wake,
//! and looks once more after setting up the watch, so that nothing that
//! lands in between goes unnoticed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

pub struct Waiter {
    wake: Receiver<()>,
    watcher: Option<RecommendedWatcher>,
    archive: PathBuf,
    /// Device and inode of the watched archive directory, to notice it being
    /// replaced (an inotify watch follows the old inode).
    archive_id: Option<(u64, u64)>,
}

impl Waiter {
    /// A waiter that only sleeps (and wakes on signals).
    pub fn sleeper(wake: Receiver<()>, archive: &Path) -> Self {
        Self {
            wake,
            watcher: None,
            archive: archive.to_path_buf(),
            archive_id: None,
        }
    }

    /// Watch the archive and the trigger file's directory for events that
    /// concern `file` (in the archive) or the trigger file. Falls back to
    /// polling (with a debug line) when no watch can be set up.
    pub fn watching(
        wake: Receiver<()>,
        sender: SyncSender<()>,
        archive: &Path,
        file: &Path,
        trigger: Option<&Path>,
    ) -> Self {
        let mut waiter = Self::sleeper(wake, archive);
        // Any kind of event on these paths counts (created, written,
        // renamed in, removed); events on other files in a busy archive
        // cannot change our answer and would only cost wake-ups.
        let mut interesting = vec![archive.to_path_buf(), file.to_path_buf()];
        interesting.extend(trigger.map(Path::to_path_buf));
        let handler = move |event: notify::Result<Event>| {
            let relevant = match &event {
                Ok(e) => {
                    e.need_rescan()
                        || (may_change_the_answer(&e.kind)
                            && (e.paths.is_empty()
                                || e.paths.iter().any(|p| interesting.contains(p))))
                }
                Err(_) => true,
            };
            if relevant {
                // A full channel already holds a wake-up: nothing is lost.
                let _ = sender.try_send(());
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(mut watcher) => {
                if let Some(dir) = trigger.and_then(Path::parent)
                    && dir != archive
                    && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
                {
                    tracing::debug!(
                        "cannot watch the trigger file's directory \"{}\" ({e}): checking it every wake-up",
                        dir.display()
                    );
                }
                waiter.watcher = Some(watcher);
                waiter.rearm();
            }
            Err(e) => tracing::debug!("cannot watch for file events ({e}): polling instead"),
        }
        waiter
    }

    /// Watch the archive directory again if it was replaced or re-created.
    pub fn rearm(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let current = std::fs::metadata(&self.archive)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if current == self.archive_id {
            return;
        }
        if self.archive_id.is_some() {
            let _ = watcher.unwatch(&self.archive);
        }
        self.archive_id = None;
        if current.is_none() {
            return;
        }
        match watcher.watch(&self.archive, RecursiveMode::NonRecursive) {
            Ok(()) => self.archive_id = current,
            Err(e) => tracing::debug!(
                "cannot watch the archive \"{}\" ({e}): polling instead",
                self.archive.display()
            ),
        }
    }

    /// Sleep until woken or `timeout` passes, then swallow wake-ups that
    /// piled up meanwhile: one re-check covers them all.
    pub fn wait(&mut self, timeout: Duration) {
        match self.wake.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            // The signal thread holds a sender for the whole run; if it is
            // gone, degrade to a plain sleep rather than spin.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
        }
        while self.wake.try_recv().is_ok() {}
        self.rearm();
    }
}

/// Opening or reading a file changes nothing, and our own looks at the
/// archive and the trigger file cause exactly those events: waking on them
/// would make every look trigger the next one.
fn may_change_the_answer(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(access) => *access == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    #[test]
    fn reads_do_not_wake_but_writes_and_renames_do() {
        let access = |a| may_change_the_answer(&EventKind::Access(a));
        assert!(!access(AccessKind::Open(AccessMode::Any)));
        assert!(!access(AccessKind::Close(AccessMode::Read)));
        assert!(!access(AccessKind::Read));
        assert!(access(AccessKind::Close(AccessMode::Write)));
        assert!(may_change_the_answer(&EventKind::Create(CreateKind::File)));
        assert!(may_change_the_answer(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(may_change_the_answer(&EventKind::Any));
    }
}
