//! A managed identity endpoint no emulator offers, as a small local server
//! speaking the instance metadata protocol
//! (<https://learn.microsoft.com/en-us/entra/identity/managed-identities-azure-resources/how-to-use-vm-token#get-a-token-using-http>):
//! `GET /metadata/identity/oauth2/token?api-version=...&resource=...` with
//! `Metadata: true` → `{"access_token": ..., "expires_on": ..., ...}`
//! (numbers as strings, as IMDS sends them); without the header, 400 as
//! IMDS answers. Records what it was asked. std only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-token.sig";

/// One request as seen: its request line and headers.
#[derive(Debug, Clone)]
pub struct Asked {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

pub struct IdentityServer {
    seen: Arc<Mutex<Vec<Asked>>>,
    stop: Arc<AtomicBool>,
    port: u16,
    /// What AZURE_POD_IDENTITY_AUTHORITY_HOST is set to.
    pub host: String,
    acceptor: Option<JoinHandle<()>>,
}

impl IdentityServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let metadata = headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("metadata") && v == "true");
                s.lock().unwrap().push(Asked {
                    line: line.trim().to_string(),
                    headers,
                });
                let expires = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 3600;
                let (status, body) = if metadata
                    && line.starts_with("GET /metadata/identity/oauth2/token?")
                {
                    (
                        "200 OK",
                        format!(
                            "{{\"access_token\":\"{TOKEN}\",\"client_id\":\"c\",\
                             \"expires_in\":\"3600\",\"expires_on\":\"{expires}\",\
                             \"resource\":\"https://storage.azure.com/\",\"token_type\":\"Bearer\"}}"
                        ),
                    )
                } else {
                    (
                        "400 Bad Request",
                        "{\"error\":\"invalid_request\"}".to_string(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            seen,
            stop,
            port,
            host: format!("http://127.0.0.1:{port}"),
            acceptor: Some(acceptor),
        }
    }

    pub fn seen(&self) -> Vec<Asked> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for IdentityServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}
