//! The HTTP/1.1 listener: our own accept loop, one thread per connection, bounded.
//!
//! Why not tiny_http's loop (docs/architecture.md, "HTTP server"): it has no socket timeouts, so an
//! idle or trickling client pins a thread forever, its task pool grows without a cap, and an
//! `SO_RCVTIMEO` on the listener kills its accept thread. Here every connection is a real
//! `TcpStream` with deadlines: a client that sends nothing is closed after `idle_timeout`, a
//! request must arrive whole within `request_timeout` of its first byte, writes are bounded by
//! `write_timeout`, and past `max_connections` new clients get an immediate 503. Parsing is in
//! `parse.rs` (pure); this file only moves bytes and enforces limits.

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
use super::parse::{self, BodyKind, Head, HeadError, HeadScan};
pub use super::write::reason;
use super::write::write_response;
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

/// The daemon serves with `Limits::default()`; tests/it/http_core.rs checks the timeouts' effect
/// with short ones, so the production values are pinned here.
#[test]
fn default_limits_are_the_production_ones() {
    let l = Limits::default();
    assert_eq!((l.max_connections, l.max_head_bytes), (4096, 32 * 1024));
    assert_eq!(l.max_body_bytes, 25 * 1024 * 1024);
    let secs = [
        l.idle_timeout,
        l.request_timeout,
        l.write_timeout,
        l.drain_timeout,
    ];
    assert_eq!(secs.map(|d| d.as_secs()), [25, 55, 30, 10]);
}

/// What a route decides from the request head alone, before any body byte is read.
#[derive(Debug)]
pub enum Admission {
    /// Read the body, at most `limit` bytes (and never more than `Limits::max_body_bytes`),
    /// then call `handle`.
    Buffer { limit: u64 },
    /// Call `handle_stream`, which reads the body itself (large blob uploads); `Content-Length`
    /// is required and at most `limit`.
    Stream { limit: u64 },
    /// Answer this without reading the body: unknown route, wrong method, failed
    /// authentication. An announced body is then left unread and the connection closed.
    Refuse(Response),
}

/// What a route does with a request. Called on the connection's own thread.
pub trait Handler: Send + Sync + 'static {
    /// Decides, from the method, path and headers (`req.body` is still empty), whether the body
    /// is read, how much of it, and how. A route may note what it learnt on `req` (the admin
    /// caller) so `handle` does not look it up again.
    fn admit(&self, _req: &mut Request) -> Admission {
        Admission::Buffer { limit: u64::MAX }
    }

    fn handle(&self, req: &Request) -> Response;

    /// Handles a request admitted with `Admission::Stream`; `req.body` is empty, `body` yields it.
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

/// Request bodies of up to 25 MiB pass through connection threads. glibc raises its mmap
/// threshold to the size of each large block freed (up to 32 MiB); after that, such buffers come
/// from per-thread arenas that keep the memory after `free`. tests/it/hostile_http.rs measured it:
/// eight accepted 8 MiB bodies left RSS 115 MiB higher while their keep-alive connections sat
/// idle. A fixed threshold keeps large buffers mmapped, so freeing one returns it to the OS
/// (musl's allocator always does this).
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes the allocator's tuning; it takes no pointers.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        });
    }
}

impl Server {
    pub fn bind(addr: SocketAddr, limits: Limits) -> io::Result<Server> {
        return_large_buffers_to_the_os();
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
            Ok(true) if !stop.is_shutdown() => conn.release(),
            Ok(_) | Err(Close::Now) => break,
            Err(Close::Linger) => {
                conn.linger_close();
                return;
            }
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

/// How a connection ends after an exchange that cannot keep it.
pub(super) enum Close {
    Now,
    /// The client may still be sending a body nobody will read.
    Linger,
}

type Exchange = Result<bool, Close>;

/// One request/response exchange. `Ok(true)` = keep the connection.
fn serve_one(
    conn: &mut Conn,
    peer: SocketAddr,
    limits: &Limits,
    stop: &ShutdownHandle,
    handler: &dyn Handler,
) -> Exchange {
    // Wait for the first byte of the next request.
    let idle_deadline = Instant::now() + limits.idle_timeout;
    while conn.buffered().is_empty() {
        conn.fill(idle_deadline, true, stop)
            .map_err(|_| Close::Now)?;
    }
    let started = Instant::now();
    let deadline = started + limits.request_timeout;
    let head_len = loop {
        match parse::scan_head(conn.buffered(), limits.max_head_bytes) {
            HeadScan::Complete(end) => break end,
            HeadScan::TooLarge => {
                return reply_error(conn, 431, "Request header fields too large", None)
            }
            HeadScan::NeedMore => {}
        }
        if let Err(end) = conn.fill(deadline, false, stop) {
            return read_failed(conn, end);
        }
    };
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
    let wants_continue = head.expects_continue() && kind != BodyKind::None;
    let mut keep_alive = head.keep_alive() && !stop.is_shutdown();
    let (path, query) = match head.target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (head.target.clone(), None),
    };
    let mut req = Request {
        method: head.method,
        path,
        query,
        headers: head.headers,
        body: Vec::new(),
        peer,
        request_id,
        received_at: started,
        caller: None,
    };
    let _ids = crate::logging::ids(&[("requestId", &req.request_id)]);
    // The route decides before any body byte is read: a stranger's body costs nothing unless
    // the route wants it, and never more than the route's own limit.
    let admission = match catch_unwind(AssertUnwindSafe(|| handler.admit(&mut req))) {
        Ok(a) => a,
        Err(_) => {
            log::error!(
                "admission panicked on {} {} (request {})",
                req.method,
                req.path,
                req.request_id
            );
            Admission::Refuse(Response::error(500, "Internal server error"))
        }
    };
    let stream_limit = match admission {
        Admission::Refuse(response) => {
            // An unread body makes the connection unusable; a `100 Continue` was never sent, so
            // a well-behaved client has not started sending it.
            let unread = kind != BodyKind::None;
            let keep = keep_alive && !unread;
            respond(conn, &req, response, started, keep)?;
            return match (keep, unread) {
                (true, _) => Ok(true),
                (false, true) => Err(Close::Linger),
                (false, false) => Err(Close::Now),
            };
        }
        Admission::Stream { limit } => match kind {
            BodyKind::Chunked => {
                let msg = "Length required: send Content-Length with this upload";
                return refuse_body(conn, &req, started, 411, msg);
            }
            BodyKind::Length(n) if n > limit => {
                let msg = format!("Request body too large (limit {limit} bytes)");
                return refuse_body(conn, &req, started, 413, &msg);
            }
            _ => Some(limit),
        },
        Admission::Buffer { limit } => {
            let limit = limit.min(limits.max_body_bytes);
            if let BodyKind::Length(n) = kind {
                if n > limit {
                    let msg = format!("Request body too large (limit {limit} bytes)");
                    return refuse_body(conn, &req, started, 413, &msg);
                }
            }
            // Only now, with the route's consent, is the client told to send the body. (A
            // streamed body gets its 100 Continue on the handler's first read instead, so an
            // upload with a bad signature is refused before the client sends a byte of it.)
            if wants_continue && conn.stream.write_all(INTERIM).is_err() {
                return Err(Close::Now);
            }
            req.body = match kind {
                BodyKind::None => Vec::new(),
                // `n <= limit <= max_body_bytes`, which fits memory by construction.
                BodyKind::Length(n) => match conn.take(n as usize, deadline, stop) {
                    Ok(b) => b,
                    Err(end) => return read_failed(conn, end),
                },
                BodyKind::Chunked => {
                    match read_chunked(conn, limit, limits.max_head_bytes, deadline, stop) {
                        Ok(Ok(b)) => b,
                        Ok(Err((status, msg))) => {
                            return reply_error(conn, status, msg, Some(&req.request_id))
                        }
                        Err(end) => return read_failed(conn, end),
                    }
                }
            };
            None
        }
    };
    if kind == BodyKind::None && handler.upgrades(&req) {
        let leftover = conn.buffered().to_vec();
        if let Ok(stream) = conn.stream.try_clone() {
            let _ = catch_unwind(AssertUnwindSafe(|| handler.upgrade(&req, stream, leftover)));
        }
        return Err(Close::Now);
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
    let mut unread = false;
    let response = match handled {
        Ok((r, left)) => {
            // A body the handler left unread makes the connection unusable for a next request.
            unread = left > 0;
            keep_alive &= !unread;
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
    respond(conn, &req, response, started, keep_alive)?;
    if unread {
        return Err(Close::Linger);
    }
    Ok(keep_alive)
}

/// Refuses an admitted request over its body (too large, no length): answered before reading,
/// then the connection ends.
fn refuse_body(
    conn: &mut Conn,
    req: &Request,
    started: Instant,
    status: u16,
    msg: &str,
) -> Exchange {
    respond(conn, req, Response::error(status, msg), started, false)?;
    Err(Close::Linger)
}

/// Writes the response and logs the exchange.
fn respond(
    conn: &mut Conn,
    req: &Request,
    response: Response,
    started: Instant,
    keep_alive: bool,
) -> Result<(), Close> {
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
    sent.map_err(|_| Close::Now)
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

fn read_failed(conn: &mut Conn, end: ReadEnd) -> Exchange {
    match end {
        ReadEnd::Timeout => reply_error(
            conn,
            408,
            "Request timeout: the request did not arrive in time",
            None,
        ),
        ReadEnd::Io(e) => {
            log::debug!("reading a request failed: {e}");
            Err(Close::Now)
        }
        ReadEnd::Quiet => Err(Close::Now),
    }
}

fn reply_head_error(conn: &mut Conn, e: HeadError) -> Exchange {
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
fn reply_error(conn: &mut Conn, status: u16, msg: &str, request_id: Option<&str>) -> Exchange {
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
    Err(Close::Now)
}
