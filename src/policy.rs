//! What to do next while waiting for a segment, given what was just seen.
//!
//! Pure: the session looks at the archive, the trigger file and the clock,
//! this module decides, the session acts and logs. Every waiting path goes
//! through [`next_step`], so a fault class is handled once for all of them.

use std::time::Duration;

use crate::exit::Fatal;

/// The limits of one call, from the command line and the recovery mode.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `-s`: the polling floor, and how long a file in flight may stay
    /// unchanged before a failover stops waiting for it.
    pub sleep: Duration,
    /// `-w`: a failover for a primary that went silent.
    pub max_wait: Option<Duration>,
    /// How long this call may wait at all (`Some(ZERO)`: answer at once,
    /// as in standby mode or for pg_rewind); `None` waits until failover.
    pub budget: Option<Duration>,
    /// How long an invalid file may stay unchanged before we stop.
    pub bad_file_timeout: Duration,
}

/// A failover someone asked for. Once smart, a call stays smart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failover {
    None,
    /// Trigger file empty or "smart": restore what the archive holds.
    Smart,
    /// Trigger file "fast", SIGUSR1 or SIGINT: end recovery now.
    Fast,
}

/// The requested segment's state in the archive, when it is not ready to
/// deliver (a ready one goes to [`ready_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Absent,
    /// Absent under its name, but a file that will become it is being
    /// written under another (`%f.tmp`, rsync's `.%f.XXXXXX`).
    InFlight,
    /// Present and shorter than a segment: still being written, we assume.
    Incomplete,
    /// Present and never deliverable as it is: foreign, corrupt, oversized,
    /// unreadable, not a regular file.
    Bad(Fatal),
    /// The archive directory itself is gone or was unmounted.
    ArchiveGone,
    /// On a timeline that begins after this segment: it can never exist.
    NeverExists,
}

#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub seen: Seen,
    /// How long the file (or in-flight file) has stayed exactly as it is.
    pub unchanged: Duration,
    /// How long this call has waited so far.
    pub waited: Duration,
    pub failover: Failover,
}

/// What to do about a segment that is not ready to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Wait { timeout: Duration, note: Note },
    NotRestored(Reason),
    Fatal(Fatal, Reason),
}

/// Why a call ends without the file: one log line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    FastFailover,
    /// Smart failover and nothing of the segment in the archive.
    SmartFailoverNothingLeft,
    /// Smart failover or `-w`, and the file in flight stopped changing.
    FailoverPastStalledFile,
    MaxWait,
    /// The call's budget ran out (standby mode, pg_rewind).
    NotThere,
    NeverExists,
    /// A bad file, at once (no budget to wait in).
    BadFile,
    /// A bad file, unchanged for the bad-file timeout.
    BadFileUnchanged,
    /// A bad file, and a failover or `-w` would skip past it.
    BadFileNoFailoverPastIt,
    /// The archive is gone, and a failover or `-w` would skip past
    /// whatever it holds.
    ArchiveGoneNoFailover,
}

/// Something worth a log line while waiting on; the session logs it once
/// per state of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    None,
    /// A bad file: waiting for a valid copy.
    BadFile,
    /// Incomplete and unchanged for the bad-file timeout.
    Stalled,
    ArchiveGone,
}

/// How often to look for an archive that went away: a mount fires no
/// file event, and the operator wants it seen at once when it is back.
pub const ARCHIVE_GONE_POLL: Duration = Duration::from_millis(100);

/// What object storage answered the last look, for pacing the next
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The segment is not there (yet), or something changed: the normal
    /// wait for the primary.
    Absent,
    /// The store failed, throttled or could not be reached; `retry_after`
    /// is what it asked for, if it did.
    Unavailable { retry_after: Option<Duration> },
}

/// The first look again after the store failed: a second, not the 100 ms
/// of an absent segment, so a fleet of standbys does not add to a store's
/// trouble.
pub const ERROR_FIRST_RETRY: Duration = Duration::from_secs(1);

/// The longest pause between requests while the store keeps failing
/// (unless `-s` is longer): an outage ends, and the standby should see it
/// end within half a minute.
pub const ERROR_MAX_RETRY: Duration = Duration::from_secs(30);

/// How much of a pause is drawn at random: each pause is between 80 % and
/// 100 % of its nominal length, so standbys that started together do not
/// poll together. Never longer than nominal: the README's request rates
/// are ceilings.
pub const JITTER: f64 = 0.2;

/// Looks 100 ms apart at the start of a wait for an absent segment (two
/// seconds of them): the server asks for the next segment right after
/// restoring one, so a segment from a primary that keeps the archive busy
/// is due now, and a look every 100 ms sees it as soon as a loop polling
/// without pause would. A wait that outlasts them is idle: the pace
/// slows down to `-s`.
pub const DUE_LOOKS: u32 = 20;

/// The pace of looks for an absent segment, while due and after.
pub const ABSENT_POLL: Duration = Duration::from_millis(100);

/// How long to wait before the next request to object storage, after `n`
/// answers in a row of this kind (from 0). Absent: 100 ms for the first
/// [`DUE_LOOKS`], then 100 ms again growing by half each time, up to `-s`.
/// Unavailable: 1 s, doubling, up to
/// [`ERROR_MAX_RETRY`] or `-s` if longer, and never sooner than the
/// store's `Retry-After`. `jitter` (in [0, 1)) is drawn by the caller.
/// The trigger file, signals and `-w` are looked at every 100 ms during
/// the pause whatever it is.
pub fn remote_delay(answered: Answered, n: u32, sleep: Duration, jitter: f64) -> Duration {
    let nominal = match answered {
        Answered::Absent => backoff(ABSENT_POLL, n.saturating_sub(DUE_LOOKS), sleep),
        Answered::Unavailable { .. } => {
            let factor = 2u32.saturating_pow(n.min(31));
            ERROR_FIRST_RETRY
                .saturating_mul(factor)
                .min(ERROR_MAX_RETRY.max(sleep))
        }
    };
    let paced = nominal.mul_f64(1.0 - JITTER * jitter.clamp(0.0, 1.0));
    match answered {
        Answered::Unavailable {
            retry_after: Some(asked),
        } => paced.max(asked),
        _ => paced,
    }
}

/// The pause before the `n`th retry (from 0) of a back-off: `first`, then
/// half as long again each time, never more than `max`.
pub fn backoff(first: Duration, n: u32, max: Duration) -> Duration {
    // Past 1.5^60 any pause here is far over any max; the cap keeps the
    // arithmetic finite.
    let factor = 1.5f64.powi(n.min(60) as i32);
    Duration::try_from_secs_f64(first.as_secs_f64() * factor).map_or(max, |d| d.min(max))
}

/// How long a request to object storage already in flight may go on once a
/// smart failover or `-w` is decided: what finishes within it is
/// delivered, what does not ends the call (exit 250, as for a store that
/// cannot be reached).
pub const FAILOVER_GRACE: Duration = Duration::from_secs(1);

/// Whether to give up a request in flight: the call started it with
/// `started_with`, and now `now` is asked for, since `decided_for`. A fast
/// failover ends it at once; a smart one or `-w` after
/// [`FAILOVER_GRACE`]. A request started while already failing over runs
/// its course: that is the failover restoring what the archive holds.
pub fn give_up_request(started_with: Failover, now: Failover, decided_for: Duration) -> bool {
    if now <= started_with {
        return false;
    }
    match now {
        Failover::Fast => true,
        Failover::Smart => decided_for >= FAILOVER_GRACE,
        Failover::None => false,
    }
}

/// Whether a call is failing over, smart or by `-w`: a silent primary is a
/// failover like the trigger's, which finishes what is in flight and never
/// skips past what it cannot read. A fast failover is decided before this.
pub fn failing_over(failover: Failover, max_wait: Option<Duration>, waited: Duration) -> bool {
    failover == Failover::Smart || max_wait.is_some_and(|w| waited >= w)
}

/// What to do about a segment found ready: deliver it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyStep {
    Deliver,
    NotRestored(Reason),
}

/// A segment found ready is delivered, under a smart failover too (it is
/// what the archive still holds); a fast failover ends recovery without it.
pub fn ready_step(failover: Failover) -> ReadyStep {
    match failover {
        Failover::Fast => ReadyStep::NotRestored(Reason::FastFailover),
        Failover::None | Failover::Smart => ReadyStep::Deliver,
    }
}

pub fn next_step(rules: &Rules, now: &Observation) -> Step {
    if now.failover == Failover::Fast {
        return Step::NotRestored(Reason::FastFailover);
    }
    let at_once = rules.budget == Some(Duration::ZERO);
    let max_wait_over = rules.max_wait.is_some_and(|w| now.waited >= w);
    let budget_over = rules.budget.is_some_and(|b| now.waited >= b);
    let failing_over = failing_over(now.failover, rules.max_wait, now.waited);
    let wait = |note| Step::Wait {
        timeout: wait_timeout(rules, now, failing_over),
        note,
    };
    match now.seen {
        Seen::NeverExists => Step::NotRestored(Reason::NeverExists),
        Seen::Bad(kind) if at_once => Step::Fatal(kind, Reason::BadFile),
        Seen::Bad(kind) if now.unchanged >= rules.bad_file_timeout => {
            Step::Fatal(kind, Reason::BadFileUnchanged)
        }
        Seen::Bad(kind) if max_wait_over || budget_over => {
            Step::Fatal(kind, Reason::BadFileNoFailoverPastIt)
        }
        Seen::Bad(_) => wait(Note::BadFile),
        Seen::ArchiveGone if at_once || failing_over || budget_over => {
            Step::Fatal(Fatal::Archive, Reason::ArchiveGoneNoFailover)
        }
        Seen::ArchiveGone => Step::Wait {
            timeout: ARCHIVE_GONE_POLL.min(wait_timeout(rules, now, failing_over)),
            note: Note::ArchiveGone,
        },
        Seen::Incomplete | Seen::InFlight if at_once => Step::NotRestored(Reason::NotThere),
        Seen::Incomplete | Seen::InFlight if failing_over && now.unchanged >= rules.sleep => {
            Step::NotRestored(Reason::FailoverPastStalledFile)
        }
        Seen::Incomplete | Seen::InFlight if budget_over => Step::NotRestored(Reason::NotThere),
        Seen::Incomplete | Seen::InFlight if now.unchanged >= rules.bad_file_timeout => {
            wait(Note::Stalled)
        }
        Seen::Incomplete | Seen::InFlight => wait(Note::None),
        Seen::Absent if now.failover == Failover::Smart => {
            Step::NotRestored(Reason::SmartFailoverNothingLeft)
        }
        Seen::Absent if max_wait_over => Step::NotRestored(Reason::MaxWait),
        Seen::Absent if budget_over => Step::NotRestored(Reason::NotThere),
        Seen::Absent => wait(Note::None),
    }
}

/// Sleep until the next deadline that could change the answer, at most
/// `-s` (the polling floor for archives that send no events).
fn wait_timeout(rules: &Rules, now: &Observation, failing_over: bool) -> Duration {
    let stalled_by = match now.seen {
        Seen::Bad(_) => Some(rules.bad_file_timeout),
        Seen::Incomplete | Seen::InFlight if failing_over => Some(rules.sleep),
        _ => None,
    }
    .map(|limit| limit.saturating_sub(now.unchanged));
    let waited_by = [rules.max_wait, rules.budget]
        .into_iter()
        .flatten()
        .map(|limit| limit.saturating_sub(now.waited));
    waited_by
        .chain(stalled_by)
        .fold(rules.sleep, Duration::min)
        // Never spin on a deadline that has just passed.
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn rules() -> Rules {
        Rules {
            sleep: 5 * S,
            max_wait: None,
            budget: None,
            bad_file_timeout: 60 * S,
        }
    }

    fn seen(seen: Seen) -> Observation {
        Observation {
            seen,
            unchanged: Duration::ZERO,
            waited: Duration::ZERO,
            failover: Failover::None,
        }
    }

    fn waits(step: Step) -> bool {
        matches!(step, Step::Wait { .. })
    }

    type Row = (&'static str, Rules, Observation, fn(Step) -> bool);

    /// One row per line of docs/safety.md that the waiting logic decides.
    #[test]
    fn who_is_failing_over() {
        let s = Duration::from_secs;
        // (failover, -w, waited, failing over?)
        let table = [
            (Failover::None, None, s(1000), false),
            (Failover::Smart, None, s(0), true),
            (Failover::None, Some(s(10)), s(9), false),
            (Failover::None, Some(s(10)), s(10), true),
            (Failover::Smart, Some(s(10)), s(0), true),
        ];
        for (failover, max_wait, waited, want) in table {
            assert_eq!(
                failing_over(failover, max_wait, waited),
                want,
                "{failover:?} {max_wait:?} {waited:?}"
            );
        }
    }

    #[test]
    fn a_ready_segment_is_delivered_unless_a_fast_failover_ends_recovery() {
        let table = [
            (Failover::None, ReadyStep::Deliver),
            (Failover::Smart, ReadyStep::Deliver),
            (Failover::Fast, ReadyStep::NotRestored(Reason::FastFailover)),
        ];
        for (failover, want) in table {
            assert_eq!(ready_step(failover), want, "{failover:?}");
        }
    }

    #[test]
    fn decision_table() {
        let w = |secs| Some(secs * S);
        let bad = Seen::Bad(Fatal::BadSegment);
        let smart = Failover::Smart;
        let fast = Failover::Fast;
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("absent: wait", rules(), seen(Seen::Absent), waits),
            ("absent under smart failover: recovery ends", rules(),
                Observation { failover: smart, ..seen(Seen::Absent) },
                |s| s == Step::NotRestored(Reason::SmartFailoverNothingLeft)),
            ("absent after -w: recovery ends", Rules { max_wait: w(10), ..rules() },
                Observation { waited: 10 * S, ..seen(Seen::Absent) },
                |s| s == Step::NotRestored(Reason::MaxWait)),
            ("absent in standby mode: answered at once", Rules { budget: w(0), ..rules() },
                seen(Seen::Absent),
                |s| s == Step::NotRestored(Reason::NotThere)),
            ("never exists", rules(), seen(Seen::NeverExists),
                |s| s == Step::NotRestored(Reason::NeverExists)),
            ("incomplete: wait", rules(),
                Observation { unchanged: 30 * S, ..seen(Seen::Incomplete) }, waits),
            ("incomplete for the bad-file timeout: still wait, warn", rules(),
                Observation { unchanged: 60 * S, ..seen(Seen::Incomplete) },
                |s| matches!(s, Step::Wait { note: Note::Stalled, .. })),
            ("incomplete at once (pg_rewind): not there", Rules { budget: w(0), ..rules() },
                seen(Seen::Incomplete),
                |s| s == Step::NotRestored(Reason::NotThere)),
            ("incomplete and growing under smart failover: wait", rules(),
                Observation { failover: smart, unchanged: 4 * S, ..seen(Seen::Incomplete) },
                waits),
            ("incomplete and stalled under smart failover: recovery ends", rules(),
                Observation { failover: smart, unchanged: 5 * S, ..seen(Seen::Incomplete) },
                |s| s == Step::NotRestored(Reason::FailoverPastStalledFile)),
            ("-w expired while the segment grows: wait for it", Rules { max_wait: w(10), ..rules() },
                Observation { waited: 11 * S, unchanged: S, ..seen(Seen::Incomplete) },
                waits),
            ("-w expired and the segment stalled: recovery ends", Rules { max_wait: w(10), ..rules() },
                Observation { waited: 20 * S, unchanged: 5 * S, ..seen(Seen::Incomplete) },
                |s| s == Step::NotRestored(Reason::FailoverPastStalledFile)),
            ("in flight under a temporary name, smart failover: wait", rules(),
                Observation { failover: smart, ..seen(Seen::InFlight) }, waits),
            ("in flight and stalled, smart failover: recovery ends", rules(),
                Observation { failover: smart, unchanged: 6 * S, ..seen(Seen::InFlight) },
                |s| s == Step::NotRestored(Reason::FailoverPastStalledFile)),
            ("in flight when -w expires: wait", Rules { max_wait: w(10), ..rules() },
                Observation { waited: 10 * S, ..seen(Seen::InFlight) }, waits),
            ("bad file: wait for a valid copy, warn", rules(), seen(bad),
                |s| matches!(s, Step::Wait { note: Note::BadFile, .. })),
            ("bad file unchanged for the timeout: fatal", rules(),
                Observation { unchanged: 60 * S, ..seen(bad) },
                |s| s == Step::Fatal(Fatal::BadSegment, Reason::BadFileUnchanged)),
            ("bad file at once: fatal", Rules { budget: w(0), ..rules() }, seen(bad),
                |s| s == Step::Fatal(Fatal::BadSegment, Reason::BadFile)),
            ("bad file when -w expires: no failover past it", Rules { max_wait: w(10), ..rules() },
                Observation { waited: 10 * S, ..seen(bad) },
                |s| s == Step::Fatal(Fatal::BadSegment, Reason::BadFileNoFailoverPastIt)),
            ("bad file under smart failover: keep waiting for a valid copy", rules(),
                Observation { failover: smart, unchanged: 30 * S, ..seen(bad) }, waits),
            ("bad file under fast failover: recovery ends as asked", rules(),
                Observation { failover: fast, ..seen(bad) },
                |s| s == Step::NotRestored(Reason::FastFailover)),
            ("archive gone: wait, warn, poll quickly", rules(), seen(Seen::ArchiveGone),
                |s| s == Step::Wait { timeout: ARCHIVE_GONE_POLL, note: Note::ArchiveGone }),
            ("archive gone under smart failover: never a promotion", rules(),
                Observation { failover: smart, ..seen(Seen::ArchiveGone) },
                |s| s == Step::Fatal(Fatal::Archive, Reason::ArchiveGoneNoFailover)),
            ("archive gone when -w expires: never a promotion", Rules { max_wait: w(10), ..rules() },
                Observation { waited: 10 * S, ..seen(Seen::ArchiveGone) },
                |s| s == Step::Fatal(Fatal::Archive, Reason::ArchiveGoneNoFailover)),
        ];
        for (what, rules, now, expected) in rows {
            let step = next_step(&rules, &now);
            assert!(expected(step), "{what}: got {step:?}");
        }
    }

    #[test]
    fn waits_until_the_nearest_deadline_at_most_the_polling_floor() {
        let timeout = |rules: Rules, now: Observation| match next_step(&rules, &now) {
            Step::Wait { timeout, .. } => timeout,
            other => panic!("{other:?}"),
        };
        assert_eq!(timeout(rules(), seen(Seen::Absent)), 5 * S);
        let r = Rules {
            max_wait: Some(10 * S),
            ..rules()
        };
        let now = Observation {
            waited: 8 * S,
            ..seen(Seen::Absent)
        };
        assert_eq!(timeout(r, now), 2 * S);
        let now = Observation {
            unchanged: 59 * S,
            ..seen(Seen::Bad(Fatal::Io))
        };
        assert_eq!(timeout(rules(), now), S);
        let now = Observation {
            failover: Failover::Smart,
            unchanged: 4 * S + Duration::from_millis(500),
            ..seen(Seen::InFlight)
        };
        assert_eq!(timeout(rules(), now), Duration::from_millis(500));
    }

    #[test]
    fn backoff_grows_by_half_up_to_its_maximum() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let table = [
            // first, n, max, pause
            (ms(100), 0, s(10), ms(100)),
            (ms(100), 1, s(10), ms(150)),
            (ms(100), 2, s(10), ms(225)),
            (ms(50), 4, s(1), Duration::from_micros(253_125)),
            (ms(50), 8, s(1), s(1)),
            (ms(50), u32::MAX, s(1), s(1)),
            (s(1), 0, ms(500), ms(500)),
            (Duration::MAX, 3, s(1), s(1)),
            (Duration::ZERO, 5, s(1), Duration::ZERO),
        ];
        for (first, n, max, pause) in table {
            assert_eq!(backoff(first, n, max), pause, "{first:?} {n} {max:?}");
        }
    }

    #[test]
    fn remote_requests_are_paced_by_what_the_store_answered() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let absent = Answered::Absent;
        let failed = Answered::Unavailable { retry_after: None };
        let asked = |secs| Answered::Unavailable {
            retry_after: Some(s(secs)),
        };
        let table = [
            // answer, n in a row, -s, jitter, pause
            // Due: 100 ms apart for the first twenty looks.
            (absent, 0, s(5), 0.0, ms(100)),
            (absent, 1, s(5), 0.0, ms(100)),
            (absent, 19, s(5), 0.0, ms(100)),
            // Then idle: growing by half each time, up to -s.
            (absent, 20, s(5), 0.0, ms(100)),
            (absent, 21, s(5), 0.0, ms(150)),
            (absent, 40, s(5), 0.0, s(5)),
            (absent, u32::MAX, s(5), 0.0, s(5)),
            // -s shorter than the pace: -s.
            (absent, 0, ms(50), 0.0, ms(50)),
            // Jitter only shortens, by a fifth at most.
            (absent, 0, s(5), 0.5, ms(90)),
            (absent, 40, s(5), 1.0, s(4)),
            (failed, 0, s(5), 0.0, s(1)),
            (failed, 1, s(5), 0.0, s(2)),
            (failed, 4, s(5), 0.0, s(16)),
            (failed, 5, s(5), 0.0, s(30)),
            (failed, u32::MAX, s(5), 0.0, s(30)),
            (failed, 0, s(5), 1.0, ms(800)),
            // -s longer than the error ceiling: errors never poll faster
            // than an absent segment does.
            (failed, 10, s(60), 0.0, s(60)),
            // Retry-After is a floor, jitter or not.
            (asked(3), 0, s(5), 1.0, s(3)),
            (asked(3), 3, s(5), 0.0, s(8)),
            (asked(0), 0, s(5), 0.0, s(1)),
            // Out-of-range jitter is clamped.
            (failed, 0, s(5), 7.0, ms(800)),
            (failed, 0, s(5), -1.0, s(1)),
        ];
        for (answered, n, sleep, jitter, pause) in table {
            assert_eq!(
                remote_delay(answered, n, sleep, jitter),
                pause,
                "{answered:?} {n} {sleep:?} {jitter}"
            );
        }
    }

    /// The times of the requests of one wait within `secs` of its start,
    /// every answer `answered`, at -s `sleep`.
    fn schedule(answered: Answered, sleep: Duration, jitter: f64, secs: u64) -> Vec<Duration> {
        let mut at = Duration::ZERO;
        let mut requests = Vec::new();
        for n in 0.. {
            if at >= Duration::from_secs(secs) {
                break;
            }
            requests.push(at);
            at += remote_delay(answered, n, sleep, jitter);
        }
        requests
    }

    #[test]
    fn idle_waits_keep_the_documented_request_rate() {
        // docs/guide.md: waiting at -s 5 for a segment that does not come,
        // the first 21 requests at most 100 ms apart, at most 45 in the
        // first minute, then 15 a minute (12 without jitter), whatever the
        // jitter.
        let s5 = Duration::from_secs(5);
        for jitter in [0.0, 0.5, 0.999] {
            let minute = schedule(Answered::Absent, s5, jitter, 60);
            assert!(minute.len() <= 45, "{jitter}: {minute:?}");
            assert!(
                minute
                    .windows(2)
                    .take(DUE_LOOKS as usize)
                    .all(|w| w[1] - w[0] <= ABSENT_POLL),
                "{jitter}: {minute:?}"
            );
            let hour = schedule(Answered::Absent, s5, jitter, 3600);
            let last_minute = hour
                .iter()
                .filter(|t| **t >= Duration::from_secs(3540))
                .count();
            assert!(last_minute <= 15, "{jitter}: {last_minute}");
        }
        let steady = schedule(Answered::Absent, s5, 0.0, 3600);
        let last_minute = steady
            .iter()
            .filter(|t| **t >= Duration::from_secs(3540))
            .count();
        assert_eq!(last_minute, 12);
    }

    #[test]
    fn error_periods_keep_the_documented_request_rate() {
        // docs/guide.md: while a store fails, at most 3 requests in its
        // first 4 s and 7 in its first minute, whatever the jitter.
        for jitter in [0.0, 0.5, 0.999] {
            let mut at = Duration::ZERO;
            let mut requests = Vec::new();
            for n in 0.. {
                requests.push(at);
                at += remote_delay(Answered::Unavailable { retry_after: None }, n, S, jitter);
                if at > Duration::from_secs(60) {
                    break;
                }
            }
            let within = |secs| {
                requests
                    .iter()
                    .filter(|t| **t < Duration::from_secs(secs))
                    .count()
            };
            assert!(within(4) <= 3, "{jitter}: {requests:?}");
            assert!(within(60) <= 7, "{jitter}: {requests:?}");
        }
    }

    #[test]
    fn requests_in_flight_are_given_up_for_a_failover_decided_meanwhile() {
        let (none, smart, fast) = (Failover::None, Failover::Smart, Failover::Fast);
        let ms = Duration::from_millis;
        let table = [
            // started with, now, decided for, given up
            (none, none, ms(0), false),
            (none, fast, ms(0), true),
            (none, smart, ms(0), false),
            (none, smart, ms(999), false),
            (none, smart, ms(1000), true),
            // Started while failing over: the failover's own restore.
            (smart, smart, ms(5000), false),
            (smart, fast, ms(0), true),
            (fast, fast, ms(0), false),
        ];
        for (started_with, now, decided_for, given_up) in table {
            assert_eq!(
                give_up_request(started_with, now, decided_for),
                given_up,
                "{started_with:?} {now:?} {decided_for:?}"
            );
        }
    }

    #[test]
    fn failover_only_escalates() {
        assert!(Failover::None < Failover::Smart && Failover::Smart < Failover::Fast);
        assert_eq!(Failover::Smart.max(Failover::None), Failover::Smart);
    }
}
