//! The S3 store behind the [`super::ObjectStore`] boundary:
//! `s3://BUCKET[/PREFIX]` on AWS S3 or any S3-compatible server, through a
//! small blocking client.
//!
//! Nothing here runs unless the archive location is an `s3://` URL: no
//! runtime, no TLS set-up, no configuration files are read before
//! [`Store::from_url`] (TLS itself is set up on the first `https`
//! connection). Requests are signed by rusty-s3 (SigV4, pre-signed URLs)
//! and sent with ureq; the credential chain (`aws_credentials`)
//! and pagination are ours, and every answer is read by
//! [`super::classify::classify`].
//!
//! Errors are sorted for the exit contract: [`Error::NotFound`] is "not
//! there yet"; [`Error::Config`] must end the call with exit 250 (a wrong
//! key must never promote a standby); [`Error::Transient`] is retried by
//! the caller's waiting loop. The client itself never retries, so that the
//! loop stays in control of signals and the trigger file; a request is
//! bounded by [`Timeouts`].
//!
//! Configuration is what every S3 tool reads (see [`Settings::resolve`]).
//! PostgreSQL runs restore_command through the shell (`system()`, see
//! `RestoreArchivedFile` in src/backend/access/transam/xlogarchive.c), so
//! the variables come from the server's environment (e.g. systemd
//! `Environment=`/`EnvironmentFile=` of the postgres service) or from the
//! command itself: `restore_command = 'AWS_PROFILE=standby pg_standby
//! s3://bucket/wal %f %p %r'`.
//!
//! Permissions: s3:GetObject, and s3:ListBucket on the bucket. Without
//! ListBucket, AWS answers a missing key with 403 instead of 404 (S3
//! GetObject/HeadObject reference, "Permissions"), which would read as a
//! configuration error while waiting; cleanup also needs it, and
//! s3:DeleteObject.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};
use rusty_s3::{Bucket, Credentials, Method, S3Action, UrlStyle};

use super::body::{self, Checksum};
use super::classify::Fatal;
pub use super::http::Timeouts;
use super::http::{self, ListPage, Response, read_text, transport};
use super::location;
use super::xml::{self, field as xml_field};
use super::{DeleteReport, Error, ObjectStore};
use crate::archive::store::aws_credentials::{Keys, Profile, Source};
use crate::archive::store::credentials::{Expiring, Refreshing};

/// How long a signed URL stays valid: only long enough for the request to
/// start, so a leaked URL is of little use.
const SIGNED_URL_TTL: Duration = Duration::from_secs(300);
/// DeleteObjects takes at most 1000 keys per request (S3 API reference).
const DELETE_BATCH: usize = 1000;
/// ListObjectsV2 pages are at most 1000 keys of at most 1 KiB each.
const LIST_BODY_LIMIT: u64 = 4 * 1024 * 1024;

/// Where in object storage the archive is: `s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// No leading slash, no empty segments, ends with `/` unless empty.
    pub prefix: String,
}

impl Location {
    pub fn parse(url: &str) -> Result<Self, Error> {
        let (bucket, prefix) = location::split(url, "s3", "bucket")?;
        // S3 bucket naming rules (AWS "Bucket naming rules").
        if !(3..=63).contains(&bucket.len()) {
            return Err(location::malformed(
                url,
                "a bucket name has 3 to 63 characters",
            ));
        }
        location::bucket_characters(url, bucket)?;
        let norm = location::prefix(url, prefix, &['?', '#'])?;
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: norm,
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The settings resolved from the AWS variables and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub path_style: bool,
    pub region: String,
    /// Where the credentials come from (fetched at the first request).
    pub credentials: Source,
    /// The proxy to the endpoint, if any.
    pub proxy: Option<String>,
}

impl Settings {
    /// Resolves the settings as the AWS CLI and SDKs do, from the
    /// environment given by `env` (so tests need not touch the process
    /// environment):
    /// * endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's
    ///   `endpoint_url` (all ignored with `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`),
    ///   else AWS S3 of the region. Custom endpoints are addressed
    ///   path-style (`ENDPOINT/BUCKET/KEY`), as MinIO, Ceph RGW and the
    ///   like expect;
    /// * region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
    ///   `region`; with a custom endpoint `us-east-1` if none is set (the
    ///   default of S3-compatible servers), on AWS a missing region is an
    ///   error;
    /// * credentials: the chain of `aws_credentials`; the profile
    ///   is `AWS_PROFILE`, else `default`, in the shared credentials file
    ///   (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) and
    ///   the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`).
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let profile_set = var("AWS_PROFILE");
        let profile = profile_set.clone().unwrap_or_else(|| "default".into());
        let home = var("HOME").map(PathBuf::from);
        let file_of = |var_name: &str, default: &str| -> Option<PathBuf> {
            var(var_name)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let config_path = file_of("AWS_CONFIG_FILE", "config");
        let creds_path = file_of("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        // The config file names profiles "[profile NAME]" (and "[default]");
        // the credentials file names them "[NAME]".
        let config_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let config = read_ini_section(config_path.as_ref(), &config_section)?;
        let creds = read_ini_section(creds_path.as_ref(), &profile)?;
        if profile_set.is_some() && config.is_none() && creds.is_none() {
            return Err(Error::config(format!(
                "AWS_PROFILE names profile \"{profile}\", found neither in {} nor in {}",
                show(&config_path),
                show(&creds_path)
            )));
        }
        let config = config.unwrap_or_default();
        let creds_section = creds.unwrap_or_default();

        let ignore_endpoints = var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let custom_endpoint = if ignore_endpoints {
            None
        } else {
            var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| config.get("endpoint_url").cloned())
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| config.get("region").cloned());
        let (endpoint, path_style, region) = match (custom_endpoint, region) {
            (Some(e), r) => (e, true, r.unwrap_or_else(|| "us-east-1".into())),
            (None, Some(r)) => (format!("https://s3.{r}.amazonaws.com"), false, r),
            (None, None) => {
                return Err(Error::config(
                    "no region: set AWS_REGION (or AWS_DEFAULT_REGION, or region in the profile), \
                     or AWS_ENDPOINT_URL for an S3-compatible server"
                        .into(),
                ));
            }
        };

        let credentials = crate::archive::store::aws_credentials::choose(
            &var,
            &region,
            &Profile {
                name: &profile,
                credentials: &creds_section,
                config: &config,
                credentials_path: show(&creds_path),
                config_path: show(&config_path),
                other: &|name: &str| {
                    let section = if name == "default" {
                        "default".to_string()
                    } else {
                        format!("profile {name}")
                    };
                    let creds = read_ini_section(creds_path.as_ref(), name).ok().flatten();
                    let config = read_ini_section(config_path.as_ref(), &section)
                        .ok()
                        .flatten();
                    (creds.is_some() || config.is_some())
                        .then(|| (creds.unwrap_or_default(), config.unwrap_or_default()))
                },
            },
        )?;
        let proxy = http::proxy_for(&endpoint, &var);
        Ok(Self {
            endpoint,
            path_style,
            region,
            credentials,
            proxy,
        })
    }
}

fn show(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => p.display().to_string(),
        None => "(no HOME)".into(),
    }
}

/// The `key = value` pairs of one `[section]` of an AWS INI file; `None` if
/// the file or the section is missing. Indented lines continue a nested
/// setting (`s3 =` followed by indented pairs) and are skipped.
fn read_ini_section(
    path: Option<&PathBuf>,
    section: &str,
) -> Result<Option<HashMap<String, String>>, Error> {
    let Some(path) = path else { return Ok(None) };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    Ok(parse_ini_section(&text, section))
}

fn parse_ini_section(text: &str, section: &str) -> Option<HashMap<String, String>> {
    let mut found = None;
    let mut current = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            current = name == section;
            if current {
                found.get_or_insert_with(HashMap::new);
            }
            continue;
        }
        if current && let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            if !v.is_empty() {
                found
                    .get_or_insert_with(HashMap::new)
                    .insert(k.trim().to_ascii_lowercase(), v.to_string());
            }
        }
    }
    found
}

/// What HEAD tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// An archive in object storage. Names given to its methods are relative
/// to the location's prefix, like file names in a directory.
pub struct Store {
    location: Location,
    bucket: Bucket,
    source: Source,
    credentials: Refreshing<Credentials>,
    /// The proxy, for STS as for the store.
    proxy: Option<String>,
    agent: ureq::Agent,
    /// Keys per ListObjectsV2 page (1000, the S3 maximum, unless tests
    /// make it small to exercise pagination).
    list_page: usize,
    /// HEAD cannot tell a missing object from a missing bucket (both are a
    /// bodiless 404): the first 404 checks the bucket once.
    bucket_checked: AtomicBool,
    /// The server has no DeleteObjects: delete one key per request.
    one_by_one: AtomicBool,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .field("endpoint", &self.bucket.base_url().as_str())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Parses the URL and resolves the configuration from the process
    /// environment; no request is made.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Self::from_url_with(url, &|k| std::env::var(k).ok(), Timeouts::default())
    }

    pub fn from_url_with(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
        timeouts: Timeouts,
    ) -> Result<Self, Error> {
        let location = Location::parse(url)?;
        let settings = Settings::resolve(env)?;
        Self::new(location, &settings, timeouts)
    }

    pub fn new(location: Location, s: &Settings, timeouts: Timeouts) -> Result<Self, Error> {
        let endpoint: url::Url = s.endpoint.parse().map_err(|e| {
            Error::config(format!("endpoint URL \"{}\" is malformed: {e}", s.endpoint))
        })?;
        // Virtual-hosted names with dots fail TLS host name checks on AWS.
        let style = if s.path_style || location.bucket.contains('.') {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, location.bucket.clone(), s.region.clone())
            .map_err(|e| {
                Error::config(format!(
                    "endpoint \"{}\" with bucket \"{}\": {e}",
                    s.endpoint, location.bucket
                ))
            })?;
        // The proxy comes from the same environment as the rest.
        let proxy = s.proxy.as_deref().map(http::proxy).transpose()?;
        let agent = http::store_agent(proxy, timeouts);
        Ok(Self {
            location,
            bucket,
            source: s.credentials.clone(),
            credentials: Refreshing::new(),
            proxy: s.proxy.clone(),
            agent,
            list_page: 1000,
            bucket_checked: AtomicBool::new(false),
            one_by_one: AtomicBool::new(false),
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Which source supplies the credentials (never a secret).
    pub fn credentials_source(&self) -> String {
        self.source.describe()
    }

    /// The credentials that sign the next request: fetched at the first
    /// request, again a little before they expire.
    fn credentials(&self) -> Result<Credentials, Error> {
        let signing = |k: &Keys| match &k.session_token {
            Some(t) => Credentials::new_with_token(&k.access_key, &k.secret_key, t),
            None => Credentials::new(&k.access_key, &k.secret_key),
        };
        if let Some(keys) = self.source.fixed() {
            return Ok(signing(keys));
        }
        self.credentials.get_for_store(
            || {
                self.source.fetch(self.proxy.as_deref()).map(|e| Expiring {
                    value: signing(&e.value),
                    expires: e.expires,
                })
            },
            "the credentials",
            "object storage",
            &|| self.source.describe(),
        )
    }

    /// Keys per ListObjectsV2 request (1..=1000).
    pub fn set_list_page(&mut self, n: usize) {
        self.list_page = n.clamp(1, 1000);
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.location.prefix)
    }

    fn object_url(&self, name: &str) -> Result<String, Error> {
        if name.is_empty() {
            return Err(Error::config("empty object name".into()));
        }
        Ok(self
            .bucket
            .get_object(Some(&self.credentials()?), &self.key(name))
            .sign(SIGNED_URL_TTL)
            .to_string())
    }

    /// Size and version of an object; `None` if it is not there.
    pub fn head(&self, name: &str) -> Result<Option<ObjectMeta>, Error> {
        if name.is_empty() {
            return Err(Error::config("empty object name".into()));
        }
        let url = self
            .bucket
            .head_object(Some(&self.credentials()?), &self.key(name))
            .sign(SIGNED_URL_TTL);
        let what = || format!("HEAD {}", self.describe(name));
        let resp = self
            .agent
            .head(url.as_str())
            .call()
            .map_err(|e| transport(e, &what()))?;
        match self.check(resp, &what()) {
            Ok(resp) => {
                let h = |n: &str| http::header(&resp, n);
                let size = http::content_length(&resp).ok_or_else(|| {
                    Error::Transient(format!("{}: no Content-Length in the answer", what()))
                })?;
                Ok(Some(ObjectMeta {
                    size,
                    etag: h("etag"),
                    last_modified: h("last-modified"),
                }))
            }
            Err(Error::NotFound) => {
                self.bucket_exists()?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Downloads an object into `dst`, at most `limit` bytes, in bounded
    /// memory; `should_stop` is asked between chunks. Returns the bytes
    /// written. On any error `dst` holds a partial copy the caller throws
    /// away.
    pub fn get_to(
        &self,
        name: &str,
        dst: &mut dyn Write,
        limit: u64,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<u64, Error> {
        let url = self.object_url(name)?;
        let what = || format!("GET {}", self.describe(name));
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport(e, &what()))?;
        let resp = match self.check(resp, &what()) {
            Ok(r) => r,
            Err(Error::NotFound) => {
                self.bucket_exists()?;
                return Err(Error::NotFound);
            }
            Err(e) => return Err(e),
        };
        let length = http::content_length(&resp);
        let checksums = Checksum::from_s3(&|name: &str| http::header(&resp, name));
        let mut body = resp.into_body().into_reader();
        body::copy(
            &mut body,
            dst,
            limit,
            length,
            &checksums,
            should_stop,
            &what(),
        )
    }

    /// Uploads an object (tests and benchmarks; the archive side of a
    /// deployment writes with its own tools).
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::config("empty object name".into()));
        }
        let url = self
            .bucket
            .put_object(Some(&self.credentials()?), &self.key(name))
            .sign(SIGNED_URL_TTL);
        let what = format!("PUT {}", self.describe(name));
        let resp = self
            .agent
            .put(url.as_str())
            .send(data)
            .map_err(|e| transport(e, &what))?;
        self.check(resp, &what).map(drop)
    }

    /// Names (relative to the prefix) and sizes of the objects whose name
    /// starts with `name_prefix`, like the files of a directory: keys in
    /// deeper "subdirectories" are not listed. Follows every page.
    pub fn list(&self, name_prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        let prefix = self.key(name_prefix);
        let what = format!("listing {}{name_prefix}", self.location);
        let page = self.list_page.to_string();
        http::list_all(&self.location.prefix, |token| {
            let mut query = vec![
                ("delimiter", "/"),
                ("list-type", "2"),
                ("max-keys", page.as_str()),
                ("prefix", prefix.as_str()),
            ];
            if let Some(t) = token {
                query.push(("continuation-token", t));
            }
            let url = self.sign_bucket(Method::Get, query)?;
            let resp = self
                .agent
                .get(url.as_str())
                .call()
                .map_err(|e| transport(e, &what))?;
            let resp = self.check_bucket_request(resp, &what)?;
            let text = read_text(resp, LIST_BODY_LIMIT, &what)?;
            parse_list_page(&text)
                .ok_or_else(|| Error::Transient(format!("{what}: unreadable answer")))
        })
    }

    /// The answer to a request on the bucket itself (a listing, a batch
    /// delete): never 404 for a present bucket, so a 404 is a
    /// configuration error.
    fn check_bucket_request(&self, resp: Response, what: &str) -> Result<Response, Error> {
        self.check(resp, what).map_err(|e| match e {
            Error::NotFound => Error::refused(
                Fatal::NoBucket,
                format!("{what}: bucket \"{}\" not found", self.location.bucket),
            ),
            e => e,
        })
    }

    /// Deletes objects in batches of 1000 (DeleteObjects). Keys the server
    /// refuses are reported in [`DeleteReport::failed`]; an error stops at
    /// the batch that failed (earlier batches are gone). A server without
    /// DeleteObjects gets one DeleteObject per key instead, from then on:
    /// Cloud Storage's XML API answered it `NotImplemented` until it gained
    /// multi-object delete (<https://cloud.google.com/storage/docs/xml-api/post-bucket>),
    /// and some S3-compatible servers still do.
    pub fn delete_many(&self, names: &[String]) -> Result<DeleteReport, Error> {
        let mut report = DeleteReport::default();
        for batch in names.chunks(DELETE_BATCH) {
            if self.one_by_one.load(Ordering::Relaxed) {
                self.delete_each(batch, &mut report)?;
                continue;
            }
            let body = delete_body(batch.iter().map(|n| self.key(n)));
            let md5 = base64(&Md5::digest(body.as_bytes()));
            let url = self.sign_bucket(Method::Post, vec![("delete", "1")])?;
            let what = format!("deleting {} objects under {}", batch.len(), self.location);
            let resp = self
                .agent
                .post(url.as_str())
                .header("Content-MD5", &md5)
                .header("Content-Type", "application/xml")
                .send(body.as_bytes())
                .map_err(|e| transport(e, &what))?;
            let status = resp.status().as_u16();
            let resp = match self.check_bucket_request(resp, &what) {
                Ok(resp) => resp,
                // 501, or 400 with the NotImplemented code (Cloud Storage's
                // answer).
                Err(Error::Config {
                    why,
                    refused: Some(Fatal::Rejected),
                }) if status == 501 || why.contains(" NotImplemented") => {
                    tracing::debug!("{why}: deleting one object per request");
                    self.one_by_one.store(true, Ordering::Relaxed);
                    self.delete_each(batch, &mut report)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let text = read_text(resp, LIST_BODY_LIMIT, &what)?;
            let failed: Vec<(String, String)> = parse_delete_errors(&text)
                .ok_or_else(|| Error::Transient(format!("{what}: unreadable answer")))?
                .into_iter()
                .map(|(key, why)| {
                    let name = key
                        .strip_prefix(&self.location.prefix)
                        .unwrap_or(&key)
                        .to_string();
                    (name, why)
                })
                .collect();
            report.deleted += batch.len() - failed.len().min(batch.len());
            report.failed.extend(failed);
        }
        Ok(report)
    }

    /// One DeleteObject per name: a key already gone counts as deleted (as
    /// in DeleteObjects), a refusal is reported for its name, a failure to
    /// reach the store stops the deletion.
    fn delete_each(&self, names: &[String], report: &mut DeleteReport) -> Result<(), Error> {
        for name in names {
            if name.is_empty() {
                continue;
            }
            let url = self
                .bucket
                .delete_object(Some(&self.credentials()?), &self.key(name))
                .sign(SIGNED_URL_TTL);
            let what = format!("DELETE {}", self.describe(name));
            let resp = self
                .agent
                .delete(url.as_str())
                .call()
                .map_err(|e| transport(e, &what))?;
            match self.check(resp, &what) {
                Ok(_) | Err(Error::NotFound) => report.deleted += 1,
                Err(Error::Config { why, .. }) => report.failed.push((name.clone(), why)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Checks that the bucket is there and readable with these credentials
    /// (one ListObjectsV2 of at most one key under the prefix).
    pub fn verify(&self) -> Result<(), Error> {
        let url = self.sign_bucket(
            Method::Get,
            vec![
                ("list-type", "2"),
                ("max-keys", "1"),
                ("prefix", self.location.prefix.as_str()),
            ],
        )?;
        let what = format!("checking bucket \"{}\"", self.location.bucket);
        let resp = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(|e| transport(e, &what))?;
        match self.check(resp, &what) {
            Ok(_) => {
                self.bucket_checked.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(Error::NotFound) => Err(Error::refused(
                Fatal::NoBucket,
                format!(
                    "bucket \"{}\" not found at {}",
                    self.location.bucket,
                    self.bucket.base_url()
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// A pre-signed URL for a request on the bucket itself; `query` is
    /// sorted by name, as the SigV4 canonical request wants it.
    fn sign_bucket(&self, method: Method, query: Vec<(&str, &str)>) -> Result<String, Error> {
        let mut query = query;
        query.sort_unstable();
        let credentials = self.credentials()?;
        Ok(rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            method,
            self.bucket.base_url().clone(),
            credentials.key(),
            credentials.secret(),
            credentials.token(),
            self.bucket.region(),
            SIGNED_URL_TTL.as_secs(),
            query.into_iter(),
            std::iter::empty(),
        )
        .to_string())
    }

    fn bucket_exists(&self) -> Result<(), Error> {
        if self.bucket_checked.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.verify()
    }

    /// Sorts an HTTP answer onto the contract ([`classify`]): Ok for the
    /// answer asked for. Error bodies carry `<Error><Code>…</Code>`.
    fn check(&self, resp: Response, what: &str) -> Result<Response, Error> {
        http::sort(resp, what, None, |body| {
            (xml_field(body, "Code"), xml_field(body, "Message"))
        })
        .map_err(|refusal| {
            refusal.into_error(
                what,
                |said| {
                    self.credentials.invalidate();
                    if self.source.fixed().is_some() {
                        Error::refused(
                            Fatal::Denied,
                            format!("{said}: the session token has expired (renew it)"),
                        )
                    } else {
                        Error::Transient(format!("{said}: fetching new credentials"))
                    }
                },
                |_| String::new(),
            )
        })
    }

    fn describe(&self, name: &str) -> String {
        format!("{}{name}", self.location)
    }
}

impl ObjectStore for Store {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn credentials_source(&self) -> String {
        Store::credentials_source(self)
    }

    fn endpoint(&self) -> String {
        self.bucket.base_url().to_string()
    }

    fn get_to(
        &self,
        name: &str,
        dst: &mut dyn Write,
        limit: u64,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<u64, Error> {
        Store::get_to(self, name, dst, limit, should_stop)
    }

    fn list(&self, name_prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        Store::list(self, name_prefix)
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), Error> {
        Store::put(self, name, data)
    }

    fn delete_many(&self, names: &[String]) -> Result<DeleteReport, Error> {
        Store::delete_many(self, names)
    }

    fn verify(&self) -> Result<(), Error> {
        Store::verify(self)
    }
}

/// Reads a ListObjectsV2 answer, taking only Key and Size of each
/// Contents: servers differ in which other fields they send (s3s-fs
/// leaves out the ETag of files it did not write itself), and a strict
/// parser would turn that into an error.
fn parse_list_page(body: &str) -> Option<ListPage> {
    if !body.contains("<ListBucketResult") {
        return None;
    }
    let mut objects = Vec::new();
    for item in xml::elements(body, "Contents")? {
        let key = xml_field(item, "Key")?;
        let size = xml_field(item, "Size")?.parse().ok()?;
        objects.push((key, size));
    }
    let truncated = xml_field(body, "IsTruncated").is_some_and(|v| v == "true");
    let next = match (truncated, xml_field(body, "NextContinuationToken")) {
        (true, Some(t)) => Some(t),
        // Truncated without a token would loop for ever: refuse.
        (true, None) => return None,
        (false, _) => None,
    };
    Some(ListPage { objects, next })
}

/// The DeleteObjects request body, quiet: the answer lists only failures.
fn delete_body(keys: impl Iterator<Item = String>) -> String {
    let mut body = String::from("<Delete><Quiet>true</Quiet>");
    for k in keys {
        body.push_str("<Object><Key>");
        for c in k.chars() {
            match c {
                '&' => body.push_str("&amp;"),
                '<' => body.push_str("&lt;"),
                '>' => body.push_str("&gt;"),
                '"' => body.push_str("&quot;"),
                '\'' => body.push_str("&apos;"),
                c => body.push(c),
            }
        }
        body.push_str("</Key></Object>");
    }
    body.push_str("</Delete>");
    body
}

/// The refused keys of a DeleteObjects answer, with code and message.
fn parse_delete_errors(body: &str) -> Option<Vec<(String, String)>> {
    if !body.contains("<DeleteResult") {
        return None;
    }
    let mut out = Vec::new();
    for item in xml::elements(body, "Error")? {
        let key = xml_field(item, "Key")?;
        let code = xml_field(item, "Code").unwrap_or_default();
        let message = xml_field(item, "Message").unwrap_or_default();
        out.push((key, format!("{code}: {message}")));
    }
    Some(out)
}

/// Standard base64 with padding (for Content-MD5).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::store::env_of;

    #[test]
    fn urls() {
        let l = Location::parse("s3://my-bucket").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("my-bucket", ""));
        let l = Location::parse("s3://my-bucket/").unwrap();
        assert_eq!(l.prefix, "");
        let l = Location::parse("s3://b.example/wal//main/").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("b.example", "wal/main/")
        );
        let l = Location::parse("s3://abc//x").unwrap();
        assert_eq!(l.prefix, "x/");
        for bad in [
            "s3:/x",
            "s3:x",
            "s3://",
            "s3:///prefix",
            "S3://bucket",
            "http://bucket",
            "s3://ab",
            "s3://Bucket",
            "s3://bu cket",
            "s3://-bucket",
            "s3://bucket-",
            "s3://bucket/p?x=1",
            "s3://bucket/p#f",
            "s3://bucket/p\nq",
            "s3://bu:cket",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::Config { why: _, .. })),
                "{bad} accepted"
            );
        }
        assert!(
            crate::archive::is_object_storage("s3://x")
                && !crate::archive::is_object_storage("/var/lib/archive")
        );
    }

    /// The fixed keys the settings chose (access key, secret, token).
    fn keys(s: &Settings) -> (&str, &str, Option<&str>) {
        let k = s.credentials.fixed().expect("fixed keys");
        (
            k.access_key.as_str(),
            k.secret_key.as_str(),
            k.session_token.as_deref(),
        )
    }

    #[test]
    fn settings_from_environment() {
        let s = Settings::resolve(&env_of(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_SESSION_TOKEN", "TOK"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("HOME", "/nonexistent"),
        ]))
        .unwrap();
        assert_eq!(s.endpoint, "https://s3.eu-west-3.amazonaws.com");
        assert!(!s.path_style);
        assert_eq!(keys(&s).2, Some("TOK"));

        let s = Settings::resolve(&env_of(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ]))
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.region.as_str()),
            ("http://127.0.0.1:9000", "us-east-1")
        );
        assert!(s.path_style);

        let no_region = Settings::resolve(&env_of(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
        ]));
        assert!(matches!(no_region, Err(Error::Config { why: m, .. }) if m.contains("region")));
        let half = Settings::resolve(&env_of(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_REGION", "x")]));
        assert!(matches!(half, Err(Error::Config { why: _, .. })));
        let none = Settings::resolve(&env_of(&[
            ("AWS_REGION", "x"),
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]));
        assert!(matches!(none, Err(Error::Config { why: m, .. }) if m.contains("no credentials")));
    }

    #[test]
    fn settings_from_profile_files() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = us-west-2\n\n[profile archive]\nregion=eu-central-1\n\
             endpoint_url = http://minio:9000\ns3 =\n  addressing_style = path\n\
             [profile cfgonly]\nregion = x\naws_access_key_id = CK\naws_secret_access_key = CS\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("credentials"),
            "# comment\n[default]\naws_access_key_id = DK\naws_secret_access_key = DS\n\
             [archive]\naws_access_key_id = AK\naws_secret_access_key = AS\n\
             aws_session_token = AT\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let s = Settings::resolve(&env_of(&[("HOME", home)])).unwrap();
        assert_eq!((keys(&s).0, s.region.as_str()), ("DK", "us-west-2"));
        let s = Settings::resolve(&env_of(&[("HOME", home), ("AWS_PROFILE", "archive")])).unwrap();
        assert_eq!(keys(&s), ("AK", "AS", Some("AT")));
        assert_eq!(
            (s.endpoint.as_str(), s.region.as_str()),
            ("http://minio:9000", "eu-central-1")
        );
        // The environment wins over the profile, as in the AWS CLI.
        let s = Settings::resolve(&env_of(&[
            ("HOME", home),
            ("AWS_PROFILE", "archive"),
            ("AWS_ACCESS_KEY_ID", "EK"),
            ("AWS_SECRET_ACCESS_KEY", "ES"),
            ("AWS_REGION", "ap-south-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ]))
        .unwrap();
        assert_eq!(keys(&s), ("EK", "ES", None));
        assert_eq!(
            (s.endpoint.as_str(), s.region.as_str()),
            ("http://127.0.0.1:1", "ap-south-1")
        );
        let s = Settings::resolve(&env_of(&[("HOME", home), ("AWS_PROFILE", "cfgonly")])).unwrap();
        assert_eq!(keys(&s).0, "CK");
        let missing = Settings::resolve(&env_of(&[("HOME", home), ("AWS_PROFILE", "nope")]));
        assert!(matches!(missing, Err(Error::Config { why: m, .. }) if m.contains("nope")));
        // Files named by the variables instead of HOME.
        let s = Settings::resolve(&env_of(&[
            ("AWS_CONFIG_FILE", aws.join("config").to_str().unwrap()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                aws.join("credentials").to_str().unwrap(),
            ),
        ]))
        .unwrap();
        assert_eq!(keys(&s).0, "DK");
    }

    /// The waiting loop may run a request on a helper thread to stay
    /// responsive to the trigger while a request is under way.
    #[test]
    fn store_crosses_threads() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
        check::<Error>();
    }

    #[test]
    fn delete_bodies_and_answers() {
        // RFC 4648 test vectors.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(
            delete_body(["wal/a&b".to_string(), "c".to_string()].into_iter()),
            "<Delete><Quiet>true</Quiet><Object><Key>wal/a&amp;b</Key></Object>\
             <Object><Key>c</Key></Object></Delete>"
        );
        let answer = "<?xml version=\"1.0\"?><DeleteResult xmlns=\"x\">\
            <Error><Key>wal/x</Key><Code>AccessDenied</Code><Message>no</Message></Error>\
            </DeleteResult>";
        assert_eq!(
            parse_delete_errors(answer).unwrap(),
            vec![("wal/x".to_string(), "AccessDenied: no".to_string())]
        );
        assert_eq!(parse_delete_errors("<DeleteResult/>").unwrap(), vec![]);
        assert!(parse_delete_errors("<Error><Code>x</Code></Error>").is_none());
    }

    #[test]
    fn list_pages() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
            <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
            <Name>b</Name><Prefix>wal/</Prefix><KeyCount>2</KeyCount>\
            <IsTruncated>true</IsTruncated><NextContinuationToken>t/1=</NextContinuationToken>\
            <Contents><Key>wal/a&amp;b</Key><LastModified>x</LastModified><Size>16</Size></Contents>\
            <Contents><Key>wal/c</Key><ETag>\"e\"</ETag><Size>0</Size></Contents>\
            <CommonPrefixes><Prefix>wal/sub/</Prefix></CommonPrefixes></ListBucketResult>";
        let p = parse_list_page(body).unwrap();
        assert_eq!(p.objects, vec![("wal/a&b".into(), 16), ("wal/c".into(), 0)]);
        assert_eq!(p.next.as_deref(), Some("t/1="));
        let last = body.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse_list_page(&last).unwrap().next, None);
        let stuck = body.replace("<NextContinuationToken>t/1=</NextContinuationToken>", "");
        assert!(parse_list_page(&stuck).is_none());
        assert!(parse_list_page("<Error><Code>x</Code></Error>").is_none());
    }
}
