//! One invocation's work: wait for the requested file, deliver it, clean
//! up the archive, and decide the outcome.

use std::fmt::Display;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::config::Config;
use crate::copy::{self, CopyError};
use crate::datadir::{self, RecoveryMode};
use crate::exit::{Fatal, Outcome};
use crate::header::fmt_lsn;
use crate::probe::{self, Probe, ReadySegment};
use crate::signals;
use crate::timeline;
use crate::trigger::{self, Trigger};
use crate::waiter::Waiter;
use crate::wal::{SegmentName, WalFileName};

pub struct Session {
    config: Config,
    cwd: PathBuf,
    legacy: bool,
    mode: RecoveryMode,
    /// How long we may wait for a segment: `None` waits until failover.
    wait_budget: Option<Duration>,
    sysid: Option<u64>,
    waiter: Option<Waiter>,
    started: Instant,
    last_trigger_note: Option<String>,
}

impl Session {
    pub fn new(config: Config, cwd: PathBuf, legacy: bool) -> Self {
        let mode = RecoveryMode::detect(&cwd);
        let wait_budget = if config.called_by_a_tool() {
            Some(Duration::ZERO)
        } else if mode == RecoveryMode::Standby {
            Some(config.standby_wait)
        } else {
            None
        };
        Self {
            sysid: None,
            config,
            cwd,
            legacy,
            mode,
            wait_budget,
            waiter: None,
            started: Instant::now(),
            last_trigger_note: None,
        }
    }

    /// The waiter, set up on first need: a call that finds its file at
    /// once starts no watcher and no thread.
    fn waiter(&mut self) -> &mut Waiter {
        let config = &self.config;
        self.waiter.get_or_insert_with(|| {
            let (sender, wake) = mpsc::sync_channel(1);
            if let Err(e) = signals::wake_on_signal(sender.clone()) {
                tracing::debug!("{e:#}: signals are noticed at the next check only");
            }
            let segment = matches!(config.request, WalFileName::Segment(_));
            if segment && config.watch {
                Waiter::watching(
                    wake,
                    sender,
                    &config.archive,
                    &config.archive_path(),
                    config.trigger_file.as_deref(),
                )
            } else {
                Waiter::sleeper(wake, &config.archive)
            }
        })
    }

    pub fn run(mut self) -> Outcome {
        if let Some(outcome) = self.check_archive() {
            return outcome;
        }
        self.sysid = match datadir::system_identifier(&self.cwd) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::debug!(
                    "not checking segments' system identifier: cannot read global/pg_control in \"{}\": {e}",
                    self.cwd.display()
                );
                None
            }
        };
        self.log_settings();
        match self.config.request {
            WalFileName::Segment(name) => self.restore_segment(name),
            _ => self.restore_at_once(),
        }
    }

    fn check_archive(&self) -> Option<Outcome> {
        let archive = &self.config.archive;
        match std::fs::metadata(archive) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some(self.fatal(
                Fatal::Archive,
                format!(
                    "archive location \"{}\" is not a directory",
                    archive.display()
                ),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(self.fatal(
                Fatal::Archive,
                format!("archive location \"{}\" does not exist", archive.display()),
            )),
            Err(e) => Some(self.fatal(
                Fatal::Archive,
                format!(
                    "archive location \"{}\" cannot be used: {e}",
                    archive.display()
                ),
            )),
        }
    }

    fn log_settings(&self) {
        let c = &self.config;
        tracing::debug!(
            "request {} -> \"{}\" from \"{}\"; {}{}; trigger file {}; polling floor {} s; max wait {}; {}",
            c.wal_file,
            c.destination.display(),
            c.archive.display(),
            self.mode.describe(),
            if c.called_by_a_tool() {
                " (%p is the final name: called by a tool such as pg_rewind, not waiting)"
            } else {
                ""
            },
            c.trigger_file
                .as_ref()
                .map_or("<not set>".into(), |t| format!("\"{}\"", t.display())),
            c.sleep.as_secs(),
            c.max_wait
                .map_or("forever".into(), |w| format!("{} s", w.as_secs())),
            if c.watch {
                "watching for file events while waiting"
            } else {
                "polling only"
            },
        );
    }

    /// History, backup-history and partial files are complete when they
    /// appear: deliver at once or report them missing at once.
    fn restore_at_once(&mut self) -> Outcome {
        let source = self.config.archive_path();
        let file = match File::open(&source) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(
                    "not restored: {} is not in the archive",
                    self.config.wal_file
                );
                return Outcome::NotRestored;
            }
            Err(e) => {
                return self.fatal(
                    Fatal::Io,
                    format!("cannot read \"{}\": {e}", source.display()),
                );
            }
        };
        let len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                return self.fatal(
                    Fatal::Io,
                    format!("cannot stat \"{}\": {e}", source.display()),
                );
            }
        };
        match self.deliver_with_retries(&file, len) {
            Ok(()) => {
                tracing::info!("restored {} ({len} bytes)", self.config.wal_file);
                Outcome::Restored
            }
            Err(outcome) => outcome,
        }
    }

    fn restore_segment(&mut self, name: SegmentName) -> Outcome {
        let source = self.config.archive_path();
        let mut smart = false;
        let mut stuck = Stuck::new();
        let mut never_exists_checked = false;
        loop {
            if let Some(outcome) = self.interrupted() {
                return outcome;
            }
            match self.check_trigger() {
                Trigger::Fast => {
                    tracing::info!(
                        "fast failover: trigger file says \"fast\"; not restoring {name}: recovery ends now"
                    );
                    return Outcome::NotRestored;
                }
                Trigger::Smart if !smart => {
                    smart = true;
                    tracing::info!(
                        "smart failover: trigger file found; restoring what the archive still holds"
                    );
                }
                _ => {}
            }
            let probe = probe::probe_segment(&source, &name, self.sysid);
            let waited = self.started.elapsed();
            let bad = match &probe {
                Probe::Invalid(_) | Probe::Oversized { .. } | Probe::Unreadable(_) => {
                    Some((kind_of(&probe), probe.describe()))
                }
                _ => None,
            };
            match probe {
                Probe::Ready(ready) => return self.deliver_segment(name, ready, waited),
                Probe::Absent if smart => {
                    tracing::info!(
                        "smart failover: {name} is not in the archive; recovery ends after {:.3} s",
                        waited.as_secs_f64()
                    );
                    return Outcome::NotRestored;
                }
                Probe::Absent => {
                    if !never_exists_checked {
                        never_exists_checked = true;
                        if self.can_never_exist(name) {
                            return Outcome::NotRestored;
                        }
                    }
                }
                other => {
                    if let Some(outcome) = self.judge_undeliverable(name, &other, &mut stuck, smart)
                    {
                        return outcome;
                    }
                }
            }
            if let Some(outcome) = self.out_of_time(name, waited, bad) {
                return outcome;
            }
            if self.waiter.is_none() {
                // Watch, then look again at once: a file that landed
                // between the first look and the watch is not missed.
                self.waiter();
                continue;
            }
            let timeout = self.next_timeout(waited);
            self.waiter().wait(timeout);
        }
    }

    /// A present file that cannot be delivered (yet). Returns the outcome
    /// when it is time to stop waiting for it.
    fn judge_undeliverable(
        &self,
        name: SegmentName,
        probe: &Probe,
        stuck: &mut Stuck,
        smart: bool,
    ) -> Option<Outcome> {
        let why = probe.describe();
        let unchanged = stuck.observe(probe.fingerprint(&self.config.archive_path()));
        if matches!(probe, Probe::Incomplete { .. }) {
            return self.judge_incomplete(name, &why, unchanged, stuck, smart);
        }
        // Invalid, oversized or unreadable: never delivered, and never a
        // reason to end recovery, smart failover or not.
        if self.wait_budget == Some(Duration::ZERO) {
            return Some(self.fatal(kind_of(probe), format!("not restoring {name}: {why}")));
        }
        if unchanged == Duration::ZERO {
            tracing::warn!(
                "not restoring {name}: {why}; waiting up to {} s for a valid copy",
                self.config.bad_file_timeout.as_secs()
            );
        }
        if unchanged >= self.config.bad_file_timeout {
            return Some(self.fatal(
                kind_of(probe),
                format!(
                    "not restoring {name}: {why}, unchanged for {} s",
                    unchanged.as_secs()
                ),
            ));
        }
        None
    }

    /// A segment still being written is waited for, as long as it takes: an
    /// archive_command that died mid-copy leaves one for good, and stopping
    /// the server then would block the failover the operator needs. A smart
    /// failover gives up on it once it stops growing for `-s` seconds.
    fn judge_incomplete(
        &self,
        name: SegmentName,
        why: &str,
        unchanged: Duration,
        stuck: &mut Stuck,
        smart: bool,
    ) -> Option<Outcome> {
        if self.wait_budget == Some(Duration::ZERO) {
            tracing::info!("not restored: {name}: {why}");
            return Some(Outcome::NotRestored);
        }
        if smart && unchanged >= self.config.sleep {
            tracing::warn!(
                "smart failover: {name} is in the archive but not restored: {why}, unchanged for {} s; recovery ends here",
                unchanged.as_secs()
            );
            return Some(Outcome::NotRestored);
        }
        if unchanged >= self.config.bad_file_timeout && stuck.first_report() {
            tracing::warn!(
                "{name} has stayed incomplete for {} s: {why}; still waiting (did the archive_command die mid-copy? the trigger file fails over)",
                unchanged.as_secs()
            );
        } else if unchanged == Duration::ZERO {
            tracing::debug!("waiting for {name}: {why}");
        }
        None
    }

    /// On PostgreSQL 12 and older the server asks for the newest timeline
    /// first, even where that timeline cannot have the segment.
    fn can_never_exist(&self, name: SegmentName) -> bool {
        if name.tli <= 1 {
            return false;
        }
        let pg_wal = self.cwd.join("pg_wal");
        let dirs = [self.config.archive.as_path(), pg_wal.as_path()];
        let Some(begin) = timeline::find_history(name.tli, &dirs)
            .as_deref()
            .and_then(timeline::begin_lsn)
        else {
            return false;
        };
        let Some(seg_size) = probe::archive_segment_size(&self.config.archive, self.sysid)
            .or_else(|| probe::archive_segment_size(&pg_wal, self.sysid))
        else {
            return false;
        };
        let never = timeline::precedes_timeline_start(name, begin, seg_size);
        if never {
            tracing::info!(
                "not restored: {name} can never exist: timeline {} begins at {}, after this segment",
                name.tli,
                fmt_lsn(begin)
            );
        }
        never
    }

    /// `-w` or the standby-mode budget ran out. A bad file in the archive
    /// still stops recovery: timing out must not skip past it.
    fn out_of_time(
        &self,
        name: SegmentName,
        waited: Duration,
        bad: Option<(Fatal, String)>,
    ) -> Option<Outcome> {
        let expired = self.config.max_wait.is_some_and(|w| waited >= w)
            || self.wait_budget.is_some_and(|b| waited >= b);
        if let (true, Some((kind, why))) = (expired, bad) {
            return Some(self.fatal(
                kind,
                format!("not restoring {name}: {why}; not failing over past it"),
            ));
        }
        if let Some(max_wait) = self.config.max_wait
            && waited >= max_wait
        {
            tracing::info!(
                "fast failover: waited {} s for {name} (-w {}); recovery ends now",
                waited.as_secs(),
                max_wait.as_secs()
            );
            return Some(Outcome::NotRestored);
        }
        if let Some(budget) = self.wait_budget
            && waited >= budget
        {
            tracing::info!("not restored: {name} is not in the archive");
            return Some(Outcome::NotRestored);
        }
        None
    }

    fn next_timeout(&self, waited: Duration) -> Duration {
        [self.config.max_wait, self.wait_budget]
            .into_iter()
            .flatten()
            .map(|limit| limit.saturating_sub(waited))
            .fold(self.config.sleep, Duration::min)
    }

    fn deliver_segment(
        &mut self,
        name: SegmentName,
        ready: ReadySegment,
        waited: Duration,
    ) -> Outcome {
        let copy_started = Instant::now();
        if let Err(outcome) = self.deliver_with_retries(&ready.file, ready.len) {
            return outcome;
        }
        if ready.accepted.major.is_none() {
            tracing::warn!(
                "{name} has a WAL page magic no PostgreSQL 10-18 uses; restored because every other header field checks out"
            );
        }
        tracing::info!(
            "restored {name} after waiting {:.3} s ({} MiB copied in {:.3} s)",
            waited.as_secs_f64(),
            ready.len >> 20,
            copy_started.elapsed().as_secs_f64()
        );
        // Our own unlinks would only wake the watcher.
        self.waiter = None;
        self.clean_archive(name, ready.accepted.seg_size);
        Outcome::Restored
    }

    fn clean_archive(&self, name: SegmentName, seg_size: u64) {
        let cutoff = match self.config.restart {
            Some(restart) => cleanup::cutoff_from_restart(restart, name),
            None => cleanup::cutoff_keeping(self.config.keep_files, name, seg_size),
        };
        let Some(cutoff) = cutoff else { return };
        match cleanup::run(&self.config.archive, cutoff, self.config.dry_run) {
            Ok(s) if s.removed > 0 => tracing::info!(
                "archive cleanup: {} {} segment(s) older than {cutoff}",
                if self.config.dry_run {
                    "would remove"
                } else {
                    "removed"
                },
                s.removed
            ),
            Ok(_) => tracing::debug!("archive cleanup: nothing older than {cutoff}"),
            Err(e) => tracing::warn!("archive cleanup stopped: {e} (the restore itself succeeded)"),
        }
    }

    /// Copy with `-r` retries, pausing 0, s, 2s, ... between attempts as
    /// pg_standby does; a pause ends early on a shutdown or fast failover.
    fn deliver_with_retries(&mut self, src: &File, len: u64) -> Result<(), Outcome> {
        let source = self.config.archive_path();
        let attempts = self.config.max_retries + 1;
        let mut attempt = 1;
        loop {
            let error = match copy::deliver(
                src,
                len,
                &source,
                &self.config.destination,
                self.config.fsync,
            ) {
                Ok(()) => return Ok(()),
                Err(CopyError::Interrupted) => {
                    return Err(self.interrupted().unwrap_or(Outcome::Killed(libc::SIGTERM)));
                }
                Err(CopyError::Failed(e)) => e,
            };
            if attempt == attempts {
                return Err(self.fatal(Fatal::Io, format!("{error:#} (failed {attempts} time(s))")));
            }
            let pause = self.config.sleep * (attempt - 1);
            tracing::warn!(
                "{error:#}; retrying in {} s (attempt {attempt} of {attempts} failed)",
                pause.as_secs()
            );
            if let Some(outcome) = self.pause(pause) {
                return Err(outcome);
            }
            attempt += 1;
        }
    }

    fn pause(&mut self, length: Duration) -> Option<Outcome> {
        // Set up the wake-ups before the first check, so no signal is missed.
        self.waiter();
        let until = Instant::now() + length;
        loop {
            if let Some(outcome) = self.interrupted() {
                return Some(outcome);
            }
            if self.check_trigger() == Trigger::Fast {
                tracing::info!("fast failover: trigger file says \"fast\"; giving up the retries");
                return Some(Outcome::NotRestored);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.waiter().wait(left);
        }
    }

    /// A shutdown signal (die by it) or a failover signal (exit 1).
    fn interrupted(&self) -> Option<Outcome> {
        if let Some(signal) = signals::terminating() {
            tracing::info!(
                "{}: not restored",
                if signal == libc::SIGTERM {
                    "shutdown requested (SIGTERM)"
                } else {
                    "immediate shutdown requested (SIGQUIT)"
                }
            );
            return Some(Outcome::Killed(signal));
        }
        if let Some(name) = signals::failover_requested() {
            tracing::info!(
                "fast failover: {name} received; not restoring {}: recovery ends now",
                self.config.wal_file
            );
            return Some(Outcome::NotRestored);
        }
        None
    }

    /// Read the trigger file, warning once per new unusable state.
    fn check_trigger(&mut self) -> Trigger {
        let Some(path) = self.config.trigger_file.as_deref() else {
            return Trigger::Absent;
        };
        let trigger = trigger::read(path);
        let note = match &trigger {
            Trigger::Invalid(content) => Some(format!(
                "invalid content in trigger file \"{}\": \"{content}\" (write nothing, \"smart\" or \"fast\"); still waiting",
                path.display()
            )),
            Trigger::Unreadable(e) => Some(format!(
                "cannot read trigger file \"{}\": {e}; no failover, still waiting",
                path.display()
            )),
            _ => None,
        };
        if note.is_some() && note != self.last_trigger_note {
            tracing::warn!("{}", note.as_deref().unwrap_or_default());
        }
        self.last_trigger_note = note;
        trigger
    }

    /// Log an error and turn it into the outcome the server must see. In
    /// standby mode exit 1 only makes the server retry, while a fatal exit
    /// would stop a standby that could still stream.
    fn fatal(&self, kind: Fatal, message: impl Display) -> Outcome {
        if self.mode == RecoveryMode::Standby {
            tracing::error!(
                "{message}; answering \"not available\" (exit 1): in standby mode the server retries"
            );
            return Outcome::NotRestored;
        }
        let code = Outcome::Fatal(kind).code(self.legacy);
        if self.legacy {
            tracing::error!("{message}; exiting with {code} (--legacy-exit-codes)");
        } else {
            tracing::error!(
                "{message}; exiting with {code} so that PostgreSQL stops recovery instead of promoting"
            );
        }
        Outcome::Fatal(kind)
    }
}

fn kind_of(probe: &Probe) -> Fatal {
    match probe {
        Probe::Oversized { .. } => Fatal::Oversized,
        Probe::Unreadable(_) => Fatal::Io,
        _ => Fatal::BadSegment,
    }
}

/// How long a not-yet-deliverable file has stayed exactly as it is.
struct Stuck {
    fingerprint: Option<String>,
    since: Instant,
    reported: bool,
}

impl Stuck {
    fn new() -> Self {
        Self {
            fingerprint: None,
            since: Instant::now(),
            reported: false,
        }
    }

    fn observe(&mut self, fingerprint: Option<String>) -> Duration {
        if fingerprint != self.fingerprint {
            self.fingerprint = fingerprint;
            self.since = Instant::now();
            self.reported = false;
            return Duration::ZERO;
        }
        self.since.elapsed()
    }

    /// True once per unchanged state: warn about it only once.
    fn first_report(&mut self) -> bool {
        !std::mem::replace(&mut self.reported, true)
    }
}
