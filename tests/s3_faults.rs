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
use std::time::{Duration, Instant};

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
    assert_eq!(left, [NAME, "00000002.history"]);
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

/// Waits until the proxy has seen `n` requests, and answers the pauses
/// between them.
#[track_caller]
fn gaps_of_first(s: &Setup, n: usize, within: Duration) -> Vec<Duration> {
    wait_until(within, "requests at the store", || Ok(s.proxy.count() >= n)).must();
    let seen = s.proxy.seen();
    seen.windows(2)
        .take(n - 1)
        .map(|w| w[1].at - w[0].at)
        .collect()
}

/// The pauses docs/guide.md promises while a store fails: 1 s, doubling,
/// each cut by at most a fifth of random jitter (a little slack for the
/// scheduler below).
#[track_caller]
fn assert_backs_off(gaps: &[Duration], first: Duration, log: &str) {
    for (i, gap) in gaps.iter().enumerate() {
        let nominal = first * 2u32.pow(i as u32);
        assert!(
            *gap >= nominal.mul_f64(0.8) - Duration::from_millis(30),
            "pause {i} was {gap:?}, under 80% of {nominal:?}: {gaps:?}\n{log}"
        );
    }
}

/// A throttling store is asked again after 1 s, 2 s, 4 s... (with
/// jitter), not ten times a second: a fleet of standbys must not make a
/// store's trouble worse.
#[test]
fn a_throttling_store_is_asked_less_and_less_often() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    s.proxy.always(status(503, "SlowDown", None));
    let job = s.start(&[]);
    let gaps = gaps_of_first(&s, 4, Duration::from_secs(20));
    assert_backs_off(&gaps, Duration::from_secs(1), &job.log());
    job.signal(libc::SIGTERM);
    job.finish_within(Duration::from_secs(5))
        .died_of(libc::SIGTERM)
        .logged("503 SlowDown");
}

/// `Retry-After` is a floor for the next request.
#[test]
fn retry_after_is_honoured() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    s.proxy.then([status(503, "SlowDown", Some(3))]);
    let done = s.start(&[]).finish_within(Duration::from_secs(20));
    done.exited(0).logged("asks to retry after 3 s");
    let seen = s.proxy.seen();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(3),
        "{:?}",
        seen[1].at - seen[0].at
    );
}

/// Listings that fail while the segment is not there yet are paced as
/// errors, not as the 100 ms polls of an absent segment.
#[test]
fn failing_listings_while_the_segment_is_absent_are_paced() {
    let s = setup();
    s.proxy.always(Action::ByRequest {
        get: Box::new(Action::Pass),
        other: Box::new(status(500, "InternalError", None)),
    });
    let job = s.start(&[]);
    // The first GET answers 404; the listings after it fail.
    let gaps = gaps_of_first(&s, 4, Duration::from_secs(20));
    assert_backs_off(&gaps[1..], Duration::from_secs(1), &job.log());
    job.signal(libc::SIGTERM);
    job.finish_within(Duration::from_secs(5))
        .died_of(libc::SIGTERM)
        .logged("500 InternalError");
}

/// A download crawling at 64 KiB/s (a 16 MiB segment: four minutes) and a
/// trigger or `-w` meanwhile: the call ends within the documented bound,
/// with the outcome of a store that cannot be reached, and nothing is left
/// beside %p.
fn crawling_download(opts: &[&str], act: impl FnOnce(&Setup, &Job)) -> (Done, Duration) {
    let s = setup();
    s.put(NAME, &segment(NAME));
    s.proxy.then([Action::Trickle(64 * 1024)]);
    let trigger = s.env.path("trigger").display().to_string();
    let mut args = vec!["-t", trigger.as_str()];
    args.extend(opts);
    let job = s.start(&args);
    wait_until(Duration::from_secs(10), "the download to start", || {
        Ok(s.proxy.count() >= 1)
    })
    .must();
    let t0 = Instant::now();
    act(&s, &job);
    let done = job.finish_within(Duration::from_secs(20));
    let took = t0.elapsed();
    assert!(!s.env.restored().exists(), "{}", done.log);
    assert_eq!(s.env.stray_files(), Vec::<String>::new());
    assert_eq!(s.proxy.count(), 1, "no request after the failover");
    (done, took)
}

/// Documented bound for a failover during a request: 1 s, plus a poll and
/// the scheduler's slack on a loaded test machine.
const FAILOVER_BOUND: Duration = Duration::from_millis(2500);

#[test]
fn a_smart_trigger_ends_a_crawling_download_within_the_bound() {
    let (done, took) = crawling_download(&[], |s, _| {
        fs::write(s.env.path("trigger"), "").unwrap();
    });
    done.exited(FATAL)
        .logged("request given up for the failover")
        .logged("not failing over past what it may hold");
    assert!(took < FAILOVER_BOUND, "{took:?}\n{}", done.log);
}

#[test]
fn a_fast_trigger_ends_a_crawling_download_at_once() {
    let (done, took) = crawling_download(&[], |s, _| {
        fs::write(s.env.path("trigger"), "fast").unwrap();
    });
    done.exited(1).logged("fast failover");
    assert!(took < Duration::from_secs(1), "{took:?}\n{}", done.log);
}

#[test]
fn sigterm_ends_a_crawling_download_at_once() {
    let (done, took) = crawling_download(&[], |_, job| job.signal(libc::SIGTERM));
    done.died_of(libc::SIGTERM);
    assert!(took < Duration::from_secs(1), "{took:?}\n{}", done.log);
}

#[test]
fn max_wait_ends_a_crawling_download_within_the_bound() {
    let (done, took) = crawling_download(&["-w", "2"], |_, _| {});
    done.exited(FATAL)
        .logged("request given up for the failover");
    assert!(
        took < Duration::from_secs(2) + FAILOVER_BOUND,
        "{took:?}\n{}",
        done.log
    );
}

/// A store that accepts the connection and never answers, and a smart
/// trigger: the call ends within the bound, without a second request.
#[test]
fn a_smart_trigger_ends_a_hung_request_within_the_bound() {
    let s = setup();
    s.proxy.always(Action::Hang);
    let trigger = s.env.path("trigger");
    let job = s.start(&["-t", &trigger.display().to_string()]);
    wait_until(Duration::from_secs(10), "the first request", || {
        Ok(s.proxy.count() >= 1)
    })
    .must();
    let t0 = Instant::now();
    fs::write(&trigger, "").unwrap();
    let done = job.finish_within(Duration::from_secs(20));
    let took = t0.elapsed();
    done.exited(FATAL)
        .logged("request given up for the failover");
    assert!(took < FAILOVER_BOUND, "{took:?}\n{}", done.log);
    assert_eq!(s.proxy.count(), 1, "{:?}", s.methods());
    assert!(!s.env.restored().exists());
}

/// One bit changed on the way, past the page header (where no header
/// check can see it): the body does not match the store's checksum (here
/// the ETag, the MD5 of a single-part upload), so it is never delivered;
/// the next download is.
#[test]
fn a_byte_changed_on_the_way_is_never_delivered() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    s.proxy.then([Action::FlipByte(5_000_000)]);
    let done = s.start(&[]).finish_within(Duration::from_secs(30));
    done.exited(0)
        .logged("does not match")
        .logged(&format!("restored {NAME}"));
    assert_delivered(&s.env, &bytes);
    let gets = s.methods().iter().filter(|m| *m == "GET").count();
    assert!(gets >= 2, "{:?}", s.methods());
}

/// A body changed on every download: a bad file, given up after the
/// bad-file timeout; never delivered, never a promotion.
#[test]
fn a_body_changed_on_every_download_stops_recovery() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    s.proxy.always(Action::ByRequest {
        get: Box::new(Action::FlipByte(5_000_000)),
        other: Box::new(Action::Pass),
    });
    s.start(&[])
        .finish_within(Duration::from_secs(30))
        .exited(FATAL)
        .logged("changed on the way");
    assert!(!s.env.restored().exists());
    assert_eq!(s.env.stray_files(), Vec::<String>::new());
}

/// A store that gives no checksum at all still serves the archive.
#[test]
fn a_store_that_gives_no_checksum_still_works() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    s.proxy.always(Action::NoChecksums);
    s.start(&[])
        .finish_within(Duration::from_secs(30))
        .exited(0);
    assert_delivered(&s.env, &bytes);
}
