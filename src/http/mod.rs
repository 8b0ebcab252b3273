//! HTTP in: the listener (server.rs), request parsing (parse.rs) and the routes (routes.rs,
//! health.rs). Request and Response are plain data so handlers are testable without sockets.

pub mod admin;
mod blob;
pub mod chunked;
pub(crate) mod conn;
pub mod health;
pub mod metrics;
pub mod parse;
pub mod routes;
pub mod server;
pub mod webhook_refusals;
pub mod webhooks;
mod write;

use std::{fs::File, net::SocketAddr, sync::Arc, time::Instant};

use serde::Serialize;

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path as sent, still percent-encoded, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    pub request_id: String,
    pub received_at: Instant,
    /// The admin caller, set when the route authenticated the request before reading its body
    /// (`Handler::admit`), so the token is looked up once.
    pub caller: Option<crate::rbac::Caller>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        parse::find_header(&self.headers, name)
    }

    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(parse::query_pairs)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent instead of `body` when set: an open file and its length (blob downloads).
    pub file: Option<FileBody>,
}

/// A file streamed as a response body. Holding the open file (not its path) means a concurrent
/// atomic replace cannot change what is sent mid-way.
#[derive(Debug, Clone)]
pub struct FileBody(pub Arc<File>, pub u64);

impl PartialEq for FileBody {
    fn eq(&self, other: &FileBody) -> bool {
        Arc::ptr_eq(&self.0, &other.0) && self.1 == other.1
    }
}

impl Response {
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
                file: None,
            },
            Err(e) => {
                log::error!("serialising a response failed: {e}");
                Response::error(500, "Internal server error")
            }
        }
    }

    /// `{"error": "<message>"}`, the shape of every error this server sends.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    /// 200 with `file` as an `application/octet-stream` body.
    pub fn file(file: File, len: u64) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: Vec::new(),
            file: Some(FileBody(Arc::new(file), len)),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}
