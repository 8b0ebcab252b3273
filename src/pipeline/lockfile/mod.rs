//! `.kici/kici.lock.json` (docs/architecture.md, "Lock file"; schema version 29): serde types that
//! tolerate fields they do not know (a newer compiler may add some), and `parse_and_validate`,
//! which refuses a lock file the orchestrator cannot run safely with one error per cause.
//!
//! Whole-file errors ([`LockError`]) make the delivery's runs fail with the error's message, as
//! the reference's validator does. A workflow that needs something this orchestrator does not
//! do — evaluating `{_type:'inline'}` JavaScript, dynamic jobs or matrices, group `needs` — is
//! kept with an [`LockWorkflow::init_failure`] reason instead of being dropped, so the caller
//! records a failed run that says why.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::glob::Glob;
use super::limits;
use crate::jsregex::JsRegex;

mod validate;

/// How messages name the file.
const LOCK_NAME: &str = ".kici/kici.lock.json";

/// The only schema version this orchestrator reads (exact match, as the reference).
pub const SCHEMA_VERSION: u64 = 29;

/// Why a lock file was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// Not JSON, not an object, no numeric `schemaVersion`, or a shape serde cannot read.
    Corrupt(String),
    /// `schemaVersion` is a number other than 29 (`found` as written).
    SchemaVersion { found: String },
    /// A `runsOn`/`excludeLabels`/`runsOnAll` element is not a LabelMatcher.
    LabelMatcher {
        workflow: String,
        job: String,
        detail: String,
    },
    /// A regex (label matcher or trigger pattern) or glob that does not compile.
    Pattern {
        workflow: String,
        at: String,
        detail: String,
    },
    /// Over one of the bounds in `pipeline::limits` (size, workflows, steps); the text names
    /// the bound and the value.
    Limit(String),
    /// A static job with both `runsOn` and `runsOnAll`, or neither.
    RunsOn {
        workflow: String,
        job: String,
        both: bool,
    },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Corrupt(detail) => write!(
                f,
                ".kici/kici.lock.json is corrupt ({detail}); recompile it with `kici compile` and \
                 push again"
            ),
            LockError::SchemaVersion { found } => write!(
                f,
                ".kici/kici.lock.json has schemaVersion {found}, but this orchestrator reads \
                 schemaVersion {SCHEMA_VERSION}; recompile the lock file with `kici compile` \
                 (a CLI that writes version {SCHEMA_VERSION}) and push again"
            ),
            LockError::LabelMatcher { workflow, job, detail } => write!(
                f,
                "workflow {workflow:?}, job {job:?}: {detail}; a label matcher is \
                 {{\"kind\":\"exact\",\"value\":…}} or {{\"kind\":\"regex\",\"source\":…,\"flags\":…}} \
                 — recompile the lock file with `kici compile`"
            ),
            LockError::Pattern { workflow, at, detail } => write!(
                f,
                "workflow {workflow:?}, {at}: {detail}; fix the pattern and recompile the lock \
                 file with `kici compile`"
            ),
            LockError::Limit(detail) => write!(
                f,
                "{LOCK_NAME}: {detail}; stay within the limit and recompile the lock file with \
                 `kici compile`"
            ),
            LockError::RunsOn { workflow, job, both: true } => write!(
                f,
                "workflow {workflow:?}, job {job:?} has both runsOn and runsOnAll; keep one and \
                 recompile the lock file with `kici compile`"
            ),
            LockError::RunsOn { workflow, job, both: false } => write!(
                f,
                "workflow {workflow:?}, job {job:?} has neither runsOn nor runsOnAll; say where it \
                 runs and recompile the lock file with `kici compile`"
            ),
        }
    }
}

impl std::error::Error for LockError {}

/// The lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockFile {
    pub schema_version: u64,
    #[serde(default)]
    pub source: Option<Value>,
    #[serde(default)]
    pub content_hash: Option<String>,
    #[serde(default)]
    pub lockfile_hash: Option<String>,
    #[serde(default)]
    pub workflows: Vec<LockWorkflow>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockWorkflow {
    pub name: String,
    #[serde(default)]
    pub content_hash: String,
    #[serde(default)]
    pub triggers: Vec<LockTrigger>,
    #[serde(default)]
    pub jobs: Vec<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Set by validation: why this workflow cannot be run here (recorded as a failed run).
    #[serde(skip)]
    pub init_failure: Option<String>,
}

/// A trigger: the kinds the matcher reads are typed; the rest keep their JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "_type")]
pub enum LockTrigger {
    #[serde(rename = "push")]
    Push(PushTrigger),
    #[serde(rename = "pr")]
    PullRequest(PrTrigger),
    #[serde(rename = "tag")]
    Tag(TagTrigger),
    #[serde(rename = "comment")]
    Comment(CommentTrigger),
    #[serde(rename = "release")]
    Release(ReleaseTrigger),
    #[serde(rename = "generic_webhook")]
    GenericWebhook(GenericWebhookTrigger),
    /// Any other `_type` (schedule, review, dispatch, …): kept, not matched here.
    #[serde(untagged)]
    Other(Value),
}

impl LockTrigger {
    /// The `_type` string.
    pub fn kind(&self) -> &str {
        match self {
            LockTrigger::Push(_) => "push",
            LockTrigger::PullRequest(_) => "pr",
            LockTrigger::Tag(_) => "tag",
            LockTrigger::Comment(_) => "comment",
            LockTrigger::Release(_) => "release",
            LockTrigger::GenericWebhook(_) => "generic_webhook",
            LockTrigger::Other(v) => v.get("_type").and_then(Value::as_str).unwrap_or("(none)"),
        }
    }
}

/// `{type:'glob'|'regex', pattern, flags?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchPattern {
    #[serde(rename = "type")]
    pub kind: PatternKind,
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternKind {
    Glob,
    Regex,
}

impl BranchPattern {
    /// Compiles the pattern as written (a leading `!` is the caller's business).
    pub fn compile(&self) -> Result<CompiledPattern, String> {
        self.compile_text(&self.pattern)
    }

    pub fn compile_text(&self, text: &str) -> Result<CompiledPattern, String> {
        match self.kind {
            PatternKind::Glob => Glob::new(text)
                .map(CompiledPattern::Glob)
                .map_err(|e| e.reason),
            PatternKind::Regex => JsRegex::new(text, self.flags.as_deref().unwrap_or(""))
                .map(CompiledPattern::Regex)
                .map_err(|e| e.to_string()),
        }
    }
}

/// A compiled branch/repo pattern.
#[derive(Debug, Clone)]
pub enum CompiledPattern {
    Glob(Glob),
    Regex(JsRegex),
}

impl CompiledPattern {
    pub fn is_match(&self, text: &str) -> bool {
        match self {
            CompiledPattern::Glob(g) => g.is_match(text),
            CompiledPattern::Regex(r) => r.is_match(text),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PushTrigger {
    pub branches: Vec<BranchPattern>,
    pub paths: Vec<String>,
    pub repos: Vec<BranchPattern>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PrTrigger {
    pub events: Vec<String>,
    pub target_branches: Vec<BranchPattern>,
    pub source_branches: Vec<BranchPattern>,
    pub paths: Vec<String>,
    pub repos: Vec<BranchPattern>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TagTrigger {
    pub patterns: Vec<BranchPattern>,
    pub repos: Vec<BranchPattern>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommentTrigger {
    pub actions: Vec<String>,
    /// `issue` or `pr`.
    pub source: Option<String>,
    pub body_match: Option<BranchPattern>,
    pub repos: Vec<BranchPattern>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReleaseTrigger {
    pub actions: Vec<String>,
    pub repos: Vec<BranchPattern>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GenericWebhookTrigger {
    pub source: String,
    pub events: Vec<String>,
    /// JSONPath filters: not evaluated here (see `matcher`).
    #[serde(rename = "match")]
    pub match_: Option<Map<String, Value>>,
    pub not: Option<Map<String, Value>>,
}

/// `{kind:'exact', value} | {kind:'regex', source, flags}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LabelMatcher {
    Exact {
        value: String,
    },
    Regex {
        source: String,
        #[serde(default)]
        flags: String,
    },
}

/// A static job (`_type: 'static'`), the parts the planner reads; `extra` keeps the rest
/// (steps, env, timeouts…) for the job configuration sent to the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockJob {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<Vec<LabelMatcher>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_labels: Option<Vec<LabelMatcher>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on_all: Option<Value>,
    #[serde(default)]
    pub needs: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<LockMatrix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<BTreeMap<String, Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<BTreeMap<String, Value>>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `matrix: {_type:'static'|'dynamic', values?: Record<string,string[]>|string[], source?}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockMatrix {
    #[serde(rename = "_type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LockWorkflow {
    /// The workflow's static jobs (validation guarantees every job parses).
    pub fn static_jobs(&self) -> Vec<LockJob> {
        self.jobs
            .iter()
            .filter(|j| j.get("_type").and_then(Value::as_str) == Some("static"))
            .filter_map(|j| serde_json::from_value(j.clone()).ok())
            .collect()
    }
}

/// Parses `bytes` and validates it. See the module comment for what is an error and
/// what is a per-workflow init failure.
pub fn parse_and_validate(bytes: &[u8]) -> Result<LockFile, LockError> {
    if bytes.len() > limits::LOCK_FILE_BYTES {
        return Err(LockError::Limit(format!(
            "it is {} bytes, more than {} (the limit on lock-file size)",
            bytes.len(),
            limits::LOCK_FILE_BYTES
        )));
    }
    // serde_json refuses nesting deeper than `limits::LOCK_FILE_JSON_DEPTH` with an error (a
    // test pins it), so a deeply nested document is corrupt, not a stack overflow.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| LockError::Corrupt(format!("not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(LockError::Corrupt(
            "the top level is not a JSON object".to_owned(),
        ));
    };
    let Some(Value::Number(version)) = object.get("schemaVersion") else {
        return Err(LockError::Corrupt(
            "it has no numeric schemaVersion".to_owned(),
        ));
    };
    if version.as_f64() != Some(SCHEMA_VERSION as f64) {
        return Err(LockError::SchemaVersion {
            found: version.to_string(),
        });
    }
    let workflows = object.get("workflows").and_then(Value::as_array);
    let count = workflows.map_or(0, Vec::len);
    if count > limits::WORKFLOWS_PER_LOCK_FILE {
        return Err(LockError::Limit(format!(
            "it has {count} workflows, more than {} (the limit on workflows per lock file)",
            limits::WORKFLOWS_PER_LOCK_FILE
        )));
    }
    let mut lock: LockFile = serde_json::from_value(value)
        .map_err(|e| LockError::Corrupt(format!("unexpected shape: {e}")))?;
    for workflow in &mut lock.workflows {
        validate::workflow(workflow)?;
    }
    Ok(lock)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod props;
