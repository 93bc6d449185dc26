//! `pg_standby --check [-D DATADIR] [--json]`: inspect a standby's setup
//! without starting anything, and report each problem with its fix.
//!
//! Exit status: 0 when no finding is an error (warnings and notes alone give
//! 0), 1 when at least one error would break recovery or failover. (Not a
//! restore_command mode: the server never runs this, so 1 cannot promote.)

mod access;
mod control;
mod shell;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cli::Cli;
use crate::codec::{Codec, decompress_to};
use crate::header::{LONG_HEADER_LEN, LongPageHeader, fmt_lsn};
use crate::pgconf::{Conf, parse_bool};
use crate::wal::SegmentName;

pub use access::Owner;
pub use control::Control;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// Something the checker could not judge (not an error, not a warning).
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Note => "note",
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
    let datadir = datadir_from(cli.pgdata.clone());
    let datadir = std::path::absolute(&datadir).unwrap_or(datadir);
    let findings = inspect(&datadir);
    let out = if cli.json {
        to_json(&findings)
    } else {
        to_text(&datadir, &findings)
    };
    crate::logging::write_stdout(out.as_bytes());
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
        "{}: {errors} error(s), {warnings} warning(s){}",
        datadir.display(),
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

/// A JSON array of `{"severity","code","message","fix"}` objects.
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
    let conf_found = if main_conf.exists() {
        conf.read_file(&main_conf);
        true
    } else if let Some(debian) = major.and_then(|m| cluster_conf(Path::new(ETC), m, datadir)) {
        conf.read_file(&debian);
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
    let mode = if pre12 {
        match &recovery_conf {
            Some(rc) if rc.value("standby_mode").and_then(parse_bool) == Some(true) => {
                Mode::Standby
            }
            Some(_) => Mode::Archive,
            None => Mode::None,
        }
    } else if datadir.join("standby.signal").exists() {
        // The server gives standby.signal precedence (xlogrecovery.c).
        Mode::Standby
    } else if datadir.join("recovery.signal").exists() {
        Mode::Archive
    } else {
        Mode::None
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
    })
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
    // Leading `VAR=value` assignments and `exec` are not the program.
    let words: Vec<String> = split
        .words
        .into_iter()
        .skip_while(|w| is_assignment(w) || w == "exec")
        .collect();
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
    check_placeholders(&parsed, out);
    check_cleanup(setup, &parsed, out);
    check_trigger(setup, &cli, out);
    check_prefetch(setup, out);
    check_spool(setup, &cli, out);
    if let Some(archive) = &cli.archive {
        check_archive(setup, &setup.datadir.join(archive), out);
    }
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

fn check_program(setup: &Setup, program: &str, out: &mut Vec<Finding>) {
    use Severity::*;
    let path = Path::new(program);
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
        // Looked up in the server's PATH, which we cannot see; ours is a guess.
        match std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        }) {
            Some(p) => p,
            None => {
                out.push(finding(
                    Warning,
                    "program-not-in-path",
                    format!(
                        "restore_command runs {program} by name, and it is not in this PATH \
                         (the server's PATH may differ)"
                    ),
                    "give pg_standby's absolute path in restore_command".into(),
                ));
                return;
            }
        }
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
        out.push(finding(
            Error,
            "program-not-executable",
            format!(
                "{} cannot be executed by {}, who runs restore_command",
                resolved.display(),
                setup.owner_name()
            ),
            format!(
                "chmod a+rx {} (and make its directories searchable)",
                resolved.display()
            ),
        ));
    }
}

fn check_placeholders(parsed: &Parsed, out: &mut Vec<Finding>) {
    use Severity::*;
    let cli = &parsed.cli;
    let has = |s: &str| parsed.words.iter().any(|w| w.contains(s));
    let fix = "restore_command = 'pg_standby [OPTION]... ARCHIVEDIR %f %p %r'".to_string();
    for (sent, name, field, place) in [
        (SENT_F, "%f", cli.wal_file.as_deref(), "second"),
        (
            SENT_P,
            "%p",
            cli.destination.as_deref().and_then(Path::to_str),
            "third",
        ),
    ] {
        if !has(sent) {
            out.push(finding(
                Error,
                "placeholder-missing",
                format!("{name} is missing from restore_command: pg_standby cannot know which file to restore where"),
                fix.clone(),
            ));
        } else if field != Some(sent) {
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
    let resolved = setup.datadir.join(trigger);
    if setup.mode == Mode::Standby {
        let signal = if setup.major.is_some_and(|m| m < 12) {
            "standby_mode = on in recovery.conf"
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
            } else {
                "replace standby.signal by recovery.signal (archive recovery), or drop -t and \
                 promote with pg_ctl promote"
                    .into()
            },
        ));
    }
    if fs::symlink_metadata(&resolved).is_ok() {
        out.push(finding(
            Error,
            "trigger-present",
            format!(
                "the trigger file {} already exists: the standby would fail over at its next start",
                resolved.display()
            ),
            format!("rm {}", resolved.display()),
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
}

fn check_prefetch(setup: &Setup, out: &mut Vec<Finding>) {
    if setup.major.is_none_or(|m| m < 15) || setup.mode == Mode::None {
        return;
    }
    let setting = setup.conf.get("recovery_prefetch");
    let value = setting.map_or("try", |s| s.value.as_str());
    if parse_bool(value) != Some(false) {
        let source = setting.map_or_else(
            || " (the default)".to_string(),
            |s| format!(" (set in {} line {})", s.file.display(), s.line),
        );
        out.push(finding(
            Severity::Warning,
            "recovery-prefetch",
            format!(
                "recovery_prefetch = {value}{source}: from 15 on the server reads ahead and asks for the \
                 next segment before replaying the current one, so with a waiting restore_command \
                 the newest archived commits stay unreplayed until the next segment arrives \
                 (growing lag)"
            ),
            "recovery_prefetch = off".into(),
        ));
    }
}

/// Where pg_standby's own prefetch would spool, if it is on for this
/// archive: outside the data directory, and creatable by the owner.
fn check_spool(setup: &Setup, cli: &Cli, out: &mut Vec<Finding>) {
    use Severity::*;
    let Some(archive) = cli.archive.as_deref().and_then(Path::to_str) else {
        return;
    };
    let remote = archive.starts_with("s3:");
    let compressed = || {
        archived_segments(&setup.datadir.join(archive))
            .iter()
            .any(|(_, file)| file.contains('.'))
    };
    let on = match cli.prefetch {
        Some(n) => n > 0,
        None => remote || compressed(),
    };
    let Some(spool) = cli
        .spool_dir
        .as_ref()
        .map(|d| setup.datadir.join(d))
        .or_else(|| crate::spool::default_dir(&setup.datadir))
    else {
        return;
    };
    if !on {
        return;
    }
    if spool.starts_with(&setup.datadir) {
        out.push(finding(
            Warning,
            "spool-in-datadir",
            format!(
                "--spool-dir {} is inside the data directory: pg_standby turns prefetch off there                  (pg_rewind and base backups would copy it)",
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
                "{} cannot make the prefetch spool {}: catching up from this archive will                  decompress or download each segment while the server waits",
                setup.owner_name(),
                spool.display()
            ),
            format!(
                "--spool-dir=DIR on a directory {} can write, outside the data directory (or                  --prefetch=0)",
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
