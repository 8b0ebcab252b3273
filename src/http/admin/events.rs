//! The event log routes (docs/operations.md, "Event log"): `GET /events?source=&status=&since=
//! &limit=&after=` lists deliveries newest first, `GET /events/:deliveryId` shows one with the
//! headers it kept, its outcome, the runs it started and every workflow's decision in words
//! (`pipeline::explain`). Reading needs `context.read` (our role table has no separate
//! `event_log.read`); a routing-key scoped token sees only its key's deliveries.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::{not_found, ApiError, ApiResult};
use crate::{
    db::{
        event_log::{self, ListQuery, SourceFilter, STATUSES},
        Pool,
    },
    http::{Request, Response},
    pipeline::explain,
    rbac::{Caller, Permission},
};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;
/// `since` reaches back at most this far (a typo like `9999d` is refused, not a full scan).
const MAX_SINCE_DAYS: i64 = 3650;

/// `since` as given: `90s`, `30m`, `1h`, `2d`, `1w` before `now`, or an RFC 3339 time.
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().map_err(|_| {
        format!("{text:?} is neither a duration like 30m, 1h or 2d nor an RFC 3339 time")
    })?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        "w" => n.saturating_mul(7 * 86_400),
        _ => {
            return Err(format!(
                "{text:?}: the unit must be s, m, h, d or w (or give an RFC 3339 time)"
            ))
        }
    };
    if secs > MAX_SINCE_DAYS * 86_400 {
        return Err(format!(
            "{text:?} reaches back more than {MAX_SINCE_DAYS} days"
        ));
    }
    now.checked_sub(SignedDuration::from_secs(secs))
        .map_err(|_| format!("{text:?} reaches back too far"))
}

/// A list request's filters; every problem is reported at once.
pub fn list_query(pairs: &[(String, String)], now: Timestamp) -> Result<ListQuery, ApiError> {
    let mut problems = Vec::new();
    let mut q = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    for (k, v) in pairs {
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "source" => q.source = Some(SourceFilter::parse(v)),
            "status" if STATUSES.contains(&v.as_str()) => q.status = Some(v.clone()),
            "status" => problems.push((
                "status".to_owned(),
                format!(
                    "{v:?} is not a delivery status (one of {})",
                    STATUSES.join(", ")
                ),
            )),
            "since" => match parse_since(v, now) {
                Ok(at) => q.since = Some(at.to_string()),
                Err(e) => problems.push(("since".to_owned(), e)),
            },
            "limit" => match v.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
                _ => problems.push((
                    "limit".to_owned(),
                    format!("{v:?} is not a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
            "after" | "cursor" => q.after = Some(v.clone()),
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(q)
    } else {
        Err(ApiError::Validation(problems))
    }
}

pub fn list(pool: &Pool, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let mut q = list_query(&req.query_pairs(), Timestamp::now())?;
    q.scope = caller.routing_key.clone();
    let rows = pool.with_retry(|c| event_log::list(c, &q))?;
    // A full page may have more after it: its last row is where the next one starts.
    let cursor = (rows.len() as i64 == q.limit)
        .then(|| rows.last().map(|r| r["id"].clone()))
        .flatten()
        .unwrap_or(Value::Null);
    Ok(Response::json(
        200,
        &json!({ "events": rows, "cursor": cursor }),
    ))
}

pub fn show(pool: &Pool, caller: &Caller, id: &str) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let found = pool.with_retry(|c| event_log::show(c, id))?;
    let (mut delivery, runs) = found.ok_or_else(|| not_found("Delivery"))?;
    let key = delivery["routingKey"].as_str().unwrap_or("").to_owned();
    if !caller.sees(&key) {
        // Another key's delivery is not confirmed to exist.
        return Err(not_found("Delivery"));
    }
    let decisions = delivery
        .as_object_mut()
        .and_then(|d| d.remove("decisions"))
        .unwrap_or(Value::Null);
    let status = delivery["status"].as_str().unwrap_or("").to_owned();
    let matched = delivery["matchedCount"].as_i64().unwrap_or(0);
    let outcome = explain::outcome(&status, matched, delivery["error"].as_str(), &decisions);
    let traces: Vec<&Value> = decisions
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| d.get("workflowName").is_some())
                .collect()
        })
        .unwrap_or_default();
    let workflows: Vec<Value> = explain::workflows(&decisions)
        .into_iter()
        .zip(traces)
        .map(|(e, trace)| {
            json!({
                "workflow": e.workflow, "matched": e.matched, "explanation": e.text,
                "reasons": e.reasons, "trace": trace,
            })
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "delivery": delivery,
            "outcome": outcome,
            "notes": explain::notes(&decisions),
            "workflows": workflows,
            "runs": runs,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-10T12:00:00Z".parse().unwrap()
    }

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn since_takes_durations_and_times() {
        let at = |s| parse_since(s, now()).map(|t| t.to_string());
        assert_eq!(at("1h").unwrap(), "2026-01-10T11:00:00Z");
        assert_eq!(at("30m").unwrap(), "2026-01-10T11:30:00Z");
        assert_eq!(at("2d").unwrap(), "2026-01-08T12:00:00Z");
        assert_eq!(at("2026-01-01T00:00:00Z").unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(at("3650d").unwrap(), "2016-01-13T12:00:00Z");
        for bad in [
            "",
            "h",
            "1y",
            "-1h",
            "3651d",
            "99999999999999999999d",
            "yesterday",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_list_query_reports_every_problem() {
        let q = list_query(
            &pairs(&[("source", "github"), ("status", "failed"), ("limit", "5")]),
            now(),
        )
        .unwrap();
        assert_eq!(q.source, Some(SourceFilter::Provider("github".into())));
        assert_eq!((q.status.as_deref(), q.limit), (Some("failed"), 5));
        let q = list_query(&pairs(&[("source", "github:42")]), now()).unwrap();
        assert_eq!(q.source, Some(SourceFilter::RoutingKey("github:42".into())));
        let Err(ApiError::Validation(details)) = list_query(
            &pairs(&[("status", "done"), ("since", "1y"), ("limit", "1001")]),
            now(),
        ) else {
            panic!("accepted")
        };
        let paths: Vec<&str> = details.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["status", "since", "limit"]);
    }

    proptest::proptest! {
        #[test]
        fn since_never_panics(text in ".{0,40}") {
            let _ = parse_since(&text, now());
        }
    }
}
