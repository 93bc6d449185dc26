//! The fetcher: a detached process (`pg_standby --prefetch-worker=SPOOL`)
//! that fills the spool with the segments after the last one restored,
//! decompressed and validated, while the server replays. One per spool
//! (it holds the spool's lock), it exits by itself when there is nothing
//! to do, when the spool is discarded or remade, when the server stops,
//! and on SIGTERM. Its log lines go to the spool's `log`, which the next
//! restore call copies into the server's log: it holds none of the
//! server's descriptors.
//!
//! Nothing it does decides a restore call's outcome: a call that does not
//! find its segment here restores it itself, by the usual rules.

pub mod spool;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::archive::Archive;
use crate::archive::unpack::{self, Unpacked};
use crate::archive::validate::{self, Probe};
use crate::destination::{self, CopyError};
use crate::server::datadir::RecoveryMode;
use crate::sys::open::unchanged;
use crate::sys::signals;
use crate::wal::SegmentName;
use spool::{Spool, Stamp};

/// With nothing to fetch for this long, the fetcher exits; the next call
/// starts another.
const IDLE_EXIT: Duration = Duration::from_secs(5);
/// How often a full spool is looked at for room.
const FULL_POLL: Duration = Duration::from_millis(5);
const ABSENT_FIRST_POLL: Duration = Duration::from_millis(50);
const ABSENT_MAX_POLL: Duration = Duration::from_secs(1);

/// Start a fetcher for `spool` unless one runs or one failed lately.
pub fn ensure_fetcher(spool: &Spool) {
    if spool.fetcher().is_some() || spool.backing_off() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::debug!("prefetch: cannot find our own executable: {e}");
            return;
        }
    };
    let mut arg = std::ffi::OsString::from("--prefetch-worker=");
    arg.push(spool.dir());
    // No descriptor of the server's: the restore call's exit is not held
    // up, and a test that reads our output is not either.
    match Command::new(exe)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => tracing::debug!("prefetch: started fetcher {}", child.id()),
        Err(e) => tracing::warn!("prefetch: could not start the fetcher: {e}; restoring directly"),
    }
}

/// The fetcher's whole life.
pub fn worker(dir: PathBuf) -> ExitCode {
    let spool = Spool::new(dir);
    log_to_spool(&spool);
    let Some(stamp) = spool.stamp() else {
        return ExitCode::SUCCESS;
    };
    crate::obs::logging::set_debug(stamp.debug);
    let lock = match spool.lock_as_fetcher() {
        Ok(Some(lock)) => lock,
        Ok(None) => return ExitCode::SUCCESS, // another fetcher runs
        Err(e) => {
            tracing::warn!(
                "prefetch: cannot lock the spool \"{}\": {e}",
                spool.dir().display()
            );
            return ExitCode::SUCCESS;
        }
    };
    destination::sweep_leftovers(spool.dir());
    if let Err(e) = Archive::open(Path::new(&stamp.archive)) {
        tracing::debug!("prefetch: {e}");
        return ExitCode::SUCCESS;
    }
    let promoted = || {
        stamp.postmaster.is_some()
            && std::env::current_dir()
                .is_ok_and(|d| RecoveryMode::detect(&d) == RecoveryMode::Unknown)
    };
    let fetcher = Fetcher {
        spool: &spool,
        stamp: &stamp,
        promoted: &promoted,
        in_progress: Mutex::new(BTreeSet::new()),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
    };
    if let Err(e) = fetcher.run() {
        log_to_spool(&spool);
        tracing::warn!(
            "prefetch stopped: {e:#}; restoring directly for a minute, then trying again (spool \"{}\")",
            spool.dir().display()
        );
        let _ = spool.write("backoff", "");
    }
    let _ = fs::remove_file(spool.path("current"));
    if promoted() {
        drop(lock);
        spool.discard();
    }
    ExitCode::SUCCESS
}

/// Downloads wait on the network, not on a core: from object storage
/// several segments are fetched at once, once catching up has shown that
/// there is more than one to fetch.
const REMOTE_LANES: usize = 4;

struct Fetcher<'a> {
    spool: &'a Spool,
    stamp: &'a Stamp,
    /// The server ended recovery (its signal file is gone).
    promoted: &'a (dyn Fn() -> bool + Sync),
    /// Segments being fetched, as the spool's `current` shows them.
    in_progress: Mutex<BTreeSet<String>>,
    stop: AtomicBool,
    failure: Mutex<Option<anyhow::Error>>,
}

impl Fetcher<'_> {
    /// Fetch until there is nothing to do. An error is one writing the
    /// spool.
    fn run(&self) -> anyhow::Result<()> {
        std::thread::scope(|scope| {
            self.lane(&|| {
                for _ in 1..REMOTE_LANES {
                    scope.spawn(|| self.lane(&|| {}));
                }
            });
            self.stop.store(true, Ordering::Relaxed);
        });
        match self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One sequence of fetches; `on_first_fetch` runs after the first
    /// segment spooled from object storage. The first failure stops every
    /// lane.
    fn lane(&self, on_first_fetch: &dyn Fn()) {
        let Ok(archive) = Archive::open(Path::new(&self.stamp.archive)) else {
            return;
        };
        let mut on_first_fetch = Some(on_first_fetch).filter(|_| archive.is_remote());
        if let Err(e) = self.fetch_ahead(&archive, &mut on_first_fetch) {
            self.stop.store(true, Ordering::Relaxed);
            self.failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
    }

    fn fetch_ahead(
        &self,
        archive: &Archive,
        on_first_fetch: &mut Option<&dyn Fn()>,
    ) -> anyhow::Result<()> {
        let (spool, stamp) = (self.spool, self.stamp);
        let mut idle_since = Instant::now();
        let mut absent_polls = 0u32;
        loop {
            if self.stop.load(Ordering::Relaxed)
                || signals::terminating().is_some()
                || spool.stamp().as_ref() != Some(stamp)
                || !server_alive(stamp)
                || (self.promoted)()
                || idle_since.elapsed() > IDLE_EXIT
            {
                return Ok(());
            }
            let Some(cursor) = spool.cursor() else {
                return Ok(());
            };
            let Some(next) = self.claim_next(cursor)? else {
                std::thread::sleep(FULL_POLL);
                continue;
            };
            log_to_spool(spool);
            let fetched = fetch_one(spool, stamp, archive, next);
            self.release(next)?;
            match fetched {
                Fetched::Spooled(len) => {
                    tracing::debug!("prefetch: spooled {next} ({len} bytes)");
                    idle_since = Instant::now();
                    absent_polls = 0;
                    if let Some(start_more) = on_first_fetch.take() {
                        start_more();
                    }
                }
                // Following the primary, not catching up: the restore call
                // waits for it, and object storage is not asked twice as
                // often.
                Fetched::NotYet(_) if archive.is_remote() => return Ok(()),
                Fetched::NotYet(why) => {
                    let pause =
                        crate::policy::backoff(ABSENT_FIRST_POLL, absent_polls, ABSENT_MAX_POLL);
                    absent_polls += 1;
                    tracing::debug!("prefetch: {next} not fetched ({why})");
                    std::thread::sleep(pause);
                }
                // Left to the restore call, which reports it by its rules.
                Fetched::Refused(why) => {
                    tracing::debug!("prefetch: not spooling {next}: {why}");
                    return Ok(());
                }
                Fetched::Failed(e) => return Err(e),
                Fetched::Interrupted => return Ok(()),
            }
        }
    }

    /// The next segment nobody has spooled or is fetching, marked as being
    /// fetched (in `current`, where a restore call looks before it waits).
    fn claim_next(&self, cursor: SegmentName) -> anyhow::Result<Option<SegmentName>> {
        let mut busy = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        // A call moves the cursor before it takes a segment out of the
        // spool: a listing read between a cursor and the same cursor again
        // never misses a segment still to be taken, which would be fetched
        // a second time.
        let mut cursor = cursor;
        let mut taken = self.spool.segments();
        while let Some(moved) = self.spool.cursor().filter(|c| *c != cursor) {
            cursor = moved;
            taken = self.spool.segments();
        }
        taken.extend(busy.iter().cloned());
        let stamp = self.stamp;
        let next = spool::next_to_fetch(
            cursor,
            stamp.segment_size,
            stamp.depth,
            stamp.max_bytes,
            &taken,
        );
        if let Some(next) = next {
            busy.insert(next.to_string());
            self.spool.write("current", &lines(&busy))?;
        }
        Ok(next)
    }

    fn release(&self, name: SegmentName) -> anyhow::Result<()> {
        let mut busy = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        busy.remove(&name.to_string());
        self.spool.write("current", &lines(&busy))?;
        Ok(())
    }
}

fn lines(names: &BTreeSet<String>) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

enum Fetched {
    Spooled(u64),
    /// Not (yet) there, or not complete.
    NotYet(String),
    /// Never spoolable as it is: the restore call will say why.
    Refused(String),
    /// Writing into the spool failed.
    Failed(anyhow::Error),
    Interrupted,
}

/// Fetch `name` into the spool under its own name, checked exactly as a
/// direct restore checks it.
fn fetch_one(spool: &Spool, stamp: &Stamp, archive: &Archive, name: SegmentName) -> Fetched {
    let dest = spool.path(&name.to_string());
    archive.new_call();
    match archive.segment(&name, stamp.sysid, spool.dir()) {
        Probe::Ready(ready) => {
            let verify = |copy: &fs::File| {
                unchanged(&ready.file, ready.identity)?;
                validate::recheck(copy, &name, stamp.sysid, ready.accepted)
            };
            let source = archive.path_of(&name.to_string());
            copied(
                destination::deliver(&ready.file, ready.len, &source, &dest, false, &verify),
                ready.len,
            )
        }
        Probe::Compressed(entry) => {
            match unpack::segment(&entry.file, entry.codec, &name, stamp.sysid, &dest) {
                Unpacked::Ready {
                    staged,
                    len,
                    accepted: Some(_),
                } => {
                    if let Err(why) = unchanged(&entry.file, entry.identity) {
                        return Fetched::NotYet(why);
                    }
                    copied(staged.commit(&dest, false), len)
                }
                Unpacked::Ready { .. } => Fetched::Refused("no segment header".into()),
                Unpacked::Incomplete(why) => Fetched::NotYet(why),
                Unpacked::Bad(_, why) => Fetched::Refused(why),
                Unpacked::Failed(e) => Fetched::Failed(e),
                Unpacked::Interrupted => Fetched::Interrupted,
            }
        }
        #[cfg(feature = "remote")]
        Probe::Remote(object) => fetch_remote(spool, stamp, archive, name, object),
        Probe::Absent => Fetched::NotYet("not in the archive".into()),
        probe @ (Probe::Incomplete { .. } | Probe::Unreachable { .. }) => {
            Fetched::NotYet(probe.describe())
        }
        probe => Fetched::Refused(probe.describe()),
    }
}

#[cfg(feature = "remote")]
fn fetch_remote(
    spool: &Spool,
    stamp: &Stamp,
    archive: &Archive,
    name: SegmentName,
    object: crate::archive::RemoteObject,
) -> Fetched {
    use crate::archive::store::Error;
    let dest = spool.path(&name.to_string());
    let codec = object.codec;
    let file = match archive.download(object, spool.dir()) {
        Ok(file) => file,
        Err(Error::NotFound) => return Fetched::NotYet("not in the archive".into()),
        Err(e @ (Error::Transient(_) | Error::Throttled { .. })) => {
            return Fetched::NotYet(e.to_string());
        }
        Err(Error::Interrupted) => return Fetched::Interrupted,
        Err(Error::Io(e)) => {
            return Fetched::Failed(anyhow::Error::new(e).context("downloading into the spool"));
        }
        Err(e) => return Fetched::Refused(e.to_string()),
    };
    match codec {
        None => match validate::file(file, &name, stamp.sysid) {
            Probe::Ready(ready) => {
                let verify =
                    |copy: &fs::File| validate::recheck(copy, &name, stamp.sysid, ready.accepted);
                copied(
                    destination::deliver(&ready.file, ready.len, &dest, &dest, false, &verify),
                    ready.len,
                )
            }
            probe => Fetched::Refused(probe.describe()),
        },
        Some(codec) => match unpack::segment(&file, codec, &name, stamp.sysid, &dest) {
            Unpacked::Ready {
                staged,
                len,
                accepted: Some(_),
            } => copied(staged.commit(&dest, false), len),
            Unpacked::Ready { .. } => Fetched::Refused("no segment header".into()),
            Unpacked::Incomplete(why) | Unpacked::Bad(_, why) => Fetched::Refused(why),
            Unpacked::Failed(e) => Fetched::Failed(e),
            Unpacked::Interrupted => Fetched::Interrupted,
        },
    }
}

fn copied(result: Result<(), CopyError>, len: u64) -> Fetched {
    match result {
        Ok(()) => Fetched::Spooled(len),
        Err(CopyError::Interrupted) => Fetched::Interrupted,
        Err(CopyError::Rejected(why)) => Fetched::NotYet(why),
        Err(CopyError::Failed(e)) => Fetched::Failed(e),
    }
}

/// The server that made the spool still runs: its postmaster.pid (in our
/// working directory, the data directory) still names the same pid and
/// start time, and that pid is alive. A pid taken over by another process
/// after the server stopped does not count.
fn server_alive(stamp: &Stamp) -> bool {
    let Some((pid, _)) = &stamp.postmaster else {
        return true;
    };
    let same_run = std::env::current_dir()
        .is_ok_and(|d| crate::server::datadir::postmaster(&d) == stamp.postmaster);
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(*pid, 0) };
    same_run && (r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Send our stderr to the spool's log, which the next call forwards (it
/// renames the file away first: opened again before each fetch).
fn log_to_spool(spool: &Spool) {
    let Ok(log) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool.path("log"))
    else {
        return;
    };
    // SAFETY: dup2 of a descriptor we own onto stderr.
    unsafe { libc::dup2(log.as_raw_fd(), libc::STDERR_FILENO) };
}
