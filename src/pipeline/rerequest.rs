//! GitHub's "Re-run" buttons (docs/operations.md, "Reruns and replays"): a `check_run` or
//! `check_suite` delivery with action `rerequested`, recorded like any GitHub delivery, starts our
//! runs again at the same commit. A check run is ours when its `external_id` is the id of a run
//! of this source (the check reporter writes it), or, failing that, when its name is
//! `kici/<workflow>` or `kici/<workflow>/job/<job>` and this source ran that workflow at the check
//! run's `head_sha`; a check suite re-runs every workflow this source ran at its `head_sha`. Each
//! run is re-run whole, at most once from GitHub (key `github-rerequest:<run id>`, so a "Re-run
//! failed checks" that re-requests several check runs of one run starts one rerun). Anything
//! else is recorded with the reason it was ignored.

use serde_json::{json, Value};

use super::{
    process::{Deps, PipelineError, Work},
    records,
    rerun::{rerun_of, Ask, RerunError},
    rerun_records::{self, RunRef},
};
use crate::runs::store::is_uuid;

/// Whether a delivery is a GitHub re-run request.
pub fn is_rerequest(work: &Work, payload: &Value) -> bool {
    work.provider == "github"
        && matches!(work.event.as_deref(), Some("check_run" | "check_suite"))
        && payload["action"] == "rerequested"
}

/// What GitHub asks to re-run (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    CheckRun {
        id: Option<u64>,
        external_id: Option<String>,
        name: String,
        head_sha: String,
    },
    CheckSuite {
        head_sha: String,
    },
}

/// The target of a `check_run`/`check_suite` payload; `None` when it lacks the head commit.
pub fn target(event: &str, payload: &Value) -> Option<Target> {
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match event {
        "check_run" => {
            let run = &payload["check_run"];
            Some(Target::CheckRun {
                id: run["id"].as_u64(),
                external_id: text(&run["external_id"]),
                name: text(&run["name"]).unwrap_or_default(),
                head_sha: text(&run["head_sha"])?,
            })
        }
        "check_suite" => Some(Target::CheckSuite {
            head_sha: text(&payload["check_suite"]["head_sha"])?,
        }),
        _ => None,
    }
}

/// The workflows a check run's name may stand for, most likely first: `kici/<workflow>`, or
/// `kici/<workflow>/job/<job>` (a workflow name may itself hold `/job/`, so every split is
/// tried). Empty for names that are not ours.
pub fn workflows_of_name(name: &str) -> Vec<String> {
    let Some(rest) = name.strip_prefix("kici/").filter(|r| !r.is_empty()) else {
        return Vec::new();
    };
    let mut out = vec![rest.to_owned()];
    let mut from = 0;
    while let Some(i) = rest[from..].find("/job/") {
        let at = from + i;
        if at > 0 {
            out.push(rest[..at].to_owned());
        }
        from = at + 1;
    }
    out
}

/// Re-runs what a `rerequested` delivery names, and records on the delivery what was done or
/// why it was ignored. Returns the runs started.
pub fn rerequested(
    deps: &Deps,
    work: &Work,
    payload: &Value,
) -> Result<Vec<String>, PipelineError> {
    let event = work.event.as_deref().unwrap_or_default();
    let sender = payload["sender"]["login"].as_str().unwrap_or("(unknown)");
    let repo = payload["repository"]["full_name"].as_str().unwrap_or("");
    let found = match target(event, payload) {
        None => Err(format!("{event} rerequested without a head_sha: ignored")),
        Some(t) => ours(deps, work, repo, &t)?,
    };
    let mut decisions = Vec::new();
    let mut runs = Vec::new();
    match found {
        Err(why) => decisions.push(json!({ "summary": why })),
        Ok(previous) => {
            for run in previous {
                let ask = Ask {
                    failed_only: false,
                    triggered_by: format!("{event}.rerequested by {sender}"),
                    key: format!("github-rerequest:{}", run.run_id),
                };
                let summary = match rerun_of(deps, &run, &ask) {
                    Ok(r) if r.existing => format!(
                        "workflow {}: run {} was already re-run from GitHub as run {}",
                        run.workflow, run.run_id, r.run_id
                    ),
                    Ok(r) => {
                        runs.push(r.run_id.clone());
                        format!(
                            "workflow {}: run {} re-run as run {}",
                            run.workflow, run.run_id, r.run_id
                        )
                    }
                    Err(RerunError::Db(e)) => return Err(PipelineError::Db(e)),
                    Err(e) => format!("workflow {}: not re-run: {e}", run.workflow),
                };
                decisions.push(json!({ "workflowName": run.workflow, "summary": summary }));
            }
        }
    }
    log::info!(
        "delivery {}: {event} rerequested by {sender}: {} run(s) started",
        work.delivery_id,
        runs.len()
    );
    deps.pool.with_retry(|c| {
        records::mark_delivery(
            c,
            &work.event_log_id,
            "processed",
            runs.len() as i32,
            runs.first().map(String::as_str),
            &Value::Array(decisions.clone()),
            None,
        )
    })?;
    Ok(runs)
}

/// Our runs a target names, or why it names none of ours.
fn ours(
    deps: &Deps,
    work: &Work,
    repo: &str,
    target: &Target,
) -> Result<Result<Vec<RunRef>, String>, PipelineError> {
    let key = work.routing_key.as_str();
    match target {
        Target::CheckSuite { head_sha } => {
            let runs = deps
                .pool
                .with_retry(|c| rerun_records::runs_at(c, key, repo, head_sha, None))?;
            Ok(if runs.is_empty() {
                Err(format!(
                    "check suite at {head_sha}: this source started no run of {repo} at that \
                     commit; ignored"
                ))
            } else {
                Ok(runs)
            })
        }
        Target::CheckRun {
            id,
            external_id,
            name,
            head_sha,
        } => {
            if let Some(ext) = external_id.as_deref().filter(|e| is_uuid(e)) {
                let run = deps.pool.with_retry(|c| rerun_records::run(c, ext))?;
                // Only a run of this source: a check run of another App may carry any id.
                if let Some(run) = run.filter(|r| r.routing_key.as_deref() == Some(key)) {
                    return Ok(Ok(vec![run]));
                }
            }
            for workflow in workflows_of_name(name) {
                let runs = deps.pool.with_retry(|c| {
                    rerun_records::runs_at(c, key, repo, head_sha, Some(&workflow))
                })?;
                if !runs.is_empty() {
                    return Ok(Ok(runs));
                }
            }
            let id = id.map_or_else(|| "?".to_owned(), |i| i.to_string());
            Ok(Err(format!(
                "check run {id} ({name:?}) is not one of ours: its external_id names no run of \
                 this source and no kici/<workflow> run of {repo} at {head_sha} has that name; \
                 ignored"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_our_check_runs_give_their_workflow() {
        assert_eq!(workflows_of_name("kici/ci"), ["ci"]);
        assert_eq!(
            workflows_of_name("kici/ci/job/build"),
            ["ci/job/build", "ci"]
        );
        assert_eq!(
            workflows_of_name("kici/a/job/b/job/c"),
            ["a/job/b/job/c", "a", "a/job/b"]
        );
        assert!(workflows_of_name("ci/build").is_empty());
        assert!(workflows_of_name("kici/").is_empty());
        assert_eq!(workflows_of_name("kici//job/x"), ["/job/x"]);
    }

    #[test]
    fn targets_come_from_the_payload_and_need_a_head_sha() {
        let p = json!({"action": "rerequested", "check_run": {"id": 7, "name": "kici/ci",
            "external_id": "abc", "head_sha": "deadbeef"}});
        assert_eq!(
            target("check_run", &p),
            Some(Target::CheckRun {
                id: Some(7),
                external_id: Some("abc".into()),
                name: "kici/ci".into(),
                head_sha: "deadbeef".into()
            })
        );
        let no_sha = json!({"check_run": {"id": 7, "name": "kici/ci", "external_id": ""}});
        assert_eq!(target("check_run", &no_sha), None);
        let suite = json!({"check_suite": {"head_sha": "cafe"}});
        assert_eq!(
            target("check_suite", &suite),
            Some(Target::CheckSuite {
                head_sha: "cafe".into()
            })
        );
        assert_eq!(target("push", &suite), None);
    }

    proptest::proptest! {
        #[test]
        fn any_name_or_payload_never_panics(name in ".{0,64}", sha in ".{0,16}") {
            let _ = workflows_of_name(&name);
            let p = json!({"check_run": {"name": name, "head_sha": sha, "external_id": 5}});
            let _ = target("check_run", &p);
        }
    }
}
