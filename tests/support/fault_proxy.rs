//! A fault-injecting HTTP proxy for the object-storage tests: it sits
//! between pg_standby and a real store (s3s-fs, fake-gcs-server, Azurite) on
//! 127.0.0.1 and,
//! request by request, passes the exchange through or breaks it the way a
//! struggling store or network does.
//!
//! One connection per request: the proxy answers with `Connection: close`,
//! so the client opens a new connection for each request and every request
//! takes the next action from the queue (an empty queue passes). Requests
//! are forwarded byte for byte: the client signs the Host it connects to,
//! the store checks the Host it receives, so signatures stay valid. Only
//! std (and libc for the reset): no HTTP library whose own behaviour would
//! hide what is on the wire.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does with one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward it and return the store's answer.
    Pass,
    /// Answer this status without asking the store, with a store-shaped
    /// error body (S3's XML `<Error><Code>CODE</Code>...`, or for Cloud
    /// Storage's JSON API `{"error":{..."errors":[{"reason":CODE}]}}`)
    /// and, if given, a `Retry-After` header in seconds.
    Status {
        status: u16,
        code: &'static str,
        retry_after: Option<u32>,
    },
    /// Answer 200 with an HTML page (a captive portal or a misconfigured
    /// proxy in the way).
    Html,
    /// Forward, then send the store's headers (with their Content-Length)
    /// and only the first N bytes of the body, and close.
    CutAfter(usize),
    /// Close the connection with a TCP reset before answering.
    Reset,
    /// Wait this long, then forward.
    Delay(Duration),
    /// Forward, then send the body at this many bytes per second.
    Trickle(usize),
    /// Accept and never answer (until the proxy is dropped).
    Hang,
    /// Forward, and flip one bit of the body byte at this offset.
    FlipByte(usize),
    /// Forward without the headers in which stores give a checksum of the
    /// object (ETag, x-amz-checksum-*, x-goog-hash, Content-MD5): a store
    /// that gives none.
    NoChecksums,
    /// `get` for a GET of an object, `other` for the rest (listings,
    /// HEADs, deletes).
    ByRequest {
        get: Box<Action>,
        other: Box<Action>,
    },
    /// `then` for requests of this method (`POST`: S3's batch delete),
    /// Pass for the rest.
    ForMethod {
        method: &'static str,
        then: Box<Action>,
    },
}

impl Action {
    /// The store's error answer: `status` with its `code`.
    pub fn status(status: u16, code: &'static str, retry_after: Option<u32>) -> Action {
        Action::Status {
            status,
            code,
            retry_after,
        }
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub at: Instant,
    pub action: String,
    /// The Authorization header, as sent.
    pub authorization: Option<String>,
    /// Every header, as sent.
    pub headers: Vec<(String, String)>,
}

struct Shared {
    actions: Mutex<VecDeque<Action>>,
    /// Used when the queue is empty.
    default: Mutex<Action>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
    /// Connections held open by `Hang`, closed on drop.
    held: Mutex<Vec<TcpStream>>,
}

pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    pub endpoint: String,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream must be http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            actions: Mutex::new(VecDeque::new()),
            default: Mutex::new(Action::Pass),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let _ = serve(&s, conn, upstream);
                });
            }
        });
        FaultProxy {
            shared,
            addr,
            endpoint: format!("http://{addr}"),
            acceptor: Some(acceptor),
        }
    }

    /// Queues actions for the next requests, in order.
    pub fn then(&self, actions: impl IntoIterator<Item = Action>) -> &Self {
        self.shared.actions.lock().unwrap().extend(actions);
        self
    }

    /// What every request gets once the queue is empty (Pass at first).
    pub fn always(&self, action: Action) -> &Self {
        self.shared.actions.lock().unwrap().clear();
        *self.shared.default.lock().unwrap() = action;
        self
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// How many requests were seen so far.
    pub fn count(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    /// Actions still queued.
    pub fn pending(&self) -> usize {
        self.shared.actions.lock().unwrap().len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in self.shared.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Wake the acceptor so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// A request or response head: the start line and the header lines.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// The head again, with `Connection: close` instead of whatever
    /// connection header it had. Hop-by-hop: never part of a signature.
    fn closing(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            if !k.eq_ignore_ascii_case("connection") {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            break;
        }
        lines.push(text);
    }
    let mut it = lines.into_iter();
    let start = it.next().unwrap_or_default();
    let headers = it
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Ok(Some(Head { start, headers }))
}

fn serve(s: &Shared, client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(req) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut body = vec![0u8; req.content_length().unwrap_or(0)];
    reader.read_exact(&mut body)?;
    let action = {
        let mut q = s.actions.lock().unwrap();
        q.pop_front()
            .unwrap_or_else(|| s.default.lock().unwrap().clone())
    };
    let mut parts = req.start.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let action = match action {
        Action::ByRequest { get, other } => {
            if method == "GET" && is_object_get(&target) {
                *get
            } else {
                *other
            }
        }
        Action::ForMethod { method: m, then } if m == method => *then,
        Action::ForMethod { .. } => Action::Pass,
        a => a,
    };
    s.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        at: Instant::now(),
        action: format!("{action:?}"),
        authorization: req.header("authorization").map(str::to_string),
        headers: req.headers.clone(),
    });
    let mut client = client;
    match action {
        Action::Status {
            status,
            code,
            retry_after,
        } => {
            let json = target.starts_with("/storage/v1/");
            let body = if json {
                format!(
                    "{{\"error\":{{\"code\":{status},\"message\":\"injected by the test proxy\",\
                     \"errors\":[{{\"domain\":\"global\",\"reason\":\"{code}\"}}]}}}}"
                )
            } else {
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                     <Message>injected by the test proxy</Message></Error>"
                )
            };
            let ctype = if json {
                "application/json"
            } else {
                "application/xml"
            };
            let retry = retry_after
                .map(|r| format!("Retry-After: {r}\r\n"))
                .unwrap_or_default();
            // A HEAD answer has no body, but says how long it would be.
            let payload = if method == "HEAD" { "" } else { body.as_str() };
            write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: {ctype}\r\n{retry}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                body.len()
            )?;
            return Ok(());
        }
        Action::Html => {
            let page = "<html><body><h1>Please log in</h1></body></html>";
            write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            )?;
            return Ok(());
        }
        Action::Reset => {
            reset(&client);
            return Ok(());
        }
        Action::Hang => {
            s.held.lock().unwrap().push(client);
            return Ok(());
        }
        Action::Delay(d) => std::thread::sleep(d),
        _ => {}
    }
    // Forward the request with `Connection: close`, read the whole answer.
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&req.closing())?;
    up.write_all(&body)?;
    let mut up_reader = BufReader::new(up);
    let Some(resp) = read_head(&mut up_reader)? else {
        reset(&client);
        return Ok(());
    };
    let mut resp_body = Vec::new();
    match resp.content_length() {
        Some(n) if method != "HEAD" => {
            resp_body.resize(n, 0);
            up_reader.read_exact(&mut resp_body)?;
        }
        Some(_) => {}
        None => {
            up_reader.read_to_end(&mut resp_body)?;
        }
    }
    let mut resp = resp;
    if matches!(action, Action::NoChecksums) {
        resp.headers.retain(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !(k == "etag"
                || k.starts_with("x-amz-checksum-")
                || k == "x-goog-hash"
                || k == "content-md5")
        });
    }
    let head = resp.closing();
    match action {
        Action::CutAfter(n) => {
            client.write_all(&head)?;
            client.write_all(&resp_body[..n.min(resp_body.len())])?;
            client.flush()?;
            client.shutdown(Shutdown::Both)?;
        }
        Action::Trickle(rate) => {
            client.write_all(&head)?;
            let chunk = (rate / 10).max(1);
            for piece in resp_body.chunks(chunk) {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if client.write_all(piece).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Action::FlipByte(at) => {
            if at < resp_body.len() {
                resp_body[at] ^= 0x01;
            }
            client.write_all(&head)?;
            client.write_all(&resp_body)?;
        }
        _ => {
            client.write_all(&head)?;
            client.write_all(&resp_body)?;
        }
    }
    Ok(())
}

/// Whether a GET downloads an object: S3's signed URLs carry a query
/// string, and a listing's has `list-type`; Cloud Storage's JSON API
/// downloads with `alt=media` and lists without it.
fn is_object_get(target: &str) -> bool {
    if target.starts_with("/storage/v1/") {
        target.contains("alt=media")
    } else {
        // S3's ListObjectsV2, Azure's List Blobs.
        !target.contains("list-type") && !target.contains("comp=list")
    }
}

/// Closes with RST instead of FIN: SO_LINGER with a zero timeout.
fn reset(conn: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // The socket closes, with the reset, when the caller drops its last
    // handle to it.
}
