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
  -w, --max-wait=N        fail over (fast) after waiting N seconds for a file
                          (0 waits for ever; default 0)
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
      --standby-wait=N    in standby mode, wait up to N seconds for a segment
                          instead of answering at once (default 0)
  -?, --help              show this help, then exit

Main intended use as restore_command in postgresql.conf (recovery.conf on 10
and 11):
  restore_command = 'pg_standby [OPTION]... ARCHIVELOCATION %f %p %r'
e.g.
  restore_command = '/usr/local/bin/pg_standby -t /tmp/pgsql.trigger.5442 /mnt/server/archiverdir %f %p %r'
  recovery_end_command = 'rm -f /tmp/pgsql.trigger.5442'

Trigger file content: empty or \"smart\" = smart failover (restore what the
archive holds, then end recovery); \"fast\" = end recovery now.
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
    /// Copy the file from the archive (the default and only mode)
    #[arg(short = 'c', long = "copy")]
    pub copy: bool,

    /// Log what happens in detail
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,

    /// Keep N segments before the requested one when no RESTARTWALFILE is
    /// given (0 keeps everything)
    #[arg(short = 'k', long = "keep-files", value_name = "N", default_value = "0",
          allow_negative_numbers = true, value_parser = parse_keep_files)]
    pub keep_files: u64,

    /// Link mode: never worked in pg_standby 13 either; copies
    #[arg(short = 'l', hide = true)]
    pub link: bool,

    /// Retries of a failing copy, with a growing pause of -s seconds
    #[arg(short = 'r', long = "max-retries", value_name = "N", default_value = "3",
          allow_negative_numbers = true, value_parser = parse_max_retries)]
    pub max_retries: u32,

    /// Seconds between checks when the archive sends no events (NFS); also
    /// the step of the retry pause
    #[arg(short = 's', long = "sleep", value_name = "SECONDS", default_value = "5",
          allow_negative_numbers = true, value_parser = parse_sleep)]
    pub sleep: u64,

    /// Trigger file: its appearance starts a failover
    #[arg(short = 't', long = "trigger-file", value_name = "FILE")]
    pub trigger_file: Option<PathBuf>,

    /// Fail over (fast) after waiting N seconds for a segment (0 waits for ever)
    #[arg(short = 'w', long = "max-wait", value_name = "N", default_value = "0",
          allow_negative_numbers = true, value_parser = parse_max_wait)]
    pub max_wait: u64,

    /// Cleanup only logs what it would remove
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,

    /// Segments fetched ahead (0: off; default: 8 for compressed and
    /// object-storage archives, off for plain local ones)
    #[arg(long = "prefetch", value_name = "N", value_parser = parse_prefetch)]
    pub prefetch: Option<u32>,

    /// MiB the spool may hold
    #[arg(long = "prefetch-max-mb", value_name = "MB", default_value = "512",
          value_parser = parse_prefetch_max_mb)]
    pub prefetch_max_mb: u64,

    /// Where prefetched segments wait
    #[arg(long = "spool-dir", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// The fetcher's own entry point (started by a restore call)
    #[arg(long = "prefetch-worker", value_name = "SPOOL", hide = true)]
    pub prefetch_worker: Option<PathBuf>,

    /// The archive cleanup's own entry point (started by a restore call
    /// after its exit status is settled)
    #[arg(long = "cleanup-before", value_name = "SEGMENT", hide = true)]
    pub cleanup_before: Option<String>,

    /// Flush the copy to disk before renaming it into place (PostgreSQL
    /// flushes restored files itself when fsync = on)
    #[arg(long = "fsync")]
    pub fsync: bool,

    /// Do not watch for events; check every -s seconds only
    #[arg(long = "no-watch")]
    pub no_watch: bool,

    /// In standby mode, wait up to N seconds for a segment instead of
    /// answering at once
    #[arg(long = "standby-wait", value_name = "N", default_value = "0")]
    pub standby_wait: u64,

    /// Stop recovery (exit 250) when a segment in the archive stays
    /// invalid, unchanged, for N seconds (an incomplete one is only
    /// reported after N seconds, and waited for)
    #[arg(long = "bad-file-timeout", value_name = "N", default_value = "60",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub bad_file_timeout: u64,

    /// Exit as pg_standby 13 did on errors: 2 for bad arguments or a
    /// missing archive, 3 for a bad segment, 1 for a failed copy (all of
    /// which make PostgreSQL end recovery and promote)
    #[arg(long = "legacy-exit-codes")]
    pub legacy_exit_codes: bool,

    /// Check a standby's setup (configuration, signal files, restore_command,
    /// archive) instead of restoring; exit 1 if anything would break recovery
    /// or failover
    #[arg(long = "check")]
    pub check: bool,

    /// Data directory for --check (default: $PGDATA, then the current directory)
    #[arg(short = 'D', long = "pgdata", value_name = "DATADIR")]
    pub pgdata: Option<PathBuf>,

    /// With --check: print the findings as a JSON array
    #[arg(long = "json")]
    pub json: bool,

    /// After each call, write Prometheus metrics to FILE (for
    /// node_exporter's textfile collector)
    #[arg(long = "metrics-file", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Print help
    #[arg(short = '?', long = "help", action = ArgAction::Help)]
    help: Option<bool>,

    /// Print version
    #[arg(short = 'V', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    /// Archive directory
    #[arg(value_name = "ARCHIVELOCATION")]
    pub archive: Option<PathBuf>,

    /// Requested file name (%f)
    #[arg(value_name = "NEXTWALFILE")]
    pub wal_file: Option<String>,

    /// Destination path (%p)
    #[arg(value_name = "XLOGFILEPATH")]
    pub destination: Option<PathBuf>,

    /// Oldest file the server still needs (%r): older segments are removed
    /// from the archive
    #[arg(value_name = "RESTARTWALFILE")]
    pub restart_wal_file: Option<String>,

    /// pg_standby 13 ignored extra arguments; so do we, with a warning
    #[arg(hide = true, num_args = 0..)]
    pub extra: Vec<String>,
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
            if arg.is_positional()
                || ["prefetch_worker", "cleanup_before"].contains(&arg.get_id().as_str())
            {
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
    fn help_answers_to_question_mark() {
        let err = parse(&["-?"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        let err = parse(&["-V"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
