//! Per-workflow validation of a parsed lock file: whole-file errors for what the reference's
//! validator rejects (label matchers, regexes, `runsOn` vs `runsOnAll`), and an init-failure
//! reason for what this orchestrator cannot run (inline JavaScript, dynamic jobs and matrices,
//! group `needs`, host fan-out).

use serde_json::Value;

use super::{BranchPattern, LockError, LockJob, LockTrigger, LockWorkflow};
use crate::jsregex::JsRegex;
use crate::pipeline::glob::Glob;
use crate::pipeline::limits;
use crate::pipeline::matcher::check_filter_limits;

pub(super) fn workflow(wf: &mut LockWorkflow) -> Result<(), LockError> {
    let mut reasons = Vec::new();
    for (i, trigger) in wf.triggers.iter().enumerate() {
        triggers(&wf.name, i, trigger)?;
    }
    for (i, raw) in wf.jobs.iter().enumerate() {
        let label = raw.get("name").and_then(Value::as_str).map(str::to_owned);
        let label = label.unwrap_or_else(|| format!("#{}", i + 1));
        match raw.get("_type").and_then(Value::as_str) {
            Some("static") => job(&wf.name, &label, raw, &mut reasons)?,
            Some("dynamic") => reasons.push(format!(
                "job {label:?} is generated at run time (a dynamic job), which needs JavaScript \
                 evaluation this orchestrator does not do"
            )),
            other => {
                return Err(LockError::Corrupt(format!(
                    "workflow {:?}, job {label:?} has _type {other:?} (expected \"static\" or \
                     \"dynamic\")",
                    wf.name
                )))
            }
        }
    }
    if !reasons.is_empty() {
        wf.init_failure = Some(format!(
            "workflow {:?} cannot run on this orchestrator: {}",
            wf.name,
            reasons.join("; ")
        ));
    }
    Ok(())
}

fn is_inline(v: Option<&Value>) -> bool {
    v.and_then(|v| v.get("_type")).and_then(Value::as_str) == Some("inline")
}

fn job(
    workflow: &str,
    name: &str,
    raw: &Value,
    reasons: &mut Vec<String>,
) -> Result<(), LockError> {
    let has_all = raw.get("runsOnAll").is_some_and(|v| !v.is_null());
    let has_on = raw.get("runsOn").is_some_and(|v| !v.is_null());
    if has_all == has_on {
        return Err(LockError::RunsOn {
            workflow: workflow.into(),
            job: name.into(),
            both: has_on,
        });
    }
    let mut matchers: Vec<(&str, &Value)> = Vec::new();
    for key in ["runsOn", "excludeLabels"] {
        if let Some(list) = raw.get(key).filter(|v| !v.is_null()) {
            let items = list
                .as_array()
                .ok_or_else(|| label_error(workflow, name, &format!("{key} is not a list")))?;
            matchers.extend(items.iter().map(|m| (key, m)));
        }
    }
    if let Some(all) = raw.get("runsOnAll").filter(|v| !v.is_null()) {
        let include = all.get("include").and_then(Value::as_array);
        let exclude = all.get("exclude").and_then(Value::as_array);
        let (Some(include), Some(exclude)) = (include, exclude) else {
            return Err(label_error(
                workflow,
                name,
                "runsOnAll needs `include` and `exclude` lists",
            ));
        };
        for group in include {
            let group = group.as_array().ok_or_else(|| {
                label_error(workflow, name, "runsOnAll.include must be a list of lists")
            })?;
            matchers.extend(group.iter().map(|m| ("runsOnAll.include", m)));
        }
        matchers.extend(exclude.iter().map(|m| ("runsOnAll.exclude", m)));
        reasons.push(format!(
            "job {name:?} uses runsOnAll (one run per matching host), which this orchestrator does \
             not do"
        ));
    }
    for (key, m) in matchers {
        label_matcher(workflow, name, key, m)?;
    }
    let steps = raw
        .get("steps")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if steps > limits::STEPS_PER_JOB {
        return Err(LockError::Limit(format!(
            "workflow {workflow:?}, job {name:?} has {steps} steps, more than {} (the limit on \
             steps per job)",
            limits::STEPS_PER_JOB
        )));
    }
    let parsed: LockJob = serde_json::from_value(raw.clone())
        .map_err(|e| LockError::Corrupt(format!("workflow {workflow:?}, job {name:?}: {e}")))?;
    if is_inline(raw.get("env")) {
        reasons.push(format!(
            "job {name:?} computes `env` with inline JavaScript"
        ));
    }
    if is_inline(raw.get("concurrencyGroup")) {
        reasons.push(format!(
            "job {name:?} computes `concurrencyGroup` with inline JavaScript"
        ));
    }
    let environments = raw.get("environments").and_then(Value::as_array);
    if environments.is_some_and(|list| list.iter().any(|e| is_inline(e.get("value")))) {
        reasons.push(format!(
            "job {name:?} computes an environment with inline JavaScript"
        ));
    } else if environments.is_some_and(|list| {
        list.iter().any(|e| {
            e.get("value")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
    }) {
        // `{"value": "", "dynamic": true}`: a function the compiler could not inline, which
        // the reference's agent evaluates in an init job.
        reasons.push(format!(
            "job {name:?} computes an environment at run time (only static environment names \
             are resolved)"
        ));
    }
    if parsed.matrix.as_ref().is_some_and(|m| m.kind == "dynamic") {
        reasons.push(format!(
            "job {name:?} has a dynamic matrix, computed at run time"
        ));
    }
    if parsed.needs.iter().any(|n| n.get("group").is_some()) {
        reasons.push(format!(
            "job {name:?} needs a job group, which only dynamic jobs produce"
        ));
    }
    Ok(())
}

fn label_error(workflow: &str, job: &str, detail: &str) -> LockError {
    LockError::LabelMatcher {
        workflow: workflow.into(),
        job: job.into(),
        detail: detail.into(),
    }
}

fn label_matcher(workflow: &str, job: &str, key: &str, m: &Value) -> Result<(), LockError> {
    let kind = m.get("kind").and_then(Value::as_str);
    let ok = match kind {
        Some("exact") => m.get("value").is_some_and(Value::is_string),
        Some("regex") => {
            let source = m.get("source").and_then(Value::as_str);
            let flags = match m.get("flags") {
                None | Some(Value::Null) => Some(""),
                Some(f) => f.as_str(),
            };
            if let (Some(source), Some(flags)) = (source, flags) {
                JsRegex::new(source, flags).map_err(|e| LockError::Pattern {
                    workflow: workflow.into(),
                    at: format!("job {job:?} {key}"),
                    detail: e.to_string(),
                })?;
                true
            } else {
                false
            }
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(label_error(
            workflow,
            job,
            &format!("{key} has {m}, which is not a label matcher"),
        ))
    }
}

fn triggers(workflow: &str, index: usize, trigger: &LockTrigger) -> Result<(), LockError> {
    let at = |what: &str| format!("trigger {} ({}) {what}", index + 1, trigger.kind());
    let check = |what: &str, p: &BranchPattern, negatable: bool| -> Result<(), LockError> {
        let text = if negatable {
            p.pattern.strip_prefix('!').unwrap_or(&p.pattern)
        } else {
            &p.pattern
        };
        p.compile_text(text)
            .map(drop)
            .map_err(|detail| LockError::Pattern {
                workflow: workflow.into(),
                at: at(what),
                detail: format!("pattern {}: {detail}", limits::excerpt(&p.pattern)),
            })
    };
    let paths = |paths: &[String]| -> Result<(), LockError> {
        for p in paths {
            let text = p.strip_prefix('!').unwrap_or(p);
            Glob::new(text).map_err(|e| LockError::Pattern {
                workflow: workflow.into(),
                at: at("paths"),
                detail: e.to_string(),
            })?;
        }
        Ok(())
    };
    let all = |what: &str, list: &[BranchPattern], negatable: bool| -> Result<(), LockError> {
        list.iter().try_for_each(|p| check(what, p, negatable))
    };
    match trigger {
        LockTrigger::Push(t) => {
            all("branches", &t.branches, false)?;
            paths(&t.paths)?;
            all("repos", &t.repos, true)
        }
        LockTrigger::PullRequest(t) => {
            all("targetBranches", &t.target_branches, false)?;
            all("sourceBranches", &t.source_branches, false)?;
            paths(&t.paths)?;
            all("repos", &t.repos, true)
        }
        LockTrigger::Tag(t) => {
            all("patterns", &t.patterns, false)?;
            all("repos", &t.repos, true)
        }
        LockTrigger::Comment(t) => {
            if let Some(b) = &t.body_match {
                check("bodyMatch", b, false)?;
            }
            all("repos", &t.repos, true)
        }
        LockTrigger::Release(t) => all("repos", &t.repos, true),
        LockTrigger::GenericWebhook(t) => {
            for (what, filter) in [("match", &t.match_), ("not", &t.not)] {
                if let Some(filter) = filter {
                    check_filter_limits(filter).map_err(|detail| LockError::Pattern {
                        workflow: workflow.into(),
                        at: at(what),
                        detail,
                    })?;
                }
            }
            Ok(())
        }
        LockTrigger::Other(_) => Ok(()),
    }
}
