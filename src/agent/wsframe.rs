//! The server side of RFC 6455 framing for the agent endpoint (docs/agent-protocol.md,
//! "Connection"). Pure: bytes in, frames out.
//!
//! Why not tungstenite here (it is used for the Platform client): an agent connection is read by
//! its own thread while other threads (a webhook's dispatch, an admin cancel) must write to it at
//! once. With our own codec every outgoing message is one pre-encoded buffer written under a
//! mutex, so a `job.dispatch` goes out immediately instead of waiting for the reader's next tick,
//! and two writers can never interleave bytes. Extensions (`permessage-deflate`) are declined.

use data_encoding::BASE64;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest agent message, fragments joined (the reference's rate limiter: 4 MB max message).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// A framing error and the close code it calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: u16,
    pub reason: &'static str,
}

const fn error(code: u16, reason: &'static str) -> FrameError {
    FrameError { code, reason }
}

/// One frame from the front of `buf`: `Ok(None)` when more bytes are needed, else the frame and
/// how many bytes it used. Client frames must be masked (RFC 6455 §5.1).
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(error(
            1002,
            "Reserved bits set (no extension was negotiated)",
        ));
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(error(1002, "Unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(error(1002, "Client frames must be masked"));
    }
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= OP_CLOSE && (len > 125 || !fin) {
        return Err(error(1002, "Control frames must be short and unfragmented"));
    }
    if len > max_payload as u64 {
        return Err(error(1009, "Message too big"));
    }
    let len = len as usize;
    if buf.len() < pos + 4 + len {
        return Ok(None);
    }
    let mask = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
    pos += 4;
    let payload = buf[pos..pos + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        pos + len,
    )))
}

/// A server frame (unmasked, final).
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    // Control payloads are at most 125 bytes.
    payload.extend(reason.as_bytes().iter().take(123));
    encode(OP_CLOSE, &payload)
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{GUID}", key.trim()).as_bytes(),
    );
    BASE64.encode(digest.as_ref())
}

/// Joins fragmented data frames into messages; control frames pass through.
#[derive(Default)]
pub struct Assembler {
    partial: Option<(u8, Vec<u8>)>,
}

pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>),
    Ping(Vec<u8>),
    Pong,
}

impl Assembler {
    pub fn push(&mut self, f: Frame, max_message: usize) -> Result<Option<Message>, FrameError> {
        match f.opcode {
            OP_CLOSE => {
                let code = (f.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                return Ok(Some(Message::Close(code)));
            }
            OP_PING => return Ok(Some(Message::Ping(f.payload))),
            OP_PONG => return Ok(Some(Message::Pong)),
            _ => {}
        }
        let (opcode, mut data) = match (f.opcode, self.partial.take()) {
            (OP_CONTINUATION, Some(p)) => p,
            (OP_CONTINUATION, None) => return Err(error(1002, "Continuation without a message")),
            (_, Some(_)) => return Err(error(1002, "New message inside a fragmented one")),
            (op, None) => (op, Vec::new()),
        };
        if data.len() + f.payload.len() > max_message {
            return Err(error(1009, "Message too big"));
        }
        data.extend_from_slice(&f.payload);
        if !f.fin {
            self.partial = Some((opcode, data));
            return Ok(None);
        }
        Ok(Some(match opcode {
            OP_TEXT => Message::Text(
                String::from_utf8(data).map_err(|_| error(1007, "Text message is not UTF-8"))?,
            ),
            _ => Message::Binary(data),
        }))
    }
}

/// A client frame (masked), as agents send them: for tests.
#[cfg(test)]
pub fn client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The server frames (unmasked) in `bytes`, as an agent reads them: for tests.
#[cfg(test)]
pub fn server_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let (len, pos) = match bytes[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        frames.push(Frame {
            fin: bytes[0] & 0x80 != 0,
            opcode: bytes[0] & 0x0F,
            payload: bytes[pos..pos + len].to_vec(),
        });
        bytes = &bytes[pos + len..];
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_accept_key_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_masked_frames_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            let bytes = client(OP_TEXT, true, &payload);
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert_eq!(
                        parse(&bytes[..cut], 1 << 20),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
            }
            let (frame, used) = parse(&bytes, 1 << 20).unwrap().unwrap();
            assert_eq!(
                (frame.payload.len(), used, frame.fin, frame.opcode),
                (len, bytes.len(), true, OP_TEXT)
            );
        }
        // RFC 6455 §5.7: a masked "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (frame, _) = parse(&hello, 100).unwrap().unwrap();
        assert_eq!(frame.payload, b"Hello");
    }

    #[test]
    fn refuses_what_it_must() {
        assert_eq!(
            parse(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], 100)
                .unwrap_err()
                .code,
            1002,
            "unmasked"
        );
        assert_eq!(
            parse(&[0xC1, 0x80, 0, 0, 0, 0], 100).unwrap_err().code,
            1002,
            "RSV1 without deflate"
        );
        assert_eq!(
            parse(&[0x83, 0x80, 0, 0, 0, 0], 100).unwrap_err().code,
            1002,
            "opcode 3"
        );
        assert_eq!(
            parse(&client(OP_PING, false, b""), 100).unwrap_err().code,
            1002,
            "fragmented ping"
        );
        assert_eq!(
            parse(&client(OP_TEXT, true, &[b'a'; 200]), 100)
                .unwrap_err()
                .code,
            1009
        );
    }

    #[test]
    fn assembles_fragments_and_encodes_server_frames() {
        let mut a = Assembler::default();
        let f = |op, fin, p: &[u8]| parse(&client(op, fin, p), 1000).unwrap().unwrap().0;
        assert!(a.push(f(OP_TEXT, false, b"hel"), 100).unwrap().is_none());
        assert!(
            matches!(a.push(f(OP_PING, true, b"p"), 100).unwrap(), Some(Message::Ping(p)) if p == b"p")
        );
        match a.push(f(OP_CONTINUATION, true, b"lo"), 100).unwrap() {
            Some(Message::Text(t)) => assert_eq!(t, "hello"),
            _ => panic!("expected text"),
        }
        assert_eq!(
            a.push(f(OP_CONTINUATION, true, b"x"), 100)
                .err()
                .unwrap()
                .code,
            1002
        );
        assert_eq!(
            a.push(f(OP_TEXT, true, &[0xff, 0xfe]), 100)
                .err()
                .unwrap()
                .code,
            1007
        );
        assert!(matches!(
            a.push(f(OP_CLOSE, true, &[0x0f, 0xa2]), 100).unwrap(),
            Some(Message::Close(Some(4002)))
        ));
        assert_eq!(encode(OP_TEXT, b"hi"), [0x81, 2, b'h', b'i']);
        assert_eq!(&encode(OP_TEXT, &[0; 300])[..4], [0x81, 126, 1, 44]);
        assert_eq!(
            &close(4010, "Authentication failed")[..4],
            [0x88, 23, 0x0f, 0xaa]
        );
    }
}

#[cfg(test)]
mod limits {
    use super::*;

    /// The header of a masked client frame announcing `len` payload bytes.
    fn header(opcode: u8, fin: bool, len: usize) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | 127];
        out.extend_from_slice(&(len as u64).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // zero mask: payload bytes are sent as they are
        out
    }

    #[test]
    fn a_frame_of_exactly_the_largest_message_is_read_one_more_byte_is_refused() {
        let mut exact = header(OP_TEXT, true, MAX_MESSAGE);
        exact.resize(exact.len() + MAX_MESSAGE, b'a');
        let (frame, used) = parse(&exact, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!((frame.payload.len(), used), (MAX_MESSAGE, exact.len()));
        match Assembler::default().push(frame, MAX_MESSAGE) {
            Ok(Some(Message::Text(t))) => assert_eq!(t.len(), MAX_MESSAGE),
            _ => panic!("the largest message is delivered whole"),
        }
        // Refused from the header alone: nothing of the payload is waited for or buffered.
        let over = header(OP_TEXT, true, MAX_MESSAGE + 1);
        assert_eq!(parse(&over, MAX_MESSAGE).unwrap_err().code, 1009);
    }

    #[test]
    fn fragments_adding_up_to_the_limit_pass_one_byte_more_is_refused() {
        let frame = |opcode, fin, len| Frame {
            fin,
            opcode,
            payload: vec![b'x'; len],
        };
        let mut a = Assembler::default();
        assert!(a.push(frame(OP_TEXT, false, 60), 100).unwrap().is_none());
        match a.push(frame(OP_CONTINUATION, true, 40), 100) {
            Ok(Some(Message::Text(t))) => assert_eq!(t.len(), 100),
            _ => panic!("exactly the limit is one message"),
        }
        assert!(a.push(frame(OP_TEXT, false, 60), 100).unwrap().is_none());
        assert_eq!(
            a.push(frame(OP_CONTINUATION, true, 41), 100)
                .err()
                .map(|e| e.code),
            Some(1009)
        );
        // Control frames: 125 bytes is the most (RFC 6455 §5.5).
        let ping = |len: usize| {
            let mut b = vec![0x80 | OP_PING, 0x80 | len as u8, 0, 0, 0, 0];
            b.resize(b.len() + len, 0);
            parse(&b, 1000)
        };
        assert!(ping(125).unwrap().is_some());
        let mut long = vec![0x80 | OP_PING, 0x80 | 126, 0, 126, 0, 0, 0, 0];
        long.resize(long.len() + 126, 0);
        assert_eq!(parse(&long, 1000).unwrap_err().code, 1002);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// What reading a byte stream yields: the frames until the first error, and that error.
    fn read_all(chunks: &[&[u8]], max: usize) -> (Vec<Frame>, Option<FrameError>) {
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        let mut assembler = Assembler::default();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match parse(&buf, max) {
                    Ok(Some((frame, used))) => {
                        assert!(used > 0 && used <= buf.len());
                        buf.drain(..used);
                        frames.push(frame.clone());
                        if let Err(e) = assembler.push(frame, max) {
                            return (frames, Some(e));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    }

    /// A client frame as an agent (or an attacker) could send it.
    fn client_frame() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            prop_oneof![
                Just(0u8),
                Just(1),
                Just(2),
                Just(8),
                Just(9),
                Just(10),
                0u8..16
            ],
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<[u8; 4]>(),
            0u8..3,
        )
            .prop_map(|(fin, opcode, masked, payload, mask, form)| {
                let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
                let m = if masked { 0x80 } else { 0 };
                match (form, payload.len()) {
                    (0, n) if n < 126 => out.push(m | n as u8),
                    (1, n) if n <= 0xFFFF => {
                        out.push(m | 126);
                        out.extend_from_slice(&(n as u16).to_be_bytes());
                    }
                    (_, n) => {
                        out.push(m | 127);
                        out.extend_from_slice(&(n as u64).to_be_bytes());
                    }
                }
                out.extend_from_slice(&mask);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                out
            })
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..4096) {
            let _ = read_all(&[&bytes], max);
        }

        /// However the stream is cut into reads, the same frames and the same error come out.
        #[test]
        fn never_panics_on_fragmented_reads(
            frames in proptest::collection::vec(client_frame(), 0..8),
            garbage in proptest::collection::vec(any::<u8>(), 0..16),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            max in prop_oneof![Just(200usize), Just(MAX_MESSAGE)],
        ) {
            let mut stream: Vec<u8> = frames.concat();
            stream.extend_from_slice(&garbage);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for cut in at {
                chunks.push(&stream[from..cut]);
                from = cut;
            }
            chunks.push(&stream[from..]);
            prop_assert_eq!(read_all(&chunks, max), read_all(&[&stream], max));
        }
    }
}
