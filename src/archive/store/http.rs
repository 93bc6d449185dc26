//! The HTTP every store speaks, one rule each: the client's settings
//! (timeouts, redirects, idle connections, the proxy), how a request that
//! got no answer is sorted, how a body is read, how an answer that is not
//! the one asked for becomes an [`Error`] through
//! [`classify`](super::classify::classify), and how listing pages are
//! followed. Each store keeps its protocol (URLs, signing, error
//! documents) in its own file.

use std::time::Duration;

use super::Error;
use super::classify::{Answer, Fatal, Verdict, classify};

/// An answer as ureq hands it over.
pub(crate) type Response = ureq::http::Response<ureq::Body>;

/// How long an idle connection is kept for the next request.
const IDLE_REUSE: Duration = Duration::from_secs(4);
/// Error bodies are small documents; never read more than this of one.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Per-request limits. Short, so that a hung server turns into a
/// [`Error::Transient`] the waiting loop logs and retries.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From the request sent to the response headers received.
    pub response: Duration,
    /// Longest silence while reading a body (each read, not the whole body:
    /// a 16 MiB segment over a slow link may take longer as a whole).
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(10),
            read: Duration::from_secs(10),
        }
    }
}

/// The client of a store's own requests.
pub(crate) fn store_agent(proxy: Option<ureq::Proxy>, timeouts: Timeouts) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(proxy)
        .http_status_as_error(false)
        // A redirect is no store's answer (on S3 it means a wrong region
        // or endpoint): reported, not followed.
        .max_redirects(0)
        .timeout_connect(Some(timeouts.connect))
        .timeout_recv_response(Some(timeouts.response))
        .timeout_per_read(Some(timeouts.read))
        .timeout_per_write(Some(timeouts.read))
        // No retries here, so a kept-alive connection the server has
        // closed would fail the next poll: reuse only fresh ones
        // (servers close idle connections after 5 s and more).
        .max_idle_age(IDLE_REUSE)
        .user_agent(concat!("pg_standby/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The client of a credential endpoint (a metadata service, a token
/// endpoint): short limits, so that on a host without one the first call
/// learns so quickly; no redirects.
pub(crate) fn endpoint_agent(
    connect: Duration,
    answer: Duration,
    proxy: Option<ureq::Proxy>,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(proxy)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(answer))
        .timeout_per_read(Some(answer))
        .user_agent(concat!("pg_standby/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// A proxy URL from the configuration, refused at start-up if malformed.
pub(crate) fn proxy(url: &str) -> Result<ureq::Proxy, Error> {
    ureq::Proxy::new(url).map_err(|e| Error::config(format!("proxy \"{url}\" is malformed: {e}")))
}

/// Whether a host name or address (without brackets) is this machine.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The proxy for the endpoint from the usual variables (`HTTPS_PROXY` or
/// `HTTP_PROXY` by scheme, else `ALL_PROXY`; lower case too), unless
/// `NO_PROXY` names the host (exactly, as a domain suffix, or `*`).
/// Loopback endpoints are never proxied. Read from `env`, so that
/// `--check` sees the server's.
pub(crate) fn proxy_for(endpoint: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let url: url::Url = endpoint.parse().ok()?;
    let host = url
        .host_str()?
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    if is_loopback_host(&host) {
        return None;
    }
    let get = |k: &str| var(k).or_else(|| var(&k.to_ascii_lowercase()));
    let no_proxy = get("NO_PROXY").unwrap_or_default();
    for entry in no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let entry = entry.trim_start_matches('*').trim_start_matches('.');
        let entry = entry.to_ascii_lowercase();
        if entry.is_empty() || host == entry || host.ends_with(&format!(".{entry}")) {
            return None;
        }
    }
    let scheme_var = if url.scheme() == "https" {
        "HTTPS_PROXY"
    } else {
        "HTTP_PROXY"
    };
    get(scheme_var).or_else(|| get("ALL_PROXY"))
}

/// Sorts a failed request (no HTTP answer) onto the contract.
#[cfg(any(feature = "s3", feature = "gcs"))]
pub(crate) fn transport(e: ureq::Error, what: &str) -> Error {
    let text = e.to_string();
    transport_saying(e, what, text)
}

/// [`transport`] with the error told as `text` (the Azure store's, with a
/// SAS signature taken out of any URL it quotes).
pub(crate) fn transport_saying(e: ureq::Error, what: &str, text: String) -> Error {
    use ureq::Error as E;
    match e {
        E::BadUri(_) | E::Http(_) | E::RequireHttpsOnly(_) | E::InvalidProxyUrl => {
            Error::config(format!("{what}: {text}"))
        }
        // A certificate the TLS stack refuses will not change by waiting.
        E::Tls(_) | E::Rustls(_) | E::Pem(_) => Error::config(format!("{what}: TLS: {text}")),
        E::Timeout(t) => Error::Transient(format!("{what}: timed out ({t:?})")),
        E::HostNotFound => Error::Transient(format!("{what}: host not found (DNS)")),
        // Refused connections, resets, cut bodies, garbled answers: the
        // server may be restarting.
        _ => Error::Transient(format!("{what}: {text}")),
    }
}

/// A whole body as text, at most `limit` bytes; a body cut short is
/// waited out.
pub(crate) fn read_text(resp: Response, limit: u64, what: &str) -> Result<String, Error> {
    resp.into_body()
        .with_config()
        .limit(limit)
        .read_to_string()
        .map_err(|e| Error::Transient(format!("{what}: reading the answer: {e}")))
}

/// A header's value, if it is there and text.
pub(crate) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Content-Length`, if sent and a number.
pub(crate) fn content_length(resp: &Response) -> Option<u64> {
    header(resp, "content-length").and_then(|v| v.parse().ok())
}

/// An answer that is not the one asked for, sorted by [`classify`].
pub(crate) struct Refusal {
    verdict: Verdict,
    /// Status, the store's code and message, for messages
    /// (`404 NoSuchKey: The specified key does not exist.`).
    detail: String,
}

/// Sorts an answer: the answer itself if it is the one asked for, else a
/// [`Refusal`]. `code_header` names the header that carries the store's
/// error code, if the store sends one (it wins over the body's code);
/// `fields` reads the code and the message from an error body.
pub(crate) fn sort(
    resp: Response,
    what: &str,
    code_header: Option<&str>,
    fields: impl FnOnce(&str) -> (Option<String>, Option<String>),
) -> Result<Response, Refusal> {
    let status = resp.status().as_u16();
    let content_type = header(&resp, "content-type");
    let retry_after = header(&resp, "retry-after");
    let header_code = code_header.and_then(|h| header(&resp, h));
    let quick = Answer {
        status,
        code: header_code.as_deref(),
        retry_after: None,
        content_type: content_type.as_deref(),
    };
    if classify(&quick) == Verdict::Ok {
        return Ok(resp);
    }
    let reason = resp.status().canonical_reason().unwrap_or("").to_string();
    // HEAD answers have no body; others carry the store's error document.
    let body = read_text(resp, ERROR_BODY_LIMIT, what).unwrap_or_default();
    let (body_code, message) = fields(&body);
    let code = header_code.clone().or(body_code);
    let detail = match (&code, &message) {
        (Some(c), Some(m)) => format!("{status} {c}: {m}"),
        (Some(c), None) => format!("{status} {c}"),
        _ if (200..300).contains(&status) => format!(
            "{status} with a {} page",
            content_type.as_deref().unwrap_or("?")
        ),
        _ => format!("{status} {reason}"),
    };
    let answer = Answer {
        code: code.as_deref(),
        retry_after: retry_after.as_deref(),
        ..quick
    };
    Err(Refusal {
        verdict: classify(&answer),
        detail,
    })
}

impl Refusal {
    /// The error for the exit contract. `refresh` makes the error of
    /// expired credentials from `WHAT: DETAIL` (the store knows whether
    /// they can be fetched again); `context` adds what the store knows of
    /// a refusal (the container, the credentials' source), or nothing.
    pub(crate) fn into_error(
        self,
        what: &str,
        refresh: impl FnOnce(String) -> Error,
        context: impl FnOnce(Fatal) -> String,
    ) -> Error {
        let detail = self.detail;
        match self.verdict {
            Verdict::Ok => Error::Transient(format!("{what}: unexpected answer {detail}")),
            Verdict::Absent => Error::NotFound,
            Verdict::Wait { retry_after } => Error::wait(format!("{what}: {detail}"), retry_after),
            Verdict::Refresh => refresh(format!("{what}: {detail}")),
            Verdict::Fatal(kind) => Error::refused(
                kind,
                format!("{what}: {detail}{} ({})", context(kind), kind.hint()),
            ),
        }
    }
}

/// One page of a listing: names (with the archive's prefix) and sizes,
/// and what asks for the next page, if there is one.
pub(crate) struct ListPage {
    pub objects: Vec<(String, u64)>,
    pub next: Option<String>,
}

/// Follows every page of a listing (`page` asks for one, given the last
/// page's token) and keeps the names below `prefix`, without it.
pub(crate) fn list_all(
    prefix: &str,
    mut page: impl FnMut(Option<&str>) -> Result<ListPage, Error>,
) -> Result<Vec<(String, u64)>, Error> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let this = page(token.as_deref())?;
        for (key, size) in this.objects {
            if let Some(name) = key.strip_prefix(prefix)
                && !name.is_empty()
            {
                out.push((name.to_string(), size));
            }
        }
        match this.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(all(test, any(feature = "s3", feature = "azure")))]
mod tests {
    use super::*;

    #[test]
    fn proxies() {
        let m: std::collections::HashMap<&str, &str> = [
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("http_proxy", "http://plain:3128"),
            ("NO_PROXY", "internal.example, .corp"),
        ]
        .into_iter()
        .collect();
        let env = |k: &str| m.get(k).map(|v| v.to_string());
        assert_eq!(
            proxy_for("https://s3.eu-west-3.amazonaws.com", &env).as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            proxy_for("http://minio:9000", &env).as_deref(),
            Some("http://plain:3128")
        );
        assert_eq!(proxy_for("http://s3.internal.example", &env), None);
        assert_eq!(proxy_for("http://minio.corp:9000", &env), None);
        assert_eq!(proxy_for("http://127.0.0.1:9000", &env), None);
        assert_eq!(
            proxy_for("http://127.0.0.1:10000/devstoreaccount1", &env),
            None
        );
        assert_eq!(proxy_for("http://[::1]:9000", &env), None);
        assert_eq!(proxy_for("http://minio:9000", &|_| None), None);
    }
}
