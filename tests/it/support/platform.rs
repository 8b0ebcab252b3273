//! A Platform double: the Platform side of docs/platform-protocol.md over real sockets (ws, or wss
//! with a test CA), on one port that also serves the OIDC mint endpoint over HTTP(S), as the real
//! Platform's host does. It checks the orchestrator token, records every frame, acks
//! `source.register`, and lets a test send any frame, refuse auth, drop the connection, stop
//! listening and start again on the same port.

use std::{
    collections::HashMap,
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tungstenite::{protocol::frame::coding::CloseCode, protocol::CloseFrame, Message};

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

#[derive(Default)]
pub struct Shared {
    token: String,
    frames: Mutex<Vec<Value>>,
    outgoing: Mutex<Vec<String>>,
    refuse_auth: AtomicBool,
    kick: AtomicBool,
    connects: Mutex<Vec<Instant>>,
    acks: Mutex<HashMap<String, (Instant, Value)>>,
    /// Status answered by the mint endpoint (0 = 200 with a token), and the bodies it got.
    mint_status: AtomicUsize,
    mint_requests: Mutex<Vec<(String, Value)>>,
}

pub struct PlatformDouble {
    pub port: u16,
    pub shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    running: Arc<AtomicBool>,
}

/// Replays bytes already read (the HTTP head) before reading on.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: Read> Read for Prefixed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Prefixed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl PlatformDouble {
    pub const TOKEN: &'static str = "kici_ok_test_orchestrator_key";

    /// The environment of a hybrid daemon on database `db` linked to this Platform, with
    /// bootstrap admin token `owner`.
    pub fn hybrid_env(&self, db: &str, owner: &str) -> Vec<(String, String)> {
        let mut env = super::daemon::base_env(db);
        env.retain(|(k, _)| k != "KICI_MODE");
        for (k, v) in [
            ("KICI_MODE", "hybrid"),
            ("KICI_PLATFORM_URL", self.url().as_str()),
            ("KICI_PLATFORM_TOKEN", Self::TOKEN),
            ("KICI_BOOTSTRAP_ADMIN_TOKEN", owner),
        ] {
            env.push((k.into(), v.into()));
        }
        env
    }

    pub fn start(tls: Option<Arc<rustls::ServerConfig>>) -> PlatformDouble {
        let shared = Arc::new(Shared {
            token: Self::TOKEN.into(),
            ..Shared::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let d = PlatformDouble {
            port,
            shared,
            tls,
            running: Arc::new(AtomicBool::new(false)),
        };
        d.listen(listener);
        d
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}/ws", self.port)
    }

    fn listen(&self, listener: TcpListener) {
        self.running.store(true, Ordering::SeqCst);
        let (shared, tls, running) = (self.shared.clone(), self.tls.clone(), self.running.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if !running.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let (shared, tls, running) = (shared.clone(), tls.clone(), running.clone());
                thread::spawn(move || serve(stream, &shared, tls, &running));
            }
        });
    }

    /// Stops listening and drops every connection; the port stays ours for `restart`.
    pub fn stop(&self) {
        self.running.store(false, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        thread::sleep(Duration::from_millis(100));
    }

    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.port),
            }
        };
        self.running = Arc::new(AtomicBool::new(false));
        self.listen(listener);
    }

    pub fn send(&self, frame: &Value) {
        self.send_text(&frame.to_string());
    }

    pub fn send_text(&self, text: &str) {
        self.shared.outgoing.lock().unwrap().push(text.to_owned());
    }

    pub fn refuse_auth(&self, refuse: bool) {
        self.shared.refuse_auth.store(refuse, Ordering::SeqCst);
    }

    /// Closes the current connection (1001 going away).
    pub fn kick(&self) {
        self.shared.kick.store(true, Ordering::SeqCst);
    }

    pub fn frames(&self) -> Vec<Value> {
        self.shared.frames.lock().unwrap().clone()
    }

    pub fn frames_of(&self, kind: &str) -> Vec<Value> {
        self.frames()
            .into_iter()
            .filter(|f| f["type"] == kind)
            .collect()
    }

    pub fn connects(&self) -> Vec<Instant> {
        self.shared.connects.lock().unwrap().clone()
    }

    /// The `webhook.ack` for `message_id` and when it arrived.
    pub fn ack(&self, message_id: &str) -> Option<(Instant, Value)> {
        self.shared.acks.lock().unwrap().get(message_id).cloned()
    }

    pub fn set_mint_status(&self, status: u16) {
        self.shared
            .mint_status
            .store(status as usize, Ordering::SeqCst);
    }

    pub fn mint_requests(&self) -> Vec<(String, Value)> {
        self.shared.mint_requests.lock().unwrap().clone()
    }

    /// Waits for the `n`-th (0-based) frame of `kind` matching `pred`.
    pub fn wait_for(&self, kind: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(f) = self.frames_of(kind).into_iter().find(|f| pred(f)) {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "no matching {kind} frame within {within:?}; got types {:?}",
                self.frames()
                    .iter()
                    .map(|f| f["type"].clone())
                    .collect::<Vec<_>>()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends a relayed delivery in `chunk` sized pieces (base64) and returns its message id.
    pub fn relay(&self, start: Value, body: &[u8], chunk: usize) -> String {
        let message_id = start["messageId"].as_str().unwrap().to_owned();
        let pieces: Vec<&[u8]> = if body.is_empty() {
            vec![&[][..]]
        } else {
            body.chunks(chunk).collect()
        };
        let mut start = start;
        start["type"] = json!("webhook.relay.start");
        start["totalSize"] = json!(body.len());
        start["chunkCount"] = json!(pieces.len());
        self.send(&start);
        for (i, piece) in pieces.iter().enumerate() {
            self.send(&json!({
                "type": "webhook.relay.chunk", "messageId": message_id, "sequence": i,
                "data": data_encoding::BASE64.encode(piece), "final": i + 1 == pieces.len(),
            }));
        }
        message_id
    }
}

impl Drop for PlatformDouble {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    tcp: TcpStream,
    shared: &Shared,
    tls: Option<Arc<rustls::ServerConfig>>,
    running: &AtomicBool,
) {
    shared.connects.lock().unwrap().push(Instant::now());
    tcp.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut io: Box<dyn Stream> = match tls {
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    // The request head, to tell a WebSocket upgrade from a mint call.
    let mut head = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if Instant::now() > deadline || !running.load(Ordering::SeqCst) {
            return;
        }
        match io.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(_) => return,
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if text.contains("upgrade: websocket") {
        websocket(
            Prefixed {
                prefix: head,
                pos: 0,
                inner: io,
            },
            shared,
            running,
        );
    } else {
        mint(head, io, shared);
    }
}

fn websocket<S: Read + Write>(stream: S, shared: &Shared, running: &AtomicBool) {
    let mut handshake = tungstenite::accept(stream);
    let mut ws = loop {
        match handshake {
            Ok(ws) => break ws,
            Err(tungstenite::HandshakeError::Interrupted(mid)) => handshake = mid.handshake(),
            Err(_) => return,
        }
    };
    let mut authenticated = false;
    loop {
        if !running.load(Ordering::SeqCst) || shared.kick.swap(false, Ordering::SeqCst) {
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "going away".into(),
            }));
            let _ = ws.flush();
            return;
        }
        if authenticated {
            let pending: Vec<String> = std::mem::take(&mut *shared.outgoing.lock().unwrap());
            for text in pending {
                if ws.send(Message::text(text)).is_err() {
                    return;
                }
            }
        }
        let text = match ws.read() {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Close(_)) => return,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if would_block(&e) => continue,
            Err(_) => return,
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        shared.frames.lock().unwrap().push(frame.clone());
        let reply = match frame["type"].as_str().unwrap_or("") {
            "auth.request"
                if frame["token"] == shared.token.as_str()
                    && !shared.refuse_auth.load(Ordering::SeqCst) =>
            {
                authenticated = true;
                Some(
                    json!({"type": "auth.success", "connectionId": format!("conn-{}", shared.connects.lock().unwrap().len())}),
                )
            }
            "auth.request" => {
                let _ = ws.send(Message::text(
                    json!({"type": "auth.failure", "reason": "invalid orchestrator key"})
                        .to_string(),
                ));
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Library(4001),
                    reason: "unauthorized".into(),
                }));
                let _ = ws.flush();
                return;
            }
            "source.register" => {
                let accepted: Vec<Value> = frame["sources"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .map(|s| json!({"routingKey": s["routingKey"], "webhookUrl": null}))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(
                    json!({"type": "source.register.ack", "messageId": frame["messageId"], "accepted": accepted, "rejected": []}),
                )
            }
            "webhook.ack" => {
                let id = frame["messageId"].as_str().unwrap_or("").to_owned();
                shared
                    .acks
                    .lock()
                    .unwrap()
                    .insert(id, (Instant::now(), frame.clone()));
                None
            }
            _ => None,
        };
        if let Some(r) = reply {
            if ws.send(Message::text(r.to_string())).is_err() {
                return;
            }
        }
    }
}

/// `POST /internal/orchestrator/<id>/mint-id-token` with the orchestrator token.
fn mint(mut head: Vec<u8>, mut io: Box<dyn Stream>, shared: &Shared) {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head_text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_owned();
    let header = |name: &str| {
        head_text.split("\r\n").find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = head.split_off(end);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while body.len() < length && Instant::now() < deadline {
        match io.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(_) => return,
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
    let authorized =
        header("authorization").as_deref() == Some(&format!("Bearer {}", shared.token));
    let (status, answer) = if !request_line.starts_with("POST ")
        || !path.ends_with("/mint-id-token")
    {
        (404, json!({"error": "not found"}))
    } else if !authorized {
        (401, json!({"error": "unauthorized"}))
    } else {
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        shared
            .mint_requests
            .lock()
            .unwrap()
            .push((path.clone(), parsed));
        match shared.mint_status.load(Ordering::SeqCst) {
            0 | 200 => (
                200,
                json!({"token": "eyJhbGciOiJFUzI1NiJ9.test.sig", "expires_in": 300, "jti": "jti-1"}),
            ),
            s => (s as u16, json!({"error": "refused"})),
        }
    };
    let text = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = io.write_all(response.as_bytes());
    let _ = io.flush();
}
