//! Many standbys, one archive: each standby that cleans up publishes its
//! position (its `%r`) in the archive itself, and the cleanup removes only
//! what every live standby of the cluster is past.
//!
//! An entry is one small text file (one object on a store) under
//! `.pg_standby/standbys/` in the archive, a name no WAL file can have,
//! written only by its standby, whole (a temporary name and a rename; a
//! single PUT). Its name is the cluster's system identifier and a hash of
//! the standby's name (`--standby-name`, by default host and data
//! directory), so it stays the same across restarts, and an entry of
//! another cluster is told by its name even when its content is unreadable.
//!
//! Why this is safe without a lock: a standby's `%r` only moves forward,
//! so an entry read a moment ago holds cleanup back at least as far as the
//! entry now; two cleanups at once each keep what the other has published.
//! The one exposed moment is a standby's first cleanup (see docs/safety.md).
//!
//! [`plan`] is the rule, pure and table-tested; the cleanup process reads
//! and writes the entries (src/archive/cleanup.rs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wal::SegmentName;

/// Where the entries live, relative to the archive.
pub const DIR: &str = ".pg_standby/standbys";

/// How often an unchanged position is written again: an entry keeps its
/// standby's segments only until `--standby-expiry` (at least an hour), so
/// a standby whose `%r` stays put (an idle primary) writes it at least
/// this often.
pub const REFRESH: Duration = Duration::from_secs(15 * 60);

/// One standby's published position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `--standby-name`, or host and data directory.
    pub name: String,
    pub system_identifier: u64,
    /// The segment size, where the writer knew it.
    pub segment_size: Option<u64>,
    /// The oldest segment this standby still needs (its `%r`).
    pub restart: SegmentName,
    /// When it was written, by the writer's clock (seconds since 1970).
    pub written: u64,
    pub host: String,
    pub data_directory: String,
}

impl Entry {
    /// The file (object) name of a standby's entry.
    pub fn file_name(system_identifier: u64, name: &str) -> String {
        format!(
            "{system_identifier}-{:016x}.standby",
            fnv1a(name.as_bytes())
        )
    }

    /// The cluster an entry's file name says it belongs to, whatever its
    /// content.
    pub fn cluster_of(file_name: &str) -> Option<u64> {
        let (sysid, rest) = file_name.split_once('-')?;
        rest.ends_with(".standby").then_some(())?;
        sysid.parse().ok()
    }

    pub fn encode(&self) -> String {
        format!(
            "# pg_standby: the position of one standby reading this archive.\n\
             # Written by that standby at each cleanup; remove it (and only it) when the\n\
             # standby is gone for good, or let it expire.\n\
             name = {}\n\
             system_identifier = {}\n\
             segment_size = {}\n\
             restart = {}\n\
             written = {}\n\
             written_at = {}\n\
             host = {}\n\
             data_directory = {}\n",
            one_line(&self.name),
            self.system_identifier,
            self.segment_size
                .map_or("unknown".into(), |s| s.to_string()),
            self.restart,
            self.written,
            crate::obs::logging::timestamp(self.written, 0),
            one_line(&self.host),
            one_line(&self.data_directory),
        )
    }

    /// An entry as [`Entry::encode`] writes it; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Entry, String> {
        let field = |key: &str| {
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
                .ok_or_else(|| format!("no {key}"))
        };
        let number = |key: &str| {
            field(key)?
                .parse::<u64>()
                .map_err(|_| format!("{key} is not a number"))
        };
        Ok(Entry {
            name: field("name")?,
            system_identifier: number("system_identifier")?,
            segment_size: field("segment_size")?.parse().ok(),
            restart: SegmentName::parse(&field("restart")?)
                .filter(|r| !r.is_zero())
                .ok_or("restart is not a segment name")?,
            written: number("written")?,
            host: field("host").unwrap_or_default(),
            data_directory: field("data_directory").unwrap_or_default(),
        })
    }
}

/// What one standby is, for its own entry.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub system_identifier: u64,
    pub segment_size: Option<u64>,
}

/// Whether the entry under this standby's name is another standby's: a
/// live entry written from another host or data directory. Two standbys
/// given one `--standby-name` (a postgresql.conf copied from one to the
/// other) would overwrite each other's position, and the one behind would
/// lose the segments it still needs. An expired entry is taken over (a
/// standby that moved, once its old entry is past `--standby-expiry`); an
/// entry that does not say where it was written is not judged.
pub fn written_by_another(
    entry: &Entry,
    host: &str,
    data_directory: &str,
    now: u64,
    expiry: Duration,
) -> bool {
    let age = Duration::from_secs(now.saturating_sub(entry.written));
    let said_where = !entry.host.is_empty() && !entry.data_directory.is_empty();
    said_where && age <= expiry && (entry.host != host || entry.data_directory != data_directory)
}

/// The default `--standby-name`: host and data directory, which tells
/// apart two standbys on one host and standbys on different hosts.
pub fn default_name(data_directory: &std::path::Path) -> String {
    format!("{}:{}", host_name(), data_directory.display())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An entry as it was found in the archive.
#[derive(Debug, Clone)]
pub enum Found {
    Read {
        file_name: String,
        entry: Entry,
    },
    /// Present but unreadable or not an entry.
    Bad {
        file_name: String,
        why: String,
    },
}

/// What the cleanup does, given its own cutoff and the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Remove what is older than this; `None`: remove nothing.
    pub cutoff: Option<SegmentName>,
    /// The standby that holds cleanup back furthest, if another.
    pub held_by: Option<String>,
    /// Other standbys of this cluster whose entries count.
    pub live: Vec<String>,
    /// Entries of this cluster older than the expiry: (name, age).
    pub expired: Vec<(String, Duration)>,
    /// Unreadable entries that may be this cluster's: they hold cleanup
    /// back entirely. (file name, why)
    pub unreadable: Vec<(String, String)>,
}

/// Where one entry stands for a standby of cluster `sysid` (unknown for
/// `--check` with an archive alone): the one rule the cleanup and
/// `--check` read entries by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Holds cleanup back.
    Live,
    /// Not written for longer than the expiry: no longer holds it back.
    Expired(Duration),
    /// Another cluster's (or another segment size): ignored.
    OtherCluster,
    /// Cannot be read and may be this cluster's: stops every cleanup.
    Unreadable,
}

pub fn standing(
    found: &Found,
    sysid: Option<u64>,
    segment_size: Option<u64>,
    now: u64,
    expiry: Duration,
) -> Standing {
    match found {
        Found::Bad { file_name, .. } => match (Entry::cluster_of(file_name), sysid) {
            (Some(theirs), Some(ours)) if theirs != ours => Standing::OtherCluster,
            _ => Standing::Unreadable,
        },
        Found::Read { entry, .. } => {
            let same_cluster = sysid.is_none_or(|s| s == entry.system_identifier)
                && match (entry.segment_size, segment_size) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
            // A clock behind ours makes an entry look younger: that only
            // keeps more.
            let age = Duration::from_secs(now.saturating_sub(entry.written));
            if !same_cluster {
                Standing::OtherCluster
            } else if age > expiry {
                Standing::Expired(age)
            } else {
                Standing::Live
            }
        }
    }
}

/// The cutoff a cleanup may use: its own, or the oldest restart point of
/// the other live standbys of its cluster, whichever is older. An entry
/// written longer than `expiry` ago no longer counts. An unreadable entry
/// that may be this cluster's stops the cleanup: it never makes cleanup
/// remove more. Entries of other clusters are ignored.
pub fn plan(own: SegmentName, me: &Me, found: &[Found], now: u64, expiry: Duration) -> Plan {
    let mine = Entry::file_name(me.system_identifier, &me.name);
    let mut plan = Plan {
        cutoff: Some(own),
        held_by: None,
        live: Vec::new(),
        expired: Vec::new(),
        unreadable: Vec::new(),
    };
    for f in found {
        let sysid = Some(me.system_identifier);
        match (f, standing(f, sysid, me.segment_size, now, expiry)) {
            (_, Standing::OtherCluster) => {}
            (Found::Bad { file_name, why }, _) => {
                plan.unreadable.push((file_name.clone(), why.clone()));
            }
            (Found::Read { file_name, .. }, _) if *file_name == mine => {}
            (Found::Read { entry, .. }, Standing::Expired(age)) => {
                plan.expired.push((entry.name.clone(), age));
            }
            (Found::Read { entry, .. }, _) => {
                plan.live.push(entry.name.clone());
                if plan
                    .cutoff
                    .is_some_and(|c| entry.restart.position() < c.position())
                {
                    plan.cutoff = Some(entry.restart);
                    plan.held_by = Some(entry.name.clone());
                }
            }
        }
    }
    if !plan.unreadable.is_empty() {
        plan.cutoff = None;
        plan.held_by = None;
    }
    plan
}

/// 64-bit FNV-1a: a stable, short file name for a standby's name (not a
/// secret, not adversarial).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A value on one line: an entry is line-oriented.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSID: u64 = 7_300_000_000_000_000_001;
    /// `--standby-expiry`'s default: long enough for a weekend outage and
    /// a Monday morning.
    const DEFAULT_EXPIRY: Duration = Duration::from_secs(96 * 3600);
    const DAY: u64 = 24 * 3600;
    const NOW: u64 = 1_800_000_000;

    fn seg(n: u32) -> SegmentName {
        SegmentName::parse(&format!("00000001000000000000{n:04X}")).unwrap()
    }

    fn me() -> Me {
        Me {
            name: "db1:/data".into(),
            system_identifier: SYSID,
            segment_size: Some(16 << 20),
        }
    }

    fn entry(name: &str, restart: u32, age_days: u64) -> Found {
        entry_of(name, SYSID, restart, age_days)
    }

    fn entry_of(name: &str, sysid: u64, restart: u32, age_days: u64) -> Found {
        Found::Read {
            file_name: Entry::file_name(sysid, name),
            entry: Entry {
                name: name.into(),
                system_identifier: sysid,
                segment_size: Some(16 << 20),
                restart: seg(restart),
                written: NOW - age_days * DAY,
                host: "h".into(),
                data_directory: "/d".into(),
            },
        }
    }

    /// What, the entries found, the cutoff, who holds it back.
    type Row<'a> = (&'a str, Vec<Found>, Option<u32>, Option<&'a str>);

    #[test]
    fn a_name_used_by_two_standbys_is_told_by_where_its_entry_was_written() {
        let Found::Read { entry, .. } = entry("db", 5, 0) else {
            unreachable!()
        };
        let old = Entry {
            written: NOW - 5 * DAY,
            ..entry.clone()
        };
        let unsaid = Entry {
            host: String::new(),
            ..entry.clone()
        };
        // (what, the entry, our host, our data directory, another's?)
        let table = [
            ("ours", &entry, "h", "/d", false),
            ("another data directory", &entry, "h", "/e", true),
            ("another host", &entry, "g", "/d", true),
            ("another's, expired: taken over", &old, "g", "/d", false),
            ("written without its host", &unsaid, "g", "/d", false),
        ];
        for (what, entry, host, dir, want) in table {
            assert_eq!(
                written_by_another(entry, host, dir, NOW, DEFAULT_EXPIRY),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn cleanup_keeps_what_the_slowest_live_standby_needs() {
        let expiry = DEFAULT_EXPIRY;
        let own = seg(0x50);
        let bad = Found::Bad {
            file_name: Entry::file_name(SYSID, "db9"),
            why: "no restart".into(),
        };
        let foreign_bad = Found::Bad {
            file_name: Entry::file_name(42, "x"),
            why: "truncated".into(),
        };
        let unnamed_bad = Found::Bad {
            file_name: "junk".into(),
            why: "not an entry".into(),
        };
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            ("alone: its own %r", vec![], Some(0x50), None),
            ("its own entry does not hold it back", vec![entry("db1:/data", 0x10, 0)], Some(0x50), None),
            ("a slower standby holds it back", vec![entry("db2", 0x20, 1)], Some(0x20), Some("db2")),
            ("the slowest of several", vec![entry("db2", 0x30, 0), entry("db3", 0x18, 2), entry("db4", 0x60, 0)], Some(0x18), Some("db3")),
            ("a faster standby changes nothing", vec![entry("db2", 0x60, 0)], Some(0x50), None),
            ("expired: no longer counts", vec![entry("db2", 0x20, 5)], Some(0x50), None),
            ("another cluster: ignored", vec![entry_of("db2", 99, 0x01, 0)], Some(0x50), None),
            ("unreadable, this cluster's: nothing removed", vec![entry("db2", 0x30, 0), bad.clone()], None, None),
            ("unreadable, provably another cluster's: ignored", vec![foreign_bad], Some(0x50), None),
            ("unreadable, unnamed: nothing removed", vec![unnamed_bad], None, None),
        ];
        for (what, found, cutoff, held_by) in table {
            let plan = plan(own, &me(), &found, NOW, expiry);
            assert_eq!(plan.cutoff, cutoff.map(seg), "{what}");
            assert_eq!(plan.held_by.as_deref(), held_by, "{what}");
        }
        let plan = plan(
            own,
            &me(),
            &[entry("db2", 0x20, 5), entry("db3", 0x40, 1)],
            NOW,
            expiry,
        );
        assert_eq!(
            plan.expired,
            vec![("db2".to_string(), Duration::from_secs(5 * DAY))]
        );
        assert_eq!(plan.live, vec!["db3".to_string()]);
    }

    #[test]
    fn timelines_do_not_matter_positions_do() {
        // A standby on a later timeline after a failover elsewhere: the
        // cleanup compares positions, as it removes by position.
        let other = Found::Read {
            file_name: Entry::file_name(SYSID, "db2"),
            entry: Entry {
                restart: SegmentName::parse("000000020000000000000020").unwrap(),
                ..match entry("db2", 0, 0) {
                    Found::Read { entry, .. } => entry,
                    Found::Bad { .. } => unreachable!(),
                }
            },
        };
        let plan = plan(seg(0x50), &me(), &[other], NOW, DEFAULT_EXPIRY);
        assert_eq!(
            plan.cutoff.map(|c| c.position()),
            Some(seg(0x20).position())
        );
    }

    #[test]
    fn entries_read_back_as_written() {
        let Found::Read { entry, file_name } = entry("db2:/var/lib/x\nforged = 1", 0x20, 0) else {
            unreachable!()
        };
        let text = entry.encode();
        assert!(
            text.contains("written_at = 2027-01-15 08:00:00.000 UTC"),
            "{text}"
        );
        let back = Entry::parse(&text).unwrap();
        assert_eq!(back.restart, entry.restart);
        assert_eq!(back.system_identifier, SYSID);
        assert_eq!(back.name, "db2:/var/lib/x forged = 1");
        assert_eq!(Entry::cluster_of(&file_name), Some(SYSID));
        assert_eq!(Entry::cluster_of("junk"), None);
        for broken in ["", "name = x", &text.replace("restart = ", "restart = zz")] {
            assert!(Entry::parse(broken).is_err(), "{broken}");
        }
        // Stable names: the same standby, the same file, run after run.
        assert_eq!(
            Entry::file_name(SYSID, "db2:/data"),
            Entry::file_name(SYSID, "db2:/data")
        );
        assert_ne!(
            Entry::file_name(SYSID, "db2:/data"),
            Entry::file_name(SYSID, "db2:/data2")
        );
    }
}
