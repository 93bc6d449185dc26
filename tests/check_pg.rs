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

#[path = "support/s3_server.rs"]
mod s3_server;

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
    check_with(bin, data, &[])
}

const AWS_VARS: [&str; 6] = [
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
];

/// `check` with these variables, and no other AWS_* of ours.
fn check_with(
    bin: &Path,
    data: &Path,
    vars: &[(&str, String)],
) -> (i32, Vec<(String, String)>, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["--check", "--json", "-D"])
        .arg(data)
        .env_remove("PGDATA");
    for v in AWS_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().expect("run pg_standby --check");
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
        assert!(
            found.iter().all(|(s, _)| s == "ok"),
            "{what}: expected no findings, got {json}"
        );
        assert!(
            found.iter().any(|(_, c)| c == "archive"),
            "{what}: the archive is listed as checked: {json}"
        );
        assert_eq!(status, 0, "{what}");
    }

    /// The findings of one check, checks passed left out.
    fn problems(&self) -> Vec<(String, String)> {
        self.check()
            .1
            .into_iter()
            .filter(|(s, _)| s != "ok")
            .collect()
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

    // Both signal files: standby.signal wins, and is the one to remove.
    if major >= 12 {
        env.sb.write_file(&data.join("standby.signal"), b"").must();
        let (_, _, json) = env.check();
        let rm = format!("\"fix\":\"rm {}", data.join("standby.signal").display());
        assert!(json.contains(&rm), "remove, not replace: {json}");
        fs::remove_file(data.join("standby.signal")).unwrap();
    }

    // recovery_prefetch left at its default on 15+: the standby would stall
    // short of the newest commits, an error.
    if major >= 15 {
        let conf = data.join("postgresql.conf");
        let saved = fs::read(&conf).unwrap();
        env.sb
            .append_file(&conf, "\nrecovery_prefetch = try\n")
            .must();
        env.expect("recovery_prefetch", "error", "recovery-prefetch", 1);
        env.sb.write_file(&conf, &saved).must();
    }

    // The standby would archive into the archive it restores from once
    // promoted (its archive_command is the primary's, copied with it).
    let conf = data.join("postgresql.conf");
    let saved = fs::read(&conf).unwrap();
    env.sb.append_file(&conf, "\narchive_mode = on\n").must();
    env.expect(
        "archive_mode = on",
        "warning",
        "archives-into-own-archive",
        0,
    );
    env.sb.write_file(&conf, &saved).must();

    // The trigger file already there; and no recovery_end_command removing it.
    env.sb.write_file(&env.trigger, b"").must();
    env.expect("trigger present", "warning", "trigger-present", 0);
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
    // %p left out but %r kept: one error, not a second one about %r.
    let no_p_r = env.restore_command(&format!("{bin} -t {trig} {} %f %r", arch.display()));
    env.with_recovery_setting(&no_p_r, || {
        assert_eq!(
            env.problems(),
            [("error".to_string(), "placeholder-missing".to_string())]
        )
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
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("WARNING: the trigger file "), "{text}");
    assert!(text.contains("\n    fix: rm "), "{text}");
    assert!(text.contains("0 error(s), 1 warning(s)"), "{text}");
    assert!(
        text.contains("\nok: restore_command parsed as pg_standby would"),
        "{text}"
    );
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

/// Runs `pg_ctl start` for `srv` with this environment (PATH, AWS_*), as
/// a service manager would give it.
fn start_with_env(srv: &Server, vars: &[(&str, String)]) {
    let mut c = srv.pg_ctl();
    c.envs(vars.iter().map(|(k, v)| (k, v)))
        .arg("-l")
        .arg(&srv.logfile)
        .args(["-W", "start"]);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    srv.wait_ready(WAIT).must();
}

#[test]
fn an_s3_archive_and_a_program_by_name_are_checked_as_the_server_sees_them() {
    let s3 = s3_server::S3Server::start();
    let env = setup("check-s3");
    // The archive's segments, in a bucket.
    let prefix = s3.bucket("wal").join("standby");
    fs::create_dir_all(&prefix).unwrap();
    for f in env.sb.archive_files() {
        fs::copy(env.sb.archive().join(&f), prefix.join(&f)).unwrap();
    }
    // pg_standby by a name found nowhere else (a pg_standby may be installed
    // on this machine): in the sandbox's bin, which is in the server's PATH
    // and not in ours.
    let bindir = env.bin.parent().unwrap().to_path_buf();
    let name = format!("pg_standby_by_name_{}", std::process::id());
    fs::copy(&env.bin, bindir.join(&name)).unwrap();
    fs::set_permissions(bindir.join(&name), fs::Permissions::from_mode(0o755)).unwrap();
    let rc = env.restore_command(&format!(
        "{name} -s 1 -t {} s3://wal/standby %f %p %r",
        env.trigger.display()
    ));
    env.sb
        .append_file(&env.recovery_file, &format!("\n{rc}\n"))
        .must();
    let bin = &env.bin;
    let data = &env.standby.data;
    let codes = |found: &[(String, String)]| -> Vec<String> {
        found
            .iter()
            .filter(|(s, _)| s != "ok")
            .map(|(s, c)| format!("{s} {c}"))
            .collect()
    };

    // The server is not running: its PATH is assumed (pg_standby is not in
    // it), and the store is reached with our variables.
    let (status, found, json) = check_with(bin, data, &s3.env());
    assert_eq!(
        codes(&found),
        [
            "warning program-not-in-path",
            "note server-environment-unknown"
        ],
        "{json}"
    );
    assert_eq!(status, 0, "{json}");
    assert!(json.contains(&format!("/usr/local/bin/{name}")), "{json}");
    assert!(found.contains(&("ok".into(), "archive".into())), "{json}");
    assert!(json.contains("none missing"), "{json}");

    // A refused key, a missing bucket, no settings at all.
    let mut wrong = s3.env();
    wrong.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()));
    let (status, found, json) = check_with(bin, data, &wrong);
    assert!(
        codes(&found).contains(&"error archive-credentials-refused".to_string()),
        "{json}"
    );
    assert_eq!(status, 1);
    fs::rename(s3.root().join("wal"), s3.root().join("moved")).unwrap();
    let (_, found, json) = check_with(bin, data, &s3.env());
    assert!(
        codes(&found).contains(&"error archive-bucket-missing".to_string()),
        "{json}"
    );
    fs::rename(s3.root().join("moved"), s3.root().join("wal")).unwrap();
    let (status, found, json) = check_with(bin, data, &[]);
    assert!(
        codes(&found).contains(&"error archive-remote-config".to_string()),
        "{json}"
    );
    assert_eq!(status, 1);
    assert!(!json.contains("archive-missing"), "{json}");

    // The server runs with its own PATH and AWS_* variables: the check reads
    // them from it, with none of ours.
    let mut server_env = s3.env();
    server_env.push((
        "PATH",
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bindir.display()),
    ));
    // A trigger file left from before the start: the restore's stale rule
    // (no failover) is the check's.
    env.sb.write_file(&env.trigger, b"").must();
    let made = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // postmaster.pid gives the start in whole seconds: start in a later one.
    wait_until(WAIT, "the next second", || {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            > made)
    })
    .must();
    start_with_env(&env.standby, &server_env);
    let (status, found, json) = check_with(bin, data, &[]);
    assert_eq!(codes(&found), ["warning trigger-present"], "{json}");
    assert!(json.contains("older than the server's start"), "{json}");
    assert_eq!(status, 0, "{json}");
    assert!(
        env.standby.in_recovery().must(),
        "a stale trigger fails nothing over"
    );
    fs::remove_file(&env.trigger).unwrap();
    let (status, found, json) = check_with(bin, data, &[]);
    assert_eq!(codes(&found), Vec::<String>::new(), "{json}");
    assert_eq!(status, 0, "{json}");
    assert!(json.contains("the running server's"), "{json}");
    // The store goes away while the server runs.
    drop(s3);
    let (status, found, json) = check_with(bin, data, &[]);
    assert!(
        codes(&found).contains(&"error archive-unreachable".to_string()),
        "{json}"
    );
    assert_eq!(status, 1);
    env.standby.stop("immediate").must();
}

/// A Debian cluster made by pg_createcluster; dropped (and stopped) on drop.
struct DebianCluster {
    major: u32,
    name: String,
}

impl Drop for DebianCluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.major.to_string(), &self.name])
            .output();
        // pg_dropcluster leaves the files it did not make (conf.d/).
        let _ = fs::remove_dir_all(format!("/etc/postgresql/{}/{}", self.major, self.name));
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// docs/recipes.md's Debian recipe, followed on a real cluster: the
/// configuration lives in /etc/postgresql/MAJOR/NAME, the data directory
/// comes from pg_basebackup; --check reads the configuration the server
/// reads, and the standby restores through pg_standby.
#[test]
fn a_debian_cluster_made_by_the_recipe_is_checked_and_runs() {
    // A Debian cluster needs Debian's own server: the run without PG_BINDIR
    // tests the recipe, the matrix runs of other majors (PG_BINDIR) do not.
    if std::env::var_os("PG_BINDIR").is_some() {
        eprintln!("the Debian recipe runs with Debian's own server, without PG_BINDIR");
        return;
    }
    assert!(
        is_root(),
        "the Debian recipe runs as root (pg_createcluster, pg_ctlcluster)"
    );
    assert!(
        Path::new("/usr/bin/pg_createcluster").exists(),
        "pg_createcluster is missing: apt-get install postgresql (postgresql-common)"
    );
    let env = setup("check-debian");
    let major = env.sb.major();
    let debian_bin = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    assert!(
        debian_bin.exists(),
        "{}: apt-get install postgresql-{major}",
        debian_bin.display()
    );
    let name = format!("pgstandbycheck{}", std::process::id());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = env.sb.path().join("debian").join("main");
    env.sb.mkdir(data.parent().unwrap()).must();
    let cluster = DebianCluster {
        major,
        name: name.clone(),
    };
    run_ok(
        Command::new("pg_createcluster")
            .args(["-p", &port.to_string(), "-d"])
            .arg(&data)
            .args([&major.to_string(), &name]),
    );
    let etc = PathBuf::from(format!("/etc/postgresql/{major}/{name}"));
    // The recipe: an empty data directory, filled by pg_basebackup from
    // the primary, as the cluster's owner.
    run_ok(
        Command::new("find")
            .arg(&data)
            .args(["-mindepth", "1", "-delete"]),
    );
    run_ok(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(debian_bin.join("pg_basebackup"))
            .arg("-D")
            .arg(&data)
            .arg("-h")
            .arg(&env.primary.dir)
            .args(["-p", &env.primary.port.to_string(), "-U", "postgres"])
            .args(["-X", "fetch", "-c", "fast"]),
    );
    let trigger = env.sb.trigger_path("debian");
    let mut settings = format!(
        "restore_command = '{} -t {} {} %f %p %r'\nrecovery_end_command = 'rm -f {}'\n",
        env.bin.display(),
        trigger.display(),
        env.sb.archive().display(),
        trigger.display()
    );
    if major >= 15 {
        settings += "recovery_prefetch = off\n";
    }
    fs::write(etc.join("conf.d/pg_standby.conf"), &settings).unwrap();
    env.sb.write_file(&data.join("recovery.signal"), b"").must();

    let clean = |what: &str| {
        let (status, found, json) = check(&env.bin, &data);
        assert!(
            found.iter().all(|(s, _)| s == "ok"),
            "{what}: expected no findings, got {json}"
        );
        assert_eq!(status, 0, "{what}: {json}");
        // The configuration the server reads, not the copy the base backup
        // brought (the harness's primary keeps one in its data directory).
        assert!(
            json.contains(&format!("{}/postgresql.conf", etc.display())),
            "{what}: {json}"
        );
        assert!(json.contains("conf.d/pg_standby.conf"), "{what}: {json}");
    };
    clean("a Debian standby, stopped");

    run_ok(Command::new("pg_ctlcluster").args([&major.to_string(), &name, "start"]));
    let psql = |sql: &str| -> Option<String> {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(debian_bin.join("psql"))
            .args(["-X", "-At", "-h", "/var/run/postgresql"])
            .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    env.primary.insert_and_switch(7).must();
    wait_until(WAIT, "the row on the Debian standby", || {
        Ok(psql("SELECT count(*) FROM t WHERE id = 7").as_deref() == Some("1"))
    })
    .must();
    assert_eq!(psql("SELECT pg_is_in_recovery()").as_deref(), Some("t"));
    clean("a Debian standby, running");
    drop(cluster);
    assert!(!etc.exists(), "{} is left", etc.display());
}
