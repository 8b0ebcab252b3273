//! `kici-admin runs show`'s text: the run, its jobs with their steps, agents, durations, cache
//! use, secrets and logs, and each failed step's exit code, message and last log lines, built
//! from `GET /runs/:runId`'s JSON by pure functions.

use serde_json::Value;

use super::{
    output::{field, opt_field, pad},
    runs::duration_of,
};

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
    use serde_json::json;

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
