//! Shared by the benchmark examples (`relaybench`, `agentbench`): flag parsing and reading JSON
//! text frames from a WebSocket whose socket has a read timeout.

use std::io::{Read, Write};

use serde_json::Value;
use tungstenite::{Message, WebSocket};

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
