//! Writing a response: status line, the headers every response carries, then the body or an
//! open file. Split from server.rs, which reads requests and decides what happens to them.

use std::{
    io::{self, Write},
    net::TcpStream,
};

use super::Response;

pub(super) fn write_response(
    stream: &mut TcpStream,
    resp: Response,
    request_id: &str,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let body_len = resp.file.as_ref().map_or(resp.body.len() as u64, |f| f.1);
    let mut out = Vec::with_capacity(256 + resp.body.len());
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    write!(out, "Date: {}\r\n", http_date())?;
    for (k, v) in &resp.headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    write!(
        out,
        "X-Request-ID: {request_id}\r\nContent-Length: {body_len}\r\n"
    )?;
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    if let (Some(super::FileBody(file, len)), false) = (&resp.file, head_only) {
        let copied = io::copy(&mut io::Read::take(file.as_ref(), *len), stream)?;
        if copied < *len {
            // The file shrank under us: the promised length cannot be kept, so end the connection.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than announced",
            ));
        }
    }
    stream.flush()
}

/// The `Date` header value, formatted at most once per second per thread.
fn http_date() -> String {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = jiff::Timestamp::now();
    let second = now.as_second() as u64;
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != second {
            *c = (second, format_http_date(now));
        }
        c.1.clone()
    })
}

fn format_http_date(now: jiff::Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&now)
        .unwrap_or_default()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
