//! Direct webhook routes (docs/operations.md, "Webhook intake and dedup"):
//! `POST /webhook/:orgId/generic/:sourceName` in every mode and `POST /webhook/:orgId/github` in
//! hybrid and independent modes. This file only reads the request: which source, before the body is
//! read (`admit_*`), then hands the delivery to the one intake (src/ingest/intake.rs) and maps its
//! verdict to a status. A 2xx is sent only after the delivery is committed; when the database is
//! unavailable the answer is 503 so the sender retries — never a 202 for something that could be
//! lost.
//!
//! One deliberate divergence in order (made in the intake): the signature is checked *before*
//! the rate limit, so requests with a bad signature do not consume a source's budget.
//!
//! A refusal answers `{"error": <reason>, "rejected": true, "reason": <reason>}` (README,
//! "Webhooks": `error` as every other error body; `rejected`/`reason` kept for existing senders'
//! scripts) and logs one rate-limited info line (`webhook_refusals`).

use serde_json::json;

use super::{server::Admission, webhook_refusals::log_refusal, Request, Response};
use crate::{
    app::App,
    ingest::{Incoming, Target, Verdict, Via},
    sources::client_ip::client_ip,
};

/// Route-level cap for generic webhooks (the server's global cap is 25 MiB).
const GENERIC_MAX_BODY: usize = 10 * 1024 * 1024;
/// GitHub deliveries are held to the server-wide cap (`Limits::max_body_bytes`, 25 MiB) only:
/// they are authenticated after reading, by an HMAC over the whole body.
const GITHUB_MAX_BODY: u64 = u64::MAX;

fn rejected(status: u16, reason: &str) -> Response {
    Response::json(
        status,
        &json!({ "error": reason, "rejected": true, "reason": reason }),
    )
}

/// A refusal of a delivery for `source`: logged (rate-limited), then answered.
fn refuse(status: u16, reason: &str, source: &str) -> Response {
    log_refusal(status, source, reason);
    rejected(status, reason)
}

fn unavailable(e: &str) -> Response {
    log::warn!("webhook not recorded, answering 503: {e}");
    rejected(503, "Storage unavailable, retry later").with_header("Retry-After", "5")
}

fn too_large(max: u64, source: &str) -> Response {
    let reason = "Payload too large";
    log_refusal(413, source, reason);
    Response::json(
        413,
        &json!({ "error": reason, "rejected": true, "reason": reason, "maxBytes": max }),
    )
}

/// How a generic source appears in refusal log lines (as its URL names it).
fn generic_label(org: &str, name: &str) -> String {
    format!("{org}/generic/{name}")
}

/// Before the body is read: an unknown source is 404 and a body announced over the source's
/// `maxPayloadBytes` is 413, so neither costs reading it; otherwise the body is read up to that.
pub fn admit_generic(app: &App, req: &Request, org: &str, name: &str) -> Admission {
    let snapshot = app.registry.snapshot();
    let Some(source) = snapshot.generic(org, name) else {
        let label = generic_label(org, name);
        return Admission::Refuse(refuse(404, "Unknown source", &label));
    };
    let limit = u64::try_from(source.max_payload_bytes)
        .unwrap_or(0)
        .min(GENERIC_MAX_BODY as u64);
    let announced = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Admission::Refuse(too_large(limit, &generic_label(org, name)));
    }
    Admission::Buffer { limit }
}

/// Before the body is read: the installation header and a known App are required.
pub fn admit_github(app: &App, req: &Request) -> Admission {
    match github_source_key(app, req) {
        Ok(_) => Admission::Buffer {
            limit: GITHUB_MAX_BODY,
        },
        Err(refused) => Admission::Refuse(refused),
    }
}

/// The routing key of the GitHub App named by `X-GitHub-Hook-Installation-Target-ID`, when it
/// is a source here.
fn github_source_key(app: &App, req: &Request) -> Result<String, Response> {
    let Some(target) = req
        .header("x-github-hook-installation-target-id")
        .filter(|t| !t.is_empty())
    else {
        return Err(refuse(
            400,
            "Missing X-GitHub-Hook-Installation-Target-ID header",
            "github",
        ));
    };
    let routing_key = format!("github:{target}");
    if app.registry.snapshot().github(&routing_key).is_none() {
        return Err(refuse(404, "Unknown source", &routing_key));
    }
    Ok(routing_key)
}

pub fn generic(app: &App, req: &Request, org: &str, name: &str) -> Response {
    let label = generic_label(org, name);
    if req.body.len() > GENERIC_MAX_BODY {
        return too_large(GENERIC_MAX_BODY as u64, &label);
    }
    let client = client_ip(req.peer.ip(), &req.headers, &app.config.trusted_proxies);
    let verdict = app.intake.take(&Incoming {
        via: Via::Direct,
        target: Target::Generic { org, name },
        headers: &req.headers,
        body: &req.body,
        client,
        delivery_id: None,
        event: None,
        action: None,
        signature: None,
    });
    answer(verdict, &label)
}

/// GitHub App webhooks posted straight to us: self-hosters may have no Platform to relay them.
pub fn github(app: &App, req: &Request, org: &str) -> Response {
    let routing_key = match github_source_key(app, req) {
        Ok(key) => key,
        Err(refused) => return refused,
    };
    let verdict = app.intake.take(&Incoming {
        via: Via::Direct,
        target: Target::GitHub {
            key: &routing_key,
            org: Some(org),
        },
        headers: &req.headers,
        body: &req.body,
        client: None,
        delivery_id: req.header("x-github-delivery"),
        event: req.header("x-github-event"),
        action: None,
        signature: req.header("x-hub-signature-256"),
    });
    answer(verdict, &routing_key)
}

/// The HTTP answer to the intake's verdict: 202 when new, 200 duplicate (without the delivery
/// id when an idempotency key made it one), 503 when it could not be
/// stored (the sender retries); the list is in src/ingest/mod.rs. Refusals are logged against
/// `source`.
fn answer(verdict: Verdict, source: &str) -> Response {
    match verdict {
        Verdict::Accepted { delivery_id } => {
            Response::json(202, &json!({ "accepted": true, "deliveryId": delivery_id }))
        }
        Verdict::Duplicate { keyed: true, .. } => {
            Response::json(200, &json!({ "accepted": true, "duplicate": true }))
        }
        Verdict::Duplicate { delivery_id, .. } => Response::json(
            200,
            &json!({ "accepted": true, "deliveryId": delivery_id, "duplicate": true }),
        ),
        Verdict::Filtered { reason } => Response::json(
            200,
            &json!({ "accepted": true, "status": "filtered", "reason": reason }),
        ),
        Verdict::UnknownSource => refuse(404, "Unknown source", source),
        Verdict::InvalidSignature => refuse(401, "Invalid signature", source),
        Verdict::Misconfigured => refuse(500, "Source verification misconfigured", source),
        Verdict::TooLarge { max } => too_large(max, source),
        Verdict::NotKept(e) => {
            let reason = e.to_string();
            log_refusal(413, source, &reason);
            Response::json(
                413,
                &json!({ "error": reason, "rejected": true, "reason": reason, "maxBytes": e.max }),
            )
        }
        Verdict::RateLimited { retry_after_secs } => refuse(429, "Rate limit exceeded", source)
            .with_header("Retry-After", &retry_after_secs.to_string()),
        Verdict::BadRequest(reason) => refuse(400, &reason, source),
        Verdict::Unavailable(e) => unavailable(&e),
    }
}
