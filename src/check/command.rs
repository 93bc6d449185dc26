//! restore_command itself: parsed with our own parser, the program
//! resolved as the server's user, the placeholders where the server
//! substitutes them, the cleanup it asks for.

use super::*;

/// Where the command line put the placeholders, as our parser sees it.
pub(super) struct Parsed {
    pub(super) cli: Cli,
    pub(super) words: Vec<String>,
}

pub(super) fn check_restore_command(setup: &Setup, out: &mut Vec<Finding>) {
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
    // The cluster as the restore reads it for the registry.
    let sysid = crate::server::datadir::system_identifier(&setup.datadir).ok();
    // As the cleanup names this standby's entry: the server's working
    // directory is the data directory, symbolic links resolved.
    let datadir = fs::canonicalize(&setup.datadir).unwrap_or_else(|_| setup.datadir.clone());
    let mine = sysid.map(|sysid| registry::Mine {
        file_name: crate::archive::registry::Entry::file_name(
            sysid,
            &cli.standby_name
                .clone()
                .unwrap_or_else(|| crate::archive::registry::default_name(&datadir)),
        ),
        host: crate::archive::registry::host_name(),
        data_directory: datadir.display().to_string(),
    });
    match archive.to_str() {
        Some(url) if is_object_storage(url) => {
            check_remote_archive(setup, url, &assignments, out);
            #[cfg(feature = "remote")]
            if let Ok(store) =
                crate::archive::store::open_with(url, &command_env(setup, &assignments))
            {
                let archive = crate::archive::Archive::in_store(url, store);
                registry::findings(&archive, sysid, mine.as_ref(), expiry, out);
            }
        }
        _ => {
            let path = setup.datadir.join(archive);
            check_local_archive(setup, &path, out);
            if let Ok(archive) = crate::archive::Archive::open(&path) {
                registry::findings(&archive, sysid, mine.as_ref(), expiry, out);
            }
        }
    }
    check_archiving(setup, archive, out);
}

/// The variables restore_command sees: its own leading assignments, then
/// the running server's environment; when that cannot be read, this
/// process's (said in a note).
pub(super) fn command_env<'a>(
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

pub(super) fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The server's substitution (BuildRestoreCommand): %f, %p, %r and %%; any
/// other % stays.
pub(super) fn substitute(command: &str) -> String {
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
pub(super) fn install_advice(name: &str, from: Option<&Path>) -> String {
    let src = from.map_or_else(|| format!("./{name}"), |p| p.display().to_string());
    format!(
        "install it for every user, e.g. `install -m 0755 {src} /usr/local/bin/{name}` (or the \
         package's /usr/bin/{name}), and give that absolute path in restore_command"
    )
}

pub(super) fn check_program(setup: &Setup, program: &str, out: &mut Vec<Finding>) {
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

pub(super) fn check_placeholders(parsed: &Parsed, out: &mut Vec<Finding>) {
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

pub(super) fn check_cleanup(setup: &Setup, parsed: &Parsed, out: &mut Vec<Finding>) {
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
