//! Google Cloud Storage as the archive (`gs://BUCKET/PREFIX`), through the
//! binary, against a real emulator (fake-gcs-server on 127.0.0.1), what
//! the Cloud Storage store alone does: its rate limits, the token paths (a
//! service account's JWT signed with a fresh RSA key and checked by a
//! local token endpoint, and gcloud's refresh token), whose access token
//! must reach the store as `Authorization: Bearer`, objects stored
//! gzip-encoded, and the client alone (pages, limits, deletes). The
//! guarantees every store gives are in tests/store_archive.rs, the bad
//! days they share in tests/remote_faults.rs.

mod support;

#[path = "support/gcs_token.rs"]
mod gcs_token;

#[path = "support/stores.rs"]
mod stores;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use gcs_token::{TOKEN_PREFIX, TokenServer};
use stores::fault_proxy::{Action, FaultProxy};
use stores::gcs_server::GcsServer;
use stores::{Archive, Kind};
use support::*;

const NAME: &str = "000000010000000000000005";
const BUCKET: &str = "wal";
const PREFIX: &str = "archive/";

struct Setup {
    env: Env,
    // Dropped before the server: its threads forward to it.
    proxy: FaultProxy,
    server: GcsServer,
}

fn setup() -> Setup {
    let server = GcsServer::start();
    server.bucket(BUCKET);
    let proxy = FaultProxy::start(&server.endpoint);
    Setup {
        env: Env::new(),
        proxy,
        server,
    }
}

/// `host:port` of an `http://` endpoint, as STORAGE_EMULATOR_HOST takes it.
fn host(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

impl Setup {
    fn put(&self, name: &str, bytes: &[u8]) {
        self.server.put(BUCKET, &format!("{PREFIX}{name}"), bytes);
    }

    /// A call against `endpoint` (the server, the proxy, or nothing) with
    /// no credentials but the emulator's.
    fn command(&self, endpoint: &str, args: &[String]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.env.datadir)
            .args(args)
            .env("STORAGE_EMULATOR_HOST", host(endpoint))
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("CLOUDSDK_CONFIG")
            // Never the metadata address of the machine running the tests.
            .env("NO_GCE_CHECK", "true")
            .stdin(Stdio::null());
        cmd
    }

    fn args(&self, url: &str, opts: &[&str], name: &str, extra: &[&str]) -> Vec<String> {
        let opts: Vec<&str> = ["-d", "-s", "1", "--bad-file-timeout", "1"]
            .iter()
            .chain(opts)
            .copied()
            .collect();
        self.env.restore_args_at(url, &opts, name, extra)
    }

    /// A call straight to the emulator.
    fn start(&self, opts: &[&str], name: &str) -> Job {
        let cmd = self.command(
            &self.server.endpoint,
            &self.args("gs://wal/archive", opts, name, &[]),
        );
        Job::launch(&self.env, cmd)
    }
}

#[test]
fn rate_limits_are_waited_out() {
    Archive::new(Kind::Gcs).restores_after(
        vec![Action::status(429, "rateLimitExceeded", None); 2],
        "429",
    );
}

/// A service account key (GOOGLE_APPLICATION_CREDENTIALS) with the
/// emulator: the JWT is signed, the token endpoint checks it and hands out
/// a token, and every request reaches the store with that token. A 401
/// (a token revoked early) fetches a new token once and asks again.
#[test]
fn a_service_account_token_reaches_the_store() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    let (key, public) = gcs_token::key_pair(&s.env.path(""), "sa");
    let tokens = TokenServer::start(&public);
    let key_file = s.env.path("sa.json");
    fs::write(
        &key_file,
        gcs_token::service_account_json(&key, &tokens.uri),
    )
    .unwrap();
    // The first request is refused as with a revoked token.
    s.proxy.then([Action::status(401, "authError", None)]);
    // No fetcher: its process would fetch a token of its own.
    let args = s.args("gs://wal/archive", &["--prefetch=0"], NAME, &[]);
    let mut cmd = s.command(&s.proxy.endpoint, &args);
    cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &key_file);
    let done = Job::launch(&s.env, cmd).finish_within(Duration::from_secs(15));
    done.exited(0).logged(&format!("restored {NAME}"));
    assert!(!done.log.contains(TOKEN_PREFIX), "a token was logged");
    assert!(!done.log.contains("PRIVATE KEY"), "the key was logged");
    assert_delivered(&s.env, &bytes);
    assert_eq!(tokens.refused(), Vec::<String>::new());
    let issued = tokens.issued();
    assert_eq!(issued.len(), 2, "a new token after the 401");
    let seen = s.proxy.seen();
    let auth: Vec<Option<String>> = seen.iter().map(|r| r.authorization.clone()).collect();
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(auth[0], Some(format!("Bearer {}", issued[0])), "{seen:?}");
    for a in &auth[1..] {
        assert_eq!(
            a.as_deref(),
            Some(&*format!("Bearer {}", issued[1])),
            "{seen:?}"
        );
    }
}

/// A key the token endpoint does not accept (another key than the
/// account's): exit 250 at once, naming GOOGLE_APPLICATION_CREDENTIALS,
/// never a wait or a promotion.
#[test]
fn a_wrong_service_account_key_stops_recovery() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let (_, public) = gcs_token::key_pair(&s.env.path(""), "account");
    let (wrong, _) = gcs_token::key_pair(&s.env.path(""), "other");
    let tokens = TokenServer::start(&public);
    let key_file = s.env.path("sa.json");
    fs::write(
        &key_file,
        gcs_token::service_account_json(&wrong, &tokens.uri),
    )
    .unwrap();
    let args = s.args("gs://wal/archive", &[], NAME, &[]);
    let mut cmd = s.command(&s.server.endpoint, &args);
    cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &key_file);
    Job::launch(&s.env, cmd)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .within(Duration::from_secs(5))
        .logged("invalid_grant")
        .logged("GOOGLE_APPLICATION_CREDENTIALS=");
    assert_eq!(tokens.refused(), ["Invalid JWT Signature."]);
    assert!(!s.env.restored().exists());
}

/// No source of credentials at all (no emulator, no key, no gcloud file,
/// no metadata server): exit 250, naming every source tried.
#[test]
fn no_credentials_names_every_source() {
    let s = setup();
    let args = s.args("gs://wal/archive", &[], NAME, &[]);
    let mut cmd = s.command(&s.server.endpoint, &args);
    cmd.env_remove("STORAGE_EMULATOR_HOST")
        .env("HOME", s.env.path(""));
    Job::launch(&s.env, cmd)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("GOOGLE_APPLICATION_CREDENTIALS: not set")
        .logged("application_default_credentials.json: not found")
        .logged("NO_GCE_CHECK");
}

/// The client alone against the emulator: listings follow every page
/// (and leave out deeper names), a download stops at its limit, deletes
/// report what went.
#[cfg(feature = "gcs")]
#[test]
fn the_client_lists_every_page_downloads_within_limits_and_deletes() {
    use pg_standby::store::gcs::{Store, Timeouts};
    use pg_standby::store::{Error, ObjectStore};
    let s = setup();
    for n in 1..=5 {
        s.put(&format!("0000000100000000000000{n:02}"), &[n as u8; 10]);
    }
    s.put("sub/deeper", b"x");
    let host = host(&s.proxy.endpoint).to_string();
    let env = move |k: &str| (k == "STORAGE_EMULATOR_HOST").then(|| host.clone());
    let mut store = Store::from_url_with("gs://wal/archive", &env, Timeouts::default()).unwrap();
    store.set_list_page(2);
    let mut names = store.list("0000").unwrap();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.iter().all(|(_, size)| *size == 10), "{names:?}");
    let pages = s
        .proxy
        .seen()
        .iter()
        .filter(|r| r.target.contains("pageToken="))
        .count();
    assert_eq!(pages, 2, "{:?}", s.proxy.seen());
    assert_eq!(
        store.list("").unwrap().len(),
        5,
        "deeper names are not listed"
    );

    let mut out = Vec::new();
    let n = store
        .get_to("000000010000000000000003", &mut out, 10, &|| false)
        .unwrap();
    assert_eq!((n, out), (10, vec![3u8; 10]));
    let too_large = store.get_to("000000010000000000000003", &mut Vec::new(), 9, &|| false);
    assert!(
        matches!(too_large, Err(Error::TooLarge { .. })),
        "{too_large:?}"
    );
    let missing = store.get_to("000000010000000000000009", &mut Vec::new(), 10, &|| false);
    assert!(matches!(missing, Err(Error::NotFound)), "{missing:?}");

    let gone: Vec<String> = [
        "000000010000000000000001",
        "000000010000000000000002",
        "nothing",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    let report = store.delete_many(&gone).unwrap();
    assert_eq!((report.deleted, report.failed.len()), (3, 0));
    assert_eq!(store.list("0000").unwrap().len(), 3);
    store.verify().unwrap();
    assert_eq!(
        store.credentials_source(),
        "none (STORAGE_EMULATOR_HOST, an emulator)"
    );
}

/// gcloud's user credentials (`authorized_user`, as `gcloud auth
/// application-default login` writes them) named by
/// GOOGLE_APPLICATION_CREDENTIALS: the refresh token is exchanged and the
/// access token reaches the store. (The same file in `$CLOUDSDK_CONFIG` is
/// the next source; with STORAGE_EMULATOR_HOST only the variable is read,
/// so that order is tested in `store::gcs`'s unit tests.)
#[test]
fn gclouds_user_credentials_are_exchanged_for_a_token() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    let (_, public) = gcs_token::key_pair(&s.env.path(""), "unused");
    let tokens = TokenServer::start(&public);
    let user = s.env.path("user.json");
    fs::write(&user, gcs_token::authorized_user_json(&tokens.uri)).unwrap();
    let args = s.args("gs://wal/archive", &["--prefetch=0"], NAME, &[]);
    let mut cmd = s.command(&s.proxy.endpoint, &args);
    cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &user);
    let done = Job::launch(&s.env, cmd).finish_within(Duration::from_secs(15));
    done.exited(0).logged(&format!("restored {NAME}"));
    assert!(!done.log.contains(gcs_token::REFRESH_TOKEN), "{}", done.log);
    assert_delivered(&s.env, &bytes);
    assert_eq!(tokens.refused(), Vec::<String>::new());
    assert_eq!(tokens.issued(), [format!("{TOKEN_PREFIX}1")]);
    let want = format!("Bearer {TOKEN_PREFIX}1");
    assert!(
        s.proxy
            .seen()
            .iter()
            .all(|r| r.authorization.as_deref() == Some(want.as_str())),
        "{:?}",
        s.proxy.seen()
    );
}

/// An object stored gzip-encoded (`gcloud storage cp -Z`, `gsutil cp -Z`,
/// or `Content-Encoding: gzip` set by the archive command) is served
/// decompressed ("decompressive transcoding"), while its `x-goog-hash` is
/// of the stored, compressed bytes
/// (<https://cloud.google.com/storage/docs/transcoding>): the hashes say
/// nothing about the body, and a segment served whole must be restored, not
/// taken for one changed on the way and waited on forever.
#[test]
fn a_segment_stored_gzip_encoded_is_restored() {
    let s = setup();
    let bytes = segment(NAME);
    let target = format!(
        "/upload/storage/v1/b/{BUCKET}/o?uploadType=media&contentEncoding=gzip&name={}",
        stores::gcs_server::pct(&format!("{PREFIX}{NAME}"))
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.server.port));
    let (status, answer) = stores::gcs_server::http(addr, "POST", &target, &gzip(&bytes)).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    s.start(&[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(0)
        .logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);
}

/// A timeline history file changed on the way (or a store failing) at
/// the server's question for it: the call stops, and the operator is
/// never told to remove the file from the archive, which holds it intact
/// (a history file removed lets a later promotion pick its timeline again).
#[test]
fn a_history_file_changed_on_the_way_is_never_to_be_removed() {
    let s = setup();
    let history = "00000002.history";
    s.put(history, b"1\t0/5000000\tno recovery target specified\n");
    s.proxy.always(Action::ByRequest {
        get: Box::new(Action::FlipByte(5)),
        other: Box::new(Action::Pass),
    });
    let cmd = s.command(
        &s.proxy.endpoint,
        &s.args("gs://wal/archive", &[], history, &[]),
    );
    let done = Job::launch(&s.env, cmd).finish_within(Duration::from_secs(10));
    done.exited(FATAL).logged("changed on the way");
    assert!(!done.log.contains("remove or replace"), "{}", done.log);
    assert!(!s.env.path("pg_wal/RECOVERYHISTORY").exists());
}
