//! One connection's read side: a buffer over a real `TcpStream` whose reads honour a deadline
//! (the idle and request timeouts of server.rs), and chunked body decoding on top of it.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    time::{Duration, Instant},
};

use super::chunked::{ChunkError, ChunkedDecoder};

/// A read that timed out or was interrupted: nothing is wrong, the caller's clock decides.
pub fn read_again(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
use super::server::ShutdownHandle;

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
        let n = self.read_some(&mut chunk, deadline, idle, stop)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One read from the socket into `into` (not the buffer), honouring `deadline`; never 0.
    fn read_some(
        &mut self,
        into: &mut [u8],
        deadline: Instant,
        idle: bool,
        stop: &ShutdownHandle,
    ) -> Result<usize, ReadEnd> {
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
            match self.stream.read(into) {
                Ok(0) => return Err(ReadEnd::Quiet),
                Ok(n) => return Ok(n),
                Err(e) if read_again(&e) => {}
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

    /// Takes exactly `n` bytes (already checked against the route's limit). Bytes past the
    /// buffered ones are read straight into the result, so the connection's buffer never grows
    /// to the body's size. The result is reserved once but written only as bytes arrive (reads
    /// of at most `READ_STEP`), so an announced length costs address space, not memory, until
    /// the client actually sends it.
    pub(super) fn take(
        &mut self,
        n: usize,
        deadline: Instant,
        stop: &ShutdownHandle,
    ) -> Result<Vec<u8>, ReadEnd> {
        let have = self.buffered().len().min(n);
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(&self.buffered()[..have]);
        self.consume(have);
        while out.len() < n {
            let filled = out.len();
            let room = (n - filled).min(READ_STEP);
            out.resize(filled + room, 0);
            match self.read_some(&mut out[filled..], deadline, false, stop) {
                Ok(got) => out.truncate(filled + got),
                Err(end) => return Err(end),
            }
        }
        Ok(out)
    }

    /// Gives a large buffer back after a request, so an idle keep-alive connection holds little.
    pub(super) fn release(&mut self) {
        if self.buf.capacity() > KEEP_BUFFER {
            let rest = self.buffered().to_vec();
            self.buf = rest;
            self.pos = 0;
        }
    }

    /// Ends a connection whose announced body is left unread: stop sending, then discard what
    /// the client is still sending for at most a moment, without buffering it. Closing at once
    /// with unread bytes makes the kernel answer with a reset, which can destroy the response
    /// before a client reads it; reading the whole body is the cost a refusal must not have.
    pub(super) fn linger_close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER_TIME;
        let mut scratch = [0u8; 8192];
        let mut discarded = 0usize;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        while discarded < LINGER_BYTES && Instant::now() < deadline {
            match self.stream.read(&mut scratch) {
                Ok(0) => break,
                Ok(n) => discarded += n,
                Err(e) if read_again(&e) => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The most of a body's buffer touched ahead of the bytes that fill it.
const READ_STEP: usize = 64 * 1024;
/// A connection's read buffer above this is dropped after the request (heads are ≤ 32 KiB).
const KEEP_BUFFER: usize = 64 * 1024;
/// A refused request's unread body is discarded for at most this long and this many bytes.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

pub(super) type ChunkResult = Result<Result<Vec<u8>, (u16, &'static str)>, ReadEnd>;

/// Reads a chunked body of at most `max_body` decoded bytes.
pub(super) fn read_chunked(
    conn: &mut Conn,
    max_body: u64,
    max_trailer: usize,
    deadline: Instant,
    stop: &ShutdownHandle,
) -> ChunkResult {
    let mut decoder = ChunkedDecoder::new(max_body, max_trailer);
    let mut body = Vec::new();
    loop {
        match decoder.feed(conn.buffered(), &mut body) {
            Ok(used) => conn.consume(used),
            Err(ChunkError::Malformed) => return Ok(Err((400, "Malformed chunked body"))),
            Err(ChunkError::TooLarge) => return Ok(Err((413, "Request body too large"))),
            Err(ChunkError::TrailerTooLarge) => {
                return Ok(Err((431, "Request header fields too large")))
            }
        }
        if decoder.is_done() {
            return Ok(Ok(body));
        }
        conn.fill(deadline, false, stop)?;
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
