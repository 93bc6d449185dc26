//! A real Azure Blob Storage emulator for tests: Azurite (Microsoft's own;
//! it checks SharedKey and SAS signatures), started on 127.0.0.1 with a
//! free port chosen by itself and a temporary directory, with the
//! well-known development account. Killed on drop, with its whole
//! process group (node). `scripts/install-azurite` installs it.
//!
//! Where the binary is looked for: `$AZURITE_BIN`, then
//! `$AZURITE_ROOT/node_modules/.bin/azurite-blob`,
//! `~/.cache/pg-standby/azurite/...` (the script's default;
//! `$XDG_CACHE_HOME` if set), `/var/cache/pg-standby-azurite/...` (where
//! .ci/run installs it), `$PATH`. Without it the tests fail, saying how to
//! install it: a skipped test would count as passed.
//!
//! Containers and blobs are made through the crate's own client
//! ([`pg_standby::store::azure::Store`]), which Azurite checks like any
//! other; the SharedKey signing it relies on has a fixed vector of its own
//! in the unit tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pg_standby::store::azure::{self, DEV_ACCOUNT, DEV_KEY, Store, Timeouts};

pub const ACCOUNT: &str = DEV_ACCOUNT;
pub const KEY: &str = DEV_KEY;

pub struct AzureServer {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// The blob endpoint, path-style: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub endpoint: String,
}

pub fn binary() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("AZURITE_BIN") {
        return Some(PathBuf::from(p));
    }
    let rel = "node_modules/.bin/azurite-blob";
    let mut candidates = Vec::new();
    if let Some(r) = env("AZURITE_ROOT") {
        candidates.push(PathBuf::from(r).join(rel));
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(c) = cache {
        candidates.push(c.join("pg-standby/azurite").join(rel));
    }
    candidates.push(PathBuf::from("/var/cache/pg-standby-azurite").join(rel));
    if let Some(path) = env("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("azurite-blob")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

impl AzureServer {
    /// A running server; panics when Azurite is not installed or does not
    /// come up.
    pub fn start() -> Self {
        let Some(bin) = binary() else {
            panic!(
                "Azurite, the Azure Blob Storage emulator of the azure:// tests, is not \
                 installed: run scripts/install-azurite (it needs npm, and prints the path to \
                 set as AZURITE_BIN)"
            );
        };
        let mut last = String::new();
        for _ in 0..2 {
            match Self::try_start(&bin) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("Azurite ({}) did not start: {last}", bin.display());
    }

    fn try_start(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(|e| e.to_string())?;
        let log_path = dir.path().join("azurite.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
            .arg(&data)
            .args(["--disableTelemetry", "--silent"])
            // Its own process group: node and whatever it starts are
            // killed together on drop.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        // "Azurite Blob service successfully listens on http://127.0.0.1:PORT"
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(port) = text
                .split("listens on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<u16>().ok()
                })
            {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}: {text}"));
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                return Err(format!("no port announced after 30 s: {text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Self {
            child,
            dir,
            port,
            endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
        })
    }

    /// The connection string of the development account at this server.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={}/;",
            self.endpoint
        )
    }

    /// A client for `azure://CONTAINER[/PREFIX]` with the account's key.
    pub fn store(&self, url: &str) -> Store {
        let cs = self.connection_string();
        let env = move |k: &str| (k == "AZURE_STORAGE_CONNECTION_STRING").then(|| cs.clone());
        Store::from_url_with(url, &env, Timeouts::default()).unwrap()
    }

    /// Creates a container.
    pub fn container(&self, name: &str) {
        self.store(&format!("azure://{name}"))
            .create_container()
            .unwrap_or_else(|e| panic!("creating container {name}: {e}\n{}", self.log()));
    }

    /// The variables a pg_standby process needs: account, key, endpoint.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT", ACCOUNT.into()),
            ("AZURE_STORAGE_KEY", KEY.into()),
            ("AZURE_STORAGE_BLOB_ENDPOINT", self.endpoint.clone()),
        ]
    }

    /// An account SAS for the blob service, signed with the account key
    /// (version 2020-12-06 and later:
    /// <https://learn.microsoft.com/en-us/rest/api/storageservices/create-account-sas#version-2020-12-06-and-later>):
    /// `permissions` such as "rld", valid for an hour from a minute ago.
    pub fn account_sas(&self, permissions: &str) -> String {
        let fmt = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let now = jiff::Timestamp::now();
        let start = fmt(now - jiff::SignedDuration::from_secs(60));
        let expiry = fmt(now + jiff::SignedDuration::from_secs(3600));
        let version = azure::API_VERSION;
        let (services, types, protocol) = ("b", "sco", "https,http");
        let text = format!(
            "{ACCOUNT}\n{permissions}\n{services}\n{types}\n{start}\n{expiry}\n\n{protocol}\n{version}\n\n"
        );
        let sig = azure::sign(KEY, &text).unwrap();
        let enc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        format!(
            "sv={version}&ss={services}&srt={types}&sp={permissions}&st={}&se={}&spr={}&sig={}",
            enc(&start),
            enc(&expiry),
            enc(protocol),
            enc(&sig)
        )
    }

    /// What the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

fn kill_group(child: &mut Child) {
    // SAFETY: signalling the process group our own child leads.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

impl Drop for AzureServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
