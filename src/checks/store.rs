//! The reporter's database side (migrations/0008_check_reports.sql): a run's facts read from
//! `execution_runs`/`execution_jobs`/`execution_steps` (and the last log lines of a failed step,
//! from `execution_log_lines` or, once compacted, from storage), what GitHub was last told per
//! check run (`check_reports`), and which runs are done (`check_report_settled`).

use std::collections::HashMap;

use postgres::Client;
use serde_json::Value;

use super::render::{JobFacts, RunFacts, StepFacts, LAST_LINES};
use crate::{
    db::DbError,
    runs::store::{col, is_uuid},
    storage::{keys, Area, Storage},
};

/// Where a run's check runs go: its source and commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: String,
    pub routing_key: String,
    /// `owner/name`.
    pub repo: String,
    pub sha: String,
    /// From the jobs' credential references (`pipeline::credentials`); `None` for a run whose
    /// jobs carry none.
    pub installation_id: Option<u64>,
}

/// What GitHub was last told about one check run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub check_run_id: Option<i64>,
    pub status: Option<String>,
    pub hash: Option<String>,
}

/// Everything one look at a run needs.
pub struct Loaded {
    pub target: Target,
    pub facts: RunFacts,
    pub sent: HashMap<String, Sent>,
}

const ISO: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS"Z"'"#;

fn ts(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', {ISO})")
}

/// The run's target, facts and sent states; `None` for an unknown run.
/// A run's facts and what was sent for it. With `github_only`, a run of another provider comes
/// back with its target and status alone (the reporter needs nothing more to pass it by).
pub fn load(
    client: &mut Client,
    run_id: &str,
    storage: Option<&Storage>,
    github_only: bool,
) -> Result<Option<Loaded>, DbError> {
    const CTX: &str = "reading a run for its check runs";
    if !is_uuid(run_id) {
        return Ok(None);
    }
    let run_sql = format!(
        "SELECT coalesce(r.provider, ''), coalesce(r.routing_key, ''), coalesce(r.repo_identifier, ''),
                coalesce(r.sha, ''), r.workflow_name, r.status, r.failure_reason, {}, {},
                (SELECT (q.dispatch->'credentials'->>'installationId')::bigint FROM dispatch_queue q
                  WHERE q.run_id = r.run_id AND q.dispatch->'credentials' ? 'installationId' LIMIT 1)
           FROM execution_runs r WHERE r.run_id = $1::text::uuid",
        ts("r.started_at"),
        ts("r.completed_at")
    );
    let Some(row) = client
        .query_opt(&run_sql, &[&run_id])
        .map_err(DbError::query(CTX))?
    else {
        return Ok(None);
    };
    let installation: Option<i64> = col(&row, 9, CTX)?;
    let target = Target {
        provider: col(&row, 0, CTX)?,
        routing_key: col(&row, 1, CTX)?,
        repo: col(&row, 2, CTX)?,
        sha: col(&row, 3, CTX)?,
        installation_id: installation.and_then(|i| u64::try_from(i).ok()),
    };
    let mut facts = RunFacts {
        run_id: run_id.to_owned(),
        workflow: col(&row, 4, CTX)?,
        status: col(&row, 5, CTX)?,
        failure_reason: col(&row, 6, CTX)?,
        started_at: col(&row, 7, CTX)?,
        completed_at: col(&row, 8, CTX)?,
        jobs: Vec::new(),
    };
    if github_only && target.provider != "github" {
        return Ok(Some(Loaded {
            target,
            facts,
            sent: HashMap::new(),
        }));
    }
    let jobs_sql = format!(
        "SELECT job_id::text, job_name, status, error_message, {}, {}
           FROM execution_jobs WHERE run_id = $1::text::uuid ORDER BY created_at, job_name",
        ts("started_at"),
        ts("completed_at")
    );
    let mut index = HashMap::new();
    for row in client
        .query(&jobs_sql, &[&run_id])
        .map_err(DbError::query(CTX))?
    {
        let job = JobFacts {
            job_id: col(&row, 0, CTX)?,
            name: col(&row, 1, CTX)?,
            status: col(&row, 2, CTX)?,
            error: col(&row, 3, CTX)?,
            started_at: col(&row, 4, CTX)?,
            completed_at: col(&row, 5, CTX)?,
            ..JobFacts::default()
        };
        index.insert(job.job_id.clone(), facts.jobs.len());
        facts.jobs.push(job);
    }
    let mut log_paths: HashMap<(String, i32), Option<String>> = HashMap::new();
    for row in client
        .query(
            "SELECT job_id::text, step_index, step_name, status, exit_code, error_message, log_path
               FROM execution_steps WHERE run_id = $1::text::uuid ORDER BY job_id, step_index",
            &[&run_id],
        )
        .map_err(DbError::query(CTX))?
    {
        let job_id: String = col(&row, 0, CTX)?;
        let step = StepFacts {
            index: col(&row, 1, CTX)?,
            name: col(&row, 2, CTX)?,
            status: col(&row, 3, CTX)?,
            exit_code: col(&row, 4, CTX)?,
            error: col(&row, 5, CTX)?,
        };
        log_paths.insert((job_id.clone(), step.index), col(&row, 6, CTX)?);
        if let Some(&i) = index.get(&job_id) {
            facts.jobs[i].steps.push(step);
        }
    }
    for job in facts.jobs.iter_mut().filter(|j| j.status == "failed") {
        let Some(step) = job.steps.iter().find(|s| s.status == "failed") else {
            continue;
        };
        let path = log_paths
            .get(&(job.job_id.clone(), step.index))
            .cloned()
            .flatten();
        job.failed_log = last_lines(client, run_id, job, step.index, path, storage)?;
    }
    let mut sent = HashMap::new();
    for row in client
        .query(
            "SELECT check_key, check_run_id, sent_status, sent_hash FROM check_reports
              WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query(CTX))?
    {
        sent.insert(
            col::<String>(&row, 0, CTX)?,
            Sent {
                check_run_id: col(&row, 1, CTX)?,
                status: col(&row, 2, CTX)?,
                hash: col(&row, 3, CTX)?,
            },
        );
    }
    Ok(Some(Loaded {
        target,
        facts,
        sent,
    }))
}

/// The last lines of a step's log: from the database while its lines are there, else from the
/// compacted object in storage (none without storage, or when it cannot be read).
fn last_lines(
    client: &mut Client,
    run_id: &str,
    job: &JobFacts,
    step: i32,
    log_path: Option<String>,
    storage: Option<&Storage>,
) -> Result<Vec<String>, DbError> {
    const CTX: &str = "reading a failed step's last log lines";
    let rows = client
        .query(
            "SELECT body FROM execution_log_lines WHERE job_id = $1::text::uuid AND step_index = $2
              ORDER BY seq DESC LIMIT $3",
            &[&job.job_id, &step, &(LAST_LINES as i64)],
        )
        .map_err(DbError::query(CTX))?;
    if !rows.is_empty() {
        let mut lines = rows
            .iter()
            .map(|r| col::<String>(r, 0, CTX).map(|b| message_of(&b)))
            .collect::<Result<Vec<_>, _>>()?;
        lines.reverse();
        return Ok(lines);
    }
    let Some(storage) = storage else {
        return Ok(Vec::new());
    };
    let key = log_path
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| keys::step_log(run_id, &job.name, i64::from(step)));
    Ok(match storage.get(Area::Logs, &key) {
        Ok(body) => {
            let body = body.unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            let start = lines.len().saturating_sub(LAST_LINES);
            lines[start..].iter().map(|l| message_of(l)).collect()
        }
        Err(e) => {
            log::debug!("check summary: step log {key} unreadable: {e}");
            Vec::new()
        }
    })
}

/// A stored log line's text (`msg` of its JSON record, else the line itself).
fn message_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("msg")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

/// Records what GitHub accepted for one check run.
pub fn record_sent(
    client: &mut Client,
    run_id: &str,
    key: &str,
    name: &str,
    check_run_id: Option<i64>,
    status: &str,
    hash: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO check_reports (run_id, check_key, name, check_run_id, sent_status, sent_hash, sent_at, last_error)
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6, now(), NULL)
             ON CONFLICT (run_id, check_key) DO UPDATE
                SET name = $3, check_run_id = coalesce($4, check_reports.check_run_id), sent_status = $5,
                    sent_hash = $6, sent_at = now(), last_error = NULL, updated_at = now()",
            &[&run_id, &key, &name, &check_run_id, &status, &hash],
        )
        .map_err(DbError::query("recording a check report"))?;
    Ok(())
}

/// Records why a report was refused for good (it is not retried) as if it had been sent.
pub fn record_refused(
    client: &mut Client,
    run_id: &str,
    key: &str,
    name: &str,
    status: &str,
    hash: &str,
    error: &str,
) -> Result<(), DbError> {
    record_sent(client, run_id, key, name, None, status, hash)?;
    client
        .execute(
            "UPDATE check_reports SET last_error = $3 WHERE run_id = $1::text::uuid AND check_key = $2",
            &[&run_id, &key, &error],
        )
        .map_err(DbError::query("recording a refused check report"))?;
    Ok(())
}

/// The check run is gone on GitHub: the next report creates it again.
pub fn forget_check_run(client: &mut Client, run_id: &str, key: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE check_reports SET check_run_id = NULL, sent_status = NULL, sent_hash = NULL, updated_at = now()
              WHERE run_id = $1::text::uuid AND check_key = $2",
            &[&run_id, &key],
        )
        .map_err(DbError::query("forgetting a check run"))?;
    Ok(())
}

/// Every report of the run is delivered: sweeps skip it from now on.
pub fn settle(client: &mut Client, run_id: &str) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO check_report_settled (run_id) VALUES ($1::text::uuid) ON CONFLICT DO NOTHING",
            &[&run_id],
        )
        .map_err(DbError::query("settling a run's check reports"))?;
    Ok(())
}

/// Where a sweep goes on: the last run's start time (UTC, microseconds) and id.
pub type SweepCursor = (String, String);

/// GitHub runs whose reports may be incomplete: started since reporting was installed (and in
/// the last week), not settled; at most `limit`, in (start time, id) order after `after` (the last
/// one of the previous page), so a sweep walks all of them page by page. Each comes with its
/// cursor for the next page.
pub fn unsettled(
    client: &mut Client,
    after: Option<&SweepCursor>,
    limit: i64,
) -> Result<Vec<(String, SweepCursor)>, DbError> {
    const CTX: &str = "looking for undelivered check reports";
    let (at, id) = after.cloned().unwrap_or_else(|| {
        (
            "-infinity".to_owned(),
            "00000000-0000-0000-0000-000000000000".to_owned(),
        )
    });
    client
        .query(
            "SELECT r.run_id::text, to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
               FROM execution_runs r
              WHERE r.provider = 'github'
                AND r.started_at >= (SELECT since FROM check_reporting_since)
                AND r.started_at > now() - interval '7 days'
                AND (r.started_at, r.run_id) > ($1::text::timestamp AT TIME ZONE 'UTC', $2::text::uuid)
                AND NOT EXISTS (SELECT 1 FROM check_report_settled s WHERE s.run_id = r.run_id)
              ORDER BY r.started_at, r.run_id LIMIT $3",
            &[&at, &id, &limit],
        )
        .map_err(DbError::query(CTX))?
        .iter()
        .map(|r| {
            let id: String = col(r, 0, CTX)?;
            let at: String = col(r, 1, CTX)?;
            Ok((id.clone(), (at, id)))
        })
        .collect()
}
