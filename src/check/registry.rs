//! `--check`: the standbys registered in the archive (src/archive/registry.rs),
//! what each still needs and how old its entry is, read with the same
//! rule the cleanup uses ([`crate::archive::registry::standing`]).

use std::path::Path;
use std::time::Duration;

use super::{Finding, Severity, finding, ok};
use crate::archive::Archive;
use crate::archive::registry::{self, Found, Standing};
use crate::obs::logging::human_duration;

/// The standby `--check` looks at, as its cleanup would write its entry.
pub struct Mine {
    pub file_name: String,
    pub host: String,
    pub data_directory: String,
}

/// The registry's findings: one line per standby of this cluster, a
/// WARNING for an expired or unreadable entry, an ERROR for this standby's
/// name in use by another, a NOTE for other clusters. `sysid`: this
/// standby's cluster, if known (without it, with only an archive given,
/// every entry is listed as found).
pub fn findings(
    archive: &Archive,
    sysid: Option<u64>,
    mine: Option<&Mine>,
    expiry: Duration,
    out: &mut Vec<Finding>,
) {
    use Severity::*;
    let found = match archive.registry() {
        Ok(found) => found,
        Err(e) => {
            out.push(finding(
                Warning,
                "registry-unreadable",
                format!(
                    "the standbys registered in {} cannot be read: {e}; every standby's cleanup \
                     is skipped until they can",
                    archive.path_of(registry::DIR).display()
                ),
                "give the standbys' users read and write access to the archive's .pg_standby \
                 directory"
                    .into(),
            ));
            return;
        }
    };
    if found.is_empty() {
        return;
    }
    let now = registry::now();
    let mut standbys = Vec::new();
    let mut others = 0;
    for f in &found {
        match (f, registry::standing(f, sysid, None, now, expiry)) {
            (_, Standing::OtherCluster) => others += 1,
            (Found::Bad { file_name, why }, _) => {
                let path = archive.path_of(&format!("{}/{file_name}", registry::DIR));
                out.push(finding(
                    Warning,
                    "registry-entry-unreadable",
                    format!(
                        "the standby entry {} cannot be read ({why}): no standby of this cluster \
                         cleans up the archive while it is there",
                        path.display()
                    ),
                    format!(
                        "remove {} (its standby writes it again at its next cleanup)",
                        path.display()
                    ),
                ));
            }
            (Found::Read { file_name, entry }, Standing::Expired(age)) => {
                let path = archive.path_of(&format!("{}/{file_name}", registry::DIR));
                out.push(finding(
                    Warning,
                    "registry-entry-expired",
                    format!(
                        "standby \"{}\" ({}, {}) last wrote its position {} ago, more than \
                             --standby-expiry ({}): it no longer holds cleanup back, so it may \
                             find the segments it needs removed",
                        entry.name,
                        entry.host,
                        entry.data_directory,
                        human_duration(age),
                        human_duration(expiry)
                    ),
                    format!(
                        "if that standby is gone for good, remove {}; if it is only down, \
                             start it soon or raise --standby-expiry",
                        path.display()
                    ),
                ));
            }
            (Found::Read { file_name, entry }, _)
                if mine.is_some_and(|m| {
                    m.file_name == *file_name
                        && registry::written_by_another(
                            entry,
                            &m.host,
                            &m.data_directory,
                            now,
                            expiry,
                        )
                }) =>
            {
                let path = archive.path_of(&format!("{}/{file_name}", registry::DIR));
                out.push(finding(
                    Error,
                    "registry-name-taken",
                    format!(
                        "this standby's name \"{}\" is also used by the standby at {}:{} \
                         (entry {}): two standbys with one name overwrite each other's \
                         position, so this standby's cleanup is skipped until they differ",
                        entry.name,
                        entry.host,
                        entry.data_directory,
                        path.display()
                    ),
                    "give each standby its own --standby-name in restore_command (or leave it \
                     out: the default is host and data directory); if that entry is this \
                     standby's own from before it moved, remove it"
                        .into(),
                ));
            }
            (Found::Read { entry, .. }, _) => {
                let age = Duration::from_secs(now.saturating_sub(entry.written));
                standbys.push(format!(
                    "\"{}\" needs {} on (written {} ago)",
                    entry.name,
                    entry.restart,
                    human_duration(age)
                ));
            }
        }
    }
    if others > 0 {
        out.push(finding(
            Note,
            "registry-other-clusters",
            format!(
                "{others} standby entr{} in {} belong{} to another cluster: ignored by this \
                 cluster's cleanup",
                if others == 1 { "y" } else { "ies" },
                archive.path_of(registry::DIR).display(),
                if others == 1 { "s" } else { "" }
            ),
            String::new(),
        ));
    }
    if !standbys.is_empty() {
        out.push(ok(
            "registry",
            format!(
                "{} standby(s) registered in the archive; cleanup keeps what each needs: {}",
                standbys.len(),
                standbys.join("; ")
            ),
        ));
    }
}

/// `pg_standby --check ARCHIVELOCATION` without a data directory: the
/// registry of an archive, as an operator on the primary's side sees it.
pub fn of_archive(location: &Path, expiry: Duration) -> Vec<Finding> {
    match Archive::open(location) {
        Ok(archive) => {
            let mut out = Vec::new();
            findings(&archive, None, None, expiry, &mut out);
            if out.is_empty() {
                out.push(ok(
                    "registry",
                    format!(
                        "no standby registered in {} (none has cleaned up with %r or -k yet)",
                        archive.path_of(registry::DIR).display()
                    ),
                ));
            }
            out
        }
        Err(e) => vec![finding(
            Severity::Error,
            "archive-missing",
            e,
            "give the archive's location as restore_command does".into(),
        )],
    }
}
