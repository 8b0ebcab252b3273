//! Webhook load generator for `scripts/bench.sh ingest` (a cargo example, not shipped).
//!
//! ```text
//! cargo build --release --example loadgen
//! target/release/examples/loadgen --url http://127.0.0.1:PORT/webhook/bench/generic/load \
//!     --secret S --concurrency N --duration SECS [--payload-bytes 1024] [--warmup SECS]
//! ```
//!
//! N threads, each with one keep-alive HTTP/1.1 connection (reopened when the server closes it or
//! a request fails), send HMAC-signed POSTs back to back: a JSON body of `--payload-bytes` that
//! differs per request, `X-Signature-256: sha256=<hex>`, and an `X-Idempotency-Key` unique per
//! request (run nonce + thread + counter). Requests completing during the warmup are not counted;
//! after it, every response completing within `--duration` is. Prints one JSON line:
//! `{"concurrency":N,"seconds":..,"accepted":..,"rate":..,"p50_ms":..,"p99_ms":..,
//! "statuses":{"202":..},"errors":..,"accepted_all":..,"payload_bytes":..}` (keys sorted) —
//! `rate` is 202s per second of the window, the latencies are those of its 202 responses (null
//! when there were none); `errors` counts transport failures after the warmup (connect, write,
//! read, 5 s without progress, unparsable response); `accepted_all` counts every 202 including
//! the warmup's, i.e. what the server must have recorded. A request whose connection turns out
//! to have been closed by the server before any answer is resent once on a new connection (same
//! idempotency key). Bounded: the process exits at most 10 s after warmup + duration, whatever
//! the server does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kici_orchestrator::crypto::{hex, hmac_sha256};

/// Per-socket read/write timeout and connect timeout: one stuck request cannot outlive the run
/// by more than this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time past warmup + duration after which the results are printed regardless.
const HARD_GRACE: Duration = Duration::from_secs(10);
/// Largest response body read (the endpoint answers a few dozen bytes).
const MAX_BODY: usize = 1 << 20;

struct Args {
    host: String,
    addr: SocketAddr,
    path: String,
    secret: String,
    concurrency: usize,
    duration: f64,
    payload_bytes: usize,
    warmup: f64,
}

fn usage() -> String {
    "usage: loadgen --url http://127.0.0.1:PORT/PATH --secret S --concurrency N --duration SECS \
     [--payload-bytes 1024] [--warmup SECS]"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut secret = None;
    let mut concurrency = None;
    let mut duration = None;
    let mut payload_bytes = 1024usize;
    let mut warmup = 0.0f64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Err(usage());
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))?,
        };
        let num = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{name}: not a non-negative number: {v}"))
        };
        match name.as_str() {
            "--url" => url = Some(value),
            "--secret" => secret = Some(value),
            "--concurrency" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("--concurrency: {value}"))?;
                if !(1..=1024).contains(&n) {
                    return Err("--concurrency must be 1..=1024".into());
                }
                concurrency = Some(n);
            }
            "--duration" => duration = Some(num(&value)?),
            "--warmup" => warmup = num(&value)?,
            "--payload-bytes" => {
                payload_bytes = value
                    .parse()
                    .map_err(|_| format!("--payload-bytes: {value}"))?;
                if !(128..=16 << 20).contains(&payload_bytes) {
                    return Err("--payload-bytes must be 128..=16777216".into());
                }
            }
            _ => return Err(format!("unknown argument {name}\n{}", usage())),
        }
    }
    let url = url.ok_or_else(|| format!("--url is required\n{}", usage()))?;
    let secret = secret.ok_or_else(|| format!("--secret is required\n{}", usage()))?;
    let concurrency =
        concurrency.ok_or_else(|| format!("--concurrency is required\n{}", usage()))?;
    let duration = duration.ok_or_else(|| format!("--duration is required\n{}", usage()))?;
    if duration <= 0.0 || duration > 3600.0 || warmup > 600.0 {
        return Err("--duration must be in (0, 3600], --warmup at most 600".into());
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {with_port}"))?;
    Ok(Args {
        host: host.to_string(),
        addr,
        path: path.to_string(),
        secret,
        concurrency,
        duration,
        payload_bytes,
        warmup,
    })
}

/// What one sender thread measured inside the window.
#[derive(Default)]
struct Tally {
    /// Latency of each 202, in microseconds.
    accepted_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    /// Every 202, inside the window or not (warmup, past the end): what the server must have
    /// recorded.
    accepted_all: u64,
    /// First transport error seen (reported on stderr to explain a non-zero `errors`).
    first_error: Option<String>,
}

/// A JSON body of exactly `size` bytes (ASCII), different for every (thread, seq).
fn payload(nonce: &str, thread: usize, seq: u64, size: usize) -> String {
    let head = format!(
        r#"{{"event":"bench.load","nonce":"{nonce}","thread":{thread},"seq":{seq},"data":{{"ref":"refs/heads/main","pad":""#
    );
    let tail = r#""}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(head.len() + pad + tail.len());
    s.push_str(&head);
    // Varying filler so bodies are not trivially compressible or identical after the header.
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (thread as u64);
    for _ in 0..pad {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
    }
    s.push_str(tail);
    s
}

/// A failed round trip; `stale` when nothing of a response arrived (the write failed, or the
/// connection was closed or reset before the status line): on a reused keep-alive connection
/// that is the server having closed it meanwhile, and the request is resent on a new one.
struct RtError {
    msg: String,
    stale: bool,
}

impl From<String> for RtError {
    fn from(msg: String) -> RtError {
        RtError { msg, stale: false }
    }
}

impl From<&str> for RtError {
    fn from(msg: &str) -> RtError {
        RtError {
            msg: msg.to_string(),
            stale: false,
        }
    }
}

/// Sends one request and reads its response. Ok((status, keep_alive)) or a transport error.
fn round_trip(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
    body_buf: &mut Vec<u8>,
) -> Result<(u16, bool), RtError> {
    if let Err(e) = conn.get_mut().write_all(request) {
        return Err(RtError {
            msg: io_msg("write", &e),
            stale: true,
        });
    }
    let mut line = String::new();
    match conn.read_line(&mut line) {
        Ok(0) => {
            return Err(RtError {
                msg: "connection closed before a response".into(),
                stale: true,
            })
        }
        Ok(_) => {}
        Err(e) => {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            let stale = matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe);
            return Err(RtError {
                msg: io_msg("read", &e),
                stale,
            });
        }
    }
    if line.len() > 16 * 1024 || !line.ends_with('\n') {
        return Err(format!("bad status line: {:?}", line.trim_end()).into());
    }
    let read_line = |conn: &mut BufReader<TcpStream>, line: &mut String| -> Result<(), String> {
        line.clear();
        let n = conn.read_line(line).map_err(|e| io_msg("read", &e))?;
        if n == 0 {
            return Err("connection closed by server".into());
        }
        if line.len() > 16 * 1024 {
            return Err("response header line too long".into());
        }
        Ok(())
    };
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line: {:?}", line.trim_end()).into());
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {:?}", line.trim_end()))?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut header_end = false;
    for _ in 0..200 {
        read_line(conn, &mut line)?;
        let h = line.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            header_end = true;
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("bad header line: {h:?}").into());
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if !header_end {
        return Err("more than 200 response header lines".into());
    }
    body_buf.clear();
    if chunked {
        loop {
            read_line(conn, &mut line)?;
            let size_hex = line.trim_end().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
            if size == 0 {
                // Trailers until the empty line.
                for _ in 0..200 {
                    read_line(conn, &mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            if body_buf.len() + size > MAX_BODY {
                return Err("response body too large".into());
            }
            let start = body_buf.len();
            body_buf.resize(start + size, 0);
            conn.read_exact(&mut body_buf[start..])
                .map_err(|e| io_msg("read body", &e))?;
            read_line(conn, &mut line)?; // CRLF after the chunk
        }
    } else if let Some(n) = content_length {
        if n > MAX_BODY {
            return Err("response body too large".into());
        }
        body_buf.resize(n, 0);
        conn.read_exact(body_buf)
            .map_err(|e| io_msg("read body", &e))?;
    } else if status >= 200 && status != 204 && status != 304 {
        // No framing: the body runs to the end of the connection.
        conn.by_ref()
            .take(MAX_BODY as u64)
            .read_to_end(body_buf)
            .map_err(|e| io_msg("read body", &e))?;
        keep_alive = false;
    }
    Ok((status, keep_alive))
}

/// An I/O error as text; a socket timeout (EAGAIN on Linux) says so.
fn io_msg(what: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    if matches!(e.kind(), WouldBlock | TimedOut) {
        format!("{what}: no progress within {} s", IO_TIMEOUT.as_secs())
    } else {
        format!("{what}: {e}")
    }
}

fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("timeout: {e}"))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("timeout: {e}"))?;
    Ok(BufReader::with_capacity(16 * 1024, s))
}

struct Window {
    start: Instant,
    end: Instant,
}

#[allow(clippy::too_many_arguments)]
fn sender(
    id: usize,
    addr: SocketAddr,
    host: &str,
    path: &str,
    secret: &[u8],
    nonce: &str,
    payload_bytes: usize,
    window: &Window,
) -> Tally {
    let mut tally = Tally {
        accepted_us: Vec::with_capacity(1 << 14),
        ..Tally::default()
    };
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut request = Vec::with_capacity(payload_bytes + 512);
    let mut body_buf = Vec::with_capacity(256);
    let mut seq: u64 = 0;
    // Whether `conn` has already carried a complete exchange.
    let mut reused = false;
    // Bounded: every iteration either completes a request or fails one (each bounded by
    // IO_TIMEOUT), and the loop stops at the window's end.
    while Instant::now() < window.end {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(addr) {
                Ok(c) => {
                    reused = false;
                    conn.insert(c)
                }
                Err(e) => {
                    if Instant::now() >= window.start {
                        tally.errors += 1;
                    }
                    tally.first_error.get_or_insert(e);
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        seq += 1;
        let body = payload(nonce, id, seq, payload_bytes);
        let sig = hex(&hmac_sha256(secret, body.as_bytes()));
        request.clear();
        // Infallible: writing into a Vec.
        let _ = write!(
            request,
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kici-loadgen\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             X-Signature-256: sha256={sig}\r\nX-Idempotency-Key: bench-{nonce}-{id}-{seq}\r\n\r\n",
            body.len()
        );
        request.extend_from_slice(body.as_bytes());
        let t0 = Instant::now();
        let mut result = round_trip(c, &request, &mut body_buf);
        if matches!(&result, Err(e) if e.stale) && reused {
            // The server closed the idle keep-alive connection: resend once on a fresh one
            // (same idempotency key; the latency includes the failed attempt).
            result = match connect(addr) {
                Ok(fresh) => {
                    let c = conn.insert(fresh);
                    reused = false;
                    round_trip(c, &request, &mut body_buf)
                }
                Err(e) => Err(e.into()),
            };
        }
        let t1 = Instant::now();
        let counted = t1 >= window.start && t1 < window.end;
        match result {
            Ok((status, keep_alive)) => {
                if status == 202 {
                    tally.accepted_all += 1;
                }
                if counted {
                    *tally.statuses.entry(status).or_insert(0) += 1;
                    if status == 202 {
                        let us = (t1 - t0).as_micros().min(u32::MAX as u128) as u32;
                        tally.accepted_us.push(us);
                    }
                }
                reused = true;
                if !keep_alive {
                    conn = None;
                }
            }
            Err(e) => {
                // A failure after the warmup counts even when it ends past the window (a
                // request that timed out there was still sent during it).
                if t1 >= window.start {
                    tally.errors += 1;
                }
                tally.first_error.get_or_insert(e.msg);
                conn = None;
            }
        }
    }
    tally
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_us.len()) - 1;
    Some(sorted_us[idx] as f64 / 1000.0)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut nonce_bytes = [0u8; 6];
    if getrandom::fill(&mut nonce_bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        nonce_bytes.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    let nonce = hex(&nonce_bytes);

    let begin = Instant::now();
    let start = begin + Duration::from_secs_f64(args.warmup);
    let window = Window {
        start,
        end: start + Duration::from_secs_f64(args.duration),
    };
    let hard_deadline = window.end + HARD_GRACE;

    let (tx, rx) = mpsc::channel::<Tally>();
    let host = args.host.clone();
    let path = args.path.clone();
    let secret = args.secret.clone().into_bytes();
    let shared = std::sync::Arc::new((host, path, secret, nonce, window));
    for id in 0..args.concurrency {
        let tx = tx.clone();
        let shared = shared.clone();
        let (addr, payload_bytes) = (args.addr, args.payload_bytes);
        let spawned = thread::Builder::new()
            .name(format!("sender-{id}"))
            .spawn(move || {
                let (host, path, secret, nonce, window) = &*shared;
                let t = sender(id, addr, host, path, secret, nonce, payload_bytes, window);
                let _ = tx.send(t);
            });
        if let Err(e) = spawned {
            eprintln!("loadgen: cannot start sender thread {id}: {e}");
            return ExitCode::FAILURE;
        }
    }
    drop(tx);

    let mut total = Tally::default();
    let mut reported = 0;
    while reported < args.concurrency {
        let left = hard_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(t) => {
                reported += 1;
                total.accepted_us.extend_from_slice(&t.accepted_us);
                for (k, v) in t.statuses {
                    *total.statuses.entry(k).or_insert(0) += v;
                }
                total.errors += t.errors;
                total.accepted_all += t.accepted_all;
                if total.first_error.is_none() {
                    total.first_error = t.first_error;
                }
            }
            Err(_) => break, // deadline, or every sender gone
        }
    }
    if reported < args.concurrency {
        eprintln!(
            "loadgen: {} of {} senders still busy at the hard deadline; reporting without them",
            args.concurrency - reported,
            args.concurrency
        );
    }
    if let Some(e) = &total.first_error {
        eprintln!("loadgen: first transport error: {e}");
    }
    total.accepted_us.sort_unstable();
    let accepted = total.accepted_us.len() as u64;
    let statuses: serde_json::Map<String, serde_json::Value> = total
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let out = serde_json::json!({
        "concurrency": args.concurrency,
        "seconds": args.duration,
        "accepted": accepted,
        "rate": round3(accepted as f64 / args.duration),
        "p50_ms": percentile_ms(&total.accepted_us, 50.0),
        "p99_ms": percentile_ms(&total.accepted_us, 99.0),
        "statuses": statuses,
        "errors": total.errors,
        "accepted_all": total.accepted_all,
        "payload_bytes": args.payload_bytes,
    });
    println!("{out}");
    // Senders still busy past the deadline are not joined: returning from main ends them.
    ExitCode::SUCCESS
}
