//! A log that cannot be written never changes the outcome: with stderr on
//! a full disk, closed, or a pipe nobody reads, every call exits exactly as
//! it would with a working log (the server reads a death by signal, e.g.
//! SIGABRT from a panic on a failed write, as FATAL).

mod support;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const S1: &str = "000000010000000000000003";

#[derive(Debug, Clone, Copy)]
enum Broken {
    /// A full filesystem under the server's log.
    Full,
    /// `2>&-` (the Rust runtime reopens it on /dev/null).
    Closed,
    /// A pipe whose reader is gone: EPIPE (SIGPIPE is ignored).
    NoReader,
}

const ALL: [Broken; 3] = [Broken::Full, Broken::Closed, Broken::NoReader];

/// A pipe whose read end is already closed.
fn pipe_without_reader() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two valid descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are ours; the read end is dropped at once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

fn broken(how: Broken) -> Stdio {
    match how {
        Broken::Full => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
            .into(),
        Broken::Closed | Broken::NoReader => pipe_without_reader(),
    }
}

/// Run `cmd` with stderr (and, with `stdout_too`, stdout) broken `how`.
fn run_with(env: &Env, mut cmd: Command, how: Broken, stdout_too: bool) -> Done {
    if let Broken::Closed = how {
        // SAFETY: close(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::close(libc::STDERR_FILENO);
                if stdout_too {
                    libc::close(libc::STDOUT_FILENO);
                }
                Ok(())
            });
        }
    }
    let stdout = if stdout_too {
        broken(how)
    } else {
        Stdio::null()
    };
    Job::launch_to(cmd, stdout, broken(how), env.path("no-log"))
        .finish_within(Duration::from_secs(10))
}

#[track_caller]
fn assert_exit(done: &Done, code: i32, how: Broken) {
    assert_eq!(
        (done.status.code(), done.status.signal()),
        (Some(code), None),
        "stderr {how:?}: expected exit {code}, got {}",
        done.status
    );
}

fn restore_command(env: &Env, opts: &[&str]) -> Command {
    let args = env.restore_args(opts, S1, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.command(&args)
}

#[test]
fn a_restore_succeeds_whatever_happens_to_its_log() {
    for how in ALL {
        let env = Env::new();
        let bytes = segment(S1);
        env.archive_atomically(S1, &bytes);
        let done = run_with(&env, restore_command(&env, &["-d"]), how, false);
        assert_exit(&done, 0, how);
        assert_eq!(std::fs::read(env.restored()).unwrap(), bytes, "{how:?}");
    }
}

#[test]
fn a_smart_failover_answers_1_whatever_happens_to_its_log() {
    for how in ALL {
        let env = Env::new();
        let trigger = env.path("trigger");
        std::fs::write(&trigger, "").unwrap();
        let t = trigger.display().to_string();
        let done = run_with(&env, restore_command(&env, &["-d", "-t", &t]), how, false);
        assert_exit(&done, 1, how);
        assert!(!env.restored().exists());
    }
}

#[test]
fn a_usage_error_exits_250_whatever_happens_to_its_log() {
    for how in ALL {
        let env = Env::new();
        let a = env.archive.display().to_string();
        for args in [&["-s", "0", &a, S1, "p"][..], &["-x", &a, S1, "p"], &[&a]] {
            let done = run_with(&env, env.command(args), how, false);
            assert_exit(&done, FATAL, how);
        }
    }
}

#[test]
fn help_and_version_succeed_on_a_broken_stdout() {
    for how in ALL {
        let env = Env::new();
        for flag in ["--help", "-V"] {
            let done = run_with(&env, env.command(&[flag]), how, true);
            assert_exit(&done, 0, how);
        }
    }
}
