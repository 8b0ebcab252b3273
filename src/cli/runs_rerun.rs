//! `kici-admin runs rerun <runId> [--failed-only] [--json]` (docs/operations.md, "Reruns and
//! replays"): starts a finished run's workflow again at the same commit through
//! `POST /runs/:runId/rerun` and prints the new run.

use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{encode_component, AdminClient},
    output::{field, show},
    Globals,
};
use crate::Error;

/// Run a finished run's workflow again at the same commit (the lock file is read at that
/// commit again): every job, or with --failed-only the jobs that did not pass and those that
/// depend on them, the passed ones kept as passed.
#[derive(FromArgs)]
#[argh(subcommand, name = "rerun")]
pub struct RerunCmd {
    /// the run's ID (the first column of kici-admin runs list)
    #[argh(positional)]
    pub run_id: String,
    /// run again only the jobs that failed, were cancelled, timed out or were skipped, and the
    /// jobs downstream of them; the jobs that passed are recorded as passed without running
    #[argh(switch)]
    pub failed_only: bool,
    /// print the API's JSON answer ({"runId", "rerunOf", "keptJobs", ...})
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: RerunCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!("/runs/{}/rerun", encode_component(&cmd.run_id));
    let answer = AdminClient::from_globals(globals)?
        .post(&route, &json!({ "failedOnly": cmd.failed_only }))
        .map_err(Error::from)?;
    show(&answer, cmd.json, summary);
    Ok(())
}

/// What a person reads after a rerun started (pure).
pub fn summary(a: &Value) -> String {
    let mut out = format!(
        "Run started: {} (re-run of {}, workflow {} at {})",
        field(a, "runId"),
        field(a, "rerunOf"),
        field(a, "workflowName"),
        field(a, "sha"),
    );
    let kept: Vec<&str> = a["keptJobs"]
        .as_array()
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !kept.is_empty() {
        out.push_str(&format!(
            "\nKept as passed, not run again: {}",
            kept.join(", ")
        ));
    }
    if let Some(why) = a["failureReason"].as_str() {
        out.push_str(&format!("\nThe new run failed before any job: {why}"));
    }
    out.push_str(&format!(
        "\nFollow it with: kici-admin runs logs {} --follow",
        field(a, "runId")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_new_run_the_old_one_and_the_kept_jobs() {
        let a = json!({"runId": "r2", "rerunOf": "r1", "workflowName": "ci", "sha": "abc",
            "keptJobs": ["lint", "build"], "failureReason": null});
        let text = summary(&a);
        assert!(
            text.starts_with("Run started: r2 (re-run of r1, workflow ci at abc)"),
            "{text}"
        );
        assert!(
            text.contains("Kept as passed, not run again: lint, build"),
            "{text}"
        );
        assert!(text.contains("kici-admin runs logs r2 --follow"), "{text}");
        let plain = summary(&json!({"runId": "r2", "rerunOf": "r1", "keptJobs": []}));
        assert!(!plain.contains("Kept"), "{plain}");
    }
}
