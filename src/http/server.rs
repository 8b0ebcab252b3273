//! The HTTP/1.1 listener: our own accept loop, one thread per connection, bounded.
//!
//! Why not tiny_http's loop (reference/crates.md §1.4): it has no socket timeouts, so an idle or
//! trickling client pins a thread forever, its task pool grows without a cap, and an
//! `SO_RCVTIMEO` on the listener kills its accept thread. Here every connection is a real
//! `TcpStream` with deadlines: a client that sends nothing is closed after `idle_timeout`, a
//! request must arrive whole within `request_timeout` of its first byte, writes are bounded by
//! `write_timeout`, and past `max_connections` new clients get an immediate 503.
//! Parsing is in `parse.rs` (pure); this file only moves bytes and enforces limits.

use std::{
    io::{self, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use super::conn::{read_chunked, BodyReader, Conn, ReadEnd, INTERIM};
use super::parse::{self, BodyKind, Head, HeadError};
use super::{Request, Response};

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub max_body_bytes: u64,
    /// Closes a connection that has sent no byte of its next request for this long.
    pub idle_timeout: Duration,
    /// A request (head and body) must arrive whole within this long of its first byte.
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    /// On shutdown, how long in-flight requests may take before the process exits anyway.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // HTTP clients and agent WebSockets together (an agent holds one connection).
            max_connections: 4096,
            max_head_bytes: 32 * 1024,
            max_body_bytes: 25 * 1024 * 1024,
            idle_timeout: Duration::from_secs(25),
            request_timeout: Duration::from_secs(55),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What a route does with a request. Called on the connection's own thread.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &Request) -> Response;

    /// `Some(limit)` for requests whose body the handler reads itself as a stream (large blob
    /// uploads) instead of the server buffering it up to `max_body_bytes`.
    fn streams_body(&self, _method: &str, _path: &str) -> Option<u64> {
        None
    }

    /// Handles a request announced by `streams_body`; `req.body` is empty, `body` yields it.
    fn handle_stream(&self, req: &Request, _body: &mut dyn io::Read) -> Response {
        self.handle(req)
    }

    /// Whether this request takes the connection over (the agent WebSocket on `GET /ws`).
    fn upgrades(&self, _req: &Request) -> bool {
        false
    }

    /// Runs a taken-over connection until it ends; `buffered` holds bytes already read past the
    /// request head. The server closes the socket afterwards.
    fn upgrade(&self, _req: &Request, _stream: TcpStream, _buffered: Vec<u8>) {}
}

/// How often a waiting connection looks at the shutdown flag.
pub(super) const TICK: Duration = Duration::from_millis(500);
const CONN_STACK: usize = 256 * 1024;

pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    limits: Arc<Limits>,
    stop: ShutdownHandle,
    active: Arc<AtomicUsize>,
}

/// Stops a running `Server` from another thread (the signal thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        if !self.flag.swap(true, Ordering::SeqCst) {
            // accept() has no timeout: a connection of our own wakes it to see the flag.
            let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

impl Server {
    pub fn bind(addr: SocketAddr, limits: Limits) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let wake_ip = match addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        Ok(Server {
            listener,
            addr,
            limits: Arc::new(limits),
            stop: ShutdownHandle {
                flag: Arc::new(AtomicBool::new(false)),
                wake: wake_ip,
            },
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.stop.clone()
    }

    /// Accepts until shut down, then waits (bounded) for in-flight requests to finish.
    pub fn run(self, handler: Arc<dyn Handler>) {
        for conn in self.listener.incoming() {
            if self.stop.is_shutdown() {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("accepting a connection failed: {e}");
                    // EMFILE and friends: back off instead of spinning.
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.active.load(Ordering::SeqCst) >= self.limits.max_connections {
                reject_busy(stream);
                continue;
            }
            let guard = ActiveGuard::new(&self.active);
            let (limits, stop, handler) = (self.limits.clone(), self.stop.clone(), handler.clone());
            let spawned = thread::Builder::new()
                .name("http-conn".into())
                .stack_size(CONN_STACK)
                .spawn(move || {
                    let _guard = guard;
                    serve(stream, &limits, &stop, handler.as_ref());
                });
            if let Err(e) = spawned {
                log::warn!("cannot start a connection thread: {e}");
            }
        }
        drop(self.listener);
        let deadline = Instant::now() + self.limits.drain_timeout;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let left = self.active.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!("{left} connection(s) still busy after the drain timeout; exiting anyway");
        }
    }
}

struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(active: &Arc<AtomicUsize>) -> ActiveGuard {
        active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(active.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn reject_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let body = br#"{"error":"Server busy: too many open connections"}"#;
    let _ = write!(
        stream,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Serves one connection until it closes, times out, errs, or the server shuts down.
fn serve(stream: TcpStream, limits: &Limits, stop: &ShutdownHandle, handler: &dyn Handler) {
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    if stream.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        pos: 0,
    };
    loop {
        match serve_one(&mut conn, peer, limits, stop, handler) {
            Ok(true) if !stop.is_shutdown() => continue,
            _ => break,
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

/// One request/response exchange. `Ok(true)` = keep the connection.
fn serve_one(
    conn: &mut Conn,
    peer: SocketAddr,
    limits: &Limits,
    stop: &ShutdownHandle,
    handler: &dyn Handler,
) -> Result<bool, ()> {
    // Wait for the first byte of the next request.
    let idle_deadline = Instant::now() + limits.idle_timeout;
    while conn.buffered().is_empty() {
        conn.fill(idle_deadline, true, stop).map_err(|_| ())?;
    }
    let started = Instant::now();
    let deadline = started + limits.request_timeout;
    let head_len = loop {
        if let Some(end) = parse::find_head_end(conn.buffered()) {
            break end;
        }
        if conn.buffered().len() > limits.max_head_bytes {
            return reply_error(conn, 431, "Request header fields too large", None);
        }
        if let Err(end) = conn.fill(deadline, false, stop) {
            return read_failed(conn, end);
        }
    };
    if head_len > limits.max_head_bytes {
        return reply_error(conn, 431, "Request header fields too large", None);
    }
    let head = match parse::parse_head(&conn.buffered()[..head_len]) {
        Ok(h) => h,
        Err(e) => return reply_head_error(conn, e),
    };
    conn.consume(head_len);
    let kind = match head.body_kind() {
        Ok(k) => k,
        Err(e) => return reply_head_error(conn, e),
    };
    let request_id = request_id(&head);
    let target_path = head.target.split('?').next().unwrap_or_default();
    let stream_limit = handler.streams_body(&head.method, target_path);
    if let (Some(limit), BodyKind::Length(n)) = (stream_limit, kind) {
        if n > limit {
            let msg = format!("Request body too large (limit {limit} bytes)");
            return reply_error(conn, 413, &msg, Some(&request_id));
        }
    } else if stream_limit.is_some() && kind == BodyKind::Chunked {
        let msg = "Length required: send Content-Length with this upload";
        return reply_error(conn, 411, msg, Some(&request_id));
    } else if let BodyKind::Length(n) = kind {
        if n > limits.max_body_bytes {
            return reply_error(
                conn,
                413,
                &format!(
                    "Request body too large (limit {} bytes)",
                    limits.max_body_bytes
                ),
                Some(&request_id),
            );
        }
    }
    let wants_continue = head.expects_continue() && kind != BodyKind::None;
    // A streamed body gets its 100 Continue on the handler's first read, so a refused upload
    // (bad signature) is answered before the client sends a byte of it.
    if wants_continue && stream_limit.is_none() && conn.stream.write_all(INTERIM).is_err() {
        return Err(());
    }
    let body = match kind {
        _ if stream_limit.is_some() => Vec::new(),
        BodyKind::None => Vec::new(),
        BodyKind::Length(n) => match conn.take(n as usize, deadline, stop) {
            Ok(b) => b,
            Err(end) => return read_failed(conn, end),
        },
        BodyKind::Chunked => match read_chunked(conn, limits, deadline, stop) {
            Ok(Ok(b)) => b,
            Ok(Err((status, msg))) => return reply_error(conn, status, msg, Some(&request_id)),
            Err(end) => return read_failed(conn, end),
        },
    };
    let mut keep_alive = head.keep_alive() && !stop.is_shutdown();
    let (path, query) = match head.target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (head.target.clone(), None),
    };
    let req = Request {
        method: head.method,
        path,
        query,
        headers: head.headers,
        body,
        peer,
        request_id,
        received_at: started,
    };
    if kind == BodyKind::None && handler.upgrades(&req) {
        let leftover = conn.buffered().to_vec();
        if let Ok(stream) = conn.stream.try_clone() {
            let _ = catch_unwind(AssertUnwindSafe(|| handler.upgrade(&req, stream, leftover)));
        }
        return Err(());
    }
    let streamed_len = match kind {
        BodyKind::Length(n) => n,
        _ => 0,
    };
    let handled = catch_unwind(AssertUnwindSafe(|| match stream_limit {
        Some(_) => {
            let mut reader = BodyReader {
                conn: &mut *conn,
                send_continue: wants_continue,
                remaining: streamed_len,
                timeout: limits.request_timeout,
                stop,
            };
            let response = handler.handle_stream(&req, &mut reader);
            (response, reader.remaining)
        }
        None => (handler.handle(&req), 0),
    }));
    let response = match handled {
        Ok((r, unread)) => {
            // A body the handler left unread makes the connection unusable for a next request.
            keep_alive &= unread == 0;
            r
        }
        Err(_) => {
            keep_alive = false;
            log::error!(
                "handler panicked on {} {} (request {})",
                req.method,
                req.path,
                req.request_id
            );
            Response::error(500, "Internal server error")
        }
    };
    let status = response.status;
    let sent = write_response(
        &mut conn.stream,
        response,
        &req.request_id,
        req.method == "HEAD",
        keep_alive,
    );
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        log::warn!("Request completed method={} path={} status={status} duration_ms={millis:.1} request_id={}", req.method, req.path, req.request_id);
    } else {
        log::debug!("Request completed method={} path={} status={status} duration_ms={millis:.1} request_id={}", req.method, req.path, req.request_id);
    }
    sent.map_err(|_| ())?;
    Ok(keep_alive)
}

/// Echoes a sane client `X-Request-ID`, else makes one.
fn request_id(head: &Head) -> String {
    match head.header("x-request-id") {
        Some(id)
            if !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_owned()
        }
        _ => generated_request_id(),
    }
}

/// A UUID-shaped id unique to this process: a random 64-bit prefix drawn once plus a counter.
/// Request ids only need to be unique, not unpredictable, so no syscall per request.
fn generated_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        prefix >> 32,
        (prefix >> 16) & 0xffff,
        prefix & 0xfff,
        0x8000 | ((n >> 48) & 0x3fff),
        n & 0xffff_ffff_ffff
    )
}

fn read_failed(conn: &mut Conn, end: ReadEnd) -> Result<bool, ()> {
    match end {
        ReadEnd::Timeout => reply_error(
            conn,
            408,
            "Request timeout: the request did not arrive in time",
            None,
        ),
        ReadEnd::Io(e) => {
            log::debug!("reading a request failed: {e}");
            Err(())
        }
        ReadEnd::Quiet => Err(()),
    }
}

fn reply_head_error(conn: &mut Conn, e: HeadError) -> Result<bool, ()> {
    match e {
        HeadError::Malformed(why) => reply_error(conn, 400, &format!("Bad request: {why}"), None),
        HeadError::Version => {
            reply_error(conn, 505, "HTTP version not supported: use HTTP/1.1", None)
        }
        HeadError::UnsupportedEncoding => reply_error(
            conn,
            501,
            "Unsupported Transfer-Encoding: only chunked is accepted",
            None,
        ),
    }
}

/// Answers an error that ends the connection (the rest of the request can't be trusted).
fn reply_error(
    conn: &mut Conn,
    status: u16,
    msg: &str,
    request_id: Option<&str>,
) -> Result<bool, ()> {
    let id = request_id
        .map(str::to_owned)
        .unwrap_or_else(generated_request_id);
    let _ = write_response(
        &mut conn.stream,
        Response::error(status, msg),
        &id,
        false,
        false,
    );
    Err(())
}

fn write_response(
    stream: &mut TcpStream,
    resp: Response,
    request_id: &str,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let body_len = resp.file.as_ref().map_or(resp.body.len() as u64, |f| f.1);
    let mut out = Vec::with_capacity(256 + resp.body.len());
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    write!(out, "Date: {}\r\n", http_date())?;
    for (k, v) in &resp.headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    write!(
        out,
        "X-Request-ID: {request_id}\r\nContent-Length: {body_len}\r\n"
    )?;
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    if let (Some(super::FileBody(file, len)), false) = (&resp.file, head_only) {
        let copied = io::copy(&mut io::Read::take(file.as_ref(), *len), stream)?;
        if copied < *len {
            // The file shrank under us: the promised length cannot be kept, so end the connection.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than announced",
            ));
        }
    }
    stream.flush()
}

/// The `Date` header value, formatted at most once per second per thread.
fn http_date() -> String {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = jiff::Timestamp::now();
    let second = now.as_second() as u64;
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != second {
            *c = (second, format_http_date(now));
        }
        c.1.clone()
    })
}

fn format_http_date(now: jiff::Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&now)
        .unwrap_or_default()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
