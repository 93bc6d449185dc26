//! After a failover ends recovery, PostgreSQL reads the end of WAL once
//! more and asks again for the last segment it replayed (the last record
//! is read again before the new timeline is chosen: xlogrecovery.c
//! `FinishWalRecovery` from 15 on, xlog.c `StartupXLOG` before; seen on
//! 10, 15 and 18). That call is not a new failover: the call that
//! ended recovery leaves a mark (pg_wal/.pg_standby.ended: the server run
//! and the segment it was asked for), and the next calls of the same run
//! read it. The history files asked for next, at the timeline switch,
//! remove it; a mark of another server run means nothing.

use std::fs;
use std::path::{Path, PathBuf};

use crate::wal::SegmentName;

/// postmaster.pid's pid and start time: one server run.
type Run = (i32, String);

const MARK: &str = "pg_wal/.pg_standby.ended";

fn path(datadir: &Path) -> PathBuf {
    datadir.join(MARK)
}

/// Recovery ended (a failover) when the server of `run` asked for `at`.
pub fn record(datadir: &Path, run: &Run, at: SegmentName) {
    let text = format!("{} {}\n{at}\n", run.0, run.1);
    if let Err(e) = fs::write(path(datadir), text) {
        tracing::debug!("cannot leave the end-of-recovery mark in pg_wal: {e}");
    }
}

/// Where recovery ended, and in which server run.
pub fn read(datadir: &Path) -> Option<(Run, SegmentName)> {
    let text = fs::read_to_string(path(datadir)).ok()?;
    let mut lines = text.lines();
    let (pid, start) = lines.next()?.split_once(' ')?;
    let at = SegmentName::parse(lines.next()?)?;
    Some(((pid.parse().ok()?, start.to_string()), at))
}

pub fn remove(datadir: &Path) {
    let _ = fs::remove_file(path(datadir));
}

/// Whether a request for `name` by the server of `run` is the server
/// asking again after a failover ended recovery at `mark`: same run, and
/// a segment at or before the one that was not there.
pub fn is_asked_again(
    mark: Option<&(Run, SegmentName)>,
    run: Option<&Run>,
    name: SegmentName,
) -> bool {
    match (mark, run) {
        (Some((marked_run, at)), Some(run)) => {
            marked_run == run && name.position() <= at.position()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_earlier_segment_of_the_same_run_is_asked_again() {
        let seg = |s: &str| SegmentName::parse(s).unwrap();
        let run = (42, "1790000000".to_string());
        let other = (42, "1790000999".to_string());
        let mark = (run.clone(), seg("000000010000000000000005"));
        // (mark, run, requested) -> asked again
        let table = [
            (Some(&mark), Some(&run), "000000010000000000000004", true),
            (Some(&mark), Some(&run), "000000010000000000000005", true),
            (Some(&mark), Some(&run), "000000010000000000000006", false),
            (Some(&mark), Some(&other), "000000010000000000000004", false),
            (Some(&mark), None, "000000010000000000000004", false),
            (None, Some(&run), "000000010000000000000004", false),
        ];
        for (mark, run, name, want) in table {
            assert_eq!(is_asked_again(mark, run, seg(name)), want, "{name} {run:?}");
        }
    }

    #[test]
    fn the_mark_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("pg_wal")).unwrap();
        let run = (7, "1790000000".to_string());
        let at = SegmentName::parse("000000010000000100000002").unwrap();
        assert_eq!(read(dir.path()), None);
        record(dir.path(), &run, at);
        assert_eq!(read(dir.path()), Some((run, at)));
        remove(dir.path());
        assert_eq!(read(dir.path()), None);
    }
}
