//! The filesystem backend's signed blob routes (docs/operations.md, "Object storage"), mounted
//! only when `KICI_STORAGE_TYPE=filesystem`:
//! `GET|HEAD /api/v1/cache/blob/<key>?sig=…` streams the blob; `PUT` streams the body into place
//! atomically. 400 bad key, 401 bad token (checked before any body byte is read), 404 missing,
//! 413 over the upload limit.

use std::io::Read;

use jiff::Timestamp;
use serde_json::json;

use super::{parse::percent_decode, Request, Response};
use crate::storage::{blob_token::TokenError, fs::FsStore, keys, StorageError};

/// The largest upload accepted (the reference's `KICI_CACHE_MAX_TARBALL_BYTES` default, 500 MB).
pub const MAX_UPLOAD_BYTES: u64 = 500 * 1000 * 1000;

/// The object key from the path after the route prefix: each segment percent-decoded.
fn key_of(rest: &str) -> Result<String, Response> {
    let segments: Option<Vec<String>> = rest.split('/').map(percent_decode).collect();
    let key = segments
        .map(|s| s.join("/"))
        .ok_or_else(|| Response::error(400, "Invalid key: bad percent-encoding"))?;
    keys::validate(&key).map_err(|e| Response::error(400, &format!("Invalid key: {}", e.0)))?;
    Ok(key)
}

/// The key after checking the token for `method`; an error response otherwise.
fn authorize(store: &FsStore, req: &Request, rest: &str, method: &str) -> Result<String, Response> {
    let key = key_of(rest)?;
    let token = req
        .query_pairs()
        .into_iter()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v);
    let verdict = match token {
        None => Err(TokenError::Malformed),
        Some(t) => store.verify(&t, method, &key, Timestamp::now()),
    };
    verdict.map_err(|e| Response::error(401, &format!("Invalid token ({})", e.as_str())))?;
    Ok(key)
}

fn failed(e: &StorageError, key: &str) -> Response {
    log::error!("blob {key}: {e}");
    Response::error(500, "Storage failure")
}

pub fn get(store: &FsStore, req: &Request, rest: &str) -> Response {
    let key = match authorize(store, req, rest, "GET") {
        Ok(k) => k,
        Err(r) => return r,
    };
    match store.open(&key) {
        Ok(Some((file, len))) => Response::file(file, len),
        Ok(None) => Response::error(404, "Not found"),
        Err(e) => failed(&e, &key),
    }
}

pub fn put(store: &FsStore, req: &Request, rest: &str, body: &mut dyn Read) -> Response {
    let key = match authorize(store, req, rest, "PUT") {
        Ok(k) => k,
        Err(r) => return r,
    };
    match store.put_stream(&key, body, MAX_UPLOAD_BYTES) {
        Ok(_) => Response::json(200, &json!({ "ok": true })),
        Err(StorageError::TooLarge { max }) => {
            Response::error(413, &format!("Request body too large (limit {max} bytes)"))
        }
        Err(e) => failed(&e, &key),
    }
}
