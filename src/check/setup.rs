//! What the data directory says, read once: the major version, the
//! configuration files as the server reads them (Debian's /etc/postgresql
//! layout and postmaster.opts included), the recovery mode, the owner.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// standby.signal, or standby_mode = on in recovery.conf.
    Standby,
    /// recovery.signal, or recovery.conf without standby_mode.
    Archive,
    /// Nothing: the server would start as a primary.
    None,
}

/// What the data directory says, read once.
pub(super) struct Setup {
    pub(super) datadir: PathBuf,
    pub(super) major: Option<u32>,
    /// postgresql.conf + postgresql.auto.conf (+ recovery.conf on 10/11 for
    /// the recovery settings, see `recovery_setting`).
    pub(super) conf: Conf,
    pub(super) recovery_conf: Option<Conf>,
    /// A postgresql.conf was read (else settings from it are unknown, not
    /// unset).
    pub(super) conf_found: bool,
    pub(super) mode: Mode,
    pub(super) owner: Option<Owner>,
    /// What restore_command inherits from the server, if it runs.
    pub(super) server_env: ServerEnv,
}

impl Setup {
    /// restore_command and friends live in recovery.conf on 10 and 11, and in
    /// postgresql.conf from 12 on.
    pub(super) fn recovery_setting(&self, name: &str) -> Option<&str> {
        match (&self.recovery_conf, self.major) {
            (Some(rc), Some(m)) if m < 12 => rc.value(name),
            (_, Some(m)) if m < 12 => None,
            _ => self.conf.value(name),
        }
        .filter(|v| !v.is_empty())
    }

    pub(super) fn may(&self, path: &Path, mode: i32) -> Option<bool> {
        self.owner.as_ref().and_then(|o| o.may(path, mode))
    }

    pub(super) fn owner_name(&self) -> String {
        self.owner
            .as_ref()
            .map_or_else(|| "the data directory's owner".into(), Owner::describe)
    }
}

pub(super) fn read_setup(datadir: &Path, out: &mut Vec<Finding>) -> Option<Setup> {
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
pub(super) fn setup_passed(setup: &Setup, out: &mut Vec<Finding>) {
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
pub(super) fn postmaster_opts(datadir: &Path) -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string(datadir.join("postmaster.opts")) else {
        return Vec::new();
    };
    parse_postmaster_opts(&text)
}

pub(super) fn parse_postmaster_opts(text: &str) -> Vec<(String, String)> {
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
pub(super) const ETC: &str = "/etc/postgresql";

/// The `ETC/MAJOR/CLUSTER/postgresql.conf` whose data_directory is
/// `datadir` (Debian and Ubuntu keep the configuration out of the data
/// directory).
pub(super) fn cluster_conf(etc: &Path, major: u32, datadir: &Path) -> Option<PathBuf> {
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
