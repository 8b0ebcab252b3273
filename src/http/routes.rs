//! The daemon's route table under `KICI_BASE_PATH`.

use std::{sync::Arc, time::Instant};

use super::{
    admin, blob, health, parse::percent_decode, server::Handler, webhooks, Request, Response,
};
use crate::{
    agent::{session, Hub},
    config::{Config, Mode},
    crypto::SecretBox,
    db::Pool,
    github::api::GitHubApi,
    ingest::Recorder,
    pipeline::process::Pipeline,
    platform::Link,
    sources::{
        ratelimit::RateLimiter,
        registry::{Kind, SourceRegistry},
    },
    storage::{blob_token::ROUTE_PREFIX as BLOB_PREFIX, fs::FsStore, Backend, Storage},
};

/// Shared by every connection thread.
pub struct App {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub started: Instant,
    /// Seals and opens source secrets with `KICI_SECRET_KEY` (and `_OLD` during rotation).
    pub secrets: SecretBox,
    /// Where GitHub App credentials are checked (`KICI_GITHUB_API_URL`).
    pub github: GitHubApi,
    /// Every enabled source with its secret, kept current by the LISTEN thread.
    pub registry: Arc<SourceRegistry>,
    /// Per-source webhook rate limits (per process, like the reference).
    pub limiter: RateLimiter,
    /// Group-commits accepted webhooks.
    pub recorder: Recorder,
    /// Caches and logs; `None` when no storage is configured (caches off).
    pub storage: Option<Arc<Storage>>,
    /// The Platform link (platform and hybrid modes).
    pub platform: Option<Arc<Link>>,
    /// Connected agents, their jobs and the queue.
    pub agents: Arc<Hub>,
    /// Turns recorded deliveries into runs and queued jobs.
    pub pipeline: Arc<Pipeline>,
}

const ADMIN_PREFIX: &str = "/api/v1/admin";

impl App {
    /// Applies an admin change to this instance's registry at once, so a webhook right after the
    /// admin call already sees it (other instances follow through LISTEN/NOTIFY).
    pub fn refresh_source(&self, kind: Kind, routing_key: &str) {
        let keys = [(kind, routing_key.to_owned())];
        if let Err(e) = self
            .pool
            .with_retry(|c| self.registry.refresh(c, &self.secrets, &keys))
        {
            log::warn!("refreshing source {routing_key} locally failed ({e}); the LISTEN thread will catch up");
        }
    }

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

impl Handler for App {
    fn handle(&self, req: &Request) -> Response {
        let Some(path) = self.local_path(&req.path) else {
            return Response::error(404, "Not found");
        };
        let method = req.method.as_str();
        match path {
            "/health" => only_get(method).unwrap_or_else(|| health::health(self.started)),
            "/ready" => only_get(method)
                .unwrap_or_else(|| health::ready(&self.pool, self.platform.as_deref())),
            p if p == ADMIN_PREFIX || p.starts_with("/api/v1/admin/") => {
                admin::handle(self, req, &p[ADMIN_PREFIX.len()..])
            }
            p if p.starts_with("/webhook/") => self.webhook(req, p),
            "/ws" => Response::error(
                400,
                "Expected a WebSocket upgrade (agents connect with KICI_ORCHESTRATOR_URL=ws://<host>:<port>/ws)",
            ),
            p => match (p.strip_prefix(BLOB_PREFIX), self.blob_store()) {
                (Some(rest), Some(store)) if matches!(method, "GET" | "HEAD") => {
                    blob::get(store, req, rest)
                }
                (Some(_), Some(_)) => Response::error(405, "Method not allowed")
                    .with_header("Allow", "GET, HEAD, PUT"),
                _ => Response::error(404, "Not found"),
            },
        }
    }

    fn upgrades(&self, req: &Request) -> bool {
        self.local_path(&req.path) == Some("/ws") && session::is_upgrade(req)
    }

    fn upgrade(&self, req: &Request, stream: std::net::TcpStream, buffered: Vec<u8>) {
        session::serve(&self.agents, req, stream, buffered);
    }

    fn streams_body(&self, method: &str, path: &str) -> Option<u64> {
        let path = self.local_path(path)?;
        (method == "PUT" && path.starts_with(BLOB_PREFIX) && self.blob_store().is_some())
            .then_some(blob::MAX_UPLOAD_BYTES)
    }

    fn handle_stream(&self, req: &Request, body: &mut dyn std::io::Read) -> Response {
        let rest = self
            .local_path(&req.path)
            .and_then(|p| p.strip_prefix(BLOB_PREFIX));
        match (rest, self.blob_store()) {
            (Some(rest), Some(store)) => blob::put(store, req, rest, body),
            _ => self.handle(req),
        }
    }
}

impl App {
    /// Direct generic webhooks are served in every mode, as the reference does (spec-runtime.md
    /// §0); direct GitHub webhooks in hybrid and independent mode only: in platform mode GitHub
    /// deliveries come through the Platform relay, and that path is a plain 404.
    fn webhook(&self, req: &Request, path: &str) -> Response {
        let parts: Vec<Option<String>> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let parts: Vec<&str> = parts.iter().map(|p| p.as_deref().unwrap_or("")).collect();
        let route = match parts.as_slice() {
            ["webhook", org, "generic", name] if !org.is_empty() && !name.is_empty() => {
                Some((*org, Some(*name)))
            }
            ["webhook", org, "github"] if !org.is_empty() => Some((*org, None)),
            _ => None,
        };
        match (route, req.method.as_str()) {
            (None, _) => Response::error(404, "Not found"),
            (Some(_), m) if m != "POST" => {
                Response::error(405, "Method not allowed").with_header("Allow", "POST")
            }
            (Some((org, Some(name))), _) => webhooks::generic(self, req, org, name),
            (Some((_, None)), _) if self.config.mode == Mode::Platform => {
                Response::error(404, "Not found")
            }
            (Some((org, None)), _) => webhooks::github(self, req, org),
        }
    }
}

/// 405 unless GET/HEAD.
fn only_get(method: &str) -> Option<Response> {
    match method {
        "GET" | "HEAD" => None,
        _ => Some(Response::error(405, "Method not allowed").with_header("Allow", "GET, HEAD")),
    }
}
