//! Agent link frames (docs/agent-protocol.md, "Frames from the agent", "Frames to the agent").
//! Pure: JSON text in, typed messages out, and the orchestrator's frames built with optional
//! fields omitted (the agent's schema rejects `null` where it expects a string, and then silently
//! drops the whole frame).
//!
//! Frames outside the agent's own schema that real agents send (`heartbeat`, `run.event`,
//! `job.context`, `agent.log`, `agent.metrics`, …) and any type we do not know are accepted and
//! ignored; only a malformed frame of a known type is an error (`INVALID_MESSAGE`, close 4003).

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub message_id: String,
    pub agent_id: String,
    pub labels: Vec<String>,
    pub platform: String,
    pub arch: String,
    pub max_concurrency: u32,
    pub in_flight: Vec<(String, String)>,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub running_as_uid: Option<i64>,
}

/// A job-scoped message: which job it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRef {
    pub run_id: String,
    pub job_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgentMsg {
    Auth {
        token: String,
        protocol_version: i64,
    },
    Register(Box<Register>),
    Heartbeat,
    Status {
        active_jobs: u64,
    },
    JobAck(JobRef),
    JobReject {
        job: JobRef,
        reason: String,
    },
    JobStatus {
        job: JobRef,
        state: String,
        data: Value,
    },
    StepStatus {
        job: JobRef,
        frame: Value,
    },
    LogChunk {
        job: JobRef,
        step_index: i64,
        lines: Vec<String>,
    },
    JobHeartbeat(JobRef),
    ConfigAck,
    ApiRequest {
        request_id: String,
        method: String,
        params: Value,
    },
    /// `cache.*` / `provenance.*` requests and completions: handled with storage
    /// (docs/agent-protocol.md, "Cache and upload URLs").
    Cache {
        kind: String,
        job_id: String,
        frame: Value,
    },
    ConcurrencyReport {
        message_id: String,
        job: JobRef,
    },
    EventEmit {
        request_id: String,
    },
    ApprovalRequest {
        message_id: String,
        job: JobRef,
        step_index: i64,
    },
    Ignored {
        kind: String,
    },
    Invalid {
        why: String,
    },
}

fn s(o: &Map<String, Value>, k: &str) -> Option<String> {
    o.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn job_ref(o: &Map<String, Value>) -> Option<JobRef> {
    Some(JobRef {
        run_id: s(o, "runId").unwrap_or_default(),
        job_id: s(o, "jobId").filter(|j| !j.is_empty())?,
    })
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}

pub fn parse(text: &str) -> AgentMsg {
    let invalid = |why: &str| AgentMsg::Invalid {
        why: why.to_owned(),
    };
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text) else {
        return invalid("Malformed JSON");
    };
    let Some(kind) = s(&o, "type") else {
        return invalid("a frame without a type");
    };
    let need_job = |m: fn(JobRef) -> AgentMsg| {
        job_ref(&o)
            .map(m)
            .unwrap_or_else(|| invalid("missing jobId"))
    };
    match kind.as_str() {
        "auth.request" => match (
            s(&o, "token"),
            o.get("protocolVersion").and_then(Value::as_i64),
        ) {
            (Some(token), Some(v)) => AgentMsg::Auth {
                token,
                protocol_version: v,
            },
            _ => invalid("auth.request needs token and protocolVersion"),
        },
        "agent.register" => {
            let (Some(agent_id), Some(labels)) = (
                s(&o, "agentId").filter(|a| !a.is_empty()),
                strings(o.get("labels")),
            ) else {
                return invalid("agent.register needs agentId and labels");
            };
            let in_flight = o
                .get("inFlightJobs")
                .and_then(Value::as_array)
                .map(|jobs| {
                    jobs.iter()
                        .filter_map(|j| {
                            Some((
                                j.get("jobId")?.as_str()?.to_owned(),
                                j.get("runId")?.as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            AgentMsg::Register(Box::new(Register {
                message_id: s(&o, "messageId").unwrap_or_default(),
                agent_id,
                labels,
                platform: s(&o, "platform").unwrap_or_else(|| "linux".into()),
                arch: s(&o, "arch").unwrap_or_else(|| "x64".into()),
                max_concurrency: o
                    .get("maxConcurrency")
                    .and_then(Value::as_u64)
                    .filter(|n| *n > 0)
                    .map_or(1, |n| n.min(1024) as u32),
                in_flight,
                hostname: s(&o, "hostname"),
                version: s(&o, "version"),
                running_as_uid: o.get("runningAsUid").and_then(Value::as_i64),
            }))
        }
        "heartbeat" => AgentMsg::Heartbeat,
        "agent.status" => AgentMsg::Status {
            active_jobs: o.get("activeJobs").and_then(Value::as_u64).unwrap_or(0),
        },
        "job.ack" => need_job(AgentMsg::JobAck),
        "job.heartbeat" => need_job(AgentMsg::JobHeartbeat),
        "job.reject" => match job_ref(&o) {
            Some(job) => AgentMsg::JobReject {
                job,
                reason: s(&o, "reason").unwrap_or_default(),
            },
            None => invalid("missing jobId"),
        },
        "job.status" => match (job_ref(&o), s(&o, "state")) {
            (Some(job), Some(state)) => AgentMsg::JobStatus {
                job,
                state,
                data: o.get("data").cloned().unwrap_or(Value::Null),
            },
            _ => invalid("job.status needs jobId and state"),
        },
        "step.status" => match (
            job_ref(&o),
            o.get("stepIndex").and_then(Value::as_i64),
            s(&o, "state"),
        ) {
            (Some(job), Some(_), Some(_)) => AgentMsg::StepStatus {
                job,
                frame: Value::Object(o),
            },
            _ => invalid("step.status needs jobId, stepIndex and state"),
        },
        "log.chunk" => match (
            job_ref(&o),
            o.get("stepIndex").and_then(Value::as_i64),
            strings(o.get("lines")),
        ) {
            (Some(job), Some(step_index), Some(lines)) => AgentMsg::LogChunk {
                job,
                step_index,
                lines,
            },
            _ => invalid("log.chunk needs jobId, stepIndex and lines"),
        },
        "config.ack" => AgentMsg::ConfigAck,
        "agent.api.request" => match (s(&o, "requestId"), s(&o, "method")) {
            (Some(request_id), Some(method)) => AgentMsg::ApiRequest {
                request_id,
                method,
                params: o.get("params").cloned().unwrap_or_else(|| json!({})),
            },
            _ => invalid("agent.api.request needs requestId and method"),
        },
        k if k.starts_with("cache.") || k.starts_with("provenance.") => match s(&o, "jobId") {
            Some(job_id) => AgentMsg::Cache {
                kind: kind.clone(),
                job_id,
                frame: Value::Object(o),
            },
            None => invalid("missing jobId"),
        },
        "job.concurrency.report" => match (s(&o, "messageId"), job_ref(&o)) {
            (Some(message_id), Some(job)) => AgentMsg::ConcurrencyReport { message_id, job },
            _ => invalid("job.concurrency.report needs messageId and jobId"),
        },
        "event.emit" => AgentMsg::EventEmit {
            request_id: s(&o, "requestId").unwrap_or_default(),
        },
        "step.approval-request" => match (s(&o, "messageId"), job_ref(&o)) {
            (Some(message_id), Some(job)) => AgentMsg::ApprovalRequest {
                message_id,
                job,
                step_index: o.get("stepIndex").and_then(Value::as_i64).unwrap_or(0),
            },
            _ => invalid("step.approval-request needs messageId and jobId"),
        },
        _ => AgentMsg::Ignored { kind },
    }
}

/// Frames whose loss would leave a job's state wrong: never dropped or delayed away.
pub fn is_job_state(msg: &AgentMsg) -> bool {
    matches!(
        msg,
        AgentMsg::JobAck(_)
            | AgentMsg::JobReject { .. }
            | AgentMsg::JobStatus { .. }
            | AgentMsg::StepStatus { .. }
    )
}

pub fn auth_success(connection_id: &str) -> Value {
    json!({ "type": "auth.success", "connectionId": connection_id })
}

pub fn auth_failure(reason: &str) -> Value {
    json!({ "type": "auth.failure", "reason": reason })
}

pub fn register_ack(agent_id: &str, labels: &[String]) -> Value {
    json!({ "type": "register.ack", "agentId": agent_id, "labels": labels, "scalerManaged": false })
}

pub fn job_cancel(run_id: &str, job_id: &str, reason: &str, force: bool) -> Value {
    let mut v = json!({
        "type": "job.cancel", "messageId": crate::crypto::random_uuid(),
        "runId": run_id, "jobId": job_id, "reason": reason,
    });
    if force {
        v["force"] = json!(true);
    }
    v
}

pub fn api_response(request_id: &str, result: Result<Value, String>) -> Value {
    match result {
        Ok(r) => json!({ "type": "agent.api.response", "requestId": request_id, "result": r }),
        Err(e) => json!({ "type": "agent.api.response", "requestId": request_id, "error": e }),
    }
}

pub fn invalid_message() -> Value {
    json!({ "type": "error", "code": "INVALID_MESSAGE", "message": "Invalid message format" })
}

pub fn rate_limit_warning(retry_after_ms: u64) -> Value {
    json!({ "type": "rate.limit.warning", "retryAfterMs": retry_after_ms })
}

/// `job.concurrency.ack{action:'proceed'}`: no concurrency groups here.
pub fn concurrency_ack(request_id: &str, job: &JobRef) -> Value {
    json!({ "type": "job.concurrency.ack", "requestId": request_id, "action": "proceed",
            "runId": job.run_id, "jobId": job.job_id })
}

pub fn event_emit_response(request_id: &str) -> Value {
    json!({ "type": "event.emit.response", "requestId": request_id, "error": "Event routing not available" })
}

pub fn approval_resolved(request_id: &str, job: &JobRef, step_index: i64) -> Value {
    json!({ "type": "step.approval-resolved", "requestId": request_id, "runId": job.run_id,
            "jobId": job.job_id, "stepIndex": step_index, "outcome": "rejected",
            "reason": "approvals are not supported by this orchestrator" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_real_agents_send() {
        let reg = r#"{"type":"agent.register","messageId":"register-a-1","agentId":"agent-1",
            "labels":["linux","kici:os:linux"],"platform":"linux","arch":"x64","hostname":"vm",
            "runningAsUid":0,"inFlightJobs":[{"jobId":"j1","runId":"r1"}]}"#;
        match parse(reg) {
            AgentMsg::Register(r) => {
                assert_eq!(
                    (r.agent_id.as_str(), r.max_concurrency, r.running_as_uid),
                    ("agent-1", 1, Some(0))
                );
                assert_eq!(r.in_flight, vec![("j1".to_string(), "r1".to_string())]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(r#"{"type":"heartbeat","timestamp":1}"#),
            AgentMsg::Heartbeat
        );
        for ignored in [
            "run.event",
            "job.context",
            "agent.log",
            "agent.metrics",
            "fleet.bundle.chunk",
            "brand.new",
        ] {
            assert_eq!(
                parse(&format!(r#"{{"type":"{ignored}"}}"#)),
                AgentMsg::Ignored {
                    kind: ignored.into()
                }
            );
        }
        let st = r#"{"type":"job.status","messageId":"m","runId":"r","jobId":"j","state":"failed","timestamp":1,
            "data":{"durationMs":5,"stepResults":[{"name":"a","status":"failed","error":"boom"}]}}"#;
        match parse(st) {
            AgentMsg::JobStatus { job, state, data } => {
                assert_eq!(
                    (
                        job.job_id.as_str(),
                        state.as_str(),
                        data["durationMs"].as_i64()
                    ),
                    ("j", "failed", Some(5))
                );
            }
            other => panic!("{other:?}"),
        }
        let log = r#"{"type":"log.chunk","messageId":"m","runId":"r","jobId":"j","stepIndex":-1,"lines":["a"],"timestamp":1}"#;
        assert!(matches!(
            parse(log),
            AgentMsg::LogChunk { step_index: -1, .. }
        ));
        let hb = r#"{"type":"job.heartbeat","runId":"r","jobId":"j","timestamp":1}"#;
        assert!(matches!(parse(hb), AgentMsg::JobHeartbeat(_)));
        let api = r#"{"type":"agent.api.request","requestId":"q","method":"oidc.token.request","params":{"jobId":"j"}}"#;
        assert!(matches!(parse(api), AgentMsg::ApiRequest { .. }));
        let up = r#"{"type":"cache.upload.request","messageId":"m","jobId":"j","cacheType":"source","contentHash":"h"}"#;
        assert!(matches!(parse(up), AgentMsg::Cache { .. }));
    }

    #[test]
    fn malformed_known_frames_are_invalid() {
        for bad in [
            "not json",
            "[]",
            r#"{"no":"type"}"#,
            r#"{"type":"auth.request"}"#,
            r#"{"type":"agent.register","agentId":"a"}"#,
            r#"{"type":"job.status","jobId":"j"}"#,
            r#"{"type":"job.ack"}"#,
            r#"{"type":"log.chunk","jobId":"j","stepIndex":0,"lines":[1]}"#,
        ] {
            assert!(matches!(parse(bad), AgentMsg::Invalid { .. }), "{bad}");
        }
    }

    #[test]
    fn orchestrator_frames_omit_optional_fields() {
        assert_eq!(
            register_ack("a", &["x".into()]),
            json!({"type":"register.ack","agentId":"a","labels":["x"],"scalerManaged":false})
        );
        assert!(job_cancel("r", "j", "why", false).get("force").is_none());
        assert_eq!(job_cancel("r", "j", "why", true)["force"], true);
        assert!(api_response("q", Ok(json!(1))).get("error").is_none());
        assert!(api_response("q", Err("no".into())).get("result").is_none());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [&str; 24] = [
        "auth.request",
        "agent.register",
        "heartbeat",
        "agent.status",
        "job.ack",
        "job.reject",
        "job.status",
        "step.status",
        "log.chunk",
        "job.heartbeat",
        "config.ack",
        "agent.api.request",
        "cache.upload.request",
        "cache.upload.complete",
        "cache.user.restore.request",
        "cache.user.save.request",
        "provenance.upload.request",
        "provenance.upload.complete",
        "job.concurrency.report",
        "event.emit",
        "step.approval-request",
        "run.event",
        "agent.log",
        "unknown.kind",
    ];
    const FIELDS: [&str; 16] = [
        "token",
        "protocolVersion",
        "agentId",
        "labels",
        "maxConcurrency",
        "inFlightJobs",
        "runningAsUid",
        "jobId",
        "runId",
        "state",
        "data",
        "stepIndex",
        "lines",
        "requestId",
        "method",
        "activeJobs",
    ];

    fn json_value() -> BoxedStrategy<Value> {
        crate::props::json_value(".{0,12}", ".{0,8}", 4)
    }

    /// A frame of a known type whose known fields hold anything.
    fn known_frame() -> impl Strategy<Value = Value> {
        (
            proptest::sample::select(KINDS.to_vec()),
            proptest::collection::vec(
                (proptest::sample::select(FIELDS.to_vec()), json_value()),
                0..8,
            ),
        )
            .prop_map(|(kind, fields)| {
                let mut o = Map::new();
                o.insert("type".into(), json!(kind));
                for (k, v) in fields {
                    o.insert(k.into(), v);
                }
                Value::Object(o)
            })
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn never_panics_on_arbitrary_json(v in json_value()) {
            let _ = parse(&v.to_string());
        }

        /// Known types with wrong, missing or odd fields: a message or `Invalid`, and a parsed
        /// registration's capacity stays within 1..=1024.
        #[test]
        fn never_panics_on_known_types_with_arbitrary_fields(v in known_frame()) {
            if let AgentMsg::Register(r) = parse(&v.to_string()) {
                prop_assert!((1..=1024).contains(&r.max_concurrency));
                prop_assert!(!r.agent_id.is_empty());
            }
        }
    }
}
