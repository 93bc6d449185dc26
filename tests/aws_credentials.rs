//! Credentials as cloud servers get them, end to end: each source of the
//! AWS chain is a local endpoint speaking the documented protocol (see
//! tests/support/cred_server.rs), and the keys it hands out must then be
//! accepted by the real S3 server (s3s-fs), which checks every signature:
//! a restore that succeeds proves the right keys signed it.
//!
//! No test here may reach a real metadata address: every command sets
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` to a local server or disables the
//! metadata service.

mod support;

#[path = "support/s3_server.rs"]
mod s3_server;

#[path = "support/cred_server.rs"]
mod cred_server;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cred_server::{CONTAINER_PATH, CredServer, Hand};
use s3_server::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use support::*;

const NAME: &str = "000000010000000000000005";

struct Setup {
    env: Env,
    server: S3Server,
}

fn setup() -> Setup {
    let server = S3Server::start();
    server.bucket("wal");
    Setup {
        env: Env::new(),
        server,
    }
}

fn hand(lifetime: Duration) -> Hand {
    Hand {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        lifetime,
        container_token: None,
        web_identity_token_file: None,
        malformed: false,
        source_key: None,
    }
}

/// Every secret a test's servers hand out or are given.
const SECRETS: [&str; 6] = [
    SECRET_KEY,
    "session-1",
    "session-2",
    "web-identity-token",
    "pod-identity-token",
    "source-secret",
];

/// Every output of every call a test made: no secret in any of them, at
/// `-d` (every call here runs with it).
impl Drop for Setup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for entry in fs::read_dir(self.env.root.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                no_secrets(&fs::read_to_string(&path).unwrap());
            }
        }
    }
}

impl Setup {
    fn put(&self, name: &str, bytes: &[u8]) {
        let dir = self.server.root().join("wal/archive");
        fs::create_dir_all(&dir).unwrap();
        let tmp = self.env.path(&format!("{name}.upload"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, dir.join(name)).unwrap();
    }

    /// A call with no AWS variable but the store's endpoint, the region,
    /// an empty HOME and `vars`; the metadata service is off unless
    /// `vars` names one.
    fn start(&self, opts: &[&str], vars: &[(&str, String)]) -> Job {
        let home = self.env.path("home");
        fs::create_dir_all(&home).unwrap();
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.env.datadir)
            .args(["-d", "-s", "1", "--bad-file-timeout", "2"])
            .args(opts)
            .args(["s3://wal/archive", NAME, "pg_wal/RECOVERYXLOG"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("AWS_ENDPOINT_URL_S3", &self.server.endpoint)
            .env("AWS_REGION", REGION)
            .stdin(Stdio::null());
        if !vars.iter().any(|(k, _)| k.starts_with("AWS_EC2_METADATA")) {
            cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Job::launch(&self.env, cmd)
    }
}

#[track_caller]
fn no_secrets(log: &str) {
    for secret in SECRETS {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}

#[track_caller]
fn restored_with(s: &Setup, opts: &[&str], vars: &[(&str, String)], source: &str) -> Done {
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    let done = s.start(opts, vars).finish_within(Duration::from_secs(20));
    done.exited(0)
        .logged(&format!("restored {NAME}"))
        .logged(source);
    assert!(fs::read(s.env.restored()).unwrap() == bytes);
    no_secrets(&done.log);
    done
}

#[test]
fn instance_metadata_credentials_sign_requests() {
    let s = setup();
    let imds = CredServer::start(hand(Duration::from_secs(3600)));
    // One process: the prefetch worker would fetch its own credentials.
    restored_with(
        &s,
        &["--prefetch=0"],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint.clone())],
        "instance metadata (IMDSv2)",
    );
    let seen: Vec<String> = imds.seen().into_iter().map(|s| s.line).collect();
    assert_eq!(
        seen,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/standby-role",
        ],
        "IMDSv2: a session token first, then the role and its credentials, once"
    );
}

#[test]
fn container_credentials_with_a_token_file() {
    let s = setup();
    let mut h = hand(Duration::from_secs(3600));
    h.container_token = Some("pod-identity-token".into());
    let agent = CredServer::start(h);
    let token_file = s.env.path("eks-token");
    fs::write(&token_file, "pod-identity-token\n").unwrap();
    restored_with(
        &s,
        &[],
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}{CONTAINER_PATH}", agent.endpoint),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            // The file wins over the variable, as in the SDKs.
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "stale".into()),
        ],
        "container credentials",
    );
    assert!(agent.issued() >= 1);
    assert!(
        agent
            .seen()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("pod-identity-token"))
    );
}

#[test]
fn web_identity_through_sts() {
    let s = setup();
    let token_file = s.env.path("web-identity");
    fs::write(&token_file, "web-identity-token-1").unwrap();
    let mut h = hand(Duration::from_secs(3600));
    h.web_identity_token_file = Some(token_file.clone());
    let sts = CredServer::start(h);
    restored_with(
        &s,
        &[],
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/standby".into(),
            ),
            ("AWS_ENDPOINT_URL_STS", sts.endpoint.clone()),
        ],
        "role arn:aws:iam::123456789012:role/standby through STS",
    );
    assert!(sts.issued() >= 1);
}

#[test]
fn credential_process_of_a_profile() {
    let s = setup();
    let script = s.env.path("creds.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{ACCESS_KEY}\", \
             \"SecretAccessKey\": \"{SECRET_KEY}\"}}'\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let config = s.env.path("aws-config");
    fs::write(
        &config,
        format!(
            "[profile standby]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    restored_with(
        &s,
        &[],
        &[
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_PROFILE", "standby".into()),
        ],
        "restored",
    );
}

/// The environment's keys win: no metadata request at all, so a host
/// with keys pays nothing for the rest of the chain.
#[test]
fn environment_keys_come_first() {
    let s = setup();
    let imds = CredServer::start(hand(Duration::from_secs(3600)));
    restored_with(
        &s,
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint.clone()),
        ],
        "restored",
    );
    assert!(imds.seen().is_empty(), "{:?}", imds.seen());
}

/// Container credentials come before instance metadata.
#[test]
fn container_credentials_come_before_instance_metadata() {
    let s = setup();
    let agent = CredServer::start(hand(Duration::from_secs(3600)));
    let imds = CredServer::start(hand(Duration::from_secs(3600)));
    restored_with(
        &s,
        &[],
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}{CONTAINER_PATH}", agent.endpoint),
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint.clone()),
        ],
        "restored",
    );
    assert!(agent.issued() >= 1);
    assert!(imds.seen().is_empty());
}

/// Credentials that expire while the call waits are fetched again, and
/// the web identity token file is read again for each exchange (the
/// kubelet rotates it).
#[test]
fn credentials_expiring_during_a_wait_are_refreshed_with_the_rotated_token() {
    let s = setup();
    let token_file = s.env.path("web-identity");
    fs::write(&token_file, "web-identity-token-1").unwrap();
    let mut h = hand(Duration::from_secs(2));
    h.web_identity_token_file = Some(token_file.clone());
    let sts = CredServer::start(h);
    let mut job = s.start(
        &[],
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/standby".into(),
            ),
            ("AWS_ENDPOINT_URL_STS", sts.endpoint.clone()),
        ],
    );
    job.wait_ready();
    wait_until(Duration::from_secs(10), "the first exchange", || {
        Ok(sts.issued() >= 1)
    })
    .unwrap();
    // Rotated: the old token is no longer accepted.
    let rotated = s.env.path("web-identity.new");
    fs::write(&rotated, "web-identity-token-2").unwrap();
    fs::rename(&rotated, &token_file).unwrap();
    // Past the first credentials' expiry.
    let first_expired = Instant::now() + Duration::from_secs(2);
    wait_until(Duration::from_secs(15), "a second exchange", || {
        Ok(sts.issued() >= 2 && Instant::now() > first_expired)
    })
    .unwrap();
    s.put(NAME, &segment(NAME));
    let done = job.finish_within(Duration::from_secs(20));
    done.exited(0);
    no_secrets(&done.log);
    let tokens: Vec<String> = sts
        .seen()
        .into_iter()
        .filter_map(|r| r.web_identity_token)
        .collect();
    assert_eq!(
        tokens.first().map(String::as_str),
        Some("web-identity-token-1")
    );
    assert!(
        tokens.iter().any(|t| t == "web-identity-token-2"),
        "{tokens:?}"
    );
}

/// No metadata service where one is looked for (a laptop, bare metal):
/// the call ends at once with exit 250 and names every source it tried.
#[test]
fn no_source_at_all_names_each_one_tried() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let done = s
        .start(&[], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)])
        .finish_within(Duration::from_secs(10));
    done.exited(FATAL)
        .within(Duration::from_secs(5))
        .logged("no credentials found; tried, in order: environment");
    for source in [
        "web identity",
        "profile \"default\"",
        "container",
        "instance metadata",
    ] {
        assert!(done.log.contains(source), "{source}:\n{}", done.log);
    }
    assert!(!s.env.restored().exists());
}

/// A container endpoint that is configured but down is waited out (the
/// agent restarts), with a WARNING; a smart failover then stops recovery.
#[test]
fn a_configured_endpoint_that_is_down_is_waited_out_and_never_promotes() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{CONTAINER_PATH}", closed.local_addr().unwrap());
    drop(closed);
    let trigger = s.env.path("trigger");
    let mut job = s.start(
        &["-t", &trigger.display().to_string()],
        &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)],
    );
    job.wait_log("container credentials at");
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(15))
        .exited(FATAL)
        .logged("not failing over past what it may hold");
}

/// An endpoint that answers something other than credentials: a clear
/// error and exit 250, never 1; the answer (which could hold secrets) is
/// not quoted.
#[test]
fn malformed_answers_stop_recovery() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let mut h = hand(Duration::from_secs(3600));
    h.malformed = true;
    let imds = CredServer::start(h.clone());
    let done = s
        .start(
            &[],
            &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint.clone())],
        )
        .finish_within(Duration::from_secs(10));
    done.exited(FATAL).logged("malformed answer");
    assert!(!done.log.contains("<html>"), "{}", done.log);

    let token_file = s.env.path("web-identity");
    fs::write(&token_file, "web-identity-token-1").unwrap();
    h.web_identity_token_file = Some(token_file.clone());
    let sts = CredServer::start(h);
    s.start(
        &[],
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/standby".into(),
            ),
            ("AWS_ENDPOINT_URL_STS", sts.endpoint.clone()),
        ],
    )
    .finish_within(Duration::from_secs(10))
    .exited(FATAL)
    .logged("malformed answer");
}

/// STS refuses the token (a trust policy that does not name this
/// cluster's issuer): a configuration error, exit 250.
#[test]
fn a_refused_web_identity_stops_recovery() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let token_file = s.env.path("web-identity");
    fs::write(&token_file, "web-identity-token-1").unwrap();
    let mut h = hand(Duration::from_secs(3600));
    h.web_identity_token_file = Some(s.env.path("another-token"));
    let sts = CredServer::start(h);
    let done = s
        .start(
            &[],
            &[
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    token_file.display().to_string(),
                ),
                (
                    "AWS_ROLE_ARN",
                    "arn:aws:iam::123456789012:role/standby".into(),
                ),
                ("AWS_ENDPOINT_URL_STS", sts.endpoint.clone()),
            ],
        )
        .finish_within(Duration::from_secs(10));
    done.exited(FATAL).logged("InvalidIdentityToken");
    no_secrets(&done.log);
}

/// The keys an endpoint hands out are the ones that sign: other keys are
/// refused by the store (403), a configuration error, exit 250.
#[test]
fn keys_from_the_endpoint_are_the_ones_that_sign() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let mut h = hand(Duration::from_secs(3600));
    h.secret_key = "not-the-store-secret".into();
    let imds = CredServer::start(h);
    s.start(
        &[],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint.clone())],
    )
    .finish_within(Duration::from_secs(10))
    .exited(FATAL)
    .logged("403");
    assert!(!s.env.restored().exists());
}

/// A profile that assumes a role with another profile's keys: the STS
/// request is signed with the source keys, the role's keys sign the
/// store's requests.
#[test]
fn a_role_assumed_with_a_source_profile() {
    let s = setup();
    let mut h = hand(Duration::from_secs(3600));
    h.source_key = Some("AKIDSOURCEPROFILE".into());
    let sts = CredServer::start(h);
    let credentials = s.env.path("aws-credentials");
    fs::write(
        &credentials,
        "[base]\naws_access_key_id = AKIDSOURCEPROFILE\naws_secret_access_key = source-secret\n",
    )
    .unwrap();
    let config = s.env.path("aws-config");
    fs::write(
        &config,
        "[profile standby]\nrole_arn = arn:aws:iam::123456789012:role/standby\n\
         source_profile = base\nrole_session_name = standby-1\n",
    )
    .unwrap();
    let done = restored_with(
        &s,
        &[],
        &[
            ("AWS_CONFIG_FILE", config.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
            ("AWS_PROFILE", "standby".into()),
            ("AWS_ENDPOINT_URL_STS", sts.endpoint.clone()),
        ],
        "assumed with profile \"base\"",
    );
    assert!(!done.log.contains("source-secret"));
    assert!(sts.issued() >= 1);
}

/// A metadata service that accepts the connection and never answers (one
/// under load): waited out with a WARNING like an unreachable store, never
/// taken for "no credentials"; a smart failover then stops recovery.
#[test]
fn a_metadata_service_that_never_answers_is_waited_out() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hung.local_addr().unwrap());
    let trigger = s.env.path("trigger");
    let mut job = s.start(
        &["-t", &trigger.display().to_string()],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)],
    );
    job.wait_log("instance metadata at");
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(15))
        .exited(FATAL)
        .logged("not failing over past what it may hold");
    drop(hung);
}

/// A credential_process that leaves a helper running with its output
/// open (a cache daemon): its answer is taken as soon as it exits, and
/// the helper does not outlive the call.
#[test]
fn a_credential_process_that_leaves_a_helper_running() {
    let s = setup();
    let script = s.env.path("creds.sh");
    let marker = s.env.path("helper-alive");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {m}\n(sleep 60; rm -f {m}) &\necho '{{\"Version\": 1, \"AccessKeyId\": \"{ACCESS_KEY}\", \
             \"SecretAccessKey\": \"{SECRET_KEY}\"}}'\n",
            m = marker.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let config = s.env.path("aws-config");
    fs::write(
        &config,
        format!("[default]\ncredential_process = {}\n", script.display()),
    )
    .unwrap();
    let done = restored_with(
        &s,
        &["--prefetch=0"],
        &[("AWS_CONFIG_FILE", config.display().to_string())],
        "restored",
    );
    done.within(Duration::from_secs(10));
    assert!(marker.exists(), "the program ran");
    // The helper went with the group: no process is left with the
    // program's command line (the helper is a subshell of it, which has
    // the same), so the marker it would remove stays.
    let needle = script.display().to_string();
    let alive: Vec<_> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&needle))
        .collect();
    assert!(alive.is_empty(), "the helper outlived the call");
}
