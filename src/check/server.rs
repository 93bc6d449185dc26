//! The environment restore_command gets: the postmaster's, inherited by the
//! startup process and by the shell that runs the command (system(), see
//! RestoreArchivedFile in src/backend/access/transam/xlogarchive.c). It can
//! be read from /proc/PID/environ while the server runs, by root or by the
//! server's user; otherwise it cannot be known, and the caller says what it
//! assumed instead.

use std::fs;
use std::path::{Path, PathBuf};

/// The PATH assumed when the server's cannot be read: systemd's default for
/// services (how Debian's postgresql@.service and most packages start the
/// server), which is also what dash uses when PATH is unset.
pub const ASSUMED_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The running postmaster's environment, or why it cannot be known.
#[derive(Debug, Clone)]
pub enum ServerEnv {
    Known {
        pid: u32,
        vars: Vec<(String, String)>,
    },
    Unknown(String),
}

impl ServerEnv {
    /// Reads the environment of the postmaster named by
    /// `datadir/postmaster.pid`, if that process runs in `datadir` (the
    /// postmaster's working directory is its data directory, so a stale pid
    /// file naming a reused pid is not believed).
    pub fn of(datadir: &Path) -> Self {
        match read(datadir) {
            Ok((pid, vars)) => Self::Known { pid, vars },
            Err(why) => Self::Unknown(why),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        match self {
            Self::Known { vars, .. } => vars
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            Self::Unknown(_) => None,
        }
    }

    /// The PATH the shell running restore_command searches, and where that
    /// answer comes from.
    pub fn path(&self) -> (String, String) {
        match self {
            Self::Known { pid, .. } => match self.var("PATH") {
                Some(p) => (p.to_string(), format!("the running server's (pid {pid})")),
                None => (
                    ASSUMED_PATH.into(),
                    format!("/bin/sh's default: the running server (pid {pid}) has no PATH"),
                ),
            },
            Self::Unknown(why) => (
                ASSUMED_PATH.into(),
                format!("assumed, a service's default: the server's own cannot be known ({why})"),
            ),
        }
    }
}

fn read(datadir: &Path) -> Result<(u32, Vec<(String, String)>), String> {
    let pidfile = datadir.join("postmaster.pid");
    let text = fs::read_to_string(&pidfile).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the server is not running".to_string()
        } else {
            format!("{}: {e}", pidfile.display())
        }
    })?;
    let pid: u32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{} names no process", pidfile.display()))?;
    let cwd = fs::read_link(format!("/proc/{pid}/cwd"))
        .map_err(|e| format!("process {pid} of postmaster.pid: {e}"))?;
    if fs::canonicalize(datadir).ok() != Some(cwd) {
        return Err(format!(
            "postmaster.pid names process {pid}, which does not run in this data directory \
             (the server is not running)"
        ));
    }
    let raw = fs::read(format!("/proc/{pid}/environ"))
        .map_err(|e| format!("/proc/{pid}/environ: {e}"))?;
    Ok((pid, parse_environ(&raw)))
}

/// NUL-separated `NAME=value` entries, as in /proc/PID/environ.
pub fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == 0)
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (k, v) = e.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Where `sh` would find `program` in `path`: the first directory holding a
/// file of that name that `runnable` accepts; also the first file of that
/// name that it refused, for the advice.
pub fn lookup(
    program: &str,
    path: &str,
    runnable: impl Fn(&Path) -> bool,
) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut refused = None;
    for dir in path.split(':') {
        // An empty entry means the working directory (the data directory):
        // nobody installs pg_standby there.
        if dir.is_empty() {
            continue;
        }
        let candidate = Path::new(dir).join(program);
        if !candidate.is_file() {
            continue;
        }
        if runnable(&candidate) {
            return (Some(candidate), refused);
        }
        refused.get_or_insert(candidate);
    }
    (None, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_entries() {
        let v = parse_environ(b"PATH=/usr/bin:/bin\0HOME=/var/lib/postgresql\0EMPTY=\0junk\0=x\0");
        assert_eq!(
            v,
            [
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                ("HOME".into(), "/var/lib/postgresql".into()),
                ("EMPTY".into(), String::new()),
            ]
        );
    }

    #[test]
    fn no_server_no_environment() {
        let dir = tempfile::tempdir().unwrap();
        let e = ServerEnv::of(dir.path());
        assert!(
            matches!(&e, ServerEnv::Unknown(w) if w.contains("not running")),
            "{e:?}"
        );
        assert_eq!(e.path().0, ASSUMED_PATH);
        // A pid file naming a process that does not run there: ours.
        fs::write(
            dir.path().join("postmaster.pid"),
            format!("{}\n{}\n", std::process::id(), dir.path().display()),
        )
        .unwrap();
        assert!(matches!(ServerEnv::of(dir.path()), ServerEnv::Unknown(_)));
    }

    #[test]
    fn lookup_takes_the_first_runnable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("prog"), "").unwrap();
        fs::write(b.join("prog"), "").unwrap();
        let path = format!(":{}:{}", a.display(), b.display());
        let (found, refused) = lookup("prog", &path, |p| p.starts_with(&b));
        assert_eq!(found, Some(b.join("prog")));
        assert_eq!(refused, Some(a.join("prog")));
        assert_eq!(lookup("other", &path, |_| true), (None, None));
    }
}
