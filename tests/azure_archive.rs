//! Azure Blob Storage as the archive (`azure://CONTAINER/PREFIX`), through
//! the binary, against a real emulator (Azurite on 127.0.0.1, which checks
//! SharedKey and SAS signatures), what the Azure store alone does: its
//! credentials (a wrong key, none, a SAS, a connection string, a managed
//! identity and its expiry), listings longer than a page, and a lagging
//! standby's registry entry. The guarantees every store gives are in
//! tests/store_archive.rs, the bad days they share in
//! tests/remote_faults.rs.
#![cfg(feature = "azure")]

mod support;

#[path = "support/azure_server.rs"]
mod azure_server;

#[path = "support/azure_identity.rs"]
mod azure_identity;

#[path = "support/fault_proxy.rs"]
mod fault_proxy;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use azure_identity::IdentityServer;
use azure_server::{ACCOUNT, AzureServer, KEY};
use fault_proxy::{Action, FaultProxy};
use pg_standby::store::azure::Store;
use support::*;

const NAME: &str = "000000010000000000000005";
const URL: &str = "azure://wal/archive";

/// Every variable the store reads: each command starts from none of them,
/// whatever the environment of the test run holds.
const AZURE_VARS: [&str; 10] = [
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_BLOB_ENDPOINT",
    "AZURE_CLIENT_ID",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
];

struct Setup {
    env: Env,
    server: AzureServer,
    store: Store,
}

fn setup() -> Setup {
    let server = AzureServer::start();
    server.container("wal");
    let store = server.store(URL);
    Setup {
        env: Env::new(),
        server,
        store,
    }
}

impl Setup {
    /// A blob appears whole, as an upload does.
    fn put(&self, name: &str, bytes: &[u8]) {
        self.store
            .put(name, bytes)
            .unwrap_or_else(|e| panic!("uploading {name}: {e}\n{}", self.server.log()));
    }

    /// A command with no Azure variables but `vars`.
    fn command_with(&self, vars: &[(&str, String)], args: &[String]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.env.datadir).args(args);
        for v in AZURE_VARS {
            cmd.env_remove(v);
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// A command with the account, `key` and `endpoint`.
    fn command(&self, key: &str, endpoint: &str, args: &[String]) -> Command {
        self.command_with(
            &[
                ("AZURE_STORAGE_ACCOUNT", ACCOUNT.into()),
                ("AZURE_STORAGE_KEY", key.into()),
                ("AZURE_STORAGE_BLOB_ENDPOINT", endpoint.into()),
            ],
            args,
        )
    }

    fn args(&self, opts: &[&str], name: &str, extra: &[&str]) -> Vec<String> {
        let opts: Vec<&str> = ["-d", "-s", "2", "--bad-file-timeout", "1"]
            .iter()
            .chain(opts)
            .copied()
            .collect();
        self.env.restore_args_at(URL, &opts, name, extra)
    }

    fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .store
            .list("")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        v.sort();
        v
    }
}

/// Azurite checks SharedKey signatures: a wrong key is refused with 403,
/// a configuration error (exit 250) that names the credentials, never a
/// wait nor a promotion.
#[test]
fn a_wrong_key_stops_recovery_and_never_promotes() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let wrong = "d3Jvbmcga2V5IG9mIHRoZSByaWdodCBzaGFwZQ==";
    Job::launch(
        &s.env,
        s.command(wrong, &s.server.endpoint, &s.args(&[], NAME, &[])),
    )
    .finish_within(Duration::from_secs(10))
    .exited(FATAL)
    .within(Duration::from_secs(5))
    .logged("cannot be used")
    .logged("credentials from AZURE_STORAGE_KEY of account devstoreaccount1");
    assert!(!s.env.restored().exists());
}

/// No credentials anywhere (the identity endpoint points at a closed
/// port): exit 250 at once, naming each source tried.
#[test]
fn no_credentials_stop_recovery_naming_every_source() {
    let s = setup();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let done = Job::launch(
        &s.env,
        s.command_with(
            &[
                ("AZURE_STORAGE_ACCOUNT", ACCOUNT.into()),
                ("AZURE_STORAGE_BLOB_ENDPOINT", s.server.endpoint.clone()),
                ("AZURE_POD_IDENTITY_AUTHORITY_HOST", host.clone()),
            ],
            &s.args(&[], NAME, &[]),
        ),
    )
    .finish_within(Duration::from_secs(10));
    done.exited(FATAL).within(Duration::from_secs(5));
    for source in [
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_KEY",
        "IDENTITY_ENDPOINT",
        &format!("nothing answers at {host}"),
    ] {
        done.logged(source);
    }
}

/// A SAS token (here an account SAS Azurite verifies) instead of a key.
#[test]
fn a_sas_token_is_used() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    let sas = s.server.account_sas("rl");
    let done = Job::launch(
        &s.env,
        s.command_with(
            &[
                ("AZURE_STORAGE_SAS_TOKEN", format!("?{sas}")),
                ("AZURE_STORAGE_BLOB_ENDPOINT", s.server.endpoint.clone()),
            ],
            &s.args(&[], NAME, &[]),
        ),
    )
    .finish_within(Duration::from_secs(10));
    done.exited(0).logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);
    // Never the signature in the log.
    let sig = sas.split("sig=").nth(1).unwrap();
    assert!(!done.log.contains(sig), "{}", done.log);

    // A SAS signed with another key is refused: exit 250.
    let forged = sas.replace(sig, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D");
    fs::remove_file(s.env.restored()).unwrap();
    Job::launch(
        &s.env,
        s.command_with(
            &[
                ("AZURE_STORAGE_SAS_TOKEN", forged),
                ("AZURE_STORAGE_BLOB_ENDPOINT", s.server.endpoint.clone()),
            ],
            &s.args(&[], NAME, &[]),
        ),
    )
    .finish_within(Duration::from_secs(10))
    .exited(FATAL)
    .logged("AZURE_STORAGE_SAS_TOKEN were refused");
}

#[test]
fn a_connection_string_with_a_blob_endpoint_is_used() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    Job::launch(
        &s.env,
        s.command_with(
            &[
                (
                    "AZURE_STORAGE_CONNECTION_STRING",
                    s.server.connection_string(),
                ),
                // Overridden by the connection string.
                ("AZURE_STORAGE_ACCOUNT", "someoneelse".into()),
                ("AZURE_STORAGE_KEY", "d3Jvbmc=".into()),
            ],
            &s.args(&[], NAME, &[]),
        ),
    )
    .finish_within(Duration::from_secs(10))
    .exited(0)
    .logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);

    // Azurite's development account, moved to this server's port.
    fs::remove_file(s.env.restored()).unwrap();
    Job::launch(
        &s.env,
        s.command_with(
            &[(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!(
                    "UseDevelopmentStorage=true;BlobEndpoint={}",
                    s.server.endpoint
                ),
            )],
            &s.args(&[], NAME, &[]),
        ),
    )
    .finish_within(Duration::from_secs(10))
    .exited(0)
    .logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);
}

/// A listing longer than a page is followed to its end (NextMarker).
#[test]
fn listings_follow_every_page() {
    let s = setup();
    let names: Vec<String> = (1..=7)
        .map(|n| format!("0000000100000000{n:08X}"))
        .collect();
    for n in &names {
        s.put(n, b"x");
    }
    s.put("sub/0000000100000000000000AA", b"deeper");
    let mut store = s.server.store(URL);
    store.set_list_page(2);
    let mut listed: Vec<String> = store
        .list("00000001")
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    listed.sort();
    assert_eq!(listed, names);
    // Deleted, one request each; a name already gone counts as deleted.
    let mut gone = names[..3].to_vec();
    gone.push("000000010000000000000FFF".into());
    let report = store.delete_many(&gone).unwrap();
    assert_eq!((report.deleted, report.failed.len()), (4, 0));
    assert_eq!(store.list("00000001").unwrap().len(), 4);
}

/// A managed identity: the token comes from the instance metadata
/// protocol (here a local endpoint, through
/// AZURE_POD_IDENTITY_AUTHORITY_HOST as in Azure's SDKs) and every store
/// request carries it as a bearer token. Azurite verifies OAuth tokens
/// only over https with `--oauth basic`, so it cannot accept this one over
/// plain http: the test checks what was asked and sent (at the proxy), and
/// that the refusal stops recovery rather than promoting.
#[test]
fn a_managed_identity_token_is_fetched_and_sent() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let identity = IdentityServer::start();
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", s.server.port));
    let done = Job::launch(
        &s.env,
        s.command_with(
            &[
                (
                    "AZURE_STORAGE_BLOB_ENDPOINT",
                    format!("{}/{ACCOUNT}", proxy.endpoint),
                ),
                ("AZURE_POD_IDENTITY_AUTHORITY_HOST", identity.host.clone()),
                ("AZURE_CLIENT_ID", "standby-identity".into()),
            ],
            &s.args(&[], NAME, &[]),
        ),
    )
    .finish_within(Duration::from_secs(10));
    done.exited(FATAL)
        .logged("managed identity (instance metadata at");
    let asked = identity.seen();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let line = &asked[0].line;
    assert!(
        line.starts_with("GET /metadata/identity/oauth2/token?api-version=2018-02-01&")
            && line.contains("resource=https%3A%2F%2Fstorage.azure.com%2F")
            && line.contains("client_id=standby-identity"),
        "{line}"
    );
    assert!(
        asked[0]
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("metadata") && v == "true")
    );
    let seen = proxy.seen();
    assert!(!seen.is_empty());
    for req in &seen {
        let auth = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str());
        assert_eq!(
            auth,
            Some(format!("Bearer {}", azure_identity::TOKEN).as_str()),
            "{req:?}"
        );
        let version = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-ms-version"))
            .map(|(_, v)| v.as_str());
        assert!(version.is_some_and(|v| v >= "2017-11-09"), "{req:?}");
    }
    assert!(!done.log.contains(azure_identity::TOKEN), "{}", done.log);
}

/// The service says the token has expired before its time (401
/// `InvalidAuthenticationInfo`, injected at the proxy): the token is
/// dropped and a new one fetched for the next look, not taken for a
/// refused credential. (Azurite then refuses the bearer token over http,
/// which stops recovery.)
#[test]
fn an_expired_token_is_fetched_again() {
    let s = setup();
    let identity = IdentityServer::start();
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", s.server.port));
    proxy.then([Action::status(401, "InvalidAuthenticationInfo", None)]);
    let done = Job::launch(
        &s.env,
        s.command_with(
            &[
                (
                    "AZURE_STORAGE_BLOB_ENDPOINT",
                    format!("{}/{ACCOUNT}", proxy.endpoint),
                ),
                ("AZURE_POD_IDENTITY_AUTHORITY_HOST", identity.host.clone()),
            ],
            &s.args(&["-s", "1"], NAME, &[]),
        ),
    )
    .finish_within(Duration::from_secs(15));
    done.exited(FATAL)
        .logged("401 InvalidAuthenticationInfo")
        .logged("fetching a new token");
    assert_eq!(identity.seen().len(), 2, "{:?}", identity.seen());
}

/// Many standbys on one archive (the registry under `.pg_standby/`): on
/// Azure, entries are blobs written whole by one Put Blob, and a lagging
/// standby keeps what it needs until it catches up.
#[test]
fn a_lagging_standby_keeps_what_it_needs() {
    let s = setup();
    let seg = |n: u32| format!("00000001000000000000{n:04X}");
    for n in 1..=8 {
        s.put(&seg(n), &segment(&seg(n)));
    }
    // A standby of the same cluster: the same pg_control, its own pg_wal.
    let standby = |label: &str| {
        let dir = s.env.path(label);
        fs::create_dir_all(dir.join("pg_wal")).unwrap();
        fs::create_dir_all(dir.join("global")).unwrap();
        fs::copy(
            s.env.datadir.join("global/pg_control"),
            dir.join("global/pg_control"),
        )
        .unwrap();
        fs::write(dir.join("recovery.signal"), "").unwrap();
        dir
    };
    // One call as the server makes it; output() returns once the cleanup
    // it hands off has finished too (same stderr).
    let call = |data: &std::path::Path, n: u32, restart: u32| {
        let mut cmd = s.command(KEY, &s.server.endpoint, &[]);
        cmd.current_dir(data)
            .args(["-d", "--prefetch=0", URL, &seg(n), "pg_wal/RECOVERYXLOG"])
            .arg(seg(restart));
        let out = cmd.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{log}");
    };
    let segments = || {
        s.blobs()
            .into_iter()
            .filter(|n| n.len() == 24)
            .collect::<Vec<_>>()
    };
    let (a, b) = (standby("a"), standby("b"));
    call(&b, 3, 2);
    call(&a, 8, 7);
    assert_eq!(segments(), (2..=8).map(seg).collect::<Vec<_>>());
    assert_eq!(s.store.list(".pg_standby/standbys/").unwrap().len(), 2);
    call(&b, 8, 7);
    assert_eq!(segments(), vec![seg(7), seg(8)]);
}
