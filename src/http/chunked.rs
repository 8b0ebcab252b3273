//! Chunked request bodies (RFC 9112 §7.1) decoded as a state machine fed with bytes, so the
//! framing rules are tested with arbitrary inputs cut at arbitrary points, and conn.rs only
//! moves bytes from the socket into it.

use super::parse::parse_chunk_size;

/// A chunk-size line longer than this is refused: 15 hex digits plus generous extensions.
const MAX_SIZE_LINE: usize = 1024;

/// Why a chunked body was refused; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// 400: not chunked framing.
    Malformed,
    /// 413: the decoded body would exceed the route's limit.
    TooLarge,
    /// 431: the trailer section exceeds the header limit.
    TrailerTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes left.
    Data(u64),
    /// Expecting the line end after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to a blank one.
    Trailer,
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    body_len: u64,
    max_body: u64,
    trailer_len: usize,
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// `max_body`: decoded bytes allowed; `max_trailer`: trailer bytes allowed (the head limit).
    pub fn new(max_body: u64, max_trailer: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            body_len: 0,
            max_body,
            trailer_len: 0,
            max_trailer,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can of `input`, appending body bytes to `out`, and returns how many input
    /// bytes it used. Unused bytes are an incomplete line (or follow the body): the caller keeps
    /// them and feeds them again with more. Nothing is used after the body ends.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Done => return Ok(used),
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..n]);
                    used += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::Size | State::DataEnd | State::Trailer => {
                    let max_line = match self.state {
                        State::Size => MAX_SIZE_LINE,
                        State::DataEnd => 2,
                        _ => self.max_trailer.saturating_sub(self.trailer_len),
                    };
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > max_line {
                            return Err(self.line_too_long());
                        }
                        return Ok(used);
                    };
                    if nl + 1 > max_line.max(2) {
                        return Err(self.line_too_long());
                    }
                    let raw = &rest[..nl];
                    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                    used += nl + 1;
                    self.line(line, nl + 1)?;
                }
            }
        }
    }

    fn line_too_long(&self) -> ChunkError {
        match self.state {
            State::Trailer => ChunkError::TrailerTooLarge,
            _ => ChunkError::Malformed,
        }
    }

    /// One complete line (without its line end) of `raw_len` bytes in the current state.
    fn line(&mut self, line: &[u8], raw_len: usize) -> Result<(), ChunkError> {
        match self.state {
            State::Size => {
                let size = parse_chunk_size(line).map_err(|_| ChunkError::Malformed)?;
                if size == 0 {
                    self.state = State::Trailer;
                    return Ok(());
                }
                match self.body_len.checked_add(size) {
                    Some(total) if total <= self.max_body => self.body_len = total,
                    _ => return Err(ChunkError::TooLarge),
                }
                self.state = State::Data(size);
            }
            State::DataEnd if line.is_empty() => self.state = State::Size,
            State::DataEnd => return Err(ChunkError::Malformed),
            State::Trailer => {
                self.trailer_len += raw_len;
                if self.trailer_len > self.max_trailer {
                    return Err(ChunkError::TrailerTooLarge);
                }
                if line.is_empty() {
                    self.state = State::Done;
                }
            }
            State::Data(_) | State::Done => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in one piece; the body or the error.
    fn decode(input: &[u8], max_body: u64) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new(max_body, 64);
        let mut out = Vec::new();
        let used = d.feed(input, &mut out)?;
        assert!(
            d.is_done(),
            "incomplete: {:?}",
            String::from_utf8_lossy(input)
        );
        Ok((out, used))
    }

    #[test]
    fn decodes_and_stops_at_the_end_of_the_body() {
        let input = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1";
        let (body, used) = decode(input, 100).unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(&input[used..], b"GET / HTTP/1.1");
        assert_eq!(decode(b"1\nx\n0\n\n", 100).unwrap().0, b"x", "bare LF");
    }

    #[test]
    fn body_exactly_at_the_limit_passes_and_one_over_is_too_large() {
        assert_eq!(decode(b"4\r\nabcd\r\n0\r\n\r\n", 4).unwrap().0, b"abcd");
        let mut d = ChunkedDecoder::new(4, 64);
        let r = d.feed(b"2\r\nab\r\n3\r\nabc\r\n0\r\n\r\n", &mut Vec::new());
        assert_eq!(r, Err(ChunkError::TooLarge));
    }

    #[test]
    fn trailer_exactly_at_the_limit_passes_and_one_over_is_refused() {
        // "X: 1234\r\n" is 9 bytes, the blank line 2: 11 in all.
        let ok = b"0\r\nX: 1234\r\n\r\n";
        let mut d = ChunkedDecoder::new(10, 11);
        assert_eq!(d.feed(ok, &mut Vec::new()), Ok(ok.len()));
        assert!(d.is_done());
        let mut d = ChunkedDecoder::new(10, 10);
        assert_eq!(
            d.feed(ok, &mut Vec::new()),
            Err(ChunkError::TrailerTooLarge)
        );
    }

    #[test]
    fn size_line_at_its_limit_passes_and_one_over_is_refused() {
        let ext = "x".repeat(MAX_SIZE_LINE - 4); // "1;" + ext + "\r\n" = MAX_SIZE_LINE
        let ok = format!("1;{ext}\r\na\r\n0\r\n\r\n");
        assert_eq!(decode(ok.as_bytes(), 10).unwrap().0, b"a");
        let over = format!("1;{ext}x\r\na\r\n0\r\n\r\n");
        let mut d = ChunkedDecoder::new(10, 64);
        assert_eq!(
            d.feed(over.as_bytes(), &mut Vec::new()),
            Err(ChunkError::Malformed)
        );
        // Without a line end in sight, too many bytes are refused as soon as they are seen.
        let mut d = ChunkedDecoder::new(10, 64);
        let endless = vec![b'1'; MAX_SIZE_LINE + 1];
        assert_eq!(
            d.feed(&endless, &mut Vec::new()),
            Err(ChunkError::Malformed)
        );
    }

    #[test]
    fn refuses_bad_framing() {
        for bad in [
            &b"+3\r\nabc\r\n0\r\n\r\n"[..],
            b"-3\r\nabc\r\n0\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"\r\n",
        ] {
            let mut d = ChunkedDecoder::new(100, 64);
            let r = d.feed(bad, &mut Vec::new());
            assert_eq!(
                r,
                Err(ChunkError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn waits_for_whole_lines() {
        let mut d = ChunkedDecoder::new(100, 64);
        let mut out = Vec::new();
        assert_eq!(d.feed(b"1", &mut out), Ok(0));
        assert_eq!(d.feed(b"11\r\nab", &mut out), Ok(6));
        assert_eq!(out, b"ab");
        assert_eq!(d.feed(b"c", &mut out), Ok(1));
        assert_eq!(out, b"abc");
        assert!(!d.is_done());
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `input` cut at `cuts` the way conn.rs does: unused bytes stay buffered and are fed
    /// again with the next piece.
    fn feed_in_pieces(
        input: &[u8],
        cuts: &[usize],
        max_body: u64,
    ) -> (Result<(), ChunkError>, Vec<u8>, bool) {
        let mut d = ChunkedDecoder::new(max_body, 256);
        let mut out = Vec::new();
        let mut buffered: Vec<u8> = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.push(input.len());
        points.sort_unstable();
        let mut from = 0;
        for to in points {
            buffered.extend_from_slice(&input[from..to]);
            from = to;
            match d.feed(&buffered, &mut out) {
                Ok(used) => {
                    buffered.drain(..used);
                }
                Err(e) => return (Err(e), out, false),
            }
        }
        (Ok(()), out, d.is_done())
    }

    fn encode(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_on_arbitrary_bytes_cut_anywhere(
            input in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max_body in 0u64..4096,
        ) {
            let (result, out, _) = feed_in_pieces(&input, &cuts, max_body);
            prop_assert!(out.len() as u64 <= max_body);
            let _ = result;
        }

        #[test]
        fn never_panics_and_round_trips_valid_bodies_cut_anywhere(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let wire = encode(&chunks);
            let (result, out, done) = feed_in_pieces(&wire, &cuts, 1 << 20);
            prop_assert_eq!(result, Ok(()));
            prop_assert!(done);
            prop_assert_eq!(out, chunks.concat());
        }
    }
}
