//! From a matched workflow to planned jobs (docs/architecture.md, "Planning"): static matrix
//! expansion and child naming, label routing into queue columns, the `needs` edges with their
//! `runOn` conditions, and `readiness` — which pending jobs may be dispatched now and which are
//! skipped, cascading — so a downstream job is decided whatever the order and speed at which its
//! upstreams finish.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::limits;
use super::lockfile::{LabelMatcher, LockJob, LockWorkflow};
use crate::runs::state::JobStatus;

pub use crate::runs::needs::{readiness, NeedsEdge, Readiness};

/// One job to create (`execution_jobs` row, and a `dispatch_queue` row once ready).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedJob {
    /// Unique in the run: the job's name, or `"<base> (<v1>, <v2>)"` for a matrix child.
    pub name: String,
    pub base_name: String,
    /// The matrix combination (dimension → value), for matrix children.
    pub matrix_values: Option<BTreeMap<String, String>>,
    pub runs_on_labels: Vec<String>,
    pub runs_on_patterns: Vec<LabelPattern>,
    pub exclude_labels: Vec<String>,
    pub exclude_patterns: Vec<LabelPattern>,
    /// The lock file's job, for the job configuration sent to the agent.
    #[serde(skip)]
    pub job: LockJob,
}

/// A regex label matcher, as stored in `runs_on_patterns` / `exclude_patterns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelPattern {
    pub source: String,
    pub flags: String,
}

/// The planned run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub jobs: Vec<PlannedJob>,
    pub needs: Vec<NeedsEdge>,
}

/// Why a workflow cannot be planned (recorded as the run's failure reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub workflow: String,
    pub detail: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workflow {:?} cannot be planned: {}; fix the workflow and recompile the lock file \
             with `kici compile`",
            self.workflow, self.detail
        )
    }
}

impl std::error::Error for PlanError {}

/// `runOn` keywords (docs/architecture.md, "Job and run states") and the statuses they stand for.
fn run_on_keyword(word: &str) -> Option<&'static [JobStatus]> {
    use JobStatus as S;
    Some(match word {
        "always" => &[
            S::Success,
            S::Failed,
            S::Cancelled,
            S::Skipped,
            S::TimedOutStale,
            S::DriftDropped,
        ],
        "on-skip" => &[S::Success, S::Skipped],
        "on-failure" => &[S::Failed, S::TimedOutStale],
        _ => return None,
    })
}

/// `runOn` as written (a keyword, or a list of statuses and keywords) → statuses; absent means
/// `["success"]`.
pub fn parse_run_on(value: Option<&Value>) -> Result<Vec<JobStatus>, String> {
    let words: Vec<&Value> = match value {
        None | Some(Value::Null) => return Ok(vec![JobStatus::Success]),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(single) => vec![single],
    };
    let mut out = BTreeSet::new();
    for w in words {
        let Some(text) = w.as_str() else {
            return Err(format!("runOn element {w} is not a string"));
        };
        match (run_on_keyword(text), JobStatus::parse(text)) {
            (Some(set), _) => out.extend(set.iter().copied()),
            (None, Some(status)) if status.is_terminal() => {
                out.insert(status);
            }
            _ => {
                return Err(format!(
                    "runOn {text:?} is neither a terminal job status nor always/on-skip/on-failure"
                ))
            }
        }
    }
    Ok(out.into_iter().collect())
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

type Combo = BTreeMap<String, String>;

fn combo_from(entry: &BTreeMap<String, Value>) -> Result<Combo, String> {
    entry
        .iter()
        .map(|(k, v)| {
            scalar_text(v)
                .map(|t| (k.clone(), t))
                .ok_or_else(|| format!("matrix value {v} for {k:?} is not a string"))
        })
        .collect()
}

/// The job's matrix combinations; `None` for a job without a matrix.
pub fn expand_matrix(job: &LockJob) -> Result<Option<Vec<Combo>>, String> {
    let Some(matrix) = &job.matrix else {
        return Ok(None);
    };
    if matrix.kind != "static" {
        return Err(format!("job {:?} has a {} matrix", job.name, matrix.kind));
    }
    let dims: Vec<(String, Vec<String>)> = match &matrix.values {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => vec![("value".to_owned(), texts(values, "value")?)],
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::Array(values) => Ok((k.clone(), texts(values, k)?)),
                other => Err(format!("matrix dimension {k:?} is {other}, not a list")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "matrix values {other} are neither a list nor an object"
            ))
        }
    };
    if let Some((name, _)) = dims.iter().find(|(_, values)| values.is_empty()) {
        return Err(format!(
            "matrix dimension {name:?} of job {:?} has no values",
            job.name
        ));
    }
    let mut combos: Vec<Combo> = if dims.is_empty() {
        Vec::new()
    } else {
        vec![Combo::new()]
    };
    for (name, values) in &dims {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(name.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    let excludes = job
        .exclude
        .iter()
        .flatten()
        .map(combo_from)
        .collect::<Result<Vec<_>, _>>()?;
    combos.retain(|c| {
        !excludes
            .iter()
            .any(|ex| !ex.is_empty() && ex.iter().all(|(k, v)| c.get(k) == Some(v)))
    });
    for entry in job.include.iter().flatten() {
        let extra = combo_from(entry)?;
        if !extra.is_empty() && !combos.contains(&extra) {
            combos.push(extra);
        }
    }
    if combos.is_empty() {
        return Err(format!(
            "the matrix of job {:?} leaves no combination to run",
            job.name
        ));
    }
    Ok(Some(combos))
}

fn texts(values: &[Value], dim: &str) -> Result<Vec<String>, String> {
    values
        .iter()
        .map(|v| {
            scalar_text(v).ok_or_else(|| format!("matrix value {v} in {dim:?} is not a string"))
        })
        .collect()
}

/// `"<base> (<v1>, <v2>)"`, values in the order of their sorted dimension names.
pub fn child_name(base: &str, combo: &Combo) -> String {
    let values: Vec<&str> = combo.values().map(String::as_str).collect();
    format!("{base} ({})", values.join(", "))
}

fn split_matchers(list: Option<&Vec<LabelMatcher>>) -> (Vec<String>, Vec<LabelPattern>) {
    let mut labels = Vec::new();
    let mut patterns = Vec::new();
    for m in list.into_iter().flatten() {
        match m {
            LabelMatcher::Exact { value } => labels.push(value.clone()),
            LabelMatcher::Regex { source, flags } => patterns.push(LabelPattern {
                source: source.clone(),
                flags: flags.clone(),
            }),
        }
    }
    (labels, patterns)
}

/// At most how many jobs `job` expands to, computed from the sizes alone (nothing is built):
/// the product of its matrix dimensions plus its `include` entries (an `exclude` may remove
/// some, but the bound is checked before expanding, so it is not counted), or 1.
fn job_count_bound(job: &LockJob) -> usize {
    let Some(matrix) = &job.matrix else {
        return 1;
    };
    let product = match &matrix.values {
        Some(Value::Array(values)) => values.len(),
        Some(Value::Object(map)) => {
            limits::matrix_size(map.values().map(|v| v.as_array().map_or(1, Vec::len)))
        }
        _ => 0,
    };
    let includes = job.include.as_ref().map_or(0, Vec::len);
    product.saturating_add(includes).max(1)
}

/// Refuses a workflow whose jobs would be more than `max_jobs` (`KICI_MAX_JOBS_PER_RUN`),
/// before any matrix is expanded.
fn check_job_count(jobs: &[LockJob], max_jobs: usize) -> Result<(), String> {
    let mut total = 0usize;
    for job in jobs {
        let count = job_count_bound(job);
        if count > max_jobs {
            return Err(format!(
                "job {:?}: the matrix would create {count} jobs, more than {} ({max_jobs})",
                job.name,
                limits::JOBS_PER_RUN_VAR
            ));
        }
        total = total.saturating_add(count);
    }
    if total > max_jobs {
        return Err(format!(
            "its jobs would create {total} jobs, more than {} ({max_jobs})",
            limits::JOBS_PER_RUN_VAR
        ));
    }
    Ok(())
}

/// Plans a validated workflow (one without an init failure), creating at most `max_jobs` jobs
/// (`KICI_MAX_JOBS_PER_RUN`).
pub fn plan_workflow(workflow: &LockWorkflow, max_jobs: usize) -> Result<Plan, PlanError> {
    let error = |detail: String| PlanError {
        workflow: workflow.name.clone(),
        detail,
    };
    if let Some(reason) = &workflow.init_failure {
        return Err(error(reason.clone()));
    }
    let static_jobs = workflow.static_jobs();
    check_job_count(&static_jobs, max_jobs).map_err(error)?;
    let mut jobs = Vec::new();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in static_jobs {
        if children.contains_key(&job.name) {
            return Err(error(format!("two jobs are named {:?}", job.name)));
        }
        let (runs_on_labels, runs_on_patterns) = split_matchers(job.runs_on.as_ref());
        let (exclude_labels, exclude_patterns) = split_matchers(job.exclude_labels.as_ref());
        let combos = expand_matrix(&job).map_err(error)?;
        let instances: Vec<(String, Option<Combo>)> = match combos {
            None => vec![(job.name.clone(), None)],
            Some(combos) => combos
                .into_iter()
                .map(|c| (child_name(&job.name, &c), Some(c)))
                .collect(),
        };
        let names = children.entry(job.name.clone()).or_default();
        for (name, matrix_values) in instances {
            names.push(name.clone());
            jobs.push(PlannedJob {
                name,
                base_name: job.name.clone(),
                matrix_values,
                runs_on_labels: runs_on_labels.clone(),
                runs_on_patterns: runs_on_patterns.clone(),
                exclude_labels: exclude_labels.clone(),
                exclude_patterns: exclude_patterns.clone(),
                job: job.clone(),
            });
        }
    }
    let mut needs = Vec::new();
    let mut seen = BTreeSet::new();
    for job in &jobs {
        for need in &job.job.needs {
            let (upstream, run_on) = match need {
                Value::String(name) => (name.as_str(), vec![JobStatus::Success]),
                Value::Object(o) => {
                    let Some(name) = o.get("name").and_then(Value::as_str) else {
                        return Err(error(format!(
                            "job {:?} has a needs entry {need} without a name",
                            job.base_name
                        )));
                    };
                    (name, parse_run_on(o.get("runOn")).map_err(error)?)
                }
                other => {
                    return Err(error(format!(
                        "job {:?} has a needs entry {other}",
                        job.base_name
                    )))
                }
            };
            let Some(upstreams) = children.get(upstream) else {
                return Err(error(format!(
                    "job {:?} needs {upstream:?}, which is not a job of this workflow",
                    job.base_name
                )));
            };
            for up in upstreams {
                if seen.insert((job.name.clone(), up.clone())) {
                    needs.push(NeedsEdge {
                        job: job.name.clone(),
                        upstream: up.clone(),
                        run_on: run_on.clone(),
                    });
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&jobs, &needs) {
        return Err(error(format!("the needs of {cycle:?} form a cycle")));
    }
    Ok(Plan { jobs, needs })
}

/// A job on a `needs` cycle, if there is one (Kahn's algorithm leaves cycles unvisited).
fn find_cycle(jobs: &[PlannedJob], needs: &[NeedsEdge]) -> Option<String> {
    let mut indegree: BTreeMap<&str, usize> = jobs.iter().map(|j| (j.name.as_str(), 0)).collect();
    for e in needs {
        *indegree.entry(e.job.as_str()).or_default() += 1;
    }
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| *n)
        .collect();
    while let Some(done) = ready.pop() {
        indegree.remove(done);
        for e in needs.iter().filter(|e| e.upstream == done) {
            if let Some(d) = indegree.get_mut(e.job.as_str()) {
                *d -= 1;
                if *d == 0 {
                    ready.push(e.job.as_str());
                }
            }
        }
    }
    indegree.keys().next().map(|n| n.to_string())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
