//! Azure Blob Storage as the archive (`azure://CONTAINER/PREFIX`), through
//! the binary, against a real emulator (Azurite on 127.0.0.1, which checks
//! SharedKey and SAS signatures): the same guarantees as a local archive
//! and as `s3://`, errors sorted for the exit contract (a missing blob
//! waits, a wrong key or a missing container stops recovery, an
//! unreachable endpoint is waited out and never promotes), and the store
//! on a bad day through the fault-injecting proxy.
#![cfg(feature = "azure")]

mod support;

#[path = "support/azure_server.rs"]
mod azure_server;

#[path = "support/azure_identity.rs"]
mod azure_identity;

#[path = "support/fault_proxy.rs"]
mod fault_proxy;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
        let mut args: Vec<String> = ["-d", "-s", "2", "--bad-file-timeout", "1"]
            .iter()
            .chain(opts)
            .map(|s| s.to_string())
            .collect();
        args.push(URL.into());
        args.push(name.into());
        args.push(if name.ends_with(".history") {
            "pg_wal/RECOVERYHISTORY".into()
        } else {
            "pg_wal/RECOVERYXLOG".into()
        });
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn start(&self, opts: &[&str], name: &str) -> Job {
        let cmd = self.command(KEY, &self.server.endpoint, &self.args(opts, name, &[]));
        Job::launch(&self.env, cmd)
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

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out.stdout
}

#[track_caller]
fn assert_delivered(env: &Env, bytes: &[u8]) {
    assert!(fs::read(env.restored()).unwrap() == bytes, "%p differs");
    assert_eq!(env.stray_files(), Vec::<String>::new());
}

/// A free loopback port with nothing listening on it.
fn closed_port() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/{ACCOUNT}", closed.local_addr().unwrap());
    drop(closed);
    endpoint
}

#[test]
fn a_present_segment_is_restored() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    s.start(&[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(0)
        .logged(&format!("restored {NAME} from {URL}/{NAME} after"));
    assert_delivered(&s.env, &bytes);
}

#[test]
fn a_segment_arriving_later_is_seen_within_a_fraction_of_a_second() {
    let s = setup();
    let bytes = segment(NAME);
    let mut job = s.start(&["-s", "30"], NAME);
    job.wait_ready();
    std::thread::sleep(Duration::from_millis(700));
    let put = Instant::now();
    s.put(NAME, &bytes);
    let done = job.finish_within(Duration::from_secs(10));
    done.exited(0);
    // The upload's own time counts too: Azurite takes a moment to store
    // 16 MiB.
    let lag = put.elapsed();
    assert!(lag < Duration::from_secs(3), "noticed after {lag:?}");
    assert_delivered(&s.env, &bytes);
}

#[test]
fn a_compressed_segment_is_restored() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(&format!("{NAME}.gz"), &gzip(&bytes));
    s.start(&[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(0)
        .logged(&format!("restored {NAME} from {URL}/{NAME}.gz ("));
    assert_delivered(&s.env, &bytes);
}

#[test]
fn a_missing_history_file_is_answered_at_once() {
    let s = setup();
    s.put("placeholder", b"x");
    s.start(&[], "00000002.history")
        .finish_within(Duration::from_secs(5))
        .exited(1)
        .within(Duration::from_secs(3));
    let history = b"1\t0/5000000\tno recovery target specified\n";
    s.put("00000002.history", history);
    s.start(&[], "00000002.history")
        .finish_within(Duration::from_secs(5))
        .exited(0);
    assert_eq!(
        fs::read(s.env.datadir.join("pg_wal/RECOVERYHISTORY")).unwrap(),
        history
    );
}

#[test]
fn a_missing_container_stops_recovery_at_once() {
    let s = setup();
    let mut args = s.args(&[], NAME, &[]);
    let url = args.iter().position(|a| a == URL).unwrap();
    args[url] = "azure://no-such-container/archive".into();
    Job::launch(&s.env, s.command(KEY, &s.server.endpoint, &args))
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .within(Duration::from_secs(5))
        .logged("ContainerNotFound");
    assert!(!s.env.restored().exists());
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

/// Connection refused: waited out with a WARNING, never "not there"; a
/// smart failover then stops recovery instead of promoting.
#[test]
fn an_unreachable_endpoint_is_waited_out_and_never_promotes() {
    let s = setup();
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let cmd = s.command(
        KEY,
        &closed_port(),
        &s.args(&["-t", &trigger_arg], NAME, &[]),
    );
    let mut job = Job::launch(&s.env, cmd);
    job.wait_log("cannot be reached");
    assert!(job.is_running());
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("not failing over past what it may hold");
}

#[test]
fn a_foreign_segment_is_never_delivered() {
    let s = setup();
    s.put(NAME, &segment_bytes(NAME, SEG, SYSID + 1, SEG));
    s.start(&[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("another cluster");
    assert!(!s.env.restored().exists());
}

#[test]
fn the_trigger_is_noticed_at_once_while_polling() {
    let s = setup();
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = s.start(&["-t", &trigger_arg, "-s", "30"], NAME);
    job.wait_ready();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    fs::write(&trigger, "fast").unwrap();
    job.finish_within(Duration::from_secs(5)).exited(1);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[test]
fn cleanup_removes_older_blobs_only() {
    let s = setup();
    for n in ["000000010000000000000002", "000000010000000000000003"] {
        s.put(n, b"old");
    }
    s.put("000000010000000000000003.gz", b"old");
    s.put("000000010000000000000003.00000028.backup", b"keep");
    s.put("00000002.history", b"keep");
    // Outside the prefix: never touched.
    s.server
        .store("azure://wal")
        .put("000000010000000000000001", b"other")
        .unwrap();
    s.put(NAME, &segment(NAME));
    let cmd = s.command(
        KEY,
        &s.server.endpoint,
        &s.args(&[], NAME, &["000000010000000000000004"]),
    );
    let job = Job::launch(&s.env, cmd);
    let log = job.log_file();
    job.finish_within(Duration::from_secs(10)).exited(0);
    // The removal runs apart, after the call has settled its exit status.
    wait_until(Duration::from_secs(10), "the cleanup", || {
        Ok(fs::read_to_string(&log)?.contains("archive cleanup: removed 3 segment(s)"))
    })
    .unwrap();
    assert_eq!(
        s.blobs(),
        [
            "000000010000000000000003.00000028.backup",
            NAME,
            "00000002.history"
        ]
    );
    let outside = s.server.store("azure://wal").list("").unwrap();
    assert!(
        outside.iter().any(|(n, _)| n == "000000010000000000000001"),
        "{outside:?}"
    );
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

/// A store that accepts the connection and never answers: SIGTERM ends
/// the call at once, not after the request timeout.
#[test]
fn sigterm_ends_a_call_stuck_in_a_request() {
    let s = setup();
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", s.server.port));
    proxy.always(Action::Hang);
    let endpoint = format!("{}/{ACCOUNT}", proxy.endpoint);
    let mut job = Job::launch(&s.env, s.command(KEY, &endpoint, &s.args(&[], NAME, &[])));
    job.wait_log("DEBUG: request ");
    wait_until(Duration::from_secs(5), "the first request", || {
        Ok(proxy.count() > 0)
    })
    .unwrap();
    let t0 = Instant::now();
    job.signal(libc::SIGTERM);
    job.finish_within(Duration::from_secs(5))
        .died_of(libc::SIGTERM);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

/// The store on a bad day, through the proxy: a failure for a while,
/// then good answers; the call warns, keeps waiting and restores the
/// segment whole.
#[track_caller]
fn waited_out(faults: Vec<Action>, warning: &str) {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", s.server.port));
    let n = faults.len();
    proxy.then(faults);
    let endpoint = format!("{}/{ACCOUNT}", proxy.endpoint);
    let args = s.args(&["-s", "1", "--bad-file-timeout", "2"], NAME, &[]);
    Job::launch(&s.env, s.command(KEY, &endpoint, &args))
        .finish_within(Duration::from_secs(30))
        .exited(0)
        .logged(warning)
        .logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);
    assert_eq!(proxy.pending(), 0);
    assert!(proxy.count() > n, "{:?}", proxy.seen());
}

fn status(status: u16, code: &'static str) -> Action {
    Action::Status {
        status,
        code,
        retry_after: None,
    }
}

#[test]
fn server_busy_is_waited_out() {
    waited_out(vec![status(503, "ServerBusy"); 3], "503 ServerBusy");
}

#[test]
fn a_body_cut_short_is_never_delivered() {
    waited_out(vec![Action::CutAfter(100_000)], "after 100000 bytes");
}

#[test]
fn reset_connections_are_waited_out() {
    waited_out(vec![Action::Reset; 3], "cannot be reached");
}

#[test]
fn an_html_page_instead_of_the_segment_is_never_delivered() {
    waited_out(vec![Action::Html], "text/html page");
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
    proxy.then([status(401, "InvalidAuthenticationInfo")]);
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
