//! Relay load generator for `scripts/bench.sh relay` (a cargo example, not shipped): a minimal
//! Platform that accepts the orchestrator's link, waits for a generic source to be registered,
//! then relays signed deliveries (one `webhook.relay.start` + one chunk each) keeping `--window`
//! in flight, and measures from its own side how fast `webhook.ack`s come back.
//!
//! ```text
//! relaybench --port P --token T --secret S --count N --windows "1 16" [--payload-bytes 1024]
//! [--warmup 200]
//! ```
//!
//! Prints one JSON line per window (run in turn on the same link):
//! `{"window":W,"count":N,"seconds":..,"rate":..,"p50_ms":..,"p99_ms":.., "not_accepted":..}`.
//! Bounded: exits with an error after 300 s whatever happens.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use data_encoding::BASE64;
use kici_orchestrator::crypto::{hex, hmac_sha256};
use serde_json::json;
use tungstenite::Message;

#[path = "common/mod.rs"]
mod common;
use common::{arg, read};

const LIMIT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = arg(&args, "--port", None).parse().expect("--port");
    let token = arg(&args, "--token", None);
    let secret = arg(&args, "--secret", None);
    let count: usize = arg(&args, "--count", Some("2000"))
        .parse()
        .expect("--count");
    let windows: Vec<usize> = arg(&args, "--windows", Some("1"))
        .split_whitespace()
        .map(|w| w.parse().expect("--windows"))
        .collect();
    let warmup: usize = arg(&args, "--warmup", Some("200"))
        .parse()
        .expect("--warmup");
    let payload: usize = arg(&args, "--payload-bytes", Some("1024"))
        .parse()
        .expect("--payload-bytes");
    let started = Instant::now();
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let (tcp, _) = listener.accept().expect("accept");
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut ws = tungstenite::accept(tcp).expect("WebSocket handshake");
    // Handshake, then wait for a generic source.
    let mut routing_key = None;
    while routing_key.is_none() {
        assert!(started.elapsed() < LIMIT, "no generic source registered");
        let Some(frame) = read(&mut ws) else { continue };
        match frame["type"].as_str() {
            Some("auth.request") => {
                assert_eq!(frame["token"], token.as_str(), "wrong orchestrator token");
                ws.send(Message::text(
                    json!({"type":"auth.success","connectionId":"bench"}).to_string(),
                ))
                .unwrap();
            }
            Some("source.register") => {
                routing_key = frame["sources"]
                    .as_array()
                    .and_then(|s| {
                        s.iter().find_map(|s| {
                            s["routingKey"]
                                .as_str()
                                .filter(|k| k.starts_with("generic:"))
                        })
                    })
                    .map(str::to_owned);
            }
            _ => {}
        }
    }
    let key = routing_key.unwrap();
    let filler = "x".repeat(payload.saturating_sub(40));
    let mut failed = 0usize;
    for (round, window) in windows.into_iter().enumerate() {
        let mut sent: HashMap<String, Instant> = HashMap::new();
        let mut latencies = Vec::with_capacity(count);
        let mut not_accepted = 0usize;
        let (mut next, mut done) = (0usize, 0usize);
        let total = warmup + count;
        let mut measured_from = None;
        while done < total {
            assert!(
                started.elapsed() < LIMIT,
                "relay bench did not finish within {LIMIT:?}"
            );
            while next < total && sent.len() < window {
                let id = format!("bench-{round}-{next}");
                let body = format!("{{\"n\":{next},\"pad\":\"{filler}\"}}");
                let sig = format!(
                    "sha256={}",
                    hex(&hmac_sha256(secret.as_bytes(), body.as_bytes()))
                );
                let start = json!({
                    "type": "webhook.relay.start", "messageId": id, "routingKey": key,
                    "deliveryId": format!("relay-{}-{round}-{next}", std::process::id()), "event": "bench",
                    "signatureHeaderName": "x-signature-256", "signatureHeader": sig,
                    "headers": {"content-type": "application/json"},
                    "totalSize": body.len(), "chunkCount": 1,
                });
                let chunk = json!({"type": "webhook.relay.chunk", "messageId": id, "sequence": 0,
                               "data": BASE64.encode(body.as_bytes()), "final": true});
                ws.write(Message::text(start.to_string())).unwrap();
                ws.write(Message::text(chunk.to_string())).unwrap();
                ws.flush().unwrap();
                sent.insert(id, Instant::now());
                next += 1;
            }
            let Some(frame) = read(&mut ws) else { continue };
            if frame["type"] != "webhook.ack" {
                continue;
            }
            let id = frame["messageId"].as_str().unwrap_or("").to_owned();
            let Some(at) = sent.remove(&id) else { continue };
            done += 1;
            if frame["result"] != "accepted" {
                not_accepted += 1;
            }
            if done == warmup {
                measured_from = Some(Instant::now());
            } else if done > warmup {
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let seconds = measured_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
        latencies.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
        };
        println!(
            "{}",
            json!({
                "window": window, "count": latencies.len(), "seconds": seconds,
                "rate": latencies.len() as f64 / seconds.max(1e-9),
                "p50_ms": q(0.5), "p99_ms": q(0.99), "not_accepted": not_accepted,
            })
        );
        failed += not_accepted;
    }
    if failed > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
