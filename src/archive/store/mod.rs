//! Object storage as the archive: the boundary every store sits behind.
//!
//! The restore, the fetcher, the cleanup and `--check` see a store only
//! through [`ObjectStore`]: get an object into a sink (streamed, bounded),
//! list names under a prefix (all pages), delete a set of names, check the
//! bucket. Every answer is one [`Error`] kind sorted for the exit contract
//! by [`classify::classify`], the one place that reads a store's statuses
//! and codes. Adding a store is a file beside `s3.rs` and a line in
//! [`open`].
//!
//! Names given to a store are relative to the archive's prefix, like file
//! names in a directory.

#[cfg(feature = "s3")]
pub(crate) mod aws_credentials;
#[cfg(feature = "remote")]
pub(crate) mod credentials;
#[cfg(feature = "remote")]
pub(crate) mod json;

#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "remote")]
pub mod body;
pub mod classify;
#[cfg(feature = "gcs")]
pub mod gcs;
#[cfg(feature = "remote")]
mod http;
#[cfg(feature = "remote")]
mod location;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(any(feature = "s3", feature = "azure"))]
mod xml;

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

pub use classify::Fatal;

/// The URL schemes of object storage, in every build (with or without the
/// stores compiled in): a location that starts with one is never a
/// directory.
const SCHEMES: [&str; 3] = ["s3:", "gs:", "azure:"];

/// Whether an archive location names object storage rather than a
/// directory: the one rule for the restore, the settings and `--check`.
pub fn is_url(location: &str) -> bool {
    SCHEMES.iter().any(|s| location.starts_with(s))
}

/// An archive in object storage.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// The archive's location as a URL, with its prefix (`s3://b/p/`).
    fn location(&self) -> String;

    /// Which source supplies the credentials, for messages (never a
    /// secret).
    fn credentials_source(&self) -> String;

    /// The service's address, for messages.
    fn endpoint(&self) -> String;

    /// Downloads an object into `dst`, at most `limit` bytes, in bounded
    /// memory; `should_stop` is asked between chunks. Returns the bytes
    /// written. On any error `dst` holds a partial copy the caller throws
    /// away.
    fn get_to(
        &self,
        name: &str,
        dst: &mut dyn Write,
        limit: u64,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<u64, Error>;

    /// Names and sizes of the objects whose name starts with
    /// `name_prefix`, like the files of a directory (deeper "directories"
    /// are not listed). Follows every page.
    fn list(&self, name_prefix: &str) -> Result<Vec<(String, u64)>, Error>;

    /// Writes a small object whole (the standbys' registry entries).
    fn put(&self, name: &str, data: &[u8]) -> Result<(), Error>;

    /// Deletes these objects. Names the store refused are reported in
    /// [`DeleteReport::failed`]; an error stops the deletion.
    fn delete_many(&self, names: &[String]) -> Result<DeleteReport, Error>;

    /// Checks that the bucket is there and readable with these
    /// credentials.
    fn verify(&self) -> Result<(), Error>;
}

/// An environment of these pairs, for the stores' tests of their settings
/// (never the process environment).
#[cfg(all(test, feature = "remote"))]
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let m: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

/// Opens the store a URL names, configured from the process environment;
/// no request is made.
pub fn open(url: &str) -> Result<Box<dyn ObjectStore>, Error> {
    open_with(url, &|k| std::env::var(k).ok())
}

/// [`open`] with the environment given by `env` (`--check` uses the
/// server's).
pub fn open_with(
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn ObjectStore>, Error> {
    let _ = env; // only the stores compiled in read it
    #[cfg(feature = "s3")]
    if url.starts_with("s3:") {
        return Ok(Box::new(s3::Store::from_url_with(
            url,
            env,
            s3::Timeouts::default(),
        )?));
    }
    #[cfg(feature = "gcs")]
    if url.starts_with("gs:") {
        return Ok(Box::new(gcs::Store::from_url_with(
            url,
            env,
            gcs::Timeouts::default(),
        )?));
    }
    #[cfg(feature = "azure")]
    if url.starts_with("azure:") {
        return Ok(Box::new(azure::Store::from_url_with(
            url,
            env,
            azure::Timeouts::default(),
        )?));
    }
    Err(Error::config(format!(
        "archive location \"{url}\" is object storage of a kind this pg_standby was built \
         without (built with: {})",
        built_in().join(", ")
    )))
}

/// Whether `url` is well formed for its store: the reason if not.
pub fn validate_url(url: &str) -> Result<(), String> {
    #[cfg(feature = "s3")]
    if url.starts_with("s3:") {
        return s3::Location::parse(url).map(drop).map_err(|e| match e {
            Error::Config { why, .. } => why,
            e => e.to_string(),
        });
    }
    #[cfg(feature = "gcs")]
    if url.starts_with("gs:") {
        return gcs::Location::parse(url).map(drop).map_err(|e| match e {
            Error::Config { why, .. } => why,
            e => e.to_string(),
        });
    }
    #[cfg(feature = "azure")]
    if url.starts_with("azure:") {
        return azure::Location::parse(url).map(drop).map_err(|e| match e {
            Error::Config { why, .. } => why,
            e => e.to_string(),
        });
    }
    Err(format!(
        "\"{url}\" names no store this pg_standby was built with"
    ))
}

/// The stores compiled in, for `-V` and messages.
pub fn built_in() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "s3") {
        v.push("s3");
    }
    if cfg!(feature = "gcs") {
        v.push("gs");
    }
    if cfg!(feature = "azure") {
        v.push("azure");
    }
    v
}

/// The outcome of [`ObjectStore::delete_many`]: how many names went, and
/// the names the store refused with its reason.
#[derive(Debug, Default)]
pub struct DeleteReport {
    pub deleted: usize,
    pub failed: Vec<(String, String)>,
}

/// A store's answer, sorted for the exit contract.
#[derive(Debug)]
pub enum Error {
    /// The object is not there (yet).
    NotFound,
    /// Will not get better by waiting: exit 250. `refused` is what the
    /// store said (a missing bucket, refused credentials); `None` for our
    /// own configuration (a malformed URL, no credentials, no region).
    Config { why: String, refused: Option<Fatal> },
    /// May get better by waiting: timeouts, refused connections, DNS,
    /// 5xx, throttling, a body cut short. The caller retries.
    Transient(String),
    /// The store is busy and said when to ask again (`Retry-After`):
    /// [`Error::Transient`] with the store's own pace.
    Throttled { why: String, retry_after: Duration },
    /// The body does not match the checksum the store gives for it:
    /// changed on the way. A bad file: never delivered, fetched again.
    Corrupt(String),
    /// The object is larger than the caller's limit.
    TooLarge { size: u64, limit: u64 },
    /// `should_stop` answered true during a download.
    Interrupted,
    /// Given up by the caller for a failover decided while it ran.
    Abandoned,
    /// Writing what was downloaded failed (local disk).
    Io(io::Error),
}

impl Error {
    /// A configuration error of our own making (not the store's answer).
    pub fn config(why: String) -> Self {
        Error::Config { why, refused: None }
    }

    /// The error of an answer [`classify::classify`] says to wait for:
    /// the store's `Retry-After` kept, where it sent one.
    pub fn wait(why: String, retry_after: Option<Duration>) -> Self {
        match retry_after {
            Some(retry_after) => Error::Throttled { why, retry_after },
            None => Error::Transient(why),
        }
    }

    /// Whether waiting may help (the caller asks again later).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient(_) | Error::Throttled { .. })
    }

    /// How long the store asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The store refused: waiting will not help.
    pub fn refused(kind: Fatal, why: String) -> Self {
        Error::Config {
            why,
            refused: Some(kind),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found"),
            Error::Config { why, .. } => write!(f, "object storage configuration: {why}"),
            Error::Transient(m) => write!(f, "object storage unavailable: {m}"),
            Error::Throttled { why, retry_after } => write!(
                f,
                "object storage unavailable: {why} (asks to retry after {} s)",
                retry_after.as_secs()
            ),
            Error::TooLarge { size, limit } => {
                write!(f, "object is larger than {limit} bytes ({size} or more)")
            }
            Error::Corrupt(m) => f.write_str(m),
            Error::Interrupted => f.write_str("download interrupted"),
            Error::Abandoned => f.write_str("request given up for the failover"),
            Error::Io(e) => write!(f, "writing the downloaded object: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_storage_locations() {
        for url in [
            "s3://b",
            "s3://b/p",
            "s3:x",
            "gs://b",
            "gs:x",
            "azure://c/p",
        ] {
            assert!(is_url(url), "{url}");
        }
        for path in [
            "/var/lib/archive",
            "archive",
            "./s3://x",
            "S3://b",
            "GS://b",
            "Azure://c",
            "",
        ] {
            assert!(!is_url(path), "{path}");
        }
    }
}
