//! The validated settings of one invocation, built from the command line
//! without touching the filesystem.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::archive::cleanup::Registration;
use crate::cli::Cli;
use crate::wal::{SegmentName, WalFileName};

/// What one invocation does, decided once, where the configuration is
/// built: the server's restore call, `--check`, or one of the two helper
/// processes a restore call starts (hidden options).
#[derive(Debug)]
pub enum Mode {
    Restore(Box<Config>),
    Check(Box<Cli>),
    /// The fetcher of a prefetch spool (`--prefetch-worker=SPOOL`).
    PrefetchWorker(PathBuf),
    /// A cleanup handed off by a restore call (`--cleanup-before=SEGMENT`).
    Cleanup {
        cutoff: String,
        archive: Option<PathBuf>,
        dry_run: bool,
        /// This standby in the archive's registry, if the call knew its
        /// cluster.
        registration: Option<Registration>,
    },
}

impl Mode {
    pub fn from_cli(cli: Cli, cwd: &Path) -> Result<Self> {
        if let Some(spool) = cli.prefetch_worker {
            return Ok(Mode::PrefetchWorker(spool));
        }
        if let Some(cutoff) = cli.cleanup_before {
            let registration = match (cli.cleanup_cluster.as_deref(), cli.standby_name) {
                (Some(cluster), Some(name)) => Some(Registration::from_args(
                    cluster,
                    name,
                    Duration::from_secs(cli.standby_expiry * 3600),
                    cli.metrics_file.map(|f| cwd.join(f)),
                    cwd,
                )?),
                _ => None,
            };
            return Ok(Mode::Cleanup {
                cutoff,
                archive: cli.archive,
                dry_run: cli.dry_run,
                registration,
            });
        }
        if cli.check {
            return Ok(Mode::Check(Box::new(cli)));
        }
        if cli.pgdata.is_some() || cli.json {
            bail!("-D and --json only go with --check");
        }
        if cli.link {
            tracing::debug!("-l (link mode) is not supported, as in pg_standby 13: copying");
        }
        if !cli.extra.is_empty() {
            tracing::warn!("ignoring extra arguments: {}", cli.extra.join(" "));
        }
        Config::from_cli(cli, cwd).map(|c| Mode::Restore(Box::new(c)))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub archive: PathBuf,
    pub wal_file: String,
    pub request: WalFileName,
    pub destination: PathBuf,
    /// `%r`, as the oldest segment to keep; the all-zero name is kept as is.
    pub restart: Option<SegmentName>,
    pub trigger_file: Option<PathBuf>,
    pub keep_files: u64,
    pub max_retries: u32,
    pub sleep: Duration,
    pub max_wait: Option<Duration>,
    pub dry_run: bool,
    pub fsync: bool,
    pub watch: bool,
    pub standby_wait: Duration,
    pub bad_file_timeout: Duration,
    pub metrics_file: Option<PathBuf>,
    /// `None`: decided by the archive's kind.
    pub prefetch: Option<u32>,
    pub prefetch_max_bytes: u64,
    pub spool_dir: Option<PathBuf>,
    /// `--standby-name`; `None`: host and data directory.
    pub standby_name: Option<String>,
    pub standby_expiry: Duration,
    pub debug: bool,
}

impl Config {
    /// `cwd` anchors relative paths: the server runs us in its data directory.
    pub fn from_cli(cli: Cli, cwd: &Path) -> Result<Self> {
        let archive = cli
            .archive
            .ok_or_else(|| anyhow!("must specify archive location"))?;
        let wal_file = cli.wal_file.ok_or_else(|| {
            anyhow!("must specify WAL file name as second non-option argument (use \"%f\")")
        })?;
        let destination = cli.destination.ok_or_else(|| {
            anyhow!("must specify xlog destination as third non-option argument (use \"%p\")")
        })?;
        if archive.as_os_str().is_empty() {
            bail!("the archive location is empty");
        }
        if destination.as_os_str().is_empty() || destination.file_name().is_none() {
            bail!(
                "invalid destination \"{}\": expected a file path (use \"%p\")",
                destination.display()
            );
        }
        let request = WalFileName::parse(&wal_file).ok_or_else(|| {
            anyhow!(
                "invalid WAL file name \"{wal_file}\": expected a segment name (24 uppercase hex \
                 digits) or a timeline history name; is \"%f\" in the second place?"
            )
        })?;
        let restart = cli
            .restart_wal_file
            .as_deref()
            .map(parse_restart)
            .transpose()?;
        Ok(Self {
            // An object-storage URL is not a path to anchor.
            archive: if archive
                .to_str()
                .is_some_and(crate::archive::is_object_storage)
            {
                archive
            } else {
                cwd.join(archive)
            },
            wal_file,
            request,
            destination,
            restart,
            trigger_file: cli.trigger_file.map(|t| cwd.join(t)),
            keep_files: cli.keep_files,
            max_retries: cli.max_retries,
            sleep: Duration::from_secs(cli.sleep),
            max_wait: (cli.max_wait > 0).then(|| Duration::from_secs(cli.max_wait)),
            dry_run: cli.dry_run,
            fsync: cli.fsync,
            watch: !cli.no_watch,
            standby_wait: Duration::from_secs(cli.standby_wait),
            bad_file_timeout: Duration::from_secs(cli.bad_file_timeout),
            metrics_file: cli.metrics_file.map(|m| cwd.join(m)),
            prefetch: cli.prefetch,
            prefetch_max_bytes: cli.prefetch_max_mb.saturating_mul(1 << 20),
            spool_dir: cli.spool_dir.map(|d| cwd.join(d)),
            standby_name: cli.standby_name,
            standby_expiry: Duration::from_secs(cli.standby_expiry * 3600),
            debug: cli.debug,
        })
    }

    pub fn archive_path(&self) -> PathBuf {
        self.archive.join(&self.wal_file)
    }

    /// pg_rewind and other tools pass the final path as `%p`; the server
    /// always passes a temporary name (`RECOVERYXLOG`, `RECOVERYHISTORY`).
    pub fn called_by_a_tool(&self) -> bool {
        self.destination.file_name().and_then(|n| n.to_str()) == Some(self.wal_file.as_str())
    }
}

/// `%r` is a segment name; like pg_archivecleanup, accept a `.partial` or
/// backup-history name and use its segment.
fn parse_restart(name: &str) -> Result<SegmentName> {
    match WalFileName::parse(name) {
        Some(WalFileName::Segment(s) | WalFileName::Partial(s) | WalFileName::BackupHistory(s)) => {
            Ok(s)
        }
        _ => Err(anyhow!(
            "invalid restart file name \"{name}\": expected a segment name (use \"%r\")"
        )),
    }
    .context("the fourth argument is the oldest file to keep")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config> {
        let cli = Cli::try_parse_from(std::iter::once("pg_standby").chain(args.iter().copied()))?;
        Config::from_cli(cli, Path::new("/data"))
    }

    #[test]
    fn missing_positionals_say_which() {
        let err = |args: &[&str]| format!("{:#}", config(args).unwrap_err());
        assert!(err(&[]).contains("archive location"));
        assert!(err(&["/a"]).contains("use \"%f\""));
        assert!(err(&["/a", "000000010000000000000001"]).contains("use \"%p\""));
    }

    #[test]
    fn names_are_checked() {
        let err = |args: &[&str]| format!("{:#}", config(args).unwrap_err());
        assert!(
            err(&["/a", "pg_wal/RECOVERYXLOG", "00000001000000000000000A"])
                .contains("invalid WAL file name")
        );
        assert!(
            err(&["/a", "000000010000000000000001", "pg_wal/X", "%r"])
                .contains("invalid restart file name")
        );
        assert!(err(&["/a", "../../etc/passwd", "pg_wal/X"]).contains("invalid WAL file name"));
    }

    #[test]
    fn relative_paths_are_anchored_in_the_working_directory() {
        let c = config(&[
            "-t",
            "trig",
            "arch",
            "000000010000000000000001",
            "pg_wal/RECOVERYXLOG",
        ])
        .unwrap();
        assert_eq!(c.archive, Path::new("/data/arch"));
        assert_eq!(c.trigger_file.as_deref(), Some(Path::new("/data/trig")));
        assert_eq!(
            c.archive_path(),
            Path::new("/data/arch/000000010000000000000001")
        );
        assert!(!c.called_by_a_tool());
        let c = config(&[
            "/a",
            "000000010000000000000001",
            "pg_wal/000000010000000000000001",
        ])
        .unwrap();
        assert!(c.called_by_a_tool());
    }

    #[test]
    fn restart_accepts_partial_and_backup_names() {
        let c = config(&[
            "/a",
            "000000010000000000000009",
            "p",
            "000000010000000000000003.partial",
        ])
        .unwrap();
        assert_eq!(c.restart.unwrap().to_string(), "000000010000000000000003");
    }
}
