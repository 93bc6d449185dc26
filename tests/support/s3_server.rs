//! A real S3-compatible server for tests: s3s-fs (it checks SigV4
//! signatures and keeps objects as files ROOT/BUCKET/KEY), started on
//! 127.0.0.1 with a free port, a temporary root and fixed credentials,
//! killed on drop. `scripts/install-s3s-fs` installs it.
//!
//! Where the binary is looked for: `$S3S_FS_BIN`, then
//! `$S3S_FS_ROOT/bin/s3s-fs`, `~/.cache/pg-standby/s3s-fs/bin/s3s-fs` (the
//! script's default; `$XDG_CACHE_HOME` if set),
//! `/var/cache/pg-standby-s3s-fs/bin/s3s-fs` (where .ci/run installs it),
//! `$CARGO_HOME/bin`, `~/.cargo/bin`, `$PATH`. Without it the tests fail,
//! saying how to install it: a skipped test would count as passed.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "pgstandbytestkey";
pub const SECRET_KEY: &str = "pgstandby/test+secret/0123456789";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    pub endpoint: String,
}

impl S3Server {
    /// The server's process, for the benchmarks' CPU accounting.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub fn binary() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("S3S_FS_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Some(r) = env("S3S_FS_ROOT") {
        candidates.push(PathBuf::from(r).join("bin/s3s-fs"));
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(c) = cache {
        candidates.push(c.join("pg-standby/s3s-fs/bin/s3s-fs"));
    }
    candidates.push(PathBuf::from("/var/cache/pg-standby-s3s-fs/bin/s3s-fs"));
    if let Some(c) = env("CARGO_HOME") {
        candidates.push(PathBuf::from(c).join("bin/s3s-fs"));
    }
    if let Some(h) = env("HOME") {
        candidates.push(PathBuf::from(h).join(".cargo/bin/s3s-fs"));
    }
    if let Some(path) = env("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("s3s-fs")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

impl S3Server {
    /// A running server; panics when s3s-fs is not installed or does not
    /// come up.
    pub fn start() -> Self {
        let Some(bin) = binary() else {
            panic!(
                "s3s-fs, the S3-compatible server of the object storage tests, is not \
                 installed: run scripts/install-s3s-fs (it prints the path to set as S3S_FS_BIN)"
            );
        };
        // The free port is found by binding and releasing it; another
        // process may take it meanwhile, so a server that exits at once is
        // retried on a new port.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("s3s-fs ({}) did not start: {last}", bin.display());
    }

    fn try_start(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path().join("root");
        fs::create_dir(&root).map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = fs::File::create(dir.path().join("s3s-fs.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(dir.path().join("s3s-fs.log")).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("not listening on {addr} after 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            dir,
            port,
            endpoint: format!("http://{addr}"),
        })
    }

    /// The directory the server keeps buckets in.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Creates a bucket (a top-level directory of the root); returns it.
    pub fn bucket(&self, name: &str) -> PathBuf {
        let p = self.root().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The AWS variables a client (or a pg_standby process) needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
        ]
    }

    /// What the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
