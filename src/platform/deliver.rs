//! A reassembled relayed webhook (docs/platform-protocol.md, "Relayed webhooks"): handed to the
//! one intake (src/ingest/intake.rs), which verifies it against **our** stored secret (the
//! Platform never holds it) and records it exactly as a direct webhook; its verdict becomes the
//! one `webhook.ack`. `accepted` only once the delivery is committed (a redelivery already
//! recorded, whichever way it first came in, is `accepted` again and not recorded twice). With
//! the database down the answer is `rejected_misconfigured`, so the Platform's sender retries.

use super::protocol::AckResult;
use super::reassembly::Start;
use crate::{
    app::App,
    ingest::{Incoming, Target, Verdict, Via},
};

/// The verdict and, for rejections, a non-secret reason.
pub fn deliver(app: &App, start: &Start, body: &[u8]) -> (AckResult, Option<String>) {
    let key = start.routing_key.as_str();
    let github = key.starts_with("github:");
    let target = if github {
        Target::GitHub { key, org: None }
    } else if key.starts_with("generic:") {
        Target::GenericKey(key)
    } else {
        let reason = format!("routing key {key:?} is neither github: nor generic:");
        return (AckResult::RejectedUnknownSource, Some(reason));
    };
    let mut headers: Vec<(String, String)> = start
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let (Some(name), Some(value)) = (&start.signature_header_name, &start.signature_header) {
        headers.push((name.clone(), value.clone()));
    }
    // GitHub's signature: the one the Platform names, else the header it relayed.
    let name = start
        .signature_header_name
        .as_deref()
        .unwrap_or("x-hub-signature-256");
    let signature = start
        .signature_header
        .as_deref()
        .or_else(|| start.headers.get(name).map(String::as_str));
    let verdict = app.intake.take(&Incoming {
        via: Via::Relayed,
        target,
        headers: &headers,
        body,
        // The Platform saw the sender; the IP allow-list checks that address, never a header
        // the sender wrote.
        client: start
            .client_ip
            .as_deref()
            .and_then(|ip| ip.trim().parse().ok()),
        delivery_id: Some(&start.delivery_id),
        event: Some(&start.event),
        action: start.action.as_deref(),
        signature: if github { signature } else { None },
    });
    ack(verdict, key)
}

/// The `webhook.ack` of a verdict (the table is in src/ingest/mod.rs).
fn ack(verdict: Verdict, key: &str) -> (AckResult, Option<String>) {
    let misconfigured = |reason: String| (AckResult::RejectedMisconfigured, Some(reason));
    match verdict {
        Verdict::Accepted { .. } | Verdict::Duplicate { .. } | Verdict::Filtered { .. } => {
            (AckResult::Accepted, None)
        }
        Verdict::UnknownSource => (
            AckResult::RejectedUnknownSource,
            Some(format!("no source {key}")),
        ),
        Verdict::InvalidSignature => (
            AckResult::RejectedSignature,
            Some("verification failed".into()),
        ),
        Verdict::Misconfigured => misconfigured("source verification misconfigured".into()),
        Verdict::TooLarge { max } => misconfigured(format!(
            "the payload is over the source's maxPayloadBytes ({max} bytes)"
        )),
        Verdict::NotKept(e) => misconfigured(e.to_string()),
        // Relayed deliveries are not rate-limited here (src/ingest/mod.rs); kept for totality.
        Verdict::RateLimited { .. } => misconfigured("rate limit exceeded; retry".into()),
        Verdict::BadRequest(reason) => misconfigured(reason),
        Verdict::Unavailable(_) => {
            misconfigured("the orchestrator could not record the delivery; retry".into())
        }
    }
}
