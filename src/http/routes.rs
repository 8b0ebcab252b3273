//! The daemon's route table under `KICI_BASE_PATH`.

use std::{sync::Arc, time::Instant};

use super::{admin, health, server::Handler, Request, Response};
use crate::{config::Config, crypto::SecretBox, db::Pool, github::api::GitHubApi};

/// Shared by every connection thread.
pub struct App {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub started: Instant,
    /// Seals and opens source secrets with `KICI_SECRET_KEY` (and `_OLD` during rotation).
    pub secrets: SecretBox,
    /// Where GitHub App credentials are checked (`KICI_GITHUB_API_URL`).
    pub github: GitHubApi,
}

const ADMIN_PREFIX: &str = "/api/v1/admin";

impl App {
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
            "/ready" => only_get(method).unwrap_or_else(|| health::ready(&self.pool)),
            p if p == ADMIN_PREFIX || p.starts_with("/api/v1/admin/") => {
                admin::handle(self, req, &p[ADMIN_PREFIX.len()..])
            }
            _ => Response::error(404, "Not found"),
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
