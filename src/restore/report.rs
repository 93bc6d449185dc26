//! What a call says about its outcome: the log lines and the metrics.

use super::*;

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn log_restored(
        &self,
        archive: &Archive,
        name: SegmentName,
        len: u64,
        accepted: Accepted,
        waited: Duration,
        (copy, downloaded): (Duration, Option<Duration>),
        from: Option<(String, u64)>,
    ) {
        if accepted.major.is_none() {
            tracing::warn!(
                "{name} has a WAL page magic no PostgreSQL 10-18 uses; restored because every other header field checks out"
            );
        }
        // Object storage: where the segment came from, in full.
        let place = |file_name: &str| {
            if archive.is_remote() {
                archive.path_of(file_name).display().to_string()
            } else {
                file_name.to_string()
            }
        };
        let (source, verb) = match from {
            Some((file_name, compressed)) => (
                format!(
                    " from {} ({}, {})",
                    place(&file_name),
                    size(compressed),
                    ratio(len, compressed)
                ),
                "decompressed",
            ),
            None if archive.is_remote() => {
                (format!(" from {}", place(&name.to_string())), "copied")
            }
            None => (String::new(), "copied"),
        };
        // A download is part of the look, not of the wait: say how long
        // it took, so a slow store shows as slow, not as a quick copy.
        let fetched = downloaded.map_or(String::new(), |d| {
            format!("downloaded and checked in {:.3} s, ", d.as_secs_f64())
        });
        tracing::info!(
            "restored {name}{source} after waiting {:.3} s ({fetched}{} {verb} in {:.3} s)",
            waited.as_secs_f64(),
            size(len),
            copy.as_secs_f64(),
        );
    }

    pub(super) fn note_restored(
        &mut self,
        name: SegmentName,
        len: u64,
        seg_size: u64,
        copy: Duration,
    ) {
        self.report.bytes = len;
        self.seg_size = Some(seg_size);
        self.report.copy_seconds = copy.as_secs_f64();
        self.report.restored = name.start_lsn(seg_size).map(|lsn| (lsn, name.tli));
    }

    pub(super) fn log_note(
        &self,
        archive: &Archive,
        name: SegmentName,
        note: Note,
        seen: Seen,
        why: &str,
        unchanged: Duration,
    ) {
        match note {
            Note::None => {}
            Note::BadFile if seen == Seen::Bad(Fatal::Archive) => tracing::warn!(
                "not restoring {name}: {why}; downloading it again for up to {} s ({CHANGED_FIX})",
                self.rules.bad_file_timeout.as_secs(),
            ),
            Note::BadFile => tracing::warn!(
                "not restoring {name}: {why}; waiting up to {} s for a valid copy ({})",
                self.rules.bad_file_timeout.as_secs(),
                crate::sys::access::unreadable_fix(&archive.path_of(&name.to_string()))
                    .unwrap_or_else(|| "replace the file in the archive".into())
            ),
            Note::Stalled => tracing::warn!(
                "{name} has stayed incomplete for {} s: {why}; still waiting (did the archive_command die mid-copy? \
                 the trigger file fails over)",
                unchanged.as_secs()
            ),
            Note::ArchiveGone if archive.is_remote() => tracing::warn!(
                "archive location \"{}\" cannot be reached ({why}); still waiting, and a failover \
                 will not skip past it",
                archive.dir().display()
            ),
            Note::ArchiveGone => tracing::warn!(
                "archive location \"{}\" is gone ({why}): unmounted or renamed? waiting for it to come back; \
                 a failover will not skip past it",
                archive.dir().display()
            ),
        }
    }

    pub(super) fn log_not_restored(
        &self,
        name: SegmentName,
        reason: Reason,
        why: &str,
        waited: Duration,
        unchanged: Duration,
    ) {
        let ends = if self.mode == RecoveryMode::Standby {
            "in standby mode the server retries"
        } else {
            "recovery ends"
        };
        let timing = self.failover_timing(waited);
        match reason {
            Reason::FastFailover => tracing::info!(
                "fast failover ({}): not restoring {name}; {ends}{timing}",
                self.failover_cause
            ),
            Reason::SmartFailoverNothingLeft => {
                tracing::info!("smart failover: {name} is not in the archive; {ends}{timing}")
            }
            Reason::FailoverPastStalledFile => tracing::warn!(
                "{}: {name} is in the archive but not restored: {why}, unchanged for {} s; {ends}{timing}",
                if self.failover == Failover::Smart {
                    "smart failover"
                } else {
                    "-w expired"
                },
                unchanged.as_secs()
            ),
            Reason::MaxWait => tracing::info!(
                "failover after -w: waited {} s for {name}, which is not in the archive (-w {}); {ends}",
                waited.as_secs(),
                self.rules.max_wait.unwrap_or_default().as_secs()
            ),
            Reason::NotThere if self.mode == RecoveryMode::Standby => {
                tracing::debug!("{name}: {why}; standby mode: the server retries or streams")
            }
            Reason::NotThere => tracing::info!("not restored: {name}: {why}"),
            Reason::NeverExists => tracing::info!(
                "not restored: {name} can never exist: its timeline {} begins after this segment",
                name.tli
            ),
            _ => tracing::info!("not restored: {name}"),
        }
    }

    pub(super) fn outcome_of(&self, reason: Reason) -> CallOutcome {
        let failover = |kind| CallOutcome::Failover(kind);
        match reason {
            Reason::FastFailover if matches!(self.failover_cause, Cause::Signal(_)) => {
                failover(FailoverKind::Signal)
            }
            Reason::FastFailover => failover(FailoverKind::Fast),
            _ if self.mode == RecoveryMode::Standby => CallOutcome::NotAvailable,
            Reason::SmartFailoverNothingLeft => failover(FailoverKind::Smart),
            Reason::FailoverPastStalledFile if self.failover == Failover::Smart => {
                failover(FailoverKind::Smart)
            }
            Reason::FailoverPastStalledFile | Reason::MaxWait => failover(FailoverKind::MaxWait),
            _ => CallOutcome::NotAvailable,
        }
    }

    /// How long the call waited, and how long the failover itself took.
    pub(super) fn failover_timing(&self, waited: Duration) -> String {
        match self.failover_seen {
            Some(seen) => format!(
                " (this call waited {:.3} s; the failover took {:.0} ms)",
                waited.as_secs_f64(),
                seen.elapsed().as_secs_f64() * 1000.0
            ),
            None => String::new(),
        }
    }

    pub(super) fn fatal_message(
        &self,
        archive: &Archive,
        name: SegmentName,
        reason: Reason,
        why: &str,
        now: &Observation,
    ) -> String {
        let path = archive.path_of(&name.to_string());
        // Changed on the way from object storage: the object may be the
        // only copy of that WAL, and is most likely intact.
        if now.seen == Seen::Bad(Fatal::Archive)
            && matches!(
                reason,
                Reason::BadFile | Reason::BadFileUnchanged | Reason::BadFileNoFailoverPastIt
            )
        {
            return format!(
                "not restoring {name}: {why}, unchanged for {} s; not failing over past it; \
                 {CHANGED_FIX}, then start the server",
                now.unchanged.as_secs()
            );
        }
        match reason {
            Reason::BadFileUnchanged => format!(
                "not restoring {name}: {why}, unchanged for {} s; {}",
                now.unchanged.as_secs(),
                fix_bad_file(&path)
            ),
            Reason::BadFileNoFailoverPastIt => format!(
                "not restoring {name}: {why}; not failing over past it; {}",
                fix_bad_file(&path)
            ),
            Reason::ArchiveGoneNoFailover
                if archive.is_remote()
                    && why == crate::archive::store::Error::Abandoned.to_string() =>
            {
                format!(
                    "a request to archive location \"{}\" was still under way {} s after the \
                     failover was asked for ({why}); not failing over past what it may hold: \
                     start the server and repeat the failover (a failover asked for before a \
                     request lets it run its course), or fail over fast to end recovery without \
                     it",
                    archive.dir().display(),
                    policy::FAILOVER_GRACE.as_secs()
                )
            }
            Reason::ArchiveGoneNoFailover if archive.is_remote() => format!(
                "archive location \"{}\" cannot be reached ({why}); not failing over past what it \
                 may hold: check the store's status, the network and the endpoint, then start the \
                 server",
                archive.dir().display()
            ),
            Reason::ArchiveGoneNoFailover => format!(
                "archive location \"{}\" is gone ({why}); not failing over without it: \
                 mount it again or fix the path, then start the server",
                archive.dir().display()
            ),
            _ => format!("not restoring {name}: {why}; {}", fix_bad_file(&path)),
        }
    }
}

/// What to do about a body that does not match its object's checksum.
const CHANGED_FIX: &str = "the object in the archive is most likely intact: do not remove it; check \
                           what lies between the standby and the store (a proxy, TLS inspection, \
                           a plain-http endpoint, the network card)";

/// A size for the log: "512 bytes", "16.4 KiB", "16 MiB", "15.9 MiB".
pub(super) fn size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    match bytes {
        0..KIB => format!("{bytes} bytes"),
        KIB..MIB => format!("{:.1} KiB", bytes as f64 / KIB as f64),
        _ if bytes.is_multiple_of(MIB) => format!("{} MiB", bytes / MIB),
        _ => format!("{:.1} MiB", bytes as f64 / MIB as f64),
    }
}

/// A compression ratio for the log: "3.2:1", "1015:1".
pub(super) fn ratio(plain: u64, compressed: u64) -> String {
    let r = plain as f64 / compressed.max(1) as f64;
    if r < 10.0 {
        format!("{r:.1}:1")
    } else {
        format!("{r:.0}:1")
    }
}

#[cfg(test)]
mod tests {
    use super::{ratio, size};

    #[test]
    fn sizes_and_ratios_read_well_at_every_scale() {
        let table = [
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (16_800, "16.4 KiB"),
            (1 << 20, "1 MiB"),
            (16 << 20, "16 MiB"),
            (5_500_000, "5.2 MiB"),
        ];
        for (bytes, want) in table {
            assert_eq!(size(bytes), want);
        }
        assert_eq!(ratio(16 << 20, 16_530), "1015:1");
        assert_eq!(ratio(16 << 20, 5 << 20), "3.2:1");
        assert_eq!(ratio(16 << 20, 0), "16777216:1");
    }
}
