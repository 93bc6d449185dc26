//! Turning what the archive holds into a look for the policy, and a
//! deliverable file into a delivery.

use super::*;

/// What the archive holds of the requested segment, decompressed if it
/// is compressed.
pub(super) enum Found {
    Plain(Probe),
    Unpacked {
        staged: Staged,
        len: u64,
        accepted: Accepted,
        source: CompressedEntry,
        /// How long decompressing took.
        took: Duration,
    },
    /// A compressed form that is incomplete or bad.
    NotReady(Look),
    /// Decompressing beside `%p` failed: a copy failure.
    StagingFailed(anyhow::Error),
    Interrupted,
}

/// One look at the archive, as the policy needs it.
#[derive(Clone)]
pub(super) struct Look {
    pub(super) seen: Seen,
    /// A one-line account, for the log.
    pub(super) why: String,
    /// What must change for the file to count as changed.
    pub(super) state: String,
}

/// What became of one attempt to deliver a validated file.
pub(super) enum Delivery {
    Done,
    /// The source changed under the copy: look at it again.
    Changed(String),
    Failed(anyhow::Error),
    Interrupted,
}

impl Session {
    /// Turn what was found into what the policy needs.
    pub(super) fn classify(
        &self,
        archive: &Archive,
        name: SegmentName,
        found: &Found,
        waited: Duration,
        never_exists_checked: &mut bool,
    ) -> Look {
        let probe = match found {
            Found::Plain(probe) => probe,
            Found::Unpacked { source, .. } => {
                return Look {
                    seen: Seen::Ready,
                    why: format!("{} decompresses to a valid segment", source.file_name),
                    state: String::new(),
                };
            }
            Found::NotReady(look) => return look.clone(),
            Found::StagingFailed(_) | Found::Interrupted => {
                return Look {
                    seen: Seen::Absent,
                    why: String::new(),
                    state: String::new(),
                };
            }
        };
        let why = probe.describe();
        let look = |seen, why: String| {
            let state = format!("{why} {}", fingerprint(&archive.path_of(&name.to_string())));
            Look { seen, why, state }
        };
        match probe {
            Probe::Ready(_) | Probe::Compressed(_) => look(Seen::Ready, why),
            Probe::Incomplete { .. } => look(Seen::Incomplete, why),
            Probe::Invalid(_) => look(Seen::Bad(Fatal::BadSegment), why),
            Probe::Oversized { .. } => look(Seen::Bad(Fatal::Oversized), why),
            Probe::Unreachable { why, .. } => look(Seen::ArchiveGone, why.clone()),
            // Turned into what they hold before they get here.
            Probe::Remote(_) | Probe::Misconfigured(_) => look(Seen::Absent, why),
            Probe::Unreadable(_) | Probe::Absent => {
                if let Some(gone) = archive.gone() {
                    return look(Seen::ArchiveGone, gone);
                }
                if let Probe::Unreadable(_) = probe {
                    return look(Seen::Bad(Fatal::Io), why);
                }
                if !std::mem::replace(never_exists_checked, true)
                    && self.can_never_exist(archive, name)
                {
                    return look(Seen::NeverExists, why);
                }
                let failing_over = self.failover == Failover::Smart
                    || self.rules.max_wait.is_some_and(|w| waited >= w);
                match failing_over
                    .then(|| archive.in_flight(&name.to_string()))
                    .flatten()
                {
                    Some(files) => Look {
                        seen: Seen::InFlight,
                        why: "it is still being written under another name".into(),
                        state: files,
                    },
                    None => look(Seen::Absent, why),
                }
            }
        }
    }

    /// Decompress a compressed segment beside `%p`. A verdict on a file is
    /// kept while the file stays the same, so an incomplete file is not
    /// decompressed again until it changes.
    pub(super) fn unpack_segment(
        &self,
        name: SegmentName,
        source: CompressedEntry,
        state: String,
        last: &mut Option<(Identity, Look)>,
    ) -> Found {
        if let Some((identity, look)) = last
            && *identity == source.identity
        {
            return Found::NotReady(look.clone());
        }
        let not_ready = |seen, why: String| Look {
            seen,
            why: format!("{}: {why}", source.file_name),
            state: state.clone(),
        };
        let started = Instant::now();
        let look = match unpack::segment(
            &source.file,
            source.codec,
            &name,
            self.sysid,
            &self.config.destination,
        ) {
            Unpacked::Ready {
                staged,
                len,
                accepted: Some(accepted),
            } => {
                return Found::Unpacked {
                    staged,
                    len,
                    accepted,
                    source,
                    took: started.elapsed(),
                };
            }
            Unpacked::Ready { .. } => {
                not_ready(Seen::Bad(Fatal::BadSegment), "no segment header".into())
            }
            Unpacked::Incomplete(why) => not_ready(Seen::Incomplete, why),
            Unpacked::Bad(kind, why) => not_ready(Seen::Bad(kind), why),
            Unpacked::Failed(e) => return Found::StagingFailed(e),
            Unpacked::Interrupted => return Found::Interrupted,
        };
        *last = Some((source.identity, look.clone()));
        Found::NotReady(look)
    }

    /// Download a remote object beside `%p`, then handle it as a local
    /// file: validated as it is, or decompressed.
    #[cfg(feature = "remote")]
    pub(super) fn fetch(
        &self,
        archive: &Archive,
        name: SegmentName,
        object: crate::archive::RemoteObject,
        last: &mut Option<(Identity, Look)>,
    ) -> Found {
        use crate::archive::store::Error;
        let scratch = destination_dir(&self.config.destination);
        let (key, size, codec) = (object.key.clone(), object.size, object.codec);
        let file = match archive.download(object, scratch) {
            Ok(file) => file,
            Err(Error::NotFound) => return Found::Plain(Probe::Absent),
            Err(Error::Config { why, .. }) => return Found::Plain(Probe::Misconfigured(why)),
            Err(Error::Interrupted) => return Found::Interrupted,
            Err(Error::Io(e)) => {
                return Found::StagingFailed(
                    anyhow::Error::new(e).context("could not write the downloaded object"),
                );
            }
            // The object's own checksum says it holds something else: the
            // way to the archive is at fault, not (as far as we know) the
            // object.
            Err(Error::Corrupt(why)) => {
                return Found::NotReady(Look {
                    seen: Seen::Bad(Fatal::Archive),
                    why,
                    state: key.clone(),
                });
            }
            Err(Error::TooLarge { size, limit }) => {
                return Found::NotReady(Look {
                    seen: Seen::Bad(Fatal::Oversized),
                    why: format!("{key}: {size} bytes, more than any segment ({limit})"),
                    state: key.clone(),
                });
            }
            Err(e @ (Error::Transient(_) | Error::Throttled { .. } | Error::Abandoned)) => {
                return Found::Plain(Probe::unreachable(&e));
            }
        };
        match codec {
            None => Found::Plain(validate::probe_file(file, &name, self.sysid)),
            Some(codec) => {
                let Ok(meta) = file.metadata() else {
                    return Found::Plain(Probe::Unreachable {
                        why: "the download vanished".into(),
                        retry_after: None,
                    });
                };
                // Each download is a new file: the object is what stays.
                let state = format!("{key} {size}");
                let entry = CompressedEntry {
                    identity: Identity::of(&meta),
                    len: meta.len(),
                    file,
                    codec,
                    file_name: key,
                };
                self.unpack_segment(name, entry, state, last)
            }
        }
    }

    /// Rename a decompressed file into place if its source is still the
    /// file that was decompressed.
    pub(super) fn commit_staged(
        &self,
        staged: Staged,
        source: &File,
        identity: Identity,
    ) -> Delivery {
        if let Err(why) = unchanged(source, identity) {
            return Delivery::Changed(why);
        }
        match staged.commit(&self.config.destination, self.config.fsync) {
            Ok(()) => Delivery::Done,
            Err(CopyError::Interrupted) => Delivery::Interrupted,
            Err(CopyError::Failed(e)) => Delivery::Failed(e),
            Err(CopyError::Rejected(why)) => Delivery::Changed(why),
        }
    }

    pub(super) fn deliver_segment(&mut self, name: SegmentName, ready: &ReadySegment) -> Delivery {
        let sysid = self.sysid;
        let verify = |copy: &File| {
            unchanged(&ready.file, ready.identity)?;
            validate::recheck(copy, &name, sysid, ready.accepted)
        };
        self.deliver(&ready.file, ready.len, ready.identity, &verify)
    }

    pub(super) fn deliver(
        &mut self,
        src: &File,
        len: u64,
        validated: Identity,
        verify: &dyn Fn(&File) -> Result<(), String>,
    ) -> Delivery {
        let source = self.config.archive_path();
        match destination::deliver(
            src,
            len,
            &source,
            &self.config.destination,
            self.config.fsync,
            verify,
        ) {
            Ok(()) => Delivery::Done,
            Err(CopyError::Interrupted) => Delivery::Interrupted,
            Err(CopyError::Rejected(why)) => Delivery::Changed(why),
            // A copy that failed because the source changed is not a copy
            // failure: the file must be looked at again.
            Err(CopyError::Failed(e)) => match unchanged(src, validated) {
                Err(why) => Delivery::Changed(format!("{why} ({e:#})")),
                Ok(()) => Delivery::Failed(e),
            },
        }
    }

    /// A delivery that did not happen: look again (the source changed),
    /// retry (the copy failed) or end (a shutdown). `None`: go on.
    pub(super) fn undelivered(
        &mut self,
        name: &str,
        delivery: Delivery,
        failures: &mut u32,
    ) -> Option<Outcome> {
        match delivery {
            Delivery::Done => None,
            Delivery::Changed(why) => {
                tracing::warn!("{name} {why}; not delivered; looking again");
                None
            }
            Delivery::Failed(error) => self.after_copy_failure(error, failures),
            Delivery::Interrupted => Some(self.killed()),
        }
    }

    /// `-r` retries, pausing 0, s, 2s, ... as pg_standby does; each retry
    /// looks at (and validates) the archive file again.
    pub(super) fn after_copy_failure(
        &mut self,
        error: anyhow::Error,
        failures: &mut u32,
    ) -> Option<Outcome> {
        *failures += 1;
        let attempts = self.config.max_retries + 1;
        if *failures >= attempts {
            return Some(self.fatal(
                Fatal::Io,
                format!("{error:#} (failed {attempts} time(s)); free space or fix permissions in pg_wal, then start the server"),
            ));
        }
        let pause = self.config.sleep * (*failures - 1);
        tracing::warn!(
            "{error:#}; retrying in {} s (attempt {failures} of {attempts} failed)",
            pause.as_secs()
        );
        self.pause(pause)
    }
}
