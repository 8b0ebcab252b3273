//! `kici-admin event-log replay <deliveryId> [--json]` (docs/operations.md, "Reruns and
//! replays"): processes a recorded delivery again with the lock file as it is now at the
//! delivery's commit, through `POST /events/:id/replay`, and prints what it started.

use argh::FromArgs;
use serde_json::Value;

use super::{
    client::{encode_component, AdminClient},
    output::{field, show},
    Globals,
};
use crate::Error;

/// Process a recorded delivery again with the lock file as it is now at its commit (after you
/// fixed the lock file): the triggers are matched again and each matched workflow starts a new
/// run (owner or admin).
#[derive(FromArgs)]
#[argh(subcommand, name = "replay")]
pub struct ReplayCmd {
    /// the delivery's ID (X-GitHub-Delivery, the generic delivery id) or its event-log ID
    #[argh(positional)]
    pub delivery_id: String,
    /// print the API's JSON answer ({"deliveryId", "status", "runs", "decisions", ...})
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: ReplayCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!("/events/{}/replay", encode_component(&cmd.delivery_id));
    let answer = AdminClient::from_globals(globals)?
        .post(&route, &serde_json::json!({}))
        .map_err(Error::from)?;
    show(&answer, cmd.json, summary);
    Ok(())
}

/// What a person reads after a replay (pure): the outcome, each run started, and each
/// workflow's decision in one line.
pub fn summary(a: &Value) -> String {
    let runs: Vec<&str> = a["runs"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = format!(
        "Delivery {} replayed: {}, {} run(s) started",
        field(a, "deliveryId"),
        field(a, "status"),
        runs.len()
    );
    if let Some(e) = a["error"].as_str() {
        out.push_str(&format!("\nError: {e}"));
    }
    for run in runs {
        out.push_str(&format!("\n  run {run}"));
    }
    for d in a["decisions"].as_array().into_iter().flatten() {
        let line = match (d["workflowName"].as_str(), d["summary"].as_str()) {
            (Some(w), Some(s)) => format!("{w}: {s}"),
            (None, Some(s)) => s.to_owned(),
            (Some(w), None) => format!("{w}: matched {}", d["matched"]),
            (None, None) => continue,
        };
        out.push_str(&format!("\n  {line}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_runs_and_decisions() {
        let a = serde_json::json!({"deliveryId": "d1", "status": "processed", "runs": ["r1"],
            "decisions": [{"workflowName": "ci", "summary": "push to main matches"},
                          {"summary": "no lock file"}]});
        let text = summary(&a);
        assert!(
            text.starts_with("Delivery d1 replayed: processed, 1 run(s) started"),
            "{text}"
        );
        assert!(text.contains("\n  run r1"), "{text}");
        assert!(text.contains("\n  ci: push to main matches"), "{text}");
        assert!(text.contains("\n  no lock file"), "{text}");
    }
}
