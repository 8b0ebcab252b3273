//! The HTTP core: bounded idle and trickling connections (the server in this process, with short
//! timeouts), and against the real daemon limits, request ids, keep-alive, chunked bodies, base
//! path, and draining on SIGTERM.

use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use kici_orchestrator::http::{
    server::{Handler, Limits, Server, ShutdownHandle},
    Request, Response,
};
use support::{daemon::*, pg::PgCluster};

fn daemon_with(extra: &[(&str, &str)]) -> Daemon {
    let url = PgCluster::shared().create_database();
    let mut env = base_env(&url);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Daemon::start(&env)
}

/// Reads until EOF or error; returns when the server closed the connection, or None if it
/// stayed open for `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue, // e.g. a 408 before the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// The daemon's HTTP server in this process, with the production limits except short timeouts,
/// answering every request with `{"status":"ok"}`: the timeout tests take seconds, not a minute.
/// The production timeouts themselves are pinned by the unit test of `Limits::default()`.
struct ShortServer {
    addr: SocketAddr,
    stop: ShutdownHandle,
    thread: Option<thread::JoinHandle<()>>,
}

const IDLE: Duration = Duration::from_secs(1);
const REQUEST: Duration = Duration::from_secs(2);

impl ShortServer {
    fn start() -> ShortServer {
        struct Ok;
        impl Handler for Ok {
            fn handle(&self, _req: &Request) -> Response {
                Response::json(200, &serde_json::json!({ "status": "ok" }))
            }
        }
        let limits = Limits {
            idle_timeout: IDLE,
            request_timeout: REQUEST,
            ..Limits::default()
        };
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), limits).unwrap();
        let (addr, stop) = (server.local_addr(), server.shutdown_handle());
        let thread = thread::spawn(move || server.run(Arc::new(Ok)));
        ShortServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ShortServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn three_hundred_idle_connections_do_not_block_health_and_are_closed() {
    let server = ShortServer::start();
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(server.addr).expect("idle connect"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let r = request(server.addr, "GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    // The server closes every one of them by itself, within the idle timeout and a margin.
    let limit = IDLE * 4;
    for s in idle.iter_mut() {
        let left = limit.saturating_sub(opened.elapsed());
        assert!(
            closed_within(s, left).is_some(),
            "an idle connection was still open {limit:?} after it was opened"
        );
    }
    assert!(
        opened.elapsed() >= IDLE,
        "closed before the idle timeout: {:?}",
        opened.elapsed()
    );
}

#[test]
fn a_trickling_client_is_cut_off() {
    let server = ShortServer::start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    // One header byte every IDLE / 5: never idle, never finishing the request.
    'outer: for b in b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
    {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let tick = Instant::now();
        while tick.elapsed() < IDLE / 5 {
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => break 'outer,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break 'outer,
            }
        }
        assert!(
            start.elapsed() < REQUEST * 4,
            "trickling client still connected after {:?}",
            start.elapsed()
        );
    }
    // Cut off by the request timeout (kept to within one 500 ms tick), not the idle one.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= REQUEST && elapsed < REQUEST + Duration::from_millis(1500),
        "cut off after {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408 "),
        "expected a 408, got {text:?}"
    );
}

#[test]
fn request_ids_keep_alive_limits_and_errors() {
    let d = daemon_with(&[]);
    // Echoed when sent, generated (UUID) when not.
    let r = request(
        d.addr,
        "GET",
        "/health",
        &[("X-Request-ID", "req-123")],
        b"",
    );
    assert_eq!(r.header("x-request-id"), Some("req-123"));
    let r = d.get("/health");
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "{id}");

    // Unknown route and wrong method: JSON errors.
    let r = d.get("/nope");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("Not found"))
    );
    let r = request(d.addr, "POST", "/health", &[], b"{}");
    assert_eq!(r.status, 405);
    assert!(r.json()["error"].is_string());

    // Several requests on one keep-alive connection, then a chunked body.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s).status, 200);
    }
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    assert_eq!(
        read_response(&mut s).status,
        200,
        "the connection survives a chunked request"
    );

    // Body over the route's limit announced: 413 without reading it.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 26214401\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("too large"));

    // Header block over 32 KiB: 431.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let _ = s.write_all(big.as_bytes());
    assert_eq!(read_response(&mut s).status, 431);

    // Garbage: 400 with a JSON error.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"HELLO\r\n\r\n").unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("Bad request"));

    // Expect: 100-continue gets the interim response before the body is sent, once the route
    // accepts the request; a refused one gets its final answer instead.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"{}").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s);
    assert_eq!((r.status, r.header("connection")), (404, Some("close")));
}

#[test]
fn base_path_prefixes_every_route() {
    let d = daemon_with(&[("KICI_BASE_PATH", "/kici/")]);
    assert_eq!(d.get("/kici/health").status, 200);
    assert_eq!(d.get("/kici/ready").status, 200);
    assert_eq!(d.get("/health").status, 404);
    assert_eq!(d.get("/kicihealth").status, 404);
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_zero() {
    let mut d = daemon_with(&[]);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Half a request is in flight when SIGTERM arrives.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let idle = TcpStream::connect(d.addr).unwrap();
    thread::sleep(Duration::from_millis(200));
    signal(d.child.id(), "TERM");
    thread::sleep(Duration::from_millis(300));
    // New connections are no longer served.
    s.write_all(b"\r\n").unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    drop(idle);
    assert_eq!(d.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(d.stderr().contains("SIGTERM received"));
    assert!(d.stderr().contains("Shut down cleanly"));
    assert!(
        TcpStream::connect_timeout(&d.addr, Duration::from_secs(1)).is_err(),
        "still accepting after exit"
    );
}
