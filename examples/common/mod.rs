//! Shared by the benchmark examples (`relaybench`, `agentbench`, `cachebench`, `checksbench`):
//! flag parsing, reading JSON text frames from a WebSocket whose socket has a read timeout,
//! bringing a bench agent online, and posting a local-source push.

// Each example includes this file and uses only part of it.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

/// An agent link as the bench agents hold it.
pub type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// The value after `name`, else `default`; panics naming the flag when it is required.
pub fn arg(args: &[String], name: &str, default: Option<&str>) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or(default.map(str::to_owned))
        .unwrap_or_else(|| panic!("{name} is required"))
}

/// The next text frame as JSON; `None` after the read timeout or for other frames.
pub fn read<S: Read + Write>(ws: &mut WebSocket<S>) -> Option<Value> {
    match ws.read() {
        Ok(Message::Text(t)) => serde_json::from_str(&t).ok(),
        Ok(_) => None,
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("WebSocket link failed: {e}"),
    }
}

/// The next frame of type `kind`, skipping others; `None` when none comes `within`.
pub fn wait_for(ws: &mut Socket, kind: &str, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(f) = read(ws) {
            if f["type"] == kind {
                return Some(f);
            }
        }
    }
    None
}

/// Connects, authenticates and registers agent `id` with `labels`, reading with timeout `tick`;
/// `None` when anything is refused or times out.
pub fn online(url: &str, token: &str, id: &str, labels: &[&str], tick: Duration) -> Option<Socket> {
    let (mut ws, _) = tungstenite::connect(url).ok()?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(tick)).ok()?;
    }
    ws.send(Message::text(
        json!({"type":"auth.request","token":token,"protocolVersion":1}).to_string(),
    ))
    .ok()?;
    wait_for(&mut ws, "auth.success", Duration::from_secs(10))?;
    let register = json!({"type":"agent.register","messageId":format!("register-{id}"),"agentId":id,
        "labels":labels,"platform":"linux","arch":"x64"});
    ws.send(Message::text(register.to_string())).ok()?;
    wait_for(&mut ws, "register.ack", Duration::from_secs(10))?;
    Some(ws)
}

/// POSTs a local-source push (`X-Event-Type: push`) to `url` and checks the 202.
pub fn post_webhook(url: &str, delivery: &str) {
    let rest = url
        .strip_prefix("http://")
        .expect("--webhook must be http://");
    let (host, path) = rest.split_once('/').expect("--webhook needs a path");
    let body = r#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567","repository":{"full_name":"bench/app"}}"#;
    let mut s = TcpStream::connect(host).expect("connect to the orchestrator");
    write!(s, "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Event-Type: push\r\nX-Request-ID: {delivery}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 202"),
        "webhook not accepted: {answer}"
    );
}
