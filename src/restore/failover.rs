//! Who asks for a failover, and since when: the signals, the trigger file,
//! `-w` and the server asking again after recovery ended, read into the
//! session's one failover state, which only escalates. The decisions are
//! in `policy`; this is where the session reads and records them.

use super::*;

/// What asked for the failover under way, for the log and the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    None,
    /// SIGUSR1 or SIGINT.
    Signal(&'static str),
    FastTrigger,
    SmartTrigger,
    /// The server's request after the failover that ended recovery.
    RecoveryEnding,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::None => f.write_str("no failover"),
            Cause::Signal(name) => write!(f, "{name} received"),
            Cause::FastTrigger => f.write_str("trigger file says \"fast\""),
            Cause::SmartTrigger => f.write_str("trigger file found"),
            Cause::RecoveryEnding => f.write_str("recovery is ending"),
        }
    }
}

impl Session {
    /// What gives up a request to object storage in flight: a failover
    /// decided while it runs ([`policy::give_up_request`]). Reads what
    /// [`Self::update_failover`] reads, without acting on it: the loop does
    /// that once the request has ended.
    pub(super) fn request_rule(&self) -> Box<dyn Fn() -> bool> {
        let started_with = if self.failing_over(self.started.elapsed()) {
            self.failover.max(Failover::Smart)
        } else {
            self.failover
        };
        let trigger = self.config.trigger_file.clone();
        let server_start = self.server_start;
        let max_wait_at = self.rules.max_wait.map(|w| self.started + w);
        let decided = std::cell::Cell::new(None::<Instant>);
        Box::new(move || {
            let asked = if signals::failover_requested().is_some() {
                Failover::Fast
            } else {
                let by_trigger = match trigger
                    .as_deref()
                    .map(|p| trigger::read_for(p, server_start))
                {
                    Some(Trigger::Fast) => Failover::Fast,
                    Some(Trigger::Smart) => Failover::Smart,
                    _ => Failover::None,
                };
                let by_max_wait = if max_wait_at.is_some_and(|at| Instant::now() >= at) {
                    Failover::Smart
                } else {
                    Failover::None
                };
                by_trigger.max(by_max_wait)
            };
            if asked == Failover::None {
                return false;
            }
            let since = decided.get().unwrap_or_else(Instant::now);
            decided.set(Some(since));
            policy::give_up_request(started_with, asked, since.elapsed())
        })
    }

    /// A smart failover, or `-w` (a failover for a silent primary).
    pub(super) fn failing_over(&self, waited: Duration) -> bool {
        policy::failing_over(self.failover, self.rules.max_wait, waited)
    }

    /// Read the signals and the trigger file; a failover only escalates.
    pub(super) fn update_failover(&mut self, name: SegmentName) {
        let before = self.failover;
        if let Some(signal) = signals::failover_requested() {
            self.set_failover(Failover::Fast, Cause::Signal(signal));
        }
        if let Some(at) = self.asked_again_after {
            // Not a new failover: the one that ended recovery at `at`.
            if self.failover == Failover::None {
                self.set_failover(Failover::Smart, Cause::RecoveryEnding);
                tracing::info!(
                    "recovery is ending: the server asks again for {name} after the failover at {at} \
                     (it reads the end of WAL once more before it chooses a new timeline); restoring \
                     it if the archive has it"
                );
            }
            return;
        }
        match self.check_trigger() {
            Trigger::Fast => self.fast_trigger(),
            Trigger::Smart => self.set_failover(Failover::Smart, Cause::SmartTrigger),
            _ => {}
        }
        if self.failover == before {
            return;
        }
        if self.mode == RecoveryMode::Standby && !self.standby_trigger_warned {
            self.standby_trigger_warned = true;
            tracing::warn!(
                "{}, but this server runs in standby mode (standby.signal): a failover here only makes \
                 it retry and stream; it does not end recovery. To promote, run \"pg_ctl promote\", or \
                 start a warm standby with recovery.signal instead of standby.signal",
                self.failover_cause
            );
        } else if self.failover == Failover::Smart {
            tracing::info!(
                "smart failover: {}; restoring what the archive still holds, from {name} on",
                self.failover_cause
            );
        }
    }

    /// The one place a fast trigger is acted on: the call fails over fast
    /// from now on, whatever the file says later, and the file becomes a
    /// smart trigger for the calls that follow.
    pub(super) fn fast_trigger(&mut self) {
        self.set_failover(Failover::Fast, Cause::FastTrigger);
        if let Some(path) = self.config.trigger_file.as_deref() {
            trigger::disarm_fast(path);
        }
    }

    pub(super) fn set_failover(&mut self, to: Failover, cause: Cause) {
        if to > self.failover {
            self.failover = to;
            self.failover_cause = cause;
            self.failover_seen.get_or_insert_with(Instant::now);
        }
    }

    /// Read the trigger file, warning once per new unusable state (a
    /// stale one is an error: it looks like a request and is not taken).
    pub(super) fn check_trigger(&mut self) -> Trigger {
        let Some(path) = self.config.trigger_file.as_deref() else {
            return Trigger::Absent;
        };
        let trigger = trigger::read_for(path, self.server_start);
        let note = match &trigger {
            // Keyed by how much it predates the start, not by its growing age.
            Trigger::Stale(stale) => Some(format!("stale {:?}", stale.before_start)),
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
            match &trigger {
                Trigger::Stale(stale) => tracing::error!(
                    "trigger file \"{}\" is {} old, {} older than this server's start: taken as left \
                     over from an earlier failover, not failing over; still waiting. Remove it; to fail \
                     over now, touch it (touch \"{}\")",
                    path.display(),
                    logging::human_duration(stale.age),
                    logging::human_duration(stale.before_start),
                    path.display()
                ),
                _ => tracing::warn!("{}", note.as_deref().unwrap_or_default()),
            }
        }
        self.last_trigger_note = note;
        trigger
    }
}
