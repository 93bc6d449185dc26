//! `pg_standby --check [-D DATADIR] [--json]`: inspect a standby's setup
//! without starting anything, and report each problem with its fix.
//!
//! Exit status: 0 when no finding is an error (warnings and notes alone give
//! 0), 1 when at least one error would break recovery or failover. (Not a
//! restore_command mode: the server never runs this, so 1 cannot promote.)

mod access;
mod registry;
mod server;
mod shell;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::archive::codec::{Codec, decompress_to};
use crate::archive::is_object_storage;
use crate::cli::Cli;
use crate::server::datadir::RecoveryMode;
use crate::server::pgconf::Conf;
use crate::wal::SegmentName;
use crate::wal::header::{LONG_HEADER_LEN, LongPageHeader, fmt_lsn};

use crate::server::control::Control;
pub use access::Owner;
pub use server::ServerEnv;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// Something the checker could not judge (not an error, not a warning).
    Note,
    /// A check that was made and found nothing: what "0 errors" rests on.
    Passed,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Note => "note",
            Self::Passed => "ok",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

fn finding(severity: Severity, code: &'static str, message: String, fix: String) -> Finding {
    Finding {
        severity,
        code,
        message,
        fix,
    }
}

/// A check passed: `code` names the check, `message` what was seen.
fn ok(code: &'static str, message: String) -> Finding {
    finding(Severity::Passed, code, message, String::new())
}

/// Whether the findings pushed since `before` are only checks passed.
fn clean_since(out: &[Finding], before: usize) -> bool {
    out[before..].iter().all(|f| f.severity == Severity::Passed)
}

/// Placeholders put where the server substitutes %f, %p and %r, so that the
/// parsed command line shows where each one landed.
const SENT_F: &str = "\u{1}%f\u{1}";
const SENT_P: &str = "\u{1}%p\u{1}";
const SENT_R: &str = "\u{1}%r\u{1}";

/// The data directory to inspect: `-D`, else $PGDATA, else the current
/// directory.
pub fn datadir_from(cli_value: Option<PathBuf>) -> PathBuf {
    cli_value
        .or_else(|| std::env::var_os("PGDATA").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The whole `--check` mode: inspect, print, and return the exit status.
pub fn main(cli: &Cli) -> u8 {
    // An archive alone: its registry of standbys.
    if let (Some(archive), None) = (&cli.archive, &cli.pgdata) {
        let expiry = std::time::Duration::from_secs(cli.standby_expiry * 3600);
        let findings = registry::of_archive(archive, expiry);
        let out = if cli.json {
            to_json(&findings)
        } else {
            to_text(archive, &findings)
        };
        crate::obs::logging::write_stdout(out.as_bytes());
        return exit_status(&findings);
    }
    let datadir = datadir_from(cli.pgdata.clone());
    let datadir = std::path::absolute(&datadir).unwrap_or(datadir);
    let findings = inspect(&datadir);
    let out = if cli.json {
        to_json(&findings)
    } else {
        to_text(&datadir, &findings)
    };
    crate::obs::logging::write_stdout(out.as_bytes());
    exit_status(&findings)
}

pub fn exit_status(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.severity == Severity::Error))
}

pub fn to_text(datadir: &Path, findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let label = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Note => "NOTE",
            Severity::Passed => "ok",
        };
        let _ = writeln!(out, "{label}: {} [{}]", f.message, f.code);
        if !f.fix.is_empty() {
            let _ = writeln!(out, "    fix: {}", f.fix);
        }
    }
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let _ = writeln!(
        out,
        "{}: {errors} error(s), {warnings} warning(s), {} check(s) passed{}",
        datadir.display(),
        count(Severity::Passed),
        if errors == 0 {
            if warnings == 0 {
                ": the setup looks right"
            } else {
                ": recovery and failover should work"
            }
        } else {
            ": recovery or failover would fail"
        }
    );
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of `{"severity","code","message","fix"}` objects; the
/// checks passed have severity `ok` and an empty fix.
pub fn to_json(findings: &[Finding]) -> String {
    let items: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{{\"severity\":{},\"code\":{},\"message\":{},\"fix\":{}}}",
                json_string(f.severity.as_str()),
                json_string(f.code),
                json_string(&f.message),
                json_string(&f.fix)
            )
        })
        .collect();
    format!("[{}]\n", items.join(",\n "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// standby.signal, or standby_mode = on in recovery.conf.
    Standby,
    /// recovery.signal, or recovery.conf without standby_mode.
    Archive,
    /// Nothing: the server would start as a primary.
    None,
}

/// What the data directory says, read once.
struct Setup {
    datadir: PathBuf,
    major: Option<u32>,
    /// postgresql.conf + postgresql.auto.conf (+ recovery.conf on 10/11 for
    /// the recovery settings, see `recovery_setting`).
    conf: Conf,
    recovery_conf: Option<Conf>,
    /// A postgresql.conf was read (else settings from it are unknown, not
    /// unset).
    conf_found: bool,
    mode: Mode,
    owner: Option<Owner>,
    /// What restore_command inherits from the server, if it runs.
    server_env: ServerEnv,
}

impl Setup {
    /// restore_command and friends live in recovery.conf on 10 and 11, and in
    /// postgresql.conf from 12 on.
    fn recovery_setting(&self, name: &str) -> Option<&str> {
        match (&self.recovery_conf, self.major) {
            (Some(rc), Some(m)) if m < 12 => rc.value(name),
            (_, Some(m)) if m < 12 => None,
            _ => self.conf.value(name),
        }
        .filter(|v| !v.is_empty())
    }

    fn may(&self, path: &Path, mode: i32) -> Option<bool> {
        self.owner.as_ref().and_then(|o| o.may(path, mode))
    }

    fn owner_name(&self) -> String {
        self.owner
            .as_ref()
            .map_or_else(|| "the data directory's owner".into(), Owner::describe)
    }
}

/// Every finding for the data directory `datadir`.
pub fn inspect(datadir: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(setup) = read_setup(datadir, &mut out) else {
        return out;
    };
    setup_passed(&setup, &mut out);
    check_prefetch(&setup, &mut out);
    check_restore_command(&setup, &mut out);
    out.sort_by_key(|f| f.severity);
    out
}

fn read_setup(datadir: &Path, out: &mut Vec<Finding>) -> Option<Setup> {
    use Severity::*;
    let version = match fs::read_to_string(datadir.join("PG_VERSION")) {
        Ok(v) => v.trim().to_string(),
        Err(e) => {
            out.push(finding(
                Error,
                "not-a-data-directory",
                format!(
                    "{} is not a PostgreSQL data directory (PG_VERSION: {e})",
                    datadir.display()
                ),
                "give the standby's data directory with -D DATADIR or $PGDATA".into(),
            ));
            return None;
        }
    };
    let major = version.parse::<u32>().ok();
    match major {
        Some(10..=18) => {}
        _ => out.push(finding(
            Error,
            "unsupported-version",
            format!("PostgreSQL {version} (from PG_VERSION): pg_standby supports 10 to 18"),
            "use a PostgreSQL 10-18 standby".into(),
        )),
    }
    let owner = Owner::of(datadir).ok();

    let mut conf = Conf::default();
    let main_conf = datadir.join("postgresql.conf");
    // How the server was last started (pg_ctl restart starts it so again):
    // its -c settings outrank the configuration files.
    let opts = postmaster_opts(datadir);
    let opts_conf = opts
        .iter()
        .rev()
        .find(|(k, _)| k == "config_file")
        .map(|(_, v)| datadir.join(v))
        .filter(|p| p.is_file());
    // A Debian cluster naming this data directory is started with its
    // config_file (pg_ctlcluster passes -c config_file=...): that file
    // wins over a postgresql.conf a base backup may have brought along.
    let conf_found = if let Some(file) =
        opts_conf.or_else(|| major.and_then(|m| cluster_conf(Path::new(ETC), m, datadir)))
    {
        conf.read_file(&file);
        true
    } else if main_conf.exists() {
        conf.read_file(&main_conf);
        true
    } else {
        out.push(finding(
            Warning,
            "no-postgresql-conf",
            format!(
                "no postgresql.conf in {} nor in {ETC}/MAJOR/*/ naming it as data_directory: \
                 the server's settings were not checked",
                datadir.display()
            ),
            "run the check where the server's config_file is visible".into(),
        ));
        false
    };
    // The server reads postgresql.auto.conf last (ProcessConfigFileInternal).
    let auto = datadir.join("postgresql.auto.conf");
    if auto.exists() {
        conf.read_file(&auto);
    }
    let opts_file = datadir.join("postmaster.opts");
    for (name, value) in opts {
        conf.settings.push(crate::server::pgconf::Setting {
            name,
            value,
            file: opts_file.clone(),
            line: 1,
        });
    }
    for p in &conf.problems {
        out.push(finding(
            Error,
            "config-error",
            format!("{p}: the server would not start"),
            "correct the file".into(),
        ));
    }

    let recovery_conf_path = datadir.join("recovery.conf");
    let mut recovery_conf = None;
    let pre12 = major.is_some_and(|m| m < 12);
    if recovery_conf_path.exists() {
        if pre12 {
            let mut rc = Conf::default();
            rc.read_file(&recovery_conf_path);
            for p in &rc.problems {
                out.push(finding(
                    Error,
                    "config-error",
                    format!("{p}: the server would not start"),
                    "correct recovery.conf".into(),
                ));
            }
            recovery_conf = Some(rc);
        } else {
            out.push(finding(
                Error,
                "recovery-conf",
                "recovery.conf exists: PostgreSQL 12 and later refuse to start with it".into(),
                "move its settings into postgresql.conf, remove it, and create recovery.signal"
                    .into(),
            ));
        }
    }
    // The restore's rule; 10 and 11 read no signal file, and 12+ no
    // recovery.conf (refused above).
    let mode = match RecoveryMode::of(
        if pre12 { recovery_conf.as_ref() } else { None },
        !pre12 && datadir.join("standby.signal").exists(),
        !pre12 && datadir.join("recovery.signal").exists(),
    ) {
        RecoveryMode::Standby => Mode::Standby,
        RecoveryMode::Archive => Mode::Archive,
        RecoveryMode::Unknown => Mode::None,
    };
    if mode == Mode::None {
        out.push(if pre12 {
            finding(
                Error,
                "no-recovery",
                "no recovery.conf: the server would start as a primary, not as a standby".into(),
                "create recovery.conf with restore_command = 'pg_standby ... %f %p %r'".into(),
            )
        } else {
            finding(
                Error,
                "no-recovery",
                "neither recovery.signal nor standby.signal: the server would start as a \
                 primary, not as a standby"
                    .into(),
                format!(
                    "touch {} (owned by the data directory's owner)",
                    datadir.join("recovery.signal").display()
                ),
            )
        });
    }
    if pre12 {
        // 10 and 11 read the recovery settings from recovery.conf only.
        for name in [
            "restore_command",
            "archive_cleanup_command",
            "recovery_end_command",
            "standby_mode",
        ] {
            if let Some(s) = conf.get(name) {
                out.push(finding(
                    Warning,
                    "recovery-setting-in-postgresql-conf",
                    format!(
                        "{name} is set in {} line {}: PostgreSQL {} reads it from recovery.conf \
                         only, and rejects it as an unrecognized parameter there",
                        s.file.display(),
                        s.line,
                        major.unwrap_or_default()
                    ),
                    format!("move {name} into recovery.conf"),
                ));
            }
        }
    }
    Some(Setup {
        conf_found,
        datadir: datadir.to_path_buf(),
        major,
        conf,
        recovery_conf,
        mode,
        owner,
        server_env: ServerEnv::of(datadir),
    })
}

/// What was read without a problem: the version, the configuration files,
/// the recovery mode.
fn setup_passed(setup: &Setup, out: &mut Vec<Finding>) {
    if let Some(m @ 10..=18) = setup.major {
        out.push(ok(
            "data-directory",
            format!(
                "{} is a PostgreSQL {m} data directory owned by {}",
                setup.datadir.display(),
                setup.owner_name()
            ),
        ));
    }
    if setup.conf_found && setup.conf.problems.is_empty() {
        let mut files: Vec<String> = Vec::new();
        for s in &setup.conf.settings {
            let f = s.file.display().to_string();
            if !files.contains(&f) {
                files.push(f);
            }
        }
        if let Some(rc) = &setup.recovery_conf {
            files.push(setup.datadir.join("recovery.conf").display().to_string());
            if !rc.problems.is_empty() {
                return;
            }
        }
        out.push(ok(
            "configuration",
            format!("settings read from {}", files.join(", ")),
        ));
    }
    let mode = match (setup.mode, setup.major.is_some_and(|m| m < 12)) {
        (Mode::Archive, true) => "recovery.conf without standby_mode: archive recovery",
        (Mode::Archive, false) => "recovery.signal: archive recovery",
        (Mode::Standby, true) => "standby_mode = on in recovery.conf: standby mode",
        (Mode::Standby, false) => "standby.signal: standby mode",
        (Mode::None, _) => return,
    };
    out.push(ok("recovery-mode", mode.into()));
}

/// The `-c NAME=VALUE` and `--NAME=VALUE` settings of the command line in
/// `datadir/postmaster.opts`, which the postmaster writes at each start
/// (CreateOptsFile in src/backend/postmaster/postmaster.c: the program,
/// then each argument in double quotes).
fn postmaster_opts(datadir: &Path) -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string(datadir.join("postmaster.opts")) else {
        return Vec::new();
    };
    parse_postmaster_opts(&text)
}

fn parse_postmaster_opts(text: &str) -> Vec<(String, String)> {
    let args: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let setting = if args[i] == "-c" {
            i += 1;
            args.get(i).copied()
        } else {
            args[i].strip_prefix("--")
        };
        if let Some((k, v)) = setting.and_then(|s| s.split_once('=')) {
            // The server folds - to _ in names given on the command line.
            out.push((k.to_ascii_lowercase().replace('-', "_"), v.to_string()));
        }
        i += 1;
    }
    out
}

/// Where Debian's postgresql-common keeps each cluster's configuration.
const ETC: &str = "/etc/postgresql";

/// The `ETC/MAJOR/CLUSTER/postgresql.conf` whose data_directory is
/// `datadir` (Debian and Ubuntu keep the configuration out of the data
/// directory).
fn cluster_conf(etc: &Path, major: u32, datadir: &Path) -> Option<PathBuf> {
    let want = fs::canonicalize(datadir).ok()?;
    let mut dirs: Vec<PathBuf> = fs::read_dir(etc.join(major.to_string()))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| d.join("postgresql.conf"))
        .find(|conf| {
            let mut c = Conf::default();
            c.read_file(conf);
            c.value("data_directory")
                .and_then(|d| fs::canonicalize(d).ok())
                .is_some_and(|d| d == want)
        })
}

/// Where the command line put the placeholders, as our parser sees it.
struct Parsed {
    cli: Cli,
    words: Vec<String>,
}

fn check_restore_command(setup: &Setup, out: &mut Vec<Finding>) {
    use Severity::*;
    let Some(command) = setup.recovery_setting("restore_command") else {
        let unknown = !setup.conf_found && setup.major.is_some_and(|m| m >= 12);
        if setup.mode != Mode::None && !unknown {
            out.push(finding(
                Error,
                "no-restore-command",
                format!(
                    "restore_command is not set{}: archive recovery cannot start",
                    if setup.major.is_some_and(|m| m < 12) {
                        " in recovery.conf"
                    } else {
                        ""
                    }
                ),
                "restore_command = 'pg_standby -t TRIGGERFILE ARCHIVEDIR %f %p %r'".into(),
            ));
        }
        return;
    };
    let substituted = substitute(command);
    let split = match shell::split(&substituted) {
        Ok(s) => s,
        Err(e) => {
            out.push(finding(
                Error,
                "restore-command-syntax",
                format!("restore_command cannot be run by /bin/sh: {e}"),
                "balance the quotes in restore_command".into(),
            ));
            return;
        }
    };
    // Leading `VAR=value` assignments and `exec` are not the program; the
    // assignments are part of the program's environment.
    // So are `env`, its -i/-u NAME options and its assignments.
    let mut lead = 0;
    let mut in_env = false;
    while let Some(w) = split.words.get(lead) {
        if is_assignment(w) || w == "exec" {
            lead += 1;
        } else if w == "env" || w.ends_with("/env") {
            in_env = true;
            lead += 1;
        } else if in_env && (w == "-u" || w == "--unset") {
            lead += 2;
        } else if in_env && w.starts_with('-') {
            lead += 1;
        } else {
            break;
        }
    }
    let lead = lead.min(split.words.len());
    let assignments: Vec<(String, String)> = split.words[..lead]
        .iter()
        .filter(|w| is_assignment(w))
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('\u{1}', "")))
        .collect();
    let words: Vec<String> = split.words[lead..].to_vec();
    let Some(program) = words.first().cloned() else {
        out.push(finding(
            Error,
            "no-restore-command",
            "restore_command is empty".into(),
            "restore_command = 'pg_standby -t TRIGGERFILE ARCHIVEDIR %f %p %r'".into(),
        ));
        return;
    };
    let base = Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !base.starts_with("pg_standby") {
        out.push(finding(
            Note,
            "not-pg-standby",
            format!("restore_command runs {program}, not pg_standby: its setup was not checked"),
            String::new(),
        ));
        return;
    }
    if split.complex {
        out.push(finding(
            Warning,
            "complex-restore-command",
            "restore_command is more than a single command (a shell operator or $ expansion): \
             only the pg_standby command line before it was checked"
                .into(),
            "make restore_command a single pg_standby command".into(),
        ));
    }
    check_program(setup, &program, out);
    let cli = match Cli::try_parse_from(words.iter().map(|w| w.replace('\u{1}', ""))) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            out.push(finding(
                Error,
                "bad-options",
                format!("pg_standby rejects the options in restore_command: {first}"),
                "see pg_standby --help".into(),
            ));
            return;
        }
    };
    // Re-parse with the placeholders marked to see where they landed.
    let Ok(marked) = Cli::try_parse_from(&words) else {
        return;
    };
    let parsed = Parsed { cli: marked, words };
    let before = out.len();
    check_placeholders(&parsed, out);
    if clean_since(out, before) {
        out.push(ok(
            "restore-command",
            format!(
                "restore_command parsed as pg_standby would: options accepted, {} in place",
                if parsed.cli.restart_wal_file.is_some() {
                    "%f, %p and %r"
                } else {
                    "%f and %p"
                }
            ),
        ));
    }
    check_cleanup(setup, &parsed, out);
    check_trigger(setup, &cli, out);
    check_spool(setup, &cli, out);
    let Some(archive) = &cli.archive else {
        return;
    };
    let expiry = std::time::Duration::from_secs(cli.standby_expiry * 3600);
    let sysid = Control::read(&setup.datadir)
        .ok()
        .map(|c| c.system_identifier);
    match archive.to_str() {
        Some(url) if is_object_storage(url) => {
            check_remote_archive(setup, url, &assignments, out);
            #[cfg(feature = "remote")]
            if let Ok(store) =
                crate::archive::store::open_with(url, &command_env(setup, &assignments))
            {
                let archive = crate::archive::Archive::in_store(url, store);
                registry::findings(&archive, sysid, expiry, out);
            }
        }
        _ => {
            let path = setup.datadir.join(archive);
            check_local_archive(setup, &path, out);
            if let Ok(archive) = crate::archive::Archive::open(&path) {
                registry::findings(&archive, sysid, expiry, out);
            }
        }
    }
    check_archiving(setup, archive, out);
}

/// The variables restore_command sees: its own leading assignments, then
/// the running server's environment; when that cannot be read, this
/// process's (said in a note).
fn command_env<'a>(
    setup: &'a Setup,
    assignments: &'a [(String, String)],
) -> impl Fn(&str) -> Option<String> + 'a {
    move |k: &str| {
        assignments
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| match &setup.server_env {
                ServerEnv::Known { .. } => setup.server_env.var(k).map(String::from),
                ServerEnv::Unknown(_) => std::env::var(k).ok(),
            })
    }
}

/// [`remote_failure`] for an `azure://` archive: the same findings, with
/// Azure's names for the fixes.
fn azure_failure(e: &crate::archive::store::Error) -> (&'static str, &'static str) {
    use crate::archive::store::{Error, Fatal};
    let code = remote_failure(e, "").0;
    let fix = match e {
        Error::Config {
            refused: Some(Fatal::NoBucket),
            ..
        } => {
            "create the container, or correct CONTAINER in ARCHIVELOCATION (and the account or \
             AZURE_STORAGE_BLOB_ENDPOINT if it lives elsewhere)"
        }
        Error::Config {
            refused: Some(Fatal::Denied),
            ..
        } => {
            "give the server's environment a key, SAS (r, l; d with %r) or managed identity \
             (Storage Blob Data Reader; Contributor with %r) for the container"
        }
        e if e.is_transient() => {
            "check the account or AZURE_STORAGE_BLOB_ENDPOINT, the network and any proxy \
             between the standby and the service"
        }
        _ => {
            "set the AZURE_STORAGE_* variables in the server's environment (Environment= or \
             EnvironmentFile= of its systemd service) or at the start of restore_command"
        }
    };
    (code, fix)
}

/// Which finding an object storage failure is, and its fix (in the terms
/// of the store `url` names).
fn remote_failure(e: &crate::archive::store::Error, url: &str) -> (&'static str, &'static str) {
    use crate::archive::store::{Error, Fatal};
    if url.starts_with("azure:") {
        return azure_failure(e);
    }
    let gcs = url.starts_with("gs:");
    match e {
        Error::Config {
            refused: Some(Fatal::NoBucket),
            ..
        } => (
            "archive-bucket-missing",
            "create the bucket, or correct BUCKET in ARCHIVELOCATION (and the endpoint or \
             region if it lives elsewhere)",
        ),
        Error::Config {
            refused: Some(Fatal::Denied),
            ..
        } if gcs => (
            "archive-credentials-refused",
            "give the server's credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file or \
             the machine's service account) storage.objects.get and storage.objects.list on \
             the bucket (and storage.objects.delete with %r), and check the clock",
        ),
        Error::Config {
            refused: Some(Fatal::Denied),
            ..
        } => (
            "archive-credentials-refused",
            "give the server's environment a key allowed s3:ListBucket and s3:GetObject on \
             the archive (and s3:DeleteObject with %r), and check the clock",
        ),
        Error::Transient(_) | Error::Throttled { .. } if gcs => (
            "archive-unreachable",
            "check STORAGE_EMULATOR_HOST if set, the network and any proxy between the \
             standby and Cloud Storage (and the token endpoint)",
        ),
        Error::Transient(_) | Error::Throttled { .. } => (
            "archive-unreachable",
            "check AWS_ENDPOINT_URL (or the region), the network and any proxy between the \
             standby and the object store",
        ),
        _ if gcs => (
            "archive-remote-config",
            "set GOOGLE_APPLICATION_CREDENTIALS in the server's environment (Environment= of \
             its systemd service) or at the start of restore_command, or give the machine a \
             service account",
        ),
        _ => (
            "archive-remote-config",
            "set the AWS_* variables in the server's environment (Environment= or \
             EnvironmentFile= of its systemd service) or at the start of restore_command",
        ),
    }
}

/// An object storage archive: open the store as the restore does (the
/// same parser and credential chain) and list the prefix.
fn check_remote_archive(
    setup: &Setup,
    url: &str,
    assignments: &[(String, String)],
    out: &mut Vec<Finding>,
) {
    use Severity::*;
    let env = command_env(setup, assignments);
    let whose = match &setup.server_env {
        ServerEnv::Known { pid, .. } => format!("the running server's environment (pid {pid})"),
        ServerEnv::Unknown(why) => {
            out.push(finding(
                Note,
                "server-environment-unknown",
                format!(
                    "the server's environment cannot be read ({why}): the archive {url} was \
                     reached with this process's variables (AWS_*, GOOGLE_*) and files; the \
                     server sees its own (its service's Environment=, its user's ~/.aws or \
                     ~/.config/gcloud)"
                ),
                "run the check while the server runs, as root or as its user".into(),
            ));
            "this process's environment".to_string()
        }
    };
    let fail = |out: &mut Vec<Finding>, e: crate::archive::store::Error| {
        let (code, fix) = remote_failure(&e, url);
        out.push(finding(
            Error,
            code,
            format!("the archive {url}: {e} (settings from {whose})"),
            fix.into(),
        ));
    };
    if let Err(why) = crate::archive::store::validate_url(url) {
        out.push(finding(
            Error,
            "archive-url",
            why,
            "ARCHIVELOCATION = s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or \
             azure://CONTAINER/PREFIX"
                .into(),
        ));
        return;
    }
    let store = match crate::archive::store::open_with(url, &env) {
        Ok(s) => s,
        Err(e) => return fail(out, e),
    };
    let objects = match store.list("") {
        Ok(o) => o,
        Err(e) => return fail(out, e),
    };
    let mut segments: Vec<(SegmentName, String)> = objects
        .into_iter()
        .filter_map(|(file, _)| {
            let base = Codec::split_name(&file).map_or(file.as_str(), |(_, b)| b);
            Some((SegmentName::parse(base)?, file))
        })
        .collect();
    segments.sort_by_key(|(s, _)| (s.log, s.seg, s.tli));
    let Some((_, newest)) = segments.last() else {
        out.push(finding(
            Warning,
            "archive-empty",
            format!(
                "the archive {url} holds no WAL segment yet (listed at {} with credentials from \
                 {}): the standby will wait for its first one",
                store.endpoint(),
                store.credentials_source()
            ),
            "check the primary's archive_command".into(),
        ));
        return;
    };
    let before = out.len();
    if let Ok(control) = Control::read(&setup.datadir)
        && let Some(gap) = find_gap(&segments, &control)
    {
        out.push(gap);
    }
    if clean_since(out, before) {
        out.push(ok(
            "archive",
            format!(
                "the archive {url} listed at {} with credentials from {} ({whose}): {} \
                 segment(s), newest {newest}, none missing since the redo point",
                store.endpoint(),
                store.credentials_source(),
                segments.len()
            ),
        ));
    }
}

/// A standby that archives into the archive it restores from.
fn check_archiving(setup: &Setup, archive: &Path, out: &mut Vec<Finding>) {
    if setup.mode == Mode::None || !setup.conf_found {
        return;
    }
    // archive_mode is an enum: off, on, always and the boolean aliases
    // (archive_mode_options in guc_tables.c).
    let mode = setup
        .conf
        .value("archive_mode")
        .unwrap_or("off")
        .trim()
        .to_ascii_lowercase();
    let always = mode == "always";
    if !always && !matches!(mode.as_str(), "on" | "true" | "yes" | "1") {
        out.push(ok(
            "archiving",
            format!("archive_mode = {mode}: this standby archives nothing"),
        ));
        return;
    }
    // From 15 on an archive_library replaces archive_command.
    if let Some(lib) = setup
        .conf
        .value("archive_library")
        .filter(|l| !l.is_empty())
    {
        out.push(finding(
            Severity::Note,
            "archive-library",
            format!("archive_library = {lib}: where it archives was not checked"),
            String::new(),
        ));
        return;
    }
    let command = setup.conf.value("archive_command").unwrap_or("");
    let raw = archive.to_string_lossy();
    let mut targets: Vec<String> = Vec::new();
    if let Some(l) = raw
        .strip_prefix("s3://")
        .filter(|_| is_object_storage(&raw))
    {
        // s3://BUCKET/PREFIX, or BUCKET/PREFIX in an endpoint URL (curl).
        targets.push(l.trim_end_matches('/').to_string());
    } else {
        let abs = setup.datadir.join(archive);
        targets.push(abs.to_string_lossy().trim_end_matches('/').to_string());
        if let Ok(c) = fs::canonicalize(&abs) {
            targets.push(c.to_string_lossy().trim_end_matches('/').to_string());
        }
        if archive.is_relative() {
            targets.push(raw.trim_end_matches('/').to_string());
        }
    }
    let hit = targets
        .iter()
        .any(|t| !t.is_empty() && command.contains(&format!("{t}/")));
    if !hit {
        out.push(ok(
            "archiving",
            format!("archive_mode = {mode}: archive_command does not write into {raw}"),
        ));
        return;
    }
    let (message, fix) = if always {
        (
            format!(
                "archive_mode = always and archive_command writes into {raw}, the archive this \
                 standby restores from: with always, every segment it restores is archived \
                 again (KeepFileRestoredFromArchive), into the archive its primary writes too; an \
                 archive_command that refuses to overwrite (test ! -f) then fails for ever and \
                 pg_wal fills up"
            ),
            "archive_mode = on (or off) on this standby, or an archive_command into an archive \
             of its own",
        )
    } else {
        (
            format!(
                "archive_mode = on and archive_command writes into {raw}, the archive this \
                 standby restores from: nothing is archived while it is a standby, but once \
                 promoted it archives its new timeline there, where the old primary (if it still \
                 runs) keeps archiving and the other standbys read: they follow the new \
                 timeline (recovery_target_timeline = latest, the default from 12) whether or \
                 not the old primary was stopped, and a %r cleanup removes segments others \
                 still need"
            ),
            "if this standby is the one to take over: stop the old primary for good before \
             promoting, and let only one standby pass %r; else give it an archive_command into \
             an archive of its own, or archive_mode = off until it is promoted",
        )
    };
    out.push(finding(
        Severity::Warning,
        "archives-into-own-archive",
        message,
        fix.into(),
    ));
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The server's substitution (BuildRestoreCommand): %f, %p, %r and %%; any
/// other % stays.
fn substitute(command: &str) -> String {
    let mut out = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('f') => out.push_str(SENT_F),
            Some('p') => out.push_str(SENT_P),
            Some('r') => out.push_str(SENT_R),
            Some('%') => out.push('%'),
            _ => {
                out.push('%');
                continue;
            }
        }
        chars.next();
    }
    out
}

/// The fix for a program the server's user cannot run: a copy where every
/// user may run it, named by its absolute path (never loosen the modes of a
/// copy under someone's home, such as root's ~/.cargo/bin).
fn install_advice(name: &str, from: Option<&Path>) -> String {
    let src = from.map_or_else(|| format!("./{name}"), |p| p.display().to_string());
    format!(
        "install it for every user, e.g. `install -m 0755 {src} /usr/local/bin/{name}` (or the \
         package's /usr/bin/{name}), and give that absolute path in restore_command"
    )
}

fn check_program(setup: &Setup, program: &str, out: &mut Vec<Finding>) {
    use Severity::*;
    let before = out.len();
    let path = Path::new(program);
    let mut how = String::new();
    let resolved = if path.is_absolute() {
        path.to_path_buf()
    } else if program.contains('/') {
        out.push(finding(
            Warning,
            "relative-program",
            format!(
                "restore_command runs {program}, a path relative to the server's working \
                 directory (the data directory)"
            ),
            "give pg_standby's absolute path in restore_command".into(),
        ));
        setup.datadir.join(path)
    } else {
        // sh looks the name up in the server's PATH, as the server's user.
        let (search, source) = setup.server_env.path();
        let runnable = |p: &Path| setup.may(p, libc::X_OK) != Some(false);
        let (found, refused) = server::lookup(program, &search, runnable);
        let Some(found) = found else {
            let ours = std::env::var("PATH")
                .ok()
                .and_then(|p| server::lookup(program, &p, |_| true).0);
            let mut message = format!(
                "restore_command runs {program} by name, and {} finds no {program} it may run \
                 in PATH={search} ({source})",
                setup.owner_name()
            );
            if let Some(r) = &refused {
                let _ = write!(
                    message,
                    "; {} is there but not executable by it",
                    r.display()
                );
            }
            if let Some(o) = ours.as_ref().filter(|o| Some(*o) != refused.as_ref()) {
                let _ = write!(
                    message,
                    "; {} is in this shell's PATH, not the server's",
                    o.display()
                );
            }
            let known = matches!(setup.server_env, ServerEnv::Known { .. });
            out.push(finding(
                if known { Error } else { Warning },
                "program-not-in-path",
                message,
                install_advice(program, ours.as_deref().or(refused.as_deref())),
            ));
            return;
        };
        if let ServerEnv::Unknown(why) = &setup.server_env {
            out.push(finding(
                Note,
                "server-environment-unknown",
                format!(
                    "the server's environment cannot be read ({why}): {program} was looked up in \
                     PATH={search}, a service's default; a server started from a shell gets \
                     that shell's PATH"
                ),
                "give pg_standby's absolute path in restore_command".into(),
            ));
        }
        how = format!(" (found in PATH, {source})");
        found
    };
    let meta = fs::metadata(&resolved);
    if !meta.as_ref().is_ok_and(|m| m.is_file()) {
        out.push(finding(
            Error,
            "program-missing",
            format!(
                "restore_command runs {}, which does not exist or is not a file",
                resolved.display()
            ),
            "install pg_standby there, or correct the path in restore_command".into(),
        ));
    } else if setup.may(&resolved, libc::X_OK) == Some(false) {
        let name = resolved
            .file_name()
            .map_or_else(|| "pg_standby".into(), |n| n.to_string_lossy().into_owned());
        out.push(finding(
            Error,
            "program-not-executable",
            format!(
                "{} cannot be executed by {}, who runs restore_command",
                resolved.display(),
                setup.owner_name()
            ),
            install_advice(&name, Some(&resolved)),
        ));
    }
    if clean_since(out, before) {
        out.push(ok(
            "program",
            format!(
                "{}{how} is executable by {}",
                resolved.display(),
                setup.owner_name()
            ),
        ));
    }
}

fn check_placeholders(parsed: &Parsed, out: &mut Vec<Finding>) {
    use Severity::*;
    let cli = &parsed.cli;
    let has = |s: &str| parsed.words.iter().any(|w| w.contains(s));
    let fix = "restore_command = 'pg_standby [OPTION]... ARCHIVEDIR %f %p %r'".to_string();
    // A missing placeholder shifts the ones after it: their places say
    // nothing more, so only what is missing is reported.
    let missing: Vec<&str> = [(SENT_F, "%f"), (SENT_P, "%p")]
        .into_iter()
        .filter(|(sent, _)| !has(sent))
        .map(|(_, name)| name)
        .collect();
    if !missing.is_empty() {
        for name in missing {
            out.push(finding(
                Error,
                "placeholder-missing",
                format!(
                    "{name} is missing from restore_command: pg_standby cannot know which file \
                     to restore where"
                ),
                fix.clone(),
            ));
        }
        return;
    }
    for (sent, name, field, place) in [
        (SENT_F, "%f", cli.wal_file.as_deref(), "second"),
        (
            SENT_P,
            "%p",
            cli.destination.as_deref().and_then(Path::to_str),
            "third",
        ),
    ] {
        if field != Some(sent) {
            out.push(finding(
                Error,
                "placeholder-misplaced",
                format!("{name} is not the {place} argument after the options in restore_command"),
                fix.clone(),
            ));
        }
    }
    let r_field = cli.restart_wal_file.as_deref();
    if has(SENT_R) && r_field != Some(SENT_R) {
        out.push(finding(
            Error,
            "placeholder-misplaced",
            "%r is not the fourth argument after the options in restore_command".into(),
            fix.clone(),
        ));
    } else if r_field.is_some() && r_field != Some(SENT_R) {
        out.push(finding(
            Error,
            "placeholder-misplaced",
            format!(
                "the fourth argument of restore_command is {:?}, not %r: pg_standby would remove \
                 segments before it from the archive",
                r_field.unwrap_or_default().replace('\u{1}', "")
            ),
            fix.clone(),
        ));
    }
    if !cli.extra.is_empty() {
        out.push(finding(
            Warning,
            "extra-arguments",
            format!(
                "restore_command passes extra arguments that pg_standby ignores: {}",
                cli.extra.join(" ").replace('\u{1}', "")
            ),
            fix,
        ));
    }
}

fn check_cleanup(setup: &Setup, parsed: &Parsed, out: &mut Vec<Finding>) {
    if parsed.cli.restart_wal_file.as_deref() != Some(SENT_R) {
        return;
    }
    if let Some(cleanup) = setup.recovery_setting("archive_cleanup_command") {
        out.push(finding(
            Severity::Warning,
            "two-cleaners",
            format!(
                "restore_command passes %r, so pg_standby removes old segments from the archive, \
                 and archive_cleanup_command ({cleanup}) cleans it too"
            ),
            "keep one cleaner: drop %r from restore_command, or unset archive_cleanup_command"
                .into(),
        ));
    }
}

fn check_trigger(setup: &Setup, cli: &Cli, out: &mut Vec<Finding>) {
    use Severity::*;
    let Some(trigger) = &cli.trigger_file else {
        return;
    };
    let before = out.len();
    let resolved = setup.datadir.join(trigger);
    if setup.mode == Mode::Standby {
        let signal = if setup.major.is_some_and(|m| m < 12) {
            "standby_mode = on in recovery.conf"
        } else if setup.datadir.join("recovery.signal").exists() {
            "standby.signal (next to recovery.signal, which it overrides)"
        } else {
            "standby.signal"
        };
        out.push(finding(
            Error,
            "trigger-in-standby-mode",
            format!(
                "{signal} with a trigger file (-t {}): in standby mode the server does not end \
                 recovery when restore_command fails, so the trigger file cannot promote",
                trigger.display()
            ),
            if setup.major.is_some_and(|m| m < 12) {
                "remove standby_mode from recovery.conf (archive recovery), or drop -t and \
                 promote with pg_ctl promote"
                    .into()
            } else if setup.datadir.join("recovery.signal").exists() {
                format!(
                    "rm {} (recovery.signal is there too: archive recovery), or drop -t and \
                     promote with pg_ctl promote",
                    setup.datadir.join("standby.signal").display()
                )
            } else {
                "replace standby.signal by recovery.signal (archive recovery), or drop -t and \
                 promote with pg_ctl promote"
                    .into()
            },
        ));
    }
    if let Ok(meta) = fs::symlink_metadata(&resolved) {
        // The restore's rule (crate::trigger::staleness): a trigger last
        // changed before the server started is left over, and ignored.
        let running = matches!(setup.server_env, ServerEnv::Known { .. });
        let start = crate::server::datadir::server_started(&setup.datadir).filter(|_| running);
        let changed = crate::trigger::changed_at(&meta);
        let stale = match start {
            Some(start) => {
                crate::trigger::staleness(changed, Some(start), std::time::SystemTime::now())
                    .is_some()
            }
            // It will predate the next start.
            None => true,
        };
        let (severity, message) = if stale {
            (
                Warning,
                format!(
                    "the trigger file {} already exists, older than the server's {}: pg_standby \
                     calls it stale, logs an ERROR at each restore and does not fail over until \
                     it is touched again",
                    resolved.display(),
                    if running { "start" } else { "next start" }
                ),
            )
        } else {
            (
                Error,
                format!(
                    "the trigger file {} was made after the running server started: the next \
                     restore fails over",
                    resolved.display()
                ),
            )
        };
        out.push(finding(
            severity,
            "trigger-present",
            message,
            format!("rm {} (unless a failover is meant)", resolved.display()),
        ));
    }
    let end = setup.recovery_setting("recovery_end_command").unwrap_or("");
    let named = |p: &Path| !p.as_os_str().is_empty() && end.contains(&*p.to_string_lossy());
    if !named(trigger) && !named(&resolved) {
        out.push(finding(
            Warning,
            "trigger-not-removed",
            format!(
                "recovery_end_command does not remove the trigger file {}: it stays after a \
                 failover and a standby made again from this directory would fail over at once",
                resolved.display()
            ),
            format!("recovery_end_command = 'rm -f {}'", resolved.display()),
        ));
    }
    if clean_since(out, before) {
        out.push(ok(
            "trigger",
            format!(
                "the trigger file {} is absent, recovery_end_command removes it after a \
                 failover, and archive recovery lets it promote",
                resolved.display()
            ),
        ));
    }
}

/// Whether a PostgreSQL `major` server reads WAL ahead during recovery
/// with `recovery_prefetch` set to `value` (`None`: not set, the default).
/// The setting exists from 15 on with the default `try`; it is an enum
/// whose values are off, on, try and the aliases true, false, yes, no, 1
/// and 0, matched without regard to case (recovery_prefetch_options in
/// src/backend/utils/misc/guc_tables.c, config_enum_lookup_by_name).
/// With a waiting restore_command the read-ahead asks for segment N+1 while
/// the end of segment N is not replayed yet: the standby stops short of the
/// newest archived commits and never becomes consistent on a fresh start.
pub fn prefetch_reads_ahead(major: u32, value: Option<&str>) -> bool {
    if major < 15 {
        return false;
    }
    let value = value.unwrap_or("try").trim().to_ascii_lowercase();
    !matches!(value.as_str(), "off" | "false" | "no" | "0")
}

/// For the restore, which runs in the data directory: the
/// `[recovery-prefetch]` error, as a line to log, when the server's
/// configuration makes it read WAL ahead; read and judged exactly as
/// `--check` does. `None` when it does not, or cannot be known.
///
/// The server's replay position is not visible to restore_command (no
/// connection; pg_control moves only at restartpoints), so a request for
/// segment N+1 before N is replayed cannot be told from the normal
/// sequence: the configuration is the reliable sign. The restore logs it
/// when a call starts to wait.
pub fn prefetch_stall(datadir: &Path) -> Option<String> {
    let mut ignored = Vec::new();
    let setup = read_setup(datadir, &mut ignored)?;
    let mut out = Vec::new();
    check_prefetch(&setup, &mut out);
    out.into_iter()
        .find(|f| f.severity == Severity::Error)
        .map(|f| format!("{} [{}]; fix: {}", f.message, f.code, f.fix))
}

fn check_prefetch(setup: &Setup, out: &mut Vec<Finding>) {
    let Some(major) = setup.major else {
        return;
    };
    if setup.mode == Mode::None || !setup.conf_found {
        return;
    }
    let setting = setup.conf.get("recovery_prefetch");
    let value = setting.map_or("try", |s| s.value.as_str());
    if !prefetch_reads_ahead(major, setting.map(|s| s.value.as_str())) {
        if major >= 15 {
            out.push(ok(
                "recovery-prefetch",
                format!("recovery_prefetch = {value}: the server does not read WAL ahead"),
            ));
        }
        return;
    }
    let source = setting.map_or_else(
        || " (the default)".to_string(),
        |s| format!(" (set in {} line {})", s.file.display(), s.line),
    );
    out.push(finding(
        Severity::Error,
        "recovery-prefetch",
        format!(
            "recovery_prefetch = {value}{source}: from 15 on the server reads WAL ahead and asks \
             for the next segment before it has replayed the current one; pg_standby waits for \
             that segment, so the newest archived commits stay unreplayed, and a standby started \
             afresh never reaches a consistent state (pg_ctl -w start times out, connections \
             are refused)"
        ),
        "recovery_prefetch = off (in postgresql.conf, or ALTER SYSTEM on a running server), then restart the standby"
            .into(),
    ));
}

/// Where pg_standby's own prefetch would spool, if it is on for this
/// archive: outside the data directory, and creatable by the owner.
fn check_spool(setup: &Setup, cli: &Cli, out: &mut Vec<Finding>) {
    use Severity::*;
    let Some(archive) = cli.archive.as_deref().and_then(Path::to_str) else {
        return;
    };
    let remote = is_object_storage(archive);
    let compressed = || {
        archived_segments(&setup.datadir.join(archive))
            .iter()
            .any(|(_, file)| file.contains('.'))
    };
    // The restore's rule, for the server's calls (the caller here).
    let on = crate::prefetch::spool::depth(cli.prefetch, true, remote, !remote && compressed()) > 0;
    let Some(spool) = cli
        .spool_dir
        .as_ref()
        .map(|d| setup.datadir.join(d))
        .or_else(|| crate::prefetch::spool::default_dir(&setup.datadir))
    else {
        return;
    };
    if !on {
        return;
    }
    if crate::prefetch::spool::inside(&spool, &setup.datadir) {
        out.push(finding(
            Warning,
            "spool-in-datadir",
            format!(
                "--spool-dir {} is inside the data directory: pg_standby turns prefetch off there \
                 (pg_rewind and base backups would copy it)",
                spool.display()
            ),
            "--spool-dir=DIR outside the data directory".into(),
        ));
        return;
    }
    let existing = spool.ancestors().find(|a| fs::symlink_metadata(a).is_ok());
    let usable = existing.is_some_and(|a| {
        fs::metadata(a).is_ok_and(|m| m.is_dir())
            && setup.may(a, libc::W_OK | libc::X_OK) != Some(false)
    });
    if !usable {
        out.push(finding(
            Warning,
            "spool-unusable",
            format!(
                "{} cannot make the prefetch spool {}: catching up from this archive will \
                 decompress or download each segment while the server waits",
                setup.owner_name(),
                spool.display()
            ),
            format!(
                "--spool-dir=DIR on a directory {} can write, outside the data directory (or \
                 --prefetch=0)",
                setup.owner_name()
            ),
        ));
    }
}

/// Segments in the archive, plain or compressed (`.gz`, `.zst`, ...), with
/// their file names, sorted by position then timeline.
fn archived_segments(archive: &Path) -> Vec<(SegmentName, String)> {
    let mut v: Vec<(SegmentName, String)> = fs::read_dir(archive)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let file = e.file_name().into_string().ok()?;
                    let base = Codec::split_name(&file).map_or(file.as_str(), |(_, b)| b);
                    Some((SegmentName::parse(base)?, file))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|(s, _)| (s.log, s.seg, s.tli));
    v
}

/// Keeps the first bytes written to it, then refuses more: decompressing
/// just the header.
struct Head(Vec<u8>);

impl std::io::Write for Head {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = LONG_HEADER_LEN - self.0.len();
        if room == 0 {
            return Err(std::io::Error::other("enough"));
        }
        let n = room.min(buf.len());
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_header(path: &Path) -> Option<LongPageHeader> {
    let mut file = fs::File::open(path).ok()?;
    let name = path.file_name()?.to_str()?;
    let mut buf = [0u8; LONG_HEADER_LEN];
    if let Some((codec, _)) = Codec::split_name(name) {
        let mut head = Head(Vec::with_capacity(LONG_HEADER_LEN));
        // The writer stops the decoder once it has the header.
        let _ = decompress_to(codec, file, &mut head, u64::MAX, &|| false);
        buf.copy_from_slice(head.0.get(..LONG_HEADER_LEN)?);
    } else {
        file.read_exact(&mut buf).ok()?;
    }
    Some(LongPageHeader::parse(&buf))
}

fn check_local_archive(setup: &Setup, archive: &Path, out: &mut Vec<Finding>) {
    let before = out.len();
    check_archive(setup, archive, out);
    if clean_since(out, before) {
        let segments = archived_segments(archive);
        let newest = segments.last().map_or("", |(_, f)| f.as_str());
        out.push(ok(
            "archive",
            format!(
                "the archive {} is readable by {}: {} segment(s), newest {newest}, of this \
                 cluster and segment size, none missing since the redo point",
                archive.display(),
                setup.owner_name(),
                segments.len()
            ),
        ));
    }
}

fn check_archive(setup: &Setup, archive: &Path, out: &mut Vec<Finding>) {
    use Severity::*;
    let owner = setup.owner_name();
    match fs::metadata(archive) {
        Err(e) => {
            out.push(finding(
                Error,
                "archive-missing",
                format!("the archive {} cannot be found: {e}", archive.display()),
                "create it (or mount it) or correct ARCHIVELOCATION in restore_command".into(),
            ));
            return;
        }
        Ok(m) if !m.is_dir() => {
            out.push(finding(
                Error,
                "archive-not-a-directory",
                format!("the archive {} is not a directory", archive.display()),
                "correct ARCHIVELOCATION in restore_command".into(),
            ));
            return;
        }
        Ok(_) => {}
    }
    if setup.may(archive, libc::R_OK | libc::X_OK) == Some(false) {
        out.push(finding(
            Error,
            "archive-not-readable",
            format!(
                "{owner}, who runs restore_command, cannot list and read the archive {}",
                archive.display()
            ),
            format!(
                "give {owner} read and search permission on {} and its parents",
                archive.display()
            ),
        ));
        return;
    }
    let segments = archived_segments(archive);
    let control = match Control::read(&setup.datadir) {
        Ok(c) => c,
        Err(e) => {
            out.push(finding(
                Warning,
                "pg-control",
                format!("{e:#}: the archive's segments were not compared with this cluster"),
                "check the data directory (pg_controldata)".into(),
            ));
            return;
        }
    };
    if segments.is_empty() {
        out.push(finding(
            Warning,
            "archive-empty",
            format!(
                "the archive {} holds no WAL segment yet: the standby will wait for its first one",
                archive.display()
            ),
            "check the primary's archive_command".into(),
        ));
        return;
    }
    // The newest few segments: the ones recovery is about to ask for.
    let mut foreign = Vec::new();
    let mut wrong_size = Vec::new();
    let mut unreadable = Vec::new();
    for (name, file) in segments.iter().rev().take(3) {
        let path = archive.join(file);
        if setup.may(&path, libc::R_OK) == Some(false) {
            unreadable.push(path.clone());
        }
        let Some(h) = read_header(&path) else {
            continue;
        };
        if h.sysid != control.system_identifier {
            foreign.push((name, h.sysid));
        }
        if u64::from(h.seg_size) != control.wal_segment_size {
            wrong_size.push((name, h.seg_size));
        }
    }
    if let Some(path) = unreadable.first() {
        out.push(finding(
            Error,
            "archive-segment-not-readable",
            format!(
                "{owner}, who runs restore_command, cannot read {}",
                path.display()
            ),
            "make the archived files readable by the standby's user (the primary's \
             archive_command or its umask creates them)"
                .into(),
        ));
    }
    if let Some((name, sysid)) = foreign.first() {
        out.push(finding(
            Error,
            "archive-foreign-cluster",
            format!(
                "segment {name} in the archive belongs to another cluster (system identifier \
                 {sysid}, this standby's is {}): the archive is not this standby's primary's",
                control.system_identifier
            ),
            "point ARCHIVELOCATION at the primary's archive, or rebuild the standby from a \
             base backup of that primary"
                .into(),
        ));
    }
    if let Some((name, size)) = wrong_size.first() {
        out.push(finding(
            Error,
            "archive-segment-size",
            format!(
                "segment {name} in the archive is made for {size}-byte segments, pg_control \
                 says {}",
                control.wal_segment_size
            ),
            "point ARCHIVELOCATION at this cluster's archive".into(),
        ));
    }
    if !foreign.is_empty() || !wrong_size.is_empty() {
        return;
    }
    if let Some(gap) = find_gap(&segments, &control) {
        out.push(gap);
    }
}

/// Segments missing from the archive between the segment holding the redo
/// point of pg_control's latest checkpoint (where the next start of recovery
/// begins) and the newest archived segment.
fn find_gap(segments: &[(SegmentName, String)], control: &Control) -> Option<Finding> {
    let size = control.wal_segment_size;
    let start = control.redo / size;
    let newest = segments.iter().filter_map(|(s, _)| s.segno(size)).max()?;
    if newest <= start {
        return None;
    }
    let present: HashSet<u64> = segments
        .iter()
        .map(|(s, _)| s)
        .filter(|s| s.tli >= control.timeline)
        .filter_map(|s| s.segno(size))
        .filter(|n| (start..=newest).contains(n))
        .collect();
    let span = newest - start + 1;
    let missing = span - present.len() as u64;
    if missing == 0 {
        return None;
    }
    let first_missing = (start..=newest).find(|n| !present.contains(n))?;
    let first = SegmentName::from_segno(control.timeline, first_missing, size);
    Some(finding(
        Severity::Error,
        "archive-gap",
        format!(
            "{missing} segment(s) missing from the archive between the standby's redo point \
             {} and the newest archived segment, first {first}: recovery would wait there for \
             ever",
            fmt_lsn(control.redo)
        ),
        "copy the missing segments into the archive (from the primary's pg_wal), or rebuild \
         the standby from a new base backup"
            .into(),
    ))
}

#[cfg(test)]
mod tests;
