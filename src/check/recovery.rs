//! What ends or stalls recovery: the trigger file, recovery_prefetch on
//! 15 and later, the prefetch spool.

use super::*;

pub(super) fn check_trigger(setup: &Setup, cli: &Cli, out: &mut Vec<Finding>) {
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

pub(super) fn check_prefetch(setup: &Setup, out: &mut Vec<Finding>) {
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
pub(super) fn check_spool(setup: &Setup, cli: &Cli, out: &mut Vec<Finding>) {
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
