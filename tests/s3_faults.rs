//! Object storage on a bad day: a real S3-compatible server (s3s-fs)
//! behind the fault-injecting proxy of tests/support, which answers
//! throttling, server errors, resets, cut bodies and pages that are not
//! what was asked for, one request at a time. Whatever the store does, a
//! call never delivers a partial or foreign file, never exits 1 for a
//! segment that exists, and restores the segment once the store answers
//! again.

mod support;

#[path = "support/s3_server.rs"]
mod s3_server;

#[path = "support/fault_proxy.rs"]
mod fault_proxy;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use fault_proxy::{Action, FaultProxy};
use s3_server::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use support::*;

const NAME: &str = "000000010000000000000005";

struct Setup {
    env: Env,
    // Dropped before the server: its threads forward to it.
    proxy: FaultProxy,
    server: S3Server,
}

fn setup() -> Setup {
    let server = S3Server::start();
    server.bucket("wal");
    let proxy = FaultProxy::start(&server.endpoint);
    Setup {
        env: Env::new(),
        proxy,
        server,
    }
}

impl Setup {
    /// An object appears whole, as an upload does.
    fn put(&self, name: &str, bytes: &[u8]) {
        let dir = self.server.root().join("wal/archive");
        fs::create_dir_all(&dir).unwrap();
        let tmp = self.env.path(&format!("{name}.upload"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, dir.join(name)).unwrap();
    }

    /// A call through the proxy, waiting with `-s 1`.
    fn start(&self, opts: &[&str]) -> Job {
        self.start_with(opts, &[])
    }

    /// A call through the proxy with `extra` after %p (%r).
    fn start_with(&self, opts: &[&str], extra: &[&str]) -> Job {
        let mut args: Vec<String> = ["-d", "-s", "1", "--bad-file-timeout", "2"]
            .iter()
            .chain(opts)
            .map(|s| s.to_string())
            .collect();
        args.extend([
            "s3://wal/archive".into(),
            NAME.into(),
            "pg_wal/RECOVERYXLOG".into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.env.datadir)
            .args(&args)
            .env("AWS_ENDPOINT_URL", &self.proxy.endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", REGION)
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        Job::launch(&self.env, cmd)
    }

    /// Methods of the requests the proxy saw, in order.
    fn methods(&self) -> Vec<String> {
        self.proxy.seen().into_iter().map(|s| s.method).collect()
    }
}

fn status(status: u16, code: &'static str, retry_after: Option<u32>) -> Action {
    Action::Status {
        status,
        code,
        retry_after,
    }
}

#[track_caller]
fn assert_delivered(env: &Env, bytes: &[u8]) {
    assert!(fs::read(env.restored()).unwrap() == bytes, "%p differs");
    assert_eq!(env.stray_files(), Vec::<String>::new());
}

/// A failure the store answers for a while, then a good answer: the call
/// warns, keeps waiting and restores the segment.
#[track_caller]
fn waited_out(faults: Vec<Action>, warning: &str) {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    let n = faults.len();
    s.proxy.then(faults);
    s.start(&[])
        .finish_within(Duration::from_secs(30))
        .exited(0)
        .logged(warning)
        .logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);
    assert_eq!(s.proxy.pending(), 0);
    assert!(s.proxy.count() > n, "requests: {:?}", s.methods());
}

#[test]
fn throttling_with_retry_after_is_waited_out() {
    waited_out(vec![status(503, "SlowDown", Some(1)); 3], "503 SlowDown");
}

#[test]
fn server_errors_are_waited_out() {
    waited_out(
        vec![
            status(500, "InternalError", None),
            status(502, "BadGateway", None),
            status(504, "GatewayTimeout", None),
        ],
        "cannot be reached",
    );
}

#[test]
fn too_many_requests_is_waited_out() {
    waited_out(vec![status(429, "TooManyRequests", None); 2], "429");
}

#[test]
fn reset_connections_are_waited_out() {
    waited_out(vec![Action::Reset; 3], "cannot be reached");
}

/// The body ends early: the partial download is thrown away and never
/// reaches `%p`; the next look downloads the whole object.
#[test]
fn a_body_cut_short_is_never_delivered() {
    waited_out(vec![Action::CutAfter(100_000)], "after 100000 bytes");
}

/// A cut inside the page header, before anything could be checked.
#[test]
fn a_body_cut_inside_the_header_is_never_delivered() {
    waited_out(vec![Action::CutAfter(10)], "after 10 bytes");
}

/// A proxy in the way answers 200 with an HTML page: never delivered as
/// a segment; the store's own answer, once it comes, is.
#[test]
fn an_html_page_instead_of_the_segment_is_never_delivered() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    s.proxy.then([Action::Html]);
    s.start(&[])
        .finish_within(Duration::from_secs(30))
        .exited(0)
        .logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);
    assert_eq!(s.proxy.pending(), 0);
}

/// An HTML page for every request: never taken for a segment nor for
/// "not there"; the call warns and waits, and a smart failover then stops
/// recovery instead of promoting.
#[test]
fn a_store_that_only_answers_html_is_waited_out_and_never_promotes() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    s.proxy.always(Action::Html);
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = s.start(&["-t", &trigger_arg]);
    job.wait_log("text/html page");
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(15))
        .exited(FATAL)
        .logged("not failing over past what it may hold");
    assert!(!s.env.restored().exists());
    assert_eq!(s.env.stray_files(), Vec::<String>::new());
}

/// Access denied injected by the path (a bucket policy changed): a
/// configuration error, exit 250 at once, never a wait or a promotion.
#[test]
fn access_denied_stops_recovery_at_once() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    s.proxy.always(status(403, "AccessDenied", None));
    s.start(&[])
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .within(Duration::from_secs(5))
        .logged("AccessDenied");
    assert!(!s.env.restored().exists());
}

/// A slow answer that still comes within the request timeout is just
/// slow: restored, no warning.
#[test]
fn a_slow_answer_is_just_slow() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    s.proxy.then([Action::Delay(Duration::from_millis(1500))]);
    let done = s.start(&[]).finish_within(Duration::from_secs(30));
    done.exited(0);
    assert!(!done.log.contains("WARNING"), "{}", done.log);
    assert_delivered(&s.env, &bytes);
}

/// Throttled while the segment is not there yet, then the segment
/// arrives: restored once the store answers again; a smart trigger during
/// the throttling does not skip past the segment.
#[test]
fn a_smart_failover_during_throttling_never_promotes() {
    let s = setup();
    s.proxy.always(status(503, "SlowDown", Some(1)));
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = s.start(&["-t", &trigger_arg]);
    job.wait_log("503 SlowDown");
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(15))
        .exited(FATAL)
        .logged("not failing over past what it may hold");
    assert!(!s.env.restored().exists());
}

/// A store whose listing shows the segment while reading it answers 404
/// (an index out of step with the data): during a smart failover the call
/// neither spins without a pause nor fails over past the listed segment.
#[test]
fn a_listed_segment_that_cannot_be_read_never_promotes() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    s.proxy.always(Action::ByRequest {
        get: Box::new(status(404, "NoSuchKey", None)),
        other: Box::new(Action::Pass),
    });
    let trigger = s.env.path("trigger");
    fs::write(&trigger, "").unwrap();
    let done = s
        .start(&["-t", &trigger.display().to_string()])
        .finish_within(Duration::from_secs(15));
    done.exited(FATAL).logged("is listed in the archive");
    assert!(s.proxy.count() < 50, "{} requests", s.proxy.count());
    assert!(!s.env.restored().exists());
}

/// A server without DeleteObjects (Cloud Storage's XML API with HMAC keys
/// answered `501 NotImplemented`): the `%r` cleanup deletes one object per
/// request instead, and removes what it would have removed in a batch.
#[test]
fn cleanup_without_batch_delete_deletes_one_by_one() {
    let s = setup();
    for n in ["000000010000000000000002", "000000010000000000000003"] {
        s.put(n, b"old");
    }
    s.put("00000002.history", b"keep");
    s.put(NAME, &segment(NAME));
    s.proxy.always(Action::ForMethod {
        method: "POST",
        then: Box::new(status(501, "NotImplemented", None)),
    });
    let job = s.start_with(&[], &["000000010000000000000004"]);
    let log = job.log_file();
    job.finish_within(Duration::from_secs(10)).exited(0);
    // The removal runs apart, after the call has settled its exit status.
    wait_until(Duration::from_secs(10), "the cleanup", || {
        Ok(fs::read_to_string(&log)?.contains("archive cleanup: removed 2 segment(s)"))
    })
    .unwrap();
    let mut left: Vec<String> = fs::read_dir(s.server.root().join("wal/archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    // The standbys' registry (one PUT, not a POST) stays.
    assert_eq!(left, [".pg_standby", NAME, "00000002.history"]);
    let methods = s.methods();
    let post = methods
        .iter()
        .position(|m| m == "POST")
        .expect("a batch delete");
    assert_eq!(
        methods[post + 1..]
            .iter()
            .filter(|m| *m == "DELETE")
            .count(),
        2,
        "{methods:?}"
    );
}
