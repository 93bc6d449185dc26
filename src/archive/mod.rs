//! The archive: where segments come from. One boundary answers "is this
//! name there, in which form, is it complete, open it, remove what
//! precedes a cutoff", so the waiting logic never touches paths itself.
//! An archive is a local (or mounted) directory, or object storage
//! (`s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX`), whose objects are downloaded into unnamed
//! temporary files beside `%p` and from there handled as local files.

pub mod cleanup;
pub mod codec;
pub mod cutoff;
pub mod registry;
pub mod store;
pub mod unpack;
pub mod validate;

use std::fs::{self, File};
use std::io;
#[cfg(feature = "remote")]
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
#[cfg(feature = "remote")]
use std::sync::atomic::{AtomicBool, Ordering};

use crate::archive::codec::Codec;
#[cfg(feature = "remote")]
use crate::archive::store::{Error, ObjectStore};
use crate::sys::open::{self, Identity};
use crate::wal::SegmentName;
use crate::wal::timeline;
use cleanup::Summary;
use validate::{CompressedEntry, Probe};

pub enum Archive {
    Local(LocalDir),
    #[cfg(feature = "remote")]
    Remote(Box<Remote>),
}

pub struct LocalDir {
    dir: PathBuf,
    /// Whether the directory was a mount point when we started: if it stops
    /// being one, its filesystem was unmounted and what we see is the empty
    /// directory beneath.
    was_mount_point: bool,
}

/// A file answered at once (history, backup history, partial), opened.
pub struct Entry {
    pub file: File,
    pub len: u64,
    pub identity: Identity,
    /// `Some` for a compressed form of the file.
    pub codec: Option<Codec>,
}

/// Whether an archive location names object storage (`s3://BUCKET/PREFIX`)
/// rather than a directory: the one rule for the restore, the settings and
/// `--check`, in every build (with or without the `s3` feature). Cheap: no
/// other part of object storage is touched.
pub fn is_object_storage(location: &str) -> bool {
    crate::archive::store::is_url(location)
}

impl Archive {
    /// The archive must be usable when a call starts: a missing directory,
    /// a malformed URL or missing credentials are misconfigurations, never
    /// "not available".
    pub fn open(location: &Path) -> Result<Self, String> {
        if let Some(url) = location.to_str().filter(|l| is_object_storage(l)) {
            #[cfg(feature = "remote")]
            return Remote::open(url).map(|r| Self::Remote(Box::new(r)));
            #[cfg(not(feature = "remote"))]
            return Err(format!(
                "archive location \"{url}\" is object storage, and this pg_standby was built \
                 without object storage (the s3 and gcs features)"
            ));
        }
        LocalDir::open(location).map(Self::Local)
    }

    /// An archive in a store opened elsewhere (`--check` opens it with the
    /// server's environment).
    #[cfg(feature = "remote")]
    pub fn in_store(url: &str, store: Box<dyn ObjectStore>) -> Self {
        Self::Remote(Box::new(Remote::with(url, store)))
    }

    /// For messages: the directory, or the URL.
    pub fn dir(&self) -> &Path {
        match self {
            Self::Local(l) => &l.dir,
            #[cfg(feature = "remote")]
            Self::Remote(r) => &r.url,
        }
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn is_remote(&self) -> bool {
        !matches!(self, Self::Local(_))
    }

    /// The segment; `scratch` is where a remote one is downloaded to.
    pub fn segment(&self, name: &SegmentName, sysid: Option<u64>, scratch: &Path) -> Probe {
        let _ = scratch; // only object storage downloads
        match self {
            Self::Local(l) => l.segment(name, sysid),
            #[cfg(feature = "remote")]
            Self::Remote(r) => r.segment(name, scratch),
        }
    }

    /// A file that is complete when it appears, plain or compressed;
    /// `scratch` is where a remote one is downloaded to. `Ok(None)`: not
    /// there.
    pub fn file(&self, name: &str, scratch: &Path) -> io::Result<Option<Entry>> {
        let _ = scratch; // only object storage downloads
        match self {
            Self::Local(l) => l.file(name),
            #[cfg(feature = "remote")]
            Self::Remote(r) => r.file(name, scratch),
        }
    }

    /// The fetcher looks at many segments in one process: each look at a
    /// new one is a call's first.
    pub fn new_call(&self) {
        #[cfg(feature = "remote")]
        if let Self::Remote(r) = self {
            r.looked.set(false);
        }
    }

    /// What ends a request to object storage in flight besides a
    /// shutdown: `give_up` is asked every few milliseconds while one runs
    /// (a failover decided meanwhile). `None`: only a shutdown does.
    pub fn give_up_requests_when(&self, give_up: Option<Box<dyn Fn() -> bool>>) {
        let _ = &give_up; // only object storage has requests
        #[cfg(feature = "remote")]
        if let Self::Remote(r) = self {
            r.give_up.replace(give_up);
        }
    }

    pub fn gone(&self) -> Option<String> {
        match self {
            Self::Local(l) => l.gone(),
            #[cfg(feature = "remote")]
            Self::Remote(_) => None,
        }
    }

    pub fn in_flight(&self, name: &str) -> Option<String> {
        match self {
            Self::Local(l) => l.in_flight(name),
            // An upload appears whole or not at all.
            #[cfg(feature = "remote")]
            Self::Remote(_) => None,
        }
    }

    /// The newest segment in the archive (by position, then timeline), in
    /// any of the forms the restore looks for, for monitoring.
    pub fn newest_segment(&self) -> Option<SegmentName> {
        let names = match self {
            Self::Local(l) => l.file_names(),
            #[cfg(feature = "remote")]
            Self::Remote(r) => r.segment_names().ok()?,
        };
        names
            .iter()
            .filter_map(|n| segment_of(n))
            .max_by_key(|n| (n.position(), n.tli))
    }

    pub fn history(&self, tli: u32) -> Option<String> {
        match self {
            Self::Local(l) => l.history(tli),
            #[cfg(feature = "remote")]
            Self::Remote(r) => r.small_text(&format!("{tli:08X}.history")),
        }
    }

    pub fn segment_size(&self, sysid: Option<u64>) -> Option<u64> {
        match self {
            Self::Local(l) => l.segment_size(sysid),
            // Only the standby's own pg_wal tells, without a download.
            #[cfg(feature = "remote")]
            Self::Remote(_) => None,
        }
    }

    pub fn remove_before(&self, cutoff: SegmentName, dry_run: bool) -> io::Result<Summary> {
        match self {
            Self::Local(l) => l.remove_before(cutoff, dry_run),
            #[cfg(feature = "remote")]
            Self::Remote(r) => r.remove_before(cutoff, dry_run),
        }
    }

    /// Writes this standby's registry entry whole: a temporary name and a
    /// rename in a directory, one PUT on a store.
    pub fn publish(&self, file_name: &str, text: &str) -> io::Result<()> {
        match self {
            Self::Local(l) => {
                let dir = l.dir.join(registry::DIR);
                fs::create_dir_all(&dir)?;
                remove_abandoned_writes(&dir, file_name);
                let tmp = dir.join(format!(".{file_name}.{}", std::process::id()));
                let written =
                    fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, dir.join(file_name)));
                if written.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                written
            }
            #[cfg(feature = "remote")]
            Self::Remote(r) => r
                .store
                .put(&format!("{}/{file_name}", registry::DIR), text.as_bytes())
                .map_err(|e| io::Error::other(e.to_string())),
        }
    }

    /// One registry entry, if it is there and reads as one.
    pub fn entry(&self, file_name: &str) -> Option<registry::Entry> {
        let text = match self {
            Self::Local(l) => fs::read_to_string(l.dir.join(registry::DIR).join(file_name)).ok()?,
            #[cfg(feature = "remote")]
            Self::Remote(r) => {
                let mut body = Vec::new();
                let key = format!("{}/{file_name}", registry::DIR);
                r.store.get_to(&key, &mut body, 64 * 1024, &|| false).ok()?;
                String::from_utf8(body).ok()?
            }
        };
        registry::Entry::parse(&text).ok()
    }

    /// Every registry entry in the archive, read or not.
    pub fn registry(&self) -> io::Result<Vec<registry::Found>> {
        // An entry is a few hundred bytes; anything much larger is not one.
        const LIMIT: u64 = 64 * 1024;
        let read = |file_name: String, text: Result<String, String>| match text
            .and_then(|t| registry::Entry::parse(&t))
        {
            Ok(entry) => registry::Found::Read { file_name, entry },
            Err(why) => registry::Found::Bad { file_name, why },
        };
        match self {
            Self::Local(l) => {
                let dir = l.dir.join(registry::DIR);
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                let mut found = Vec::new();
                for entry in entries {
                    let entry = entry?;
                    let Ok(file_name) = entry.file_name().into_string() else {
                        continue;
                    };
                    // Temporary names of entries being written.
                    if file_name.starts_with('.') {
                        continue;
                    }
                    let text = open::regular(&entry.path())
                        .and_then(|f| {
                            let mut s = String::new();
                            io::Read::read_to_string(&mut io::Read::take(f, LIMIT), &mut s)
                                .map(|_| s)
                        })
                        .map_err(|e| e.to_string());
                    found.push(read(file_name, text));
                }
                Ok(found)
            }
            #[cfg(feature = "remote")]
            Self::Remote(r) => {
                let prefix = format!("{}/", registry::DIR);
                let listed = r
                    .store
                    .list(&prefix)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                Ok(listed
                    .into_iter()
                    .map(|(key, _)| {
                        let mut body = Vec::new();
                        let text = r
                            .store
                            .get_to(&key, &mut body, LIMIT, &|| false)
                            .map_err(|e| e.to_string())
                            .and_then(|_| String::from_utf8(body).map_err(|e| e.to_string()));
                        let file_name = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
                        read(file_name, text)
                    })
                    .collect())
            }
        }
    }

    /// Download a remote object into an unnamed file in `scratch`.
    #[cfg(feature = "remote")]
    pub fn download(&self, object: RemoteObject, scratch: &Path) -> Result<File, Error> {
        if let Some(file) = object.fetched {
            return Ok(file);
        }
        match self {
            Self::Remote(r) => r.download(&object.key, scratch),
            Self::Local(_) => Err(Error::config("not an object store".into())),
        }
    }
}

impl LocalDir {
    /// The archive must be there when a call starts: a missing one is a
    /// misconfiguration, never "not available".
    pub fn open(dir: &Path) -> Result<Self, String> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(Self {
                dir: dir.to_path_buf(),
                was_mount_point: is_mount_point(dir, &m),
            }),
            Ok(_) => Err(format!(
                "archive location \"{}\" is not a directory",
                dir.display()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "archive location \"{}\" does not exist",
                dir.display()
            )),
            Err(e) => Err(format!(
                "archive location \"{}\" cannot be used: {e}",
                dir.display()
            )),
        }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The segment, plain or compressed. Plain wins when both exist.
    pub fn segment(&self, name: &SegmentName, sysid: Option<u64>) -> Probe {
        let plain = name.to_string();
        match validate::path(&self.path_of(&plain), name, sysid) {
            Probe::Absent => {}
            found => return found,
        }
        match self.compressed(&plain) {
            Ok(Some(entry)) => Probe::Compressed(entry),
            Ok(None) => Probe::Absent,
            Err(e) => Probe::Unreadable(e),
        }
    }

    /// The first compressed form of `name` there is, by codec order.
    fn compressed(&self, name: &str) -> io::Result<Option<CompressedEntry>> {
        for (codec, file_name) in compressed_forms(name) {
            let file = match open::regular(&self.path_of(&file_name)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{file_name}: {e}"))),
            };
            let meta = file.metadata()?;
            return Ok(Some(CompressedEntry {
                file,
                codec,
                file_name,
                len: meta.len(),
                identity: Identity::of(&meta),
            }));
        }
        Ok(None)
    }

    /// A file that is complete when it appears, plain or compressed.
    /// `Ok(None)`: not there.
    pub fn file(&self, name: &str) -> io::Result<Option<Entry>> {
        let file = match open::regular(&self.path_of(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(self.compressed(name)?.map(|c| Entry {
                    file: c.file,
                    len: c.len,
                    identity: c.identity,
                    codec: Some(c.codec),
                }));
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        Ok(Some(Entry {
            len: meta.len(),
            identity: Identity::of(&meta),
            file,
            codec: None,
        }))
    }

    /// Why the archive cannot be seen any more, if it cannot: removed,
    /// renamed, unmounted, or its mount went stale.
    pub fn gone(&self) -> Option<String> {
        match fs::metadata(&self.dir) {
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_dir() => Some("it is no longer a directory".into()),
            Ok(m) if self.was_mount_point && !is_mount_point(&self.dir, &m) => {
                Some("its filesystem was unmounted".into())
            }
            Ok(_) => None,
        }
    }

    /// Files that will become `name` once written and renamed: `name`
    /// followed by a suffix (`.tmp`, `.partial`, a copier's own) or rsync's
    /// `.name.XXXXXX`. Returns their names, sizes and times, which change
    /// while they are written; `None` if there are none.
    pub fn in_flight(&self, name: &str) -> Option<String> {
        let hidden = format!(".{name}.");
        let mut found: Vec<String> = fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file_name = e.file_name().into_string().ok()?;
                let ours = (file_name.len() > name.len() && file_name.starts_with(name))
                    || file_name.starts_with(&hidden);
                let meta = e.metadata().ok().filter(|m| m.is_file() && ours)?;
                Some(format!(
                    "{file_name} {} {}.{}",
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec()
                ))
            })
            .collect();
        found.sort();
        (!found.is_empty()).then(|| found.join(", "))
    }

    fn file_names(&self) -> Vec<String> {
        fs::read_dir(&self.dir).map_or_else(
            |_| Vec::new(),
            |dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            },
        )
    }

    pub fn history(&self, tli: u32) -> Option<String> {
        timeline::find_history(tli, &[&self.dir])
    }

    pub fn segment_size(&self, sysid: Option<u64>) -> Option<u64> {
        validate::archive_segment_size(&self.dir, sysid)
    }

    /// Remove (or list, with `dry_run`) the segments before `cutoff`.
    pub fn remove_before(&self, cutoff: SegmentName, dry_run: bool) -> io::Result<Summary> {
        cleanup::run(&self.dir, cutoff, dry_run)
    }
}

/// A segment's object in object storage, not yet downloaded.
#[derive(Debug)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub struct RemoteObject {
    /// Its name under the prefix: the segment's, maybe with a suffix.
    pub key: String,
    pub codec: Option<Codec>,
    pub size: u64,
    /// Already downloaded into an unnamed temporary file.
    pub fetched: Option<File>,
}

#[cfg(feature = "remote")]
pub struct Remote {
    store: std::sync::Arc<dyn ObjectStore>,
    url: PathBuf,
    /// Whether this call has looked for its segment before.
    looked: std::cell::Cell<bool>,
    /// The form (plain or a codec) the last segment was found in: the
    /// fetcher's first look for the next one is a GET of that form.
    last_form: std::cell::Cell<Option<Option<Codec>>>,
    /// See [`Archive::give_up_requests_when`].
    give_up: std::cell::RefCell<Option<Box<dyn Fn() -> bool>>>,
}

#[cfg(feature = "remote")]
impl Remote {
    fn open(url: &str) -> Result<Self, String> {
        let store = crate::archive::store::open(url)
            .map_err(|e| format!("archive location \"{url}\" cannot be used: {e}"))?;
        Ok(Self::with(url, store))
    }

    fn with(url: &str, store: Box<dyn ObjectStore>) -> Self {
        Self {
            store: std::sync::Arc::from(store),
            url: PathBuf::from(url.trim_end_matches('/')),
            looked: std::cell::Cell::new(false),
            give_up: std::cell::RefCell::new(None),
            last_form: std::cell::Cell::new(None),
        }
    }

    /// Run one request on a thread of its own, so that a shutdown signal
    /// or a failover ends the wait for it at once: a blocked socket read
    /// would otherwise hold the call for the whole request timeout, and a
    /// crawling body for the whole transfer. `stop` is raised for the
    /// request's own checks; an abandoned request dies with the process.
    fn interruptible<T: Send + 'static>(
        &self,
        request: impl FnOnce(&dyn ObjectStore, &AtomicBool) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        use std::sync::mpsc::{self, RecvTimeoutError};
        let give_up = self.give_up.borrow();
        // Decided while the request before this one ran (a listing after
        // a GET): never sent.
        if crate::sys::signals::terminating().is_some() {
            return Err(Error::Interrupted);
        }
        if give_up.as_ref().is_some_and(|g| g()) {
            return Err(Error::Abandoned);
        }
        let store = std::sync::Arc::clone(&self.store);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let (done, result) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("store request".into())
            .spawn(move || {
                let _ = done.send(request(&*store, &stopping));
            })
            .map_err(Error::Io)?;
        loop {
            match result.recv_timeout(REQUEST_POLL) {
                Ok(answer) => return answer,
                Err(RecvTimeoutError::Timeout) if crate::sys::signals::terminating().is_some() => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::Interrupted);
                }
                Err(RecvTimeoutError::Timeout) if give_up.as_ref().is_some_and(|g| g()) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::Abandoned);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Transient("the request thread ended".into()));
                }
            }
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        let prefix = prefix.to_string();
        self.interruptible(move |store, _| store.list(&prefix))
    }

    /// The first look of a call is a GET of the plain name (in the
    /// fetcher, of the form the previous segment had): catching up costs
    /// one request per segment. Every other
    /// look is one listing, which finds every form of the segment at once:
    /// waiting costs one request per look.
    fn segment(&self, name: &SegmentName, scratch: &Path) -> Probe {
        let plain = name.to_string();
        if self.looked.replace(true) {
            return self.listed_segment(&plain);
        }
        let codec = self.last_form.get().flatten();
        let key = format!("{plain}{}", codec.map_or("", Codec::suffix));
        match self.download(&key, scratch) {
            Ok(file) => {
                let size = file.metadata().map_or(0, |m| m.len());
                return Probe::Remote(RemoteObject {
                    key,
                    codec,
                    size,
                    fetched: Some(file),
                });
            }
            Err(Error::NotFound) => {}
            Err(Error::Config { why, .. }) => return Probe::Misconfigured(why),
            Err(
                e @ (Error::Transient(_)
                | Error::Throttled { .. }
                | Error::Interrupted
                | Error::Abandoned),
            ) => {
                return Probe::unreachable(&e);
            }
            Err(e @ Error::Corrupt(_)) => {
                tracing::warn!("not restoring {plain}: {e}; downloading it again");
            }
            // Too large, or pg_wal cannot take it: the download is tried
            // again for the verdict.
            Err(Error::TooLarge { .. } | Error::Io(_)) => {}
        }
        self.listed_segment(&plain)
    }

    fn listed_segment(&self, plain: &str) -> Probe {
        let plain = plain.to_string();
        let listed = match self.list(&plain) {
            Ok(listed) => listed,
            Err(Error::NotFound) => return Probe::Absent,
            Err(Error::Config { why, .. }) => return Probe::Misconfigured(why),
            Err(e) => return Probe::unreachable(&e),
        };
        let size_of = |key: &str| listed.iter().find(|(k, _)| k == key).map(|(_, s)| *s);
        if let Some(size) = size_of(&plain) {
            self.last_form.set(Some(None));
            return Probe::Remote(RemoteObject {
                key: plain,
                codec: None,
                size,
                fetched: None,
            });
        }
        compressed_forms(&plain)
            .find_map(|(codec, key)| {
                size_of(&key).map(|size| RemoteObject {
                    key,
                    codec: Some(codec),
                    size,
                    fetched: None,
                })
            })
            .map_or(Probe::Absent, |object| {
                self.last_form.set(Some(object.codec));
                Probe::Remote(object)
            })
    }

    fn download(&self, key: &str, scratch: &Path) -> Result<File, Error> {
        // Unnamed (O_TMPFILE where the filesystem has it): nothing in
        // pg_wal for pg_rewind or a base backup to see, gone with us.
        let file = tempfile::tempfile_in(scratch).map_err(Error::Io)?;
        let key = key.to_string();
        let mut file = self.interruptible(move |store, stopping| {
            let mut file = file;
            let stop = || stopping.load(Ordering::Relaxed);
            store.get_to(&key, &mut file, MAX_OBJECT, &stop)?;
            Ok(file)
        })?;
        // Readers start where the download ended otherwise.
        file.seek(SeekFrom::Start(0)).map_err(Error::Io)?;
        Ok(file)
    }

    fn file(&self, name: &str, scratch: &Path) -> io::Result<Option<Entry>> {
        let listed = self.list(name).or_else(|e| match e {
            Error::NotFound => Ok(Vec::new()),
            e => Err(io::Error::other(e.to_string())),
        })?;
        let found = std::iter::once((name.to_string(), None))
            .chain(
                Codec::ALL
                    .iter()
                    .map(|&c| (format!("{name}{}", c.suffix()), Some(c))),
            )
            .find(|(key, _)| listed.iter().any(|(k, _)| k == key));
        let Some((key, codec)) = found else {
            return Ok(None);
        };
        let file = match self.download(&key, scratch) {
            Ok(f) => f,
            Err(Error::NotFound) => return Ok(None),
            Err(Error::Io(e)) => return Err(e),
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        let meta = file.metadata()?;
        Ok(Some(Entry {
            len: meta.len(),
            identity: Identity::of(&meta),
            file,
            codec,
        }))
    }

    /// A small object as text (a timeline history file), plain only.
    fn small_text(&self, name: &str) -> Option<String> {
        // On the request thread: a shutdown or a failover ends it as it
        // ends a segment's.
        let name = name.to_string();
        let body = self
            .interruptible(move |store, stopping| {
                let mut body = Vec::new();
                let stop = || stopping.load(Ordering::Relaxed);
                store.get_to(&name, &mut body, 1 << 20, &stop)?;
                Ok(body)
            })
            .ok()?;
        String::from_utf8(body).ok()
    }

    fn segment_names(&self) -> io::Result<Vec<String>> {
        self.store
            .list("")
            .map(|listed| listed.into_iter().map(|(k, _)| k).collect())
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn remove_before(&self, cutoff: SegmentName, dry_run: bool) -> io::Result<Summary> {
        let doomed: Vec<String> = self
            .segment_names()?
            .into_iter()
            .filter(|k| cutoff::is_removable(k, cutoff))
            .collect();
        if dry_run {
            for key in &doomed {
                tracing::info!(
                    "cleanup dry run: would remove \"{}/{key}\"",
                    self.url.display()
                );
            }
            return Ok(Summary {
                removed: doomed.len(),
            });
        }
        let report = self
            .store
            .delete_many(&doomed)
            .map_err(|e| io::Error::other(e.to_string()))?;
        if let Some((key, why)) = report.failed.first() {
            return Err(io::Error::other(format!(
                "could not remove \"{}/{key}\": {why} ({} refused in all)",
                self.url.display(),
                report.failed.len()
            )));
        }
        Ok(Summary {
            removed: report.deleted,
        })
    }
}

/// The compressed forms of a file the restore looks for, in its order of
/// preference (the plain name comes first, before any of these): one
/// suffix per compiled-in codec.
pub fn compressed_forms(name: &str) -> impl Iterator<Item = (Codec, String)> + '_ {
    Codec::ALL
        .iter()
        .map(move |&codec| (codec, format!("{name}{}", codec.suffix())))
}

/// The segment an archive's file is, plain or in one of its
/// [`compressed_forms`]; `None` for anything else. Monitoring and cleanup
/// recognise segments by this, so they see what the restore would restore.
pub fn segment_of(file_name: &str) -> Option<SegmentName> {
    let base = Codec::split_name(file_name).map_or(file_name, |(_, base)| base);
    SegmentName::parse(base)
}

/// Larger than any segment in any form: compressed data never grows.
#[cfg(feature = "remote")]
const MAX_OBJECT: u64 = (1 << 30) + (1 << 20);
/// How often a shutdown is looked for while a request is under way.
#[cfg(feature = "remote")]
const REQUEST_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A directory on another device than its parent is a mount point.
fn is_mount_point(dir: &Path, meta: &fs::Metadata) -> bool {
    fs::metadata(dir.join(".."))
        .map(|parent| parent.dev() != meta.dev())
        .unwrap_or(false)
}

/// How old a temporary registry entry must be to count as abandoned: a
/// write takes milliseconds, so one this old was left by a writer that was
/// killed between the write and the rename.
const ABANDONED_WRITE: std::time::Duration = std::time::Duration::from_secs(600);

/// Remove what a killed writer of this entry left (`.NAME.PID`). Only the
/// standby that owns the entry writes it, so only it removes its own
/// leftovers; a reader (`--check`) never does.
fn remove_abandoned_writes(dir: &Path, file_name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{file_name}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let abandoned = entry
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= ABANDONED_WRITE);
        if abandoned && pid.bytes().all(|b| b.is_ascii_digit()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_write_removes_what_a_killed_writer_of_its_entry_left() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let reg = dir.path().join(registry::DIR);
        fs::create_dir_all(&reg).unwrap();
        let old = std::time::SystemTime::now() - ABANDONED_WRITE * 2;
        let leftover = |name: &str, modified| {
            let f = File::create(reg.join(name)).unwrap();
            f.set_modified(modified).unwrap();
        };
        leftover(".a.standby.4242", old);
        leftover(".a.standby.4243", std::time::SystemTime::now());
        leftover(".b.standby.4242", old);
        archive.publish("a.standby", "x").unwrap();
        let mut left: Vec<String> = fs::read_dir(&reg)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // A recent one may be a write in progress; another standby's is its own.
        assert_eq!(left, [".a.standby.4243", ".b.standby.4242", "a.standby"]);
    }

    #[test]
    fn missing_or_not_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Archive::open(&dir.path().join("nope")).err().unwrap();
        assert!(err.contains("does not exist"), "{err}");
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let err = Archive::open(&file).err().unwrap();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn notices_the_directory_going_away_and_coming_back() {
        let dir = tempfile::tempdir().unwrap();
        let archive_dir = dir.path().join("archive");
        fs::create_dir(&archive_dir).unwrap();
        let archive = Archive::open(&archive_dir).unwrap();
        assert_eq!(archive.gone(), None);
        fs::rename(&archive_dir, dir.path().join("moved")).unwrap();
        assert!(archive.gone().is_some());
        fs::create_dir(&archive_dir).unwrap();
        assert_eq!(archive.gone(), None);
    }

    #[test]
    fn in_flight_names() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let name = "000000010000000000000005";
        assert_eq!(archive.in_flight(name), None);
        fs::write(dir.path().join("000000010000000000000006.tmp"), b"x").unwrap();
        fs::write(dir.path().join("000000010000000000000004"), b"x").unwrap();
        assert_eq!(archive.in_flight(name), None);
        for in_flight in [
            format!("{name}.tmp"),
            format!("{name}.partial"),
            format!(".{name}.Ab12Cd"),
        ] {
            let path = dir.path().join(&in_flight);
            fs::write(&path, b"x").unwrap();
            assert!(archive.in_flight(name).unwrap().contains(&in_flight));
            fs::remove_file(path).unwrap();
        }
    }

    /// Counts the requests it is sent; answers each at once.
    #[cfg(feature = "remote")]
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    #[cfg(feature = "remote")]
    impl ObjectStore for Counting {
        fn location(&self) -> String {
            "s3://b/".into()
        }
        fn credentials_source(&self) -> String {
            String::new()
        }
        fn endpoint(&self) -> String {
            String::new()
        }
        fn get_to(
            &self,
            _: &str,
            _: &mut dyn io::Write,
            _: u64,
            _: &dyn Fn() -> bool,
        ) -> Result<u64, Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(Error::NotFound)
        }
        fn list(&self, _: &str) -> Result<Vec<(String, u64)>, Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        fn put(&self, _: &str, _: &[u8]) -> Result<(), Error> {
            unreachable!()
        }
        fn delete_many(&self, _: &[String]) -> Result<crate::archive::store::DeleteReport, Error> {
            unreachable!()
        }
        fn verify(&self) -> Result<(), Error> {
            unreachable!()
        }
    }

    /// A body that never ends, unless the request is stopped (5 s at most).
    #[cfg(feature = "remote")]
    #[derive(Debug)]
    struct Stalling;

    #[cfg(feature = "remote")]
    impl ObjectStore for Stalling {
        fn location(&self) -> String {
            "s3://b/".into()
        }
        fn credentials_source(&self) -> String {
            String::new()
        }
        fn endpoint(&self) -> String {
            String::new()
        }
        fn get_to(
            &self,
            _: &str,
            _: &mut dyn io::Write,
            _: u64,
            should_stop: &dyn Fn() -> bool,
        ) -> Result<u64, Error> {
            let t0 = std::time::Instant::now();
            while t0.elapsed() < std::time::Duration::from_secs(5) {
                if should_stop() {
                    return Err(Error::Interrupted);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(Error::NotFound)
        }
        fn list(&self, _: &str) -> Result<Vec<(String, u64)>, Error> {
            unreachable!()
        }
        fn put(&self, _: &str, _: &[u8]) -> Result<(), Error> {
            unreachable!()
        }
        fn delete_many(&self, _: &[String]) -> Result<crate::archive::store::DeleteReport, Error> {
            unreachable!()
        }
        fn verify(&self) -> Result<(), Error> {
            unreachable!()
        }
    }

    /// A timeline history file's download (the call's look at whether a
    /// segment can ever exist) ends with the failover too: a store that
    /// trickles it never holds the call.
    #[cfg(feature = "remote")]
    #[test]
    fn a_history_download_is_given_up_like_a_segment() {
        let t0 = std::time::Instant::now();
        let remote = Remote {
            store: std::sync::Arc::new(Stalling),
            url: PathBuf::from("s3://b"),
            looked: std::cell::Cell::new(true),
            last_form: std::cell::Cell::new(None),
            give_up: std::cell::RefCell::new(Some(Box::new(move || {
                t0.elapsed() > std::time::Duration::from_millis(100)
            }))),
        };
        assert_eq!(remote.small_text("00000002.history"), None);
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t0.elapsed()
        );
    }

    /// A failover decided before a request goes out (during the one
    /// before it, which answered first) gives it up unsent: no request
    /// after the decision.
    #[cfg(feature = "remote")]
    #[test]
    fn no_request_is_sent_once_it_is_to_be_given_up() {
        let store = std::sync::Arc::new(Counting::default());
        let remote = Remote {
            store: store.clone(),
            url: PathBuf::from("s3://b"),
            looked: std::cell::Cell::new(true),
            last_form: std::cell::Cell::new(None),
            give_up: std::cell::RefCell::new(Some(Box::new(|| true))),
        };
        let scratch = tempfile::tempdir().unwrap();
        let name = SegmentName::parse("000000010000000000000005").unwrap();
        assert!(matches!(
            remote.segment(&name, scratch.path()),
            Probe::Unreachable { .. }
        ));
        assert!(matches!(remote.list(""), Err(Error::Abandoned)));
        assert!(matches!(
            remote.download("x", scratch.path()),
            Err(Error::Abandoned)
        ));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(store.0.load(Ordering::SeqCst), 0, "requests sent");
    }
}
