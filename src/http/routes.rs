//! The daemon's route table under `KICI_BASE_PATH`: `App` (src/app.rs) as the server's
//! `Handler`.

use super::{
    admin, blob, health, metrics,
    parse::percent_decode,
    server::{Admission, Handler},
    webhooks, Request, Response,
};
use crate::{
    agent::session,
    app::App,
    config::Mode,
    storage::{blob_token::ROUTE_PREFIX as BLOB_PREFIX, fs::FsStore, Backend, Storage},
};

const ADMIN_PREFIX: &str = "/api/v1/admin";

impl App {
    /// The filesystem store behind the signed blob routes, when that is the backend.
    fn blob_store(&self) -> Option<&FsStore> {
        match self.storage.as_deref().map(Storage::backend) {
            Some(Backend::Fs(f)) => Some(f),
            _ => None,
        }
    }

    /// The path below the base path, or None when the request is outside it.
    fn local_path<'a>(&self, path: &'a str) -> Option<&'a str> {
        let base = self.config.base_path.as_str();
        if base.is_empty() {
            return Some(path);
        }
        match path.strip_prefix(base) {
            Some("") => Some("/"),
            Some(rest) if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }
}

/// Where a request goes, decided from its path alone (the method is each route's business).
enum Route<'a> {
    Health,
    Ready,
    Metrics,
    /// The path after `/api/v1/admin`.
    Admin(&'a str),
    Webhook(&'a str),
    Ws,
    /// The path after the blob prefix, when the filesystem store serves blobs.
    Blob(&'a str, &'a FsStore),
    NotFound,
}

/// Bodies of routes that take none worth having (health checks, the WebSocket handshake, blob
/// downloads): enough for a client that sends `{}` anyway, nothing a stranger can grow.
const SMALL_BODY_BYTES: u64 = 16 * 1024;

impl App {
    fn route<'a>(&'a self, path: &'a str) -> Route<'a> {
        let Some(path) = self.local_path(path) else {
            return Route::NotFound;
        };
        match path {
            "/health" => Route::Health,
            "/ready" => Route::Ready,
            "/metrics" => Route::Metrics,
            "/ws" => Route::Ws,
            p if p == ADMIN_PREFIX || p.starts_with("/api/v1/admin/") => {
                Route::Admin(&p[ADMIN_PREFIX.len()..])
            }
            p if p.starts_with("/webhook/") => Route::Webhook(p),
            p => match (p.strip_prefix(BLOB_PREFIX), self.blob_store()) {
                (Some(rest), Some(store)) => Route::Blob(rest, store),
                _ => Route::NotFound,
            },
        }
    }
}

impl Handler for App {
    fn admit(&self, req: &mut Request) -> Admission {
        let small = Admission::Buffer {
            limit: SMALL_BODY_BYTES,
        };
        let method = req.method.as_str();
        match self.route(&req.path) {
            Route::NotFound => Admission::Refuse(Response::error(404, "Not found")),
            Route::Health | Route::Ready | Route::Metrics => {
                only_get(method).map_or(small, Admission::Refuse)
            }
            Route::Ws => small,
            Route::Admin(rest) => match admin::admit(self, req, rest) {
                Ok(caller) => {
                    req.caller = Some(caller);
                    Admission::Buffer {
                        limit: admin::MAX_BODY_BYTES,
                    }
                }
                Err(refused) => Admission::Refuse(refused),
            },
            Route::Webhook(path) => metrics::webhook_admission(
                path,
                match self.webhook_route(method, path) {
                    Ok((org, Some(name))) => webhooks::admit_generic(self, req, &org, &name),
                    Ok((_, None)) => webhooks::admit_github(self, req),
                    Err(refused) => Admission::Refuse(refused),
                },
            ),
            Route::Blob(..) => match method {
                "PUT" => Admission::Stream {
                    limit: blob::MAX_UPLOAD_BYTES,
                },
                "GET" | "HEAD" => small,
                _ => Admission::Refuse(
                    Response::error(405, "Method not allowed")
                        .with_header("Allow", "GET, HEAD, PUT"),
                ),
            },
        }
    }

    fn handle(&self, req: &Request) -> Response {
        let method = req.method.as_str();
        match self.route(&req.path) {
            Route::NotFound => Response::error(404, "Not found"),
            Route::Health => only_get(method).unwrap_or_else(|| health::health(self.started)),
            Route::Ready => only_get(method)
                .unwrap_or_else(|| health::ready(&self.pool, self.platform.as_deref())),
            Route::Metrics => only_get(method).unwrap_or_else(|| metrics::serve(self, req)),
            Route::Admin(rest) => admin::handle(self, req, rest),
            Route::Webhook(path) => metrics::webhook_answer(
                path,
                match self.webhook_route(method, path) {
                    Ok((org, Some(name))) => webhooks::generic(self, req, &org, &name),
                    Ok((org, None)) => webhooks::github(self, req, &org),
                    Err(refused) => refused,
                },
            ),
            Route::Ws => Response::error(
                400,
                "Expected a WebSocket upgrade (agents connect with KICI_ORCHESTRATOR_URL=ws://<host>:<port>/ws)",
            ),
            Route::Blob(rest, store) => match method {
                "GET" | "HEAD" => blob::get(store, req, rest),
                _ => Response::error(405, "Method not allowed")
                    .with_header("Allow", "GET, HEAD, PUT"),
            },
        }
    }

    fn upgrades(&self, req: &Request) -> bool {
        matches!(self.route(&req.path), Route::Ws) && session::is_upgrade(req)
    }

    fn upgrade(&self, req: &Request, stream: std::net::TcpStream, buffered: Vec<u8>) {
        session::serve(&self.agents, req, stream, buffered);
    }

    fn handle_stream(&self, req: &Request, body: &mut dyn std::io::Read) -> Response {
        match self.route(&req.path) {
            Route::Blob(rest, store) if req.method == "PUT" => blob::put(store, req, rest, body),
            _ => self.handle(req),
        }
    }
}

impl App {
    /// `(org, Some(source name))` for a generic webhook, `(org, None)` for GitHub, else the
    /// answer. Direct generic webhooks are served in every mode, as the reference does
    /// (docs/operations.md, "Settings", `KICI_MODE`); direct GitHub webhooks in hybrid and
    /// independent mode only: in platform mode GitHub deliveries come through the Platform relay,
    /// and that path is a plain 404.
    fn webhook_route(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(String, Option<String>), Response> {
        let parts: Option<Vec<String>> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let Some(parts) = parts else {
            return Err(Response::error(
                400,
                "Bad request: invalid percent-encoding in the path (% must be followed by two hex digits)",
            ));
        };
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let route = match parts.as_slice() {
            ["webhook", org, "generic", name] if !org.is_empty() && !name.is_empty() => {
                ((*org).to_owned(), Some((*name).to_owned()))
            }
            ["webhook", org, "github"] if !org.is_empty() => ((*org).to_owned(), None),
            _ => return Err(Response::error(404, "Not found")),
        };
        if method != "POST" {
            return Err(Response::error(405, "Method not allowed").with_header("Allow", "POST"));
        }
        if route.1.is_none() && self.config.mode == Mode::Platform {
            return Err(Response::error(404, "Not found"));
        }
        Ok(route)
    }
}

/// 405 unless GET/HEAD.
fn only_get(method: &str) -> Option<Response> {
    match method {
        "GET" | "HEAD" => None,
        _ => Some(Response::error(405, "Method not allowed").with_header("Allow", "GET, HEAD")),
    }
}
