//! The Azure Blob Storage store behind the [`super::ObjectStore`]
//! boundary: `azure://CONTAINER[/PREFIX]`, through the Blob service's REST
//! API (<https://learn.microsoft.com/en-us/rest/api/storageservices/blob-service-rest-api>)
//! over the same small blocking client as the S3 store. No Azure SDK, no
//! runtime: requests are signed here (SharedKey), carry a SAS token, or a
//! managed identity's bearer token.
//!
//! Every answer is read by [`super::classify::classify`] from its status
//! and the `x-ms-error-code` header (the XML body's `<Code>` when the
//! header is missing): `BlobNotFound` is "not there yet",
//! `ContainerNotFound` a configuration error (exit 250), 403
//! `AuthenticationFailed` / `AuthorizationPermissionMismatch` refused
//! credentials (exit 250), 503 `ServerBusy` and 5xx are waited out. The
//! client never retries: the caller's waiting loop does, so that it stays
//! in control of signals and the trigger file.
//!
//! Configuration and credentials come from the variables the az CLI and
//! WAL-G read (see [`Settings::resolve`]). Permissions: read and list on
//! the container (Storage Blob Data Reader), delete for `%r` cleanup.

use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::body::{self, Checksum};
use super::classify::Fatal;
pub use super::http::Timeouts;
use super::http::{self, ListPage, Response, read_text};
use super::location;
use super::xml::{self, field as xml_field};
use super::{DeleteReport, Error, ObjectStore};
use crate::archive::store::credentials::{Expiring, Refreshing, nothing_listens};

/// The REST API version every request names (`x-ms-version`). Pinned: a
/// service answers as this version documents whatever it supports besides;
/// Azurite refuses versions newer than it knows with 400. 2024-08-04 is
/// what pgBackRest pins; bearer tokens need 2017-11-09 or later
/// (<https://learn.microsoft.com/en-us/rest/api/storageservices/authorize-with-azure-active-directory>).
pub const API_VERSION: &str = "2024-08-04";

/// Azurite's well-known development account and key
/// (<https://learn.microsoft.com/en-us/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key>),
/// what `UseDevelopmentStorage=true` means.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// Where Azure's instance metadata service hands out managed identity
/// tokens
/// (<https://learn.microsoft.com/en-us/entra/identity/managed-identities-azure-resources/how-to-use-vm-token>).
const IMDS_HOST: &str = "http://169.254.169.254";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// The audience of tokens for Azure Storage.
const STORAGE_RESOURCE: &str = "https://storage.azure.com/";

/// List Blobs returns at most 5000 names per page.
const MAX_PAGE: usize = 5000;
/// A page of 5000 names of at most 1 KiB each, with their properties.
const LIST_BODY_LIMIT: u64 = 16 * 1024 * 1024;
/// Token documents are small.
const TOKEN_BODY_LIMIT: u64 = 64 * 1024;

/// Characters percent-encoded in a blob's path: all but the unreserved
/// ones of RFC 3986 and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// Characters percent-encoded in a query value.
const QUERY: &AsciiSet = &PATH.add(b'/');

/// Where in Azure the archive is: `azure://CONTAINER[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub container: String,
    /// No leading slash, no empty segments, ends with `/` unless empty.
    pub prefix: String,
}

impl Location {
    pub fn parse(url: &str) -> Result<Self, Error> {
        let (container, prefix) = location::split(url, "azure", "container")?;
        let bad = |why: &str| location::malformed(url, why);
        // Container naming rules:
        // https://learn.microsoft.com/en-us/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata#container-names
        if !(3..=63).contains(&container.len()) {
            return Err(bad("a container name has 3 to 63 characters"));
        }
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !container.chars().all(|c| ok(c) || c == '-') {
            return Err(bad(
                "a container name has only lowercase letters, digits and '-'",
            ));
        }
        if !container.starts_with(ok) || !container.ends_with(ok) || container.contains("--") {
            return Err(bad(
                "a container name starts and ends with a letter or digit, without \"--\"",
            ));
        }
        let norm = location::prefix(url, prefix, &['\\', '?', '#'])?;
        Ok(Self {
            container: container.to_string(),
            prefix: norm,
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "azure://{}/{}", self.container, self.prefix)
    }
}

pub use crate::archive::store::credentials::Secret;

/// Where a managed identity's token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The instance metadata service of a VM, a scale set or AKS (through
    /// the pod identity host); `AZURE_POD_IDENTITY_AUTHORITY_HOST` moves
    /// it, as in Azure's SDKs.
    Imds {
        endpoint: String,
        client_id: Option<String>,
    },
    /// App Service and Functions: `IDENTITY_ENDPOINT` with the
    /// `IDENTITY_HEADER` secret
    /// (<https://learn.microsoft.com/en-us/azure/app-service/overview-managed-identity#rest-endpoint-reference>).
    AppService {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
}

/// How requests are authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// SharedKey with the account's key (base64, as the portal shows it).
    SharedKey { account: String, key: Secret },
    /// A SAS token, appended to every request's query (no leading `?`).
    Sas(Secret),
    /// A managed identity's OAuth token (`Authorization: Bearer`).
    /// `tried` says why the sources before it did not apply, for the error
    /// when no identity answers either.
    ManagedIdentity {
        identity: Identity,
        tried: Vec<String>,
    },
}

/// The settings resolved from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The blob service's URL, without a trailing slash; for Azurite's
    /// path-style addressing it ends with the account
    /// (`http://127.0.0.1:10000/devstoreaccount1`).
    pub endpoint: String,
    pub auth: Auth,
    /// Where the credentials come from, for messages (never a secret).
    pub from: String,
}

/// The members of an Azure Storage connection string
/// (<https://learn.microsoft.com/en-us/azure/storage/common/storage-configure-connection-string>):
/// `Key=Value` pairs separated by `;`, keys case-insensitive; a value may
/// hold `=` (keys and SAS tokens do).
fn parse_connection_string(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            // Never quote the part: it may be a key.
            return Err(Error::config(
                "AZURE_STORAGE_CONNECTION_STRING: a part is not Key=Value".into(),
            ));
        };
        out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(out)
}

fn settings_from_connection_string(text: &str) -> Result<Settings, Error> {
    const WHAT: &str = "AZURE_STORAGE_CONNECTION_STRING";
    let members = parse_connection_string(text)?;
    let get = |k: &str| {
        members
            .iter()
            .rev()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        // Azurite on its default port, unless BlobEndpoint moves it.
        let endpoint = get("blobendpoint")
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEV_ENDPOINT.into());
        return Ok(Settings {
            endpoint,
            auth: Auth::SharedKey {
                account: DEV_ACCOUNT.into(),
                key: Secret(DEV_KEY.into()),
            },
            from: format!("{WHAT} (UseDevelopmentStorage: Azurite's {DEV_ACCOUNT})"),
        });
    }
    let account = get("accountname");
    let endpoint = match (get("blobendpoint"), &account) {
        (Some(e), _) => e.trim_end_matches('/').to_string(),
        (None, Some(a)) => {
            let protocol = get("defaultendpointsprotocol").unwrap_or_else(|| "https".into());
            if protocol != "https" && protocol != "http" {
                return Err(Error::config(format!(
                    "{WHAT}: DefaultEndpointsProtocol is \"{protocol}\", not https or http"
                )));
            }
            let suffix = get("endpointsuffix").unwrap_or_else(|| "core.windows.net".into());
            format!("{protocol}://{a}.blob.{suffix}")
        }
        (None, None) => {
            return Err(Error::config(format!(
                "{WHAT} names neither AccountName nor BlobEndpoint"
            )));
        }
    };
    // A SAS wins over a key, as in the az CLI.
    if let Some(sas) = get("sharedaccesssignature") {
        return Ok(Settings {
            endpoint,
            auth: Auth::Sas(Secret(sas.trim_start_matches('?').to_string())),
            from: format!("{WHAT} (SharedAccessSignature)"),
        });
    }
    match (get("accountkey"), account) {
        (Some(key), Some(account)) => {
            check_key(&key, WHAT)?;
            Ok(Settings {
                endpoint,
                from: format!("{WHAT} (AccountKey of account {account})"),
                auth: Auth::SharedKey {
                    account,
                    key: Secret(key),
                },
            })
        }
        (Some(_), None) => Err(Error::config(format!(
            "{WHAT} has an AccountKey but no AccountName"
        ))),
        (None, _) => Err(Error::config(format!(
            "{WHAT} has neither AccountKey nor SharedAccessSignature"
        ))),
    }
}

/// An account key is base64: say so before the first request fails.
fn check_key(key: &str, what: &str) -> Result<(), Error> {
    match BASE64.decode(key) {
        Ok(k) if !k.is_empty() => Ok(()),
        _ => Err(Error::config(format!(
            "{what}: the account key is not base64 (copy it whole from the portal or \
             `az storage account keys list`)"
        ))),
    }
}

impl Settings {
    /// Resolves the settings from the environment given by `env`, with
    /// the names of the az CLI
    /// (<https://learn.microsoft.com/en-us/cli/azure/storage/blob#az-storage-blob-download>)
    /// and WAL-G, first that applies:
    /// 1. `AZURE_STORAGE_CONNECTION_STRING`, which then overrides the rest;
    /// 2. `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_SAS_TOKEN` (wins over
    ///    a key, as in the az CLI);
    /// 3. `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` (or WAL-G's
    ///    `AZURE_STORAGE_ACCESS_KEY`);
    /// 4. a managed identity: App Service's `IDENTITY_ENDPOINT` +
    ///    `IDENTITY_HEADER`, else the instance metadata service
    ///    (`AZURE_POD_IDENTITY_AUTHORITY_HOST` moves it); `AZURE_CLIENT_ID`
    ///    picks a user-assigned identity.
    ///
    /// The endpoint is `https://ACCOUNT.blob.core.windows.net` unless
    /// `AZURE_STORAGE_BLOB_ENDPOINT` names another (Azurite, a private
    /// endpoint, a sovereign cloud).
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if let Some(cs) = var("AZURE_STORAGE_CONNECTION_STRING") {
            return settings_from_connection_string(&cs);
        }
        let account = var("AZURE_STORAGE_ACCOUNT");
        let endpoint = match (var("AZURE_STORAGE_BLOB_ENDPOINT"), &account) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Some(a)) => format!("https://{a}.blob.core.windows.net"),
            (None, None) => {
                return Err(Error::config(
                    "no Azure storage account: set AZURE_STORAGE_CONNECTION_STRING, or \
                     AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY, or \
                     a managed identity), or AZURE_STORAGE_BLOB_ENDPOINT"
                        .into(),
                ));
            }
        };
        let mut tried = vec!["AZURE_STORAGE_CONNECTION_STRING: not set".to_string()];
        if let Some(sas) = var("AZURE_STORAGE_SAS_TOKEN") {
            return Ok(Self {
                endpoint,
                auth: Auth::Sas(Secret(sas.trim().trim_start_matches('?').to_string())),
                from: "AZURE_STORAGE_SAS_TOKEN".into(),
            });
        }
        tried.push("AZURE_STORAGE_SAS_TOKEN: not set".into());
        let key = var("AZURE_STORAGE_KEY")
            .map(|k| ("AZURE_STORAGE_KEY", k))
            .or_else(|| var("AZURE_STORAGE_ACCESS_KEY").map(|k| ("AZURE_STORAGE_ACCESS_KEY", k)));
        match (key, account) {
            (Some((name, key)), Some(account)) => {
                check_key(&key, name)?;
                return Ok(Self {
                    endpoint,
                    from: format!("{name} of account {account} (AZURE_STORAGE_ACCOUNT)"),
                    auth: Auth::SharedKey {
                        account,
                        key: Secret(key.trim().to_string()),
                    },
                });
            }
            (Some((name, _)), None) => {
                return Err(Error::config(format!(
                    "{name} is set but AZURE_STORAGE_ACCOUNT is not: a key signs for its account"
                )));
            }
            (None, _) => tried.push("AZURE_STORAGE_KEY, AZURE_STORAGE_ACCESS_KEY: not set".into()),
        }
        let client_id = var("AZURE_CLIENT_ID");
        let identity = match (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => Identity::AppService {
                endpoint,
                header: Secret(header),
                client_id,
            },
            _ => {
                tried.push("IDENTITY_ENDPOINT with IDENTITY_HEADER (App Service): not set".into());
                let host =
                    var("AZURE_POD_IDENTITY_AUTHORITY_HOST").unwrap_or_else(|| IMDS_HOST.into());
                Identity::Imds {
                    endpoint: format!("{}{IMDS_PATH}", host.trim_end_matches('/')),
                    client_id,
                }
            }
        };
        let from = match &identity {
            Identity::Imds { endpoint, .. } => {
                format!("managed identity (instance metadata at {endpoint})")
            }
            Identity::AppService { endpoint, .. } => {
                format!("managed identity (IDENTITY_ENDPOINT {endpoint})")
            }
        };
        Ok(Self {
            endpoint,
            auth: Auth::ManagedIdentity { identity, tried },
            from,
        })
    }
}

/// The string a SharedKey signature covers
/// (<https://learn.microsoft.com/en-us/rest/api/storageservices/authorize-with-shared-key#blob-queue-and-file-services-shared-key-authorization>):
/// the verb, the values of 11 standard headers (Content-Length empty when
/// 0), the `x-ms-*` headers sorted by lower-case name as `name:value`, and
/// the canonical resource: `/ACCOUNT` + the URI path as sent + each query
/// parameter, sorted by lower-case name, as `name:value` (decoded). Each
/// on its own line. `headers` holds every header sent, any case.
pub fn string_to_sign(
    verb: &str,
    headers: &[(&str, &str)],
    account: &str,
    path: &str,
    query: &[(&str, &str)],
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    };
    let mut s = String::from(verb);
    for name in [
        "content-encoding",
        "content-language",
        "content-length",
        "content-md5",
        "content-type",
        "date",
        "if-modified-since",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "range",
    ] {
        s.push('\n');
        let v = get(name);
        if !(name == "content-length" && v == "0") {
            s.push_str(v);
        }
    }
    s.push('\n');
    let mut ms: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    ms.sort();
    for (k, v) in ms {
        s.push_str(&k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push('/');
    s.push_str(account);
    s.push_str(path);
    let mut q: Vec<(String, &str)> = query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    q.sort();
    for (k, v) in q {
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(v);
    }
    s
}

/// HMAC-SHA256 of `text` with the base64 `key`, in base64: a SharedKey
/// (or SAS) signature. Public for the tests' uploads and SAS tokens.
pub fn sign(key_base64: &str, text: &str) -> Result<String, Error> {
    use hmac::{KeyInit as _, Mac as _};
    let key = BASE64
        .decode(key_base64.trim())
        .map_err(|_| Error::config("the account key is not base64".into()))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(text.as_bytes());
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}

/// The date format of `x-ms-date` (RFC 1123, GMT).
fn http_date(now: jiff::Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&now)
        .unwrap_or_default()
}

/// An archive in Azure Blob Storage. Names given to its methods are
/// relative to the location's prefix, like file names in a directory.
pub struct Store {
    location: Location,
    endpoint: String,
    /// The endpoint's path (`/devstoreaccount1` for Azurite, else empty).
    base_path: String,
    auth: Auth,
    from: String,
    token: Refreshing<Secret>,
    agent: ureq::Agent,
    /// The agent for the identity endpoint: short limits, never a proxy.
    identity_agent: ureq::Agent,
    /// Names per List Blobs page (5000, the maximum, unless tests make it
    /// small to exercise pagination).
    list_page: usize,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// A request before it is authorised and sent.
struct Request<'a> {
    method: &'a str,
    /// The path under the endpoint, percent-encoded (`/container/blob`).
    path: String,
    /// Query parameters, not encoded.
    query: Vec<(&'a str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<&'a [u8]>,
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
        Self::new(location, settings, timeouts, env)
    }

    pub fn new(
        location: Location,
        s: Settings,
        timeouts: Timeouts,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let endpoint = s.endpoint.trim_end_matches('/').to_string();
        let bad = |why: &str| Error::config(format!("blob endpoint \"{endpoint}\" {why}"));
        let after_scheme = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .ok_or_else(|| bad("is not an http or https URL"))?;
        if after_scheme.contains(['?', '#']) {
            return Err(bad("has a query or fragment"));
        }
        let base_path = after_scheme
            .find('/')
            .map(|i| after_scheme[i..].to_string())
            .unwrap_or_default();
        if after_scheme.len() == base_path.len() {
            return Err(bad("has no host"));
        }
        let proxy = http::proxy_for(&endpoint, env)
            .as_deref()
            .map(http::proxy)
            .transpose()?;
        let agent = http::store_agent(proxy, timeouts);
        // Short: on a host without a metadata service the first call must
        // not wait long to learn so. Never through a proxy (169.254.x.x).
        let identity_agent =
            http::endpoint_agent(Duration::from_secs(1), Duration::from_secs(5), None);
        Ok(Self {
            location,
            endpoint,
            base_path,
            auth: s.auth,
            from: s.from,
            token: Refreshing::new(),
            agent,
            identity_agent,
            list_page: MAX_PAGE,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Names per List Blobs request (1..=5000).
    pub fn set_list_page(&mut self, n: usize) {
        self.list_page = n.clamp(1, MAX_PAGE);
    }

    fn blob_path(&self, name: &str) -> String {
        format!(
            "/{}/{}",
            self.location.container,
            utf8_percent_encode(&format!("{}{name}", self.location.prefix), PATH)
        )
    }

    fn describe(&self, name: &str) -> String {
        format!("{}{name}", self.location)
    }

    /// The managed identity's token: fetched at the first request, again a
    /// little before it expires.
    fn bearer(&self, identity: &Identity, tried: &[String]) -> Result<Secret, Error> {
        self.token.get_for_store(
            || fetch_token(&self.identity_agent, identity, tried),
            "the managed identity's token",
            "object storage",
            &|| self.from.clone(),
        )
    }

    /// Authorises and sends a request; the answer as it came (any status).
    fn send(&self, req: Request<'_>, what: &str) -> Result<Response, Error> {
        let mut headers: Vec<(&str, String)> = vec![
            ("x-ms-date", http_date(jiff::Timestamp::now())),
            ("x-ms-version", API_VERSION.into()),
        ];
        headers.extend(req.headers.iter().map(|(k, v)| (*k, v.clone())));
        if let Some(body) = req.body {
            headers.push(("Content-Length", body.len().to_string()));
        }
        let mut query: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY)))
            .collect();
        let path = format!("{}{}", self.base_path, req.path);
        match &self.auth {
            Auth::SharedKey { account, key } => {
                let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let qs: Vec<(&str, &str)> =
                    req.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let sts = string_to_sign(req.method, &hs, account, &path, &qs);
                let signature = sign(&key.0, &sts)?;
                headers.push(("Authorization", format!("SharedKey {account}:{signature}")));
            }
            Auth::Sas(token) => query.push(token.0.clone()),
            Auth::ManagedIdentity { identity, tried } => {
                let token = self.bearer(identity, tried)?;
                headers.push(("Authorization", format!("Bearer {}", token.0)));
            }
        }
        let mut url = format!("{}{}", self.endpoint, req.path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let mut builder = ureq::http::Request::builder().method(req.method).uri(&url);
        for (k, v) in &headers {
            builder = builder.header(*k, v);
        }
        let request = builder
            .body(req.body.unwrap_or_default().to_vec())
            .map_err(|e| Error::config(format!("{what}: {}", redact(&e.to_string()))))?;
        self.agent.run(request).map_err(|e| transport(e, what))
    }

    /// Sorts an HTTP answer onto the contract ([`classify`]): Ok for the
    /// answer asked for. The code is in `x-ms-error-code`, else the XML
    /// body's `<Code>`.
    fn check(&self, resp: Response, what: &str) -> Result<Response, Error> {
        http::sort(resp, what, Some("x-ms-error-code"), |body| {
            // Azure's messages end with "\nRequestId:…\nTime:…": the first
            // line says it.
            let message = xml_field(body, "Message")
                .map(|m| m.lines().next().unwrap_or("").trim().to_string())
                .filter(|m| !m.is_empty());
            (xml_field(body, "Code"), message)
        })
        .map_err(|refusal| {
            refusal.into_error(
                what,
                |said| match &self.auth {
                    Auth::ManagedIdentity { .. } => {
                        self.token.invalidate();
                        Error::Transient(format!("{said}: fetching a new token"))
                    }
                    _ => Error::refused(
                        Fatal::Denied,
                        format!("{said}: the credentials have expired (renew them)"),
                    ),
                },
                |kind| match kind {
                    Fatal::NoBucket => format!(
                        ": container \"{}\" not found at {}",
                        self.location.container, self.endpoint
                    ),
                    Fatal::Denied => format!(": the credentials from {} were refused", self.from),
                    _ => String::new(),
                },
            )
        })
    }

    /// The answer to a request on the container itself (a listing): never
    /// 404 for a present container, so a 404 without a code (something in
    /// the way) is a configuration error too.
    fn check_container_request(&self, resp: Response, what: &str) -> Result<Response, Error> {
        self.check(resp, what).map_err(|e| match e {
            Error::NotFound => Error::refused(
                Fatal::NoBucket,
                format!(
                    "{what}: container \"{}\" not found at {}",
                    self.location.container, self.endpoint
                ),
            ),
            e => e,
        })
    }

    /// Downloads a blob into `dst` (Get Blob), at most `limit` bytes, in
    /// bounded memory; `should_stop` is asked between chunks. Returns the
    /// bytes written. On any error `dst` holds a partial copy the caller
    /// throws away.
    pub fn get_to(
        &self,
        name: &str,
        dst: &mut dyn Write,
        limit: u64,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<u64, Error> {
        if name.is_empty() {
            return Err(Error::config("empty object name".into()));
        }
        let what = format!("GET {}", self.describe(name));
        let req = Request {
            method: "GET",
            path: self.blob_path(name),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        };
        let resp = self.check(self.send(req, &what)?, &what)?;
        let length = http::content_length(&resp);
        // The blob's MD5, which the service keeps from a single-request
        // upload (or from the uploader), checked on the whole body
        // (https://learn.microsoft.com/en-us/rest/api/storageservices/get-blob#response-headers).
        let md5 = http::header(&resp, "content-md5");
        let checksums = Checksum::from_content_md5(md5.as_deref());
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

    /// Uploads a block blob in one request (Put Blob): the standbys'
    /// registry entries, tests and benchmarks (the archive side of a
    /// deployment writes segments with its own tools).
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::config("empty object name".into()));
        }
        let what = format!("PUT {}", self.describe(name));
        let req = Request {
            method: "PUT",
            path: self.blob_path(name),
            query: Vec::new(),
            headers: vec![
                ("x-ms-blob-type", "BlockBlob".into()),
                ("Content-Type", "application/octet-stream".into()),
            ],
            body: Some(data),
        };
        self.check(self.send(req, &what)?, &what).map(drop)
    }

    /// Creates the container (Create Container; tests).
    pub fn create_container(&self) -> Result<(), Error> {
        let what = format!("creating container \"{}\"", self.location.container);
        let req = Request {
            method: "PUT",
            path: format!("/{}", self.location.container),
            query: vec![("restype", "container".into())],
            headers: Vec::new(),
            body: None,
        };
        self.check(self.send(req, &what)?, &what).map(drop)
    }

    /// Names (relative to the prefix) and sizes of the blobs whose name
    /// starts with `name_prefix`, like the files of a directory: blobs in
    /// deeper "directories" are not listed (delimiter `/`). Follows every
    /// page (`NextMarker`).
    pub fn list(&self, name_prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        let prefix = format!("{}{name_prefix}", self.location.prefix);
        let what = format!("listing {}{name_prefix}", self.location);
        http::list_all(&self.location.prefix, |marker| {
            self.list_page(&prefix, self.list_page, marker, &what)
        })
    }

    /// One List Blobs request
    /// (<https://learn.microsoft.com/en-us/rest/api/storageservices/list-blobs>).
    fn list_page(
        &self,
        prefix: &str,
        max: usize,
        marker: Option<&str>,
        what: &str,
    ) -> Result<ListPage, Error> {
        let mut query = vec![
            ("restype", "container".to_string()),
            ("comp", "list".into()),
            ("delimiter", "/".into()),
            ("maxresults", max.to_string()),
        ];
        if !prefix.is_empty() {
            query.push(("prefix", prefix.to_string()));
        }
        if let Some(m) = marker {
            query.push(("marker", m.to_string()));
        }
        let req = Request {
            method: "GET",
            path: format!("/{}", self.location.container),
            query,
            headers: Vec::new(),
            body: None,
        };
        let resp = self.check_container_request(self.send(req, what)?, what)?;
        let text = read_text(resp, LIST_BODY_LIMIT, what)?;
        parse_list_page(&text).ok_or_else(|| Error::Transient(format!("{what}: unreadable answer")))
    }

    /// Deletes blobs, one Delete Blob request each (Blob Batch is not
    /// offered by every Azure-compatible server). A blob already gone
    /// counts as deleted; one the service refuses (no delete permission,
    /// a lease, immutability) is reported in [`DeleteReport::failed`]; an
    /// error that is not about the blob (the service unreachable, the
    /// container gone) stops the deletion.
    pub fn delete_many(&self, names: &[String]) -> Result<DeleteReport, Error> {
        let mut report = DeleteReport::default();
        for name in names {
            let what = format!("DELETE {}", self.describe(name));
            let req = Request {
                method: "DELETE",
                path: self.blob_path(name),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
            };
            match self.check(self.send(req, &what)?, &what) {
                Ok(_) | Err(Error::NotFound) => report.deleted += 1,
                Err(Error::Config {
                    why,
                    refused: Some(Fatal::Denied | Fatal::Rejected),
                }) => report.failed.push((name.clone(), why)),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Checks that the container is there and listable with these
    /// credentials: one List Blobs of at most one name under the prefix.
    /// Not Get Container Properties: a service SAS scoped to the container
    /// may list its blobs but not read its properties, and listing is what
    /// the waiting needs.
    pub fn verify(&self) -> Result<(), Error> {
        let what = format!("checking container \"{}\"", self.location.container);
        self.list_page(&self.location.prefix, 1, None, &what)
            .map(drop)
    }
}

impl ObjectStore for Store {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn credentials_source(&self) -> String {
        self.from.clone()
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
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

/// Fetches a token for Azure Storage from a managed identity endpoint. A
/// host where nothing answers has no managed identity: a configuration
/// error naming every source tried. No retries: the waiting loop asks
/// again if something answered but failed.
fn fetch_token(
    agent: &ureq::Agent,
    identity: &Identity,
    tried: &[String],
) -> Result<Expiring<Secret>, Error> {
    let (endpoint, request) = match identity {
        Identity::Imds {
            endpoint,
            client_id,
        } => {
            let mut url = format!(
                "{endpoint}?api-version=2018-02-01&resource={}",
                utf8_percent_encode(STORAGE_RESOURCE, QUERY)
            );
            if let Some(id) = client_id {
                url.push_str(&format!("&client_id={}", utf8_percent_encode(id, QUERY)));
            }
            (endpoint, agent.get(&url).header("Metadata", "true"))
        }
        Identity::AppService {
            endpoint,
            header,
            client_id,
        } => {
            let mut url = format!(
                "{endpoint}?api-version=2019-08-01&resource={}",
                utf8_percent_encode(STORAGE_RESOURCE, QUERY)
            );
            if let Some(id) = client_id {
                url.push_str(&format!("&client_id={}", utf8_percent_encode(id, QUERY)));
            }
            (
                endpoint,
                agent.get(&url).header("X-IDENTITY-HEADER", &header.0),
            )
        }
    };
    let what = format!("managed identity endpoint {endpoint}");
    let resp = match request.call() {
        Err(e) if nothing_listens(&e) => {
            let mut tried = tried.to_vec();
            tried.push(format!(
                "managed identity: nothing answers at {endpoint} ({e})"
            ));
            return Err(Error::config(format!(
                "no Azure credentials; tried, in order: {}",
                tried.join("; ")
            )));
        }
        Err(e) => return Err(Error::Transient(format!("{what}: {e}"))),
        Ok(r) => r,
    };
    let status = resp.status().as_u16();
    let body = read_text(resp, TOKEN_BODY_LIMIT, &what)?;
    match status {
        200 => {}
        // IMDS: 400 "Identity not found" on a VM without one; 404 while
        // the identity is being assigned is waited out.
        400 => {
            return Err(Error::config(format!(
                "{what}: HTTP 400: no managed identity is assigned (or AZURE_CLIENT_ID names \
                 none of them)"
            )));
        }
        404 | 408 | 410 | 429 | 500..=599 => {
            return Err(Error::Transient(format!("{what}: HTTP {status}")));
        }
        s => return Err(Error::config(format!("{what}: HTTP {s}"))),
    }
    token_from_json(&body, &what, SystemTime::now())
}

/// The token of a managed identity's answer
/// (`{"access_token": "...", "expires_on": "1506484173", ...}`; IMDS and
/// App Service send the numbers as strings). Never quotes the answer.
fn token_from_json(body: &str, what: &str, now: SystemTime) -> Result<Expiring<Secret>, Error> {
    let m = crate::archive::store::json::string_members(body)
        .map_err(|e| Error::config(format!("{what}: malformed answer ({e})")))?;
    let token = m
        .get("access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::config(format!("{what}: no access_token in the answer")))?;
    let secs = |k: &str| m.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    let expires = match (secs("expires_on"), secs("expires_in")) {
        (Some(on), _) => SystemTime::UNIX_EPOCH + Duration::from_secs(on),
        (None, Some(within)) => now + Duration::from_secs(within),
        // Not said (or said as a number our parser skips): short, so that
        // a token that does expire is renewed in time.
        (None, None) => now + Duration::from_secs(300),
    };
    Ok(Expiring {
        value: Secret(token.clone()),
        expires: Some(expires),
    })
}

/// Removes a SAS signature (`sig=…`) from a message that may quote a URL.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("REDACTED");
        let tail = &rest[i + 4..];
        let end = tail
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Sorts a failed request (no HTTP answer) onto the contract, never
/// quoting a SAS signature.
fn transport(e: ureq::Error, what: &str) -> Error {
    let text = redact(&e.to_string());
    http::transport_saying(e, what, text)
}

/// Reads a List Blobs answer, taking only the Name and Content-Length of
/// each `<Blob>` (the `<BlobPrefix>` entries of deeper "directories" are
/// skipped). Servers differ in which other properties they send.
fn parse_list_page(body: &str) -> Option<ListPage> {
    if !body.contains("<EnumerationResults") {
        return None;
    }
    let mut objects = Vec::new();
    for item in xml::elements(body, "Blob")? {
        let name = xml_field(item, "Name")?;
        let size = xml_field(item, "Content-Length")?.parse().ok()?;
        objects.push((name, size));
    }
    let next = xml_field(body, "NextMarker");
    Some(ListPage { objects, next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::store::env_of;

    #[test]
    fn urls() {
        let l = Location::parse("azure://wal").unwrap();
        assert_eq!((l.container.as_str(), l.prefix.as_str()), ("wal", ""));
        let l = Location::parse("azure://wal-01/").unwrap();
        assert_eq!((l.container.as_str(), l.prefix.as_str()), ("wal-01", ""));
        let l = Location::parse("azure://abc//main//16/").unwrap();
        assert_eq!(l.prefix, "main/16/");
        assert_eq!(l.to_string(), "azure://abc/main/16/");
        for bad in [
            "azure:/x",
            "azure:wal",
            "azure://",
            "azure:///prefix",
            "AZURE://wal",
            "az://wal",
            "azure://ab",
            "azure://Wal",
            "azure://w_al",
            "azure://wa.l",
            "azure://-wal",
            "azure://wal-",
            "azure://wa--l",
            "azure://wal/p?x=1",
            "azure://wal/p#f",
            "azure://wal/p\nq",
            &format!("azure://{}", "a".repeat(64)),
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::Config { .. })),
                "{bad} accepted"
            );
        }
        assert!(crate::archive::is_object_storage("azure://wal"));
        assert!(super::super::validate_url("azure://wal/p").is_ok());
        assert!(super::super::validate_url("azure://W").is_err());
    }

    #[test]
    fn connection_strings() {
        let key = BASE64.encode(b"sixteen byte key");
        let s = settings_from_connection_string(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};\
             EndpointSuffix=core.chinacloudapi.cn"
        ))
        .unwrap();
        assert_eq!(s.endpoint, "https://acct.blob.core.chinacloudapi.cn");
        assert_eq!(
            s.auth,
            Auth::SharedKey {
                account: "acct".into(),
                key: Secret(key.clone())
            }
        );
        // Keys are case-insensitive, spaces and empty parts ignored; the
        // default suffix and protocol.
        let s =
            settings_from_connection_string(&format!(" accountname = acct ;; ACCOUNTKEY={key} ;"))
                .unwrap();
        assert_eq!(s.endpoint, "https://acct.blob.core.windows.net");
        let s = settings_from_connection_string(&format!(
            "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key}"
        ))
        .unwrap();
        assert_eq!(s.endpoint, "http://acct.blob.core.windows.net");
        // BlobEndpoint wins over the account's default; a SAS over a key.
        let s = settings_from_connection_string(&format!(
            "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1/;AccountName=devstoreaccount1;\
             AccountKey={key};SharedAccessSignature=?sv=2024-08-04&sig=a%2Bb="
        ))
        .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:9/devstoreaccount1");
        assert_eq!(s.auth, Auth::Sas(Secret("sv=2024-08-04&sig=a%2Bb=".into())));
        assert!(!format!("{s:?}").contains("sig="), "{s:?}");
        // A SAS needs no account name.
        let s = settings_from_connection_string(
            "BlobEndpoint=https://x.example/;SharedAccessSignature=sv=1&sig=z",
        )
        .unwrap();
        assert_eq!(s.endpoint, "https://x.example");
        let s = settings_from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        let moved = settings_from_connection_string(
            "UseDevelopmentStorage=true;BlobEndpoint=http://127.0.0.1:7/devstoreaccount1/",
        )
        .unwrap();
        assert_eq!(moved.endpoint, "http://127.0.0.1:7/devstoreaccount1");
        assert_eq!(moved.auth, s.auth);
        assert_eq!(
            s.auth,
            Auth::SharedKey {
                account: DEV_ACCOUNT.into(),
                key: Secret(DEV_KEY.into())
            }
        );
        for (bad, says) in [
            ("AccountName=acct", "neither AccountKey"),
            ("AccountKey=QUJD", "neither AccountName"),
            ("BlobEndpoint=http://h;AccountKey=QUJD", "no AccountName"),
            ("AccountName=a;AccountKey=not base64!", "not base64"),
            ("AccountName=a;secretwithoutequals", "not Key=Value"),
            (
                "DefaultEndpointsProtocol=ftp;AccountName=a;AccountKey=QUJD",
                "ftp",
            ),
        ] {
            match settings_from_connection_string(bad) {
                Err(Error::Config { why, .. }) => {
                    assert!(why.contains(says), "{bad}: {why}");
                    assert!(!why.contains("secretwithoutequals"), "{why}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn credentials_in_order() {
        let key = BASE64.encode(b"k");
        let all = [
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                "UseDevelopmentStorage=true",
            ),
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=s"),
            ("AZURE_STORAGE_KEY", key.as_str()),
            ("AZURE_STORAGE_ACCESS_KEY", "QUJD"),
            ("AZURE_STORAGE_BLOB_ENDPOINT", "http://127.0.0.1:1/acct/"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:2/token"),
            ("IDENTITY_HEADER", "h"),
        ];
        let from = |n: usize| Settings::resolve(&env_of(&all[n..])).unwrap();
        let s = from(0);
        assert_eq!(s.endpoint, DEV_ENDPOINT);
        assert!(s.from.starts_with("AZURE_STORAGE_CONNECTION_STRING"));
        let s = from(1);
        assert_eq!(s.endpoint, "http://127.0.0.1:1/acct");
        assert_eq!(s.auth, Auth::Sas(Secret("sv=1&sig=s".into())));
        let s = Settings::resolve(&env_of(&[all[1], all[3], all[4]])).unwrap();
        assert_eq!(s.endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(
            s.auth,
            Auth::SharedKey {
                account: "acct".into(),
                key: Secret(key.clone())
            }
        );
        assert!(s.from.starts_with("AZURE_STORAGE_KEY of account acct"));
        // WAL-G's name.
        let s = Settings::resolve(&env_of(&[all[1], all[4]])).unwrap();
        assert!(s.from.starts_with("AZURE_STORAGE_ACCESS_KEY"), "{}", s.from);
        // Then App Service's identity endpoint, then IMDS.
        let s = Settings::resolve(&env_of(&[all[1], all[6], all[7]])).unwrap();
        assert!(matches!(
            s.auth,
            Auth::ManagedIdentity { identity: Identity::AppService { ref endpoint, .. }, .. }
                if endpoint == "http://127.0.0.1:2/token"
        ));
        let s = Settings::resolve(&env_of(&[all[1], ("AZURE_CLIENT_ID", "cid")])).unwrap();
        match s.auth {
            Auth::ManagedIdentity {
                identity:
                    Identity::Imds {
                        endpoint,
                        client_id,
                    },
                tried,
            } => {
                assert_eq!(
                    endpoint,
                    "http://169.254.169.254/metadata/identity/oauth2/token"
                );
                assert_eq!(client_id.as_deref(), Some("cid"));
                assert_eq!(tried.len(), 4, "{tried:?}");
            }
            other => panic!("{other:?}"),
        }
        let s = Settings::resolve(&env_of(&[
            all[1],
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:3/"),
        ]))
        .unwrap();
        assert!(
            s.from
                .contains("http://127.0.0.1:3/metadata/identity/oauth2/token")
        );
        // Half configured, or nothing at all.
        for (env, says) in [
            (vec![all[3]], "no Azure storage account"),
            (vec![all[3], all[5]], "AZURE_STORAGE_ACCOUNT is not"),
            (vec![all[1], ("AZURE_STORAGE_KEY", "%%")], "not base64"),
            (vec![], "AZURE_STORAGE_CONNECTION_STRING"),
        ] {
            match Settings::resolve(&env_of(&env)) {
                Err(Error::Config { why, .. }) => assert!(why.contains(says), "{why}"),
                other => panic!("{env:?}: {other:?}"),
            }
        }
    }

    /// Microsoft's own example of a string to sign, for a path-style
    /// (emulator) request: "Authorize with Shared Key", section
    /// "Constructing the canonicalized resource string" and the Set
    /// Container Metadata example
    /// (<https://learn.microsoft.com/en-us/rest/api/storageservices/authorize-with-shared-key>).
    #[test]
    fn the_string_to_sign_of_microsofts_example() {
        let sts = string_to_sign(
            "GET",
            &[
                ("x-ms-date", "Sun, 11 Oct 2009 21:49:13 GMT"),
                ("x-ms-version", "2009-09-19"),
                ("Content-Length", "0"),
            ],
            "myaccount",
            "/myaccount/mycontainer",
            &[
                ("restype", "container"),
                ("comp", "metadata"),
                ("timeout", "20"),
            ],
        );
        assert_eq!(
            sts,
            "GET\n\n\n\n\n\n\n\n\n\n\n\n\
             x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\nx-ms-version:2009-09-19\n\
             /myaccount/myaccount/mycontainer\ncomp:metadata\nrestype:container\ntimeout:20"
        );
    }

    /// A signature computed by an independent implementation (Python's
    /// hmac and base64 over the same string, checked against Azurite)
    /// for the development account's published key.
    #[test]
    fn shared_key_signatures() {
        let sts = string_to_sign(
            "PUT",
            &[
                ("x-ms-date", "Sun, 06 Dec 2026 16:00:00 GMT"),
                ("x-ms-version", API_VERSION),
                ("Content-Length", "5"),
                ("Content-Type", "application/octet-stream"),
                ("x-ms-blob-type", "BlockBlob"),
            ],
            DEV_ACCOUNT,
            "/devstoreaccount1/wal/a/b",
            &[],
        );
        assert_eq!(
            sts,
            "PUT\n\n\n5\n\napplication/octet-stream\n\n\n\n\n\n\n\
             x-ms-blob-type:BlockBlob\nx-ms-date:Sun, 06 Dec 2026 16:00:00 GMT\n\
             x-ms-version:2024-08-04\n/devstoreaccount1/devstoreaccount1/wal/a/b"
        );
        assert_eq!(sign(DEV_KEY, &sts).unwrap(), PYTHON_SIGNATURE);
    }
    const PYTHON_SIGNATURE: &str = "KGPzAZ/UGlBkYeJyJrbyBN9+DaoFfLcAnm0MUaAW7is=";

    #[test]
    fn list_pages() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\
            <EnumerationResults ServiceEndpoint=\"http://h/\" ContainerName=\"wal\">\
            <Prefix>a/</Prefix><MaxResults>2</MaxResults><Delimiter>/</Delimiter><Blobs>\
            <Blob><Name>a/x&amp;y</Name><Properties><Creation-Time>t</Creation-Time>\
            <Content-Length>16</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>\
            <BlobPrefix><Name>a/sub/</Name></BlobPrefix>\
            <Blob><Name>a/z</Name><Properties><Content-Length>0</Content-Length></Properties>\
            <OrMetadata /></Blob></Blobs><NextMarker>2!8!abc=</NextMarker></EnumerationResults>";
        let p = parse_list_page(body).unwrap();
        assert_eq!(p.objects, vec![("a/x&y".into(), 16), ("a/z".into(), 0)]);
        assert_eq!(p.next.as_deref(), Some("2!8!abc="));
        let last = body.replace("<NextMarker>2!8!abc=</NextMarker>", "<NextMarker />");
        assert_eq!(parse_list_page(&last).unwrap().next, None);
        assert!(parse_list_page("<Error><Code>x</Code></Error>").is_none());
    }

    #[test]
    fn tokens_and_secrets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = token_from_json(
            r#"{"access_token":"eyJ0","client_id":"c","expires_in":"86399",
               "expires_on":"1506484173","resource":"https://storage.azure.com/","token_type":"Bearer"}"#,
            "x",
            now,
        )
        .unwrap();
        assert_eq!(t.value, Secret("eyJ0".into()));
        assert_eq!(
            t.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1506484173))
        );
        let t = token_from_json(r#"{"access_token":"a","expires_in":"60"}"#, "x", now).unwrap();
        assert_eq!(t.expires, Some(now + Duration::from_secs(60)));
        let t = token_from_json(r#"{"access_token":"a","expires_in":60}"#, "x", now).unwrap();
        assert_eq!(t.expires, Some(now + Duration::from_secs(300)));
        for bad in [
            r#"{"access_token":""}"#,
            "{}",
            "<html>",
            r#"{"error":"invalid"}"#,
        ] {
            let e = token_from_json(bad, "x", now).err().unwrap().to_string();
            assert!(!e.contains("invalid"), "{e}");
        }
        assert_eq!(format!("{:?}", Secret("k".into())), "Secret(redacted)");
        assert_eq!(
            redact("GET http://h/c/b?sv=1&sig=abc%2B&se=2 failed; sig=z"),
            "GET http://h/c/b?sv=1&sig=REDACTED&se=2 failed; sig=REDACTED"
        );
    }

    #[test]
    fn store_crosses_threads() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
    }

    #[test]
    fn endpoints_and_paths() {
        let env = env_of(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "UseDevelopmentStorage=true",
        )]);
        let s = Store::from_url_with("azure://wal/main", &env, Timeouts::default()).unwrap();
        assert_eq!(s.base_path, "/devstoreaccount1");
        assert_eq!(
            s.blob_path("0000000100000000000000A1"),
            "/wal/main/0000000100000000000000A1"
        );
        assert_eq!(s.blob_path("a b+c"), "/wal/main/a%20b%2Bc");
        assert_eq!(ObjectStore::location(&s), "azure://wal/main/");
        for bad in ["ftp://h", "http://", "http://h?x"] {
            let settings = Settings {
                endpoint: bad.into(),
                auth: Auth::Sas(Secret("s".into())),
                from: String::new(),
            };
            let loc = Location::parse("azure://wal").unwrap();
            assert!(
                Store::new(loc, settings, Timeouts::default(), &env_of(&[])).is_err(),
                "{bad}"
            );
        }
    }
}
