//! The link to the KiCI Platform (docs/platform-protocol.md), opened in `platform` and `hybrid`
//! modes: one outbound WebSocket held by a dedicated thread (`client`), relayed webhooks
//! reassembled (`reassembly`, pure) and recorded (`deliver`), status frames forwarded in order
//! (`Link::send`, buffered while disconnected), and the OIDC token relay (`oidc`). Frames are built
//! and parsed in `protocol` (pure).

pub mod client;
pub mod deliver;
pub mod oidc;
pub mod protocol;
pub mod reassembly;
pub mod status;

use std::{
    collections::VecDeque,
    sync::{mpsc, Mutex},
    time::Duration,
};

use jiff::Timestamp;
use serde_json::{json, Value};

/// Status frames kept while disconnected (the reference's ring size); the oldest go first.
pub const BUFFER_LIMIT: usize = 10_000;

/// Reconnect delay: `min(1 s · 1.5^attempt · (1 + jitter·0.5), 60 s)`, `jitter` in [0, 1).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = 1000.0 * 1.5f64.powi(attempt.min(64) as i32) * (1.0 + jitter.clamp(0.0, 1.0) * 0.5);
    Duration::from_millis(base.min(60_000.0) as u64)
}

/// The Platform's HTTP(S) base for its REST endpoints: `ws→http`, `wss→https`, one trailing
/// `/ws` dropped, any other path kept.
pub fn http_base(platform_url: &str) -> String {
    let url = platform_url.trim_end_matches('/');
    let url = if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    };
    url.strip_suffix("/ws").map(str::to_owned).unwrap_or(url)
}

/// The WebSocket URL: `http(s)` given in `KICI_PLATFORM_URL` is taken as `ws(s)`.
pub fn ws_url(platform_url: &str) -> String {
    if let Some(rest) = platform_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = platform_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        platform_url.to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Authenticated,
    Disconnected,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Authenticated => "connected",
            Phase::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinkState {
    pub phase: Phase,
    pub since: Timestamp,
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Status frames dropped because the buffer was full while disconnected.
    pub dropped: u64,
}

/// Shared between the relay thread and the rest of the daemon: the link's state for `/ready`,
/// and the queue of status frames to forward.
pub struct Link {
    state: Mutex<LinkState>,
    outbox: Mutex<mpsc::Sender<Value>>,
    inbox: Mutex<Option<mpsc::Receiver<Value>>>,
}

impl Default for Link {
    fn default() -> Link {
        let (tx, rx) = mpsc::channel();
        Link {
            state: Mutex::new(LinkState {
                phase: Phase::Connecting,
                since: Timestamp::now(),
                last_error: None,
                attempts: 0,
                dropped: 0,
            }),
            outbox: Mutex::new(tx),
            inbox: Mutex::new(Some(rx)),
        }
    }
}

impl Link {
    /// Queues a status frame (`execution.status`, `job.status.forward`, …) for the Platform, in
    /// order; while disconnected it waits in a bounded buffer.
    pub fn send(&self, frame: Value) {
        let _ = self
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(protocol::capped(frame));
    }

    pub fn state(&self) -> LinkState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut LinkState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn take_inbox(&self) -> Option<mpsc::Receiver<Value>> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// For `/ready`: the link's phase and why it is not connected.
    pub fn ready_json(&self) -> Value {
        let s = self.state();
        let mut v = json!({ "state": s.phase.as_str(), "since": s.since.to_string() });
        if s.phase != Phase::Authenticated {
            if let Some(e) = &s.last_error {
                v["lastError"] = json!(e);
            }
            v["attempts"] = json!(s.attempts);
        }
        v
    }
}

/// The frames buffered while the link is down: bounded, oldest dropped, counted.
#[derive(Default)]
pub struct Backlog {
    frames: VecDeque<Value>,
    pub dropped: u64,
}

impl Backlog {
    pub fn push(&mut self, frame: Value) {
        if self.frames.len() >= BUFFER_LIMIT {
            self.frames.pop_front();
            self.dropped += 1;
        }
        self.frames.push_back(frame);
    }

    pub fn pop(&mut self) -> Option<Value> {
        self.frames.pop_front()
    }

    pub fn push_front(&mut self, frame: Value) {
        self.frames.push_front(frame);
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bounds() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(1000));
        assert_eq!(backoff(0, 0.999_999), Duration::from_millis(1499));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(1500));
        assert_eq!(backoff(5, 0.0), Duration::from_millis(7593));
        assert_eq!(backoff(9, 0.0), Duration::from_millis(38443));
        assert_eq!(
            backoff(10, 0.0),
            Duration::from_secs(57) + Duration::from_millis(665)
        );
        for attempt in 11..200 {
            assert_eq!(backoff(attempt, 0.7), Duration::from_secs(60), "{attempt}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(http_base("wss://api.kici.dev/ws"), "https://api.kici.dev");
        assert_eq!(
            http_base("ws://127.0.0.1:9/base/ws/"),
            "http://127.0.0.1:9/base"
        );
        assert_eq!(http_base("wss://relay.kici.dev"), "https://relay.kici.dev");
        assert_eq!(http_base("wss://h/ws/ws"), "https://h/ws");
        assert_eq!(ws_url("https://h/ws"), "wss://h/ws");
        assert_eq!(ws_url("ws://h/ws"), "ws://h/ws");
    }

    #[test]
    fn backlog_drops_the_oldest_and_counts() {
        let mut b = Backlog::default();
        for i in 0..BUFFER_LIMIT + 3 {
            b.push(json!(i));
        }
        assert_eq!((b.len(), b.dropped), (BUFFER_LIMIT, 3));
        assert_eq!(b.pop(), Some(json!(3)));
    }
}
