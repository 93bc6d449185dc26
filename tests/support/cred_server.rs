//! The credential endpoints no emulator offers, as small local servers
//! speaking the documented protocols, handing out the keys the real S3
//! server (s3s-fs) then verifies:
//!
//! * EC2 instance metadata, IMDSv2: `PUT /latest/api/token` with
//!   `X-aws-ec2-metadata-token-ttl-seconds`, then GETs carrying
//!   `X-aws-ec2-metadata-token` of `/latest/meta-data/iam/security-credentials/`
//!   (the role) and `.../ROLE` (the credentials JSON); IMDSv1 requests
//!   (no token) are refused with 401, as on an instance that requires v2;
//! * container credentials (ECS, EKS Pod Identity): `GET PATH` with the
//!   `Authorization` header → the credentials JSON;
//! * STS `AssumeRoleWithWebIdentity` (form POST) → the XML answer, for the
//!   token currently in a given file only.
//!
//! Every answer's `Expiration` is now + the lifetime given. std only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub const ROLE: &str = "standby-role";
pub const IMDS_TOKEN: &str = "imds-session-token-7";
pub const CONTAINER_PATH: &str = "/v1/credentials";

/// How the server answers.
#[derive(Clone)]
pub struct Hand {
    pub access_key: String,
    pub secret_key: String,
    /// How long handed-out credentials last.
    pub lifetime: Duration,
    /// The Authorization header the container endpoint wants.
    pub container_token: Option<String>,
    /// The file whose content STS accepts as the web identity token.
    pub web_identity_token_file: Option<PathBuf>,
    /// Answer a body that is not the document (malformed JSON / XML).
    pub malformed: bool,
}

/// One request as seen: "PUT /latest/api/token", with what it carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub authorization: Option<String>,
    pub imds_token: Option<String>,
    /// The web identity token sent to STS.
    pub web_identity_token: Option<String>,
}

struct Shared {
    hand: Mutex<Hand>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
    issued: Mutex<u32>,
}

pub struct CredServer {
    shared: Arc<Shared>,
    port: u16,
    pub endpoint: String,
    acceptor: Option<JoinHandle<()>>,
}

impl CredServer {
    pub fn start(hand: Hand) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            hand: Mutex::new(hand),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            issued: Mutex::new(0),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = Arc::clone(&s);
                    std::thread::spawn(move || {
                        let _ = serve(&s, conn);
                    });
                }
            }
        });
        CredServer {
            shared,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            acceptor: Some(acceptor),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Session tokens handed out so far: each answer's is "session-N".
    pub fn issued(&self) -> u32 {
        *self.shared.issued.lock().unwrap()
    }

    pub fn set_malformed(&self, malformed: bool) {
        self.shared.hand.lock().unwrap().malformed = malformed;
    }
}

impl Drop for CredServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn respond(conn: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(s: &Shared, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = vec![
        0u8;
        header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    ];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut seen = Seen {
        line: line.split(' ').take(2).collect::<Vec<_>>().join(" "),
        authorization: header("authorization"),
        imds_token: header("x-aws-ec2-metadata-token"),
        web_identity_token: None,
    };
    let hand = s.hand.lock().unwrap().clone();
    let mut conn = conn;
    let issue = || {
        let mut n = s.issued.lock().unwrap();
        *n += 1;
        (
            format!("session-{n}"),
            rfc3339(SystemTime::now() + hand.lifetime),
        )
    };
    let json = |token: &str, expiration: &str| {
        if hand.malformed {
            return "<html>503 Service Unavailable</html>".to_string();
        }
        format!(
            "{{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"{}\",\
             \"SecretAccessKey\":\"{}\",\"Token\":\"{token}\",\"Expiration\":\"{expiration}\"}}",
            hand.access_key, hand.secret_key
        )
    };
    let target = seen.line.split(' ').nth(1).unwrap_or("").to_string();
    let method = seen.line.split(' ').next().unwrap_or("").to_string();
    let creds_base = "/latest/meta-data/iam/security-credentials/";
    match (method.as_str(), target.as_str()) {
        ("PUT", "/latest/api/token") => {
            if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() {
                respond(&mut conn, "200 OK", "text/plain", IMDS_TOKEN);
            } else {
                respond(&mut conn, "400 Bad Request", "text/plain", "");
            }
        }
        ("GET", t) if t.starts_with(creds_base) => {
            if seen.imds_token.as_deref() != Some(IMDS_TOKEN) {
                respond(&mut conn, "401 Unauthorized", "text/plain", "");
            } else if t == creds_base {
                respond(&mut conn, "200 OK", "text/plain", ROLE);
            } else if t == format!("{creds_base}{ROLE}") {
                let (token, exp) = issue();
                respond(&mut conn, "200 OK", "application/json", &json(&token, &exp));
            } else {
                respond(&mut conn, "404 Not Found", "text/plain", "");
            }
        }
        ("GET", CONTAINER_PATH) => {
            if hand.container_token.is_some() && seen.authorization != hand.container_token {
                respond(&mut conn, "401 Unauthorized", "application/json", "{}");
            } else {
                let (token, exp) = issue();
                respond(&mut conn, "200 OK", "application/json", &json(&token, &exp));
            }
        }
        ("POST", "/")
            if form_value(&body, "Action").as_deref() == Some("AssumeRoleWithWebIdentity") =>
        {
            let sent = form_value(&body, "WebIdentityToken");
            seen.web_identity_token = sent.clone();
            let current = hand
                .web_identity_token_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .map(|t| t.trim().to_string());
            if sent.is_none() || sent != current {
                respond(
                    &mut conn,
                    "400 Bad Request",
                    "text/xml",
                    "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                     <Message>not the current token</Message></Error></ErrorResponse>",
                );
            } else if hand.malformed {
                respond(
                    &mut conn,
                    "200 OK",
                    "text/xml",
                    "<AssumeRoleWithWebIdentityResponse>",
                );
            } else {
                let (token, exp) = issue();
                let xml = format!(
                    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                     <AssumeRoleWithWebIdentityResult><Credentials>\
                     <AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
                     <SessionToken>{token}</SessionToken><Expiration>{exp}</Expiration>\
                     </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                    hand.access_key, hand.secret_key
                );
                respond(&mut conn, "200 OK", "text/xml", &xml);
            }
        }
        _ => respond(&mut conn, "404 Not Found", "text/plain", ""),
    }
    s.seen.lock().unwrap().push(seen);
    Ok(())
}
