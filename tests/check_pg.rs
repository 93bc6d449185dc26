//! `pg_standby --check` against real data directories made by initdb: a
//! correct warm standby gives exit 0 and no findings (before and while it
//! runs), and each misconfiguration built on it gives its finding.
//!
//!     cargo test --test check_pg                       # local server (Debian: PG 15)
//!     PG_BINDIR=/var/cache/pg-standby-matrix/10/bin cargo test --test check_pg
//!
//! As root, the servers run as `postgres` and own the data directory, so the
//! permission findings are checked as `postgres`, not as root.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::pg::{PrimaryOptions, Sandbox, Server, StandbyOptions, wait_until};
use support::{Must, binary_under_test};

const WAIT: Duration = Duration::from_secs(30);

/// (exit code, [(severity, code)], raw JSON) of `--check -D data --json`.
fn check(bin: &Path, data: &Path) -> (i32, Vec<(String, String)>, String) {
    let out = Command::new(bin)
        .args(["--check", "--json", "-D"])
        .arg(data)
        .env_remove("PGDATA")
        .output()
        .expect("run pg_standby --check");
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        json.starts_with('[') && json.trim_end().ends_with(']'),
        "not a JSON array: {json}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), pairs(&json), json)
}

/// The severity and code of each object in the checker's JSON output.
fn pairs(json: &str) -> Vec<(String, String)> {
    let field = |obj: &str, key: &str| -> String {
        let pat = format!("\"{key}\":\"");
        obj.find(&pat)
            .map(|i| {
                let rest = &obj[i + pat.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
            .unwrap_or_default()
    };
    json.split("{\"severity\"")
        .skip(1)
        .map(|o| {
            let o = format!("{{\"severity\"{o}");
            (field(&o, "severity"), field(&o, "code"))
        })
        .collect()
}

struct Env {
    sb: Sandbox,
    bin: PathBuf,
    primary: Server,
    standby: Server,
    trigger: PathBuf,
    /// The file that holds restore_command and friends.
    recovery_file: PathBuf,
}

impl Env {
    fn check(&self) -> (i32, Vec<(String, String)>, String) {
        check(&self.bin, &self.standby.data)
    }

    /// Assert that `code` is found with `severity`, with exit status `exit`.
    #[track_caller]
    fn expect(&self, what: &str, severity: &str, code: &str, exit: i32) {
        let (status, found, json) = self.check();
        assert!(
            found.iter().any(|(s, c)| s == severity && c == code),
            "{what}: expected {severity} {code}, got {json}"
        );
        assert_eq!(status, exit, "{what}: exit status; findings {json}");
    }

    #[track_caller]
    fn expect_clean(&self, what: &str) {
        let (status, found, json) = self.check();
        assert!(found.is_empty(), "{what}: expected no findings, got {json}");
        assert_eq!(status, 0, "{what}");
    }

    /// Run `f` with the recovery settings extended by `extra` (later wins),
    /// then put the file back.
    fn with_recovery_setting(&self, extra: &str, f: impl FnOnce()) {
        let saved = fs::read(&self.recovery_file).unwrap();
        self.sb
            .append_file(&self.recovery_file, &format!("\n{extra}\n"))
            .must();
        f();
        self.sb.write_file(&self.recovery_file, &saved).must();
    }

    fn restore_command(&self, rc: &str) -> String {
        format!("restore_command = '{rc}'")
    }
}

fn setup(label: &str) -> Env {
    let sb = Sandbox::new(label).must();
    eprintln!("[{label}] {} in {}", sb.pg().version, sb.path().display());
    let bin = sb.install_binary(&binary_under_test()).must();
    let primary = sb.primary("primary", &PrimaryOptions::default()).must();
    let backup = primary.cold_backup("base").must();
    let trigger = sb.trigger_path("standby");
    let standby = sb
        .standby(
            "standby",
            &backup,
            &StandbyOptions {
                restore_command: sb.restore_command(
                    &bin,
                    &format!("-t {} -s 1", trigger.display()),
                    true,
                ),
                trigger: Some(trigger.clone()),
                ..Default::default()
            },
        )
        .must();
    let recovery_file = if sb.major() < 12 {
        standby.data.join("recovery.conf")
    } else {
        standby.data.join("postgresql.conf")
    };
    Env {
        sb,
        bin,
        primary,
        standby,
        trigger,
        recovery_file,
    }
}

#[test]
fn a_correct_warm_standby_has_no_findings_and_runs() {
    let env = setup("check-ok");
    env.expect_clean("the harness's warm standby");
    // The checked setup really works: rows arrive, and the check stays clean
    // with the server running (its pg_control moving on).
    env.standby.start().must();
    env.primary.insert_and_switch(1).must();
    env.standby.wait_row(1, WAIT).must();
    env.expect_clean("while the standby runs");
    env.standby.stop("fast").must();
    env.expect_clean("after a restartpoint and a stop");
}

#[test]
fn each_misconfiguration_gives_its_finding() {
    let env = setup("check-bad");
    let major = env.sb.major();
    let data = env.standby.data.clone();

    // standby mode with a trigger file: the trigger cannot promote.
    if major >= 12 {
        env.sb.write_file(&data.join("standby.signal"), b"").must();
        env.expect("standby.signal", "error", "trigger-in-standby-mode", 1);
        fs::remove_file(data.join("standby.signal")).unwrap();
    } else {
        env.with_recovery_setting("standby_mode = on", || {
            env.expect("standby_mode", "error", "trigger-in-standby-mode", 1)
        });
    }

    // recovery_prefetch left at its default on 15+: a warning, exit 0.
    if major >= 15 {
        let conf = data.join("postgresql.conf");
        let saved = fs::read(&conf).unwrap();
        env.sb
            .append_file(&conf, "\nrecovery_prefetch = try\n")
            .must();
        env.expect("recovery_prefetch", "warning", "recovery-prefetch", 0);
        env.sb.write_file(&conf, &saved).must();
    }

    // The trigger file already there; and no recovery_end_command removing it.
    env.sb.write_file(&env.trigger, b"").must();
    env.expect("trigger present", "error", "trigger-present", 1);
    fs::remove_file(&env.trigger).unwrap();
    env.with_recovery_setting("recovery_end_command = ''", || {
        env.expect(
            "no recovery_end_command",
            "warning",
            "trigger-not-removed",
            0,
        )
    });

    // restore_command problems.
    let arch = env.sb.archive();
    let trig = env.trigger.display();
    let bin = env.bin.display();
    let swapped = env.restore_command(&format!("{bin} -t {trig} {} %p %f", arch.display()));
    env.with_recovery_setting(&swapped, || {
        env.expect("%p %f", "error", "placeholder-misplaced", 1)
    });
    let no_p = env.restore_command(&format!("{bin} -t {trig} {} %f", arch.display()));
    env.with_recovery_setting(&no_p, || {
        env.expect("no %p", "error", "placeholder-missing", 1)
    });
    env.with_recovery_setting(
        &format!(
            "archive_cleanup_command = 'pg_archivecleanup {} %r'",
            arch.display()
        ),
        || env.expect("two cleaners", "warning", "two-cleaners", 0),
    );
    let bad_s = env.restore_command(&format!("{bin} -s 0 -t {trig} {} %f %p", arch.display()));
    env.with_recovery_setting(&bad_s, || env.expect("-s 0", "error", "bad-options", 1));
    let relative = env.restore_command(&format!(
        "../../bin/pg_standby -t {trig} {} %f %p %r",
        arch.display()
    ));
    env.with_recovery_setting(&relative, || {
        env.expect("relative path", "warning", "relative-program", 0)
    });
    // Executable by root, not by the data directory's owner.
    let private = env.sb.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::copy(&env.bin, private.join("pg_standby")).unwrap();
    let private_rc = env.restore_command(&format!(
        "{}/pg_standby -t {trig} {} %f %p %r",
        private.display(),
        arch.display()
    ));
    if is_root() {
        env.with_recovery_setting(&private_rc, || {
            env.expect("private binary", "error", "program-not-executable", 1)
        });
    }

    // The archive: missing, unreadable by the owner, another cluster's.
    let missing = env.restore_command(&format!("{bin} -t {trig} /nonexistent/archive %f %p %r"));
    env.with_recovery_setting(&missing, || {
        env.expect("missing archive", "error", "archive-missing", 1)
    });
    if is_root() {
        let mode = fs::metadata(&arch).unwrap().permissions();
        std::os::unix::fs::chown(&arch, Some(0), Some(0)).unwrap();
        fs::set_permissions(&arch, fs::Permissions::from_mode(0o700)).unwrap();
        env.expect("root's archive", "error", "archive-not-readable", 1);
        fs::set_permissions(&arch, mode).unwrap();
        env.sb.mkdir(&arch).must(); // back to the server user
        env.expect_clean("archive readable again");
    }
    let other_arch = env.sb.path().join("other-archive");
    env.sb.mkdir(&other_arch).must();
    let other = env
        .sb
        .primary(
            "other",
            &PrimaryOptions {
                wal_segsize_mb: (major >= 11).then_some(1),
                extra_conf: format!(
                    "archive_command = 'test ! -f {a}/%f && cp %p {a}/%f'",
                    a = other_arch.display()
                ),
            },
        )
        .must();
    let seg = other.switch_wal().must();
    wait_until(WAIT, "the other cluster's segment", || {
        Ok(other_arch.join(&seg).exists())
    })
    .must();
    drop(other);
    let foreign = env.restore_command(&format!(
        "{bin} -t {trig} {} %f %p %r",
        other_arch.display()
    ));
    env.with_recovery_setting(&foreign, || {
        env.expect(
            "another cluster's archive",
            "error",
            "archive-foreign-cluster",
            1,
        );
        if major >= 11 {
            env.expect("1 MB segments", "error", "archive-segment-size", 1);
        }
    });

    // A gap: a segment between the redo point and the newest one removed.
    let mut made = Vec::new();
    for id in 1..=3 {
        made.push(env.primary.insert_and_switch(id).must());
    }
    env.primary.wait_archived(&made[2], WAIT).must();
    env.expect_clean("more segments archived");
    let hole = arch.join(&made[1]);
    let aside = env.sb.path().join("aside");
    fs::rename(&hole, &aside).unwrap();
    env.expect("a hole in the archive", "error", "archive-gap", 1);
    let (_, _, json) = env.check();
    assert!(json.contains(&made[1]), "the gap names {}: {json}", made[1]);
    fs::rename(&aside, &hole).unwrap();

    // The newest segment left by another user, mode 0600 (root's here).
    if is_root() {
        let newest = arch.join(&made[2]);
        std::os::unix::fs::chown(&newest, Some(0), Some(0)).unwrap();
        env.expect("root's segment", "error", "archive-segment-not-readable", 1);
        let owner = fs::metadata(&data).unwrap();
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::chown(&newest, Some(owner.uid()), Some(owner.gid())).unwrap();
    }

    // The major version outside 10-18.
    let version = data.join("PG_VERSION");
    let saved = fs::read(&version).unwrap();
    env.sb.write_file(&version, b"9.6\n").must();
    env.expect("9.6", "error", "unsupported-version", 1);
    env.sb.write_file(&version, &saved).must();

    // Not a standby at all.
    let signal = if major >= 12 {
        data.join("recovery.signal")
    } else {
        data.join("recovery.conf")
    };
    let saved = fs::read(&signal).unwrap();
    fs::remove_file(&signal).unwrap();
    env.expect("no signal file", "error", "no-recovery", 1);
    env.sb.write_file(&signal, &saved).must();

    env.expect_clean("everything put back");
}

#[test]
fn text_output_for_a_person() {
    let env = setup("check-text");
    env.sb.write_file(&env.trigger, b"").must();
    let out = Command::new(&env.bin)
        .arg("--check")
        .env("PGDATA", &env.standby.data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("ERROR: the trigger file "), "{text}");
    assert!(text.contains("\n    fix: rm "), "{text}");
    assert!(text.contains("1 error(s), 0 warning(s)"), "{text}");
    // The current directory is the last default.
    fs::remove_file(&env.trigger).unwrap();
    let out = Command::new(&env.bin)
        .arg("--check")
        .env_remove("PGDATA")
        .current_dir(&env.standby.data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn check_options_outside_check_are_usage_errors() {
    for args in [
        &["-D", "/tmp", "/arch", "F", "P"][..],
        &["--json", "/arch", "F", "P"],
    ] {
        let out = Command::new(binary_under_test())
            .args(args)
            .output()
            .unwrap();
        // 250: the server stops instead of promoting on a bad command line.
        assert_eq!(out.status.code(), Some(250), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only go with --check"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
