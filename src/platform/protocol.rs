//! The Platform link's frames (docs/platform-protocol.md). Pure: JSON in, JSON out.
//!
//! Outbound frames are built here with the Platform's field caps applied (strings truncated,
//! lists shortened) and optional fields omitted rather than `null`. Inbound frames are sorted
//! into what the relay acts on; anything else is `Other` (logged and ignored, never a reason to
//! drop the link), and a malformed `dashboard.*` request is answered with the structured error
//! the Platform expects (`dashboard_error`).

use serde_json::{json, Map, Value};

use super::reassembly::{Chunk, Start};

pub const PROTOCOL_VERSION: u64 = 1;

/// Verdicts of `webhook.ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    Accepted,
    RejectedSignature,
    RejectedUnknownSource,
    RejectedMisconfigured,
}

impl AckResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AckResult::Accepted => "accepted",
            AckResult::RejectedSignature => "rejected_signature",
            AckResult::RejectedUnknownSource => "rejected_unknown_source",
            AckResult::RejectedMisconfigured => "rejected_misconfigured",
        }
    }
}

/// One source as `source.register` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceEntry {
    pub routing_key: String,
    pub provider: &'static str,
    pub subtype: &'static str,
    pub name: String,
}

/// `s` cut to at most `max` characters.
pub fn cap(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

pub fn auth_request(token: &str) -> Value {
    json!({
        "type": "auth.request",
        "token": token,
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": { "orchRole": "coordinator", "supportedDashboardRequests": ["run.cancel.request"] },
    })
}

pub fn heartbeat(now_ms: i64) -> Value {
    json!({ "type": "heartbeat", "timestamp": now_ms })
}

pub fn source_register(
    message_id: &str,
    sources: &[SourceEntry],
    instance_id: &str,
    mode: &str,
) -> Value {
    let list: Vec<Value> = sources
        .iter()
        .map(|s| {
            json!({
                "provider": s.provider, "routingKey": s.routing_key,
                "name": s.name, "subtype": s.subtype,
            })
        })
        .collect();
    json!({
        "type": "source.register",
        "messageId": message_id,
        "sources": list,
        "instanceId": instance_id,
        "version": env!("CARGO_PKG_VERSION"),
        "mode": mode,
    })
}

pub fn source_deregister(message_id: &str, routing_keys: &[String]) -> Value {
    json!({ "type": "source.deregister", "messageId": message_id, "routingKeys": routing_keys })
}

pub fn webhook_ack(
    message_id: &str,
    delivery_id: &str,
    result: AckResult,
    reason: Option<&str>,
) -> Value {
    let mut v = json!({
        "type": "webhook.ack",
        "messageId": message_id,
        "deliveryId": delivery_id,
        "result": result.as_str(),
    });
    if let Some(r) = reason {
        v["reason"] = json!(cap(r, 500));
    }
    v
}

/// `{type:"<t>.response", requestId, error, code, orchVersion, requestType}` so the Platform
/// answers its caller at once instead of waiting 10 s.
pub fn dashboard_error(request_type: &str, request_id: &str, code: &str, error: &str) -> Value {
    json!({
        "type": format!("{request_type}.response"),
        "requestId": request_id,
        "error": error,
        "code": code,
        "orchVersion": env!("CARGO_PKG_VERSION"),
        "requestType": request_type,
    })
}

/// Applies the Platform's caps to a status frame built by the caller: `messageId` ≤ 128,
/// `repoIdentifier` ≤ 256, `commitMessage`/`failureReason` ≤ 2000, `stepName` ≤ 256,
/// label/environment/secret lists ≤ 30; `null` optional fields are removed.
pub fn capped(mut frame: Value) -> Value {
    if let Some(obj) = frame.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
        for (field, max) in [
            ("messageId", 128),
            ("repoIdentifier", 256),
            ("commitMessage", 2000),
            ("failureReason", 2000),
            ("stepName", 256),
            ("errorMessage", 2000),
        ] {
            if let Some(Value::String(s)) = obj.get_mut(field) {
                *s = cap(s, max);
            }
        }
        for field in ["runsOnLabels", "environments", "secretsAccessed"] {
            if let Some(Value::Array(a)) = obj.get_mut(field) {
                a.truncate(30);
            }
        }
        if let Some(Value::Array(runs)) = obj.get_mut("runs") {
            runs.truncate(500);
            for run in runs.iter_mut() {
                if let Some(Value::Array(jobs)) = run.get_mut("jobs") {
                    jobs.truncate(1000);
                }
            }
        }
    }
    frame
}

/// What came from the Platform.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    AuthSuccess {
        connection_id: String,
    },
    AuthFailure {
        reason: String,
    },
    RegisterAck {
        accepted: usize,
        rejected: Vec<(String, String)>,
    },
    RelayStart(Box<Start>),
    RelayChunk(Chunk),
    /// `run.cancel.request`: cancel a run's jobs, answer `run.cancel.response`.
    CancelRun {
        request_id: String,
        run_id: String,
        force: bool,
    },
    /// A request we do not serve: answer `<type>.response` with an error.
    Request {
        kind: String,
        request_id: String,
        code: &'static str,
    },
    /// `webhook.relay.*` that does not parse: reject once if its ids are known.
    BadRelay {
        message_id: Option<String>,
        delivery_id: Option<String>,
        why: String,
    },
    /// Known or unknown frames we ignore (trust policy, peers, acks of deregistration, …).
    Other {
        kind: String,
    },
    Invalid {
        why: String,
    },
}

fn string(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Option<String> {
    string(obj, key).filter(|s| !s.is_empty())
}

fn uint(obj: &Map<String, Value>, key: &str) -> Option<u64> {
    obj.get(key).and_then(Value::as_u64)
}

pub fn parse(text: &str) -> Inbound {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Inbound::Invalid {
                why: format!("not JSON: {e}"),
            }
        }
    };
    let Some(obj) = value.as_object() else {
        return Inbound::Invalid {
            why: "not a JSON object".into(),
        };
    };
    let Some(kind) = string(obj, "type") else {
        return Inbound::Invalid {
            why: "no type".into(),
        };
    };
    match kind.as_str() {
        "auth.success" => Inbound::AuthSuccess {
            connection_id: string(obj, "connectionId").unwrap_or_default(),
        },
        "auth.failure" => Inbound::AuthFailure {
            reason: string(obj, "reason").unwrap_or_default(),
        },
        "source.register.ack" => {
            let list = |k: &str| {
                obj.get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            Inbound::RegisterAck {
                accepted: list("accepted").len(),
                rejected: list("rejected")
                    .iter()
                    .map(|r| {
                        let f = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                        (f("routingKey"), f("reason"))
                    })
                    .collect(),
            }
        }
        "webhook.relay.start" => parse_start(obj),
        "webhook.relay.chunk" => parse_chunk(obj),
        "run.cancel.request" => match (opt_string(obj, "requestId"), opt_string(obj, "runId")) {
            (Some(request_id), Some(run_id)) => Inbound::CancelRun {
                request_id,
                run_id,
                force: obj.get("force").and_then(Value::as_bool).unwrap_or(false),
            },
            (Some(request_id), None) => Inbound::Request {
                kind,
                request_id,
                code: "invalid_payload",
            },
            _ => Inbound::Other { kind },
        },
        k if k.starts_with("dashboard.")
            || k.starts_with("run.")
            || k.starts_with("test.relay.") =>
        {
            match opt_string(obj, "requestId") {
                Some(request_id) => Inbound::Request {
                    kind: k.to_owned(),
                    request_id,
                    code: "unsupported_request_type",
                },
                None => Inbound::Other { kind },
            }
        }
        _ => Inbound::Other { kind },
    }
}

fn parse_start(obj: &Map<String, Value>) -> Inbound {
    let bad = |why: &str| Inbound::BadRelay {
        message_id: opt_string(obj, "messageId"),
        delivery_id: opt_string(obj, "deliveryId"),
        why: why.to_owned(),
    };
    let (Some(message_id), Some(routing_key), Some(delivery_id)) = (
        opt_string(obj, "messageId"),
        opt_string(obj, "routingKey"),
        opt_string(obj, "deliveryId"),
    ) else {
        return bad("webhook.relay.start needs messageId, routingKey and deliveryId");
    };
    let (Some(total_size), Some(chunk_count)) = (uint(obj, "totalSize"), uint(obj, "chunkCount"))
    else {
        return bad("webhook.relay.start needs whole-number totalSize and chunkCount");
    };
    let headers = obj
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Inbound::RelayStart(Box::new(Start {
        message_id,
        routing_key,
        delivery_id,
        event: string(obj, "event").unwrap_or_default(),
        action: opt_string(obj, "action"),
        signature_header_name: opt_string(obj, "signatureHeaderName")
            .map(|s| s.to_ascii_lowercase()),
        signature_header: opt_string(obj, "signatureHeader"),
        client_ip: opt_string(obj, "clientIp"),
        headers,
        total_size,
        chunk_count,
    }))
}

fn parse_chunk(obj: &Map<String, Value>) -> Inbound {
    let message_id = opt_string(obj, "messageId");
    match (
        &message_id,
        uint(obj, "sequence"),
        string(obj, "data"),
        obj.get("final").and_then(Value::as_bool),
    ) {
        (Some(id), Some(sequence), Some(data), Some(last)) => Inbound::RelayChunk(Chunk {
            message_id: id.clone(),
            sequence,
            data,
            last,
        }),
        _ => Inbound::BadRelay {
            message_id,
            delivery_id: None,
            why: "webhook.relay.chunk needs messageId, sequence, data and final".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_request_is_exactly_what_the_platform_expects() {
        assert_eq!(
            auth_request("kici_ok_x"),
            json!({"type":"auth.request","token":"kici_ok_x","protocolVersion":1,
                   "capabilities":{"orchRole":"coordinator","supportedDashboardRequests":["run.cancel.request"]}})
        );
    }

    #[test]
    fn parses_relay_frames() {
        let start = r#"{"type":"webhook.relay.start","messageId":"m1","routingKey":"github:7","deliveryId":"d1",
            "event":"push","action":null,"signatureHeaderName":"X-Hub-Signature-256","signatureHeader":"sha256=ab",
            "clientIp":"1.2.3.4","headers":{"Content-Type":"application/json"},"totalSize":10,"chunkCount":1,"requestId":"r"}"#;
        match parse(start) {
            Inbound::RelayStart(s) => {
                assert_eq!(s.message_id, "m1");
                assert_eq!(s.action, None);
                assert_eq!(
                    s.signature_header_name.as_deref(),
                    Some("x-hub-signature-256")
                );
                assert_eq!(
                    s.headers.get("content-type").map(String::as_str),
                    Some("application/json")
                );
                assert_eq!((s.total_size, s.chunk_count), (10, 1));
            }
            other => panic!("{other:?}"),
        }
        let chunk = r#"{"type":"webhook.relay.chunk","messageId":"m1","sequence":0,"data":"YQ==","final":true}"#;
        assert_eq!(
            parse(chunk),
            Inbound::RelayChunk(Chunk {
                message_id: "m1".into(),
                sequence: 0,
                data: "YQ==".into(),
                last: true
            })
        );
        let bad =
            r#"{"type":"webhook.relay.start","messageId":"m2","deliveryId":"d2","totalSize":-1}"#;
        assert!(matches!(parse(bad), Inbound::BadRelay { delivery_id: Some(d), .. } if d == "d2"));
        let bad = r#"{"type":"webhook.relay.chunk","messageId":"m3","sequence":"0"}"#;
        assert!(matches!(parse(bad), Inbound::BadRelay { message_id: Some(m), .. } if m == "m3"));
    }

    #[test]
    fn unknown_frames_are_other_and_requests_get_errors() {
        assert_eq!(
            parse(r#"{"type":"trust_policy.update"}"#),
            Inbound::Other {
                kind: "trust_policy.update".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"brand.new"}"#),
            Inbound::Other {
                kind: "brand.new".into()
            }
        );
        assert!(matches!(parse("nope"), Inbound::Invalid { .. }));
        assert!(matches!(parse("[1]"), Inbound::Invalid { .. }));
        match parse(r#"{"type":"dashboard.run.detail","requestId":"q1"}"#) {
            Inbound::Request {
                kind,
                request_id,
                code,
            } => {
                let reply = dashboard_error(&kind, &request_id, code, "not supported");
                assert_eq!(reply["type"], "dashboard.run.detail.response");
                assert_eq!(reply["requestId"], "q1");
                assert_eq!(reply["code"], "unsupported_request_type");
                assert_eq!(reply["requestType"], "dashboard.run.detail");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"type":"run.cancel.request","requestId":"q2"}"#),
            Inbound::Request { .. }
        ));
    }

    #[test]
    fn caps_and_omits() {
        let f = capped(json!({
            "type": "execution.status", "messageId": "m".repeat(200), "commitMessage": "é".repeat(2500),
            "failureReason": null, "runsOnLabels": (0..40).collect::<Vec<_>>(),
        }));
        assert_eq!(f["messageId"].as_str().unwrap().len(), 128);
        assert_eq!(f["commitMessage"].as_str().unwrap().chars().count(), 2000);
        assert!(f.get("failureReason").is_none());
        assert_eq!(f["runsOnLabels"].as_array().unwrap().len(), 30);
        let ack = webhook_ack("m", "d", AckResult::RejectedSignature, None);
        assert_eq!(
            ack,
            json!({"type":"webhook.ack","messageId":"m","deliveryId":"d","result":"rejected_signature"})
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    const TYPES: &[&str] = &[
        "auth.success",
        "auth.failure",
        "source.register.ack",
        "webhook.relay.start",
        "webhook.relay.chunk",
        "run.cancel.request",
        "dashboard.runs.list",
        "test.relay.ping",
    ];

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Relayed frames carry a stranger's webhook: any text is a parse result, never a panic.
        #[test]
        fn never_panics_on_arbitrary_text(text in ".{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_on_known_types_with_arbitrary_fields(
            kind in prop::sample::select(TYPES),
            fields in proptest::collection::vec(
                (prop::sample::select(vec![
                    "messageId", "deliveryId", "routingKey", "totalSize", "chunkCount",
                    "sequence", "data", "isLast", "requestId", "runId", "force", "headers",
                    "clientIp", "event", "connectionId", "reason",
                ]), crate::props::json_value(".{0,12}", "[a-zA-Z-]{0,10}", 2)),
                0..8,
            ),
        ) {
            let mut frame = serde_json::Map::new();
            frame.insert("type".into(), Value::String(kind.to_owned()));
            for (k, v) in fields {
                frame.insert(k.to_owned(), v);
            }
            let _ = parse(&Value::Object(frame).to_string());
        }
    }
}
