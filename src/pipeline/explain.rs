//! Decision traces in words, for `kici-admin event-log show` (docs/operations.md, "Event log"):
//! why each workflow of a delivery's lock file did or did not start a run, read from the stored
//! `event_log.decisions` (the matcher's traces, `pipeline::matcher`) and the delivery's outcome.
//! Pure code over JSON values, so traces stored by older versions (without `trigger`,
//! `patterns` and `files` on their checks) are explained too, as well as they can be.

use serde_json::Value;

/// One workflow's decision, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub workflow: String,
    pub matched: bool,
    /// One sentence: `workflow deploy: push to `feature/x` does not match branches `main``.
    pub text: String,
    /// Per trigger, why it did not match (several triggers: one line each).
    pub reasons: Vec<String>,
}

/// The delivery's outcome in one sentence, with what to do when something needs fixing.
pub fn outcome(status: &str, matched: i64, error: Option<&str>, decisions: &Value) -> String {
    let note = notes(decisions).into_iter().next();
    let said = |fallback: &str| {
        error
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .or(note.clone())
            .unwrap_or_else(|| fallback.to_owned())
    };
    match status {
        "received" => "recorded, waiting for a pipeline worker".to_owned(),
        "processing" => "being processed by a pipeline worker".to_owned(),
        "duplicate" => "a duplicate of a delivery already recorded".to_owned(),
        "lockfile_missing" => format!(
            "lock file missing: {}; add .kici/kici.lock.json (kici compile), commit and push again",
            said("no lock file at the event's commit")
        ),
        "lockfile_corrupt" => format!(
            "lock file invalid: {}; fix it, run kici compile, commit and push again",
            said("it could not be read")
        ),
        "failed" => format!("processing failed: {}", said("no reason was recorded")),
        "processed" if matched > 0 => {
            let mut text = format!("started {matched} run(s)");
            if let Some(e) = error.filter(|e| !e.is_empty()) {
                text.push_str(&format!("; refused: {e}"));
            }
            text
        }
        "processed" => match note {
            Some(n) => format!("no run started: {n}"),
            None => "no run started: no workflow matched".to_owned(),
        },
        other => format!("status {other}"),
    }
}

/// Delivery-level notes stored instead of workflow traces (an event that cannot be matched, a
/// source without a repository, a missing or invalid lock file).
pub fn notes(decisions: &Value) -> Vec<String> {
    entries(decisions)
        .filter(|d| d.get("workflowName").is_none())
        .filter_map(|d| d.get("summary").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn entries(decisions: &Value) -> impl Iterator<Item = &Value> {
    decisions.as_array().into_iter().flatten()
}

/// Every workflow's decision, in lock-file order.
pub fn workflows(decisions: &Value) -> Vec<Explained> {
    entries(decisions)
        .filter(|d| d.get("workflowName").is_some())
        .map(workflow)
        .collect()
}

/// One workflow's decision (a `WorkflowDecision` as stored).
pub fn workflow(decision: &Value) -> Explained {
    let name = text(decision, "workflowName");
    let matched = decision.get("matched").and_then(Value::as_bool) == Some(true);
    let summary = text(decision, "summary");
    let checks: Vec<&Value> = decision
        .get("checks")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if matched {
        let n = decision.get("matchedTrigger").and_then(Value::as_u64);
        // A matched decision holds only the matching trigger's checks.
        let kind = trigger_kind(&checks);
        let which = match n {
            Some(n) if !kind.is_empty() => format!("trigger {} ({kind})", n + 1),
            Some(n) => format!("trigger {}", n + 1),
            None => "a trigger".to_owned(),
        };
        return Explained {
            text: format!("workflow {name}: matched {which}"),
            workflow: name,
            matched,
            reasons: Vec::new(),
        };
    }
    if checks.is_empty() {
        let why = match summary.as_str() {
            "No triggers defined" => "it has no triggers, so it never runs".to_owned(),
            "" => "did not match".to_owned(),
            other => other.to_owned(),
        };
        return Explained {
            text: format!("workflow {name}: {why}"),
            workflow: name,
            matched,
            reasons: vec![why],
        };
    }
    let groups = groups(&checks);
    let kinds: Vec<String> = groups.iter().map(|(_, g)| trigger_kind(g)).collect();
    // Every trigger wants another kind of event: say that once.
    let wrong_kind = groups
        .iter()
        .all(|(_, g)| g.len() == 1 && text(g[0], "check") == "event type" && !passed(g[0]));
    if wrong_kind {
        let got = text(groups[0].1[0], "value");
        let mut wanted = kinds.clone();
        wanted.dedup();
        let why = format!(
            "no trigger for {got} events (its triggers: {})",
            wanted.join(", ")
        );
        return Explained {
            text: format!("workflow {name}: {why}"),
            workflow: name,
            matched,
            reasons: vec![why],
        };
    }
    let reasons: Vec<String> = groups
        .iter()
        .map(|(_, g)| failed_check(g, &trigger_kind(g)))
        .collect();
    let text = match reasons.as_slice() {
        [one] => format!("workflow {name}: {one}"),
        many => {
            let parts: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, r)| format!("trigger {} ({}): {r}", i + 1, kinds[i]))
                .collect();
            format!("workflow {name}: no trigger matched; {}", parts.join("; "))
        }
    };
    Explained {
        workflow: name,
        matched,
        text,
        reasons,
    }
}

/// The checks split per trigger: by their `trigger` index, or (traces from older versions) at
/// each trigger's first check, which is always its event type (or its trigger type).
fn groups<'a>(checks: &[&'a Value]) -> Vec<(usize, Vec<&'a Value>)> {
    let index = |c: &Value| c.get("trigger").and_then(Value::as_u64);
    let indexed = checks.iter().all(|c| index(c).is_some());
    let mut out: Vec<(usize, Vec<&'a Value>)> = Vec::new();
    for c in checks {
        let starts = if indexed {
            let i = index(c).unwrap_or(0) as usize;
            out.last().is_none_or(|(last, _)| *last != i).then_some(i)
        } else {
            let check = text(c, "check");
            (out.is_empty() || check == "event type" || check == "trigger type")
                .then_some(out.len())
        };
        match starts {
            Some(i) => out.push((i, vec![c])),
            None => out.last_mut().into_iter().for_each(|(_, g)| g.push(c)),
        }
    }
    out
}

/// The kind of trigger a group of checks belongs to (`push`, `pull_request`, …).
fn trigger_kind(group: &[&Value]) -> String {
    group
        .iter()
        .find(|c| matches!(text(c, "check").as_str(), "event type" | "trigger type"))
        .map(|c| text(c, "pattern"))
        .unwrap_or_default()
}

fn passed(check: &Value) -> bool {
    check.get("passed").and_then(Value::as_bool) == Some(true)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// The patterns of a check one by one: `patterns` when recorded, else `pattern` split at `|`.
fn patterns(check: &Value) -> Vec<String> {
    match check.get("patterns").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        None => text(check, "pattern")
            .split('|')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// `` `a`, `b` ``.
fn quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    q.join(", ")
}

/// Why a trigger did not match: its failed check (matching stops there), in words.
fn failed_check(group: &[&Value], kind: &str) -> String {
    let Some(check) = group.iter().rev().find(|c| !passed(c)) else {
        return "did not match".to_owned();
    };
    let (name, value, pattern) = (
        text(check, "check"),
        text(check, "value"),
        text(check, "pattern"),
    );
    let reason = text(check, "reason");
    let list = quoted(&patterns(check));
    let mut said = match name.as_str() {
        "event type" => format!("only {pattern} events; this is a {value}"),
        "action" if value.is_empty() => {
            format!("the event has no action; the trigger wants {list}")
        }
        "action" => format!("action `{value}` is not one of {list}"),
        "branch" => format!("push to `{value}` does not match branches {list}"),
        "target branch" => {
            format!("pull request into `{value}` does not match target branches {list}")
        }
        "source branch" if value == "(missing)" => {
            format!(
                "the event names no source branch, and the trigger wants source branches {list}"
            )
        }
        "source branch" => {
            format!("pull request from `{value}` does not match source branches {list}")
        }
        "tag pattern" => format!("tag `{value}` does not match tag patterns {list}"),
        "paths" => paths(check),
        "repo" if value == "(missing)" => {
            "the event names no repository, and the trigger filters repositories".to_owned()
        }
        "repo" => format!("repository `{value}` does not pass the repository filter {list}"),
        "source" if kind == "comment" => {
            format!(
                "the comment is on {}, the trigger wants comments on {}",
                article(&value),
                article(&pattern)
            )
        }
        "source" => format!("generic source `{value}` is not the trigger's source `{pattern}`"),
        "bodyMatch (glob)" | "bodyMatch (regex)" => {
            format!("the comment body does not match `{pattern}`")
        }
        "event type filter" => format!("generic event `{value}` is not one of {list}"),
        "jsonpath match" => format!("the payload does not pass the match filter `{pattern}`"),
        "jsonpath not" => format!("the payload matches the not filter `{pattern}`"),
        "trigger type" if !reason.is_empty() => return reason,
        _ => format!("{name}: `{value}` does not pass `{pattern}`"),
    };
    if !reason.is_empty() && name != "paths" {
        said.push_str(&format!(" ({reason})"));
    }
    said
}

fn article(what: &str) -> String {
    match what {
        "pr" => "a pull request".to_owned(),
        "issue" => "an issue".to_owned(),
        other => format!("`{other}`"),
    }
}

/// A path filter that did not match: how many changed files there were, and which patterns.
fn paths(check: &Value) -> String {
    let listed = patterns(check);
    let (mut include, mut exclude) = (Vec::new(), Vec::new());
    if check.get("patterns").is_some() {
        for p in listed {
            match p.strip_prefix('!') {
                Some(x) => exclude.push(x.to_owned()),
                None => include.push(p),
            }
        }
    } else {
        // Older traces: "include: [a, b] exclude: [c]".
        let raw = text(check, "pattern");
        let part = |label: &str| -> Vec<String> {
            raw.split(label)
                .nth(1)
                .and_then(|r| r.split(']').next())
                .map(|r| {
                    r.trim_start_matches('[')
                        .split(", ")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        include = part("include: ");
        exclude = part("exclude: ");
    }
    let files = check.get("files").and_then(Value::as_u64).or_else(|| {
        let v = text(check, "value");
        let inner = v.strip_prefix('[')?.strip_suffix(']')?;
        Some(if inner.is_empty() {
            0
        } else {
            inner.split(", ").count() as u64
        })
    });
    let filter = match (include.is_empty(), exclude.is_empty()) {
        (false, true) => quoted(&include),
        (false, false) => format!("{} (excluding {})", quoted(&include), quoted(&exclude)),
        (true, _) => format!("excluding {}", quoted(&exclude)),
    };
    match files {
        Some(0) => format!(
            "paths: no changed files are known for this event, so the path filter {filter} cannot match"
        ),
        Some(n) if include.is_empty() => {
            format!("paths: all {} excluded by {}", files_word(n), quoted(&exclude))
        }
        Some(1) if exclude.is_empty() => format!("paths: the one changed file does not match {filter}"),
        Some(n) if exclude.is_empty() => {
            format!("paths: none of the {n} changed files matches {filter}")
        }
        Some(n) => format!("paths: none of the {} matches {filter}", files_word(n)),
        None => format!("paths: no changed file matches {filter}"),
    }
}

fn files_word(n: u64) -> String {
    match n {
        1 => "1 changed file".to_owned(),
        n => format!("{n} changed files"),
    }
}

#[cfg(test)]
mod tests;
