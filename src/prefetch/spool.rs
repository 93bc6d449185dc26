//! The prefetch spool: a directory outside the data directory where a
//! detached fetcher ([`crate::prefetch`]) puts the next segments,
//! decompressed and validated, before the server asks for them. A restore
//! call takes its segment from here by a rename when it is there, and
//! otherwise restores it itself: the spool is only ever a shortcut.
//!
//! Never inside pg_wal (WAL-G's prefetch directory there broke pg_rewind)
//! and never a negative answer (pgBackRest's cached "missing" markers raced
//! a timeline switch into an early end of recovery): a file here is used
//! only if it is exactly the segment asked for and passes the checks a
//! direct restore makes.
//!
//! Layout: `stamp` (what the spool was made for: archive, cluster, server
//! start, segment size, depth), `cursor` (the last segment restored),
//! `lock` (held by the one fetcher, with its pid), `current` (the segments
//! it is fetching), `log` (its log lines, forwarded to the server's log by
//! the next call), `backoff` (its last failure) and the segments.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::archive::validate::{self, Probe};
use crate::destination;
use crate::sys::flock;
use crate::sys::open;
use crate::wal::SegmentName;
use crate::wal::header::Accepted;

/// Segments fetched ahead when nothing else is asked.
pub const DEFAULT_DEPTH: u32 = 8;
/// After a fetcher failed (disk full, permissions), no new one for this
/// long: the calls restore directly meanwhile.
const BACKOFF: Duration = Duration::from_secs(60);
/// How long a call waits for the segment the fetcher is writing at most.
const TAKE_WAIT: Duration = Duration::from_secs(60);
const TAKE_POLL: Duration = Duration::from_millis(2);
const DISCARD_ATTEMPTS: u32 = 5;

pub struct Spool {
    dir: PathBuf,
}

/// What the spool is valid for. Any difference makes it stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub archive: String,
    pub sysid: Option<u64>,
    /// `PID START` from postmaster.pid: a restart empties the spool.
    pub postmaster: Option<(i32, String)>,
    pub segment_size: u64,
    pub depth: u32,
    pub max_bytes: u64,
    pub debug: bool,
}

/// What a call got from the spool.
pub enum Taken {
    Hit { len: u64, accepted: Accepted },
    Miss(String),
    Interrupted,
}

impl Stamp {
    pub fn render(&self) -> String {
        format!(
            "archive={}\nsysid={}\npostmaster={}\nsegment_size={}\ndepth={}\nmax_bytes={}\ndebug={}\n",
            self.archive,
            self.sysid.map_or("-".into(), |s| s.to_string()),
            self.postmaster
                .as_ref()
                .map_or("-".into(), |(pid, start)| format!("{pid} {start}")),
            self.segment_size,
            self.depth,
            self.max_bytes,
            u8::from(self.debug),
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        };
        let postmaster = match field("postmaster")? {
            "-" => None,
            v => {
                let (pid, start) = v.split_once(' ')?;
                Some((pid.parse().ok()?, start.to_string()))
            }
        };
        Some(Self {
            archive: field("archive")?.to_string(),
            sysid: match field("sysid")? {
                "-" => None,
                v => Some(v.parse().ok()?),
            },
            postmaster,
            segment_size: field("segment_size")?.parse().ok()?,
            depth: field("depth")?.parse().ok()?,
            max_bytes: field("max_bytes")?.parse().ok()?,
            debug: field("debug")? == "1",
        })
    }

    /// Made for this archive, cluster and server run: its files may be
    /// used.
    pub fn is_for(
        &self,
        archive: &str,
        sysid: Option<u64>,
        postmaster: &Option<(i32, String)>,
    ) -> bool {
        self.archive == archive && self.sysid == sysid && self.postmaster == *postmaster
    }

    fn same_source(&self, other: &Stamp) -> bool {
        self.is_for(&other.archive, other.sysid, &other.postmaster)
    }
}

/// The default spool of a data directory: beside it, so that a rename
/// into its pg_wal usually stays on one filesystem.
pub fn default_dir(datadir: &Path) -> Option<PathBuf> {
    let name = datadir.file_name()?.to_str()?;
    Some(datadir.with_file_name(format!("{name}.pg_standby-spool")))
}

/// The segment a fetcher should fetch next after `cursor`, or `None` when
/// the window is full (by count or by bytes).
pub fn next_to_fetch(
    cursor: SegmentName,
    segment_size: u64,
    depth: u32,
    max_bytes: u64,
    spooled: &BTreeSet<String>,
) -> Option<SegmentName> {
    let start = cursor.segno(segment_size)?;
    let mut held = 0u64;
    for ahead in 1..=u64::from(depth) {
        let name = SegmentName::from_segno(cursor.tli, start + ahead, segment_size);
        if spooled.contains(&name.to_string()) {
            held += segment_size;
            continue;
        }
        if held > 0 && held + segment_size > max_bytes {
            return None;
        }
        return Some(name);
    }
    None
}

/// Whether a spooled segment can still be asked for: on the cursor's
/// timeline, within the window after it.
pub fn in_window(name: SegmentName, cursor: SegmentName, segment_size: u64, depth: u32) -> bool {
    match (name.segno(segment_size), cursor.segno(segment_size)) {
        (Some(n), Some(c)) => name.tli == cursor.tli && n > c && n <= c + u64::from(depth),
        _ => false,
    }
}

impl Spool {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn stamp(&self) -> Option<Stamp> {
        Stamp::parse(&fs::read_to_string(self.path("stamp")).ok()?)
    }

    pub fn cursor(&self) -> Option<SegmentName> {
        SegmentName::parse(fs::read_to_string(self.path("cursor")).ok()?.trim())
    }

    /// The segments the spool holds, by name.
    pub fn segments(&self) -> BTreeSet<String> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| SegmentName::parse(n).is_some())
            .collect()
    }

    /// Write `text` to `name` atomically.
    pub fn write(&self, name: &str, text: &str) -> io::Result<()> {
        let tmp = self.path(&format!(".{name}.{}", std::process::id()));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, self.path(name)).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// The fetcher's pid, if one holds the lock.
    pub fn fetcher(&self) -> Option<i32> {
        let mut file = File::open(self.path("lock")).ok()?;
        if try_lock(&file) {
            return None;
        }
        let mut pid = String::new();
        file.read_to_string(&mut pid).ok()?;
        pid.trim().parse().ok()
    }

    /// Take the lock as the fetcher, or `None` if another holds it.
    pub fn lock_as_fetcher(&self) -> io::Result<Option<File>> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.path("lock"))?;
        if !try_lock(&file) {
            return Ok(None);
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(Some(file))
    }

    /// Hand the fetcher's log lines on to our stderr (the server's log).
    pub fn forward_log(&self) {
        let taken = self.path(&format!("log.{}", std::process::id()));
        if fs::rename(self.path("log"), &taken).is_err() {
            return;
        }
        if let Ok(text) = fs::read(&taken) {
            crate::obs::logging::write_stderr(&text);
        }
        let _ = fs::remove_file(&taken);
    }

    /// Make the spool ready for `stamp`: empty it if it was made for
    /// something else. Then record `cursor` and drop what is out of the
    /// window.
    pub fn advance(&self, stamp: &Stamp, cursor: SegmentName) -> io::Result<()> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.dir)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists && self.dir.is_dir() {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        match self.stamp() {
            Some(old) if old == *stamp => {}
            Some(old) if old.same_source(stamp) && old.segment_size == stamp.segment_size => {
                // Depth or bound changed: the fetcher reads the new stamp.
                self.write("stamp", &stamp.render())?;
            }
            old => {
                if old.is_some() {
                    tracing::debug!(
                        "prefetch spool \"{}\" was made for another archive, cluster, server start or segment size: emptied",
                        self.dir.display()
                    );
                }
                self.stop_fetcher();
                self.empty()?;
                self.write("stamp", &stamp.render())?;
            }
        }
        self.write("cursor", &cursor.to_string())?;
        for name in self.segments() {
            let stale = SegmentName::parse(&name)
                .is_none_or(|n| !in_window(n, cursor, stamp.segment_size, stamp.depth));
            if stale {
                remove(&self.path(&name));
            }
        }
        Ok(())
    }

    /// Whether a fetcher failed lately.
    pub fn backing_off(&self) -> bool {
        fs::metadata(self.path("backoff"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < BACKOFF)
    }

    fn stop_fetcher(&self) {
        if let Some(pid) = self.fetcher() {
            // SAFETY: a plain kill(2); the pid holds our spool's lock.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

    fn empty(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_name() != "lock" {
                remove(&entry.path());
            }
        }
        Ok(())
    }

    /// After a failover, a fatal error or a shutdown: stop the fetcher and
    /// remove everything, so nothing fetched for this recovery outlives it.
    pub fn discard(&self) {
        if !self.exists() {
            return;
        }
        self.forward_log();
        self.stop_fetcher();
        // A fetcher that has not seen its SIGTERM yet may add a file
        // while the directory is removed: try again.
        let mut result = Ok(());
        for _ in 0..DISCARD_ATTEMPTS {
            result = fs::remove_dir_all(&self.dir);
            match &result {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return,
            }
        }
        if let Err(e) = result {
            tracing::warn!(
                "could not remove the prefetch spool \"{}\": {e}",
                self.dir.display()
            );
        }
    }

    /// Move the spooled `name` onto `dest` if it is there (or about to be)
    /// and checks out as that segment of `sysid`'s cluster.
    pub fn take(
        &self,
        name: SegmentName,
        sysid: Option<u64>,
        dest: &Path,
        flush: bool,
        keep_waiting: &mut dyn FnMut() -> bool,
    ) -> Taken {
        let key = name.to_string();
        let path = self.path(&key);
        let file = match self.open_when_ready(&key, keep_waiting) {
            Ok(file) => file,
            Err(why) => return why,
        };
        let ready = match validate::file(file, &name, sysid) {
            Probe::Ready(ready) => ready,
            other => {
                remove(&path);
                return Taken::Miss(format!(
                    "the spooled file is not usable: {}",
                    other.describe()
                ));
            }
        };
        if flush && let Err(e) = ready.file.sync_data() {
            return Taken::Miss(format!("could not flush the spooled file: {e}"));
        }
        let taken = |accepted| Taken::Hit {
            len: ready.len,
            accepted,
        };
        // The cursor first: the fetcher, which reads the cursor before and
        // after listing the spool, then never takes this segment for one
        // still to fetch. The restore records it again after the rename.
        let _ = self.write("cursor", &key);
        match fs::rename(&path, dest) {
            // Only the fetcher writes that name, and only with a validated
            // segment; still, what reached `dest` must be what was checked.
            Ok(()) => match fs::metadata(dest) {
                Ok(m) if same_inode(&m, &ready.file) => taken(ready.accepted),
                _ => {
                    remove(dest);
                    Taken::Miss("the spooled file changed during the rename".into())
                }
            },
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let verify = |copy: &File| validate::recheck(copy, &name, sysid, ready.accepted);
                match destination::deliver(&ready.file, ready.len, &path, dest, flush, &verify) {
                    Ok(()) => {
                        remove(&path);
                        taken(ready.accepted)
                    }
                    Err(destination::CopyError::Interrupted) => Taken::Interrupted,
                    Err(e) => Taken::Miss(format!("could not copy the spooled file: {e:?}")),
                }
            }
            Err(e) => Taken::Miss(format!("could not move the spooled file: {e}")),
        }
    }

    /// Open the spooled segment, waiting while the fetcher is writing it.
    fn open_when_ready(
        &self,
        key: &str,
        keep_waiting: &mut dyn FnMut() -> bool,
    ) -> Result<File, Taken> {
        let path = self.path(key);
        let deadline = Instant::now() + TAKE_WAIT;
        let mut noted = false;
        loop {
            match open::regular(&path) {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    remove(&path);
                    return Err(Taken::Miss(format!(
                        "the spooled file cannot be opened: {e}"
                    )));
                }
            }
            let fetching = fs::read_to_string(self.path("current"))
                .is_ok_and(|c| c.lines().any(|l| l == key))
                && self.fetcher().is_some();
            if !fetching {
                return Err(Taken::Miss("not in the spool".into()));
            }
            if !noted {
                noted = true;
                tracing::debug!("waiting for the fetcher to finish {key}");
            }
            if !keep_waiting() {
                return Err(Taken::Interrupted);
            }
            if Instant::now() >= deadline {
                return Err(Taken::Miss("the fetcher is still writing it".into()));
            }
            std::thread::sleep(TAKE_POLL);
        }
    }
}

fn same_inode(meta: &fs::Metadata, file: &File) -> bool {
    file.metadata()
        .is_ok_and(|f| f.ino() == meta.ino() && f.dev() == meta.dev())
}

fn try_lock(file: &File) -> bool {
    flock::exclusive(file, flock::Wait::NoWait).is_ok()
}

fn remove(path: &Path) {
    let _ = fs::remove_file(path);
}

/// Segments to fetch ahead: what the user said, else 8 where there is
/// something to hide (decompression, a download) in a server's call,
/// else none: a plain local archive is copied as fast as a spool would be.
pub fn depth(explicit: Option<u32>, server_call: bool, remote: bool, compressed: bool) -> u32 {
    match explicit {
        Some(n) => n,
        None if server_call && (remote || compressed) => DEFAULT_DEPTH,
        None => 0,
    }
}

/// Whether `dir` is `datadir` or beneath it, symbolic links resolved as
/// far as they exist.
pub fn inside(dir: &Path, datadir: &Path) -> bool {
    let resolve = |p: &Path| {
        p.ancestors()
            .find_map(|a| {
                let real = a.canonicalize().ok()?;
                Some(real.join(p.strip_prefix(a).ok()?))
            })
            .unwrap_or_else(|| p.to_path_buf())
    };
    resolve(dir).starts_with(resolve(datadir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    fn seg(s: &str) -> SegmentName {
        SegmentName::parse(s).unwrap()
    }

    #[test]
    fn the_next_segment_to_fetch() {
        let c = seg("000000010000000000000010");
        let held = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        // (spooled, depth, max bytes) -> next
        let table: &[(&[&str], u32, u64, Option<&str>)] = &[
            (&[], 4, 1 << 30, Some("000000010000000000000011")),
            (
                &["000000010000000000000011"],
                4,
                1 << 30,
                Some("000000010000000000000012"),
            ),
            (
                &["000000010000000000000011", "000000010000000000000013"],
                4,
                1 << 30,
                Some("000000010000000000000012"),
            ),
            (
                &[
                    "000000010000000000000011",
                    "000000010000000000000012",
                    "000000010000000000000013",
                    "000000010000000000000014",
                ],
                4,
                1 << 30,
                None,
            ),
            // The byte bound: two segments fit in 32 MiB.
            (
                &["000000010000000000000011", "000000010000000000000012"],
                8,
                2 * MIB16,
                None,
            ),
            // The first segment ahead is always allowed.
            (&[], 8, 1, Some("000000010000000000000011")),
            (&[], 0, 1 << 30, None),
            // Another timeline's file holds no place in the window.
            (
                &["000000020000000000000011"],
                2,
                1 << 30,
                Some("000000010000000000000011"),
            ),
        ];
        for (spooled, depth, max, want) in table {
            let got = next_to_fetch(c, MIB16, *depth, *max, &held(spooled));
            assert_eq!(
                got.map(|n| n.to_string()).as_deref(),
                *want,
                "{spooled:?} {depth} {max}"
            );
        }
    }

    #[test]
    fn the_window_crosses_a_log_boundary() {
        let c = seg("0000000100000001000000FF");
        let next = next_to_fetch(c, MIB16, 2, 1 << 30, &BTreeSet::new()).unwrap();
        assert_eq!(next.to_string(), "000000010000000200000000");
        assert!(in_window(next, c, MIB16, 2));
    }

    #[test]
    fn what_the_window_keeps() {
        let c = seg("000000010000000000000010");
        let table = [
            ("000000010000000000000011", true),
            ("000000010000000000000018", true),
            ("000000010000000000000019", false),
            ("000000010000000000000010", false),
            ("00000001000000000000000F", false),
            ("000000020000000000000011", false),
        ];
        for (name, keep) in table {
            assert_eq!(in_window(seg(name), c, MIB16, 8), keep, "{name}");
        }
    }

    #[test]
    fn a_stamp_reads_back() {
        let s = Stamp {
            archive: "s3://bucket/prefix".into(),
            sysid: Some(7),
            postmaster: Some((42, "1790000000".into())),
            segment_size: MIB16,
            depth: 8,
            max_bytes: 1 << 29,
            debug: true,
        };
        assert_eq!(Stamp::parse(&s.render()), Some(s.clone()));
        let none = Stamp {
            sysid: None,
            postmaster: None,
            ..s
        };
        assert_eq!(Stamp::parse(&none.render()), Some(none));
        assert_eq!(Stamp::parse("archive=/a\n"), None);
    }

    #[test]
    fn advancing_empties_a_spool_made_for_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        let stamp = Stamp {
            archive: "/archive".into(),
            sysid: Some(7),
            postmaster: Some((42, "1000".into())),
            segment_size: MIB16,
            depth: 4,
            max_bytes: 1 << 30,
            debug: false,
        };
        let cursor = seg("000000010000000000000010");
        let ahead = "000000010000000000000011";
        let changes = [
            Stamp {
                postmaster: Some((42, "2000".into())),
                ..stamp.clone()
            },
            Stamp {
                segment_size: 1 << 20,
                ..stamp.clone()
            },
            Stamp {
                archive: "/elsewhere".into(),
                ..stamp.clone()
            },
            Stamp {
                sysid: Some(8),
                ..stamp.clone()
            },
        ];
        for changed in changes {
            spool.advance(&stamp, cursor).unwrap();
            fs::write(spool.path(ahead), b"x").unwrap();
            // The same stamp, or only another depth, keeps the file.
            spool.advance(&stamp, cursor).unwrap();
            let deeper = Stamp {
                depth: 8,
                ..stamp.clone()
            };
            spool.advance(&deeper, cursor).unwrap();
            assert!(spool.path(ahead).exists());
            spool.advance(&changed, cursor).unwrap();
            assert!(!spool.path(ahead).exists(), "{changed:?}");
            assert_eq!(spool.stamp(), Some(changed));
        }
        // Moving on drops what fell out of the window.
        spool.advance(&stamp, cursor).unwrap();
        fs::write(spool.path(ahead), b"x").unwrap();
        spool.advance(&stamp, seg(ahead)).unwrap();
        assert!(spool.segments().is_empty());
        assert_eq!(spool.cursor(), Some(seg(ahead)));
    }

    #[test]
    fn the_default_spool_is_beside_the_data_directory() {
        assert_eq!(
            default_dir(Path::new("/var/lib/postgresql/15/main")),
            Some(PathBuf::from(
                "/var/lib/postgresql/15/main.pg_standby-spool"
            ))
        );
        assert_eq!(default_dir(Path::new("/")), None);
    }

    #[test]
    fn when_prefetch_is_on() {
        // (explicit, server call, remote, compressed) -> depth
        let table = [
            (None, true, false, false, 0),
            (None, true, false, true, 8),
            (None, true, true, false, 8),
            (None, false, true, true, 0),
            (Some(0), true, true, true, 0),
            (Some(3), false, false, false, 3),
            (Some(3), true, false, true, 3),
        ];
        for (explicit, server, remote, compressed, want) in table {
            assert_eq!(
                depth(explicit, server, remote, compressed),
                want,
                "{explicit:?} {server} {remote} {compressed}"
            );
        }
    }

    /// Inside the data directory, as the restore and --check both judge it:
    /// symbolic links resolved, a name that only starts alike is outside.
    #[test]
    fn what_is_inside_the_data_directory() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        fs::create_dir_all(data.join("pg_wal")).unwrap();
        fs::create_dir(root.path().join("data2")).unwrap();
        std::os::unix::fs::symlink(&data, root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(root.path().join("data2"), data.join("out")).unwrap();
        // (spool directory relative to root, inside?)
        let table = [
            ("data/spool", true),
            ("data/pg_wal/spool", true),
            ("data/not-yet/spool", true),
            ("link/spool", true),
            ("data.pg_standby-spool", false),
            ("data2/spool", false),
            ("data/out/spool", false),
        ];
        for (dir, want) in table {
            assert_eq!(inside(&root.path().join(dir), &data), want, "{dir}");
        }
    }
}
