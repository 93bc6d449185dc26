//! Object storage as the archive, through the binary, against a real
//! S3-compatible server (s3s-fs on 127.0.0.1): the same guarantees as a
//! local archive, and errors sorted for the exit contract (a 404 waits, a
//! 403 or a missing bucket stops recovery, an unreachable endpoint is
//! waited out and never promotes).

mod support;

#[path = "support/s3_server.rs"]
mod s3_server;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use s3_server::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use support::*;

const NAME: &str = "000000010000000000000005";

struct Setup {
    env: Env,
    server: S3Server,
    bucket: std::path::PathBuf,
}

fn setup() -> Setup {
    let server = S3Server::start();
    let bucket = server.bucket("wal");
    Setup {
        env: Env::new(),
        server,
        bucket,
    }
}

impl Setup {
    fn url(&self) -> String {
        "s3://wal/archive".into()
    }

    /// An object appears whole, as an upload does.
    fn put(&self, name: &str, bytes: &[u8]) {
        let dir = self.bucket.join("archive");
        fs::create_dir_all(&dir).unwrap();
        let tmp = self.env.path(&format!("{name}.upload"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, dir.join(name)).unwrap();
    }

    fn command(&self, secret: &str, endpoint: &str, args: &[String]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.env.datadir)
            .args(args)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", REGION)
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        cmd
    }

    fn args(&self, opts: &[&str], name: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["-d", "-s", "2", "--bad-file-timeout", "1"]
            .iter()
            .chain(opts)
            .map(|s| s.to_string())
            .collect();
        args.push(self.url());
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
        let cmd = self.command(
            SECRET_KEY,
            &self.server.endpoint,
            &self.args(opts, name, &[]),
        );
        Job::launch(&self.env, cmd)
    }

    fn objects(&self) -> Vec<String> {
        // Without the standbys' registry (`.pg_standby/`).
        let mut v: Vec<String> = fs::read_dir(self.bucket.join("archive"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n != ".pg_standby")
                    .collect()
            })
            .unwrap_or_default();
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

#[test]
fn a_present_segment_is_restored() {
    let s = setup();
    let bytes = segment(NAME);
    s.put(NAME, &bytes);
    s.start(&[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(0)
        .logged(&format!(
            "restored {NAME} from s3://wal/archive/{NAME} after"
        ));
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
    let lag = put.elapsed();
    assert!(lag < Duration::from_secs(2), "noticed after {lag:?}");
    assert_delivered(&s.env, &bytes);
}

#[test]
fn a_compressed_segment_is_restored() {
    let s = setup();
    let bytes = segment(NAME);
    let packed = gzip(&bytes);
    s.put(&format!("{NAME}.gz"), &packed);
    // Where it came from in full, and a small file's size and ratio that read well.
    let kib = packed.len() as f64 / 1024.0;
    let ratio = bytes.len() as f64 / packed.len() as f64;
    assert!(kib < 1024.0 && ratio >= 10.0, "{kib} KiB, {ratio}:1");
    s.start(&[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(0)
        .logged(&format!(
            "restored {NAME} from s3://wal/archive/{NAME}.gz ({kib:.1} KiB, {ratio:.0}:1) after"
        ));
    assert_delivered(&s.env, &bytes);
}

#[test]
fn a_wrong_secret_stops_recovery_and_never_promotes() {
    let s = setup();
    s.put(NAME, &segment(NAME));
    let cmd = s.command("wrong-secret", &s.server.endpoint, &s.args(&[], NAME, &[]));
    Job::launch(&s.env, cmd)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("cannot be used");
    assert!(!s.env.restored().exists());
}

#[test]
fn a_missing_bucket_stops_recovery() {
    let s = setup();
    let mut args = s.args(&[], NAME, &[]);
    let url = args.iter().position(|a| a.starts_with("s3://")).unwrap();
    args[url] = "s3://no-such-bucket/archive".into();
    let cmd = s.command(SECRET_KEY, &s.server.endpoint, &args);
    Job::launch(&s.env, cmd)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL);
}

/// Connection refused: waited out with a WARNING, never "not there"; a
/// smart failover then stops recovery instead of promoting.
#[test]
fn an_unreachable_endpoint_is_waited_out_and_never_promotes() {
    let s = setup();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let trigger = s.env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let cmd = s.command(
        SECRET_KEY,
        &endpoint,
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
fn a_foreign_segment_stops_recovery() {
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
fn cleanup_removes_older_segments_only() {
    let s = setup();
    for n in ["000000010000000000000002", "000000010000000000000003"] {
        s.put(n, b"old");
    }
    s.put("000000010000000000000003.gz", b"old");
    s.put("000000010000000000000003.00000028.backup", b"keep");
    s.put("00000002.history", b"keep");
    s.put(NAME, &segment(NAME));
    let cmd = s.command(
        SECRET_KEY,
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
        s.objects(),
        [
            "000000010000000000000003.00000028.backup",
            NAME,
            "00000002.history"
        ]
    );
}

/// A store that accepts the connection and never answers: SIGTERM ends
/// the call at once, not after the request timeout.
#[test]
fn sigterm_ends_a_call_stuck_in_a_request() {
    let s = setup();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hung.local_addr().unwrap());
    let mut job = Job::launch(
        &s.env,
        s.command(SECRET_KEY, &endpoint, &s.args(&[], NAME, &[])),
    );
    // The call is stuck in its first request, before any wait: its
    // settings line (logged after the signal handlers are set) is enough.
    job.wait_log("DEBUG: request ");
    // Let the first request reach the silent server.
    let (_conn, _) = hung.accept().unwrap();
    let t0 = Instant::now();
    job.signal(libc::SIGTERM);
    job.finish_within(Duration::from_secs(5))
        .died_of(libc::SIGTERM);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

/// Catching up from gzip objects: the fetcher downloads and decompresses
/// the next segments into the spool, the calls take them from there, and
/// what reaches `%p` is each segment exactly.
#[test]
fn catching_up_takes_downloaded_segments_from_the_spool() {
    let s = setup();
    let name = |n: u32| format!("0000000100000000{n:08X}");
    for n in 1..=5 {
        s.put(&format!("{}.gz", name(n)), &gzip(&segment(&name(n))));
    }
    let restore = |n: u32| {
        s.start(&[], &name(n))
            .finish_within(Duration::from_secs(30))
    };
    restore(1).exited(0);
    let spool = s.env.path("data.pg_standby-spool");
    wait_until(Duration::from_secs(30), "the spool to fill", || {
        Ok(spool.join(name(5)).exists())
    })
    .unwrap();
    for n in 2..=5 {
        restore(n)
            .exited(0)
            .logged("from the prefetch spool (fetched from s3://wal/archive) after");
        assert_delivered(&s.env, &segment(&name(n)));
    }
}
