//! The command line, option for option compatible with pg_standby 13.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// The help, written out in the form of PostgreSQL's own tools
/// (`pg_archivecleanup --help`) and of pg_standby 13's: a test checks that
/// it lists every option the parser accepts.
const HELP: &str = "\
pg_standby is a waiting restore_command for PostgreSQL 10-18 warm standby
servers, a drop-in replacement for the pg_standby of PostgreSQL 9.0-13.

Usage:
  pg_standby [OPTION]... ARCHIVELOCATION NEXTWALFILE XLOGFILEPATH [RESTARTWALFILE]
  pg_standby --check [-D DATADIR] [--json]

Options:
  -c, --copy              copy the file from the archive (default, and the
                          only mode)
  -d, --debug             generate debug output (verbose mode)
  -D, --pgdata=DATADIR    with --check: the standby's data directory (default
                          $PGDATA, then the current directory)
  -k, --keep-files=N      if RESTARTWALFILE is not used, remove from the archive
                          the files more than N segments before NEXTWALFILE
                          (0 keeps all; default 0)
  -l                      does nothing (link mode was never implemented; the
                          file is copied)
  -n, --dry-run           archive cleanup only logs the files it would remove
  -r, --max-retries=N     max number of times to retry a failing copy, with
                          a progressive wait (default 3)
  -s, --sleep=SECONDS     seconds between checks when the archive sends no file
                          events (NFS); also the step of the retry wait
                          (min 1, max 60, default 5)
  -t, --trigger-file=FILE trigger file whose appearance starts a failover
                          (no default)
  -V, --version           output version information, then exit
  -w, --max-wait=N        fail over after waiting N seconds for a segment that
                          is not in the archive; like a smart failover, it
                          first finishes a segment still being written and
                          never skips a bad file (0 waits for ever; default 0)
      --bad-file-timeout=N
                          stop recovery (exit 250) when a segment in the
                          archive stays invalid, unchanged, for N seconds; one
                          that stays incomplete is reported and waited for
                          (default 60)
      --check             check a standby's setup (configuration, signal files,
                          restore_command, archive) and report each problem
                          with its fix; exit 1 if one would break recovery or
                          failover, else 0
      --fsync             flush the copy to disk before renaming it into place
                          (PostgreSQL flushes restored files itself when
                          fsync = on)
      --json              with --check: the findings as a JSON array
      --legacy-exit-codes exit as pg_standby 13 did on errors: 2 for bad
                          arguments or a missing archive, 3 for a bad segment,
                          1 for a failed copy (all of which make PostgreSQL end
                          recovery and promote)
      --metrics-file=FILE after each call, write Prometheus metrics to FILE
                          (node_exporter's textfile collector)
      --no-watch          do not watch for file events; check every -s seconds
      --prefetch=N        fetch and decompress up to N segments ahead while
                          the server replays (0 turns it off; default 8 for
                          compressed and object-storage archives, 0 for plain
                          local ones)
      --prefetch-max-mb=MB
                          at most MB MiB of prefetched segments (default 512;
                          one segment ahead is always allowed)
      --spool-dir=DIR     where prefetched segments wait, outside the data
                          directory (default: DATADIR.pg_standby-spool beside
                          the data directory)
      --standby-expiry=HOURS
                          another standby's entry in the archive's registry
                          no longer holds cleanup back after HOURS without an
                          update (default 96)
      --standby-name=NAME this standby's entry in the archive's registry of
                          standbys, which every standby's cleanup honours
                          (default: host name and data directory)
      --standby-wait=N    in standby mode, wait up to N seconds for a segment
                          instead of answering at once (default 0)
  -?, --help              show this help, then exit

ARCHIVELOCATION is a directory (local or mounted), or object storage:
  s3://BUCKET/PREFIX        an S3 bucket or S3-compatible server (MinIO, Ceph)
  gs://BUCKET/PREFIX        a Google Cloud Storage bucket
  azure://CONTAINER/PREFIX  an Azure Blob Storage container
Each segment is taken plain (%f) or compressed: %f.gz, %f.zst, %f.lz4,
%f.bz2, %f.xz or %f.lzma (the plain file wins; -V lists the codecs built in).

Environment (s3:// only; read as the AWS CLI reads them):
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   credentials
  AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE     else a profile
  else web identity, container and instance credentials: see pg_standby(1)
  AWS_REGION, AWS_DEFAULT_REGION                                the region
  AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL    an S3-compatible server (path-style)
  AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true          ignore the endpoints above
  HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY                  proxies
Environment (gs:// only; Application Default Credentials, in this order):
  STORAGE_EMULATOR_HOST            an emulator (host:port, plain http)
  GOOGLE_APPLICATION_CREDENTIALS   a service account key or user credentials
  CLOUDSDK_CONFIG                  else gcloud's file (default ~/.config/gcloud)
  GCE_METADATA_HOST, NO_GCE_CHECK  else the metadata server (NO_GCE_CHECK: off)
Environment (azure:// only; the az CLI's names, the first that applies):
  AZURE_STORAGE_CONNECTION_STRING      a connection string (overrides the rest)
  AZURE_STORAGE_ACCOUNT                the account, with:
    AZURE_STORAGE_SAS_TOKEN            a SAS token, else
    AZURE_STORAGE_KEY, AZURE_STORAGE_ACCESS_KEY      the account key, else
    IDENTITY_ENDPOINT, IDENTITY_HEADER App Service's managed identity, else
    AZURE_POD_IDENTITY_AUTHORITY_HOST  the instance metadata service (moved)
  AZURE_CLIENT_ID                      a user-assigned managed identity
  AZURE_STORAGE_BLOB_ENDPOINT          another endpoint (Azurite, private link)
Set them in the server's environment, or in restore_command itself:
  restore_command = 'AWS_PROFILE=standby pg_standby ... s3://BUCKET/PREFIX %f %p'
PGDATA: the data directory for --check.

Main intended use as restore_command in postgresql.conf (recovery.conf on 10
and 11):
  restore_command = 'pg_standby [OPTION]... ARCHIVELOCATION %f %p %r'
e.g.
  restore_command = '/usr/local/bin/pg_standby -t /tmp/pgsql.trigger.5442 /mnt/server/archiverdir %f %p %r'
  recovery_end_command = 'rm -f /tmp/pgsql.trigger.5442'

Trigger file content: empty or \"smart\" = smart failover (restore what the
archive holds, then end recovery); \"fast\" = end recovery now. A trigger
file older than the server's start (postmaster.pid) is left over: it is
logged as an error and ignored; touch it to fail over.
SIGUSR1 or SIGINT: fast failover. Neither can end recovery in standby mode
(standby.signal), where PostgreSQL retries: use pg_ctl promote there.

Exit status: 0 restored; 1 not available or failover (ends archive recovery);
250 error: misconfiguration, I/O error or a bad segment (PostgreSQL stops
recovery instead of promoting).

Report bugs to the issue tracker of the pg_standby (Rust) project.
";

/// A waiting restore_command for PostgreSQL 10-18 warm standbys.
#[derive(Debug, Parser)]
#[command(
    name = "pg_standby",
    version,
    override_usage = "pg_standby [OPTION]... ARCHIVELOCATION NEXTWALFILE XLOGFILEPATH [RESTARTWALFILE]",
    help_template = HELP,
    disable_help_flag = true,
    disable_version_flag = true,
    // getopt lets a later option win over an earlier one.
    args_override_self = true
)]
pub struct Cli {
    // The doc comments below are the OPTIONS section of the manual page
    // (examples/man.rs renders them with clap_mangen); --help shows HELP.
    /// Copy the file from the archive: the default, and the only mode.
    #[arg(short = 'c', long = "copy")]
    pub copy: bool,

    /// Log the settings of each call, the details of waiting, prefetch and
    /// cleanup, and the phases of the call with their times.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,

    /// Without RESTARTWALFILE: after a restore, remove from the archive the
    /// segments older than the N before the requested one (0 keeps all).
    #[arg(short = 'k', long = "keep-files", value_name = "N", default_value = "0",
          allow_negative_numbers = true, value_parser = parse_keep_files)]
    pub keep_files: u64,

    /// Accepted and ignored, as in pg_standby 13, whose link mode never
    /// worked: the file is copied.
    #[arg(short = 'l')]
    pub link: bool,

    /// Retries of a failing copy, pausing 0, s, 2s, ... seconds between
    /// attempts (s is the value of -s).
    #[arg(short = 'r', long = "max-retries", value_name = "N", default_value = "3",
          allow_negative_numbers = true, value_parser = parse_max_retries)]
    pub max_retries: u32,

    /// Seconds between checks when the archive sends no file events (NFS),
    /// the longest pause between two looks into object storage, and the step
    /// of the retry pause; 1 to 60.
    #[arg(short = 's', long = "sleep", value_name = "SECONDS", default_value = "5",
          allow_negative_numbers = true, value_parser = parse_sleep)]
    pub sleep: u64,

    /// The trigger file, whose appearance starts a failover.
    ///
    /// Empty, or starting with "smart": a smart failover, where every segment
    /// already in the archive is still restored (one still being copied in is
    /// waited for while it changes) and recovery ends at the first one that
    /// is not there. Starting with "fast": a fast failover, where the waiting
    /// call exits 1 at once and the file is truncated to empty. Anything else
    /// is logged as a warning and ignored. pg_standby never deletes the file:
    /// recovery_end_command should. A trigger file cannot end recovery in
    /// standby mode (standby.signal), where PostgreSQL retries: use pg_ctl
    /// promote there.
    #[arg(short = 't', long = "trigger-file", value_name = "FILE")]
    pub trigger_file: Option<PathBuf>,

    /// Fail over after waiting N seconds for a segment (0 waits for ever).
    ///
    /// Meant for a primary that went silent: like a smart failover it first
    /// finishes a segment still being written, and it never skips past a bad
    /// file or a vanished archive.
    #[arg(short = 'w', long = "max-wait", value_name = "N", default_value = "0",
          allow_negative_numbers = true, value_parser = parse_max_wait)]
    pub max_wait: u64,

    /// Archive cleanup (RESTARTWALFILE or -k) only logs what it would remove.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,

    /// Segments fetched ahead into the spool while the server replays, 0 to
    /// 1000 (0 turns prefetch off).
    ///
    /// Default: 8 for compressed and object-storage archives, 0 for a plain
    /// local one. A segment taken from the spool has been checked exactly as
    /// a direct restore checks it; a call that does not find its segment
    /// there restores it itself.
    #[arg(long = "prefetch", value_name = "N", value_parser = parse_prefetch)]
    pub prefetch: Option<u32>,

    /// The most the spool holds, in MiB; one segment ahead is always allowed.
    #[arg(long = "prefetch-max-mb", value_name = "MB", default_value = "512",
          value_parser = parse_prefetch_max_mb)]
    pub prefetch_max_mb: u64,

    /// Where prefetched segments wait (default: DATADIR.pg_standby-spool
    /// beside the data directory), never inside the data directory, which
    /// pg_rewind and base backups copy.
    #[arg(long = "spool-dir", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// This standby's name in the archive's registry of standbys, which
    /// the `%r`/`-k` cleanup of every standby sharing the archive reads:
    /// nothing is removed that a live standby of the cluster still needs.
    ///
    /// Default: host name and data directory, which tells apart every
    /// standby on one host and standbys on different hosts. Set it when a
    /// standby moves to another host or data directory and should keep its
    /// entry.
    #[arg(long = "standby-name", value_name = "NAME")]
    pub standby_name: Option<String>,

    /// Hours after which another standby's entry in the registry no longer
    /// holds cleanup back (its standby is taken as gone, with a WARNING).
    #[arg(long = "standby-expiry", value_name = "HOURS", default_value = "96",
          value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub standby_expiry: u64,

    /// The cluster of the cleanup's own entry point:
    /// SYSTEM_IDENTIFIER[:SEGMENT_SIZE]
    #[arg(long = "cleanup-cluster", value_name = "ID", hide = true)]
    pub cleanup_cluster: Option<String>,

    /// The fetcher's own entry point (started by a restore call)
    #[arg(long = "prefetch-worker", value_name = "SPOOL", hide = true)]
    pub prefetch_worker: Option<PathBuf>,

    /// The archive cleanup's own entry point (started by a restore call
    /// after its exit status is settled)
    #[arg(long = "cleanup-before", value_name = "SEGMENT", hide = true)]
    pub cleanup_before: Option<String>,

    /// Flush the copy to disk before renaming it into place.
    ///
    /// Not needed for PostgreSQL, which flushes each restored file itself
    /// (with fsync = on) and, after a crash, restores again from the archive.
    #[arg(long = "fsync")]
    pub fsync: bool,

    /// Do not use file events (inotify): check every -s seconds only.
    #[arg(long = "no-watch")]
    pub no_watch: bool,

    /// In standby mode (standby.signal, or standby_mode = on), wait up to N
    /// seconds for a segment instead of answering at once.
    #[arg(long = "standby-wait", value_name = "N", default_value = "0")]
    pub standby_wait: u64,

    /// How long a segment that is in the archive but invalid (foreign,
    /// misnamed, oversized, unreadable), and unchanged, is waited for before
    /// pg_standby stops recovery (exit 250).
    ///
    /// An incomplete segment is waited for as long as it takes, with a warning
    /// once it has not grown for N seconds.
    #[arg(long = "bad-file-timeout", value_name = "N", default_value = "60",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub bad_file_timeout: u64,

    /// Exit as pg_standby 13 did on errors: 2 for bad arguments or a
    /// missing archive, 3 for a bad segment, 1 for a failed copy (all of
    /// which make PostgreSQL end recovery and promote).
    #[arg(long = "legacy-exit-codes")]
    pub legacy_exit_codes: bool,

    /// Check a standby's setup instead of restoring, without starting
    /// anything.
    ///
    /// Reads postgresql.conf and postgresql.auto.conf with their includes
    /// (recovery.conf on 10 and 11), the signal files, PG_VERSION,
    /// pg_control, the pg_standby command line in restore_command (through
    /// this parser) and the archive, with permissions checked as the data
    /// directory's owner. Each problem is printed with its fix; the exit
    /// status is 1 if one would break recovery or failover, else 0.
    #[arg(long = "check")]
    pub check: bool,

    /// With --check: the standby's data directory (default: $PGDATA, then
    /// the current directory).
    #[arg(short = 'D', long = "pgdata", value_name = "DATADIR")]
    pub pgdata: Option<PathBuf>,

    /// With --check: print the findings as a JSON array.
    #[arg(long = "json")]
    pub json: bool,

    /// After each call, write Prometheus metrics to FILE, in the text format
    /// of node_exporter's textfile collector.
    ///
    /// The file is replaced by a rename and its counters carry over from call
    /// to call; a file that cannot be written is a warning: metrics never
    /// change what a call does.
    #[arg(long = "metrics-file", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Show the help, then exit.
    #[arg(short = '?', long = "help", action = ArgAction::Help)]
    help: Option<bool>,

    /// Show the version, then exit.
    #[arg(short = 'V', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    /// The archive: a directory, s3://BUCKET[/PREFIX] on AWS S3 or any
    /// S3-compatible store, gs://BUCKET[/PREFIX] on Google Cloud Storage, or
    /// azure://CONTAINER[/PREFIX] on Azure Blob Storage (see ENVIRONMENT).
    #[arg(value_name = "ARCHIVELOCATION")]
    pub archive: Option<PathBuf>,

    /// The file the server asks for (%f): a WAL segment, a timeline history
    /// file, a backup history file or a .partial file.
    #[arg(value_name = "NEXTWALFILE")]
    pub wal_file: Option<String>,

    /// Where to put it (%p): the file appears there complete or not at all.
    #[arg(value_name = "XLOGFILEPATH")]
    pub destination: Option<PathBuf>,

    /// The oldest file the server still needs (%r): after each restore, the
    /// archive's segments older than it are removed.
    ///
    /// Of any timeline, plain or compressed; .history, .partial, .backup and
    /// unrelated files are never touched, nothing is removed when it sorts
    /// after NEXTWALFILE, and a cleanup error is logged without changing the
    /// exit status. The removal runs in a process of its own, one at a time
    /// per archive. Use %r only when this standby is the archive's only
    /// reader.
    #[arg(value_name = "RESTARTWALFILE")]
    pub restart_wal_file: Option<String>,

    /// pg_standby 13 ignored extra arguments; so do we, with a warning
    #[arg(hide = true, num_args = 0..)]
    pub extra: Vec<String>,
}

/// The command line of this process. `-V` also says which codecs and
/// stores this build has (Cargo features).
pub fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let version: &'static str = Box::leak(version_text().into_boxed_str());
    let matches = Cli::command().version(version).try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// `pg_standby VERSION` (PostgreSQL's tools print that line), then the
/// codecs and stores built in.
fn version_text() -> String {
    let codecs: Vec<&str> = crate::archive::codec::Codec::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    let mut stores = vec!["directory"];
    stores.extend(crate::archive::store::built_in());
    format!(
        "{}\ncodecs: {}\nstores: {}",
        env!("CARGO_PKG_VERSION"),
        if codecs.is_empty() {
            "none".to_string()
        } else {
            codecs.join(" ")
        },
        stores.join(" ")
    )
}

fn parse_count(value: &str, message: &str) -> Result<u64, String> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n.unsigned_abs()),
        Ok(_) => Err(message.to_string()),
        Err(_) => Err(format!("not a whole number ({message})")),
    }
}

fn parse_keep_files(value: &str) -> Result<u64, String> {
    parse_count(value, "-k keepfiles must be >= 0")
}

fn parse_max_retries(value: &str) -> Result<u32, String> {
    let n = parse_count(value, "-r maxretries must be >= 0")?;
    u32::try_from(n).map_err(|_| "-r maxretries is too large".to_string())
}

fn parse_max_wait(value: &str) -> Result<u64, String> {
    parse_count(value, "-w maxwaittime must be >= 0")
}

fn parse_prefetch(value: &str) -> Result<u32, String> {
    match parse_count(value, "--prefetch must be between 0 and 1000") {
        Ok(n) if n <= 1000 => Ok(n as u32),
        _ => Err("--prefetch must be between 0 and 1000 segments".to_string()),
    }
}

fn parse_prefetch_max_mb(value: &str) -> Result<u64, String> {
    match parse_count(value, "--prefetch-max-mb must be at least 1") {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("--prefetch-max-mb must be at least 1".to_string()),
    }
}

fn parse_sleep(value: &str) -> Result<u64, String> {
    match parse_count(value, "-s sleeptime must be between 1 and 60") {
        Ok(n) if (1..=60).contains(&n) => Ok(n),
        _ => Err("-s sleeptime must be between 1 and 60 seconds".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pg_standby").chain(args.iter().copied()))
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn pg_standby_13_command_lines_keep_their_meaning() {
        let cli = parse(&[
            "-c",
            "-d",
            "-k",
            "4",
            "-l",
            "-r",
            "2",
            "-s",
            "1",
            "-t",
            "/tmp/trig",
            "-w",
            "30",
            "/arch",
            "%f",
            "%p",
            "%r",
        ])
        .unwrap();
        assert!(cli.debug && cli.copy && cli.link);
        assert_eq!(
            (cli.keep_files, cli.max_retries, cli.sleep, cli.max_wait),
            (4, 2, 1, 30)
        );
        assert_eq!(cli.trigger_file, Some(PathBuf::from("/tmp/trig")));
        assert_eq!(cli.archive, Some(PathBuf::from("/arch")));
        assert_eq!(cli.restart_wal_file.as_deref(), Some("%r"));

        // Options after the positionals, and glued values, as getopt allows.
        let cli = parse(&["/arch", "F", "P", "-s2", "-dk3"]).unwrap();
        assert_eq!((cli.sleep, cli.keep_files, cli.debug), (2, 3, true));
        assert_eq!(cli.wal_file.as_deref(), Some("F"));

        let cli = parse(&["/arch", "F", "P"]).unwrap();
        assert_eq!(
            (cli.sleep, cli.max_retries, cli.keep_files, cli.max_wait),
            (5, 3, 0, 0)
        );
    }

    #[test]
    fn repeated_options_take_the_last_value() {
        let cli = parse(&["-d", "-d", "-s", "1", "-s", "2", "-c", "-c", "/a", "F", "P"]).unwrap();
        assert_eq!(cli.sleep, 2);
    }

    #[test]
    fn extra_positionals_are_accepted() {
        let cli = parse(&["/arch", "F", "P", "R", "X", "Y"]).unwrap();
        assert_eq!(cli.extra, ["X", "Y"]);
    }

    #[test]
    fn out_of_range_values_name_the_option() {
        for (args, needle) in [
            (&["-s", "0"][..], "-s sleeptime"),
            (&["-s", "61"][..], "-s sleeptime"),
            (&["-s", "x"][..], "-s sleeptime"),
            (&["-k", "-1"][..], "-k keepfiles"),
            (&["-r", "-1"][..], "-r maxretries"),
            (&["-w", "-5"][..], "-w maxwaittime"),
            (&["-w", "5abc"][..], "-w maxwaittime"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_help_lists_every_option_the_parser_accepts() {
        for arg in Cli::command().get_arguments() {
            // The fetcher's entry point is ours, not the user's.
            if arg.is_positional() || arg.is_hide_set() {
                continue;
            }
            if let Some(short) = arg.get_short() {
                assert!(
                    HELP.contains(&format!("\n  -{short}")),
                    "-{short} is not in the help"
                );
            }
            if let Some(long) = arg.get_long() {
                assert!(
                    HELP.contains(&format!("--{long}")),
                    "--{long} is not in the help"
                );
            }
        }
        assert!(
            HELP.lines()
                .all(|l| l.len() <= 80 || l.contains("pg_standby "))
        );
    }

    #[test]
    fn the_help_names_every_compressed_form_and_environment_variable() {
        for codec in crate::archive::codec::Codec::ALL {
            assert!(
                HELP.contains(&format!("%f{},", codec.suffix()))
                    || HELP.contains(&format!("%f{} ", codec.suffix())),
                "{} is not in the help",
                codec.suffix()
            );
        }
        // Every variable the S3 store reads for its own settings, its
        // proxy's through the stores' HTTP (the credential chain's sources
        // are in the manual page).
        let mut seen = 0;
        for source in [
            include_str!("archive/store/s3.rs"),
            include_str!("archive/store/http.rs"),
        ] {
            let mut rest = source.split("#[cfg(test)]").next().unwrap();
            while let Some(at) = rest.find("\"") {
                rest = &rest[at + 1..];
                let Some(end) = rest.find('"') else { break };
                let word = &rest[..end];
                let is_var = (word.starts_with("AWS_") || word.ends_with("_PROXY"))
                    && word
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit());
                if is_var {
                    seen += 1;
                    assert!(HELP.contains(word), "{word} is not in the help");
                }
                rest = &rest[end + 1..];
            }
        }
        assert!(
            seen >= 10,
            "only {seen} variables found in s3.rs and http.rs"
        );
        assert!(HELP.contains("s3://BUCKET/PREFIX"));
        // And every variable the Cloud Storage store reads.
        let source = include_str!("archive/store/gcs.rs");
        let code = source.split("#[cfg(test)]").next().unwrap();
        let mut seen = 0;
        for var in code.split('"').skip(1).step_by(2) {
            let is_var = var.len() > 3
                && var.contains('_')
                && !var.starts_with("CARGO_")
                && var
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit());
            if is_var {
                seen += 1;
                assert!(HELP.contains(var), "{var} is not in the help");
            }
        }
        assert!(seen >= 5, "only {seen} variables found in gcs.rs");
        assert!(HELP.contains("gs://BUCKET/PREFIX"));
        // And every variable the Azure store reads (read by name: a string
        // literal that is a whole name).
        let source = include_str!("archive/store/azure.rs");
        let code = source.split("#[cfg(test)]").next().unwrap();
        let mut seen = 0;
        for piece in code.split("\"").skip(1) {
            let var: String = piece
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let whole = var.len() == piece.len();
            if whole && var.len() > 3 && var.contains('_') && !var.starts_with("CARGO_") {
                seen += 1;
                assert!(HELP.contains(&var), "{var} is not in the help");
            }
        }
        assert!(seen >= 10, "only {seen} variables found in azure.rs");
        assert!(HELP.contains("azure://CONTAINER/PREFIX"));
    }

    #[test]
    fn the_version_lists_codecs_and_stores() {
        let text = version_text();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(env!("CARGO_PKG_VERSION")));
        let codecs = lines.next().unwrap();
        for codec in crate::archive::codec::Codec::ALL {
            assert!(codecs.contains(codec.name()), "{codecs}");
        }
        let stores = lines.next().unwrap();
        assert!(stores.starts_with("stores: directory"), "{stores}");
        assert_eq!(stores.contains("s3"), cfg!(feature = "s3"));
        assert_eq!(stores.contains("gs"), cfg!(feature = "gcs"));
        assert_eq!(stores.contains("azure"), cfg!(feature = "azure"));
    }

    #[test]
    fn help_answers_to_question_mark() {
        let err = parse(&["-?"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        let err = parse(&["-V"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
