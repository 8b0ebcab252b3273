//! One connection's write side: whole frames written under a lock, from any thread (the session's
//! reader, the dispatcher, a webhook's dispatch, an admin cancel), so two writers never
//! interleave bytes and a `job.dispatch` goes out at once.
//!
//! The bytes go to a [`WriteHalf`]: a `TcpStream` in production, an in-memory buffer in tests.

use std::{
    io::Write,
    net::{Shutdown, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::Duration,
};

use serde_json::Value;

use super::wsframe;

/// Where a connection's frames go, and how to end the connection so its reader sees the end.
pub trait WriteHalf: Write + Send {
    fn shutdown(&mut self);
}

impl WriteHalf for TcpStream {
    fn shutdown(&mut self) {
        let _ = TcpStream::shutdown(self, Shutdown::Both);
    }
}

pub struct Writer {
    stream: Mutex<Box<dyn WriteHalf>>,
    closed: AtomicBool,
}

impl Writer {
    pub fn new(stream: TcpStream) -> Writer {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        Writer::over(Box::new(stream))
    }

    /// A writer over any write half (in-memory ones in tests).
    pub fn over(stream: Box<dyn WriteHalf>) -> Writer {
        Writer {
            stream: Mutex::new(stream),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn write(&self, bytes: &[u8]) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let ok = s.write_all(bytes).and_then(|_| s.flush()).is_ok();
        if !ok {
            self.closed.store(true, Ordering::SeqCst);
        }
        ok
    }

    /// Sends a JSON text frame; false when the connection is gone.
    pub fn send(&self, frame: &Value) -> bool {
        self.write(&wsframe::encode(
            wsframe::OP_TEXT,
            frame.to_string().as_bytes(),
        ))
    }

    pub fn send_raw(&self, opcode: u8, payload: &[u8]) -> bool {
        self.write(&wsframe::encode(opcode, payload))
    }

    /// Sends a close frame and ends the connection (its reader sees the end and cleans up).
    pub fn close(&self, code: u16, reason: &str) {
        self.write(&wsframe::close(code, reason));
        self.closed.store(true, Ordering::SeqCst);
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.shutdown();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
