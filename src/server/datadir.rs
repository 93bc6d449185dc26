//! What the server's working directory (its data directory) tells us: the
//! recovery mode and the cluster's system identifier.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::server::pgconf::{Conf, parse_bool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// `standby.signal`, or `standby_mode = on` in recovery.conf: exit 1 only
    /// makes the server retry, and a waiting command stalls streaming.
    Standby,
    /// `recovery.signal`, or recovery.conf without standby mode: exit 1 ends
    /// recovery. The warm standby pg_standby was made for.
    Archive,
    /// No signal file: run by hand, by a script, or by pg_rewind.
    Unknown,
}

impl RecoveryMode {
    pub fn detect(datadir: &Path) -> Self {
        let path = datadir.join("recovery.conf");
        let recovery_conf = path.exists().then(|| {
            let mut conf = Conf::default();
            conf.read_file(&path);
            conf
        });
        Self::of(
            recovery_conf.as_ref(),
            datadir.join("standby.signal").exists(),
            datadir.join("recovery.signal").exists(),
        )
    }

    /// The mode the server recovers in. recovery.conf exists only on 10
    /// and 11 (12+ refuses to start with one), where signal files mean
    /// nothing: it decides alone, by `standby_mode` read as the server
    /// reads a boolean. From 12 the server gives standby.signal precedence
    /// when both exist (xlogrecovery.c, readRecoverySignalFile).
    pub fn of(recovery_conf: Option<&Conf>, standby_signal: bool, recovery_signal: bool) -> Self {
        if let Some(conf) = recovery_conf {
            return if conf.value("standby_mode").and_then(parse_bool) == Some(true) {
                Self::Standby
            } else {
                Self::Archive
            };
        }
        if standby_signal {
            Self::Standby
        } else if recovery_signal {
            Self::Archive
        } else {
            Self::Unknown
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Standby => "standby mode",
            Self::Archive => "archive recovery",
            Self::Unknown => "no recovery signal file in the working directory",
        }
    }
}

/// The server's pid and start time, from the data directory's
/// postmaster.pid (lines 1 and 3, `LOCK_FILE_LINE_PID` and
/// `LOCK_FILE_LINE_START_TIME` in PostgreSQL's miscadmin.h).
pub fn postmaster(datadir: &Path) -> Option<(i32, String)> {
    let text = fs::read_to_string(datadir.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let start = lines.nth(1)?.trim().to_string();
    Some((pid, start))
}

/// When the server running in `datadir` started: postmaster.pid's start
/// time (whole seconds). `None` without a readable postmaster.pid: no
/// server is involved (a call by hand, by a script, outside a data
/// directory).
pub fn server_started(datadir: &Path) -> Option<SystemTime> {
    let (_, start) = postmaster(datadir)?;
    let secs: u64 = start.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `system_identifier`, the first field of `global/pg_control`.
pub fn system_identifier(datadir: &Path) -> io::Result<u64> {
    let mut raw = [0u8; 8];
    fs::File::open(datadir.join("global").join("pg_control"))?.read_exact(&mut raw)?;
    Ok(u64::from_ne_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// standby_mode in recovery.conf, read as the server reads it (its
    /// lexer, its boolean parser, the last setting wins).
    #[test]
    fn reads_standby_mode_from_recovery_conf() {
        let table = [
            ("standby_mode = 'on'\n", true),
            ("standby_mode=on", true),
            ("standby_mode = true # comment", true),
            ("standby_mode = 'tru'", true),
            ("standby_mode = Y", true),
            ("standby_mode = 'off'", false),
            ("# standby_mode = 'on'", false),
            ("restore_command = 'x'", false),
            ("standby_mode = on\nstandby_mode = off\n", false),
            ("standby_mode = 'o'", false),
        ];
        for (text, standby) in table {
            let mut conf = Conf::default();
            conf.read_str(Path::new("recovery.conf"), text);
            let want = if standby {
                RecoveryMode::Standby
            } else {
                RecoveryMode::Archive
            };
            assert_eq!(RecoveryMode::of(Some(&conf), false, true), want, "{text:?}");
        }
    }

    #[test]
    fn signal_files_decide_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RecoveryMode::detect(dir.path()), RecoveryMode::Unknown);
        fs::write(dir.path().join("recovery.conf"), "standby_mode = on\n").unwrap();
        assert_eq!(RecoveryMode::detect(dir.path()), RecoveryMode::Standby);
        fs::write(dir.path().join("recovery.conf"), "restore_command = 'x'\n").unwrap();
        assert_eq!(RecoveryMode::detect(dir.path()), RecoveryMode::Archive);
        fs::write(dir.path().join("standby.signal"), "").unwrap();
        assert_eq!(
            RecoveryMode::detect(dir.path()),
            RecoveryMode::Archive,
            "a stray standby.signal means nothing next to recovery.conf (10, 11)"
        );
        fs::remove_file(dir.path().join("standby.signal")).unwrap();
        fs::remove_file(dir.path().join("recovery.conf")).unwrap();
        fs::write(dir.path().join("recovery.signal"), "").unwrap();
        assert_eq!(RecoveryMode::detect(dir.path()), RecoveryMode::Archive);
        fs::write(dir.path().join("standby.signal"), "").unwrap();
        assert_eq!(RecoveryMode::detect(dir.path()), RecoveryMode::Standby);
    }

    #[test]
    fn reads_the_server_start_from_postmaster_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(server_started(dir.path()), None);
        // PostgreSQL 15's postmaster.pid: pid, data directory, start time, port...
        let pid = "4242\n/var/lib/postgresql/15/main\n1790000000\n5432\n/run/postgresql\n";
        fs::write(dir.path().join("postmaster.pid"), pid).unwrap();
        assert_eq!(
            server_started(dir.path()),
            Some(UNIX_EPOCH + Duration::from_secs(1_790_000_000))
        );
    }

    #[test]
    fn reads_the_system_identifier() {
        let dir = tempfile::tempdir().unwrap();
        assert!(system_identifier(dir.path()).is_err());
        fs::create_dir(dir.path().join("global")).unwrap();
        let mut control = 7_312_345_678_901_234_567u64.to_ne_bytes().to_vec();
        control.extend_from_slice(&[0; 100]);
        fs::write(dir.path().join("global/pg_control"), control).unwrap();
        assert_eq!(
            system_identifier(dir.path()).unwrap(),
            7_312_345_678_901_234_567
        );
    }
}
