//! An object-storage archive, checked through the store with the server's
//! environment: bucket, credentials, listing.

use super::*;

/// [`remote_failure`] for an `azure://` archive: the same findings, with
/// Azure's names for the fixes.
pub(super) fn azure_failure(e: &crate::archive::store::Error) -> (&'static str, &'static str) {
    use crate::archive::store::{Error, Fatal};
    let code = remote_failure(e, "").0;
    let fix = match e {
        Error::Config {
            refused: Some(Fatal::NoBucket),
            ..
        } => {
            "create the container, or correct CONTAINER in ARCHIVELOCATION (and the account or \
             AZURE_STORAGE_BLOB_ENDPOINT if it lives elsewhere)"
        }
        Error::Config {
            refused: Some(Fatal::Denied),
            ..
        } => {
            "give the server's environment a key, SAS (r, l; d with %r) or managed identity \
             (Storage Blob Data Reader; Contributor with %r) for the container"
        }
        e if e.is_transient() => {
            "check the account or AZURE_STORAGE_BLOB_ENDPOINT, the network and any proxy \
             between the standby and the service"
        }
        _ => {
            "set the AZURE_STORAGE_* variables in the server's environment (Environment= or \
             EnvironmentFile= of its systemd service) or at the start of restore_command"
        }
    };
    (code, fix)
}

/// Which finding an object storage failure is, and its fix (in the terms
/// of the store `url` names).
pub(super) fn remote_failure(
    e: &crate::archive::store::Error,
    url: &str,
) -> (&'static str, &'static str) {
    use crate::archive::store::{Error, Fatal};
    if url.starts_with("azure:") {
        return azure_failure(e);
    }
    let gcs = url.starts_with("gs:");
    match e {
        Error::Config {
            refused: Some(Fatal::NoBucket),
            ..
        } => (
            "archive-bucket-missing",
            "create the bucket, or correct BUCKET in ARCHIVELOCATION (and the endpoint or \
             region if it lives elsewhere)",
        ),
        Error::Config {
            refused: Some(Fatal::Denied),
            ..
        } if gcs => (
            "archive-credentials-refused",
            "give the server's credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file or \
             the machine's service account) storage.objects.get and storage.objects.list on \
             the bucket (and storage.objects.delete with %r), and check the clock",
        ),
        Error::Config {
            refused: Some(Fatal::Denied),
            ..
        } => (
            "archive-credentials-refused",
            "give the server's environment a key allowed s3:ListBucket and s3:GetObject on \
             the archive (and s3:DeleteObject with %r), and check the clock",
        ),
        Error::Transient(_) | Error::Throttled { .. } if gcs => (
            "archive-unreachable",
            "check STORAGE_EMULATOR_HOST if set, the network and any proxy between the \
             standby and Cloud Storage (and the token endpoint)",
        ),
        Error::Transient(_) | Error::Throttled { .. } => (
            "archive-unreachable",
            "check AWS_ENDPOINT_URL (or the region), the network and any proxy between the \
             standby and the object store",
        ),
        _ if gcs => (
            "archive-remote-config",
            "set GOOGLE_APPLICATION_CREDENTIALS in the server's environment (Environment= of \
             its systemd service) or at the start of restore_command, or give the machine a \
             service account",
        ),
        _ => (
            "archive-remote-config",
            "set the AWS_* variables in the server's environment (Environment= or \
             EnvironmentFile= of its systemd service) or at the start of restore_command",
        ),
    }
}

/// An object storage archive: open the store as the restore does (the
/// same parser and credential chain) and list the prefix.
pub(super) fn check_remote_archive(
    setup: &Setup,
    url: &str,
    assignments: &[(String, String)],
    out: &mut Vec<Finding>,
) {
    use Severity::*;
    let env = command_env(setup, assignments);
    let whose = match &setup.server_env {
        ServerEnv::Known { pid, .. } => format!("the running server's environment (pid {pid})"),
        ServerEnv::Unknown(why) => {
            out.push(finding(
                Note,
                "server-environment-unknown",
                format!(
                    "the server's environment cannot be read ({why}): the archive {url} was \
                     reached with this process's variables (AWS_*, GOOGLE_*) and files; the \
                     server sees its own (its service's Environment=, its user's ~/.aws or \
                     ~/.config/gcloud)"
                ),
                "run the check while the server runs, as root or as its user".into(),
            ));
            "this process's environment".to_string()
        }
    };
    let fail = |out: &mut Vec<Finding>, e: crate::archive::store::Error| {
        let (code, fix) = remote_failure(&e, url);
        out.push(finding(
            Error,
            code,
            format!("the archive {url}: {e} (settings from {whose})"),
            fix.into(),
        ));
    };
    if let Err(why) = crate::archive::store::validate_url(url) {
        out.push(finding(
            Error,
            "archive-url",
            why,
            "ARCHIVELOCATION = s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or \
             azure://CONTAINER/PREFIX"
                .into(),
        ));
        return;
    }
    let store = match crate::archive::store::open_with(url, &env) {
        Ok(s) => s,
        Err(e) => return fail(out, e),
    };
    let objects = match store.list("") {
        Ok(o) => o,
        Err(e) => return fail(out, e),
    };
    let mut segments: Vec<(SegmentName, String)> = objects
        .into_iter()
        .filter_map(|(file, _)| {
            let base = Codec::split_name(&file).map_or(file.as_str(), |(_, b)| b);
            Some((SegmentName::parse(base)?, file))
        })
        .collect();
    segments.sort_by_key(|(s, _)| (s.log, s.seg, s.tli));
    let Some((_, newest)) = segments.last() else {
        out.push(finding(
            Warning,
            "archive-empty",
            format!(
                "the archive {url} holds no WAL segment yet (listed at {} with credentials from \
                 {}): the standby will wait for its first one",
                store.endpoint(),
                store.credentials_source()
            ),
            "check the primary's archive_command".into(),
        ));
        return;
    };
    let before = out.len();
    if let Ok(control) = Control::read(&setup.datadir)
        && let Some(gap) = find_gap(&segments, &control)
    {
        out.push(gap);
    }
    if clean_since(out, before) {
        out.push(ok(
            "archive",
            format!(
                "the archive {url} listed at {} with credentials from {} ({whose}): {} \
                 segment(s), newest {newest}, none missing since the redo point",
                store.endpoint(),
                store.credentials_source(),
                segments.len()
            ),
        ));
    }
}
