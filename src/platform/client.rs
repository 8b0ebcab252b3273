//! The relay thread: one blocking tungstenite connection to `KICI_PLATFORM_URL` (ws, or wss
//! through rustls with webpki + system roots). The socket's read timeout (`TICK`) is the
//! thread's clock: between frames it sends heartbeats, source changes, queued status frames and
//! expiry rejections. Relayed webhooks are verified and recorded on this thread before their
//! ack, so an `accepted` always means committed.
//!
//! Sequence (docs/platform-protocol.md, "Session start"): `auth.request` → `auth.success` →
//! `source.register` (always, even empty) → buffered status frames in order → `state.replay` →
//! steady state. Any failure or close (`LinkError`) → reconnect after `backoff(attempt)`, reset
//! once authenticated.

use std::{
    collections::BTreeMap,
    io,
    net::{TcpStream, ToSocketAddrs},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use serde_json::Value;
use tungstenite::{
    client_tls_with_config,
    protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig},
    stream::MaybeTlsStream,
    Connector, Message, WebSocket,
};

use super::{
    backoff, deliver,
    protocol::{self, AckResult, Inbound, SourceEntry},
    reassembly::{Reassembler, Step},
    ws_url, Backlog, Link, Phase,
};
use crate::{app::App, sources::registry::Kind};

mod error;
use error::io_error;
pub use error::LinkError;

/// Read timeout of the socket: the longest the thread sleeps without looking at its duties.
const TICK: Duration = Duration::from_millis(25);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

pub struct RelayConfig {
    pub url: String,
    pub token: String,
    pub instance_id: String,
    pub mode: &'static str,
}

/// Starts the relay thread; it runs until `stop` is set.
pub fn start(app: Arc<App>, link: Arc<Link>, cfg: RelayConfig, stop: Arc<AtomicBool>) {
    let Some(inbox) = link.take_inbox() else {
        log::error!("the Platform relay was started twice for one link; the second is ignored");
        return;
    };
    let stopping = stop.clone();
    let spawned = crate::supervise::spawn(
        "platform-relay",
        move || stopping.load(Ordering::SeqCst),
        move || run(&app, &link, &cfg, &stop, &inbox),
    );
    if let Err(e) = spawned {
        log::error!("cannot start the Platform relay thread: {e}");
    }
}

fn jitter() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

fn run(
    app: &App,
    link: &Link,
    cfg: &RelayConfig,
    stop: &AtomicBool,
    inbox: &mpsc::Receiver<Value>,
) {
    let mut backlog = Backlog::default();
    let mut attempt: u32 = 0;
    let mut last_error = String::new();
    while !stop.load(Ordering::SeqCst) {
        link.update(|s| {
            s.phase = Phase::Connecting;
        });
        let mut session = Session {
            app,
            link,
            cfg,
            inbox,
            backlog: &mut backlog,
            authenticated: false,
        };
        let result = session.run(stop);
        let authenticated = session.authenticated;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if authenticated {
            attempt = 0;
        }
        let error = result
            .err()
            .map_or_else(|| "connection closed".to_owned(), |e| e.to_string());
        let delay = backoff(attempt, jitter());
        attempt = attempt.saturating_add(1);
        // One warning per distinct problem; repeats of the same one go to debug.
        if error != last_error || attempt.is_multiple_of(20) {
            log::warn!(
                "Platform link: {error}; reconnecting in {:.1} s (attempt {attempt})",
                delay.as_secs_f64()
            );
        } else {
            log::debug!("Platform link: {error}; reconnecting in {delay:?}");
        }
        last_error = error.clone();
        crate::metrics::hooks::platform_reconnect();
        link.update(|s| {
            s.phase = Phase::Disconnected;
            s.since = Timestamp::now();
            s.last_error = Some(error);
            s.attempts = attempt;
        });
        let until = Instant::now() + delay;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            // Keep taking status frames so the producers never wait; the backlog bounds them.
            while let Ok(frame) = inbox.try_recv() {
                backlog.push(frame);
            }
            link.update(|s| s.dropped = backlog.dropped);
            thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

struct Session<'a> {
    app: &'a App,
    link: &'a Link,
    cfg: &'a RelayConfig,
    inbox: &'a mpsc::Receiver<Value>,
    backlog: &'a mut Backlog,
    authenticated: bool,
}

fn connect(url: &str) -> Result<Socket, LinkError> {
    let url = ws_url(url);
    let parsed: url::Url = url
        .parse()
        .map_err(|e| LinkError::Config(format!("bad KICI_PLATFORM_URL {url}: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| LinkError::Config("KICI_PLATFORM_URL has no host".into()))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| LinkError::Connect(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| LinkError::Connect(format!("{host} has no address")))?;
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| LinkError::Connect(format!("cannot connect to {url}: {e}")))?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT)).ok();
    tcp.set_write_timeout(Some(WRITE_TIMEOUT)).ok();
    tcp.set_nodelay(true).ok();
    crate::install_crypto_provider();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(crate::tls::public_and_system_roots())
        .with_no_client_auth();
    let config = WebSocketConfig::default()
        .max_message_size(Some(8 << 20))
        .max_frame_size(Some(8 << 20));
    let connector = Connector::Rustls(Arc::new(tls));
    let (socket, _) = client_tls_with_config(url.as_str(), tcp, Some(config), Some(connector))
        .map_err(|e| LinkError::Handshake(format!("WebSocket handshake with {url} failed: {e}")))?;
    let tcp = match socket.get_ref() {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref(),
        _ => return Err(LinkError::Handshake("unexpected stream type".into())),
    };
    tcp.set_read_timeout(Some(TICK)).ok();
    Ok(socket)
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// The registered view of a snapshot.
fn entries(app: &App) -> BTreeMap<String, SourceEntry> {
    app.registry
        .snapshot()
        .listing()
        .into_iter()
        .map(|(key, kind, name, local)| {
            let (provider, subtype) = match (kind, local) {
                (Kind::GitHub, _) => ("github", "github_app"),
                (Kind::Generic, true) => ("generic", "local"),
                (Kind::Generic, false) => ("generic", "generic_webhook"),
            };
            let entry = SourceEntry {
                routing_key: key.clone(),
                provider,
                subtype,
                name,
            };
            (key, entry)
        })
        .collect()
}

impl Session<'_> {
    fn send(&self, socket: &mut Socket, frame: &Value) -> Result<(), LinkError> {
        socket
            .send(Message::text(frame.to_string()))
            .map_err(io_error("sending to"))
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<(), LinkError> {
        let mut socket = connect(&self.cfg.url)?;
        self.send(&mut socket, &protocol::auth_request(&self.cfg.token))?;
        let deadline = Instant::now() + AUTH_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                return Err(LinkError::AuthTimeout);
            }
            match socket.read() {
                Ok(Message::Text(t)) => match protocol::parse(&t) {
                    Inbound::AuthSuccess { connection_id } => {
                        log::info!("Platform link authenticated (connection {connection_id})");
                        break;
                    }
                    Inbound::AuthFailure { reason } => {
                        let _ = socket.close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "Auth failed".into(),
                        }));
                        let _ = socket.flush();
                        return Err(LinkError::AuthRefused(reason));
                    }
                    other => log::debug!("Platform frame before auth ignored: {other:?}"),
                },
                Ok(Message::Close(f)) => return Err(closed(f)),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(io_error("reading from")(e)),
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        self.authenticated = true;
        self.link.update(|s| {
            s.phase = Phase::Authenticated;
            s.since = Timestamp::now();
            s.last_error = None;
            s.attempts = 0;
        });
        let mut registered = entries(self.app);
        let mut seen = self.app.registry.snapshot();
        let all: Vec<SourceEntry> = registered.values().cloned().collect();
        self.register(&mut socket, &all)?;
        self.flush_backlog(&mut socket)?;
        self.replay(&mut socket)?;
        let mut reassembler = Reassembler::default();
        let mut last_heartbeat = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                let _ = socket.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "Client disconnect".into(),
                }));
                let _ = socket.flush();
                return Ok(());
            }
            match socket.read() {
                Ok(Message::Text(t)) => self.inbound(&mut socket, &mut reassembler, &t)?,
                Ok(Message::Close(f)) => return Err(closed(f)),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(io_error("reading from")(e)),
            }
            let now = Instant::now();
            if now.duration_since(last_heartbeat) >= HEARTBEAT_EVERY {
                let ms = Timestamp::now().as_millisecond();
                self.send(&mut socket, &protocol::heartbeat(ms))?;
                last_heartbeat = now;
            }
            let current = self.app.registry.snapshot();
            if !Arc::ptr_eq(&current, &seen) {
                seen = current;
                registered = self.sync_sources(&mut socket, registered)?;
            }
            while let Ok(frame) = self.inbox.try_recv() {
                self.send(&mut socket, &frame)?;
            }
            for step in reassembler.expire(now) {
                self.answer(&mut socket, step)?;
            }
            socket.flush().map_err(io_error("writing to"))?;
        }
    }

    fn register(&self, socket: &mut Socket, sources: &[SourceEntry]) -> Result<(), LinkError> {
        let id = crate::crypto::random_uuid();
        let frame = protocol::source_register(&id, sources, &self.cfg.instance_id, self.cfg.mode);
        log::debug!("source.register with {} source(s)", sources.len());
        self.send(socket, &frame)
    }

    /// Sends what changed since `before`: additions and renames in a `source.register`,
    /// removals in a `source.deregister`.
    fn sync_sources(
        &self,
        socket: &mut Socket,
        before: BTreeMap<String, SourceEntry>,
    ) -> Result<BTreeMap<String, SourceEntry>, LinkError> {
        let now = entries(self.app);
        let changed: Vec<SourceEntry> = now
            .values()
            .filter(|e| before.get(&e.routing_key) != Some(e))
            .cloned()
            .collect();
        let removed: Vec<String> = before
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        if !changed.is_empty() {
            self.register(socket, &changed)?;
        }
        if !removed.is_empty() {
            let id = crate::crypto::random_uuid();
            self.send(socket, &protocol::source_deregister(&id, &removed))?;
        }
        Ok(now)
    }

    /// Frames queued while disconnected, then whatever arrived meanwhile, in order.
    fn flush_backlog(&mut self, socket: &mut Socket) -> Result<(), LinkError> {
        while let Ok(frame) = self.inbox.try_recv() {
            self.backlog.push(frame);
        }
        if self.backlog.dropped > 0 {
            log::warn!(
                "{} status frame(s) were dropped while the Platform was unreachable (buffer of {})",
                self.backlog.dropped,
                super::BUFFER_LIMIT
            );
            self.backlog.dropped = 0;
        }
        let count = self.backlog.len();
        while let Some(frame) = self.backlog.pop() {
            if let Err(e) = self.send(socket, &frame) {
                self.backlog.push_front(frame);
                return Err(e);
            }
        }
        if count > 0 {
            log::info!("Flushed {count} buffered status frame(s) to the Platform");
        }
        Ok(())
    }

    fn replay(&self, socket: &mut Socket) -> Result<(), LinkError> {
        match self.app.pool.with_retry(super::status::recent_runs) {
            Ok(runs) if runs.is_empty() => Ok(()),
            Ok(runs) => {
                let frame = protocol::capped(serde_json::json!({
                    "type": "state.replay",
                    "messageId": crate::crypto::random_uuid(),
                    "runs": runs,
                    "timestamp": Timestamp::now().as_millisecond(),
                }));
                self.send(socket, &frame)
            }
            Err(e) => {
                log::warn!("state.replay skipped: reading recent runs failed: {e}");
                Ok(())
            }
        }
    }

    fn inbound(
        &self,
        socket: &mut Socket,
        r: &mut Reassembler,
        text: &str,
    ) -> Result<(), LinkError> {
        let now = Instant::now();
        match protocol::parse(text) {
            Inbound::RelayStart(start) => {
                let step = r.start(*start, now);
                self.answer(socket, step)
            }
            Inbound::RelayChunk(chunk) => {
                let step = r.chunk(chunk, now);
                self.answer(socket, step)
            }
            Inbound::BadRelay {
                message_id,
                delivery_id,
                why,
            } => {
                log::warn!("malformed relay frame: {why}");
                match message_id {
                    Some(id) => {
                        let step = r.fail(&id, delivery_id.as_deref(), why, now);
                        self.answer(socket, step)
                    }
                    None => Ok(()),
                }
            }
            Inbound::CancelRun {
                request_id,
                run_id,
                force,
            } => {
                let reply = match self.app.agents.cancel_run(
                    &run_id,
                    force,
                    "run cancelled from the Platform",
                ) {
                    Ok(n) => {
                        serde_json::json!({"type": "run.cancel.response", "requestId": request_id, "cancelledJobs": n})
                    }
                    Err(e) => {
                        log::warn!("cancelling run {run_id} for the Platform failed: {e}");
                        serde_json::json!({"type": "run.cancel.response", "requestId": request_id, "error": "the orchestrator could not cancel the run"})
                    }
                };
                self.send(socket, &reply)
            }
            Inbound::Request {
                kind,
                request_id,
                code,
            } => {
                let error = format!("{kind} is not supported by this orchestrator");
                self.send(
                    socket,
                    &protocol::dashboard_error(&kind, &request_id, code, &error),
                )
            }
            Inbound::RegisterAck { accepted, rejected } => {
                for (key, reason) in &rejected {
                    log::warn!("The Platform rejected source {key}: {reason}");
                }
                log::debug!("source.register.ack: {accepted} accepted");
                Ok(())
            }
            Inbound::AuthFailure { reason } => Err(LinkError::Revoked(reason)),
            Inbound::AuthSuccess { .. } => Ok(()),
            Inbound::Other { kind } => {
                log::debug!("Platform frame {kind} ignored");
                Ok(())
            }
            Inbound::Invalid { why } => {
                log::warn!("invalid frame from the Platform ignored: {why}");
                Ok(())
            }
        }
    }

    fn answer(&self, socket: &mut Socket, step: Step) -> Result<(), LinkError> {
        let (message_id, delivery_id, result, reason) = match step {
            Step::Pending | Step::Ignore => return Ok(()),
            Step::Reject {
                message_id,
                delivery_id,
                reason,
            } => (
                message_id,
                delivery_id,
                AckResult::RejectedMisconfigured,
                Some(reason),
            ),
            Step::Complete(start, body) => {
                let (result, reason) = deliver::deliver(self.app, &start, &body);
                (start.message_id, start.delivery_id, result, reason)
            }
        };
        if result != AckResult::Accepted {
            log::info!(
                "relayed delivery {delivery_id} {}: {}",
                result.as_str(),
                reason.as_deref().unwrap_or("")
            );
        }
        crate::metrics::hooks::relayed(result.as_str());
        let ack = protocol::webhook_ack(&message_id, &delivery_id, result, reason.as_deref());
        self.send(socket, &ack)
    }
}

fn closed(frame: Option<CloseFrame>) -> LinkError {
    LinkError::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
}
