//! Where the S3 credentials come from: the chain the AWS SDKs document
//! ("Standardized credential providers" of the AWS SDKs and Tools
//! reference guide), in this order:
//!
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+
//!    `AWS_ROLE_SESSION_NAME`), exchanged at STS (AssumeRoleWithWebIdentity:
//!    EKS's IAM roles for service accounts); the file is read again at each
//!    exchange, since the kubelet rotates it;
//! 3. the profile of the shared files: `role_arn` + `web_identity_token_file`,
//!    keys in the credentials file, `credential_process`, keys in the
//!    config file;
//! 4. container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (ECS)
//!    or `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` / `_TOKEN` (EKS Pod Identity);
//! 5. instance metadata, IMDSv2 only (a session token first), unless
//!    `AWS_EC2_METADATA_DISABLED=true`; `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//!    moves it.
//!
//! Choosing a source reads only the environment and the files ([`choose`]);
//! nothing is fetched until the first request needs credentials, so a
//! call with keys in the environment costs what it did. Secrets never
//! reach a message: [`Keys`] prints redacted, and answers of credential
//! endpoints are never quoted.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::archive::store::Error;
use crate::archive::store::credentials::Expiring;

/// The keys that sign a request.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(redacted)")
    }
}

pub use crate::archive::store::credentials::Secret;

/// The source the chain chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Long-lived keys (or keys with a session token) given as they are.
    Static { keys: Keys, from: String },
    /// A web identity token exchanged at STS.
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
        sts: String,
        from: String,
    },
    /// A program that prints credentials (`credential_process`).
    Process { command: String, from: String },
    /// A role assumed at STS with the credentials of another source
    /// (`role_arn` with `source_profile` or `credential_source`).
    AssumeRole {
        role_arn: String,
        session_name: String,
        external_id: Option<String>,
        sts: String,
        region: String,
        base: Box<Source>,
        from: String,
    },
    /// The ECS or EKS Pod Identity agent's endpoint.
    Container {
        url: String,
        token: Option<Secret>,
        token_file: Option<PathBuf>,
    },
    /// The EC2 instance metadata service. `tried` says why the sources
    /// before it did not apply, for the error when it does not answer
    /// either.
    InstanceMetadata {
        endpoint: String,
        tried: Vec<String>,
    },
}

/// The profile of the shared files, as read.
pub struct Profile<'a> {
    pub name: &'a str,
    pub credentials: &'a HashMap<String, String>,
    pub config: &'a HashMap<String, String>,
    pub credentials_path: String,
    pub config_path: String,
    /// Another profile's sections, for `source_profile`.
    pub other: &'a dyn Fn(&str) -> Option<Sections>,
}

/// A profile's sections: in the credentials file, in the config file.
pub type Sections = (HashMap<String, String>, HashMap<String, String>);

/// Where the instance metadata service is unless told otherwise.
const IMDS_DEFAULT: &str = "http://169.254.169.254";
/// Where ECS serves `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_HOST: &str = "http://169.254.170.2";
/// Hosts a container credentials URL may name over plain http (the AWS
/// SDKs allow loopback and the ECS and EKS Pod Identity agents only).
const CONTAINER_HTTP_HOSTS: [&str; 3] = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"];

/// Picks the first source of the chain that applies (see the module
/// documentation). `Err` only for a source that is half configured.
pub fn choose(
    var: &dyn Fn(&str) -> Option<String>,
    region: &str,
    profile: &Profile<'_>,
) -> Result<Source, Error> {
    let mut tried = Vec::new();
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key), Some(secret_key)) => {
            return Ok(Source::Static {
                keys: Keys {
                    access_key,
                    secret_key,
                    session_token: var("AWS_SESSION_TOKEN"),
                },
                from: "the environment (AWS_ACCESS_KEY_ID)".into(),
            });
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::config(
                "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set".into(),
            ));
        }
        (None, None) => tried.push("environment: AWS_ACCESS_KEY_ID is not set".to_string()),
    }
    let sts = sts_endpoint(var, region);
    match (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN")) {
        (Some(file), Some(role_arn)) => {
            return Ok(Source::WebIdentity {
                token_file: file.into(),
                role_arn,
                session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(default_session_name),
                sts,
                from: "the environment (AWS_WEB_IDENTITY_TOKEN_FILE)".into(),
            });
        }
        (Some(_), None) => {
            return Err(Error::config(
                "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not".into(),
            ));
        }
        _ => tried.push("web identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set".into()),
    }
    if let Some(source) = from_profile(var, region, profile, &sts)? {
        return Ok(source);
    }
    tried.push(format!(
        "profile \"{}\": no keys, role or credential_process in {} or {}",
        profile.name, profile.credentials_path, profile.config_path
    ));
    if let Some(relative) = var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        return Ok(Source::Container {
            url: format!("{ECS_HOST}{relative}"),
            token: None,
            token_file: None,
        });
    }
    if let Some(url) = var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        container_url_allowed(&url)?;
        return Ok(Source::Container {
            url,
            token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(Secret),
            token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
        });
    }
    tried
        .push("container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set".into());
    if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        tried.push("instance metadata: AWS_EC2_METADATA_DISABLED is true".into());
        return Err(no_credentials(&tried));
    }
    Ok(Source::InstanceMetadata {
        endpoint: var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| IMDS_DEFAULT.into())
            .trim_end_matches('/')
            .to_string(),
        tried,
    })
}

fn no_credentials(tried: &[String]) -> Error {
    Error::config(format!(
        "no credentials found; tried, in order: {}",
        tried.join("; ")
    ))
}

fn default_session_name() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("pg_standby-{secs}")
}

/// STS as the SDKs reach it: `AWS_ENDPOINT_URL_STS`, then the global
/// `AWS_ENDPOINT_URL`, then the regional endpoint (the SDKs' default).
fn sts_endpoint(var: &dyn Fn(&str) -> Option<String>, region: &str) -> String {
    var("AWS_ENDPOINT_URL_STS")
        .or_else(|| var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
        .trim_end_matches('/')
        .to_string()
}

fn from_profile(
    var: &dyn Fn(&str) -> Option<String>,
    region: &str,
    profile: &Profile<'_>,
    sts: &str,
) -> Result<Option<Source>, Error> {
    let get = |k: &str| {
        profile
            .credentials
            .get(k)
            .or_else(|| profile.config.get(k))
            .cloned()
    };
    let name = profile.name;
    if let Some(role_arn) = get("role_arn") {
        if let Some(file) = get("web_identity_token_file") {
            return Ok(Some(Source::WebIdentity {
                token_file: file.into(),
                role_arn,
                session_name: get("role_session_name").unwrap_or_else(default_session_name),
                sts: sts.to_string(),
                from: format!("profile \"{name}\" (web_identity_token_file)"),
            }));
        }
        let base = match (get("source_profile"), get("credential_source")) {
            (Some(source), _) => source_profile(profile, &source)?,
            (None, Some(source)) => credential_source(var, &source, name)?,
            (None, None) => {
                return Err(Error::config(format!(
                    "profile \"{name}\" has role_arn but no source_profile, credential_source \
                     or web_identity_token_file"
                )));
            }
        };
        return Ok(Some(Source::AssumeRole {
            role_arn,
            session_name: get("role_session_name").unwrap_or_else(default_session_name),
            external_id: get("external_id"),
            sts: sts.to_string(),
            region: region.to_string(),
            base: Box::new(base),
            from: format!("profile \"{name}\" (role_arn)"),
        }));
    }
    let keys_in = |section: &HashMap<String, String>| {
        Some(Keys {
            access_key: section.get("aws_access_key_id")?.clone(),
            secret_key: section.get("aws_secret_access_key")?.clone(),
            session_token: section.get("aws_session_token").cloned(),
        })
    };
    if let Some(keys) = keys_in(profile.credentials) {
        return Ok(Some(Source::Static {
            keys,
            from: format!("profile \"{name}\" of {}", profile.credentials_path),
        }));
    }
    if let Some(command) = get("credential_process") {
        return Ok(Some(Source::Process {
            command,
            from: format!("profile \"{name}\" (credential_process)"),
        }));
    }
    if let Some(keys) = keys_in(profile.config) {
        return Ok(Some(Source::Static {
            keys,
            from: format!("profile \"{name}\" of {}", profile.config_path),
        }));
    }
    Ok(None)
}

/// The keys of the profile a `source_profile` names (one level: the AWS
/// CLI's chains of roles are not followed).
fn source_profile(profile: &Profile<'_>, source: &str) -> Result<Source, Error> {
    let name = profile.name;
    let (creds, config) = (profile.other)(source).ok_or_else(|| {
        Error::config(format!(
            "profile \"{name}\" names source_profile \"{source}\", found neither in {} nor in {}",
            profile.credentials_path, profile.config_path
        ))
    })?;
    let keys_in = |section: &HashMap<String, String>| {
        Some(Keys {
            access_key: section.get("aws_access_key_id")?.clone(),
            secret_key: section.get("aws_secret_access_key")?.clone(),
            session_token: section.get("aws_session_token").cloned(),
        })
    };
    let keys = keys_in(&creds)
        .or_else(|| keys_in(&config))
        .ok_or_else(|| {
            Error::config(format!(
                "source_profile \"{source}\" of profile \"{name}\" has no aws_access_key_id and \
             aws_secret_access_key (chains of roles are not supported)"
            ))
        })?;
    Ok(Source::Static {
        keys,
        from: format!("profile \"{source}\""),
    })
}

/// `credential_source`: where the keys that assume the role come from.
fn credential_source(
    var: &dyn Fn(&str) -> Option<String>,
    source: &str,
    name: &str,
) -> Result<Source, Error> {
    match source {
        "Environment" => match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key), Some(secret_key)) => Ok(Source::Static {
                keys: Keys {
                    access_key,
                    secret_key,
                    session_token: var("AWS_SESSION_TOKEN"),
                },
                from: "the environment (AWS_ACCESS_KEY_ID)".into(),
            }),
            _ => Err(Error::config(format!(
                "profile \"{name}\": credential_source = Environment, but \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"
            ))),
        },
        "Ec2InstanceMetadata" => Ok(Source::InstanceMetadata {
            endpoint: var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or_else(|| IMDS_DEFAULT.into())
                .trim_end_matches('/')
                .to_string(),
            tried: Vec::new(),
        }),
        "EcsContainer" => match (
            var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        ) {
            (Some(relative), _) => Ok(Source::Container {
                url: format!("{ECS_HOST}{relative}"),
                token: None,
                token_file: None,
            }),
            (None, Some(url)) => {
                container_url_allowed(&url)?;
                Ok(Source::Container {
                    url,
                    token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(Secret),
                    token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
                })
            }
            (None, None) => Err(Error::config(format!(
                "profile \"{name}\": credential_source = EcsContainer, but no container \
                 credentials variable is set"
            ))),
        },
        other => Err(Error::config(format!(
            "profile \"{name}\": credential_source = {other} is not one of Environment, \
             Ec2InstanceMetadata, EcsContainer"
        ))),
    }
}

/// Plain http only to loopback and the ECS/EKS agents, as the SDKs allow.
fn container_url_allowed(url: &str) -> Result<(), Error> {
    let parsed: url::Url = url.parse().map_err(|e| {
        Error::config(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI \"{url}\" is malformed: {e}"
        ))
    })?;
    let host = parsed.host_str().unwrap_or("").trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || CONTAINER_HTTP_HOSTS.contains(&host) => Ok(()),
        _ => Err(Error::config(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI \"{url}\" must be https, or http to a \
             loopback address or the ECS/EKS agent"
        ))),
    }
}

impl Source {
    /// Which source supplied the credentials, for messages and `--check`
    /// (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Source::Static { from, .. } => from.clone(),
            Source::WebIdentity {
                role_arn,
                sts,
                from,
                ..
            } => format!("{from}: role {role_arn} through STS at {sts}"),
            Source::Process { from, .. } => from.clone(),
            Source::AssumeRole {
                role_arn,
                sts,
                base,
                from,
                ..
            } => format!(
                "{from}: role {role_arn} through STS at {sts}, assumed with {}",
                base.describe()
            ),
            Source::Container { url, .. } => format!("container credentials at {url}"),
            Source::InstanceMetadata { endpoint, .. } => {
                format!("instance metadata (IMDSv2) at {endpoint}")
            }
        }
    }

    /// Keys that never change need no fetching and no cache.
    pub fn fixed(&self) -> Option<&Keys> {
        match self {
            Source::Static { keys, .. } => Some(keys),
            _ => None,
        }
    }

    /// Fetches credentials from this source. `proxy` is the proxy for
    /// STS, if any (metadata endpoints are always reached directly).
    pub fn fetch(&self, proxy: Option<&str>) -> Result<Expiring<Keys>, Error> {
        match self {
            Source::Static { keys, .. } => Ok(Expiring {
                value: keys.clone(),
                expires: None,
            }),
            Source::WebIdentity {
                token_file,
                role_arn,
                session_name,
                sts,
                ..
            } => web_identity(token_file, role_arn, session_name, sts, proxy),
            Source::Process { command, from } => process(command, from),
            Source::AssumeRole {
                role_arn,
                session_name,
                external_id,
                sts,
                region,
                base,
                ..
            } => {
                let keys = base.fetch(proxy)?.value;
                assume_role(
                    &keys,
                    role_arn,
                    session_name,
                    external_id.as_deref(),
                    sts,
                    region,
                    proxy,
                )
            }
            Source::Container {
                url,
                token,
                token_file,
            } => container(
                url,
                token.as_ref().map(|t| t.0.as_str()),
                token_file.as_ref(),
            ),
            Source::InstanceMetadata { endpoint, tried } => instance_metadata(endpoint, tried),
        }
    }
}

/// A client for one credential endpoint: short limits, never a proxy
/// unless given, never a redirect.
fn agent(connect: Duration, answer: Duration, proxy: Option<&str>) -> ureq::Agent {
    let proxy = proxy.and_then(|p| ureq::Proxy::new(p).ok());
    crate::archive::store::http::endpoint_agent(connect, answer, proxy)
}

/// Credential documents are small; never read more than this of one.
const ANSWER_LIMIT: u64 = 64 * 1024;

/// The status and body of an answer; transport failures are transient
/// (the endpoint is configured, so it is expected to come back).
fn answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
) -> Result<(u16, String), Error> {
    let resp = result.map_err(|e| Error::Transient(format!("{what}: {e}")))?;
    let status = resp.status().as_u16();
    let body = crate::archive::store::http::read_text(resp, ANSWER_LIMIT, what)?;
    Ok((status, body))
}

/// An HTTP status from a credential endpoint onto the exit contract:
/// throttling and server errors may pass, the rest is configuration.
fn endpoint_status(status: u16, what: &str) -> Error {
    match status {
        408 | 429 | 500..=599 => Error::Transient(format!("{what}: HTTP {status}")),
        _ => Error::config(format!("{what}: HTTP {status}")),
    }
}

/// An `Expiration` as the endpoints write it (RFC 3339).
fn expiration(text: Option<&String>, what: &str) -> Result<Option<SystemTime>, Error> {
    let Some(text) = text else { return Ok(None) };
    let ts: jiff::Timestamp = text
        .parse()
        .map_err(|_| Error::config(format!("{what}: the Expiration is not a timestamp")))?;
    Ok(Some(SystemTime::from(ts)))
}

/// The keys of a JSON credentials document; `token_field` names the
/// session token (`Token` from metadata endpoints, `SessionToken` from a
/// credential_process).
fn keys_from_json(body: &str, token_field: &str, what: &str) -> Result<Expiring<Keys>, Error> {
    let m = crate::archive::store::json::string_members(body)
        .map_err(|e| Error::config(format!("{what}: malformed answer ({e})")))?;
    let field = |k: &str| {
        m.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| Error::config(format!("{what}: the answer has no {k}")))
    };
    Ok(Expiring {
        value: Keys {
            access_key: field("AccessKeyId")?,
            secret_key: field("SecretAccessKey")?,
            session_token: m.get(token_field).filter(|v| !v.is_empty()).cloned(),
        },
        expires: expiration(m.get("Expiration"), what)?,
    })
}

fn web_identity(
    token_file: &PathBuf,
    role_arn: &str,
    session_name: &str,
    sts: &str,
    proxy: Option<&str>,
) -> Result<Expiring<Keys>, Error> {
    let what = format!("AssumeRoleWithWebIdentity at {sts}");
    let token = std::fs::read_to_string(token_file).map_err(|e| {
        Error::config(format!(
            "{what}: cannot read the web identity token file {}: {e}",
            token_file.display()
        ))
    })?;
    let body = form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", token.trim()),
    ]);
    let result = agent(Duration::from_secs(2), Duration::from_secs(10), proxy)
        .post(&format!("{sts}/"))
        .header("Content-Type", FORM)
        .send(body.as_bytes());
    sts_answer(
        result,
        &what,
        "check the role's trust policy for this token's issuer",
    )
}

/// AssumeRole, signed (SigV4, service `sts`) with `keys`.
fn assume_role(
    keys: &Keys,
    role_arn: &str,
    session_name: &str,
    external_id: Option<&str>,
    sts: &str,
    region: &str,
    proxy: Option<&str>,
) -> Result<Expiring<Keys>, Error> {
    let what = format!("AssumeRole at {sts}");
    let mut params = vec![
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
    ];
    if let Some(id) = external_id {
        params.push(("ExternalId", id));
    }
    let body = form(&params);
    let url: url::Url = format!("{sts}/")
        .parse()
        .map_err(|e| Error::config(format!("{what}: the STS URL is malformed: {e}")))?;
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    };
    let now = jiff::Timestamp::now();
    let signed = sigv4_sts(keys, region, &host, &now, body.as_bytes());
    let mut req = agent(Duration::from_secs(2), Duration::from_secs(10), proxy)
        .post(url.as_str())
        .header("Content-Type", FORM)
        .header("X-Amz-Date", &signed.date)
        .header("Authorization", &signed.authorization);
    if let Some(token) = &keys.session_token {
        req = req.header("X-Amz-Security-Token", token);
    }
    sts_answer(
        req.send(body.as_bytes()),
        &what,
        "check the role's trust policy and the source credentials' permission to assume it",
    )
}

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The credentials in an STS answer, or its error sorted for the exit
/// contract.
fn sts_answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
    hint: &str,
) -> Result<Expiring<Keys>, Error> {
    use crate::archive::store::xml::field as xml_field;
    let (status, text) = answer(result, what)?;
    if status != 200 {
        let code = xml_field(&text, "Code").unwrap_or_default();
        let message = xml_field(&text, "Message").unwrap_or_default();
        let detail = format!("{what}: HTTP {status} {code} {message}");
        return Err(match (status, code.as_str()) {
            // A web identity token file is rotated before it expires: read
            // it again at the next attempt. STS's own trouble passes too.
            (_, "ExpiredTokenException" | "IDPCommunicationError" | "Throttling")
            | (500..=599, _) => Error::Transient(detail),
            _ => Error::config(format!("{detail} ({hint})")),
        });
    }
    let creds = xml_field(&text, "Credentials").unwrap_or_default();
    let field = |k: &str| {
        xml_field(&creds, k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::config(format!("{what}: malformed answer: no {k}")))
    };
    Ok(Expiring {
        value: Keys {
            access_key: field("AccessKeyId")?,
            secret_key: field("SecretAccessKey")?,
            session_token: Some(field("SessionToken")?),
        },
        expires: expiration(Some(&field("Expiration")?), what)?,
    })
}

struct Signed {
    date: String,
    authorization: String,
}

/// SigV4 for a form POST to STS ("Signature Version 4 signing process",
/// AWS General Reference): the signed headers are content-type, host,
/// x-amz-date and, with a session token, x-amz-security-token.
fn sigv4_sts(keys: &Keys, region: &str, host: &str, now: &jiff::Timestamp, body: &[u8]) -> Signed {
    use hmac::{KeyInit as _, Mac as _};
    use sha2::Digest as _;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let hmac = |key: &[u8], data: &[u8]| -> Vec<u8> {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    };
    let date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let day = &date[..8];
    let mut headers = vec![
        ("content-type", FORM.to_string()),
        ("host", host.to_string()),
        ("x-amz-date", date.clone()),
    ];
    if let Some(t) = &keys.session_token {
        headers.push(("x-amz-security-token", t.clone()));
    }
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex(&sha2::Sha256::digest(body))
    );
    let scope = format!("{day}/{region}/sts/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    let key = hmac(
        format!("AWS4{}", keys.secret_key).as_bytes(),
        day.as_bytes(),
    );
    let key = hmac(&key, region.as_bytes());
    let key = hmac(&key, b"sts");
    let key = hmac(&key, b"aws4_request");
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            keys.access_key
        ),
        date,
    }
}

fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How long a credential_process may run.
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

fn process(command: &str, from: &str) -> Result<Expiring<Keys>, Error> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;
    let what = format!("credential_process of {from}");
    // The SDKs run it through the shell on Unix. A group of its own: at the
    // deadline the whole group goes, helpers it left running included
    // (they would hold its output open).
    let mut child = Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::config(format!("{what}: cannot run /bin/sh: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let (done, output) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stdout).take(ANSWER_LIMIT).read_to_end(&mut out);
        let _ = done.send(out);
    });
    let deadline = std::time::Instant::now() + PROCESS_LIMIT;
    let timed_out = |child: &mut std::process::Child| {
        // SAFETY: signalling the process group this function created.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = child.wait();
        Error::Transient(format!(
            "{what}: did not finish within {} s",
            PROCESS_LIMIT.as_secs()
        ))
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return Err(timed_out(&mut child)),
        }
    };
    // Whatever it left running in its group would keep its output open.
    // SAFETY: signalling the process group this function created.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let Ok(out) = output.recv_timeout(Duration::from_secs(1)) else {
        return Err(Error::Transient(format!(
            "{what}: its output stayed open after it exited"
        )));
    };
    if !status.success() {
        // Its stderr is not ours to log: helpers print tokens and URLs
        // with tokens in them.
        let why = format!(
            "{what}: {status} (its own output is not logged: run it by hand as the server's \
             user to see why)"
        );
        // Not found or not executable will not get better by waiting; a
        // helper's own failure (its vault unreachable) may.
        return Err(match status.code() {
            Some(126 | 127) => Error::config(why),
            _ => Error::Transient(why),
        });
    }
    let text = String::from_utf8(out)
        .map_err(|_| Error::config(format!("{what}: its output is not UTF-8")))?;
    keys_from_json(&text, "SessionToken", &what)
}

fn container(
    url: &str,
    token: Option<&str>,
    token_file: Option<&PathBuf>,
) -> Result<Expiring<Keys>, Error> {
    let what = format!("container credentials at {url}");
    // The file wins: EKS rotates it.
    let token = match token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| {
                    Error::config(format!(
                        "{what}: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {}: {e}",
                        f.display()
                    ))
                })?
                .trim()
                .to_string(),
        ),
        None => token.map(str::to_string),
    };
    let mut req = agent(Duration::from_secs(2), Duration::from_secs(5), None).get(url);
    if let Some(t) = &token {
        req = req.header("Authorization", t);
    }
    let (status, body) = answer(req.call(), &what)?;
    if status != 200 {
        return Err(endpoint_status(status, &what));
    }
    keys_from_json(&body, "Token", &what)
}

/// IMDSv2 session tokens asked for: 6 hours, the maximum.
const IMDS_TOKEN_TTL: &str = "21600";

fn instance_metadata(endpoint: &str, tried: &[String]) -> Result<Expiring<Keys>, Error> {
    let what = format!("instance metadata at {endpoint}");
    // Short: on a host without a metadata service (a laptop, bare metal)
    // the first call must not wait long to learn so. No retries.
    let agent = agent(Duration::from_secs(1), Duration::from_secs(2), None);
    let token = match agent
        .put(&format!("{endpoint}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL)
        .send(&[][..])
    {
        // Nothing listens there (a laptop, bare metal): no instance role
        // to fall back on.
        Err(e) if crate::archive::store::credentials::nothing_listens(&e) => {
            let mut tried = tried.to_vec();
            tried.push(format!(
                "instance metadata: nothing answers at {endpoint} ({e})"
            ));
            return Err(no_credentials(&tried));
        }
        // Something listens but did not answer in time: a metadata service
        // under load is waited out like the store.
        Err(e) => return Err(Error::Transient(format!("{what}: {e}"))),
        Ok(resp) => {
            let (status, body) = answer(Ok(resp), &what)?;
            if status != 200 {
                return Err(endpoint_status(status, &format!("{what}: session token")));
            }
            body.trim().to_string()
        }
    };
    let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let get = |url: &str| {
        answer(
            agent
                .get(url)
                .header("X-aws-ec2-metadata-token", &token)
                .call(),
            &what,
        )
    };
    let (status, roles) = get(&base)?;
    match status {
        200 => {}
        404 => {
            return Err(Error::config(format!(
                "{what}: this instance has no IAM role (attach an instance profile, or give \
                 the standby credentials another way)"
            )));
        }
        s => return Err(endpoint_status(s, &what)),
    }
    let role = roles.lines().next().unwrap_or("").trim();
    if role.is_empty() || role.contains('/') {
        return Err(Error::config(format!(
            "{what}: malformed answer: no role name"
        )));
    }
    let (status, body) = get(&format!("{base}{role}"))?;
    if status != 200 {
        return Err(endpoint_status(status, &what));
    }
    keys_from_json(&body, "Token", &what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::store::env_of;

    type Section = HashMap<String, String>;

    fn prof<'a>(
        empty: &'a Section,
        config: &'a Section,
        other: &'a dyn Fn(&str) -> Option<Sections>,
    ) -> Profile<'a> {
        Profile {
            name: "default",
            credentials: empty,
            config,
            credentials_path: "C".into(),
            config_path: "K".into(),
            other,
        }
    }

    fn section(pairs: &[(&str, &str)]) -> Section {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kind(s: &Source) -> &'static str {
        match s {
            Source::Static { .. } => "static",
            Source::WebIdentity { .. } => "web identity",
            Source::Process { .. } => "process",
            Source::AssumeRole { .. } => "assume role",
            Source::Container { .. } => "container",
            Source::InstanceMetadata { .. } => "imds",
        }
    }

    /// Which source wins, row by row: the environment, then the profile
    /// (credentials file, then config file), and what the chain answers.
    #[test]
    fn the_chain_in_order() {
        let keys = [("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")];
        let web = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ];
        let ecs = [(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/x",
        )];
        let eks = [
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/tok"),
        ];
        let off = [("AWS_EC2_METADATA_DISABLED", "true")];
        let file_keys = section(&[("aws_access_key_id", "F"), ("aws_secret_access_key", "G")]);
        let process = section(&[("credential_process", "/bin/creds")]);
        let role_web = section(&[
            ("role_arn", "arn:aws:iam::1:role/r"),
            ("web_identity_token_file", "/t2"),
        ]);
        let empty = HashMap::new();
        // (environment, credentials file section, config file section, chosen)
        type Row<'a> = (Vec<(&'a str, &'a str)>, &'a Section, &'a Section, &'a str);
        let table: Vec<Row> = vec![
            (
                [&keys[..], &web, &ecs].concat(),
                &file_keys,
                &process,
                "static",
            ),
            (
                [&web[..], &ecs].concat(),
                &file_keys,
                &empty,
                "web identity",
            ),
            (ecs.to_vec(), &file_keys, &empty, "static"),
            (ecs.to_vec(), &empty, &process, "process"),
            (ecs.to_vec(), &empty, &role_web, "web identity"),
            (ecs.to_vec(), &empty, &empty, "container"),
            ([&ecs[..], &eks].concat(), &empty, &empty, "container"),
            (eks.to_vec(), &empty, &empty, "container"),
            (vec![], &empty, &empty, "imds"),
            (vec![], &empty, &file_keys, "static"),
        ];
        for (env, creds, config, want) in table {
            let profile = Profile {
                name: "default",
                credentials: creds,
                config,
                credentials_path: "C".into(),
                config_path: "K".into(),
                other: &|_| None,
            };
            let got = choose(&env_of(&env), "eu-west-3", &profile).unwrap();
            assert_eq!(kind(&got), want, "{env:?}");
        }
        let profile = Profile {
            name: "default",
            credentials: &empty,
            config: &empty,
            credentials_path: "C".into(),
            config_path: "K".into(),
            other: &|_| None,
        };
        // The ECS relative URI goes to the ECS agent.
        let Source::Container { url, .. } = choose(&env_of(&ecs), "r", &profile).unwrap() else {
            panic!()
        };
        assert_eq!(url, "http://169.254.170.2/v2/credentials/x");
        // Nothing at all: the error lists every source and why.
        let Err(Error::Config { why: m, .. }) = choose(&env_of(&off), "r", &profile) else {
            panic!()
        };
        for part in [
            "environment",
            "web identity",
            "profile \"default\"",
            "container",
            "AWS_EC2_METADATA_DISABLED",
        ] {
            assert!(m.contains(part), "{m}");
        }
        // Half-configured sources are errors, not skipped.
        for half in [
            vec![("AWS_ACCESS_KEY_ID", "AK")],
            vec![("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")],
            vec![(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://10.0.0.1/creds",
            )],
            vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", "not a url")],
        ] {
            assert!(
                matches!(
                    choose(&env_of(&half), "r", &profile),
                    Err(Error::Config { why: _, .. })
                ),
                "{half:?}"
            );
        }
        // role_arn: assumed with the source profile's keys, or the source
        // named by credential_source; never silently something else.
        let role = section(&[
            ("role_arn", "arn:aws:iam::1:role/r"),
            ("source_profile", "base"),
        ]);
        let base_keys = section(&[("aws_access_key_id", "B"), ("aws_secret_access_key", "BS")]);
        let with_base = |name: &str| (name == "base").then(|| (base_keys.clone(), HashMap::new()));
        let assumed = prof(&empty, &role, &with_base);
        let Source::AssumeRole { base, .. } = choose(&env_of(&[]), "r", &assumed).unwrap() else {
            panic!()
        };
        assert_eq!(base.fixed().map(|k| k.access_key.as_str()), Some("B"));
        let no_base = prof(&empty, &role, &|_| None);
        assert!(
            matches!(choose(&env_of(&[]), "r", &no_base), Err(Error::Config { why, .. }) if why.contains("source_profile \"base\""))
        );
        for (source, env, want) in [
            ("Environment", &keys[..], "static"),
            ("Ec2InstanceMetadata", &[][..], "imds"),
            ("EcsContainer", &ecs[..], "container"),
        ] {
            let role = section(&[
                ("role_arn", "arn:aws:iam::1:role/r"),
                ("credential_source", source),
            ]);
            // Keys in the environment would win over the profile: the
            // Environment row names the profile explicitly instead.
            let env: Vec<(&str, &str)> = env
                .iter()
                .copied()
                .filter(|_| source != "Environment")
                .collect();
            let p = prof(&empty, &role, &|_| None);
            let chosen = if source == "Environment" {
                credential_source(&env_of(&keys), source, "p").unwrap()
            } else {
                let Source::AssumeRole { base, .. } = choose(&env_of(&env), "r", &p).unwrap()
                else {
                    panic!("{source}")
                };
                *base
            };
            assert_eq!(kind(&chosen), want, "{source}");
        }
        let bad = section(&[("role_arn", "arn"), ("credential_source", "Somewhere")]);
        assert!(choose(&env_of(&[]), "r", &prof(&empty, &bad, &|_| None)).is_err());
    }

    #[test]
    fn endpoints_for_sts_and_metadata() {
        let e = |pairs: &[(&str, &str)]| sts_endpoint(&env_of(pairs), "eu-west-3");
        assert_eq!(e(&[]), "https://sts.eu-west-3.amazonaws.com");
        assert_eq!(
            e(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:1/")]),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            e(&[
                ("AWS_ENDPOINT_URL", "http://a"),
                ("AWS_ENDPOINT_URL_STS", "http://b")
            ]),
            "http://b"
        );
        for ok in [
            "https://x.example/creds",
            "http://127.0.0.1:8/c",
            "http://localhost/c",
            "http://169.254.170.23/v1",
            "http://[::1]:9/c",
        ] {
            assert!(container_url_allowed(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.1.2.3/c",
            "http://example.com/c",
            "ftp://127.0.0.1/c",
        ] {
            assert!(container_url_allowed(bad).is_err(), "{bad}");
        }
    }

    /// The signature of an AssumeRole request, against the one botocore's
    /// SigV4Auth (an independent implementation) computes for the same
    /// request, keys and time.
    #[test]
    fn sts_requests_are_signed_as_the_aws_sdks_sign_them() {
        let keys = Keys {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("SESSIONTOKEN".into()),
        };
        let body = form(&[
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", "arn:aws:iam::123456789012:role/standby"),
            ("RoleSessionName", "s1"),
        ]);
        let now: jiff::Timestamp = "2026-12-04T17:28:30Z".parse().unwrap();
        let signed = sigv4_sts(&keys, "eu-west-3", "127.0.0.1:8080", &now, body.as_bytes());
        assert_eq!(signed.date, "20261204T172830Z");
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/eu-west-3/sts/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=29896caee7ee31c1d7b27c5743028ac0a39bd03652d015181d650d7df56b15e7"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Source::Static {
            keys: Keys {
                access_key: "AKIDSECRETLOOKING".into(),
                secret_key: "s3cr3t".into(),
                session_token: Some("tok3n".into()),
            },
            from: "the environment (AWS_ACCESS_KEY_ID)".into(),
        };
        let c = Source::Container {
            url: "http://127.0.0.1:1/creds".into(),
            token: Some(Secret("AKIDSECRETLOOKING".into())),
            token_file: None,
        };
        for text in [
            format!("{s:?}"),
            s.describe(),
            format!("{c:?}"),
            c.describe(),
        ] {
            for secret in ["s3cr3t", "tok3n", "AKIDSECRETLOOKING"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn credentials_documents() {
        let good = r#"{"Code":"Success","AccessKeyId":"AK","SecretAccessKey":"SK","Token":"T","Expiration":"2030-01-02T03:04:05Z"}"#;
        let k = keys_from_json(good, "Token", "w").unwrap();
        assert_eq!(k.value.session_token.as_deref(), Some("T"));
        assert_eq!(
            k.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_553_445))
        );
        let no_expiry = r#"{"Version":1,"AccessKeyId":"AK","SecretAccessKey":"SK"}"#;
        assert_eq!(
            keys_from_json(no_expiry, "SessionToken", "w")
                .unwrap()
                .expires,
            None
        );
        for bad in [
            "<html>",
            r#"{"AccessKeyId":"AK"}"#,
            r#"{"AccessKeyId":"AK","SecretAccessKey":""}"#,
            r#"{"AccessKeyId":"AK","SecretAccessKey":"SK","Expiration":"soon"}"#,
        ] {
            let Err(Error::Config { why: m, .. }) = keys_from_json(bad, "Token", "w") else {
                panic!("{bad}")
            };
            assert!(!m.contains("AK\"") && !m.contains("SK"), "{m}");
        }
    }
}
