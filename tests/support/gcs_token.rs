//! Google's OAuth 2.0 token endpoint for service accounts, as a small
//! local server (no emulator has one): it takes the JWT bearer grant
//! (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`),
//! checks the JWT's RS256 signature with the service account's public key
//! (`openssl dgst -sha256 -verify`) and its claims (iss, scope, aud, an
//! hour from iat to exp, iat now), and answers an access token as Google
//! does: `{"access_token":..,"expires_in":3600,"token_type":"Bearer"}`,
//! or 400 `invalid_grant` for anything else. It also takes gcloud's user
//! credentials (`grant_type=refresh_token` with [`REFRESH_TOKEN`],
//! [`CLIENT_ID`] and [`CLIENT_SECRET`]). std and openssl only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
pub const EMAIL: &str = "standby@pg-standby-test.iam.gserviceaccount.com";
/// The user credentials the endpoint accepts.
pub const CLIENT_ID: &str = "test-client.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const REFRESH_TOKEN: &str = "1//test-refresh-token";

/// gcloud's `application_default_credentials.json` for a user, whose
/// token requests go to `token_uri`.
pub fn authorized_user_json(token_uri: &str) -> String {
    format!(
        "{{\"type\":\"authorized_user\",\"client_id\":\"{CLIENT_ID}\",\
         \"client_secret\":\"{CLIENT_SECRET}\",\"refresh_token\":\"{REFRESH_TOKEN}\",\
         \"token_uri\":\"{token_uri}\"}}"
    )
}

/// Tokens handed out are this, then a count.
pub const TOKEN_PREFIX: &str = "ya29.test-token-";

/// A new RSA key pair (2048 bits, the private key PKCS#8 PEM) in `dir`:
/// the private key's PEM text and the public key's file.
pub fn key_pair(dir: &Path, name: &str) -> (String, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        // Its progress dots go nowhere.
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed by the gs:// token tests")
        .success();
    assert!(ok, "openssl genpkey failed");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey -pubout failed");
    (std::fs::read_to_string(&private).unwrap(), public)
}

/// A service account key file as Google issues them, for `key_pem`, whose
/// token requests go to `token_uri`.
pub fn service_account_json(key_pem: &str, token_uri: &str) -> String {
    let escaped = key_pem.replace('\n', "\\n");
    format!(
        "{{\"type\":\"service_account\",\"project_id\":\"pg-standby-test\",\
         \"private_key_id\":\"0123abcd\",\"private_key\":\"{escaped}\",\
         \"client_email\":\"{EMAIL}\",\"client_id\":\"1\",\
         \"auth_uri\":\"https://accounts.google.com/o/oauth2/auth\",\
         \"token_uri\":\"{token_uri}\"}}"
    )
}

struct Shared {
    public_key: PathBuf,
    uri: String,
    work: tempfile::TempDir,
    issued: Mutex<Vec<String>>,
    refused: Mutex<Vec<String>>,
    stop: AtomicBool,
}

pub struct TokenServer {
    shared: Arc<Shared>,
    port: u16,
    /// The token_uri: `http://127.0.0.1:PORT/token`.
    pub uri: String,
    acceptor: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Accepts JWTs signed by the key whose public half is in `public_key`.
    pub fn start(public_key: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let uri = format!("http://127.0.0.1:{port}/token");
        let shared = Arc::new(Shared {
            public_key: public_key.to_path_buf(),
            uri: uri.clone(),
            work: tempfile::tempdir().unwrap(),
            issued: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(&s, conn);
                }
            }
        });
        TokenServer {
            shared,
            port,
            uri,
            acceptor: Some(acceptor),
        }
    }

    /// The tokens handed out so far.
    pub fn issued(&self) -> Vec<String> {
        self.shared.issued.lock().unwrap().clone()
    }

    /// Why requests were refused so far.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn serve(s: &Shared, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut start = String::new();
    reader.read_line(&mut start)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let answer = if !start.starts_with("POST /token ") {
        Err(format!("unexpected request {}", start.trim()))
    } else {
        check_grant(s, &String::from_utf8_lossy(&body))
    };
    let (status, json) = match answer {
        Ok(token) => (
            "200 OK",
            format!(
                "{{\"access_token\":\"{token}\",\"expires_in\":3600,\"token_type\":\"Bearer\"}}"
            ),
        ),
        Err(why) => {
            s.refused.lock().unwrap().push(why.clone());
            (
                "400 Bad Request",
                format!("{{\"error\":\"invalid_grant\",\"error_description\":\"{why}\"}}"),
            )
        }
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
}

fn check_grant(s: &Shared, form: &str) -> Result<String, String> {
    let field = |k: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(|v| {
                v.replace("%3A", ":")
                    .replace("%2F", "/")
                    .replace("%3a", ":")
                    .replace("%2f", "/")
            })
    };
    if field("grant_type").as_deref() == Some("refresh_token") {
        if field("refresh_token").as_deref() != Some(REFRESH_TOKEN)
            || field("client_id").as_deref() != Some(CLIENT_ID)
            || field("client_secret").as_deref() != Some(CLIENT_SECRET)
        {
            return Err("Token has been expired or revoked.".into());
        }
        let mut issued = s.issued.lock().unwrap();
        let token = format!("{TOKEN_PREFIX}{}", issued.len() + 1);
        issued.push(token.clone());
        return Ok(token);
    }
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Err("Invalid grant_type.".into());
    }
    let jwt = field("assertion").ok_or("No assertion.")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("Invalid JWT: not three parts.".into());
    };
    let text = |p: &str| {
        base64url_decode(p)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("Invalid JWT: bad base64url.".to_string())
    };
    let header = text(header)?;
    if !header.contains("\"alg\":\"RS256\"") {
        return Err("Invalid JWT: alg is not RS256.".into());
    }
    let claims_text = text(claims)?;
    let want = |k: &str, v: &str| {
        if claims_text.contains(&format!("\"{k}\":\"{v}\"")) {
            Ok(())
        } else {
            Err(format!("Invalid JWT: {k} is not {v}."))
        }
    };
    want("iss", EMAIL)?;
    want("scope", SCOPE)?;
    want("aud", &s.uri)?;
    let number = |k: &str| -> Result<u64, String> {
        let at = claims_text
            .find(&format!("\"{k}\":"))
            .ok_or(format!("Invalid JWT: no {k}."))?;
        claims_text[at + k.len() + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .map_err(|_| format!("Invalid JWT: {k} is not a number."))
    };
    let (iat, exp) = (number("iat")?, number("exp")?);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if exp != iat + 3600 || iat.abs_diff(now) > 60 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes).".into());
    }
    // The signature over "header.claims", checked by openssl with the
    // public key.
    let signing_input = &jwt[..jwt.rfind('.').unwrap()];
    let sig = base64url_decode(signature).ok_or("Invalid JWT: bad signature encoding.")?;
    let n = s.issued.lock().unwrap().len() + s.refused.lock().unwrap().len();
    let input_file = s.work.path().join(format!("input.{n}"));
    let sig_file = s.work.path().join(format!("sig.{n}"));
    std::fs::write(&input_file, signing_input).unwrap();
    std::fs::write(&sig_file, sig).unwrap();
    let verified = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&s.public_key)
        .arg("-signature")
        .arg(&sig_file)
        .arg(&input_file)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    let _ = std::fs::remove_file(&input_file);
    let _ = std::fs::remove_file(&sig_file);
    if !verified.status.success() {
        return Err("Invalid JWT Signature.".into());
    }
    let mut issued = s.issued.lock().unwrap();
    let token = format!("{TOKEN_PREFIX}{}", issued.len() + 1);
    issued.push(token.clone());
    Ok(token)
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        acc = (acc << 6) | ABC.iter().position(|&x| x == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
