//! HTTP/1.1 request heads and chunked bodies as pure functions over bytes (no sockets), so the
//! parsing rules are unit-tested byte for byte and the server loop only moves bytes around.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent (path and query, still percent-encoded).
    pub target: String,
    pub version: Version,
    /// Header names lower-cased; values trimmed. Order kept; repeated names kept.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// Why a request head was refused; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// 400: the bytes are not an HTTP/1.x request.
    Malformed(&'static str),
    /// 505: HTTP/2 preface or another version.
    Version,
    /// 501: a transfer coding other than chunked.
    UnsupportedEncoding,
}

/// The first value of header `name` (case-insensitive) in a parsed header list.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client wants the connection kept after this request (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.has_token("connection", "close"),
            Version::Http10 => self.has_token("connection", "keep-alive"),
        }
    }

    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// How the body is framed. Both Content-Length and Transfer-Encoding, or conflicting
    /// Content-Length values, are refused: that ambiguity is how request smuggling works.
    pub fn body_kind(&self) -> Result<BodyKind, HeadError> {
        let te: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == "transfer-encoding")
            .map(|(_, v)| v.as_str())
            .collect();
        let cl: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.as_str())
            .collect();
        if !te.is_empty() {
            if !cl.is_empty() {
                return Err(HeadError::Malformed(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            let codings: Vec<&str> = te
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            return if codings.len() == 1 && codings[0].eq_ignore_ascii_case("chunked") {
                Ok(BodyKind::Chunked)
            } else {
                Err(HeadError::UnsupportedEncoding)
            };
        }
        let mut len = None;
        for v in cl.iter().flat_map(|v| v.split(',')).map(str::trim) {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 18 {
                return Err(HeadError::Malformed("invalid Content-Length"));
            }
            let n: u64 = v
                .parse()
                .map_err(|_| HeadError::Malformed("invalid Content-Length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting Content-Length values"));
            }
            len = Some(n);
        }
        Ok(match len {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        })
    }
}

/// Where reading a request head stands, given the bytes buffered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadScan {
    /// The head is the first `n` bytes (blank line included), within the limit.
    Complete(usize),
    NeedMore,
    /// The head is, or will be, longer than the limit: 431.
    TooLarge,
}

/// Finds the end of the head in `buf`, refusing heads longer than `max` bytes (blank line
/// included). A head of exactly `max` bytes is accepted.
pub fn scan_head(buf: &[u8], max: usize) -> HeadScan {
    // Only the first `max` bytes can hold an acceptable head; not scanning past them keeps a
    // pipelined body out of the search.
    match find_head_end(&buf[..buf.len().min(max)]) {
        Some(end) => HeadScan::Complete(end),
        None if buf.len() >= max => HeadScan::TooLarge,
        None => HeadScan::NeedMore,
    }
}

/// Index just past the blank line ending the head, if the buffer holds a whole head.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a complete head (as delimited by `find_head_end`).
pub fn parse_head(bytes: &[u8]) -> Result<Head, HeadError> {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    let mut text = bytes;
    while let Some(rest) = text
        .strip_prefix(b"\r\n")
        .or_else(|| text.strip_prefix(b"\n"))
    {
        text = rest;
    }
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().ok_or(HeadError::Malformed("empty request"))?;
    if request_line.starts_with(b"PRI * HTTP/2") {
        return Err(HeadError::Version);
    }
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => {
            return Err(HeadError::Malformed(
                "request line must be METHOD TARGET VERSION",
            ))
        }
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_char(b)) {
        return Err(HeadError::Malformed("invalid method"));
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(HeadError::Malformed("invalid request target"));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        v if v.starts_with(b"HTTP/") => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed("invalid HTTP version")),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HeadError::Malformed("obsolete header line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::Malformed("header line without ':'"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
            return Err(HeadError::Malformed("invalid header name"));
        }
        if value.iter().any(|&b| b == 0 || b == b'\r') {
            return Err(HeadError::Malformed("invalid header value"));
        }
        headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value)
                .trim_matches([' ', '\t'])
                .to_owned(),
        ));
    }
    if version == Version::Http11 && !headers.iter().any(|(n, _)| n == "host") {
        return Err(HeadError::Malformed("missing Host header"));
    }
    Ok(Head {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        version,
        headers,
    })
}

/// Parses a chunk-size line (without its CRLF): hex size, optional `;extensions`.
///
/// Only hex digits are a size: `u64::from_str_radix` alone also takes a leading `+`, and a
/// framing rule two parsers read differently is how request smuggling starts. Whitespace is
/// tolerated only before the `;` (RFC 9112 §7.1.1 BWS).
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, HeadError> {
    let bad = HeadError::Malformed("invalid chunk size");
    let hex = line.split(|&b| b == b';').next().unwrap_or(line);
    let end = hex
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    let hex = &hex[..end];
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad);
    }
    Ok(hex.iter().fold(0u64, |n, &b| {
        (n << 4) | u64::from(hex_value(b).unwrap_or(0))
    }))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes one path segment or query value like JavaScript's `encodeURIComponent`
/// (`github:1` → `github%3A1`), which is what the server decodes.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => out.push(b as char),
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes of one path segment. `None` when a `%` is not followed by exactly two
/// hex digits (`%+1` would otherwise decode through `from_str_radix`, and `%zz` kept literally
/// means two spellings of one path) or when the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex_value)?;
            let lo = b.get(i + 2).copied().and_then(hex_value)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `a=1&b=x%20y` into decoded pairs (`+` is a space, as browsers and curl send it).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec =
                |s: &str| percent_decode(&s.replace('+', " ")).unwrap_or_else(|| s.to_owned());
            (dec(k), dec(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Head, HeadError> {
        let end = find_head_end(s.as_bytes()).expect("complete head");
        parse_head(&s.as_bytes()[..end])
    }

    #[test]
    fn parses_a_request_head() {
        let h = head("POST /webhook/o/generic/s?x=1 HTTP/1.1\r\nHost: a\r\nX-Signature-256:  sha256=ab \r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/webhook/o/generic/s?x=1");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.header("x-signature-256"), Some("sha256=ab"));
        assert_eq!(h.header("X-SIGNATURE-256"), Some("sha256=ab"));
        assert_eq!(h.body_kind(), Ok(BodyKind::Length(5)));
        assert!(h.keep_alive());
    }

    #[test]
    fn head_end_needs_a_blank_line() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"),
            Some(27)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\nrest"), Some(16));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !head("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive()
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive());
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .keep_alive());
    }

    #[test]
    fn refuses_what_it_must() {
        use HeadError::*;
        assert!(matches!(
            head("GET / HTTP/1.1\r\n\r\n"),
            Err(Malformed("missing Host header"))
        ));
        assert_eq!(head("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Err(Version));
        assert_eq!(head("GET / HTTP/3\r\nHost: a\r\n\r\n"), Err(Version));
        assert!(matches!(
            head("GET /\r\nHost: a\r\n\r\n"),
            Err(Malformed(_))
        ));
        assert!(matches!(
            head("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
            Err(Malformed(_))
        ));
        assert!(matches!(
            head("GET / HTTP/1.1\r\nBad Name: a\r\nHost: a\r\n\r\n"),
            Err(Malformed(_))
        ));
        let both = head(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert!(matches!(both.body_kind(), Err(Malformed(_))));
        let two =
            head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
                .unwrap();
        assert!(matches!(two.body_kind(), Err(Malformed(_))));
        let same = head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n").unwrap();
        assert_eq!(same.body_kind(), Ok(BodyKind::Length(3)));
        let neg = head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n").unwrap();
        assert!(matches!(neg.body_kind(), Err(Malformed(_))));
        let gz =
            head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert_eq!(gz.body_kind(), Err(UnsupportedEncoding));
        let ch = head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert_eq!(ch.body_kind(), Ok(BodyKind::Chunked));
        assert!(ch.expects_continue());
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Ok(26));
        assert_eq!(parse_chunk_size(b"1A ;ext=1"), Ok(26));
        assert_eq!(parse_chunk_size(b"0;ext=1"), Ok(0));
        assert_eq!(
            parse_chunk_size(b"fffffffffffffff"),
            Ok(0xfff_ffff_ffff_ffff)
        );
        for bad in [
            &b""[..],
            b"zz",
            b"+3",
            b"-3",
            b" 3",
            b"0x3",
            b"3 3",
            b"ffffffffffffffff",
            b";x",
        ] {
            assert!(
                parse_chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(
            percent_decode("github%3A123").as_deref(),
            Some("github:123")
        );
        assert_eq!(percent_decode("%41%62").as_deref(), Some("Ab"));
        // `%` must be followed by exactly two hex digits.
        for bad in ["a%2", "%zz%41", "%+1", "%-1", "% 1", "%", "%4"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(
            query_pairs("orgId=my%20org&includeDeleted=true&x=a+b&&flag"),
            vec![
                ("orgId".into(), "my org".into()),
                ("includeDeleted".into(), "true".into()),
                ("x".into(), "a b".into()),
                ("flag".into(), "".into())
            ]
        );
    }

    #[test]
    fn head_exactly_at_the_limit_passes_and_one_over_is_refused() {
        let head = |len: usize| {
            let start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
            let pad = len - start.len() - 4;
            format!("{start}{}\r\n\r\n", "p".repeat(pad)).into_bytes()
        };
        let max = 32 * 1024;
        let at = head(max);
        assert_eq!(at.len(), max);
        assert_eq!(scan_head(&at, max), HeadScan::Complete(max));
        let mut pipelined = at.clone();
        pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(scan_head(&pipelined, max), HeadScan::Complete(max));
        assert_eq!(scan_head(&head(max + 1), max), HeadScan::TooLarge);
        assert_eq!(scan_head(&at[..max - 1], max), HeadScan::NeedMore);
        // Without a blank line in the first `max` bytes, more bytes cannot help.
        assert_eq!(scan_head(&head(max + 1)[..max], max), HeadScan::TooLarge);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_on_arbitrary_heads(bytes in proptest::collection::vec(any::<u8>(), 0..1024), max in 0usize..2048) {
            let _ = scan_head(&bytes, max);
            if let Ok(head) = parse_head(&bytes) {
                let _ = (head.body_kind(), head.keep_alive(), head.expects_continue());
            }
        }

        #[test]
        fn never_panics_on_head_like_text(
            method in "[A-Z]{0,8}",
            target in "[ -~]{0,40}",
            lines in proptest::collection::vec("[ -~\t]{0,40}", 0..8),
        ) {
            let text = format!("{method} {target} HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            if let HeadScan::Complete(end) = scan_head(text.as_bytes(), 4096) {
                if let Ok(head) = parse_head(&text.as_bytes()[..end]) {
                    let _ = (head.body_kind(), head.keep_alive(), head.expects_continue());
                }
            }
        }

        #[test]
        fn never_panics_on_chunk_size_lines(line in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(n) = parse_chunk_size(&line) {
                // Whatever passes was written in hex digits only.
                let digits = line.split(|&b| b == b';').next().unwrap_or(&line);
                prop_assert!(digits.iter().all(|b| b.is_ascii_hexdigit() || *b == b' ' || *b == b'\t'));
                prop_assert!(n < 1 << 60);
            }
        }

        #[test]
        fn never_panics_decoding_percent_escapes_and_queries(s in "[%+=&a-zA-Z0-9 \u{80}-\u{10FFFF}]{0,64}") {
            if let Some(decoded) = percent_decode(&s) {
                // What decodes was well-formed: re-encoding and decoding gives it back.
                prop_assert_eq!(percent_decode(&encode_component(&decoded)), Some(decoded));
            }
            let _ = query_pairs(&s);
        }
    }
}
