//! What each check run should say (docs/check-runs.md, "What users see on GitHub"), derived from
//! a run's rows alone: its status, its jobs' statuses, their steps and the last log lines of a
//! failed step. Pure: the same facts always give the same [`CheckState`]s, so the reporter can
//! compare a state with what GitHub was last told by its [`CheckState::hash`], and `runs show`
//! renders the very same conclusion and summary for every source.

use serde_json::{json, Value};

/// GitHub's cap on `output.summary` and `output.text` (characters).
pub const MAX_OUTPUT_CHARS: usize = 65_535;
/// GitHub's cap on `output.title` is not documented as tightly; we keep titles short.
pub const MAX_TITLE_CHARS: usize = 255;
/// A check run's `name` (GitHub allows more; names past this are cut).
pub const MAX_NAME_CHARS: usize = 255;
/// How many of a failed step's last log lines a summary quotes, and how long each may be.
pub const LAST_LINES: usize = 20;
pub const MAX_LINE_CHARS: usize = 500;
/// The key of the whole run's check run (a job's key is its id).
pub const RUN_KEY: &str = "run";

/// A step as stored (`execution_steps`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepFacts {
    pub index: i32,
    pub name: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

/// A job as stored, with its steps and the last lines of the log of its first failed step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobFacts {
    pub job_id: String,
    pub name: String,
    pub status: String,
    pub error: Option<String>,
    /// RFC 3339, when known.
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub steps: Vec<StepFacts>,
    pub failed_log: Vec<String>,
}

/// A run as stored, with its jobs in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunFacts {
    pub run_id: String,
    pub workflow: String,
    pub status: String,
    pub failure_reason: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub jobs: Vec<JobFacts>,
}

/// What one check run should say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// [`RUN_KEY`] or the job id.
    pub key: String,
    /// `kici/<workflow>` or `kici/<workflow>/job/<job>`.
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: &'static str,
    /// Set when `completed`: `success`, `failure`, `cancelled`, `skipped` or `timed_out`.
    pub conclusion: Option<&'static str>,
    pub title: String,
    pub summary: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

/// GitHub's check run status and conclusion for a job status (`execution_jobs.status`).
pub fn job_outcome(status: &str) -> (&'static str, Option<&'static str>) {
    match status {
        "success" => ("completed", Some("success")),
        "failed" | "drift_dropped" => ("completed", Some("failure")),
        "cancelled" => ("completed", Some("cancelled")),
        "skipped" => ("completed", Some("skipped")),
        "timed_out_stale" => ("completed", Some("timed_out")),
        "running" | "recovering" | "cancelling" => ("in_progress", None),
        _ => ("queued", None),
    }
}

/// The whole run's status and conclusion: `success` only when the run succeeded and no job
/// failed, was cancelled or timed out; a cancelled run, or one whose jobs only timed out, is
/// `cancelled`; any other ended run is `failure`.
pub fn run_outcome(run: &RunFacts) -> (&'static str, Option<&'static str>) {
    let ended = matches!(run.status.as_str(), "success" | "failed" | "cancelled");
    if !ended {
        let started = run.status != "pending"
            || run
                .jobs
                .iter()
                .any(|j| job_outcome(&j.status).0 != "queued");
        return (if started { "in_progress" } else { "queued" }, None);
    }
    let conclusions: Vec<Option<&str>> =
        run.jobs.iter().map(|j| job_outcome(&j.status).1).collect();
    let any = |c: &str| conclusions.contains(&Some(c));
    let only_timed_out = run.status == "failed" && any("timed_out") && !any("failure");
    let conclusion = if run.status == "cancelled" || only_timed_out {
        "cancelled"
    } else if run.status == "success" && !any("failure") && !any("cancelled") && !any("timed_out") {
        "success"
    } else {
        "failure"
    };
    ("completed", Some(conclusion))
}

fn icon(conclusion_or_status: &str) -> &'static str {
    match conclusion_or_status {
        "success" => "✅",
        "failure" | "failed" => "❌",
        "cancelled" => "⛔",
        "skipped" => "⏭️",
        "timed_out" => "⌛",
        "in_progress" | "running" => "🔄",
        _ => "⏳",
    }
}

/// Every check run of `run`: the whole run's first, then one per job in order.
pub fn desired(run: &RunFacts) -> Vec<CheckState> {
    let mut out = vec![run_state(run)];
    out.extend(run.jobs.iter().map(|j| job_state(&run.workflow, j)));
    out
}

pub fn run_check_name(workflow: &str) -> String {
    cut(&format!("kici/{workflow}"), MAX_NAME_CHARS)
}

pub fn job_check_name(workflow: &str, job: &str) -> String {
    cut(&format!("kici/{workflow}/job/{job}"), MAX_NAME_CHARS)
}

fn run_state(run: &RunFacts) -> CheckState {
    let (status, conclusion) = run_outcome(run);
    let mut summary = String::new();
    let headline = match conclusion {
        Some("success") => "All jobs passed.".to_owned(),
        Some(c) => {
            let failed: Vec<&str> = run
                .jobs
                .iter()
                .filter(|j| matches!(job_outcome(&j.status).1, Some("failure" | "timed_out")))
                .map(|j| j.name.as_str())
                .collect();
            if failed.is_empty() {
                format!("The run ended: {c}.")
            } else {
                format!("Failed: {}.", failed.join(", "))
            }
        }
        None if status == "queued" => "Waiting for an agent.".to_owned(),
        None => "Running.".to_owned(),
    };
    summary.push_str(&headline);
    if let Some(reason) = run.failure_reason.as_deref().filter(|r| !r.is_empty()) {
        summary.push_str(&format!("\n\n{}", one_line(reason)));
    }
    if !run.jobs.is_empty() {
        summary.push_str("\n\n| Job | Result |\n| --- | --- |\n");
        for j in &run.jobs {
            let (s, c) = job_outcome(&j.status);
            let shown = c.unwrap_or(s);
            let mut line = format!("| {} | {} {shown}", table_cell(&j.name), icon(shown));
            if let Some(e) = j.error.as_deref().filter(|_| c == Some("failure")) {
                line.push_str(&format!(": {}", table_cell(&one_line(e))));
            }
            line.push_str(" |\n");
            summary.push_str(&line);
        }
    }
    CheckState {
        key: RUN_KEY.to_owned(),
        name: run_check_name(&run.workflow),
        status,
        conclusion,
        title: cut(&format!("KiCI: {}", run.workflow), MAX_TITLE_CHARS),
        summary: cut(summary.trim_end(), MAX_OUTPUT_CHARS),
        started_at: run.started_at.clone(),
        completed_at: conclusion.and(run.completed_at.clone()),
    }
}

fn job_state(workflow: &str, job: &JobFacts) -> CheckState {
    let (status, conclusion) = job_outcome(&job.status);
    let mut summary = match conclusion {
        Some("success") => "The job passed.".to_owned(),
        Some("skipped") => match job.error.as_deref() {
            Some(e) => format!("Skipped: {}.", one_line(e).trim_end_matches('.')),
            None => "Skipped.".to_owned(),
        },
        Some("timed_out") => {
            "The job's agent stopped reporting (no heartbeat): timed out.".to_owned()
        }
        Some("cancelled") => "The job was cancelled.".to_owned(),
        Some(_) => failure_headline(job),
        None if status == "queued" => "Waiting for an agent.".to_owned(),
        None => "Running.".to_owned(),
    };
    if !job.steps.is_empty() {
        summary.push_str("\n\n");
        for s in &job.steps {
            let mut line = format!("{} {}. {}", icon(&s.status), s.index + 1, inline(&s.name));
            if s.status == "failed" {
                if let Some(c) = s.exit_code {
                    line.push_str(&format!(" (exit code {c})"));
                }
            }
            summary.push_str(&format!("- {line}\n"));
        }
    }
    if conclusion == Some("failure") && !job.failed_log.is_empty() {
        summary.push_str(&log_block(&job.failed_log));
    }
    CheckState {
        key: job.job_id.clone(),
        name: job_check_name(workflow, &job.name),
        status,
        conclusion,
        title: cut(&format!("KiCI: {workflow}/{}", job.name), MAX_TITLE_CHARS),
        summary: cut(summary.trim_end(), MAX_OUTPUT_CHARS),
        started_at: job.started_at.clone(),
        completed_at: conclusion.and(job.completed_at.clone()),
    }
}

/// `Step "make" failed with exit code 3: make failed`, from the first failed step, else the
/// job's own error.
fn failure_headline(job: &JobFacts) -> String {
    let Some(step) = job.steps.iter().find(|s| s.status == "failed") else {
        return match job.error.as_deref() {
            Some(e) => format!("The job failed: {}", one_line(e)),
            None => "The job failed.".to_owned(),
        };
    };
    let mut out = format!("Step {} failed", inline(&step.name));
    if let Some(c) = step.exit_code {
        out.push_str(&format!(" with exit code {c}"));
    }
    match step
        .error
        .as_deref()
        .map(one_line)
        .filter(|e| !e.is_empty())
    {
        Some(e) => out.push_str(&format!(": {e}")),
        None => out.push('.'),
    }
    out
}

/// The last lines as a fenced block whose fence no line can close.
fn log_block(lines: &[String]) -> String {
    let start = lines.len().saturating_sub(LAST_LINES);
    let kept: Vec<String> = lines[start..]
        .iter()
        .map(|l| cut(l, MAX_LINE_CHARS))
        .collect();
    let longest_ticks = kept
        .iter()
        .map(|l| l.split(|c| c != '`').map(str::len).max().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest_ticks.max(2) + 1);
    format!(
        "\n\nLast {} line(s) of its log:\n\n{fence}\n{}\n{fence}",
        kept.len(),
        kept.join("\n")
    )
}

/// `name` in backticks that cannot break out of them.
fn inline(name: &str) -> String {
    format!("`{}`", one_line(name).replace('`', "'"))
}

fn table_cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn one_line(text: &str) -> String {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    cut(first, MAX_LINE_CHARS)
}

/// `text` cut to at most `max` characters (with `…` when cut).
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max => format!("{}…", &text[..at]),
        _ => text.to_owned(),
    }
}

impl CheckState {
    /// The create/update request body (`head_sha` is added for a create). `external_id` is our
    /// run id; `details_url` only when a template is configured.
    pub fn body(&self, run_id: &str, details_url: Option<&str>) -> Value {
        let mut body = json!({
            "name": self.name,
            "status": self.status,
            "external_id": run_id,
            "output": {"title": self.title, "summary": self.summary},
        });
        if let Some(url) = details_url {
            body["details_url"] = json!(url);
        }
        if let Some(at) = &self.started_at {
            if self.status != "queued" {
                body["started_at"] = json!(at);
            }
        }
        if let Some(c) = self.conclusion {
            body["conclusion"] = json!(c);
            if let Some(at) = &self.completed_at {
                body["completed_at"] = json!(at);
            }
        }
        body
    }

    /// `runs show`'s `check` object: the same status, conclusion and summary GitHub is sent.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "status": self.status,
            "conclusion": self.conclusion,
            "title": self.title,
            "summary": self.summary,
        })
    }

    /// Identifies what this state says (name, status, conclusion, output): equal hashes need no
    /// new report.
    pub fn hash(&self) -> String {
        let text = format!(
            "{}\n{}\n{}\n{}\n{}",
            self.name,
            self.status,
            self.conclusion.unwrap_or(""),
            self.title,
            self.summary
        );
        crate::crypto::sha256_hex(text.as_bytes())
    }
}

/// Adds `check` (see [`CheckState::to_json`]) to `runs show`'s run and to each of its jobs
/// (matched by `jobId`).
pub fn annotate(facts: &RunFacts, run: &mut Value, jobs: &mut [Value]) {
    let states = desired(facts);
    run["check"] = states[0].to_json();
    for job in jobs {
        let id = job["jobId"].as_str().unwrap_or_default().to_owned();
        if let Some(s) = states.iter().find(|s| s.key == id) {
            job["check"] = s.to_json();
        }
    }
}

/// `KICI_RUN_URL_TEMPLATE` with `{runId}` replaced.
pub fn details_url(template: Option<&str>, run_id: &str) -> Option<String> {
    template.map(|t| t.replace("{runId}", run_id))
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
