//! The restore call's side of prefetch: take the segment from the spool
//! when the fetcher has it, move the spool's window on after each restore
//! (starting a fetcher when none runs), and discard the spool when
//! recovery ends or stops.

use super::*;
use crate::prefetch;
use crate::prefetch::spool::{self, Spool, Stamp, Taken};

impl Session {
    /// Where this call's spool is, if prefetch may be used at all: never
    /// for a tool such as pg_rewind, nor for a file answered at once.
    pub(super) fn locate_spool(&self) -> Option<Spool> {
        let c = &self.config;
        if c.prefetch == Some(0)
            || c.called_by_a_tool()
            || !matches!(c.request, WalFileName::Segment(_))
            || c.archive.to_str().is_none_or(|a| a.contains('\n'))
        {
            return None;
        }
        let dir = c
            .spool_dir
            .clone()
            .or_else(|| spool::default_dir(&self.cwd))?;
        if spool::inside(&dir, &self.cwd) {
            tracing::warn!(
                "prefetch off: --spool-dir \"{}\" is inside the data directory, where pg_rewind and \
                 base backups would copy it; choose a directory outside it",
                dir.display()
            );
            return None;
        }
        Some(Spool::new(dir))
    }

    /// The requested segment from the spool, if it is there and checks out.
    pub(super) fn restore_from_spool(&mut self, name: SegmentName) -> Option<Outcome> {
        let spool = self.spool.take()?;
        let outcome = self.take_from(&spool, name);
        self.spool = Some(spool);
        outcome
    }

    fn take_from(&mut self, spool: &Spool, name: SegmentName) -> Option<Outcome> {
        if self.config.prefetch.is_none() && !spool.exists() {
            return None;
        }
        spool.forward_log();
        let archive = self.config.archive.to_string_lossy();
        let postmaster = crate::server::datadir::postmaster(&self.cwd);
        if let Some(old) = spool.stamp()
            && !old.is_for(&archive, self.sysid, &postmaster)
        {
            self.report.spool = Some(false);
            tracing::debug!(
                "prefetch spool made for another archive, cluster or server start: not used"
            );
            return None;
        }
        self.update_failover(name);
        if self.failover == Failover::Fast {
            return None;
        }
        let started = Instant::now();
        let trigger = self.config.trigger_file.clone();
        let server_start = self.server_start;
        let mut keep_waiting = || {
            signals::terminating().is_none()
                && signals::failover_requested().is_none()
                && trigger
                    .as_deref()
                    .is_none_or(|t| trigger::read_for(t, server_start) != Trigger::Fast)
        };
        let taken = spool.take(
            name,
            self.sysid,
            &self.config.destination,
            self.config.fsync,
            &mut keep_waiting,
        );
        match taken {
            Taken::Hit { len, accepted } => {
                let took = started.elapsed();
                // Object storage: where the fetcher took it from.
                let location = self.config.archive.to_string_lossy();
                let fetched = if crate::archive::is_object_storage(&location) {
                    format!(" (fetched from {})", self.config.archive.display())
                } else {
                    String::new()
                };
                tracing::info!(
                    "restored {name} from the prefetch spool{fetched} after waiting {:.3} s ({} moved in {:.3} s)",
                    self.started.elapsed().as_secs_f64(),
                    report::size(len),
                    took.as_secs_f64(),
                );
                self.report.spool = Some(true);
                self.note_restored(name, len, accepted.seg_size, took);
                Some(Outcome::Restored)
            }
            Taken::Miss(why) => {
                self.report.spool = Some(false);
                tracing::debug!("{name} not taken from the prefetch spool: {why}");
                None
            }
            // The loop notices the signal or the trigger at once.
            Taken::Interrupted => None,
        }
    }

    /// After a restore: move the spool's window on and keep a fetcher
    /// running, if prefetch is on for this archive. `compressed`: the
    /// segment was decompressed, here or by the fetcher.
    pub(super) fn advance_spool(
        &self,
        archive: &Archive,
        name: SegmentName,
        seg_size: u64,
        compressed: bool,
    ) {
        let Some(spool) = &self.spool else { return };
        // Recovery is ending: nothing more to fetch for it.
        if self.failover != Failover::None {
            return;
        }
        let server_call = self.mode != RecoveryMode::Unknown;
        let depth = spool::depth(
            self.config.prefetch,
            server_call,
            archive.is_remote(),
            compressed,
        );
        if depth == 0 {
            return;
        }
        let stamp = Stamp {
            archive: self.config.archive.to_string_lossy().into_owned(),
            sysid: self.sysid,
            postmaster: crate::server::datadir::postmaster(&self.cwd),
            segment_size: seg_size,
            depth,
            max_bytes: self.config.prefetch_max_bytes,
            debug: self.config.debug,
        };
        match spool.advance(&stamp, name) {
            Ok(()) => prefetch::ensure_fetcher(spool),
            Err(e) => {
                let message = format!(
                    "prefetch off for this call: cannot use the spool \"{}\": {e} (set --spool-dir to a \
                     writable directory outside the data directory, or --prefetch=0)",
                    spool.dir().display()
                );
                // Asked for: every call says it. By default (the data
                // directory's parent may be root's): --check says it.
                if self.config.spool_dir.is_some() || self.config.prefetch.is_some() {
                    tracing::warn!("{message}");
                } else {
                    tracing::debug!("{message}");
                }
            }
        }
    }

    /// Recovery ends or stops: nothing fetched for it may outlive it.
    pub(super) fn discard_spool(&self) {
        if let Some(spool) = &self.spool {
            spool.discard();
        }
    }

    /// The server asks for a file after it promoted (a history file, as it
    /// does once recovery.signal is gone): a spool left by the recovery
    /// goes now.
    pub(super) fn discard_spool_after_promotion(&self) {
        if self.mode != RecoveryMode::Unknown
            || crate::server::datadir::postmaster(&self.cwd).is_none()
        {
            return;
        }
        let dir = self
            .config
            .spool_dir
            .clone()
            .or_else(|| spool::default_dir(&self.cwd));
        if let Some(spool) = dir.map(Spool::new).filter(Spool::exists) {
            spool.discard();
        }
    }
}
