//! Trigger matching (docs/architecture.md, "Trigger matching") with a decision trace per workflow,
//! in the reference's shape (`workflowName`, `matched`, `matchedTrigger`, `checks[{check, pattern,
//! value, passed, reason?}]`, `summary`), ready to store as `execution_runs.trigger_decision` or in
//! the event log when nothing matched.
//!
//! Rules: a workflow with no triggers never matches; triggers are OR-ed and the first match wins.
//! `push`, `pr`, `tag`, `comment`, `release` and `generic_webhook` triggers are evaluated; other
//! kinds never match here and say so in the trace. Branch patterns have no `!` negation (a
//! leading `!` reaches picomatch, which negates the glob); path and repository lists do.

use serde::Serialize;
use serde_json::Value;

use super::event::{EventKind, NormalizedEvent};
use super::glob::Glob;
use super::lockfile::{
    BranchPattern, CommentTrigger, GenericWebhookTrigger, LockTrigger, LockWorkflow, PatternKind,
    PrTrigger, PushTrigger,
};
use crate::jsregex::JsRegex;

mod jsonpath;

/// Free text in a trace entry is cut here (a comment body or a long file list would otherwise
/// make the stored trace, and the frame forwarding it, unbounded).
pub const TRACE_TEXT_MAX: usize = 200;

/// At most this many patterns are listed one by one in a check (`TraceEntry::patterns`); the
/// lock file's own limits keep real lists far shorter.
pub const PATTERNS_LISTED: usize = 32;

/// One check performed while matching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    pub check: String,
    pub pattern: String,
    pub value: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which trigger of the workflow (0-based) made this check, so a trace can be explained
    /// trigger by trigger (`pipeline::explain`). Absent in traces stored by older versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<usize>,
    /// The pattern list one by one (branch, tag and path checks), since `pattern` joins them
    /// for display and a regex may itself hold the separator. Each is clamped like `pattern`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
    /// Path checks: how many changed files were matched (`value` is clamped, so it may not
    /// show them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
}

/// The decision for one workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowDecision {
    pub workflow_name: String,
    pub matched: bool,
    /// Index of the trigger that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_trigger: Option<usize>,
    pub checks: Vec<TraceEntry>,
    pub summary: String,
}

fn clamp(text: &str) -> String {
    match text.char_indices().nth(TRACE_TEXT_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

struct Trace(Vec<TraceEntry>);

impl Trace {
    /// Records a check and returns whether it passed.
    fn check(&mut self, check: &str, pattern: &str, value: &str, passed: bool) -> bool {
        self.entry(check, pattern, value, passed, None)
    }

    fn entry(
        &mut self,
        check: &str,
        pattern: &str,
        value: &str,
        passed: bool,
        reason: Option<&str>,
    ) -> bool {
        self.0.push(TraceEntry {
            check: check.to_owned(),
            pattern: clamp(pattern),
            value: clamp(value),
            passed,
            reason: reason.map(clamp),
            trigger: None,
            patterns: None,
            files: None,
        });
        passed
    }

    /// Adds the pattern list (and, for paths, the number of changed files) to the last check.
    fn detail(&mut self, patterns: &[&str], files: Option<usize>) {
        if let Some(last) = self.0.last_mut() {
            let listed = patterns.iter().take(PATTERNS_LISTED).map(|p| clamp(p));
            last.patterns = Some(listed.collect());
            last.files = files;
        }
    }

    fn event_type(&mut self, wanted: &str, event: &NormalizedEvent) -> bool {
        let got = event.kind.as_str();
        self.check("event type", wanted, got, got == wanted)
    }

    fn action(&mut self, allowed: &[String], event: &NormalizedEvent) -> bool {
        if allowed.is_empty() {
            return true;
        }
        let action = event.action.as_deref().unwrap_or("");
        self.check(
            "action",
            &allowed.join("|"),
            action,
            allowed.iter().any(|a| a == action),
        )
    }

    fn branches(&mut self, check: &str, patterns: &[BranchPattern], branch: &str) -> bool {
        if patterns.is_empty() {
            return true;
        }
        let shown: Vec<&str> = patterns.iter().map(|p| p.pattern.as_str()).collect();
        let mut errors = Vec::new();
        let matched = patterns.iter().any(|p| match p.compile() {
            Ok(c) => c.is_match(branch),
            Err(e) => {
                errors.push(e);
                false
            }
        });
        let reason = (!matched && !errors.is_empty()).then(|| errors.join("; "));
        self.entry(check, &shown.join("|"), branch, matched, reason.as_deref());
        self.detail(&shown, None);
        matched
    }

    fn paths(&mut self, paths: &[String], event: &NormalizedEvent) -> bool {
        if paths.is_empty() {
            return true;
        }
        let changed = event.changed_files.as_deref().unwrap_or(&[]);
        let (include, exclude) = split(paths);
        let pattern = format!(
            "include: [{}] exclude: [{}]",
            include.join(", "),
            exclude.join(", ")
        );
        let matched = match_paths(paths, changed);
        let reason = changed
            .is_empty()
            .then_some("no changed files are known for this event");
        self.entry(
            "paths",
            &pattern,
            &format!("[{}]", changed.join(", ")),
            matched,
            reason,
        );
        let listed: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.detail(&listed, Some(changed.len()));
        matched
    }

    fn repos(&mut self, repos: &[BranchPattern], event: &NormalizedEvent) -> bool {
        if repos.is_empty() {
            return true;
        }
        let Some(repo) = event.repo.as_deref() else {
            return self.check("repo", "required", "(missing)", false);
        };
        let include: Vec<&str> = repos
            .iter()
            .filter(|p| !p.pattern.starts_with('!'))
            .map(|p| p.pattern.as_str())
            .collect();
        let exclude: Vec<&str> = repos
            .iter()
            .filter_map(|p| p.pattern.strip_prefix('!'))
            .collect();
        let pattern = format!(
            "include:[{}] exclude:[{}]",
            include.join(","),
            exclude.join(",")
        );
        let matched = self.check("repo", &pattern, repo, match_repos(repos, repo));
        let listed: Vec<&str> = repos.iter().map(|p| p.pattern.as_str()).collect();
        self.detail(&listed, None);
        matched
    }
}

fn split(patterns: &[String]) -> (Vec<&str>, Vec<&str>) {
    let include = patterns
        .iter()
        .filter(|p| !p.starts_with('!'))
        .map(String::as_str)
        .collect();
    let exclude = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .collect();
    (include, exclude)
}

fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).is_ok_and(|g| g.is_match(text))
}

/// Path filters against changed files: empty list = match; no changed files = no match;
/// `!` patterns exclude files first (all excluded = no match); only exclusions = the rest match;
/// else any remaining file must match an include.
pub fn match_paths(paths: &[String], changed_files: &[String]) -> bool {
    if paths.is_empty() {
        return true;
    }
    if changed_files.is_empty() {
        return false;
    }
    let (include, exclude) = split(paths);
    let remaining: Vec<&String> = changed_files
        .iter()
        .filter(|f| !exclude.iter().any(|p| glob_match(p, f)))
        .collect();
    if remaining.is_empty() {
        return false;
    }
    include.is_empty()
        || remaining
            .iter()
            .any(|f| include.iter().any(|p| glob_match(p, f)))
}

/// Repository filters: `!` patterns exclude; only exclusions = every other repository matches.
pub fn match_repos(repos: &[BranchPattern], repo: &str) -> bool {
    if repos.is_empty() {
        return true;
    }
    let mut includes = 0;
    let mut included = false;
    for p in repos {
        match p.pattern.strip_prefix('!') {
            Some(rest) => {
                if p.compile_text(rest).is_ok_and(|c| c.is_match(repo)) {
                    return false;
                }
            }
            None => {
                includes += 1;
                included |= p.compile().is_ok_and(|c| c.is_match(repo));
            }
        }
    }
    includes == 0 || included
}

fn match_push(t: &PushTrigger, e: &NormalizedEvent, tr: &mut Trace) -> bool {
    tr.event_type("push", e)
        && tr.branches("branch", &t.branches, &e.target_branch)
        && tr.paths(&t.paths, e)
        && tr.repos(&t.repos, e)
}

fn match_pr(t: &PrTrigger, e: &NormalizedEvent, tr: &mut Trace) -> bool {
    if !tr.event_type("pull_request", e) || !tr.action(&t.events, e) {
        return false;
    }
    if !tr.branches("target branch", &t.target_branches, &e.target_branch) {
        return false;
    }
    if !t.source_branches.is_empty() {
        let Some(source) = e.source_branch.as_deref() else {
            let shown: Vec<&str> = t
                .source_branches
                .iter()
                .map(|p| p.pattern.as_str())
                .collect();
            let why = "the event has no source branch but the trigger filters on it";
            return tr.entry(
                "source branch",
                &shown.join("|"),
                "(missing)",
                false,
                Some(why),
            );
        };
        if !tr.branches("source branch", &t.source_branches, source) {
            return false;
        }
    }
    tr.paths(&t.paths, e) && tr.repos(&t.repos, e)
}

fn match_comment(t: &CommentTrigger, e: &NormalizedEvent, tr: &mut Trace) -> bool {
    if !tr.event_type("comment", e) || !tr.action(&t.actions, e) {
        return false;
    }
    if let Some(source) = t.source.as_deref() {
        let from_pr = e
            .payload
            .get("issue")
            .is_some_and(|i| i.get("pull_request").is_some());
        let got = if from_pr { "pr" } else { "issue" };
        if !tr.check("source", source, got, source == got) {
            return false;
        }
    }
    if let Some(body_match) = &t.body_match {
        let body = e
            .payload
            .get("comment")
            .and_then(|c| c.get("body"))
            .and_then(Value::as_str);
        let body = body.unwrap_or("");
        let check = match body_match.kind {
            PatternKind::Glob => "bodyMatch (glob)",
            PatternKind::Regex => "bodyMatch (regex)",
        };
        let matched = body_match.compile().is_ok_and(|c| c.is_match(body));
        if !tr.check(check, &body_match.pattern, body, matched) {
            return false;
        }
    }
    tr.repos(&t.repos, e)
}

fn match_generic(t: &GenericWebhookTrigger, e: &NormalizedEvent, tr: &mut Trace) -> bool {
    if !tr.event_type("generic_webhook", e) {
        return false;
    }
    let (id, name) = match &e.generic {
        Some(g) => (g.source_id.as_str(), g.source_name.as_str()),
        None => ("", ""),
    };
    let source_ok = !t.source.is_empty() && (t.source == id || t.source == name);
    if !tr.check(
        "source",
        &t.source,
        if name.is_empty() { id } else { name },
        source_ok,
    ) {
        return false;
    }
    if !t.events.is_empty() {
        let event_type = e
            .generic
            .as_ref()
            .map(|g| g.event_type.as_str())
            .or(e.action.as_deref());
        let event_type = event_type.unwrap_or("");
        let ok = t.events.iter().any(|x| x == event_type);
        if !tr.check("event type filter", &t.events.join("|"), event_type, ok) {
            return false;
        }
    }
    for (filter, negate) in [(&t.match_, false), (&t.not, true)] {
        let Some(filter) = filter.as_ref().filter(|f| !f.is_empty()) else {
            continue;
        };
        let label = if negate {
            "jsonpath not"
        } else {
            "jsonpath match"
        };
        let shown = Value::Object(filter.clone()).to_string();
        match jsonpath::evaluate(&e.payload, filter, negate) {
            Ok(passed) => {
                if !tr.check(label, &shown, "(payload)", passed) {
                    return false;
                }
            }
            Err(why) => return tr.entry(label, &shown, "(payload)", false, Some(&why)),
        }
    }
    true
}

fn match_trigger(trigger: &LockTrigger, e: &NormalizedEvent, tr: &mut Trace) -> bool {
    match trigger {
        LockTrigger::Push(t) => match_push(t, e, tr),
        LockTrigger::PullRequest(t) => match_pr(t, e, tr),
        LockTrigger::Tag(t) => {
            tr.event_type("tag", e)
                && tr.branches("tag pattern", &t.patterns, &e.target_branch)
                && tr.repos(&t.repos, e)
        }
        LockTrigger::Comment(t) => match_comment(t, e, tr),
        LockTrigger::Release(t) => {
            tr.event_type("release", e) && tr.action(&t.actions, e) && tr.repos(&t.repos, e)
        }
        LockTrigger::GenericWebhook(t) => match_generic(t, e, tr),
        LockTrigger::Other(_) => {
            let kind = trigger.kind();
            let why = format!("`{kind}` triggers are not evaluated by this orchestrator");
            tr.entry("trigger type", kind, e.kind.as_str(), false, Some(&why))
        }
    }
}

/// The decision for one workflow against one event.
pub fn match_workflow(workflow: &LockWorkflow, event: &NormalizedEvent) -> WorkflowDecision {
    let decision = |matched, matched_trigger, checks, summary: String| WorkflowDecision {
        workflow_name: workflow.name.clone(),
        matched,
        matched_trigger,
        checks,
        summary,
    };
    if let EventKind::Unknown(name) = &event.kind {
        let summary = format!("event `{name}` is not one this orchestrator can match");
        return decision(false, None, Vec::new(), summary);
    }
    if workflow.triggers.is_empty() {
        return decision(false, None, Vec::new(), "No triggers defined".to_owned());
    }
    let mut all = Vec::new();
    for (i, trigger) in workflow.triggers.iter().enumerate() {
        let mut trace = Trace(Vec::new());
        let matched = match_trigger(trigger, event, &mut trace);
        for entry in &mut trace.0 {
            entry.trigger = Some(i);
        }
        if matched {
            let summary = format!("Matched trigger {} ({})", i + 1, trigger.kind());
            return decision(true, Some(i), trace.0, summary);
        }
        all.extend(trace.0);
    }
    decision(false, None, all, "No triggers matched".to_owned())
}

/// Decisions for every workflow, in lock-file order.
pub fn match_all(workflows: &[LockWorkflow], event: &NormalizedEvent) -> Vec<WorkflowDecision> {
    workflows.iter().map(|w| match_workflow(w, event)).collect()
}

/// True when some trigger that could match this event filters on paths: only then is it worth
/// fetching the changed files (docs/architecture.md, "Trigger matching").
pub fn needs_changed_files(workflows: &[LockWorkflow], event: &NormalizedEvent) -> bool {
    workflows.iter().flat_map(|w| &w.triggers).any(|t| match t {
        LockTrigger::Push(p) => event.kind == EventKind::Push && !p.paths.is_empty(),
        LockTrigger::PullRequest(p) => event.kind == EventKind::PullRequest && !p.paths.is_empty(),
        _ => false,
    })
}

/// JS-regex helper shared with `jsonpath` (`/pattern/flags` strings).
fn js_regex_literal(text: &str) -> Option<Result<JsRegex, String>> {
    let (source, flags) = js_regex_literal_parts(text)?;
    Some(JsRegex::new(source, flags).map_err(|e| e.to_string()))
}

/// `/source/flags` split, when `text` is written that way.
fn js_regex_literal_parts(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('/')?;
    let end = body.rfind('/')?;
    let (source, flags) = (&body[..end], &body[end + 1..]);
    if source.is_empty() || !flags.chars().all(|c| "gimsuy".contains(c)) {
        return None;
    }
    Some((source, flags))
}

/// The lock file's bounds (`limits`) on a `generic_webhook` trigger's `match`/`not` filter,
/// for validation: path length, and the length and nesting of `/regex/` values.
pub fn check_filter_limits(filter: &serde_json::Map<String, Value>) -> Result<(), String> {
    jsonpath::check_limits(filter)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
