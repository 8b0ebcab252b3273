//! The one intake: every webhook delivery, whether a sender posted it to us (`http/webhooks.rs`)
//! or the Platform relayed it (`platform/deliver.rs`), goes through `Intake::take`, which
//! verifies it against our stored secret, applies the source's rules, deduplicates and records it,
//! hands new pipeline deliveries on, and returns a `Verdict`. The HTTP route maps the verdict to
//! a response, the relay to a `webhook.ack`; neither decides anything else.
//!
//! Order for a generic source: source known → size within its `maxPayloadBytes` → verification
//! → rate limit (direct only) → body rules (local sources; JSON) → allowed events → dedup and
//! record. For a GitHub App source: source known → its webhook secret → `X-Hub-Signature-256` →
//! dedup and record. The rules, and the few deliberate differences between the two ways in, are
//! listed in the module doc of `ingest` (src/ingest/mod.rs).

use std::{net::IpAddr, sync::Arc, time::Instant};

use serde_json::Value;

use super::{
    admission::{self, TooLarge},
    kept_headers, Recorded, Recorder,
};
use crate::{
    crypto,
    db::events::Delivery,
    pipeline::process::{has_repository, Pipeline, Work},
    sources::{
        extract, local_path,
        ratelimit::RateLimiter,
        registry::{GenericSource, SourceRegistry},
        verify::{self, Verdict as Auth},
    },
};

/// How long every delivery id stays deduplicated at least (a source's `dedupWindowSeconds` may
/// make it longer).
pub const DEDUP_SECS: i32 = 24 * 3600;

/// The one dedup rule: a delivery id is remembered for 24 hours, or for the source's
/// `dedupWindowSeconds` when that is longer (GitHub App sources have no window: 24 hours).
pub fn dedup_ttl(window_secs: Option<i32>) -> i32 {
    DEDUP_SECS.max(window_secs.unwrap_or(0))
}

/// Which way a delivery came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Posted to `/webhook/...` by the sender itself.
    Direct,
    /// Relayed by the Platform (`webhook.relay.start` + chunks).
    Relayed,
}

/// The source a delivery is addressed to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A generic source by org and name (the direct route's path).
    Generic { org: &'a str, name: &'a str },
    /// A generic source by routing key (`generic:...`, as the Platform names it).
    GenericKey(&'a str),
    /// A GitHub App source by routing key (`github:<appId>`). `org`: the org in a direct
    /// route's path, under which the delivery is filed; `None` files it under the source's
    /// customer.
    GitHub { key: &'a str, org: Option<&'a str> },
}

/// One delivery as it arrived, whichever way.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub via: Via,
    pub target: Target<'a>,
    /// Lower-case names (as `http::Request` stores them, and as the Platform relays them).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// The sender's address, for IP allow-lists: the peer (or a trusted proxy's header) when
    /// direct, the address the Platform saw when relayed.
    pub client: Option<IpAddr>,
    /// The delivery id the channel names: the Platform's `deliveryId`, or `X-GitHub-Delivery`.
    /// `None`: derived from the source's idempotency key or `X-Request-ID`, else a fresh UUID.
    pub delivery_id: Option<&'a str>,
    /// The event the channel names: the Platform's `event`, or `X-GitHub-Event`. For generic
    /// sources it is used only when the delivery names none the source's rules find.
    pub event: Option<&'a str>,
    /// The Platform's `action`, used when the payload has no string `action`.
    pub action: Option<&'a str>,
    /// The GitHub signature (`sha256=<hex>`).
    pub signature: Option<&'a str>,
}

/// What the intake decided. Only `Accepted` and `Duplicate` mean "recorded" (committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New, and committed.
    Accepted {
        delivery_id: String,
    },
    /// Already recorded under this id. `keyed`: the source's idempotency key named it.
    Duplicate {
        delivery_id: String,
        keyed: bool,
    },
    /// Verified, but its event is not in the source's allowed list: not recorded, and not to be
    /// sent again.
    Filtered {
        reason: String,
    },
    UnknownSource,
    InvalidSignature,
    /// The source cannot verify anything (no secret, broken verification config).
    Misconfigured,
    /// Over the source's `maxPayloadBytes`.
    TooLarge {
        max: u64,
    },
    /// A delivery that starts runs, over `KICI_EVENT_LOG_MAX_PAYLOAD_BYTES` (see admission.rs).
    NotKept(TooLarge),
    /// Over the source's requests per minute (direct deliveries only).
    RateLimited {
        retry_after_secs: u64,
    },
    /// The body breaks a rule of the source (the reason names it, and holds no secret).
    BadRequest(String),
    /// The database could not commit it: the sender must retry.
    Unavailable(String),
}

/// Cheap to share; one per daemon.
pub struct Intake {
    registry: Arc<SourceRegistry>,
    limiter: RateLimiter,
    recorder: Recorder,
    pipeline: Arc<Pipeline>,
    /// `KICI_EVENT_LOG_MAX_PAYLOAD_BYTES`.
    max_kept: u64,
}

impl Intake {
    pub fn new(
        registry: Arc<SourceRegistry>,
        recorder: Recorder,
        pipeline: Arc<Pipeline>,
        max_kept: u64,
    ) -> Intake {
        Intake {
            registry,
            limiter: RateLimiter::new(),
            recorder,
            pipeline,
            max_kept,
        }
    }

    /// Forgets idle rate-limit windows (housekeeping).
    pub fn sweep_limits(&self, now: Instant) {
        self.limiter.sweep(now);
    }

    /// Verifies, filters, deduplicates and records one delivery. Blocks until it is committed.
    pub fn take(&self, d: &Incoming) -> Verdict {
        let delivery = match d.target {
            Target::Generic { org, name } => match self.registry.snapshot().generic(org, name) {
                Some(source) => self.generic(source, d),
                None => Err(Verdict::UnknownSource),
            },
            Target::GenericKey(key) => match self.registry.snapshot().generic_by_key(key) {
                Some(source) => self.generic(source, d),
                None => Err(Verdict::UnknownSource),
            },
            Target::GitHub { key, org } => self.github(key, org, d),
        };
        let verdict = match delivery {
            Ok((delivery, keyed)) => self.record(delivery, d.body, keyed),
            Err(verdict) => verdict,
        };
        crate::metrics::hooks::intake(d, &verdict);
        verdict
    }

    /// The record of a generic delivery, and whether an idempotency key named it.
    fn generic(&self, source: &GenericSource, d: &Incoming) -> Result<(Delivery, bool), Verdict> {
        let max = u64::try_from(source.max_payload_bytes).unwrap_or(0);
        if d.body.len() as u64 > max {
            return Err(Verdict::TooLarge { max });
        }
        match verify::verify_generic(&source.verification, d.headers, d.body, d.client) {
            Auth::Valid => {}
            Auth::Invalid => return Err(Verdict::InvalidSignature),
            Auth::Misconfigured => return Err(Verdict::Misconfigured),
        }
        if d.via == Via::Direct {
            let rpm = source.rate_limit_rpm.max(1) as u32;
            if let Err(retry) = self.limiter.check(&source.id, rpm, Instant::now()) {
                return Err(Verdict::RateLimited {
                    retry_after_secs: retry.seconds,
                });
            }
        }
        let content_type = extract::header(d.headers, "content-type");
        let payload = body_rules(source, content_type, d.headers, d.body)?;
        let mut event = extract::event_type(
            d.headers,
            &payload,
            source.event_type_header.as_deref(),
            source.event_type_path.as_deref(),
        );
        if let Some(named) = d.event.filter(|e| !e.is_empty() && event == "default") {
            event = named.to_owned();
        }
        if let Some(allowed) = source.allowed_events.as_ref() {
            if !source.local && !allowed.is_empty() && !allowed.contains(&event) {
                let reason = format!("Event '{event}' not in allowed list");
                return Err(Verdict::Filtered { reason });
            }
        }
        let key = extract::idempotency_key(
            d.headers,
            &payload,
            source.idempotency_key_header.as_deref(),
            source.idempotency_key_path.as_deref(),
        );
        let delivery_id = match d.delivery_id.filter(|id| !id.is_empty()) {
            Some(given) => given.to_owned(),
            None => {
                // A fresh UUID only when neither a key nor an X-Request-ID names the delivery.
                let named = key.is_some()
                    || extract::header(d.headers, "x-request-id").is_some_and(|v| !v.is_empty());
                let fallback = if named {
                    String::new()
                } else {
                    crypto::random_uuid()
                };
                extract::delivery_id(&source.routing_key, key.as_deref(), d.headers, &fallback)
            }
        };
        let action = payload
            .get("action")
            .and_then(Value::as_str)
            .or(d.action)
            .map(str::to_owned);
        let provider = if source.local { "local" } else { "generic" };
        let delivery = Delivery {
            org_id: source.org.clone(),
            delivery_id,
            routing_key: Some(source.routing_key.clone()),
            event: Some(event),
            action,
            provider: Some(provider.to_owned()),
            repo: None,
            git_ref: None,
            dedup_ttl_secs: dedup_ttl(Some(source.dedup_window_seconds)),
            headers: Some(kept_headers::kept(d.headers, secret_header(source)).to_string()),
            ..self.stored(d)
        };
        Ok((delivery, key.is_some()))
    }

    fn github(
        &self,
        key: &str,
        org: Option<&str>,
        d: &Incoming,
    ) -> Result<(Delivery, bool), Verdict> {
        let snapshot = self.registry.snapshot();
        let source = snapshot.github(key).ok_or(Verdict::UnknownSource)?;
        let secret = source
            .webhook_secret
            .as_deref()
            .ok_or(Verdict::Misconfigured)?;
        if !verify::verify_github(secret.as_bytes(), d.signature, d.body) {
            return Err(Verdict::InvalidSignature);
        }
        let payload: Value = serde_json::from_slice(d.body).unwrap_or(Value::Null);
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let delivery = Delivery {
            org_id: org.unwrap_or(&source.customer_id).to_owned(),
            delivery_id: d
                .delivery_id
                .filter(|id| !id.is_empty())
                .map_or_else(crypto::random_uuid, str::to_owned),
            routing_key: Some(key.to_owned()),
            event: d.event.filter(|e| !e.is_empty()).map(str::to_owned),
            action: text(payload.get("action")),
            provider: Some("github".into()),
            repo: text(payload.pointer("/repository/full_name")),
            git_ref: text(payload.get("ref")),
            dedup_ttl_secs: dedup_ttl(None),
            headers: Some(kept_headers::kept(d.headers, None).to_string()),
            ..self.stored(d)
        };
        Ok((delivery, false))
    }

    /// The fields every record takes from the body and the way in (the rest are filled by the
    /// caller).
    fn stored(&self, d: &Incoming) -> Delivery {
        let body = d.body;
        Delivery {
            id: crypto::uuid_v7(jiff::Timestamp::now().as_millisecond() as u64),
            org_id: String::new(),
            delivery_id: String::new(),
            routing_key: None,
            event: None,
            action: None,
            provider: None,
            repo: None,
            git_ref: None,
            // Omitted when larger than KICI_EVENT_LOG_MAX_PAYLOAD_BYTES.
            payload: (body.len() as u64 <= self.max_kept).then(|| body.to_vec()),
            size: body.len() as i64,
            hash: crypto::sha256_hex(body),
            dedup_ttl_secs: DEDUP_SECS,
            relayed: d.via == Via::Relayed,
            headers: None,
        }
    }

    /// Records the delivery and, when it is new and starts runs, hands it to the pipeline.
    fn record(&self, delivery: Delivery, body: &[u8], keyed: bool) -> Verdict {
        let provider = delivery.provider.as_deref();
        if let Err(e) = admission::check_size(provider, body.len() as u64, self.max_kept) {
            log::warn!("delivery {} refused: {e}", delivery.delivery_id);
            return Verdict::NotKept(e);
        }
        let delivery_id = delivery.delivery_id.clone();
        let work = has_repository(provider.unwrap_or("")).then(|| Work {
            event_log_id: delivery.id.clone(),
            delivery_id: delivery.delivery_id.clone(),
            routing_key: delivery.routing_key.clone().unwrap_or_default(),
            provider: delivery.provider.clone().unwrap_or_default(),
            event: delivery.event.clone(),
            action: delivery.action.clone(),
            body: body.to_vec(),
        });
        match self.recorder.record(delivery) {
            Ok(Recorded::Accepted) => {
                if let Some(work) = work {
                    self.pipeline.submit(work);
                }
                Verdict::Accepted { delivery_id }
            }
            Ok(Recorded::Duplicate) => Verdict::Duplicate { delivery_id, keyed },
            Err(e) => {
                log::warn!("delivery {delivery_id} not recorded: {e}");
                Verdict::Unavailable(e)
            }
        }
    }
}

/// The header a generic source verifies, which may be named anything: never kept.
fn secret_header(source: &GenericSource) -> Option<&str> {
    match &source.verification {
        verify::Verification::HmacSha256 { header, .. }
        | verify::Verification::BearerToken { header, .. } => header.as_deref(),
        _ => None,
    }
}

/// The body as the source's rules read it, or why it breaks them: a local source takes a JSON
/// body with `x-event-type`, naming a repository inside its folder (the body is unsigned, so the
/// folder is checked before anything is recorded or read: README.md, "Security"); any other
/// body declared JSON must be JSON.
fn body_rules(
    source: &GenericSource,
    content_type: Option<&str>,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Value, Verdict> {
    let declared_json = content_type.map(|c| c.to_ascii_lowercase().contains("application/json"));
    // A body that must be JSON is parsed once, here, and read as `parse_body` would read it.
    let must_be_json = source.local || (declared_json == Some(true) && !body.is_empty());
    let payload = if must_be_json && declared_json != Some(false) {
        match serde_json::from_slice::<Value>(body) {
            Ok(object @ Value::Object(_)) => object,
            Ok(other) => Value::Object(serde_json::Map::from_iter([("value".to_owned(), other)])),
            Err(_) if source.local => {
                return Err(Verdict::BadRequest(
                    "Local source requires JSON body".into(),
                ))
            }
            Err(_) => return Err(Verdict::BadRequest("Invalid JSON body".into())),
        }
    } else if source.local {
        return Err(Verdict::BadRequest(
            "Local source requires JSON body".into(),
        ));
    } else {
        extract::parse_body(content_type, body)
    };
    if source.local && extract::header(headers, "x-event-type").is_none_or(str::is_empty) {
        return Err(Verdict::BadRequest(
            "Missing x-event-type header for local source".into(),
        ));
    }
    if source.local {
        if let Err(why) = local_repository(source.local_path.as_deref(), &payload) {
            log::warn!(
                "local source {}: delivery refused: {why}",
                source.routing_key
            );
            return Err(Verdict::BadRequest(why));
        }
    }
    Ok(payload)
}

/// The repository folder a local source's delivery names, checked by `sources::local_path`.
fn local_repository(base: Option<&str>, payload: &Value) -> Result<std::path::PathBuf, String> {
    let base = base.ok_or("the local source has no localPath in its gitConfig")?;
    let name = payload["repository"]["full_name"]
        .as_str()
        .ok_or("the body names no repository.full_name")?;
    local_path::resolve(std::path::Path::new(base), name).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dedup_rule() {
        assert_eq!(dedup_ttl(None), 24 * 3600);
        assert_eq!(dedup_ttl(Some(300)), 24 * 3600);
        assert_eq!(dedup_ttl(Some(0)), 24 * 3600);
        assert_eq!(dedup_ttl(Some(7 * 24 * 3600)), 7 * 24 * 3600);
    }
}
