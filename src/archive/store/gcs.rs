//! The Google Cloud Storage store behind the [`super::ObjectStore`]
//! boundary: `gs://BUCKET[/PREFIX]`, through the JSON API
//! (<https://cloud.google.com/storage/docs/json_api/v1>) and a small
//! blocking client.
//!
//! Like the S3 store: nothing runs before [`Store::from_url_with`], no
//! request is made until the first look, every answer is read by
//! [`super::classify::classify`], the client never retries (the caller's
//! waiting loop does, between looks at the trigger and the signals) except
//! once after a 401, with a fresh access token.
//!
//! Credentials, in the order of Google's Application Default Credentials
//! (<https://cloud.google.com/docs/authentication/application-default-credentials>):
//! 1. `STORAGE_EMULATOR_HOST` (`host:port` or a URL): an emulator over
//!    plain http, no credentials unless the next variable is also set;
//! 2. `GOOGLE_APPLICATION_CREDENTIALS`: a service account key file
//!    (exchanged for access tokens with a signed JWT) or gcloud's user
//!    credentials (`authorized_user`, a refresh token);
//! 3. gcloud's `application_default_credentials.json` in
//!    `$CLOUDSDK_CONFIG`, else `~/.config/gcloud`;
//! 4. the metadata server of a Compute Engine VM, GKE node or Cloud Run
//!    service (`GCE_METADATA_HOST`, default `metadata.google.internal`),
//!    unless `NO_GCE_CHECK=true`.
//!
//! Access tokens last an hour: they are cached and fetched again a little
//! before they expire ([`crate::archive::store::credentials::Refreshing`]). Tokens and keys
//! never reach a message.
//!
//! Permissions: `storage.objects.get` and `storage.objects.list` (the role
//! Storage Object Viewer), and `storage.objects.delete` for `%r` cleanup
//! (Storage Object User). The scope asked for is `devstorage.read_write`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::body::{self, Checksum};
use super::classify::Fatal;
pub use super::http::Timeouts;
use super::http::{self, ListPage, Response, read_text, transport};
use super::location;
use super::{DeleteReport, Error, ObjectStore};
use crate::archive::store::credentials::{Expiring, Refreshing};
use crate::archive::store::json::{self, Value};

/// The JSON API's address.
const API: &str = "https://storage.googleapis.com";
/// Read objects, list and delete them
/// (<https://cloud.google.com/storage/docs/oauth-scopes>).
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Where Google's key files send token requests when they name none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's documented name
/// (<https://cloud.google.com/compute/docs/metadata/querying-metadata>).
const METADATA_DEFAULT: &str = "metadata.google.internal";
/// A JWT grant may ask for at most an hour
/// (<https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests>).
const JWT_LIFETIME: u64 = 3600;
/// Token answers are small JSON documents; never read more than this of one.
const TOKEN_BODY_LIMIT: u64 = 64 * 1024;
/// A listing page of 1000 names of at most 1 KiB each, with their sizes.
const LIST_BODY_LIMIT: u64 = 4 * 1024 * 1024;
/// `maxResults` of objects.list: at most 1000 per page.
const LIST_PAGE: usize = 1000;

/// Where in Cloud Storage the archive is: `gs://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// No leading slash, no empty segments, ends with `/` unless empty.
    pub prefix: String,
}

impl Location {
    pub fn parse(url: &str) -> Result<Self, Error> {
        let (bucket, prefix) = location::split(url, "gs", "bucket")?;
        // Bucket naming rules
        // (https://cloud.google.com/storage/docs/buckets#naming): 3 to 63
        // characters, or up to 222 with dots and each part at most 63.
        let parts_ok = bucket.split('.').all(|p| !p.is_empty() && p.len() <= 63);
        if bucket.len() < 3 || bucket.len() > 222 || !parts_ok {
            return Err(location::malformed(
                url,
                "a bucket name has 3 to 63 characters (222 with dots, 63 between them)",
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
        write!(f, "gs://{}/{}", self.bucket, self.prefix)
    }
}

pub use crate::archive::store::credentials::Secret;

/// Where access tokens come from.
#[derive(Clone)]
pub enum Source {
    /// An emulator without credentials: no Authorization header.
    Anonymous,
    /// A service account key: a signed JWT exchanged at `token_uri`.
    ServiceAccount {
        from: String,
        client_email: String,
        key_id: Option<String>,
        key: Arc<ring::signature::RsaKeyPair>,
        token_uri: String,
    },
    /// gcloud's user credentials: a refresh token exchanged at `token_uri`.
    AuthorizedUser {
        from: String,
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
        token_uri: String,
    },
    /// The metadata server. `tried` says why the sources before it did not
    /// apply, for the error when it does not answer either.
    Metadata { host: String, tried: Vec<String> },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Source {
    /// For messages: which source, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Source::Anonymous => "none (STORAGE_EMULATOR_HOST, an emulator)".into(),
            Source::ServiceAccount {
                from, client_email, ..
            } => format!("service account {client_email} ({from})"),
            Source::AuthorizedUser { from, .. } => format!("user credentials ({from})"),
            Source::Metadata { host, .. } => format!("the metadata server at {host}"),
        }
    }

    /// A fresh access token.
    fn fetch(&self, agent: &ureq::Agent) -> Result<Expiring<Secret>, Error> {
        match self {
            Source::Anonymous => Ok(Expiring {
                value: Secret(String::new()),
                expires: None,
            }),
            Source::ServiceAccount {
                from,
                client_email,
                key_id,
                key,
                token_uri,
            } => {
                let now = unix_now();
                let assertion = jwt(key, client_email, key_id.as_deref(), token_uri, SCOPE, now)?;
                let form = format!(
                    "grant_type={}&assertion={}",
                    pct("urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    pct(&assertion)
                );
                let what = format!("token request to {token_uri} for {}", self.describe());
                token_answer(post_form(agent, token_uri, &form), &what, from)
            }
            Source::AuthorizedUser {
                from,
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => {
                let form = format!(
                    "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
                    pct(client_id),
                    pct(&client_secret.0),
                    pct(&refresh_token.0)
                );
                let what = format!("token request to {token_uri} for {}", self.describe());
                token_answer(post_form(agent, token_uri, &form), &what, from)
            }
            Source::Metadata { host, tried } => metadata_token(host, tried),
        }
    }
}

/// The settings resolved from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://storage.googleapis.com`, or the emulator's address.
    pub base: String,
    pub source: Source,
    /// The proxies to the store and to the token endpoint, if any, by the
    /// stores' one rule ([`http::proxy_for`]) from the same environment.
    pub proxy: Option<String>,
    pub token_proxy: Option<String>,
}

impl Settings {
    /// Resolves the settings from the environment given by `env` (so that
    /// tests and `--check` need not touch the process environment). Only
    /// files are read; no request is made.
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let emulator = var("STORAGE_EMULATOR_HOST").map(|h| emulator_base(h.trim()));
        let truthy = |k: &str| var(k).is_some_and(|v| matches!(v.trim(), "1" | "true" | "True"));
        let source = if let Some(path) = var("GOOGLE_APPLICATION_CREDENTIALS") {
            // Set but unusable is an error, never a fall-through to the
            // next source: the operator named this one.
            from_file(
                Path::new(&path),
                &format!("GOOGLE_APPLICATION_CREDENTIALS={path}"),
            )?
        } else if emulator.is_some() {
            Source::Anonymous
        } else {
            let mut tried = vec!["GOOGLE_APPLICATION_CREDENTIALS: not set".to_string()];
            let dir = var("CLOUDSDK_CONFIG")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")));
            let file = dir.map(|d| d.join("application_default_credentials.json"));
            match file {
                Some(f) if f.exists() => from_file(&f, &format!("gcloud's {}", f.display()))?,
                Some(f) => {
                    tried.push(format!("{}: not found", f.display()));
                    metadata_source(&var, truthy("NO_GCE_CHECK"), tried)?
                }
                None => {
                    tried.push(
                        "gcloud's application_default_credentials.json: neither \
                         CLOUDSDK_CONFIG nor HOME is set"
                            .into(),
                    );
                    metadata_source(&var, truthy("NO_GCE_CHECK"), tried)?
                }
            }
        };
        let base = emulator.unwrap_or_else(|| API.to_string());
        let token_proxy = match &source {
            Source::ServiceAccount { token_uri, .. } | Source::AuthorizedUser { token_uri, .. } => {
                http::proxy_for(token_uri, &var)
            }
            _ => None,
        };
        Ok(Self {
            proxy: http::proxy_for(&base, &var),
            token_proxy,
            base,
            source,
        })
    }
}

fn metadata_source(
    var: &dyn Fn(&str) -> Option<String>,
    disabled: bool,
    mut tried: Vec<String>,
) -> Result<Source, Error> {
    if disabled {
        tried.push("the metadata server: NO_GCE_CHECK=true".into());
        return Err(no_credentials(&tried));
    }
    let host = var("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_DEFAULT.into());
    Ok(Source::Metadata { host, tried })
}

fn no_credentials(tried: &[String]) -> Error {
    Error::config(format!(
        "no Google Cloud credentials found; tried, in order: {}",
        tried.join("; ")
    ))
}

/// `STORAGE_EMULATOR_HOST` as the client libraries read it: `host:port`
/// (plain http) or a URL.
fn emulator_base(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

/// A credentials file: a service account key or gcloud's user credentials
/// (<https://cloud.google.com/iam/docs/keys-create-delete>). Messages name
/// the file and the field, never a value.
fn from_file(path: &Path, from: &str) -> Result<Source, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("{from}: cannot read the credentials file: {e}")))?;
    let doc = json::parse(&text)
        .map_err(|e| Error::config(format!("{from}: not a credentials file ({e})")))?;
    let field = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let need = |k: &str| {
        field(k).ok_or_else(|| Error::config(format!("{from}: the credentials file has no {k}")))
    };
    let token_uri = field("token_uri").unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
    match field("type").as_deref() {
        Some("service_account") => {
            let client_email = need("client_email")?;
            let pem = need("private_key")?;
            let key = rsa_key(&pem).map_err(|why| {
                Error::config(format!("{from}: the private_key cannot be used: {why}"))
            })?;
            Ok(Source::ServiceAccount {
                from: from.to_string(),
                client_email,
                key_id: field("private_key_id"),
                key: Arc::new(key),
                token_uri,
            })
        }
        Some("authorized_user") => Ok(Source::AuthorizedUser {
            from: from.to_string(),
            client_id: need("client_id")?,
            client_secret: Secret(need("client_secret")?),
            refresh_token: Secret(need("refresh_token")?),
            token_uri,
        }),
        Some(other) => Err(Error::config(format!(
            "{from}: credentials of type \"{other}\" are not supported (service_account and \
             authorized_user are)"
        ))),
        None => Err(Error::config(format!(
            "{from}: the credentials file has no type"
        ))),
    }
}

/// An RSA private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what Google
/// issues) or PKCS#1 (`BEGIN RSA PRIVATE KEY`). The reason never quotes
/// the key.
fn rsa_key(pem: &str) -> Result<ring::signature::RsaKeyPair, String> {
    use ring::signature::RsaKeyPair;
    let (label, der) = pem_body(pem).ok_or("not a PEM private key")?;
    match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        _ => return Err(format!("a PEM \"{label}\", not a private key")),
    }
    .map_err(|e| format!("not an RSA key ring accepts ({e})"))
}

/// The label and the decoded bytes of the first PEM block.
fn pem_body(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let der = base64_decode(&body[..end])?;
    Some((label, der))
}

/// A signed JWT for the OAuth 2.0 JWT bearer grant (RFC 7523), as
/// Google's token endpoint wants it
/// (<https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests>).
fn jwt(
    key: &ring::signature::RsaKeyPair,
    client_email: &str,
    key_id: Option<&str>,
    audience: &str,
    scope: &str,
    now: u64,
) -> Result<String, Error> {
    let header = match key_id {
        Some(kid) => format!(
            "{{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":{}}}",
            json_string(kid)
        ),
        None => "{\"alg\":\"RS256\",\"typ\":\"JWT\"}".to_string(),
    };
    let claims = format!(
        "{{\"iss\":{},\"scope\":{},\"aud\":{},\"iat\":{now},\"exp\":{}}}",
        json_string(client_email),
        json_string(scope),
        json_string(audience),
        now + JWT_LIFETIME
    );
    let signing_input = format!(
        "{}.{}",
        base64url(header.as_bytes()),
        base64url(claims.as_bytes())
    );
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| Error::config("signing the token request failed".into()))?;
    Ok(format!("{signing_input}.{}", base64url(&signature)))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn post_form(agent: &ureq::Agent, url: &str, form: &str) -> Result<Response, ureq::Error> {
    agent
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form.as_bytes())
}

/// A token endpoint's answer onto the contract: a token, a refusal (the
/// key or the refresh token is wrong: configuration, exit 250), or
/// something to wait out. Only the endpoint's `error` and
/// `error_description` are quoted, never the rest of the answer.
fn token_answer(
    result: Result<Response, ureq::Error>,
    what: &str,
    from: &str,
) -> Result<Expiring<Secret>, Error> {
    let resp = result.map_err(|e| transport(e, what))?;
    let status = resp.status().as_u16();
    let body = read_text(resp, TOKEN_BODY_LIMIT, what)?;
    let doc = json::parse(&body).ok();
    if status != 200 {
        let field = |k: &str| {
            doc.as_ref()
                .and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(200).collect::<String>())
        };
        let detail = match (field("error"), field("error_description")) {
            (Some(e), Some(d)) => format!("{status} {e}: {d}"),
            (Some(e), None) => format!("{status} {e}"),
            _ => format!("HTTP {status}"),
        };
        return Err(match status {
            408 | 429 | 500..=599 => Error::Transient(format!("{what}: {detail}")),
            400 | 401 | 403 => Error::refused(
                Fatal::Denied,
                format!(
                    "{what}: refused, {detail}: check the credentials of {from} (and the \
                     clock: Google refuses a JWT whose times are off)"
                ),
            ),
            _ => Error::config(format!("{what}: {detail}")),
        });
    }
    let doc = doc.ok_or_else(|| Error::Transient(format!("{what}: the answer is not JSON")))?;
    let token = doc
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::config(format!("{what}: the answer has no access_token")))?;
    // Google's tokens last an hour; an answer without a lifetime is taken
    // as a short one, so that it is not kept for ever.
    let lifetime = doc.get("expires_in").and_then(Value::as_u64).unwrap_or(300);
    Ok(Expiring {
        value: Secret(token.to_string()),
        expires: Some(SystemTime::now() + Duration::from_secs(lifetime)),
    })
}

/// A token from the metadata server
/// (<https://cloud.google.com/compute/docs/access/authenticate-workloads#applications>).
/// Short limits and no retries: on a machine without one (a laptop, bare
/// metal, another cloud) the first call must learn so quickly.
fn metadata_token(host: &str, tried: &[String]) -> Result<Expiring<Secret>, Error> {
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let what = format!("the metadata server at {host}");
    let agent = http::endpoint_agent(Duration::from_secs(1), Duration::from_secs(2), None);
    match agent.get(&url).header("Metadata-Flavor", "Google").call() {
        Err(e) if crate::archive::store::credentials::nothing_listens(&e) => {
            let mut tried = tried.to_vec();
            tried.push(format!(
                "the metadata server: nothing answers at {host} ({e})"
            ));
            Err(no_credentials(&tried))
        }
        Ok(resp) if resp.status().as_u16() == 404 => Err(Error::config(format!(
            "{what}: this machine has no service account attached (attach one, or set \
             GOOGLE_APPLICATION_CREDENTIALS)"
        ))),
        // Something answers (or is slow to): a metadata server under load
        // is waited out like the store.
        result => token_answer(result, &what, &what),
    }
}

/// An archive in Cloud Storage. Names given to its methods are relative
/// to the location's prefix, like file names in a directory.
pub struct Store {
    location: Location,
    base: String,
    source: Source,
    token: Refreshing<Secret>,
    agent: ureq::Agent,
    /// For the token endpoint (never the store's proxy rule for loopback).
    token_agent: ureq::Agent,
    /// Names per listing page (1000 unless tests make it small).
    list_page: usize,
    /// A missing object and a missing bucket are both a 404: the first
    /// 404 checks the bucket once.
    bucket_checked: AtomicBool,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .field("endpoint", &self.base)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn from_url_with(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
        timeouts: Timeouts,
    ) -> Result<Self, Error> {
        let location = Location::parse(url)?;
        let settings = Settings::resolve(env)?;
        Self::new(location, settings, timeouts)
    }

    pub fn new(location: Location, s: Settings, timeouts: Timeouts) -> Result<Self, Error> {
        // The proxies come from the same environment as the rest.
        let agent = |proxy: &Option<String>| -> Result<ureq::Agent, Error> {
            let proxy = proxy.as_deref().map(http::proxy).transpose()?;
            Ok(http::store_agent(proxy, timeouts))
        };
        Ok(Self {
            location,
            agent: agent(&s.proxy)?,
            token_agent: agent(&s.token_proxy)?,
            base: s.base,
            source: s.source,
            token: Refreshing::new(),
            list_page: LIST_PAGE,
            bucket_checked: AtomicBool::new(false),
        })
    }

    /// Names per listing request (1..=1000).
    pub fn set_list_page(&mut self, n: usize) {
        self.list_page = n.clamp(1, LIST_PAGE);
    }

    /// The access token for the next request; `None` for an emulator
    /// without credentials.
    fn token(&self) -> Result<Option<Secret>, Error> {
        if matches!(self.source, Source::Anonymous) {
            return Ok(None);
        }
        self.token
            .get_for_store(
                || self.source.fetch(&self.token_agent),
                "the access token",
                "Cloud Storage",
                &|| self.source.describe(),
            )
            .map(Some)
    }

    /// Sends a request with the current token. A 401 means the token is no
    /// longer good (revoked, or expired early by a clock off): fetched
    /// again once and the request repeated, as Google's client libraries do
    /// (<https://cloud.google.com/storage/docs/json_api/v1/status-codes#401_Unauthorized>);
    /// a second 401 is the answer.
    fn send(
        &self,
        what: &str,
        request: impl Fn(&ureq::Agent, Option<&str>) -> Result<Response, ureq::Error>,
    ) -> Result<Response, Error> {
        let mut refreshed = false;
        loop {
            let token = self.token()?;
            let bearer = token.as_ref().map(|t| format!("Bearer {}", t.0));
            let resp = request(&self.agent, bearer.as_deref()).map_err(|e| transport(e, what))?;
            if resp.status().as_u16() == 401 && token.is_some() && !refreshed {
                tracing::debug!("{what}: 401, fetching a new access token");
                self.token.invalidate();
                refreshed = true;
                continue;
            }
            return Ok(resp);
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.location.prefix)
    }

    fn bucket_url(&self) -> String {
        format!("{}/storage/v1/b/{}", self.base, pct(&self.location.bucket))
    }

    fn object_url(&self, name: &str) -> Result<String, Error> {
        if name.is_empty() {
            return Err(Error::config("empty object name".into()));
        }
        // Object names are one path segment, percent-encoded
        // (https://cloud.google.com/storage/docs/request-endpoints#encoding).
        Ok(format!("{}/o/{}", self.bucket_url(), pct(&self.key(name))))
    }

    fn describe(&self, name: &str) -> String {
        format!("{}{name}", self.location)
    }

    pub fn get_to(
        &self,
        name: &str,
        dst: &mut dyn Write,
        limit: u64,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<u64, Error> {
        let url = format!("{}?alt=media", self.object_url(name)?);
        let what = format!("GET {}", self.describe(name));
        let resp = self.send(&what, |agent, bearer| {
            with_token(agent.get(&url), bearer).call()
        })?;
        let resp = match self.check(resp, &what) {
            Ok(r) => r,
            Err(Error::NotFound) => {
                self.bucket_exists()?;
                return Err(Error::NotFound);
            }
            Err(e) => return Err(e),
        };
        let length = http::content_length(&resp);
        // The object's CRC32C and MD5, checked on the whole body
        // (https://cloud.google.com/storage/docs/hashes-etags).
        let hashes: Vec<String> = resp
            .headers()
            .get_all("x-goog-hash")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let checksums = if body::transcoded(&|name: &str| http::header(&resp, name)) {
            tracing::debug!(
                "{what}: stored gzip-encoded and served decompressed: its hashes are of the \
                 stored bytes, not checked"
            );
            Vec::new()
        } else {
            Checksum::from_goog_hash(&hashes)
        };
        let mut body = resp.into_body().into_reader();
        body::copy(
            &mut body,
            dst,
            limit,
            length,
            &checksums,
            should_stop,
            &what,
        )
    }

    /// Names (relative to the prefix) and sizes of the objects whose name
    /// starts with `name_prefix`, like the files of a directory (with `/`
    /// as delimiter, deeper names are not listed). Follows every page.
    pub fn list(&self, name_prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        let what = format!("listing {}{name_prefix}", self.location);
        let prefix = self.key(name_prefix);
        http::list_all(&self.location.prefix, |token| {
            self.list_page(&prefix, self.list_page, token, &what)
        })
    }

    /// One page of objects.list
    /// (<https://cloud.google.com/storage/docs/json_api/v1/objects/list>).
    fn list_page(
        &self,
        prefix: &str,
        max: usize,
        page_token: Option<&str>,
        what: &str,
    ) -> Result<ListPage, Error> {
        let mut url = format!(
            "{}/o?prefix={}&delimiter=%2F&maxResults={max}&fields={}",
            self.bucket_url(),
            pct(prefix),
            pct("nextPageToken,items(name,size)")
        );
        if let Some(t) = page_token {
            url.push_str(&format!("&pageToken={}", pct(t)));
        }
        let resp = self.send(what, |agent, bearer| {
            with_token(agent.get(&url), bearer).call()
        })?;
        let resp = self.check_bucket_request(resp, what)?;
        let text = read_text(resp, LIST_BODY_LIMIT, what)?;
        parse_list_page(&text).ok_or_else(|| Error::Transient(format!("{what}: unreadable answer")))
    }

    /// The answer to a request on the bucket itself (a listing): never
    /// 404 for a present bucket.
    fn check_bucket_request(&self, resp: Response, what: &str) -> Result<Response, Error> {
        self.check(resp, what).map_err(|e| match e {
            Error::NotFound => Error::refused(
                Fatal::NoBucket,
                format!(
                    "{what}: bucket \"{}\" not found at {}",
                    self.location.bucket, self.base
                ),
            ),
            e => e,
        })
    }

    /// Uploads a small object in one request (a simple upload,
    /// <https://cloud.google.com/storage/docs/uploading-objects#uploading-an-object>).
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::config("empty object name".into()));
        }
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.base,
            pct(&self.location.bucket),
            pct(&self.key(name))
        );
        let what = format!("upload {}", self.describe(name));
        let resp = self.send(&what, |agent, bearer| {
            let req = agent
                .post(&url)
                .header("Content-Type", "application/octet-stream");
            with_token(req, bearer).send(data)
        })?;
        self.check(resp, &what).map(drop)
    }

    /// Deletes objects one request each: the JSON API has no multi-object
    /// delete (only the batch endpoint, which bundles separate requests).
    /// An object already gone counts as deleted; a refusal is reported for
    /// its name; a failure to reach the store stops the deletion.
    pub fn delete_many(&self, names: &[String]) -> Result<DeleteReport, Error> {
        let mut report = DeleteReport::default();
        for name in names {
            let url = self.object_url(name)?;
            let what = format!("DELETE {}", self.describe(name));
            let resp = self.send(&what, |agent, bearer| {
                with_token(agent.delete(&url), bearer).call()
            })?;
            match self.check(resp, &what) {
                Ok(_) | Err(Error::NotFound) => report.deleted += 1,
                Err(Error::Config { why, .. }) => report.failed.push((name.clone(), why)),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Checks that the bucket is there and readable with these credentials:
    /// one listing of at most one name under the prefix. A listing, not a
    /// GET of the bucket: that needs storage.buckets.get, which the object
    /// roles (Storage Object Viewer) do not grant, and a 403 would stop
    /// recovery.
    pub fn verify(&self) -> Result<(), Error> {
        let what = format!("checking bucket \"{}\"", self.location.bucket);
        match self.list_page(&self.location.prefix, 1, None, &what) {
            Ok(_) => {
                self.bucket_checked.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn bucket_exists(&self) -> Result<(), Error> {
        if self.bucket_checked.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.verify()
    }

    /// Sorts an HTTP answer onto the contract ([`classify`]); the error
    /// reason of a JSON error body is the store's code.
    fn check(&self, resp: Response, what: &str) -> Result<Response, Error> {
        http::sort(resp, what, None, parse_error).map_err(|refusal| {
            refusal.into_error(
                what,
                // No GCS answer is sorted so (a 401 is retried once in
                // `send` with a new token); should one be, fetch a new
                // token next time.
                |said| {
                    self.token.invalidate();
                    Error::Transient(format!("{said}: fetching a new access token"))
                },
                |_| String::new(),
            )
        })
    }
}

impl ObjectStore for Store {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn credentials_source(&self) -> String {
        self.source.describe()
    }

    fn endpoint(&self) -> String {
        self.base.clone()
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

/// The reason and message of a JSON API error body
/// (<https://cloud.google.com/storage/docs/json_api/v1/status-codes>):
/// `{"error":{"code":404,"message":"...","errors":[{"reason":"notFound"}]}}`.
fn parse_error(body: &str) -> (Option<String>, Option<String>) {
    let Ok(doc) = json::parse(body) else {
        return (None, None);
    };
    let Some(error) = doc.get("error") else {
        return (None, None);
    };
    let reason = error
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(|m| m.chars().take(300).collect());
    (reason, message)
}

/// An objects.list answer: `items` (name and size, the size a string of
/// digits) and `nextPageToken` while there are more.
fn parse_list_page(body: &str) -> Option<ListPage> {
    let doc = json::parse(body).ok()?;
    if !matches!(doc, Value::Object(_)) {
        return None;
    }
    let mut objects = Vec::new();
    if let Some(items) = doc.get("items") {
        for item in items.as_array()? {
            let name = item.get("name")?.as_str()?.to_string();
            let size = item.get("size")?.as_u64()?;
            objects.push((name, size));
        }
    }
    let next = match doc.get("nextPageToken") {
        Some(t) => Some(t.as_str().filter(|t| !t.is_empty())?.to_string()),
        None => None,
    };
    Some(ListPage { objects, next })
}

/// The request with the access token, if there is one (an emulator
/// without credentials has none).
fn with_token<B>(req: ureq::RequestBuilder<B>, bearer: Option<&str>) -> ureq::RequestBuilder<B> {
    match bearer {
        Some(b) => req.header("Authorization", b),
        None => req,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters: safe
/// in a path segment, a query value and a form value alike.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64url without padding (RFC 7515's encoding of JWT parts).
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let c = B64[((n >> (18 - 6 * i)) & 63) as usize];
            out.push(match c {
                b'+' => '-',
                b'/' => '_',
                c => c as char,
            });
        }
    }
    out
}

/// Standard base64 (PEM bodies): whitespace ignored, padding optional.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::store::env_of;

    #[test]
    fn urls() {
        let l = Location::parse("gs://my-bucket").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("my-bucket", ""));
        let l = Location::parse("gs://b_1/p/").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("b_1", "p/"));
        let l = Location::parse("gs://wal.example.com//a//b").unwrap();
        assert_eq!(l.prefix, "a/b/");
        assert_eq!(l.to_string(), "gs://wal.example.com/a/b/");
        let long_dotted = format!("{}.{}", "a".repeat(63), "b".repeat(63));
        assert!(Location::parse(&format!("gs://{long_dotted}")).is_ok());
        for bad in [
            "gs:/x",
            "gs://",
            "gs:///p",
            "GS://bucket",
            "s3://bucket",
            "gs://ab",
            "gs://Bucket",
            "gs://bu cket",
            "gs://-bucket",
            "gs://bucket_",
            "gs://bu:cket",
            &format!("gs://{}", "a".repeat(64)),
            &format!("gs://{}.b", "a".repeat(64)),
            "gs://a..b",
            "gs://bucket/p?x=1",
            "gs://bucket/p#f",
            "gs://bucket/p\nq",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::Config { .. })),
                "{bad} accepted"
            );
        }
        assert!(super::super::is_url("gs://b"));
        assert!(super::super::validate_url("gs://bkt/p").is_ok());
        assert!(super::super::validate_url("gs://B").is_err());
    }

    /// A 2048-bit test key, made with `openssl genpkey -algorithm RSA`
    /// for these tests only.
    fn test_key() -> String {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl is needed by this test");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    fn service_account(dir: &Path, key: &str) -> PathBuf {
        let path = dir.join("sa.json");
        let doc = format!(
            "{{\"type\":\"service_account\",\"project_id\":\"p\",\"private_key_id\":\"kid1\",\
             \"private_key\":{},\"client_email\":\"wal@p.iam.gserviceaccount.com\",\
             \"token_uri\":\"http://127.0.0.1:9/token\"}}",
            json_string(key)
        );
        std::fs::write(&path, doc).unwrap();
        path
    }

    fn kind(s: &Settings) -> &'static str {
        match s.source {
            Source::Anonymous => "anonymous",
            Source::ServiceAccount { .. } => "service account",
            Source::AuthorizedUser { .. } => "user",
            Source::Metadata { .. } => "metadata",
        }
    }

    #[test]
    fn credential_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let key = test_key();
        let sa = service_account(dir.path(), &key);
        let sa = sa.to_str().unwrap();
        let gcloud = dir.path().join("gcloud");
        std::fs::create_dir(&gcloud).unwrap();
        std::fs::write(
            gcloud.join("application_default_credentials.json"),
            r#"{"type":"authorized_user","client_id":"c","client_secret":"cs","refresh_token":"rt"}"#,
        )
        .unwrap();
        let gcloud = gcloud.to_str().unwrap();
        let home = dir.path().to_str().unwrap();

        // The emulator alone: its address, no credentials.
        let s = Settings::resolve(&env_of(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")])).unwrap();
        assert_eq!(
            (s.base.as_str(), kind(&s)),
            ("http://127.0.0.1:4443", "anonymous")
        );
        let s = Settings::resolve(&env_of(&[("STORAGE_EMULATOR_HOST", "http://localhost:9/")]))
            .unwrap();
        assert_eq!(s.base, "http://localhost:9");
        // The emulator with a key: the key's tokens are sent.
        let s = Settings::resolve(&env_of(&[
            ("STORAGE_EMULATOR_HOST", "127.0.0.1:4443"),
            ("GOOGLE_APPLICATION_CREDENTIALS", sa),
            ("CLOUDSDK_CONFIG", gcloud),
        ]))
        .unwrap();
        assert_eq!(kind(&s), "service account");
        assert!(
            s.source
                .describe()
                .contains("wal@p.iam.gserviceaccount.com")
        );
        // The variable wins over gcloud's file, which wins over metadata.
        let s = Settings::resolve(&env_of(&[
            ("GOOGLE_APPLICATION_CREDENTIALS", sa),
            ("CLOUDSDK_CONFIG", gcloud),
        ]))
        .unwrap();
        assert_eq!((s.base.as_str(), kind(&s)), (API, "service account"));
        // The proxy: the stores' one rule, from the environment given
        // (the server's, for --check); never for this machine's emulator.
        let proxied = [
            ("GOOGLE_APPLICATION_CREDENTIALS", sa),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("NO_PROXY", "oauth2.googleapis.com"),
        ];
        let s = Settings::resolve(&env_of(&proxied)).unwrap();
        assert_eq!(s.proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(s.token_proxy, None);
        let s = Settings::resolve(&env_of(&[
            ("STORAGE_EMULATOR_HOST", "127.0.0.1:4443"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("HTTP_PROXY", "http://proxy:3128"),
        ]))
        .unwrap();
        assert_eq!((s.proxy, s.token_proxy), (None, None));
        let s = Settings::resolve(&env_of(&[("CLOUDSDK_CONFIG", gcloud)])).unwrap();
        assert_eq!(kind(&s), "user");
        assert!(!format!("{:?}", s.source).contains("rt"));
        let s = Settings::resolve(&env_of(&[("HOME", home)])).unwrap();
        assert_eq!(kind(&s), "metadata");
        let s = Settings::resolve(&env_of(&[
            ("HOME", home),
            ("GCE_METADATA_HOST", "127.0.0.1:1"),
        ]))
        .unwrap();
        assert_eq!(s.source.describe(), "the metadata server at 127.0.0.1:1");
        // None applies: every source named, with why.
        let none = Settings::resolve(&env_of(&[("HOME", home), ("NO_GCE_CHECK", "true")]));
        let Err(Error::Config { why, refused: None }) = none else {
            panic!("{none:?}")
        };
        assert!(
            why.contains("GOOGLE_APPLICATION_CREDENTIALS: not set"),
            "{why}"
        );
        assert!(
            why.contains("application_default_credentials.json: not found"),
            "{why}"
        );
        assert!(why.contains("NO_GCE_CHECK"), "{why}");
        // A named file that is unusable is an error, never skipped.
        for (doc, says) in [
            ("not json", "not a credentials file"),
            (r#"{"type":"external_account"}"#, "not supported"),
            (
                r#"{"type":"service_account","client_email":"e"}"#,
                "no private_key",
            ),
            (
                r#"{"type":"service_account","client_email":"e","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
                "private_key cannot be used",
            ),
        ] {
            let f = dir.path().join("bad.json");
            std::fs::write(&f, doc).unwrap();
            let r = Settings::resolve(&env_of(&[
                ("GOOGLE_APPLICATION_CREDENTIALS", f.to_str().unwrap()),
                ("CLOUDSDK_CONFIG", gcloud),
            ]));
            let Err(Error::Config { why, .. }) = r else {
                panic!("{doc}: {r:?}")
            };
            assert!(
                why.contains("GOOGLE_APPLICATION_CREDENTIALS=") && why.contains(says),
                "{why}"
            );
            assert!(!why.contains("AAAA"), "{why}");
        }
        let r = Settings::resolve(&env_of(&[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/nonexistent",
        )]));
        assert!(matches!(r, Err(Error::Config { why, .. }) if why.contains("/nonexistent")));
    }

    #[test]
    fn jwt_claims_and_signature() {
        let pem = test_key();
        let key = rsa_key(&pem).unwrap();
        let t = jwt(
            &key,
            "a@b.iam",
            Some("k\"1"),
            "https://x/token",
            SCOPE,
            1_700_000_000,
        )
        .unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        let decode = |p: &str| {
            let std: String = p
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            base64_decode(&std).unwrap()
        };
        let header = json::parse(std::str::from_utf8(&decode(parts[0])).unwrap()).unwrap();
        assert_eq!(header.get("alg").and_then(Value::as_str), Some("RS256"));
        assert_eq!(header.get("kid").and_then(Value::as_str), Some("k\"1"));
        let claims = json::parse(std::str::from_utf8(&decode(parts[1])).unwrap()).unwrap();
        assert_eq!(claims.get("iss").and_then(Value::as_str), Some("a@b.iam"));
        assert_eq!(claims.get("scope").and_then(Value::as_str), Some(SCOPE));
        assert_eq!(
            claims.get("aud").and_then(Value::as_str),
            Some("https://x/token")
        );
        assert_eq!(
            claims.get("iat").and_then(Value::as_u64),
            Some(1_700_000_000)
        );
        assert_eq!(
            claims.get("exp").and_then(Value::as_u64),
            Some(1_700_003_600)
        );
        // The signature verifies with the public key.
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.public().as_ref(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &decode(parts[2])).unwrap();
    }

    #[test]
    fn encodings() {
        // RFC 4648 test vectors, in the url alphabet without padding.
        for (i, o) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
        ] {
            assert_eq!(base64url(i.as_bytes()), o);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert!(base64_decode("Zm9v!").is_none());
        assert_eq!(pct("wal/0001 a+b~é"), "wal%2F0001%20a%2Bb~%C3%A9");
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn error_bodies_and_listings() {
        let body = r#"{"error":{"code":404,"message":"The specified bucket does not exist.",
            "errors":[{"message":"The specified bucket does not exist.","domain":"global",
            "reason":"notFound"}]}}"#;
        assert_eq!(
            parse_error(body),
            (
                Some("notFound".into()),
                Some("The specified bucket does not exist.".into())
            )
        );
        assert_eq!(parse_error("Not Found"), (None, None));
        assert_eq!(parse_error("{}"), (None, None));
        let page = parse_list_page(
            r#"{"kind":"storage#objects","nextPageToken":"CgR3YWwv",
                "items":[{"name":"wal/a","size":"16777216"},{"name":"wal/b","size":"0"}],
                "prefixes":["wal/sub/"]}"#,
        )
        .unwrap();
        assert_eq!(
            page.objects,
            vec![("wal/a".into(), 16_777_216), ("wal/b".into(), 0)]
        );
        assert_eq!(page.next.as_deref(), Some("CgR3YWwv"));
        let empty = parse_list_page(r#"{"kind":"storage#objects"}"#).unwrap();
        assert!(empty.objects.is_empty() && empty.next.is_none());
        assert!(parse_list_page("null").is_none());
        assert!(parse_list_page(r#"{"items":[{"name":"x"}]}"#).is_none());
        assert!(parse_list_page(r#"{"nextPageToken":""}"#).is_none());
    }

    #[test]
    fn token_endpoint_answers() {
        let answer = |status: u16, body: &str| {
            let resp = ureq::http::Response::builder()
                .status(status)
                .body(ureq::Body::builder().data(body.as_bytes().to_vec()))
                .unwrap();
            token_answer(
                Ok(resp),
                "token request",
                "GOOGLE_APPLICATION_CREDENTIALS=/k.json",
            )
        };
        let t = answer(
            200,
            r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(t.value, Secret("ya29.x".into()));
        let left = t
            .expires
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3599));
        // Refused: configuration, naming the source, quoting only error
        // and error_description.
        let refused = answer(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature.","x":"secret"}"#,
        );
        let Err(Error::Config {
            why,
            refused: Some(Fatal::Denied),
        }) = refused
        else {
            panic!("{:?}", refused.err())
        };
        assert!(
            why.contains("400 invalid_grant: Invalid JWT Signature."),
            "{why}"
        );
        assert!(
            why.contains("GOOGLE_APPLICATION_CREDENTIALS=/k.json"),
            "{why}"
        );
        assert!(!why.contains("secret"), "{why}");
        assert!(matches!(answer(503, "busy"), Err(Error::Transient(_))));
        assert!(matches!(answer(429, "{}"), Err(Error::Transient(_))));
        // A 200 without a token is not one; a token whose answer says not
        // how long it lasts is kept only a few minutes.
        assert!(matches!(answer(200, "{}"), Err(Error::Config { .. })));
        assert!(matches!(answer(200, "<html>"), Err(Error::Transient(_))));
        let short = answer(200, r#"{"access_token":"t"}"#).unwrap();
        assert!(short.expires.unwrap() < SystemTime::now() + Duration::from_secs(301));
        // Tokens print redacted.
        assert_eq!(format!("{:?}", Secret("ya29.x".into())), "Secret(redacted)");
    }

    /// A one-request metadata server on loopback: answers `body` with
    /// `status` if the request carries `Metadata-Flavor: Google`, else 403
    /// as the real one does. Returns its `host:port` and the request seen.
    fn metadata_server(
        status: u16,
        body: &'static str,
    ) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            let flavored = head
                .to_ascii_lowercase()
                .contains("metadata-flavor: google");
            let status = if flavored { status } else { 403 };
            let mut conn = conn;
            write!(
                conn,
                "HTTP/1.1 {status} X\r\nMetadata-Flavor: Google\r\nContent-Type: \
                 application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            head
        });
        (host, server)
    }

    #[test]
    fn the_metadata_server() {
        let tried = vec!["GOOGLE_APPLICATION_CREDENTIALS: not set".to_string()];
        let (host, server) = metadata_server(
            200,
            r#"{"access_token":"ya29.m","expires_in":3599,"token_type":"Bearer"}"#,
        );
        let t = metadata_token(&host, &tried).unwrap();
        assert_eq!(t.value, Secret("ya29.m".into()));
        let head = server.join().unwrap();
        assert!(
            head.starts_with(
                "GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.1"
            ),
            "{head}"
        );
        // No service account on the machine.
        let (host, server) = metadata_server(404, "");
        let r = metadata_token(&host, &tried);
        assert!(
            matches!(&r, Err(Error::Config { why, .. }) if why.contains("no service account")),
            "{:?}",
            r.err()
        );
        server.join().unwrap();
        // Nothing listens: no credentials, every source named.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = closed.local_addr().unwrap().to_string();
        drop(closed);
        let r = metadata_token(&host, &tried);
        let Err(Error::Config { why, .. }) = &r else {
            panic!("{:?}", r.err())
        };
        assert!(
            why.contains("GOOGLE_APPLICATION_CREDENTIALS: not set"),
            "{why}"
        );
        assert!(why.contains("nothing answers"), "{why}");
    }

    #[test]
    fn store_crosses_threads() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
    }
}
