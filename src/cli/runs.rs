//! `kici-admin runs …`: list runs, show one (jobs, steps, agents, durations, failure reasons,
//! where the logs are, and each failed step's exit code, message and last log lines), cancel one.
//! Reads `GET /runs` and `GET /runs/:runId`; the printed text is built from the API's JSON by pure
//! functions, below for the list and in `runs_show.rs` for one run.

use crate::cli::output::outln;
use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{field, pad, print_json, show},
    Globals,
};
use crate::Error;

/// See, cancel and re-run pipeline runs.
#[derive(FromArgs)]
#[argh(subcommand, name = "runs")]
pub struct RunsCmd {
    #[argh(subcommand)]
    pub command: RunsSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum RunsSub {
    List(ListCmd),
    Show(ShowCmd),
    Cancel(CancelCmd),
    Logs(super::runs_logs::LogsCmd),
    Rerun(super::runs_rerun::RerunCmd),
}

/// List runs, newest first, with their jobs' statuses.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// only runs in this status: pending, running, success, failed, cancelled, cancelling or
    /// held
    #[argh(option)]
    pub status: Option<String>,
    /// at most this many runs (1 to 1000, default 50)
    #[argh(option)]
    pub limit: Option<u32>,
    /// print {"runs": [...]} as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Show a run: its jobs with agent, duration and failure reason, each job's steps with exit
/// code, where every step's log is stored, and each failed step's exit code, message and last
/// 20 log lines (when the daemon keeps logs).
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
pub struct ShowCmd {
    /// the run's ID (the first column of kici-admin runs list)
    #[argh(positional)]
    pub run_id: String,
    /// print {"run": ..., "jobs": [...], "failedSteps": [...]} as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Cancel a run: queued jobs end at once, running ones are asked to stop.
#[derive(FromArgs)]
#[argh(subcommand, name = "cancel")]
pub struct CancelCmd {
    /// the run's ID
    #[argh(positional)]
    pub run_id: String,
    /// stop running jobs without waiting for them to wind down
    #[argh(switch)]
    pub force: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: RunsCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        RunsSub::List(c) => list(c, globals),
        RunsSub::Show(c) => show_run(c, globals),
        RunsSub::Cancel(c) => cancel(c, globals),
        RunsSub::Logs(c) => super::runs_logs::run(c, globals),
        RunsSub::Rerun(c) => super::runs_rerun::run(c, globals),
    }
}

fn list(cmd: ListCmd, globals: &Globals) -> Result<(), Error> {
    let mut query = Vec::new();
    if let Some(s) = &cmd.status {
        query.push(format!("status={}", encode_component(s)));
    }
    if let Some(n) = cmd.limit {
        query.push(format!("limit={n}"));
    }
    let route = match query.is_empty() {
        true => "/runs".to_owned(),
        false => format!("/runs?{}", query.join("&")),
    };
    let client = AdminClient::from_globals(globals)?;
    let answer = client.get(&route)?;
    let runs = array_of(&answer, "runs", "GET /runs")?;
    if cmd.json {
        print_json(&json!({ "runs": runs }));
        return Ok(());
    }
    outln!("{}", run_table(&runs));
    if runs.is_empty() && cmd.status.is_none() {
        // Best effort: the hint must not turn an answered listing into an error.
        let github = client
            .get("/sources")
            .ok()
            .and_then(|a| a["sources"].as_array().map(Vec::len));
        if let Some(hint) = empty_hint(github) {
            outln!("{hint}");
        }
    }
    Ok(())
}

/// Why an unfiltered listing may be empty, given how many GitHub App sources exist (`None`:
/// unknown). Local sources are listed per org, so the CLI cannot tell whether one exists: the
/// hint names them. Plain generic deliveries start no pipeline work (docs/architecture.md,
/// "Data path").
fn empty_hint(github_sources: Option<usize>) -> Option<&'static str> {
    match github_sources {
        Some(0) => Some(
            "No GitHub App source is configured: runs start from GitHub App and local sources \
             (`kici-admin source add local`, which start runs on push). Plain generic webhook \
             deliveries are recorded in the event log when accepted, but start no runs by \
             themselves (docs/architecture.md, \"Pipeline\").",
        ),
        _ => None,
    }
}

fn show_run(cmd: ShowCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!("/runs/{}", encode_component(&cmd.run_id));
    let answer = AdminClient::from_globals(globals)?
        .get(&route)
        .map_err(|e| match e {
            super::client::ApiError::Status { status: 404, .. } => Error::Api(format!(
                "{e}: no run {:?} (see kici-admin runs list for the IDs)",
                cmd.run_id
            )),
            e => e.into(),
        })?;
    show(&answer, cmd.json, super::runs_show::run_details);
    Ok(())
}

fn cancel(cmd: CancelCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!("/runs/{}/cancel", encode_component(&cmd.run_id));
    let answer =
        AdminClient::from_globals(globals)?.post(&route, &json!({ "force": cmd.force }))?;
    show(&answer, cmd.json, |a| {
        format!(
            "Run cancelled: {} ({} job(s) cancelled)",
            cmd.run_id,
            field(a, "cancelledJobs")
        )
    });
    Ok(())
}

/// A duration in milliseconds as people read it: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn human_duration(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
        ms => format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

pub(super) fn duration_of(v: &Value) -> Option<String> {
    v.get("durationMs")
        .and_then(Value::as_i64)
        .map(human_duration)
}

/// `{"success": 2, "failed": 1}` as `2 success, 1 failed` (terminal-looking order first).
pub fn job_counts(counts: &Value) -> String {
    const ORDER: [&str; 8] = [
        "success",
        "failed",
        "cancelled",
        "skipped",
        "running",
        "queued",
        "pending",
        "waiting",
    ];
    let Some(map) = counts.as_object() else {
        return String::new();
    };
    let mut parts: Vec<String> = ORDER
        .iter()
        .filter_map(|s| map.get(*s).map(|n| format!("{n} {s}")))
        .collect();
    parts.extend(
        map.iter()
            .filter(|(k, _)| !ORDER.contains(&k.as_str()))
            .map(|(k, n)| format!("{n} {k}")),
    );
    match parts.is_empty() {
        true => "no jobs".to_owned(),
        false => parts.join(", "),
    }
}

/// `runs list`: one padded line per run.
pub fn run_table(runs: &[Value]) -> String {
    if runs.is_empty() {
        return "No runs.".to_owned();
    }
    let mut lines = vec![format!(
        "{} {} {} {} {} {} JOBS",
        pad("RUN ID", 36),
        pad("STATUS", 10),
        pad("WORKFLOW", 20),
        pad("REPOSITORY", 24),
        pad("REF", 20),
        pad("STARTED", 24)
    )];
    for r in runs {
        let git_ref = field(r, "ref");
        let short_ref = git_ref
            .strip_prefix("refs/heads/")
            .unwrap_or(&git_ref)
            .to_owned();
        lines.push(format!(
            "{} {} {} {} {} {} {}",
            pad(&field(r, "runId"), 36),
            pad(&field(r, "status"), 10),
            pad(&field(r, "workflowName"), 20),
            pad(&field(r, "repo"), 24),
            pad(&short_ref, 20),
            pad(&field(r, "startedAt"), 24),
            job_counts(r.get("jobs").unwrap_or(&Value::Null))
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(850), "850ms");
        assert_eq!(human_duration(12_340), "12.3s");
        assert_eq!(human_duration(245_000), "4m05s");
        assert_eq!(human_duration(7_380_000), "2h03m");
    }

    #[test]
    fn job_counts_in_a_stable_order() {
        assert_eq!(
            job_counts(&json!({"pending": 1, "success": 2, "odd": 1, "failed": 1})),
            "2 success, 1 failed, 1 pending, 1 odd"
        );
        assert_eq!(job_counts(&json!({})), "no jobs");
    }

    #[test]
    fn table_and_empty_list() {
        assert_eq!(run_table(&[]), "No runs.");
        assert!(empty_hint(Some(0)).is_some_and(|h| h.contains("Plain generic webhook deliveries")));
        assert_eq!(empty_hint(Some(1)), None);
        assert_eq!(empty_hint(None), None);
        let t = run_table(&[
            json!({"runId": "r1", "status": "failed", "workflowName": "ci",
            "repo": "acme/app", "ref": "refs/heads/main", "startedAt": "2026-01-01T00:00:00.000Z",
            "jobs": {"failed": 1}}),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("RUN ID "), "{t}");
        assert!(lines[1].starts_with("r1 "), "{t}");
        assert!(
            lines[1].contains(" main ") && lines[1].ends_with(" 1 failed"),
            "{t}"
        );
    }
}
