//! Fixtures for running the binary against temporary archives: synthetic
//! segments with a real long page header, and a data directory with a
//! signal file and pg_control.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pg_standby::header::LongPageHeader;
use pg_standby::wal::SegmentName;

use super::{Job, binary};

pub const MIB: u64 = 1024 * 1024;
pub const SEG: u64 = 16 * MIB;
pub const SYSID: u64 = 7_300_000_000_000_000_001;
pub const FATAL: i32 = 250;

/// A segment as a PostgreSQL 15 server writes it: the long page header of
/// `name`, padded to `len` bytes (longer or shorter than `seg_size` to make
/// faulty files).
pub fn segment_bytes(name: &str, seg_size: u64, sysid: u64, len: u64) -> Vec<u8> {
    let parsed = SegmentName::parse(name).unwrap();
    let header = LongPageHeader::for_segment(&parsed, seg_size as u32, sysid).unwrap();
    let mut bytes = header.to_bytes().to_vec();
    bytes.resize(len as usize, 0);
    // Something recognisable past the header, to compare copies.
    let mark = format!("payload of {name}");
    if let Some(dest) = bytes.get_mut(8192..8192 + mark.len()) {
        dest.copy_from_slice(mark.as_bytes());
    }
    bytes
}

pub fn segment(name: &str) -> Vec<u8> {
    segment_bytes(name, SEG, SYSID, SEG)
}

/// A temporary archive and a data directory (the server's working
/// directory) with pg_control and a recovery signal file.
pub struct Env {
    pub root: tempfile::TempDir,
    pub archive: PathBuf,
    pub datadir: PathBuf,
}

impl Env {
    /// Archive recovery (`recovery.signal`): the mode pg_standby waits in.
    pub fn new() -> Self {
        Self::with_signal("recovery.signal")
    }

    pub fn standby_mode() -> Self {
        Self::with_signal("standby.signal")
    }

    pub fn with_signal(signal: &str) -> Self {
        Self::in_dir(&std::env::temp_dir(), signal)
    }

    /// An archive-recovery environment under `parent` (e.g. a tmpfs).
    pub fn new_in(parent: &Path) -> Self {
        Self::in_dir(parent, "recovery.signal")
    }

    fn in_dir(parent: &Path, signal: &str) -> Self {
        let root = tempfile::tempdir_in(parent).unwrap();
        let archive = root.path().join("archive");
        let datadir = root.path().join("data");
        fs::create_dir_all(&archive).unwrap();
        fs::create_dir_all(datadir.join("pg_wal")).unwrap();
        fs::create_dir_all(datadir.join("global")).unwrap();
        let mut control = SYSID.to_ne_bytes().to_vec();
        control.resize(8192, 0);
        fs::write(datadir.join("global/pg_control"), control).unwrap();
        if !signal.is_empty() {
            fs::write(datadir.join(signal), "").unwrap();
        }
        Self {
            root,
            archive,
            datadir,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn archive_file(&self, name: &str) -> PathBuf {
        self.archive.join(name)
    }

    pub fn restored(&self) -> PathBuf {
        self.datadir.join("pg_wal/RECOVERYXLOG")
    }

    /// Put a file into the archive atomically (write elsewhere, rename in),
    /// as a careful archive_command does.
    pub fn archive_atomically(&self, name: &str, bytes: &[u8]) {
        let tmp = self.root.path().join(format!("{name}.incoming"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.archive.join(name)).unwrap();
    }

    /// The command as the server runs it: in the data directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.datadir).args(args);
        cmd
    }

    /// `pg_standby [opts] ARCHIVE name pg_wal/RECOVERYXLOG [extra]`
    pub fn restore_args(&self, opts: &[&str], name: &str, extra: &[&str]) -> Vec<String> {
        self.restore_args_at(&self.archive.display().to_string(), opts, name, extra)
    }

    /// [`Env::restore_args`] with another archive (an object storage URL).
    pub fn restore_args_at(
        &self,
        archive: &str,
        opts: &[&str],
        name: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        args.push(archive.to_string());
        args.push(name.to_string());
        args.push(if name.ends_with(".history") {
            "pg_wal/RECOVERYHISTORY".to_string()
        } else {
            "pg_wal/RECOVERYXLOG".to_string()
        });
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub fn run(&self, opts: &[&str], name: &str, extra: &[&str]) -> Output {
        let args = self.restore_args(opts, name, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.command(&args).output().unwrap()
    }

    /// Start the binary with stderr going to a file, so the test can
    /// read the log while it runs.
    pub fn spawn(&self, opts: &[&str], name: &str, extra: &[&str]) -> Job {
        let args = self.restore_args(opts, name, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Job::launch(self, self.command(&args))
    }

    /// Files in pg_wal other than the restored one: must stay empty.
    pub fn stray_files(&self) -> Vec<String> {
        fs::read_dir(self.datadir.join("pg_wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "RECOVERYXLOG" && n != "RECOVERYHISTORY")
            .collect()
    }
}

impl Drop for Env {
    /// Every process working here (a fetcher, a cleanup process the binary
    /// handed off to) ends before the files are removed: a writer racing
    /// the removal would leave a half-removed tree behind.
    fn drop(&mut self) {
        super::pg::end_processes_in(self.root.path());
    }
}

pub fn write_slowly(path: &Path, bytes: &[u8], chunks: usize, pause: Duration) {
    let mut f = fs::File::create(path).unwrap();
    for chunk in bytes.chunks(bytes.len().div_ceil(chunks)) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(pause);
    }
}

/// The tool's output for `data`; a missing tool fails the test.
pub fn compress(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}: apt-get install gzip zstd lz4 bzip2 xz-utils"));
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    // Fed from another thread: a pipe holds less than a segment.
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    compress("gzip", &["-c"], data)
}

/// `bytes` reached `%p` whole, and nothing else is left in pg_wal.
#[track_caller]
pub fn assert_delivered(env: &Env, bytes: &[u8]) {
    let got = fs::read(env.restored()).expect("nothing at %p");
    assert_eq!(got.len(), bytes.len(), "size at %p");
    assert!(got == bytes, "%p differs from the archive file");
    assert_eq!(env.stray_files(), Vec::<String>::new(), "stray files");
}
