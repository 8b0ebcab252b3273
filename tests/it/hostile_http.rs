//! Hostile HTTP against the real daemon and PostgreSQL: bodies nobody asked for are not read
//! (memory stays flat while many clients push megabytes), admin and webhook limits are enforced
//! before reading, and proxy headers are believed only from KICI_TRUSTED_PROXIES.

use crate::support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{daemon::*, pg::PgCluster, webhook::*};

const OWNER: &str = "3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e";
const MIB: usize = 1024 * 1024;
/// The brief's ceiling for the daemon while it is being flooded.
const RSS_CEILING_KIB: u64 = 64 * 1024;

fn daemon(extra: &[(&str, &str)]) -> Daemon {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let mut env = base_env(&url);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    d
}

/// The daemon's resident memory (VmRSS) in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// Samples the daemon's RSS every 20 ms until dropped; `peak()` is the largest seen.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let (peak, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, s) = (peak.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                p.fetch_max(rss_kib(pid), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::SeqCst)
    }
}

/// What one flooding client saw.
struct Flood {
    status: u16,
    connection: Option<String>,
    answered_after: Duration,
    /// Bytes of the body the server's side accepted before it stopped taking them.
    sent: usize,
}

/// Sends `head` announcing `body_len` bytes, then pushes that many bytes from a second thread
/// while reading the answer; the writer stops at the first error (the server closed).
fn flood(addr: SocketAddr, head: &str, body_len: usize) -> Flood {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            let n = chunk.len().min(body_len - sent);
            match w.write(&chunk[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => sent += k,
            }
        }
        sent
    });
    let r = read_response(&mut s);
    let answered_after = started.elapsed();
    drop(s);
    let sent = writer.join().expect("writer thread");
    Flood {
        status: r.status,
        connection: r.header("connection").map(str::to_owned),
        answered_after,
        sent,
    }
}

fn head(method: &str, path: &str, extra: &[(&str, &str)], len: usize) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n");
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

#[test]
fn twenty_clients_posting_20_mib_to_wrong_routes_are_refused_without_reading() {
    let d = daemon(&[]);
    let pid = d.child.id();
    let before = rss_kib(pid);
    let watch = RssWatch::start(pid);
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let addr = d.addr;
            thread::spawn(move || {
                // Half to an unknown path, half to a known one with the wrong method.
                let h = if i % 2 == 0 {
                    head("POST", &format!("/nope/{i}"), &[], 20 * MIB)
                } else {
                    head("POST", "/health", &[], 20 * MIB)
                };
                flood(addr, &h, 20 * MIB)
            })
        })
        .collect();
    let results: Vec<Flood> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let elapsed = started.elapsed();
    let peak = watch.peak();
    eprintln!("flood: RSS before {before} KiB, peak {peak} KiB, 20 clients done in {elapsed:?}");
    for (i, f) in results.iter().enumerate() {
        let want = if i % 2 == 0 { 404 } else { 405 };
        assert_eq!(f.status, want, "client {i}");
        assert_eq!(f.connection.as_deref(), Some("close"), "client {i}");
        assert!(
            f.answered_after < Duration::from_secs(3),
            "client {i} waited {:?} for its answer",
            f.answered_after
        );
        assert!(
            f.sent < 20 * MIB,
            "client {i}: the server took the whole 20 MiB body"
        );
    }
    assert!(
        peak < RSS_CEILING_KIB,
        "RSS peaked at {peak} KiB (ceiling {RSS_CEILING_KIB} KiB)"
    );
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    assert_eq!(d.get("/health").status, 200, "still serving");
}

#[test]
fn admin_routes_check_the_token_then_the_size_before_reading() {
    let d = daemon(&[]);
    let path = "/api/v1/admin/generic-sources";
    // A bad token with 20 MiB: 401 at once, body not read.
    let bad = head("POST", path, &[("Authorization", "Bearer nope")], 20 * MIB);
    let f = flood(d.addr, &bad, 20 * MIB);
    assert_eq!((f.status, f.connection.as_deref()), (401, Some("close")));
    assert!(
        f.answered_after < Duration::from_secs(3),
        "{:?}",
        f.answered_after
    );
    assert!(f.sent < 20 * MIB, "the server took the whole body");
    // No token at all: 401 too.
    let f = flood(d.addr, &head("POST", path, &[], 20 * MIB), 20 * MIB);
    assert_eq!(f.status, 401);

    // A good token with 2 MiB of JSON: 413 answered before a byte of the body is sent.
    let auth = format!("Bearer {OWNER}");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = head(
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        2 * MIB,
    );
    s.write_all(big.as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 413);
    assert!(
        r.json()["error"].as_str().unwrap().contains("1048576"),
        "{:?}",
        r.json()
    );

    // With a good token, an unknown admin route (404) or a wrong method (405) is answered
    // without reading either.
    for (method, path, want) in [
        ("POST", "/api/v1/admin/nope", 404),
        ("PUT", "/api/v1/admin/generic-sources", 405),
    ] {
        let h = head(method, path, &[("Authorization", &auth)], 20 * MIB);
        let f = flood(d.addr, &h, 20 * MIB);
        assert_eq!(f.status, want, "{method} {path}");
        assert!(
            f.sent < 20 * MIB,
            "{method} {path}: the server took the whole body"
        );
    }

    // Just under the limit is read and validated as usual (here: not an object → 400).
    let body = format!("[\"{}\"]", "a".repeat(MIB - 10));
    assert!(body.len() <= MIB);
    let r = request(
        d.addr,
        "POST",
        path,
        &[("Authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));

    // Expect: 100-continue: a bad token is answered without the interim response.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = head(
        "POST",
        path,
        &[("Authorization", "Bearer nope"), ("Expect", "100-continue")],
        10,
    );
    s.write_all(h.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).status, 401);
    // ... a good one gets it, then the answer.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = head(
        "POST",
        "/api/v1/admin/tokens",
        &[("Authorization", &auth), ("Expect", "100-continue")],
        2,
    );
    s.write_all(h.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"{}").unwrap();
    assert_eq!(
        read_response(&mut s).status,
        400,
        "validation of the empty token request"
    );
}

#[test]
fn webhook_limits_apply_before_reading() {
    let d = daemon(&[]);
    generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "small", "verificationMethod": "none", "maxPayloadBytes": 1000 }),
    );
    // Over maxPayloadBytes: 413 in the webhook shape, answered with no body byte sent.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head("POST", "/webhook/acme/generic/small", &[], 5000).as_bytes())
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(
        (r.status, r.json()),
        (
            413,
            json!({ "error": "Payload too large", "rejected": true, "reason": "Payload too large", "maxBytes": 1000 })
        )
    );
    // Exactly at the limit: accepted.
    let body = format!("{{\"p\":\"{}\"}}", "a".repeat(1000 - 8));
    assert_eq!(body.len(), 1000);
    let r = post(&d, "/webhook/acme/generic/small", &[], body.as_bytes());
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    // One over, chunked (no length to refuse up front): 413 while decoding.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunked = format!(
        "POST /webhook/acme/generic/small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n{}\r\n0\r\n\r\n",
        "a".repeat(1001)
    );
    s.write_all(chunked.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).status, 413);

    // Unknown source, GitHub without its header, bad escapes: refused with 20 MiB unread.
    let cases = [
        ("/webhook/acme/generic/nope", 404),
        ("/webhook/acme/github", 400),
        ("/webhook/acme/generic/sm%+1ll", 400),
    ];
    for (path, want) in cases {
        let f = flood(d.addr, &head("POST", path, &[], 20 * MIB), 20 * MIB);
        assert_eq!(f.status, want, "{path}");
        assert!(f.sent < 20 * MIB, "{path}: the server took the whole body");
    }
    // A chunk size with a sign is not hex: 400.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /webhook/acme/generic/small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 400);
}

/// Posts to the allowlisted source from 127.0.0.1 with `headers`.
fn allowlisted(d: &Daemon, headers: &[(&str, &str)]) -> u16 {
    post(d, "/webhook/o/generic/ips", headers, b"{}").status
}

fn allowlist_source(d: &Daemon, allowed: &[&str]) {
    generic_source(
        d,
        OWNER,
        "o",
        json!({ "name": "ips", "verificationMethod": "ip_allowlist", "verificationConfig": { "allowlist": allowed } }),
    );
}

#[test]
fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_pass_an_allowlist() {
    let d = daemon(&[]);
    allowlist_source(&d, &["192.0.2.7"]);
    assert_eq!(allowlisted(&d, &[("X-Forwarded-For", "192.0.2.7")]), 401);
    assert_eq!(allowlisted(&d, &[("X-Real-IP", "192.0.2.7")]), 401);
    assert_eq!(allowlisted(&d, &[]), 401);

    // The peer itself is what counts.
    let d = daemon(&[]);
    allowlist_source(&d, &["127.0.0.1"]);
    assert_eq!(allowlisted(&d, &[("X-Forwarded-For", "192.0.2.99")]), 202);
}

#[test]
fn forwarded_for_is_honoured_from_a_trusted_proxy() {
    let d = daemon(&[("KICI_TRUSTED_PROXIES", "127.0.0.1/32")]);
    allowlist_source(&d, &["192.0.2.7"]);
    assert_eq!(allowlisted(&d, &[("X-Forwarded-For", "192.0.2.7")]), 202);
    assert_eq!(allowlisted(&d, &[("X-Real-IP", "192.0.2.7")]), 202);
    // The right-most untrusted entry is the client; what it wrote on the left proves nothing.
    assert_eq!(
        allowlisted(&d, &[("X-Forwarded-For", "192.0.2.7, 198.51.100.1")]),
        401
    );
    assert_eq!(
        allowlisted(
            &d,
            &[("X-Forwarded-For", "198.51.100.1, 192.0.2.7, 127.0.0.1")]
        ),
        202
    );
}

#[test]
fn an_invalid_trusted_proxy_entry_stops_the_daemon_and_is_named() {
    let pg = PgCluster::shared();
    let mut env = base_env(&pg.create_database());
    env.push((
        "KICI_TRUSTED_PROXIES".into(),
        "127.0.0.1/32, 10.0.0.0/40".into(),
    ));
    let Err((code, _out, err)) = Daemon::try_start(&env) else {
        panic!("the daemon started with an invalid KICI_TRUSTED_PROXIES");
    };
    assert_ne!(code, Some(0));
    assert!(
        err.contains("KICI_TRUSTED_PROXIES") && err.contains("10.0.0.0/40"),
        "{err}"
    );
}

#[test]
fn keep_alive_connections_do_not_keep_large_bodies() {
    let d = daemon(&[]);
    generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "big", "verificationMethod": "none", "maxPayloadBytes": 10 * MIB }),
    );
    let pid = d.child.id();
    let before = rss_kib(pid);
    // Eight clients each send an 8 MiB webhook that is accepted, then keep the connection.
    let body = format!("{{\"p\":\"{}\"}}", "a".repeat(8 * MIB - 8));
    let mut kept = Vec::new();
    for i in 0..8 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let h = head(
            "POST",
            "/webhook/acme/generic/big",
            &[("X-Idempotency-Key", &format!("k{i}"))],
            body.len(),
        );
        s.write_all(h.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("connection"), None, "kept alive");
        kept.push(s);
    }
    // Let the pipeline and the recorder finish with the deliveries.
    thread::sleep(Duration::from_millis(1500));
    let after = rss_kib(pid);
    eprintln!("keep-alive: RSS before {before} KiB, after 8 x 8 MiB bodies on 8 open connections {after} KiB");
    // Each connection keeping its body (or a buffer of its size) would add 64 MiB.
    assert!(
        after < before + 24 * 1024,
        "RSS grew from {before} KiB to {after} KiB with the connections idle"
    );
    // The connections are still usable.
    for s in &mut kept {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(s).status, 200);
    }
}
