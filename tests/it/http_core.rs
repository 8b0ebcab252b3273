//! The HTTP core against the real daemon: bounded idle/trickling connections, limits, request
//! ids, keep-alive, chunked bodies, base path, and draining on SIGTERM.

use crate::support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::{Duration, Instant},
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

#[test]
fn three_hundred_idle_connections_do_not_block_health_and_are_closed() {
    let d = daemon_with(&[]);
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(d.addr).expect("idle connect"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let r = d.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    // The server closes every one of them by itself, within 30 s (idle timeout 25 s).
    for s in idle.iter_mut() {
        let left = Duration::from_secs(30).saturating_sub(opened.elapsed());
        assert!(
            closed_within(s, left).is_some(),
            "an idle connection was still open 30 s after it was opened"
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(20),
        "closed suspiciously early: {:?}",
        opened.elapsed()
    );
}

#[test]
fn a_trickling_client_is_cut_off() {
    let d = daemon_with(&[]);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    // One header byte every 5 s: never idle for 30 s, never finishing the request.
    'outer: for b in b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
    {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let tick = Instant::now();
        while tick.elapsed() < Duration::from_secs(5) {
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => break 'outer,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break 'outer,
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(70),
            "trickling client still connected after 70 s"
        );
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(45) && elapsed < Duration::from_secs(60),
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
