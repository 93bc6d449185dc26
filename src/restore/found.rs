//! Turning what the archive holds into a look for the policy, and a
//! deliverable file into a delivery.

use super::*;

/// What one look at the archive came to: the segment as it is,
/// decompressed, or downloaded.
pub(super) enum Found {
    Plain(Probe),
    Decompressed(Decompressed),
    /// A compressed form that is incomplete or bad.
    NotReady(Look),
    /// Decompressing beside `%p` failed: a copy failure.
    StagingFailed(anyhow::Error),
    Interrupted,
}

/// A compressed segment, decompressed and checked beside `%p`.
pub(super) struct Decompressed {
    pub(super) staged: Staged,
    pub(super) len: u64,
    pub(super) accepted: Accepted,
    pub(super) source: CompressedEntry,
    /// How long decompressing took.
    pub(super) took: Duration,
}

/// A look judged: ready to deliver, or what the policy must decide on.
pub(super) enum Judged {
    Ready(Deliverable),
    NotReady(Look),
}

/// A segment ready to deliver, in either of its forms.
pub(super) enum Deliverable {
    Plain(ReadySegment),
    Decompressed(Decompressed),
}

/// One look at a segment that is not ready, as the policy needs it.
#[derive(Clone)]
pub(super) struct Look {
    pub(super) seen: Seen,
    /// A one-line account, for the log.
    pub(super) why: String,
    /// What must change for the file to count as changed.
    pub(super) state: String,
    /// How long the store asked us to wait, if it did.
    pub(super) retry_after: Option<Duration>,
}

impl Look {
    pub(super) fn new(seen: Seen, why: String, state: String) -> Self {
        Self {
            seen,
            why,
            state,
            retry_after: None,
        }
    }

    /// What the look says to the pace of requests to object storage. A bad
    /// object (changed on the way, foreign) is downloaded again at an
    /// error's pace too: 16 MiB every few hundred ms is a store's bad day
    /// made worse.
    pub(super) fn answered(&self) -> policy::Answered {
        match self.seen {
            Seen::ArchiveGone => policy::Answered::Unavailable {
                retry_after: self.retry_after,
            },
            Seen::Bad(_) => policy::Answered::Unavailable { retry_after: None },
            _ => policy::Answered::Absent,
        }
    }
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
    /// Judge a plain look: ready to deliver, or what the policy sees.
    pub(super) fn judge_probe(
        &self,
        archive: &Archive,
        name: SegmentName,
        probe: Probe,
        waited: Duration,
        never_exists_checked: &mut bool,
    ) -> Judged {
        let why = probe.describe();
        let look = |seen, why: String| {
            let state = format!("{why} {}", fingerprint(&archive.path_of(&name.to_string())));
            Judged::NotReady(Look::new(seen, why, state))
        };
        match probe {
            Probe::Ready(ready) => Judged::Ready(Deliverable::Plain(ready)),
            Probe::Incomplete { .. } => look(Seen::Incomplete, why),
            Probe::Invalid(_) => look(Seen::Bad(Fatal::BadSegment), why),
            Probe::Oversized { .. } => look(Seen::Bad(Fatal::Oversized), why),
            Probe::Unreachable { why, retry_after } => {
                let mut judged = look(Seen::ArchiveGone, why);
                if let Judged::NotReady(look) = &mut judged {
                    look.retry_after = retry_after;
                }
                judged
            }
            // Turned into what they hold before they get here.
            Probe::Compressed(_) | Probe::Remote(_) | Probe::Misconfigured(_) => {
                look(Seen::Absent, why)
            }
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
                match self
                    .failing_over(waited)
                    .then(|| archive.in_flight(&name.to_string()))
                    .flatten()
                {
                    Some(files) => Judged::NotReady(Look::new(
                        Seen::InFlight,
                        "it is still being written under another name".into(),
                        files,
                    )),
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
        let not_ready = |seen, why: String| {
            Look::new(seen, format!("{}: {why}", source.file_name), state.clone())
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
                return Found::Decompressed(Decompressed {
                    staged,
                    len,
                    accepted,
                    source,
                    took: started.elapsed(),
                });
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
                return Found::NotReady(Look::new(Seen::Bad(Fatal::Archive), why, key.clone()));
            }
            Err(Error::TooLarge { size, limit }) => {
                return Found::NotReady(Look::new(
                    Seen::Bad(Fatal::Oversized),
                    format!("{key}: {size} bytes, more than any segment ({limit})"),
                    key.clone(),
                ));
            }
            Err(e @ (Error::Transient(_) | Error::Throttled { .. } | Error::Abandoned)) => {
                return Found::Plain(Probe::unreachable(&e));
            }
        };
        match codec {
            None => Found::Plain(validate::file(file, &name, self.sysid)),
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
