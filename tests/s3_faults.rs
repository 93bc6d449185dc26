//! Object storage on a bad day, the S3 store's rows: a real S3-compatible
//! server (s3s-fs) behind the fault-injecting proxy of tests/support,
//! which answers server errors, throttling, cut bodies and pages that are
//! not what was asked for, one request at a time. Whatever the store does,
//! a call never delivers a partial or foreign file, never exits 1 for a
//! segment that exists, and restores the segment once the store answers
//! again. The rows every store shares are in tests/remote_faults.rs.

mod support;

#[path = "support/stores.rs"]
mod stores;

use std::fs;
use std::time::Duration;

use stores::fault_proxy::Action;
use stores::{Archive, Kind, PREFIX, Via};
use support::*;

const NAME: &str = "000000010000000000000005";

fn setup() -> Archive {
    Archive::new(Kind::S3)
}

/// A call through the proxy, waiting with `-s 1`, with `extra` after %p
/// (%r).
fn start_with(s: &Archive, opts: &[&str], extra: &[&str]) -> Job {
    let opts: Vec<&str> = ["-d", "-s", "1", "--bad-file-timeout", "2"]
        .iter()
        .chain(opts)
        .copied()
        .collect();
    s.start(Via::Proxy, &opts, NAME, extra)
}

fn start(s: &Archive, opts: &[&str]) -> Job {
    start_with(s, opts, &[])
}

#[test]
fn server_errors_are_waited_out() {
    setup().restores_after(
        vec![
            Action::status(500, "InternalError", None),
            Action::status(502, "BadGateway", None),
            Action::status(504, "GatewayTimeout", None),
        ],
        "cannot be reached",
    );
}

#[test]
fn too_many_requests_is_waited_out() {
    setup().restores_after(vec![Action::status(429, "TooManyRequests", None); 2], "429");
}

/// A cut inside the page header, before anything could be checked.
#[test]
fn a_body_cut_inside_the_header_is_never_delivered() {
    setup().restores_after(vec![Action::CutAfter(10)], "after 10 bytes");
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
    let mut job = start(&s, &["-t", &trigger_arg]);
    job.wait_log("text/html page");
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(15))
        .exited(FATAL)
        .logged("not failing over past what it may hold");
    assert!(!s.env.restored().exists());
    assert_eq!(s.env.stray_files(), Vec::<String>::new());
}

/// A slow answer that still comes within the request timeout is just
/// slow: restored, no warning.
#[test]
fn a_slow_answer_is_just_slow() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    s.proxy.then([Action::Delay(Duration::from_millis(1500))]);
    let done = start(&s, &[]).finish_within(Duration::from_secs(30));
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
    s.proxy.always(Action::status(503, "SlowDown", Some(1)));
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = start(&s, &["-t", &trigger_arg]);
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
        get: Box::new(Action::status(404, "NoSuchKey", None)),
        other: Box::new(Action::Pass),
    });
    let trigger = s.env.path("trigger");
    fs::write(&trigger, "").unwrap();
    let done =
        start(&s, &["-t", &trigger.display().to_string()]).finish_within(Duration::from_secs(15));
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
        then: Box::new(Action::status(501, "NotImplemented", None)),
    });
    let job = start_with(&s, &[], &["000000010000000000000004"]);
    let log = job.log_file();
    job.finish_within(Duration::from_secs(10)).exited(0);
    // The removal runs apart, after the call has settled its exit status.
    wait_until(Duration::from_secs(10), "the cleanup", || {
        Ok(fs::read_to_string(&log)?.contains("archive cleanup: removed 2 segment(s)"))
    })
    .unwrap();
    assert_eq!(s.objects(), [NAME, "00000002.history"]);
    // The standbys' registry (one PUT, not a POST) stays.
    assert!(s.holds_any_under(&format!("{PREFIX}.pg_standby/")));
    let methods: Vec<String> = s.proxy.seen().into_iter().map(|r| r.method).collect();
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
