//! Read routes for runs (docs/operations.md, "Admin API and tokens" and "Admin CLI"):
//! `GET /runs?status=&limit=` (newest first, with job counts per status) and `GET /runs/:runId`
//! (the run, its jobs with their steps, needs and queue rows, where each step's log is stored,
//! and `failedSteps`: each failed step with its exit code, message and the last lines of its log,
//! see [`failed_step`]), and `check` on the run and each job: the conclusion and summary its
//! GitHub check run shows (`crate::checks::render`), for every source. Rows are rendered to JSON
//! by PostgreSQL, as for the other admin lists.
//! Reading needs `context.read`, which auditors hold (our role table has no separate `run.read`);
//! a routing-key scoped token sees only its key's runs.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{not_found, ApiError, ApiResult};
use crate::{
    agent::log_writer::{count_lines, last_rows},
    app::RunCtx,
    db::pool::Pool,
    http::{Request, Response},
    rbac::{Caller, Permission},
    runs::store::views,
    storage::{keys, Area, Backend, Storage},
};

/// How many of a failed step's last log lines `failedSteps` carries.
pub const LAST_LINES: usize = 20;

/// Run statuses (migrations/0002_execution.sql), the values `status=` may take.
pub const RUN_STATUSES: [&str; 7] = [
    "pending",
    "running",
    "success",
    "failed",
    "cancelled",
    "cancelling",
    "held",
];
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

/// `status` and `limit` of a list request; every problem is reported at once.
fn list_query(pairs: &[(String, String)]) -> Result<(Option<String>, i64), ApiError> {
    let mut problems = Vec::new();
    let mut status = None;
    let mut limit = DEFAULT_LIMIT;
    for (k, v) in pairs {
        match k.as_str() {
            "status" if v.is_empty() => {}
            "status" if RUN_STATUSES.contains(&v.as_str()) => status = Some(v.clone()),
            "status" => problems.push((
                "status".to_owned(),
                format!(
                    "{v:?} is not a run status (one of {})",
                    RUN_STATUSES.join(", ")
                ),
            )),
            "limit" => match v.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => problems.push((
                    "limit".to_owned(),
                    format!("{v:?} is not a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok((status, limit))
    } else {
        Err(ApiError::Validation(problems))
    }
}

pub fn list(app: &RunCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let (status, limit) = list_query(&req.query_pairs())?;
    let scope = caller.routing_key.clone();
    let runs = app
        .pool
        .with_retry(|c| views::list_runs(c, status.as_deref(), scope.as_deref(), limit))?;
    Ok(Response::json(200, &json!({ "runs": runs })))
}

pub fn show(app: &RunCtx, caller: &Caller, run_id: &str) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let loaded = app.pool.with_retry(|c| views::show_run(c, run_id))?;
    let (mut run, mut jobs, steps) = loaded.ok_or_else(|| not_found("Run"))?;
    caller.require_key(run["routingKey"].as_str().unwrap_or(""))?;
    // The canonical id (the request may differ in case).
    let run_id = run["runId"].as_str().unwrap_or(run_id).to_owned();
    let storage = app.storage.as_deref();
    let mut failed = Vec::new();
    let mut by_job: HashMap<String, Vec<Value>> = HashMap::new();
    for (job_id, step) in steps {
        by_job.entry(job_id).or_default().push(step);
    }
    for job in &mut jobs {
        let name = job["name"].as_str().unwrap_or_default().to_owned();
        let mut steps = by_job
            .remove(job["jobId"].as_str().unwrap_or_default())
            .unwrap_or_default();
        for step in &mut steps {
            let key = match step["logPath"].as_str() {
                Some(p) if !p.is_empty() => p.to_owned(),
                _ => keys::step_log(&run_id, &name, step["index"].as_i64().unwrap_or(0)),
            };
            step["log"] = log_location(&key, storage);
            if step["status"] == "failed" {
                let index = step["index"].as_i64().unwrap_or(0);
                let job_id = job["jobId"].as_str().unwrap_or_default();
                let tail = step_tail(app.pool, storage, job_id, index, &key);
                failed.push(failed_step(&name, step, tail));
            }
        }
        job["setupLog"] = log_location(&keys::step_log(&run_id, &name, -1), storage);
        job["steps"] = Value::Array(steps);
    }
    // The conclusion and summary a GitHub check run shows, for every source.
    match app
        .pool
        .with_retry(|c| crate::checks::store::load(c, &run_id, storage, false))
    {
        Ok(Some(loaded)) => crate::checks::render::annotate(&loaded.facts, &mut run, &mut jobs),
        Ok(None) => {}
        Err(e) => log::warn!("run {run_id}: rendering its check summary failed: {e}"),
    }
    let prefix = format!("kici-logs/executions/{run_id}/");
    run["logs"] = log_location(&prefix, storage);
    Ok(Response::json(
        200,
        &json!({ "run": run, "jobs": jobs, "failedSteps": failed }),
    ))
}

/// One entry of `failedSteps`: `{job, step, name, exitCode, error, lastLines}`, `lastLines` being
/// the last [`LAST_LINES`] lines of the step's log (`tail`, see [`step_tail`]); when the log
/// cannot be read, `logError` says why instead.
fn failed_step(job: &str, step: &Value, tail: Result<Vec<u8>, String>) -> Value {
    let mut entry = json!({
        "job": job,
        "step": step["index"],
        "name": step["name"],
        "exitCode": step["exitCode"],
        "error": step["error"],
    });
    match tail {
        Ok(body) => entry["lastLines"] = json!(last_lines(&body, LAST_LINES)),
        Err(e) => entry["logError"] = json!(format!("the log could not be read: {e}")),
    }
    entry
}

/// The end of a step's log as stored JSON lines: its stored object (with storage configured)
/// followed by its last [`LAST_LINES`] lines still in the database (all of them without
/// storage, until compaction or retention removes them).
fn step_tail(
    pool: &Pool,
    storage: Option<&Storage>,
    job_id: &str,
    step: i64,
    key: &str,
) -> Result<Vec<u8>, String> {
    let mut body = match storage {
        Some(st) => st.get(Area::Logs, key).map_err(|e| {
            log::warn!("reading step log {key} failed: {e}");
            e.to_string()
        })?,
        None => None,
    }
    .unwrap_or_default();
    let stored = count_lines(&body);
    let rows = pool
        .with_retry(|c| last_rows(c, job_id, step, LAST_LINES as i64))
        .map_err(|e| e.to_string())?;
    for (_, line) in rows.iter().filter(|(seq, _)| *seq >= stored) {
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
    }
    Ok(body)
}

/// The last `n` lines of a stored step log (JSON lines with the text in `msg`, see
/// `crate::agent::logs`); a line that is not such a record is shown as it is.
pub fn last_lines(body: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| super::logs::parse_line(l.as_bytes()).map_or_else(|| (*l).to_owned(), |p| p.line))
        .collect()
}

/// Where a log-bucket key lives: the key, and the file or `s3://` URL it maps to with the
/// configured backend (`location` is null without storage: lines then stay in the database).
fn log_location(key: &str, storage: Option<&Storage>) -> Value {
    let Some(storage) = storage else {
        return json!({ "key": key, "storage": "none", "location": null });
    };
    let full = storage.full_key(key).unwrap_or_else(|_| key.to_owned());
    match storage.backend() {
        Backend::Fs(f) => json!({
            "key": key,
            "storage": "filesystem",
            "location": f.root().join(&full).display().to_string(),
        }),
        Backend::S3(_) => json!({
            "key": key,
            "storage": "s3",
            "location": format!("s3://{}/{full}", storage.bucket(crate::storage::Area::Logs)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_query_defaults_and_bounds() {
        let (s, l) = list_query(&[]).unwrap();
        assert_eq!((s, l), (None, 50));
        let (s, l) = list_query(&pairs(&[("status", "failed"), ("limit", "1000")])).unwrap();
        assert_eq!((s.as_deref(), l), (Some("failed"), 1000));
        assert_eq!(list_query(&pairs(&[("status", "")])).unwrap().0, None);
    }

    #[test]
    fn list_query_reports_every_problem_with_the_value() {
        let Err(ApiError::Validation(details)) =
            list_query(&pairs(&[("status", "done"), ("limit", "0")]))
        else {
            panic!("accepted")
        };
        assert_eq!(details.len(), 2);
        assert_eq!(details[0].0, "status");
        assert!(details[0]
            .1
            .starts_with("\"done\" is not a run status (one of pending, running"));
        assert_eq!(
            details[1],
            (
                "limit".into(),
                "\"0\" is not a whole number from 1 to 1000".into()
            )
        );
    }

    #[test]
    fn last_lines_of_a_stored_log() {
        let body = crate::agent::logs::encode(
            &(1..=25).map(|i| format!("line {i}")).collect::<Vec<_>>(),
            0,
        );
        let last = last_lines(&body, LAST_LINES);
        assert_eq!(last.len(), 20);
        assert_eq!((last[0].as_str(), last[19].as_str()), ("line 6", "line 25"));
        assert_eq!(
            last_lines(b"plain\n{\"msg\": \"m\"}\n\n", 20),
            ["plain", "m"]
        );
        assert!(last_lines(b"", 20).is_empty());
    }

    #[test]
    fn a_failed_step_shows_its_last_lines_or_why_they_are_missing() {
        let step = json!({"index": 1, "name": "make", "status": "failed", "exitCode": 3,
                          "error": "make failed"});
        assert_eq!(
            failed_step("build", &step, Ok(b"{\"msg\": \"boom\"}\n".to_vec())),
            json!({"job": "build", "step": 1, "name": "make", "exitCode": 3,
                   "error": "make failed", "lastLines": ["boom"]})
        );
        assert_eq!(
            failed_step("build", &step, Err("down".into()))["logError"],
            json!("the log could not be read: down")
        );
    }

    #[test]
    fn log_locations_without_storage_name_the_key() {
        let v = log_location("kici-logs/executions/r/job-j/step-0.log", None);
        assert_eq!(
            v,
            json!({"key": "kici-logs/executions/r/job-j/step-0.log", "storage": "none", "location": null})
        );
    }
}
