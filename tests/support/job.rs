//! The one runner for the binary under test: a running pg_standby whose
//! stderr goes to a file, so a test can wait for a log line (e.g. the
//! `-d` settings line) while the process runs, without a pipe that could
//! fill up and block it.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Env;

static LOGS: AtomicUsize = AtomicUsize::new(0);

pub struct Job {
    pub child: Child,
    pub started: Instant,
    log: PathBuf,
}

pub struct Done {
    pub status: ExitStatus,
    pub elapsed: Duration,
    /// Everything the process wrote to stderr.
    pub log: String,
}

impl Job {
    /// Start `cmd` with stdin and stdout null and stderr into a file in
    /// `env`'s temporary directory.
    pub fn launch(env: &Env, cmd: Command) -> Job {
        let n = LOGS.fetch_add(1, Ordering::SeqCst);
        let log = env.root.path().join(format!("stderr-{n}.log"));
        let file = fs::File::create(&log).unwrap();
        Self::launch_to(cmd, Stdio::null(), file.into(), log)
    }

    /// Start `cmd` with the given stdout and stderr; [`Job::log`] reads
    /// `log` (a file the test may or may not have pointed stderr to).
    pub fn launch_to(mut cmd: Command, stdout: Stdio, stderr: Stdio, log: PathBuf) -> Job {
        // Before the spawn: the child cannot have started earlier, so
        // "waited at least N s" checks hold however late the spawn returns
        // on a loaded machine.
        let started = Instant::now();
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        // A binary a test has just copied (tests/faults.rs) is busy while
        // a process forked meanwhile by another test thread still holds
        // the copy's descriptor, until that process execs: try again.
        let mut attempts = 0;
        let child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => break result.unwrap(),
            }
        };
        Job {
            child,
            started,
            log,
        }
    }

    /// Where the process's stderr goes (a detached child of it may still
    /// write there after it exits).
    #[allow(dead_code)]
    pub fn log_file(&self) -> PathBuf {
        self.log.clone()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait for the settings line `-d` prints once signal handlers and the
    /// watch are in place.
    #[track_caller]
    pub fn wait_ready(&mut self) {
        self.wait_log("DEBUG: request ");
    }

    #[track_caller]
    pub fn wait_log(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.log().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Wait for the process to end within `limit`, or kill it and fail.
    #[track_caller]
    pub fn finish_within(mut self, limit: Duration) -> Done {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Done {
                    status,
                    elapsed: self.started.elapsed(),
                    log: self.log(),
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Job {
    /// A test that fails while its process runs still ends it.
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Done {
    #[track_caller]
    pub fn exited(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit {code}, got {}; log:\n{}",
            self.status,
            self.log
        );
        self
    }

    #[track_caller]
    pub fn died_of(&self, signal: i32) -> &Self {
        assert_eq!(
            self.status.signal(),
            Some(signal),
            "expected death by signal {signal}, got {}; log:\n{}",
            self.status,
            self.log
        );
        self
    }

    /// A log line with `phrase`, in the program's line format.
    #[track_caller]
    pub fn logged(&self, phrase: &str) -> &Self {
        let line = self.log.lines().find(|l| l.contains(phrase));
        match line {
            Some(l) => assert!(is_log_line(l), "badly prefixed: {l:?}"),
            None => panic!("no {phrase:?} in the log:\n{}", self.log),
        }
        self
    }

    #[track_caller]
    pub fn within(&self, limit: Duration) -> &Self {
        assert!(
            self.elapsed < limit,
            "took {:?} (limit {limit:?}); log:\n{}",
            self.elapsed,
            self.log
        );
        self
    }
}

/// A line in the program's log format:
/// `2026-11-22 06:41:43.123 UTC pg_standby[PID]: ...`.
pub fn is_log_line(line: &str) -> bool {
    let shape = "####-##-## ##:##:##.### UTC pg_standby[";
    let Some(head) = line.get(..shape.len()) else {
        return false;
    };
    let stamp_ok = head.bytes().zip(shape.bytes()).all(|(c, s)| {
        if s == b'#' {
            c.is_ascii_digit()
        } else {
            c == s
        }
    });
    let rest = &line[shape.len()..];
    let pid_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    stamp_ok && pid_len > 0 && rest[pid_len..].starts_with("]: ")
}
