//! Direct webhook ingress (spec-admin.md §9): `POST /webhook/:orgId/generic/:sourceName` and
//! `POST /webhook/:orgId/github`, in hybrid and independent modes. A 2xx is sent only after the
//! delivery is committed (event_log + dedup key, group-committed by ingest::Recorder); when the
//! database is unavailable the answer is 503 so the sender retries — never a 202 for something
//! that could be lost.
//!
//! One deliberate divergence in order: the signature is checked *before* the rate limit, so
//! requests with a bad signature do not consume a source's budget (the reference counts them,
//! which lets anyone who knows the URL starve a source).

use std::time::Instant;

use serde_json::{json, Value};

use super::{server::Admission, Request, Response};
use crate::{
    app::App,
    crypto,
    db::events::Delivery,
    ingest::{admission, Recorded},
    pipeline::process::{has_repository, Work},
    sources::{
        client_ip::client_ip,
        extract,
        verify::{self, Verdict},
    },
};

/// Route-level cap for generic webhooks (the server's global cap is 25 MiB).
const GENERIC_MAX_BODY: usize = 10 * 1024 * 1024;
/// GitHub deliveries are held to the server-wide cap (`Limits::max_body_bytes`, 25 MiB) only:
/// they are authenticated after reading, by an HMAC over the whole body.
const GITHUB_MAX_BODY: u64 = u64::MAX;
/// How long a delivery id stays deduplicated (spec-admin.md §9.5).
pub const DEDUP_SECS: i32 = 24 * 3600;

fn rejected(status: u16, reason: &str) -> Response {
    Response::json(status, &json!({ "rejected": true, "reason": reason }))
}

fn unavailable(e: &str) -> Response {
    log::warn!("webhook not recorded, answering 503: {e}");
    rejected(503, "Storage unavailable, retry later").with_header("Retry-After", "5")
}

/// The stored payload, or `None` (omitted) when larger than KICI_EVENT_LOG_MAX_PAYLOAD_BYTES.
pub fn kept_payload(app: &App, body: &[u8]) -> Option<Vec<u8>> {
    (body.len() as u64 <= app.config.event_log_max_payload_bytes).then(|| body.to_vec())
}

/// The repository folder a local source's delivery names, checked by `sources::local_path`.
fn local_repository(base: Option<&str>, payload: &Value) -> Result<std::path::PathBuf, String> {
    let base = base.ok_or("the local source has no localPath in its gitConfig")?;
    let name = payload["repository"]["full_name"]
        .as_str()
        .ok_or("the body names no repository.full_name")?;
    crate::sources::local_path::resolve(std::path::Path::new(base), name)
}

fn too_large(max: u64) -> Response {
    Response::json(
        413,
        &json!({ "rejected": true, "reason": "Payload too large", "maxBytes": max }),
    )
}

/// Before the body is read: an unknown source is 404 and a body announced over the source's
/// `maxPayloadBytes` is 413, so neither costs reading it; otherwise the body is read up to that.
pub fn admit_generic(app: &App, req: &Request, org: &str, name: &str) -> Admission {
    let snapshot = app.registry.snapshot();
    let Some(source) = snapshot.generic(org, name) else {
        return Admission::Refuse(rejected(404, "Unknown source"));
    };
    let limit = u64::try_from(source.max_payload_bytes)
        .unwrap_or(0)
        .min(GENERIC_MAX_BODY as u64);
    let announced = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Admission::Refuse(too_large(limit));
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
        return Err(rejected(
            400,
            "Missing X-GitHub-Hook-Installation-Target-ID header",
        ));
    };
    let routing_key = format!("github:{target}");
    if app.registry.snapshot().github(&routing_key).is_none() {
        return Err(rejected(404, "Unknown source"));
    }
    Ok(routing_key)
}

pub fn generic(app: &App, req: &Request, org: &str, name: &str) -> Response {
    if req.body.len() > GENERIC_MAX_BODY {
        return too_large(GENERIC_MAX_BODY as u64);
    }
    let snapshot = app.registry.snapshot();
    let Some(source) = snapshot.generic(org, name) else {
        return rejected(404, "Unknown source");
    };
    if req.body.len() as u64 > u64::try_from(source.max_payload_bytes).unwrap_or(0) {
        return too_large(u64::try_from(source.max_payload_bytes).unwrap_or(0));
    }
    let client = client_ip(req.peer.ip(), &req.headers, &app.config.trusted_proxies);
    match verify::verify_generic(&source.verification, &req.headers, &req.body, client) {
        Verdict::Valid => {}
        Verdict::Invalid => return rejected(401, "Invalid signature"),
        Verdict::Misconfigured => return rejected(500, "Source verification misconfigured"),
    }
    if let Err(retry) = app.limiter.check(
        &source.id,
        source.rate_limit_rpm.max(1) as u32,
        Instant::now(),
    ) {
        return rejected(429, "Rate limit exceeded")
            .with_header("Retry-After", &retry.seconds.to_string());
    }
    let content_type = req.header("content-type");
    let payload = extract::parse_body(content_type, &req.body);
    if source.local {
        if !content_type.is_none_or(|c| c.contains("application/json"))
            || serde_json::from_slice::<Value>(&req.body).is_err()
        {
            return rejected(400, "Local source requires JSON body");
        }
        if req.header("x-event-type").is_none_or(str::is_empty) {
            return rejected(400, "Missing x-event-type header for local source");
        }
        // The body is unsigned: the repository it names must be a folder inside the source's
        // localPath before anything is recorded or read (README.md, "Security").
        if let Err(why) = local_repository(source.local_path.as_deref(), &payload) {
            log::warn!(
                "local source {}: delivery refused: {why}",
                source.routing_key
            );
            return rejected(400, &why);
        }
    }
    let event = extract::event_type(
        &req.headers,
        &payload,
        source.event_type_header.as_deref(),
        source.event_type_path.as_deref(),
    );
    if let Some(allowed) = source
        .allowed_events
        .as_ref()
        .filter(|a| !a.is_empty() && !source.local)
    {
        if !allowed.contains(&event) {
            let reason = format!("Event '{event}' not in allowed list");
            return Response::json(
                200,
                &json!({ "accepted": true, "status": "filtered", "reason": reason }),
            );
        }
    }
    let key = extract::idempotency_key(
        &req.headers,
        &payload,
        source.idempotency_key_header.as_deref(),
        source.idempotency_key_path.as_deref(),
    );
    // A fresh UUID only when neither an idempotency key nor an X-Request-ID names the delivery.
    let needs_fallback = key.is_none() && req.header("x-request-id").is_none_or(str::is_empty);
    let fallback = if needs_fallback {
        crypto::random_uuid()
    } else {
        String::new()
    };
    let delivery_id =
        extract::delivery_id(&source.routing_key, key.as_deref(), &req.headers, &fallback);
    // A keyed delivery stays deduplicated for its source's window when that is longer than 24 h.
    let ttl = if key.is_some() {
        DEDUP_SECS.max(source.dedup_window_seconds)
    } else {
        DEDUP_SECS
    };
    let delivery = Delivery {
        id: crypto::uuid_v7(jiff::Timestamp::now().as_millisecond() as u64),
        org_id: org.to_owned(),
        delivery_id: delivery_id.clone(),
        routing_key: Some(source.routing_key.clone()),
        event: Some(event),
        action: payload
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_owned),
        provider: Some(if source.local { "local" } else { "generic" }.to_owned()),
        repo: None,
        git_ref: None,
        payload: kept_payload(app, &req.body),
        size: req.body.len() as i64,
        hash: crypto::sha256_hex(&req.body),
        dedup_ttl_secs: ttl,
    };
    answer(app, delivery, &req.body, key.is_some())
}

/// GitHub App webhooks posted straight to us (spec-admin.md §9.6, PROPOSED): the reference
/// accepts GitHub only through its Platform, which self-hosters may not have.
pub fn github(app: &App, req: &Request, org: &str) -> Response {
    let routing_key = match github_source_key(app, req) {
        Ok(key) => key,
        Err(refused) => return refused,
    };
    let snapshot = app.registry.snapshot();
    let Some(source) = snapshot.github(&routing_key) else {
        return rejected(404, "Unknown source");
    };
    let Some(secret) = source.webhook_secret.as_deref() else {
        return rejected(500, "Source verification misconfigured");
    };
    if !verify::verify_github(
        secret.as_bytes(),
        req.header("x-hub-signature-256"),
        &req.body,
    ) {
        return rejected(401, "Invalid signature");
    }
    let delivery_id = req
        .header("x-github-delivery")
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(crypto::random_uuid);
    let event = req.header("x-github-event").map(str::to_owned);
    let delivery = github_delivery(app, org, routing_key, delivery_id, event, &req.body);
    answer(app, delivery, &req.body, false)
}

/// The event-log record of a verified GitHub delivery (direct or relayed by the Platform).
pub fn github_delivery(
    app: &App,
    org: &str,
    routing_key: String,
    delivery_id: String,
    event: Option<String>,
    body: &[u8],
) -> Delivery {
    let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    Delivery {
        id: crypto::uuid_v7(jiff::Timestamp::now().as_millisecond() as u64),
        org_id: org.to_owned(),
        delivery_id,
        routing_key: Some(routing_key),
        event,
        action: text(payload.get("action")),
        provider: Some("github".into()),
        repo: text(payload.pointer("/repository/full_name")),
        git_ref: text(payload.get("ref")),
        payload: kept_payload(app, body),
        size: body.len() as i64,
        hash: crypto::sha256_hex(body),
        dedup_ttl_secs: DEDUP_SECS,
    }
}

/// Records a delivery (direct or relayed) and, when it is new, hands it to the pipeline.
pub fn record_and_submit(app: &App, delivery: Delivery, body: &[u8]) -> Result<Recorded, String> {
    if !has_repository(delivery.provider.as_deref().unwrap_or("")) {
        return app.recorder.record(delivery);
    }
    let work = Work {
        event_log_id: delivery.id.clone(),
        delivery_id: delivery.delivery_id.clone(),
        routing_key: delivery.routing_key.clone().unwrap_or_default(),
        provider: delivery.provider.clone().unwrap_or_default(),
        event: delivery.event.clone(),
        action: delivery.action.clone(),
        body: body.to_vec(),
    };
    let recorded = app.recorder.record(delivery)?;
    if recorded == Recorded::Accepted {
        app.pipeline.submit(work);
    }
    Ok(recorded)
}

/// Records the delivery and answers: 202 when new, 200 duplicate (without the delivery id when
/// an idempotency key made it one, spec-admin.md §9.1 step 6), 503 when it could not be stored.
fn answer(app: &App, delivery: Delivery, body: &[u8], keyed: bool) -> Response {
    let id = delivery.delivery_id.clone();
    let max = app.config.event_log_max_payload_bytes;
    if let Err(e) = admission::check_size(delivery.provider.as_deref(), body.len() as u64, max) {
        log::warn!("delivery {id} refused: {e}");
        return Response::json(
            413,
            &json!({ "rejected": true, "reason": e.to_string(), "maxBytes": max }),
        );
    }
    match record_and_submit(app, delivery, body) {
        Ok(Recorded::Accepted) => {
            Response::json(202, &json!({ "accepted": true, "deliveryId": id }))
        }
        Ok(Recorded::Duplicate) if keyed => {
            Response::json(200, &json!({ "accepted": true, "duplicate": true }))
        }
        Ok(Recorded::Duplicate) => Response::json(
            200,
            &json!({ "accepted": true, "deliveryId": id, "duplicate": true }),
        ),
        Err(e) => unavailable(&e),
    }
}
