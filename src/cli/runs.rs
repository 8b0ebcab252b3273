//! `kici-admin runs …`: list runs, show one (jobs, steps, agents, durations, failure reasons,
//! where the logs are, and each failed step's exit code, message and last log lines), cancel one.
//! Reads `GET /runs` and `GET /runs/:runId`; the printed text is built by the pure functions below
//! from the API's JSON.

use crate::cli::output::outln;
use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{field, opt_field, pad, print_json, show},
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
    show(&answer, cmd.json, run_details);
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

fn duration_of(v: &Value) -> Option<String> {
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

/// `runs show`: the run's labelled lines, then each job with its steps and log locations.
pub fn run_details(answer: &Value) -> String {
    let run = answer.get("run").unwrap_or(&Value::Null);
    let mut lines = vec![format!("Run {}", field(run, "runId"))];
    let mut line = |label: &str, value: String| {
        lines.push(format!("  {}{value}", pad(&format!("{label}:"), 16)));
    };
    line("Workflow", field(run, "workflowName"));
    line("Status", field(run, "status"));
    if let Some(conclusion) = run.pointer("/check/conclusion").and_then(Value::as_str) {
        line("Conclusion", conclusion.to_owned());
    }
    if let Some(reason) = opt_field(run, "failureReason") {
        line("Failure", reason);
    }
    if let Some(init) = run.get("initFailure").filter(|v| !v.is_null()) {
        line("Init failure", compact(init));
    }
    let repo = field(run, "repo");
    if !repo.is_empty() {
        line("Repository", repo);
    }
    let sha = field(run, "sha");
    let at = match sha.get(..12) {
        Some(short) => format!(" @ {short}"),
        None if !sha.is_empty() => format!(" @ {sha}"),
        None => String::new(),
    };
    line("Ref", format!("{}{at}", field(run, "ref")));
    if let Some(message) = opt_field(run, "commitMessage") {
        line("Commit", message);
    }
    let mut trigger = field(run, "event");
    if let Some(provider) = opt_field(run, "provider") {
        trigger.push_str(&format!(" via {provider}"));
    }
    if let Some(delivery) = opt_field(run, "deliveryId") {
        trigger.push_str(&format!(" (delivery {delivery})"));
    }
    line("Trigger", trigger.trim().to_owned());
    // A rerun or a replay (docs/operations.md, "Reruns and replays").
    match (opt_field(run, "parentRunId"), opt_field(run, "triggeredBy")) {
        (Some(parent), by) => line(
            "Re-run of",
            format!(
                "{parent}{}",
                by.map(|b| format!(" ({b})")).unwrap_or_default()
            ),
        ),
        (None, Some(by)) => line("Triggered by", by),
        (None, None) => {}
    }
    line("Started", field(run, "startedAt"));
    if let Some(done) = opt_field(run, "completedAt") {
        line("Completed", done);
    }
    if let Some(d) = duration_of(run) {
        line("Duration", d);
    }
    line("Logs", log_line(run.get("logs").unwrap_or(&Value::Null)));
    let jobs = answer
        .get("jobs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    lines.push(String::new());
    if jobs.is_empty() {
        lines.push("No jobs.".to_owned());
    } else {
        lines.push("Jobs:".to_owned());
    }
    for job in &jobs {
        lines.extend(job_lines(job));
    }
    lines.extend(failed_step_lines(answer));
    lines.join("\n")
}

/// `Failed steps:`: each failed step with its exit code and message, and the last lines of its
/// log when the daemon keeps logs (the API's `failedSteps`).
fn failed_step_lines(answer: &Value) -> Vec<String> {
    let failed = answer
        .get("failedSteps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if failed.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![String::new(), "Failed steps:".to_owned()];
    for f in &failed {
        let mut why = Vec::new();
        if let Some(code) = opt_field(f, "exitCode") {
            why.push(format!("exit code {code}"));
        }
        if let Some(error) =
            opt_field(f, "error").filter(|e| *e != format!("exit code {}", field(f, "exitCode")))
        {
            why.push(error.lines().collect::<Vec<_>>().join("; "));
        }
        let why = if why.is_empty() {
            "no reason reported".to_owned()
        } else {
            why.join(": ")
        };
        lines.push(format!(
            "  {} / step {} ({}): {why}",
            field(f, "job"),
            field(f, "step"),
            field(f, "name")
        ));
        match f.get("lastLines").and_then(Value::as_array) {
            Some(last) if last.is_empty() => lines.push("    (its log is empty)".to_owned()),
            Some(last) => {
                lines.push(format!("    last {} line(s) of its log:", last.len()));
                lines.extend(last.iter().map(|l| format!("    | {}", compact(l))));
            }
            None => match opt_field(f, "logError") {
                Some(e) => lines.push(format!("    ({e})")),
                None => lines.push("    (`kici-admin runs logs` reads its log)".to_owned()),
            },
        }
    }
    lines
}

fn job_lines(job: &Value) -> Vec<String> {
    let mut head = format!("  {} [{}]", field(job, "name"), field(job, "status"));
    if let Some(m) = job.get("matrixValues").filter(|v| v.is_object()) {
        head.push_str(&format!(" matrix {}", compact(m)));
    }
    if let Some(agent) = opt_field(job, "agentId") {
        head.push_str(&format!(" on {agent}"));
    }
    if let Some(d) = duration_of(job) {
        head.push_str(&format!(" in {d}"));
    }
    let mut lines = vec![head];
    if let Some(error) = opt_field(job, "error") {
        lines.push(format!("    error: {error}"));
    }
    let queue = job.get("queue").unwrap_or(&Value::Null);
    if let Some(last) = opt_field(queue, "lastError") {
        lines.push(format!(
            "    queue: {} after {} attempt(s): {last}",
            field(queue, "status"),
            field(queue, "attempts")
        ));
    }
    lines.extend(secrets_lines(job));
    let needs: Vec<String> = job
        .get("needs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|n| match field(n, "runOn").as_str() {
            "success" | "" => field(n, "job"),
            on => format!("{} ({on})", field(n, "job")),
        })
        .collect();
    if !needs.is_empty() {
        lines.push(format!("    needs: {}", needs.join(", ")));
    }
    lines.extend(crate::caches::cache_line(job));
    for step in job
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut s = format!(
            "    step {}: {} [{}]",
            field(step, "index"),
            field(step, "name"),
            field(step, "status")
        );
        if let Some(d) = duration_of(step) {
            s.push_str(&format!(" in {d}"));
        }
        if let Some(code) = opt_field(step, "exitCode") {
            s.push_str(&format!(" exit {code}"));
        }
        lines.push(s);
        if let Some(error) = opt_field(step, "error") {
            lines.push(format!("      error: {error}"));
        }
        let accessed = names(step.get("secretsAccessed"));
        if !accessed.is_empty() {
            lines.push(format!("      secrets accessed: {accessed}"));
        }
        lines.push(format!(
            "      log: {}",
            log_line(step.get("log").unwrap_or(&Value::Null))
        ));
    }
    lines
}

/// A list of names as `a, b, c` (empty for none or not a list).
fn names(list: Option<&Value>) -> String {
    let names: Vec<&str> = list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.join(", ")
}

/// A job's environments, the secrets it was given and what was withheld and why (names only,
/// docs/secrets.md, "What runs show shows").
fn secrets_lines(job: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let resolution = job.get("secrets").unwrap_or(&Value::Null);
    let envs: Vec<String> = resolution["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| match opt_field(e, "matched") {
            Some(m) => format!("{} (environment {m})", field(e, "name")),
            None => field(e, "name"),
        })
        .collect();
    if !envs.is_empty() {
        lines.push(format!("    environments: {}", envs.join(", ")));
    }
    let given = names(resolution.get("secrets"));
    if !given.is_empty() {
        lines.push(format!("    secrets: {given}"));
    }
    if let Some(w) = resolution.get("withheld").filter(|w| w.is_object()) {
        let mut from = names(w.get("environments"));
        if w["orgWide"].as_bool() == Some(true) {
            from = if from.is_empty() {
                "org-wide".into()
            } else {
                format!("{from}, org-wide")
            };
        }
        let keys = names(w.get("secrets"));
        let keys = if keys.is_empty() {
            "none stored".into()
        } else {
            keys
        };
        lines.push(format!(
            "    withheld: secrets and variables of {from} (secrets: {keys}): {}",
            field(w, "reason")
        ));
    }
    lines
}

/// A log location from the API: the file or `s3://` URL, or the key when no storage is set up.
fn log_line(log: &Value) -> String {
    match opt_field(log, "location") {
        Some(location) => location,
        None => format!(
            "{} (no storage configured: logs stay in the database, `kici-admin runs logs`)",
            field(log, "key")
        ),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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

    #[test]
    fn details_show_failures_steps_and_logs() {
        let answer = json!({
            "run": {"runId": "r1", "workflowName": "ci", "status": "failed",
                    "failureReason": "job build failed", "repo": "acme/app", "ref": "refs/heads/main",
                    "sha": "0123456789abcdef", "event": "push", "provider": "local",
                    "startedAt": "t0", "completedAt": "t1", "durationMs": 1500,
                    "logs": {"key": "kici-logs/executions/r1/", "storage": "filesystem",
                             "location": "/var/kici/kici-logs/executions/r1/"}},
            "jobs": [{"name": "build", "status": "failed", "agentId": "agent-1", "durationMs": 1200,
                      "matrixValues": {"os": "linux"}, "error": "exit code 2",
                      "needs": [{"job": "lint", "runOn": "always"}],
                      "steps": [{"index": 0, "name": "make", "status": "failed", "durationMs": 1100,
                                 "exitCode": 2, "error": "make: *** [all] Error 2",
                                 "log": {"key": "k", "storage": "none", "location": null}}]}]
        });
        let text = run_details(&answer);
        for want in [
            "Run r1\n",
            "  Failure:        job build failed\n",
            "  Ref:            refs/heads/main @ 0123456789ab\n",
            "  Trigger:        push via local\n",
            "  Duration:       1.5s\n",
            "  Logs:           /var/kici/kici-logs/executions/r1/\n",
            "\nJobs:\n  build [failed] matrix {\"os\":\"linux\"} on agent-1 in 1.2s\n",
            "    error: exit code 2\n    needs: lint (always)\n",
            "    step 0: make [failed] in 1.1s exit 2\n      error: make: *** [all] Error 2\n",
            "      log: k (no storage configured: logs stay in the database, `kici-admin runs logs`)",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("Failed steps:"), "{text}");
    }

    #[test]
    fn details_show_environments_secrets_withheld_and_accessed_names() {
        let answer = json!({
            "run": {"runId": "r1", "status": "success"},
            "jobs": [{"name": "deploy", "status": "success",
                      "secrets": {"environments": [{"name": "prod", "delivered": true},
                                                   {"name": "preview-7", "matched": "preview-*", "delivered": true}],
                                  "secrets": ["DB", "NPM"]},
                      "steps": [{"index": 0, "name": "ship", "status": "success",
                                 "secretsAccessed": ["DB"], "log": {"key": "k"}}]},
                     {"name": "fork", "status": "success",
                      "secrets": {"environments": [{"name": "prod", "delivered": false}], "secrets": [],
                                  "withheld": {"reason": "the job runs code from a pull request of the fork eve/app",
                                               "environments": ["prod"], "orgWide": true, "secrets": ["DB", "NPM"]}},
                      "steps": [{"index": 0, "name": "t", "status": "success", "secretsAccessed": [],
                                 "log": {"key": "k"}}]}]
        });
        let text = run_details(&answer);
        for want in [
            "    environments: prod, preview-7 (environment preview-*)
    secrets: DB, NPM
",
            "      secrets accessed: DB
",
            "    environments: prod
    withheld: secrets and variables of prod, org-wide (secrets: DB, NPM): the job runs code from a pull request of the fork eve/app
",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert_eq!(text.matches("secrets accessed").count(), 1, "{text}");
    }

    #[test]
    fn failed_steps_show_the_exit_code_the_message_and_the_last_lines() {
        let answer = json!({
            "run": {"runId": "r1", "status": "failed"},
            "jobs": [],
            "failedSteps": [
                {"job": "build", "step": 0, "name": "make", "exitCode": 3, "error": "make failed",
                 "lastLines": ["cc -c a.c", "a.c:1: error"]},
                {"job": "test", "step": 2, "name": "unit", "exitCode": 137, "error": "exit code 137",
                 "lastLines": []},
                {"job": "lint", "step": 1, "name": "eslint", "exitCode": null, "error": "a\nb"},
                {"job": "docs", "step": 0, "name": "gen", "logError": "the log could not be read: x"},
            ]
        });
        let text = run_details(&answer);
        for want in [
            "\nFailed steps:\n  build / step 0 (make): exit code 3: make failed\n",
            "    last 2 line(s) of its log:\n    | cc -c a.c\n    | a.c:1: error\n",
            "  test / step 2 (unit): exit code 137\n    (its log is empty)\n",
            "  lint / step 1 (eslint): a; b\n    (`kici-admin runs logs` reads its log)\n",
            "  docs / step 0 (gen): no reason reported\n    (the log could not be read: x)",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
