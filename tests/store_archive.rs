//! Object storage as the archive, through the binary, the same guarantees
//! for every store, each test run against each store's real server (S3:
//! s3s-fs; Cloud Storage: fake-gcs-server; Azure: Azurite): those of a
//! local archive (a segment restored whole, seen as soon as it arrives,
//! decompressed; a missing history file answered at once; the trigger and
//! SIGTERM noticed at once; cleanup within the archive's prefix), and
//! errors sorted for the exit contract (a missing bucket stops recovery,
//! an unreachable endpoint is waited out and never promotes). What one
//! store alone does (its credentials, its codes) is in
//! tests/{s3,gcs,azure}_archive.rs; a store on a bad day in
//! tests/remote_faults.rs.

mod support;

#[path = "support/stores.rs"]
mod stores;

use std::fs;
use std::time::{Duration, Instant};

use stores::fault_proxy::Action;
use stores::{Archive, Kind, PREFIX, Via};
use support::*;

const NAME: &str = "000000010000000000000005";
/// Every call's options before its own.
const OPTS: [&str; 5] = ["-d", "-s", "1", "--bad-file-timeout", "1"];

every_store!(
    a_present_segment_is_restored,
    a_segment_arriving_later_is_seen_within_a_fraction_of_a_second,
    a_compressed_segment_is_restored,
    a_missing_history_file_is_answered_at_once,
    a_missing_bucket_stops_recovery_at_once,
    an_unreachable_endpoint_is_waited_out_and_never_promotes,
    a_foreign_segment_stops_recovery,
    the_trigger_is_noticed_at_once_while_polling,
    cleanup_removes_older_segments_only,
    sigterm_ends_a_call_stuck_in_a_request,
);

/// A call straight to the server, with `opts` after the usual ones.
fn start(s: &Archive, opts: &[&str], name: &str) -> Job {
    start_with(s, Via::Server, opts, name, &[])
}

fn start_with(s: &Archive, via: Via, opts: &[&str], name: &str, extra: &[&str]) -> Job {
    let opts: Vec<&str> = OPTS.iter().chain(opts).copied().collect();
    s.start(via, &opts, name, extra)
}

/// `http://127.0.0.1:PORT` with nothing listening.
fn closed_address() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    address
}

fn a_present_segment_is_restored(kind: Kind) {
    let s = Archive::new(kind);
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    start(&s, &[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(0)
        .logged(&format!("restored {NAME} from {}/{NAME} after", s.url()));
    assert_delivered(&s.env, &bytes);
}

fn a_segment_arriving_later_is_seen_within_a_fraction_of_a_second(kind: Kind) {
    let s = Archive::new(kind);
    let bytes = segment(NAME);
    let mut job = start(&s, &["-s", "30"], NAME);
    job.wait_ready();
    std::thread::sleep(Duration::from_millis(700));
    s.put(NAME, &bytes);
    // From the upload's end, when the object is surely there: an upload of
    // 16 MiB (to Azurite, to fake-gcs-server) takes its own time, more on a
    // loaded machine, and is not what is measured.
    let there = Instant::now();
    let done = job.finish_within(Duration::from_secs(10));
    done.exited(0);
    let lag = there.elapsed();
    assert!(lag < Duration::from_secs(2), "noticed after {lag:?}");
    assert_delivered(&s.env, &bytes);
}

fn a_compressed_segment_is_restored(kind: Kind) {
    let s = Archive::new(kind);
    let bytes = segment(NAME);
    let packed = gzip(&bytes);
    s.put(&format!("{NAME}.gz"), &packed);
    // Where it came from in full, and a small file's size and ratio that read well.
    let kib = packed.len() as f64 / 1024.0;
    let ratio = bytes.len() as f64 / packed.len() as f64;
    assert!(kib < 1024.0 && ratio >= 10.0, "{kib} KiB, {ratio}:1");
    start(&s, &[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(0)
        .logged(&format!(
            "restored {NAME} from {}/{NAME}.gz ({kib:.1} KiB, {ratio:.0}:1) after",
            s.url()
        ));
    assert_delivered(&s.env, &bytes);
}

fn a_missing_history_file_is_answered_at_once(kind: Kind) {
    let s = Archive::new(kind);
    s.put("placeholder", b"x");
    start(&s, &[], "00000002.history")
        .finish_within(Duration::from_secs(5))
        .exited(1)
        .within(Duration::from_secs(3));
    let history = b"1\t0/5000000\tno recovery target specified\n";
    s.put("00000002.history", history);
    start(&s, &[], "00000002.history")
        .finish_within(Duration::from_secs(5))
        .exited(0);
    assert_eq!(
        fs::read(s.env.datadir.join("pg_wal/RECOVERYHISTORY")).unwrap(),
        history
    );
}

/// A missing bucket (a container on Azure) stops recovery at once. S3
/// and Cloud Storage answer 404 for a missing object and for a missing
/// bucket alike: the bucket is looked at once to tell them apart; Azure
/// names it (`ContainerNotFound`).
fn a_missing_bucket_stops_recovery_at_once(kind: Kind) {
    let s = Archive::new(kind);
    let opts: Vec<&str> = OPTS.to_vec();
    let args = s
        .env
        .restore_args_at(&s.url_of("no-such-bucket"), &opts, NAME, &[]);
    let says = match kind {
        Kind::S3 => "NoSuchBucket",
        Kind::Gcs => "bucket \"no-such-bucket\" not found",
        #[cfg(feature = "azure")]
        Kind::Azure => "ContainerNotFound",
    };
    Job::launch(&s.env, s.command(Via::Server, &args))
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .within(Duration::from_secs(5))
        .logged(says);
    assert!(!s.env.restored().exists());
}

/// Connection refused: waited out with a WARNING, never "not there"; a
/// smart failover then stops recovery instead of promoting.
fn an_unreachable_endpoint_is_waited_out_and_never_promotes(kind: Kind) {
    let s = Archive::new(kind);
    let closed = closed_address();
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = start_with(&s, Via::Address(&closed), &["-t", &trigger_arg], NAME, &[]);
    job.wait_log("cannot be reached");
    assert!(job.is_running());
    fs::write(&trigger, "").unwrap();
    job.finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("not failing over past what it may hold");
}

/// A segment of another cluster is never delivered: recovery stops.
fn a_foreign_segment_stops_recovery(kind: Kind) {
    let s = Archive::new(kind);
    s.put(NAME, &segment_bytes(NAME, SEG, SYSID + 1, SEG));
    start(&s, &[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("another cluster");
    assert!(!s.env.restored().exists());
}

fn the_trigger_is_noticed_at_once_while_polling(kind: Kind) {
    let s = Archive::new(kind);
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let mut job = start(&s, &["-t", &trigger_arg, "-s", "30"], NAME);
    job.wait_ready();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    fs::write(&trigger, "fast").unwrap();
    job.finish_within(Duration::from_secs(5)).exited(1);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

/// `%r` removes the segments before it, and nothing else: not the backup
/// label, not history files, not objects outside the prefix or in a
/// "subdirectory" of it.
fn cleanup_removes_older_segments_only(kind: Kind) {
    let s = Archive::new(kind);
    for n in ["000000010000000000000002", "000000010000000000000003"] {
        s.put(n, b"old");
    }
    s.put("000000010000000000000003.gz", b"old");
    s.put("000000010000000000000003.00000028.backup", b"keep");
    s.put("00000002.history", b"keep");
    s.put(NAME, &segment(NAME));
    let outside = "000000010000000000000001";
    let deeper = format!("{PREFIX}sub/000000010000000000000001");
    s.put_key(outside, b"other");
    s.put_key(&deeper, b"deeper");
    let job = start_with(&s, Via::Server, &[], NAME, &["000000010000000000000004"]);
    let log = job.log_file();
    job.finish_within(Duration::from_secs(10)).exited(0);
    // The removal runs apart, after the call has settled its exit status.
    wait_until(Duration::from_secs(10), "the cleanup", || {
        Ok(fs::read_to_string(&log)?.contains("archive cleanup: removed 3 segment(s)"))
    })
    .unwrap();
    assert_eq!(
        s.objects(),
        [
            "000000010000000000000003.00000028.backup",
            NAME,
            "00000002.history"
        ]
    );
    assert!(s.has_key(outside), "{outside} removed");
    assert!(s.has_key(&deeper), "{deeper} removed");
}

/// A store that accepts the request and never answers: SIGTERM ends the
/// call at once, not after the request timeout.
fn sigterm_ends_a_call_stuck_in_a_request(kind: Kind) {
    let s = Archive::new(kind);
    s.put(NAME, &segment(NAME));
    s.proxy.always(Action::Hang);
    let job = start_with(&s, Via::Proxy, &[], NAME, &[]);
    wait_until(Duration::from_secs(10), "the first request", || {
        Ok(s.proxy.count() >= 1)
    })
    .unwrap();
    let t0 = Instant::now();
    job.signal(libc::SIGTERM);
    job.finish_within(Duration::from_secs(5))
        .died_of(libc::SIGTERM);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}
