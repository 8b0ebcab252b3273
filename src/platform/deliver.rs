//! A reassembled relayed webhook (spec-runtime.md §1.4): verified against **our** stored secret
//! (the Platform never holds it), then recorded through the same recorder as direct webhooks.
//! The verdict becomes the one `webhook.ack`; `accepted` only once the delivery is committed
//! (a redelivery already recorded is `accepted` again, and not recorded twice). With the database
//! down the answer is `rejected_misconfigured`, so the Platform's sender retries.

use serde_json::Value;

use super::protocol::AckResult;
use super::reassembly::Start;
use crate::{
    app::App,
    crypto,
    db::events::Delivery,
    http::webhooks::{github_delivery, kept_payload, record_and_submit, DEDUP_SECS},
    ingest::{admission, Recorded},
    sources::verify::{self, Verdict},
};

/// The verdict and, for rejections, a non-secret reason.
pub fn deliver(app: &App, start: &Start, body: &[u8]) -> (AckResult, Option<String>) {
    let snapshot = app.registry.snapshot();
    let key = start.routing_key.as_str();
    let delivery = if key.starts_with("github:") {
        let Some(source) = snapshot.github(key) else {
            return (
                AckResult::RejectedUnknownSource,
                Some(format!("no source {key}")),
            );
        };
        let Some(secret) = source.webhook_secret.as_deref() else {
            return misconfigured("the source has no webhook secret");
        };
        let name = start
            .signature_header_name
            .as_deref()
            .unwrap_or("x-hub-signature-256");
        let given = start
            .signature_header
            .as_deref()
            .or_else(|| start.headers.get(name).map(String::as_str));
        if !verify::verify_github(secret.as_bytes(), given, body) {
            return (
                AckResult::RejectedSignature,
                Some("signature does not match".into()),
            );
        }
        let event = Some(start.event.clone()).filter(|e| !e.is_empty());
        github_delivery(
            app,
            &source.customer_id,
            key.to_owned(),
            start.delivery_id.clone(),
            event,
            body,
        )
    } else if key.starts_with("generic:") {
        let Some(source) = snapshot.generic_by_key(key) else {
            return (
                AckResult::RejectedUnknownSource,
                Some(format!("no source {key}")),
            );
        };
        let mut headers: Vec<(String, String)> = start
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let (Some(name), Some(value)) = (&start.signature_header_name, &start.signature_header) {
            headers.push((name.clone(), value.clone()));
        }
        // The Platform saw the sender; the IP allow-list checks that address, never a header
        // the sender wrote.
        let client = start
            .client_ip
            .as_deref()
            .and_then(|ip| ip.trim().parse().ok());
        match verify::verify_generic(&source.verification, &headers, body, client) {
            Verdict::Valid => {}
            Verdict::Invalid => {
                return (
                    AckResult::RejectedSignature,
                    Some("verification failed".into()),
                )
            }
            Verdict::Misconfigured => return misconfigured("source verification misconfigured"),
        }
        let json = start
            .headers
            .get("content-type")
            .is_none_or(|c| c.is_empty() || c.contains("application/json"));
        if json && !body.is_empty() && serde_json::from_slice::<Value>(body).is_err() {
            return misconfigured("the body is not valid JSON");
        }
        Delivery {
            id: crypto::uuid_v7(jiff::Timestamp::now().as_millisecond() as u64),
            org_id: source.org.clone(),
            delivery_id: start.delivery_id.clone(),
            routing_key: Some(key.to_owned()),
            event: Some(start.event.clone()).filter(|e| !e.is_empty()),
            action: start.action.clone(),
            provider: Some(if source.local { "local" } else { "generic" }.to_owned()),
            repo: None,
            git_ref: None,
            payload: kept_payload(app, body),
            size: body.len() as i64,
            hash: crypto::sha256_hex(body),
            dedup_ttl_secs: DEDUP_SECS.max(source.dedup_window_seconds),
        }
    } else {
        let reason = format!("routing key {key:?} is neither github: nor generic:");
        return (AckResult::RejectedUnknownSource, Some(reason));
    };
    let max = app.config.event_log_max_payload_bytes;
    if let Err(e) = admission::check_size(delivery.provider.as_deref(), body.len() as u64, max) {
        log::warn!("relayed delivery {} refused: {e}", start.delivery_id);
        return misconfigured(&e.to_string());
    }
    match record_and_submit(app, delivery, body) {
        Ok(Recorded::Accepted) | Ok(Recorded::Duplicate) => (AckResult::Accepted, None),
        Err(e) => {
            log::warn!("relayed delivery {} not recorded: {e}", start.delivery_id);
            misconfigured("the orchestrator could not record the delivery; retry")
        }
    }
}

fn misconfigured(reason: &str) -> (AckResult, Option<String>) {
    (AckResult::RejectedMisconfigured, Some(reason.to_owned()))
}
