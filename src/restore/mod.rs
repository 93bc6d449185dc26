//! One invocation's work: look at the archive, let the policy decide, act
//! (wait, deliver, end), clean up the archive, and log each outcome once.

use std::fmt::Display;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod ended;
mod failover;
mod found;
mod prefetching;
mod report;

use crate::archive::Archive;
use crate::archive::unpack::{self, Unpacked};
use crate::archive::validate::{self, CompressedEntry, Probe, ReadySegment};
use crate::archive::{cleanup, cutoff};
use crate::config::Config;
use crate::destination::{self, CopyError, Staged, destination_dir};
use crate::exit::{self, Fatal, Outcome};
use crate::obs::logging;
use crate::obs::metrics::{self, CallOutcome, CallReport, FailoverKind};
use crate::policy::{self, Failover, Note, Observation, ReadyStep, Reason, Rules, Seen, Step};
use crate::server::datadir::{self, RecoveryMode};
use crate::sys::mounts;
use crate::sys::open::{Identity, unchanged};
use crate::sys::signals;
use crate::sys::waiter::Waiter;
use crate::trigger::{self, Trigger};
use crate::wal::header::Accepted;
use crate::wal::timeline;
use crate::wal::{SegmentName, WalFileName};
use failover::Cause;
use found::{Deliverable, Delivery, Found, Judged, Look};

pub struct Session {
    config: Config,
    cwd: PathBuf,
    legacy: bool,
    mode: RecoveryMode,
    rules: Rules,
    sysid: Option<u64>,
    waiter: Option<Waiter>,
    started: Instant,
    failover: Failover,
    /// What asked for the failover, and when it was first seen.
    failover_cause: Cause,
    failover_seen: Option<Instant>,
    last_trigger_note: Option<String>,
    /// postmaster.pid's start time: a trigger file older than this is stale.
    server_start: Option<std::time::SystemTime>,
    standby_trigger_warned: bool,
    /// What this call did, for `--metrics-file`.
    report: CallReport,
    /// The segment size of what this call restored.
    seg_size: Option<u64>,
    /// Where a failover ended recovery, when this call is the server
    /// asking again for the last segment it replayed (see [`ended`]).
    asked_again_after: Option<SegmentName>,
    spool: Option<crate::prefetch::spool::Spool>,
    /// When each phase of the call ended, for the `-d` trace.
    phases: Vec<(&'static str, Instant)>,
    /// The archive cleanup was started before the wait.
    cleaned: bool,
}

impl Session {
    pub fn new(config: Config, cwd: PathBuf, legacy: bool) -> Self {
        let mode = RecoveryMode::detect(&cwd);
        let server_start = datadir::server_started(&cwd);
        let budget = if config.called_by_a_tool() {
            Some(Duration::ZERO)
        } else if mode == RecoveryMode::Standby {
            Some(config.standby_wait)
        } else {
            None
        };
        let rules = Rules {
            sleep: config.sleep,
            max_wait: config.max_wait,
            budget,
            bad_file_timeout: config.bad_file_timeout,
        };
        Self {
            sysid: None,
            config,
            cwd,
            legacy,
            mode,
            rules,
            waiter: None,
            started: Instant::now(),
            failover: Failover::None,
            failover_cause: Cause::None,
            failover_seen: None,
            last_trigger_note: None,
            server_start,
            standby_trigger_warned: false,
            report: CallReport::default(),
            seg_size: None,
            asked_again_after: None,
            spool: None,
            phases: Vec::new(),
            cleaned: false,
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
            if let Err(e) = mounts::wake_on_change(sender.clone()) {
                tracing::debug!("{e:#}: an unmounted archive is noticed at the next check only");
            }
            let segment = matches!(config.request, WalFileName::Segment(_));
            let waiter = if segment && config.watch {
                Waiter::watching(
                    wake,
                    sender,
                    &config.archive,
                    &config.archive_path(),
                    config.trigger_file.as_deref(),
                )
            } else {
                Waiter::sleeper(wake, &config.archive)
            };
            // Only now: tests (and operators) take this line to mean that
            // a file or signal arriving from here on ends the wait.
            tracing::debug!(
                "wake-ups in place: signals{}",
                if waiter.watches() {
                    ", file events"
                } else {
                    ""
                }
            );
            waiter
        })
    }

    pub fn run(mut self) -> Outcome {
        let archive = Archive::open(&self.config.archive);
        let outcome = match &archive {
            Ok(archive) => self.run_with(archive),
            Err(why) => self.fatal(Fatal::Archive, why),
        };
        let ended = matches!(outcome, Outcome::Killed(_) | Outcome::Fatal(_))
            || matches!(
                self.report.outcome,
                CallOutcome::Failover(_) | CallOutcome::Error(_)
            );
        if ended {
            self.discard_spool();
        }
        self.mark_end_of_recovery(&outcome);
        if let Some(path) = self.config.metrics_file.clone() {
            self.report.wait_seconds =
                self.started.elapsed().as_secs_f64() - self.report.copy_seconds;
            // Not on the way out of a shutdown: a listing of object
            // storage could hold the process past it.
            if let Ok(archive) = &archive
                && !matches!(outcome, Outcome::Killed(_))
            {
                self.report.newest_in_archive = self.newest_in_archive(archive);
            }
            self.report.outcome = match outcome {
                Outcome::Restored => CallOutcome::Restored,
                Outcome::Killed(_) => CallOutcome::Shutdown,
                _ => self.report.outcome,
            };
            metrics::record(&path, &self.report);
        }
        outcome
    }

    /// A failover that ends recovery (archive recovery, a server's call)
    /// leaves a mark for the server's next question (see [`ended`]).
    fn mark_end_of_recovery(&self, outcome: &Outcome) {
        let (WalFileName::Segment(name), Outcome::NotRestored, RecoveryMode::Archive) =
            (self.config.request, outcome, self.mode)
        else {
            return;
        };
        if !matches!(self.report.outcome, CallOutcome::Failover(_)) {
            return;
        }
        if let Some(run) = crate::server::datadir::postmaster(&self.cwd) {
            ended::record(&self.cwd, &run, name);
        }
    }

    /// Whether this call is the server asking again for its last segment
    /// after a failover; a history file (the timeline switch that follows)
    /// or another server run clears the mark.
    fn read_end_of_recovery_mark(&mut self) {
        let Some(mark) = ended::read(&self.cwd) else {
            return;
        };
        let run = crate::server::datadir::postmaster(&self.cwd);
        match self.config.request {
            WalFileName::Segment(name)
                if ended::is_asked_again(Some(&mark), run.as_ref(), name) =>
            {
                self.asked_again_after = Some(mark.1);
            }
            WalFileName::Segment(_) if run.as_ref() == Some(&mark.0) => {}
            _ => ended::remove(&self.cwd),
        }
    }

    /// Start LSN and timeline of the archive's newest segment, for the
    /// metrics. Its segment size is the one this call restored, else one
    /// read from a plain segment of the archive or of pg_wal, else initdb's
    /// default (a listing alone does not tell it).
    fn newest_in_archive(&self, archive: &Archive) -> Option<(u64, u32)> {
        let newest = archive.newest_segment()?;
        let seg_size = self
            .seg_size
            .or_else(|| archive.segment_size(self.sysid))
            .or_else(|| validate::archive_segment_size(&self.cwd.join("pg_wal"), self.sysid))
            .unwrap_or(16 << 20);
        Some((newest.start_lsn(seg_size)?, newest.tli))
    }

    fn run_with(&mut self, archive: &Archive) -> Outcome {
        if let Err(why) = self.check_destination() {
            return self.fatal(Fatal::Usage, why);
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
        self.read_end_of_recovery_mark();
        destination::sweep_leftovers(destination_dir(&self.config.destination));
        self.discard_spool_after_promotion();
        match self.config.request {
            WalFileName::Segment(name) => self.restore_segment(archive, name),
            _ => self.restore_at_once(archive),
        }
    }

    /// `%p` must be where the server wants the file. The likely mistake is
    /// a forgotten `%p`, which makes `%r` the destination.
    fn check_destination(&self) -> Result<(), String> {
        let dest = self.cwd.join(&self.config.destination);
        let file_name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if WalFileName::parse(file_name).is_some() && file_name != self.config.wal_file {
            return Err(format!(
                "XLOGFILEPATH \"{}\" is a WAL file name, not %p: is %p missing from restore_command, \
                 so that %r took its place? (restore_command = 'pg_standby ... ARCHIVELOCATION %f %p %r')",
                self.config.destination.display()
            ));
        }
        if dest.is_dir() {
            return Err(format!(
                "XLOGFILEPATH \"{}\" is a directory, not the file path %p",
                self.config.destination.display()
            ));
        }
        let server_call = self.mode != RecoveryMode::Unknown && !self.config.called_by_a_tool();
        let in_pg_wal = || {
            let parent = dest.parent().and_then(|p| p.canonicalize().ok());
            parent.is_some() && parent == self.cwd.join("pg_wal").canonicalize().ok()
        };
        if server_call && !in_pg_wal() {
            return Err(format!(
                "XLOGFILEPATH \"{}\" is not in the data directory's pg_wal: the third argument must be %p \
                 (restore_command = 'pg_standby ... ARCHIVELOCATION %f %p %r')",
                self.config.destination.display()
            ));
        }
        Ok(())
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
    fn restore_at_once(&mut self, archive: &Archive) -> Outcome {
        let name = self.config.wal_file.clone();
        let mut failures = 0;
        loop {
            let scratch = destination_dir(&self.config.destination);
            let entry = match archive.file(&name, scratch) {
                Ok(Some(entry)) => entry,
                Ok(None) if archive.gone().is_none() => {
                    // The server asks for history files it does not expect
                    // to exist at every start and promotion.
                    tracing::debug!("{name} is not in the archive (a routine question)");
                    self.report.outcome = CallOutcome::NotAvailable;
                    return Outcome::NotRestored;
                }
                Ok(None) => {
                    let gone = archive.gone().unwrap_or_default();
                    return self.fatal(
                        Fatal::Archive,
                        format!(
                            "archive location \"{}\" is gone ({gone}): not answering whether it holds {name}; \
                             mount it again or fix the path, then start the server",
                            archive.dir().display()
                        ),
                    );
                }
                Err(e) => {
                    let why = archive.gone().map_or_else(
                        || format!("cannot restore {name}: {e}"),
                        |gone| {
                            format!(
                                "archive location \"{}\" is gone: {gone}",
                                archive.dir().display()
                            )
                        },
                    );
                    // Object storage failed or the body changed on the way:
                    // its copy is not at fault as far as we know, and a
                    // history file removed lets a later promotion pick its
                    // timeline again.
                    let fix = if archive.is_remote() && e.kind() == std::io::ErrorKind::Other {
                        "the archive's copy is most likely intact: do not remove it; check the \
                         store's status and what lies between the standby and the store, then \
                         start the server"
                            .to_string()
                    } else {
                        crate::sys::access::unreadable_fix(&archive.path_of(&name))
                            .unwrap_or_else(|| FIX_FILE.to_string())
                    };
                    return self.fatal(Fatal::Io, format!("{why}; {fix}"));
                }
            };
            let delivery = match entry.codec {
                None => {
                    let verify = |_: &File| unchanged(&entry.file, entry.identity);
                    self.deliver(&entry.file, entry.len, entry.identity, &verify)
                }
                Some(codec) => {
                    match unpack::small_file(&entry.file, codec, &self.config.destination) {
                        Unpacked::Ready { staged, .. } => {
                            self.commit_staged(staged, &entry.file, entry.identity)
                        }
                        Unpacked::Incomplete(why) | Unpacked::Bad(_, why) => {
                            return self.fatal(
                                Fatal::BadSegment,
                                format!(
                                    "cannot restore {name} from its {codec} form: {why}; {FIX_FILE}"
                                ),
                            );
                        }
                        Unpacked::Failed(e) => Delivery::Failed(e),
                        Unpacked::Interrupted => Delivery::Interrupted,
                    }
                }
            };
            match delivery {
                Delivery::Done => {
                    tracing::info!("restored {name} ({} bytes)", entry.len);
                    self.report.bytes = entry.len;
                    return Outcome::Restored;
                }
                other => {
                    if let Some(outcome) = self.undelivered(&name, other, &mut failures) {
                        return outcome;
                    }
                }
            }
        }
    }

    fn restore_segment(&mut self, archive: &Archive, name: SegmentName) -> Outcome {
        self.phase("started");
        self.spool = self.locate_spool();
        if let Some(outcome) = self.restore_from_spool(name) {
            self.phase("taken from the spool");
            // A segment's length is its segment size.
            self.after_restore(archive, name, self.report.bytes, true);
            return outcome;
        }
        let mut wait = Wait::default();
        loop {
            if let ControlFlow::Break(Turn::End(outcome)) = self.turn(archive, name, &mut wait) {
                return outcome;
            }
        }
    }

    /// One turn of the wait: hold off (a shutdown, a failover, the store's
    /// pace), look, judge what was seen, let the policy decide, act.
    fn turn(&mut self, archive: &Archive, name: SegmentName, w: &mut Wait) -> ControlFlow<Turn> {
        self.hold_off(archive, name, w)?;
        let (found, at) = self.look(archive, name, w)?;
        let look = match self.judge(archive, name, found, at.waited, w)? {
            Judged::Ready(ready) => return self.ready(archive, name, ready, &at, w),
            Judged::NotReady(look) => look,
        };
        self.look_again_if_failing_over(archive, name, &look, at.waited, w)?;
        let now = Observation {
            seen: look.seen,
            unchanged: w.stuck.observe(look.seen, &look.state),
            waited: at.waited,
            failover: self.failover,
        };
        match policy::next_step(&self.rules, &now) {
            Step::Wait { timeout, note } => {
                self.wait(archive, name, &look, &now, (timeout, note), w)
            }
            Step::NotRestored(reason) => {
                self.log_not_restored(name, reason, &look.why, now.waited, now.unchanged);
                self.report.outcome = self.outcome_of(reason);
                ControlFlow::Break(Turn::End(Outcome::NotRestored))
            }
            Step::Fatal(kind, reason) => {
                let message = self.fatal_message(archive, name, reason, &look.why, &now);
                ControlFlow::Break(Turn::End(self.fatal(kind, message)))
            }
        }
    }

    /// Before a look: a shutdown ends the call, a failover is read, and
    /// object storage is asked only at the pace of its answers (the
    /// trigger, the signals, -w and the call's budget are looked at
    /// meanwhile).
    fn hold_off(
        &mut self,
        archive: &Archive,
        name: SegmentName,
        w: &mut Wait,
    ) -> ControlFlow<Turn> {
        self.end_if_shutting_down()?;
        self.update_failover(name);
        if archive.is_remote() {
            let waited = self.started.elapsed();
            let due = self.failing_over(waited)
                || self.rules.budget.is_some_and(|budget| waited >= budget);
            if let Some(left) = w.pace.left(self.failover, due) {
                self.waiter().wait(left.min(policy::ARCHIVE_GONE_POLL));
                return ControlFlow::Break(Turn::Again);
            }
            archive.give_up_requests_when(Some(self.request_rule()));
        }
        ControlFlow::Continue(())
    }

    fn end_if_shutting_down(&self) -> ControlFlow<Turn> {
        match signals::terminating() {
            Some(signal) => ControlFlow::Break(Turn::End(self.shut_down(signal))),
            None => ControlFlow::Continue(()),
        }
    }

    /// One look at the archive: the segment as it is, decompressed, or
    /// downloaded.
    fn look(
        &mut self,
        archive: &Archive,
        name: SegmentName,
        w: &mut Wait,
    ) -> ControlFlow<Turn, (Found, LookedAt)> {
        // The log says how long the call waited before the look that found
        // the segment; the rules count the look's time too.
        let waited_before = self.started.elapsed();
        let scratch = destination_dir(&self.config.destination).to_path_buf();
        let look_started = Instant::now();
        let found = match archive.segment(&name, self.sysid, &scratch) {
            Probe::Compressed(entry) => {
                let state = format!("{:?}", entry.identity);
                self.unpack_segment(name, entry, state, &mut w.unpacked)
            }
            #[cfg(feature = "remote")]
            Probe::Remote(object) => self.fetch(archive, name, object, &mut w.unpacked),
            probe => Found::Plain(probe),
        };
        // A shutdown during a long look (a download, a decompression)
        // outranks whatever the look saw.
        self.end_if_shutting_down()?;
        let downloaded = archive.is_remote().then(|| look_started.elapsed());
        if archive.is_remote() {
            // A failover asked for during a request (which may have given
            // it up) counts for what the request answered.
            self.update_failover(name);
        }
        let at = LookedAt {
            waited_before,
            waited: self.started.elapsed(),
            downloaded,
        };
        ControlFlow::Continue((found, at))
    }

    /// What a look means: ready to deliver, or what the policy must decide
    /// on. A look that cannot be judged ends the turn: an archive that
    /// cannot be used, a failed copy (retried by -r), a shutdown.
    fn judge(
        &mut self,
        archive: &Archive,
        name: SegmentName,
        found: Found,
        waited: Duration,
        w: &mut Wait,
    ) -> ControlFlow<Turn, Judged> {
        ControlFlow::Continue(match found {
            Found::Plain(Probe::Misconfigured(why)) => {
                let message = format!(
                    "archive location \"{}\" cannot be used: {why}; fix the URL, the \
                     credentials or the bucket's permissions, then start the server",
                    archive.dir().display()
                );
                return ControlFlow::Break(Turn::End(self.fatal(Fatal::Archive, message)));
            }
            Found::Plain(probe) => {
                self.judge_probe(archive, name, probe, waited, &mut w.never_exists_checked)
            }
            Found::Decompressed(decompressed) => {
                Judged::Ready(Deliverable::Decompressed(decompressed))
            }
            Found::NotReady(look) => Judged::NotReady(look),
            Found::StagingFailed(error) => {
                return ControlFlow::Break(self.copy_failed(error, &mut w.failures));
            }
            Found::Interrupted => return ControlFlow::Break(Turn::End(self.killed())),
        })
    }

    /// A failover that finds nothing looks once more: the in-flight file
    /// may have been renamed into place between the look at the name and
    /// the look for temporary names. A second disagreement ends the call.
    fn look_again_if_failing_over(
        &mut self,
        archive: &Archive,
        name: SegmentName,
        look: &Look,
        waited: Duration,
        w: &mut Wait,
    ) -> ControlFlow<Turn> {
        if look.seen != Seen::Absent || !self.failing_over(waited) {
            return ControlFlow::Continue(());
        }
        let scratch = destination_dir(&self.config.destination).to_path_buf();
        let probe = archive.segment(&name, self.sysid, &scratch);
        if matches!(probe, Probe::Absent) {
            return ControlFlow::Continue(());
        }
        if !std::mem::replace(&mut w.relooked, true) {
            return ControlFlow::Break(Turn::Again);
        }
        let Probe::Unreachable { why, .. } = probe else {
            // Twice: a store whose listing and downloads disagree. Never a
            // failover past a segment the archive says it has, and no loop
            // without a pause either.
            let message = format!(
                "{name} is listed in the archive \"{}\" but cannot be found when read; not \
                 failing over past it: check the archive (an object store whose listing and \
                 reads disagree), then start the server",
                archive.dir().display()
            );
            return ControlFlow::Break(Turn::End(self.fatal(Fatal::Archive, message)));
        };
        // The store failed the second look (or it was given up): not a
        // disagreement, an archive out of reach.
        self.end_if_shutting_down()?;
        self.update_failover(name);
        if self.failover == Failover::Fast {
            // A fast failover asked for meanwhile ends the call as for an
            // absent segment.
            return ControlFlow::Continue(());
        }
        let now = Observation {
            seen: Seen::ArchiveGone,
            unchanged: Duration::ZERO,
            waited,
            failover: self.failover,
        };
        let message = self.fatal_message(archive, name, Reason::ArchiveGoneNoFailover, &why, &now);
        ControlFlow::Break(Turn::End(self.fatal(Fatal::Archive, message)))
    }

    /// A segment found ready: delivered into `%p`, unless a fast failover
    /// ends the call first.
    fn ready(
        &mut self,
        archive: &Archive,
        name: SegmentName,
        ready: Deliverable,
        at: &LookedAt,
        w: &mut Wait,
    ) -> ControlFlow<Turn> {
        if let ReadyStep::NotRestored(reason) = policy::ready_step(self.failover) {
            self.log_not_restored(name, reason, "", at.waited, Duration::ZERO);
            self.report.outcome = self.outcome_of(reason);
            return ControlFlow::Break(Turn::End(Outcome::NotRestored));
        }
        self.phase("found and validated");
        let copy_started = Instant::now();
        let (delivery, len, accepted, from, unpacking) = match ready {
            Deliverable::Plain(ready) => (
                self.deliver_segment(name, &ready),
                ready.len,
                ready.accepted,
                None,
                Duration::ZERO,
            ),
            Deliverable::Decompressed(d) => (
                self.commit_staged(d.staged, &d.source.file, d.source.identity),
                d.len,
                d.accepted,
                Some((d.source.file_name, d.source.len)),
                d.took,
            ),
        };
        if !matches!(delivery, Delivery::Done) {
            return ControlFlow::Break(self.not_delivered(name, delivery, &mut w.failures));
        }
        self.phase("copied and renamed");
        let copy = copy_started.elapsed() + unpacking;
        let compressed = from.is_some();
        let took = (copy, at.downloaded);
        self.log_restored(archive, name, len, accepted, at.waited_before, took, from);
        self.note_restored(name, len, accepted.seg_size, copy);
        // Our own unlinks would only wake the watcher.
        self.waiter = None;
        self.after_restore(archive, name, accepted.seg_size, compressed);
        ControlFlow::Break(Turn::End(Outcome::Restored))
    }

    /// The policy says wait: pace object storage, log a note once per
    /// state, clean up and set the watch before the first wait, then sleep
    /// until woken or the timeout.
    fn wait(
        &mut self,
        archive: &Archive,
        name: SegmentName,
        look: &Look,
        now: &Observation,
        (timeout, note): (Duration, Note),
        w: &mut Wait,
    ) -> ControlFlow<Turn> {
        // Object storage sends no events: look again soon, then less and
        // less often, up to -s; after an error, by the error's pace.
        let timeout = if archive.is_remote() {
            let changed = now.unchanged.is_zero();
            timeout.min(w.pace.after(look.answered(), changed, self.rules.sleep))
        } else {
            timeout
        };
        if now.unchanged.is_zero() && look.seen != Seen::Absent {
            tracing::debug!("waiting for {name}: {}", look.why);
        }
        let this = Some((note, look.state.clone()));
        if note != Note::None && this != w.noted {
            self.log_note(archive, name, note, look.seen, &look.why, now.unchanged);
            w.noted = this;
        }
        if self.waiter.is_none() {
            self.before_the_first_wait(archive, name);
            // Look again at once: a file that landed between the first look
            // and the watch is not missed.
            return ControlFlow::Break(Turn::Again);
        }
        self.waiter().wait(timeout);
        self.phase("woken");
        ControlFlow::Continue(())
    }

    /// The server waits for this segment anyway: clean up the archive now,
    /// not while it replays the segment; say so if the server reads ahead;
    /// set the watch.
    fn before_the_first_wait(&mut self, archive: &Archive, name: SegmentName) {
        let keeping = self.config.restart.is_none() && self.config.keep_files > 0;
        let seg_size = keeping.then(|| archive.segment_size(self.sysid)).flatten();
        self.cleaned = self.clean_archive(archive, name, seg_size);
        // A server that reads WAL ahead asks for segments before it has
        // replayed the one before: say so where the operator looks when
        // recovery stalls.
        if let Some(stall) = crate::check::prefetch_stall(Path::new(".")) {
            tracing::warn!("{stall}");
        }
        self.waiter();
        self.phase("watch set up");
    }

    /// A delivery that did not happen: look again (the source changed),
    /// retry (the copy failed) or end (a shutdown, -r spent).
    fn not_delivered(&mut self, name: SegmentName, delivery: Delivery, failures: &mut u32) -> Turn {
        match self.undelivered(&name.to_string(), delivery, failures) {
            Some(outcome) => Turn::End(outcome),
            None => Turn::Again,
        }
    }

    fn copy_failed(&mut self, error: anyhow::Error, failures: &mut u32) -> Turn {
        match self.after_copy_failure(error, failures) {
            Some(outcome) => Turn::End(outcome),
            None => Turn::Again,
        }
    }

    /// Once the segment is in place: prefetch the next ones, clean up the
    /// archive unless that was done before the wait, trace the phases.
    fn after_restore(
        &mut self,
        archive: &Archive,
        name: SegmentName,
        seg_size: u64,
        compressed: bool,
    ) {
        self.advance_spool(archive, name, seg_size, compressed);
        self.phase("prefetch");
        if !self.cleaned {
            self.clean_archive(archive, name, Some(seg_size));
            self.phase("cleanup handed off");
        }
        self.log_phases();
    }

    fn phase(&mut self, label: &'static str) {
        // Only the last wake-up of a long wait matters.
        if let Some(last) = self.phases.last_mut()
            && last.0 == label
        {
            last.1 = Instant::now();
            return;
        }
        self.phases.push((label, Instant::now()));
    }

    /// `-d`: where the call's time went, in ms since the process started.
    fn log_phases(&self) {
        let start = logging::process_start();
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(label, at)| format!("{label} {:.2}", (*at - start).as_secs_f64() * 1e3))
            .collect();
        tracing::debug!("phases (ms since start): {}", phases.join(", "));
    }

    /// On PostgreSQL 12 and older the server asks for the newest timeline
    /// first, even where that timeline cannot have the segment.
    fn can_never_exist(&self, archive: &Archive, name: SegmentName) -> bool {
        if name.tli <= 1 {
            return false;
        }
        let pg_wal = self.cwd.join("pg_wal");
        let Some(begin) = archive
            .history(name.tli)
            .or_else(|| timeline::find_history(name.tli, &[&pg_wal]))
            .as_deref()
            .and_then(timeline::begin_lsn)
        else {
            return false;
        };
        let Some(seg_size) = archive
            .segment_size(self.sysid)
            .or_else(|| validate::archive_segment_size(&pg_wal, self.sysid))
        else {
            return false;
        };
        timeline::precedes_timeline_start(name, begin, seg_size)
    }

    /// This standby in the archive's registry; `None` where the data
    /// directory tells no cluster (no pg_control).
    fn registration(&self, seg_size: Option<u64>) -> Option<cleanup::Registration> {
        let name = self
            .config
            .standby_name
            .clone()
            .unwrap_or_else(|| crate::archive::registry::default_name(&self.cwd));
        Some(cleanup::Registration {
            me: crate::archive::registry::Me {
                name,
                system_identifier: self.sysid?,
                segment_size: seg_size,
            },
            expiry: self.config.standby_expiry,
            data_directory: self.cwd.clone(),
            metrics_file: self.config.metrics_file.clone(),
        })
    }

    /// Start the removal of what `%r` (or `-k`, which needs the segment
    /// size) no longer keeps: in a process of its own, so that neither our
    /// exit nor the server's replay waits for it.
    /// `false` when there was no cutoff to clean up to.
    fn clean_archive(&self, archive: &Archive, name: SegmentName, seg_size: Option<u64>) -> bool {
        let cutoff = match (self.config.restart, seg_size) {
            (Some(restart), _) => cutoff::cutoff_from_restart(restart, name),
            (None, Some(seg_size)) => {
                cutoff::cutoff_keeping(self.config.keep_files, name, seg_size)
            }
            (None, None) => None,
        };
        let Some(cutoff) = cutoff else { return false };
        let (dry_run, debug) = (self.config.dry_run, self.config.debug);
        let registration = self.registration(seg_size);
        let reg = registration.as_ref();
        if !cleanup::hand_off(&self.config.archive, cutoff, dry_run, debug, reg) {
            cleanup::clean(archive, cutoff, dry_run, reg);
        }
        true
    }

    fn pause(&mut self, length: Duration) -> Option<Outcome> {
        // Set up the wake-ups before the first check, so no signal is missed.
        self.waiter();
        let until = Instant::now() + length;
        loop {
            if let Some(signal) = signals::terminating() {
                return Some(self.shut_down(signal));
            }
            if let Some(signal) = signals::failover_requested() {
                tracing::info!("fast failover ({signal} received): giving up the retries");
                self.report.outcome = CallOutcome::Failover(FailoverKind::Signal);
                return Some(Outcome::NotRestored);
            }
            if self.check_trigger() == Trigger::Fast {
                self.fast_trigger();
                tracing::info!("fast failover: trigger file says \"fast\"; giving up the retries");
                self.report.outcome = CallOutcome::Failover(FailoverKind::Fast);
                return Some(Outcome::NotRestored);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.waiter().wait(left);
        }
    }

    fn killed(&self) -> Outcome {
        self.shut_down(signals::terminating().unwrap_or(libc::SIGTERM))
    }

    fn shut_down(&self, signal: i32) -> Outcome {
        tracing::info!(
            "{}: not restored",
            if signal == libc::SIGTERM {
                "shutdown requested (SIGTERM)"
            } else {
                "immediate shutdown requested (SIGQUIT)"
            }
        );
        Outcome::Killed(signal)
    }

    /// Log an error and turn it into the outcome the server must see. In
    /// standby mode exit 1 only makes the server retry, while a fatal exit
    /// would stop a standby that could still stream.
    fn fatal(&mut self, kind: Fatal, message: impl Display) -> Outcome {
        self.report.outcome = CallOutcome::Error(kind.label());
        let (message, outcome) = if self.mode == RecoveryMode::Standby {
            let message = format!(
                "{message}; answering \"not available\": in standby mode the server retries"
            );
            (message, Outcome::NotRestored)
        } else {
            (message.to_string(), Outcome::Fatal(kind))
        };
        tracing::error!("{}", exit::exit_message(message, outcome, self.legacy));
        outcome
    }
}

const FIX_FILE: &str = "remove or replace the file in the archive, then start the server";

/// What to do about a file in the archive the restore refuses. One that
/// cannot be read for lack of permission is fixed by a chmod or chown,
/// never by removing what may be the only copy.
fn fix_bad_file(path: &Path) -> String {
    if let Some(fix) = crate::sys::access::unreadable_fix(path) {
        return fix;
    }
    format!(
        "remove or replace \"{}\" with the right segment, then start the server (it resumes where it stopped)",
        path.display()
    )
}

/// Size and times of a file: while they stay the same, it is stuck.
fn fingerprint(path: &Path) -> String {
    std::fs::metadata(path)
        .map(|m| format!("{} {}.{}", m.len(), m.mtime(), m.mtime_nsec()))
        .unwrap_or_default()
}

/// How a turn of the wait ends early: look again at once, or end the call.
enum Turn {
    Again,
    End(Outcome),
}

/// What one call's wait for its segment carries from one look to the next.
#[derive(Default)]
struct Wait {
    /// How long what is seen has stayed exactly as it is.
    stuck: Stuck,
    /// The one second look of a failover that found nothing was taken.
    relooked: bool,
    never_exists_checked: bool,
    /// Failed copies, for `-r`.
    failures: u32,
    /// The last note logged: each is logged once per state.
    noted: Option<(Note, String)>,
    /// The verdict on the last compressed file, kept while it stays the
    /// same.
    unpacked: Option<(Identity, Look)>,
    pace: Pace,
}

/// When a look was taken, for the log and the rules.
struct LookedAt {
    /// Waited before the look (what the log reports).
    waited_before: Duration,
    /// Waited including the look (what the rules count).
    waited: Duration,
    /// How long the download took, from object storage.
    downloaded: Option<Duration>,
}

/// How long a not-yet-deliverable state has stayed exactly as it is.
struct Stuck {
    state: Option<(Seen, String)>,
    since: Instant,
}

impl Default for Stuck {
    fn default() -> Self {
        Self {
            state: None,
            since: Instant::now(),
        }
    }
}

impl Stuck {
    fn observe(&mut self, seen: Seen, state: &str) -> Duration {
        let state = Some((seen, state.to_string()));
        if state != self.state {
            self.state = state;
            self.since = Instant::now();
            return Duration::ZERO;
        }
        self.since.elapsed()
    }
}

/// When the next request to object storage may go out: the pace of
/// [`policy::remote_delay`], counted per kind of answer.
#[derive(Default)]
struct Pace {
    last: Option<policy::Answered>,
    /// Answers of this kind in a row, less one.
    n: u32,
    next: Option<Instant>,
}

impl Pace {
    /// After an answer: the pause before the next request. `changed`: the
    /// look saw something new (an absent segment's wait starts again at
    /// 100 ms; a failing store's does not, whatever its message says).
    fn after(&mut self, answered: policy::Answered, changed: bool, sleep: Duration) -> Duration {
        let same_kind = self
            .last
            .is_some_and(|l| std::mem::discriminant(&l) == std::mem::discriminant(&answered));
        let restart = !same_kind || (changed && answered == policy::Answered::Absent);
        self.n = if restart { 0 } else { self.n.saturating_add(1) };
        self.last = Some(answered);
        let pause = policy::remote_delay(answered, self.n, sleep, jitter());
        self.next = Some(Instant::now() + pause);
        pause
    }

    /// How long until the next request, if it must wait: not once a
    /// failover is asked for, or `due` (failing over, or the call's
    /// budget spent): it looks at once, then ends the call.
    fn left(&self, failover: Failover, due: bool) -> Option<Duration> {
        if failover != Failover::None || due {
            return None;
        }
        let left = self.next?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

/// A number in [0, 1) that differs between processes and calls: it keeps
/// standbys that started together from polling a store together. Not for
/// anything secret.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ u64::from(std::process::id()).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    // xorshift64: a few rounds spread the clock's low bits.
    for _ in 0..3 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    (x >> 11) as f64 / (1u64 << 53) as f64
}
