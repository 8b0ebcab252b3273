//! One connection's read side: a buffer over a real `TcpStream` whose reads honour a deadline
//! (the idle and request timeouts of server.rs), and chunked body decoding on top of it.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use super::parse;
use super::server::{Limits, ShutdownHandle};

pub(super) const INTERIM: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Why reading stopped.
pub(super) enum ReadEnd {
    /// Peer closed, idle timeout, or shutdown while idle: close quietly.
    Quiet,
    /// Request did not arrive in time: 408.
    Timeout,
    Io(io::Error),
}

/// A connection with its read buffer; reads honour a deadline.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pub(super) pos: usize,
}

impl Conn {
    pub(super) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes. `idle` means no byte of a request has arrived yet: then a timeout or a
    /// shutdown is a quiet close, otherwise a 408.
    pub(super) fn fill(
        &mut self,
        deadline: Instant,
        idle: bool,
        stop: &ShutdownHandle,
    ) -> Result<(), ReadEnd> {
        if self.pos > 0 && self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 8192];
        loop {
            if idle && stop.is_shutdown() {
                return Err(ReadEnd::Quiet);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(if idle {
                    ReadEnd::Quiet
                } else {
                    ReadEnd::Timeout
                });
            }
            // The socket's read timeout is a fixed TICK (set once per connection in server.rs):
            // a read returns at least every TICK, the deadline is checked here, and no
            // setsockopt is needed per read. Deadlines are therefore kept to within one TICK.
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadEnd::Quiet),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Err(ReadEnd::Quiet)
                }
                Err(e) => return Err(ReadEnd::Io(e)),
            }
        }
    }

    /// Takes exactly `n` bytes, reading as needed.
    pub(super) fn take(
        &mut self,
        n: usize,
        deadline: Instant,
        stop: &ShutdownHandle,
    ) -> Result<Vec<u8>, ReadEnd> {
        while self.buffered().len() < n {
            self.fill(deadline, false, stop)?;
        }
        let out = self.buffered()[..n].to_vec();
        self.consume(n);
        Ok(out)
    }

    /// Takes one CRLF-terminated line (without the line end), at most `max` bytes.
    pub(super) fn line(
        &mut self,
        max: usize,
        deadline: Instant,
        stop: &ShutdownHandle,
    ) -> Result<Option<Vec<u8>>, ReadEnd> {
        loop {
            if let Some(i) = self.buffered().iter().position(|&b| b == b'\n') {
                let raw = &self.buffered()[..i];
                let line = raw.strip_suffix(b"\r").unwrap_or(raw).to_vec();
                self.consume(i + 1);
                return Ok(Some(line));
            }
            if self.buffered().len() > max {
                return Ok(None);
            }
            self.fill(deadline, false, stop)?;
        }
    }
}

pub(super) type ChunkResult = Result<Result<Vec<u8>, (u16, &'static str)>, ReadEnd>;

pub(super) fn read_chunked(
    conn: &mut Conn,
    limits: &Limits,
    deadline: Instant,
    stop: &ShutdownHandle,
) -> ChunkResult {
    let mut body = Vec::new();
    loop {
        let Some(line) = conn.line(1024, deadline, stop)? else {
            return Ok(Err((400, "Malformed chunked body")));
        };
        let size = match parse::parse_chunk_size(&line) {
            Ok(s) => s,
            Err(_) => return Ok(Err((400, "Malformed chunked body"))),
        };
        if size == 0 {
            // Trailer fields, ignored, up to the blank line.
            loop {
                match conn.line(limits.max_head_bytes, deadline, stop)? {
                    Some(l) if l.is_empty() => return Ok(Ok(body)),
                    Some(_) => continue,
                    None => return Ok(Err((431, "Request header fields too large"))),
                }
            }
        }
        if body.len() as u64 + size > limits.max_body_bytes {
            return Ok(Err((413, "Request body too large")));
        }
        body.extend_from_slice(&conn.take(size as usize, deadline, stop)?);
        match conn.line(2, deadline, stop)? {
            Some(l) if l.is_empty() => {}
            _ => return Ok(Err((400, "Malformed chunked body"))),
        }
    }
}

/// A request body read on demand from the connection: at most `remaining` bytes, each read
/// within `timeout` of the previous one (a stalled upload ends, a slow but moving one does not).
pub(super) struct BodyReader<'a> {
    pub(super) conn: &'a mut Conn,
    /// The client sent `Expect: 100-continue` and has not been told to go on yet.
    pub(super) send_continue: bool,
    pub(super) remaining: u64,
    pub(super) timeout: Duration,
    pub(super) stop: &'a ShutdownHandle,
}

impl io::Read for BodyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || out.is_empty() {
            return Ok(0);
        }
        if std::mem::take(&mut self.send_continue) {
            self.conn.stream.write_all(INTERIM)?;
        }
        if self.conn.buffered().is_empty() {
            let deadline = Instant::now() + self.timeout;
            self.conn
                .fill(deadline, false, self.stop)
                .map_err(|end| match end {
                    ReadEnd::Io(e) => e,
                    ReadEnd::Timeout => io::Error::new(io::ErrorKind::TimedOut, "upload stalled"),
                    ReadEnd::Quiet => {
                        io::Error::new(io::ErrorKind::UnexpectedEof, "client went away")
                    }
                })?;
        }
        let n = self
            .conn
            .buffered()
            .len()
            .min(out.len())
            .min(self.remaining as usize);
        out[..n].copy_from_slice(&self.conn.buffered()[..n]);
        self.conn.consume(n);
        self.remaining -= n as u64;
        Ok(n)
    }
}
