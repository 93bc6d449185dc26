//! The child that releases a waiting call's inotify instance after the
//! call's exit (src/sys/linger.rs): it holds nothing else of the call's,
//! and it never outlives the call by more than that release. In a file of
//! its own: the test process becomes the subreaper of the orphans it
//! counts, which would reap other tests' children.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::*;

const S1: &str = "000000010000000000000003";

/// The pids listed as children of `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What each open descriptor of `pid` refers to.
fn descriptors(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Reap orphans handed to us until none is left; `None` if one is still
/// there at the deadline.
fn reap_all_orphans(within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    let mut reaped = 0;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child of ours, without blocking.
        match unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } {
            0 if Instant::now() > deadline => return None,
            0 => std::thread::sleep(Duration::from_millis(5)),
            -1 => return Some(reaped),
            _ => reaped += 1,
        }
    }
}

#[test]
fn the_holder_of_the_watch_holds_nothing_else_and_ends_with_the_call() {
    // SAFETY: a prctl on our own process.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    for kill in [false, true] {
        let env = Env::new();
        let mut run = env.spawn(&["-d", "-s", "60"], S1, &[]);
        run.wait_ready();
        let holders = children_of(run.pid());
        assert_eq!(holders.len(), 1, "children: {holders:?}");
        // Just forked, it may not have closed the rest yet: wait for it.
        let only_the_watch = |held: &[String]| {
            held.iter().any(|d| d == "anon_inode:inotify")
                && held
                    .iter()
                    .all(|d| d == "anon_inode:inotify" || d.starts_with("pipe:"))
                // Not its log, nor anything else that would outlive the call.
                && held.len() <= 3
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut held = descriptors(holders[0]);
        while !only_the_watch(&held) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            held = descriptors(holders[0]);
        }
        assert!(only_the_watch(&held), "the holder holds {held:?}");
        if kill {
            run.signal(libc::SIGKILL);
            run.finish_within(Duration::from_secs(10));
        } else {
            env.archive_atomically(S1, &segment(S1));
            let done = run.finish_within(Duration::from_secs(10));
            assert_eq!(done.status.code(), Some(0), "{}", done.log);
        }
        assert_eq!(
            reap_all_orphans(Duration::from_secs(10)),
            Some(1),
            "the holder did not end after the call (killed: {kill})"
        );
    }
}
