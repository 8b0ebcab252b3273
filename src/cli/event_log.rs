//! `kici-admin event-log list | show` (docs/operations.md, "Event log"): reads `GET /events` and
//! `GET /events/:deliveryId`; the printed text is built by the pure functions below from the
//! API's JSON.

use argh::FromArgs;
use serde_json::Value;

use super::{
    client::{array_of, encode_component, AdminClient, ApiError},
    output::{field, opt_field, pad, show as print},
    Globals,
};
use crate::Error;

/// List deliveries, newest first: when, which source, event, repository and ref, status and the
/// runs started.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// only deliveries of this source: a routing key (github:<appId>, generic:<org>:<name>),
    /// a provider (github, generic, local) or the way in (direct, relay)
    #[argh(option)]
    pub source: Option<String>,
    /// only deliveries in this status: received, processing, processed, duplicate,
    /// lockfile_missing, lockfile_corrupt or failed
    #[argh(option)]
    pub status: Option<String>,
    /// only deliveries received since then: 30m, 1h, 2d, 1w or an RFC 3339 time
    #[argh(option)]
    pub since: Option<String>,
    /// at most this many deliveries (1 to 1000, default 50)
    #[argh(option)]
    pub limit: Option<u32>,
    /// continue after this cursor (printed at the end of a full page)
    #[argh(option)]
    pub after: Option<String>,
    /// print {"events": [...], "cursor": ...} as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Show one delivery: its source, event, kept headers (never signatures or tokens), size,
/// times and outcome, the runs it started, and for each workflow of its lock file why it did or
/// did not run.
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
pub struct ShowCmd {
    /// the delivery ID (X-GitHub-Delivery, the deliveryId a webhook answer gave, or the second
    /// column of kici-admin event-log list)
    #[argh(positional)]
    pub delivery_id: String,
    /// print {"delivery", "outcome", "notes", "workflows", "runs"} as JSON
    #[argh(switch)]
    pub json: bool,
}

/// The list route with the command's filters, each value percent-encoded.
pub fn list_route(cmd: &ListCmd) -> String {
    let mut query = Vec::new();
    for (name, value) in [
        ("source", &cmd.source),
        ("status", &cmd.status),
        ("since", &cmd.since),
        ("after", &cmd.after),
    ] {
        if let Some(v) = value {
            query.push(format!("{name}={}", encode_component(v)));
        }
    }
    if let Some(n) = cmd.limit {
        query.push(format!("limit={n}"));
    }
    match query.is_empty() {
        true => "/events".to_owned(),
        false => format!("/events?{}", query.join("&")),
    }
}

pub fn list(cmd: ListCmd, globals: &Globals) -> Result<(), Error> {
    let answer = AdminClient::from_globals(globals)?.get(&list_route(&cmd))?;
    let events = array_of(&answer, "events", "GET /events")?;
    print(&answer, cmd.json, |a| {
        let mut text = event_table(&events);
        if let Some(cursor) = opt_field(a, "cursor") {
            text.push_str(&format!(
                "\nMore: kici-admin event-log list --after {cursor}"
            ));
        }
        text
    });
    Ok(())
}

pub fn show(cmd: ShowCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!("/events/{}", encode_component(&cmd.delivery_id));
    let answer = AdminClient::from_globals(globals)?
        .get(&route)
        .map_err(|e| match e {
            ApiError::Status { status: 404, .. } => Error::Api(format!(
                "{e}: no delivery {:?} (see kici-admin event-log list for the IDs)",
                cmd.delivery_id
            )),
            e => e.into(),
        })?;
    print(&answer, cmd.json, delivery_details);
    Ok(())
}

/// `event`, or `event.action` when there is an action.
fn event_of(e: &Value) -> String {
    match opt_field(e, "action") {
        Some(action) => format!("{}.{action}", field(e, "event")),
        None => field(e, "event"),
    }
}

/// Columns padded to their widest cell, so the table lines up whatever the ids look like.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let padded: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { pad(&c, widths[i]) })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![line(header.iter().map(|h| h.to_string()).collect())];
    lines.extend(rows.iter().cloned().map(line));
    lines.join("\n")
}

/// `event-log list`: one aligned line per delivery.
pub fn event_table(events: &[Value]) -> String {
    if events.is_empty() {
        return "No deliveries.".to_owned();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let git_ref = field(e, "ref");
            vec![
                field(e, "receivedAt"),
                field(e, "deliveryId"),
                field(e, "routingKey"),
                event_of(e),
                field(e, "repo"),
                git_ref
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&git_ref)
                    .to_owned(),
                field(e, "status"),
                field(e, "matchedCount"),
            ]
        })
        .collect();
    table(
        &[
            "RECEIVED",
            "DELIVERY ID",
            "SOURCE",
            "EVENT",
            "REPOSITORY",
            "REF",
            "STATUS",
            "RUNS",
        ],
        &rows,
    )
}

/// `event-log show`: the delivery's labelled lines, its headers, runs and workflow decisions.
pub fn delivery_details(answer: &Value) -> String {
    let d = answer.get("delivery").unwrap_or(&Value::Null);
    let mut lines = vec![format!("Delivery {}", field(d, "deliveryId"))];
    let mut line = |label: &str, value: String| {
        if !value.is_empty() {
            lines.push(format!("  {}{value}", pad(&format!("{label}:"), 12)));
        }
    };
    let via = [opt_field(d, "provider"), opt_field(d, "via")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    line("Source", format!("{} ({via})", field(d, "routingKey")));
    line("Org", field(d, "org"));
    line("Event", event_of(d));
    line("Repository", field(d, "repo"));
    line("Ref", field(d, "ref"));
    let kept = if d["payloadKept"] == Value::Bool(false) {
        format!(" (payload not kept: {})", field(d, "payloadOmittedReason"))
    } else {
        String::new()
    };
    line("Size", format!("{} bytes{kept}", field(d, "sizeBytes")));
    line("Received", field(d, "receivedAt"));
    line("Processed", field(d, "processedAt"));
    line("Status", field(d, "status"));
    line("Outcome", field(answer, "outcome"));
    if let Some(headers) = d.get("headers").and_then(Value::as_object) {
        if !headers.is_empty() {
            lines.push("Headers (signatures and tokens are never kept):".to_owned());
            for (name, value) in headers {
                lines.push(format!("  {name}: {}", value.as_str().unwrap_or("")));
            }
        }
    }
    let runs = answer
        .get("runs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !runs.is_empty() {
        lines.push("Runs:".to_owned());
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    field(r, "runId"),
                    field(r, "workflowName"),
                    field(r, "status"),
                    field(r, "failureReason"),
                ]
            })
            .collect();
        for l in table(&["RUN ID", "WORKFLOW", "STATUS", "FAILURE"], &rows).lines() {
            lines.push(format!("  {l}"));
        }
    }
    let notes: Vec<String> = answer
        .get("notes")
        .and_then(Value::as_array)
        .map(|n| {
            n.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let workflows = answer
        .get("workflows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !workflows.is_empty() || !notes.is_empty() {
        lines.push("Workflows:".to_owned());
        for note in notes {
            lines.push(format!("  {note}"));
        }
        for w in &workflows {
            let reasons: Vec<&str> = w["reasons"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mark = if w["matched"] == Value::Bool(true) {
                "✓"
            } else {
                "✗"
            };
            if reasons.len() > 1 {
                lines.push(format!(
                    "  {mark} workflow {}: no trigger matched",
                    field(w, "workflow")
                ));
                for (i, r) in reasons.iter().enumerate() {
                    lines.push(format!("      trigger {}: {r}", i + 1));
                }
            } else {
                lines.push(format!("  {mark} {}", field(w, "explanation")));
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_routes_encode_the_filters() {
        let cmd = ListCmd {
            source: Some("generic:o:n".into()),
            status: None,
            since: Some("2026-01-01T00:00:00+01:00".into()),
            limit: Some(5),
            after: None,
            json: false,
        };
        assert_eq!(
            list_route(&cmd),
            "/events?source=generic%3Ao%3An&since=2026-01-01T00%3A00%3A00%2B01%3A00&limit=5"
        );
    }

    #[test]
    fn the_table_lines_up() {
        let events = [
            json!({"receivedAt": "2026-01-01T00:00:00.000Z", "deliveryId": "d-1", "routingKey": "github:1",
                   "event": "push", "repo": "acme/app", "ref": "refs/heads/main", "status": "processed",
                   "matchedCount": 1}),
            json!({"receivedAt": "2026-01-01T00:00:01.000Z", "deliveryId": "a-much-longer-id",
                   "routingKey": "github:1", "event": "pull_request", "action": "opened",
                   "status": "failed", "matchedCount": 0}),
        ];
        let text = event_table(&events);
        let lines: Vec<&str> = text.lines().collect();
        let col = |l: &str| l.find("github:1");
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(lines[2].contains("pull_request.opened"));
        assert!(lines[1].contains("  main  "));
        assert_eq!(event_table(&[]), "No deliveries.");
    }

    #[test]
    fn show_prints_reasons_per_workflow() {
        let answer = json!({
            "delivery": {"deliveryId": "d-1", "routingKey": "github:1", "provider": "github",
                         "via": "direct", "event": "push", "sizeBytes": 10, "status": "processed",
                         "headers": {"x-github-event": "push"}, "payloadKept": true},
            "outcome": "no run started: no workflow matched",
            "workflows": [
                {"workflow": "deploy", "matched": false,
                 "explanation": "workflow deploy: push to `x` does not match branches `main`",
                 "reasons": ["push to `x` does not match branches `main`"]},
                {"workflow": "ci", "matched": false, "explanation": "…",
                 "reasons": ["a", "b"]}
            ],
            "runs": []
        });
        let text = delivery_details(&answer);
        assert!(
            text.contains("Outcome:    no run started: no workflow matched"),
            "{text}"
        );
        assert!(text.contains("  x-github-event: push"));
        assert!(text.contains("✗ workflow deploy: push to `x` does not match branches `main`"));
        assert!(text.contains("      trigger 2: b"));
    }
}
