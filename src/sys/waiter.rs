//! Sleeping until something may have changed: a filesystem event in the
//! archive or next to the trigger file, a signal, or the polling floor.
//!
//! Events are hints; the caller re-checks the filesystem after every wake,
//! and looks once more after setting up the watch, so that nothing that
//! lands in between goes unnoticed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{ErrorKind, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

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
    /// polling when no watch can be set up: with a WARNING when the event
    /// mechanism itself or a kernel limit is the reason (see
    /// [`fallback_warning`]), with a debug line otherwise.
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
        let mut exact = vec![archive.to_path_buf()];
        exact.extend(trigger.map(Path::to_path_buf));
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let dir = archive.to_path_buf();
        let handler = move |event: notify::Result<Event>| {
            let concerns = |p: &PathBuf| exact.contains(p) || names_the_file(p, &dir, &name);
            let relevant = match &event {
                Ok(e) => {
                    e.need_rescan()
                        || (may_change_the_answer(&e.kind)
                            && (e.paths.is_empty() || e.paths.iter().any(concerns)))
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
                    let what = format!("the trigger file's directory \"{}\"", dir.display());
                    report_fallback(&what, &e, false);
                }
                waiter.watcher = Some(watcher);
                waiter.rearm();
                // Set up now, while nothing waits for us: our exit must not
                // wait for the instance's release (see linger.rs).
                super::linger::hold_inotify_past_exit();
            }
            Err(e) => report_fallback("file events", &e, true),
        }
        waiter
    }

    /// Whether file events wake the wait (else only signals and the clock).
    pub fn watches(&self) -> bool {
        self.watcher.is_some()
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
            Err(e) => {
                let what = format!("the archive \"{}\"", self.archive.display());
                report_fallback(&what, &e, false);
            }
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

/// Whether this process already warned about polling: once is enough (the
/// archive watch is re-tried at every wake-up).
static WARNED: AtomicBool = AtomicBool::new(false);

fn report_fallback(what: &str, error: &notify::Error, always_warn: bool) {
    match fallback_warning(what, error, always_warn) {
        Some(warning) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!("{warning}");
            }
        }
        None => tracing::debug!("cannot watch {what} ({error}): checking it at every wake-up"),
    }
}

/// The warning for a watch that could not be set up, or None when a debug
/// line will do (a missing trigger directory, say): a kernel limit, or no
/// event mechanism at all (`always_warn`), slows every wake-up from
/// milliseconds to the -s interval, which the operator should know and
/// can fix (inotify(7), "/proc interfaces").
fn fallback_warning(what: &str, error: &notify::Error, always_warn: bool) -> Option<String> {
    let errno = match &error.kind {
        ErrorKind::Io(e) => e.raw_os_error(),
        ErrorKind::MaxFilesWatch => Some(libc::ENOSPC),
        _ => None,
    };
    let fix = match errno {
        Some(libc::EMFILE) => {
            "; the limit of inotify instances per user (raise the sysctl \
             fs.inotify.max_user_instances) or of open files is reached"
        }
        Some(libc::ENOSPC) => {
            "; the limit of inotify watches per user is reached (raise the sysctl \
             fs.inotify.max_user_watches)"
        }
        Some(libc::ENFILE) => "; the system's limit of open files is reached (fs.file-max)",
        _ if always_warn => "",
        _ => return None,
    };
    Some(format!(
        "cannot watch {what} ({error}){fix}; polling instead: a new file is noticed \
         at the next check (every -s seconds) instead of within milliseconds"
    ))
}

/// Whether `path` is the requested file in the archive or one of its
/// forms: compressed (`name.gz`), or in flight under a temporary name
/// (`name.tmp`, rsync's `.name.XXXXXX`).
fn names_the_file(path: &Path, archive: &Path, name: &str) -> bool {
    if name.is_empty() || path.parent() != Some(archive) {
        return false;
    }
    let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    file_name.starts_with(name)
        || file_name
            .strip_prefix('.')
            .is_some_and(|rest| rest.starts_with(name))
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
    fn exhausted_inotify_limits_name_the_sysctl_to_raise() {
        let io = |errno| notify::Error::io(std::io::Error::from_raw_os_error(errno));
        let warning = fallback_warning("file events", &io(libc::EMFILE), true).unwrap();
        assert!(
            warning.contains("fs.inotify.max_user_instances"),
            "{warning}"
        );
        assert!(warning.contains("every -s seconds"), "{warning}");
        let full = notify::Error::new(ErrorKind::MaxFilesWatch);
        let warning = fallback_warning("the archive \"/a\"", &full, false).unwrap();
        assert!(warning.contains("fs.inotify.max_user_watches"), "{warning}");
        let warning = fallback_warning("the archive \"/a\"", &io(libc::ENOSPC), false).unwrap();
        assert!(warning.contains("fs.inotify.max_user_watches"), "{warning}");
        // A missing directory is not a degradation worth a warning...
        assert_eq!(fallback_warning("x", &io(libc::ENOENT), false), None);
        // ...but having no event mechanism at all is.
        assert!(fallback_warning("file events", &io(libc::ENOSYS), true).is_some());
    }

    #[test]
    fn events_on_the_file_and_its_other_forms_concern_us() {
        let archive = Path::new("/arch");
        let name = "000000010000000000000005";
        let yes = |f: &str| names_the_file(&archive.join(f), archive, name);
        assert!(yes(name));
        assert!(yes("000000010000000000000005.gz"));
        assert!(yes("000000010000000000000005.tmp"));
        assert!(yes(".000000010000000000000005.Xy12Ab"));
        assert!(!yes("000000010000000000000006"));
        assert!(!yes("00000002.history"));
        assert!(!names_the_file(
            Path::new("/elsewhere/000000010000000000000005"),
            archive,
            name
        ));
    }

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
