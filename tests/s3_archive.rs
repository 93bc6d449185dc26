//! Object storage as the archive, through the binary, what the S3 store
//! alone shows against a real S3-compatible server (s3s-fs on 127.0.0.1):
//! a wrong secret stops recovery, and catching up from the prefetch spool.
//! The guarantees every store gives are in tests/store_archive.rs.

mod support;

#[path = "support/stores.rs"]
mod stores;

use std::time::Duration;

use stores::{Archive, Kind, Via};
use support::*;

const NAME: &str = "000000010000000000000005";
/// Every call's options before its own.
const OPTS: [&str; 5] = ["-d", "-s", "2", "--bad-file-timeout", "1"];

#[test]
fn a_wrong_secret_stops_recovery_and_never_promotes() {
    let s = Archive::new(Kind::S3);
    s.put(NAME, &segment(NAME));
    let args = s.env.restore_args_at(&s.url(), &OPTS, NAME, &[]);
    let mut cmd = s.command(Via::Server, &args);
    cmd.env("AWS_SECRET_ACCESS_KEY", "wrong-secret");
    Job::launch(&s.env, cmd)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("cannot be used");
    assert!(!s.env.restored().exists());
}

/// Catching up from gzip objects: the fetcher downloads and decompresses
/// the next segments into the spool, the calls take them from there, and
/// what reaches `%p` is each segment exactly.
#[test]
fn catching_up_takes_downloaded_segments_from_the_spool() {
    let s = Archive::new(Kind::S3);
    let name = |n: u32| format!("0000000100000000{n:08X}");
    for n in 1..=5 {
        s.put(&format!("{}.gz", name(n)), &gzip(&segment(&name(n))));
    }
    let restore = |n: u32| {
        s.start(Via::Server, &OPTS, &name(n), &[])
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
