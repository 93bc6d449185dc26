//! A real Cloud Storage emulator for tests: fake-gcs-server (its JSON API:
//! buckets, media uploads and downloads, paged listings, deletes; it checks
//! no credentials), started on 127.0.0.1 with a free port, objects in
//! memory, killed on drop. `scripts/install-fake-gcs-server` installs it.
//!
//! Where the binary is looked for: `$FAKE_GCS_SERVER_BIN`, then
//! `$FAKE_GCS_SERVER_ROOT/bin/fake-gcs-server`,
//! `~/.cache/pg-standby/fake-gcs-server/bin/fake-gcs-server` (the script's
//! default; `$XDG_CACHE_HOME` if set),
//! `/var/cache/pg-standby-fake-gcs/bin/fake-gcs-server` (where .ci/run
//! installs it), `$PATH`. Without it the tests fail, saying how to install
//! it: a skipped test would count as passed.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GcsServer {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

pub fn binary() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("FAKE_GCS_SERVER_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Some(r) = env("FAKE_GCS_SERVER_ROOT") {
        candidates.push(PathBuf::from(r).join("bin/fake-gcs-server"));
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(c) = cache {
        candidates.push(c.join("pg-standby/fake-gcs-server/bin/fake-gcs-server"));
    }
    candidates.push(PathBuf::from(
        "/var/cache/pg-standby-fake-gcs/bin/fake-gcs-server",
    ));
    if let Some(path) = env("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("fake-gcs-server")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// One HTTP/1.0 exchange (the server then answers without chunking and
/// closes): the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {target} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    conn.write_all(body).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers in the answer")?;
    let status = String::from_utf8_lossy(&answer[..split])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status in the answer")?;
    Ok((status, answer[split + 4..].to_vec()))
}

/// Percent-encodes a query value or a path segment.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl GcsServer {
    /// A running server; panics when fake-gcs-server is not installed or
    /// does not come up.
    pub fn start() -> Self {
        let Some(bin) = binary() else {
            panic!(
                "fake-gcs-server, the Cloud Storage emulator of the gs:// tests, is not \
                 installed: run scripts/install-fake-gcs-server (it prints the path to set as \
                 FAKE_GCS_SERVER_BIN)"
            );
        };
        // The free port is found by binding and releasing it (the server
        // does not report a port of its own choosing); another process may
        // take it meanwhile, so a server that exits at once is retried on a
        // new port.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("fake-gcs-server ({}) did not start: {last}", bin.display());
    }

    fn try_start(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log_path = dir.path().join("fake-gcs-server.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new(bin)
            .args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &port.to_string(), "-backend", "memory"])
            .args(["-public-host", &addr.to_string(), "-log-level", "warn"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            // Ready when the API answers, not merely when the port is open.
            if let Ok((200, _)) = http(addr, "GET", "/storage/v1/b?project=test", b"") {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("not answering on {addr} after 20 s"));
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

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Creates a bucket.
    pub fn bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let (status, answer) = http(
            self.addr(),
            "POST",
            "/storage/v1/b?project=test",
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            status,
            200,
            "creating bucket {name}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// Uploads an object: it appears whole, as an upload does.
    pub fn put(&self, bucket: &str, name: &str, bytes: &[u8]) {
        let target = format!(
            "/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
            pct(name)
        );
        let (status, answer) = http(self.addr(), "POST", &target, bytes).unwrap();
        assert_eq!(
            status,
            200,
            "uploading {name}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// The names of the objects under `prefix` (all of them, deeper ones
    /// too), sorted.
    pub fn names(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let target = format!("/storage/v1/b/{bucket}/o?prefix={}", pct(prefix));
        let (status, answer) = http(self.addr(), "GET", &target, b"").unwrap();
        let text = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(status, 200, "listing: {text}");
        // Each item's own "name" (access control entries have none).
        let mut names: Vec<String> = text
            .split("\"name\":\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// What the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("fake-gcs-server.log")).unwrap_or_default()
    }
}

impl Drop for GcsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
