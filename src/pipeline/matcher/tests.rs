//! One named case per matching rule (docs/architecture.md, "Trigger matching"), edge cases
//! included, plus the trace shape.

use serde_json::{json, Value};

use super::*;
use crate::pipeline::event::{normalize_generic, normalize_github};

fn workflow(triggers: Value) -> LockWorkflow {
    serde_json::from_value(json!({"name": "ci", "triggers": triggers, "jobs": []}))
        .expect("workflow")
}

fn glob(p: &str) -> Value {
    json!({"type": "glob", "pattern": p})
}

fn push(branch: &str, files: Option<&[&str]>) -> NormalizedEvent {
    let mut e = normalize_github(
        "push",
        None,
        &json!({"ref": format!("refs/heads/{branch}"), "after": "abc", "repository": {"full_name": "acme/app"}}),
    );
    e.changed_files = files.map(|f| f.iter().map(|s| s.to_string()).collect());
    e
}

fn pr(action: &str, base: &str, head: Option<&str>, files: Option<&[&str]>) -> NormalizedEvent {
    let mut p = json!({"action": action, "repository": {"full_name": "acme/app"},
        "pull_request": {"base": {"ref": base}, "head": {"sha": "h"}}});
    if let Some(h) = head {
        p["pull_request"]["head"]["ref"] = json!(h);
    }
    let mut e = normalize_github("pull_request", None, &p);
    e.changed_files = files.map(|f| f.iter().map(|s| s.to_string()).collect());
    e
}

fn tag(name: &str) -> NormalizedEvent {
    normalize_github(
        "push",
        None,
        &json!({"ref": format!("refs/tags/{name}"), "repository": {"full_name": "acme/app"}}),
    )
}

struct Case {
    name: &'static str,
    triggers: Value,
    event: NormalizedEvent,
    matched: bool,
}

fn case(name: &'static str, triggers: Value, event: NormalizedEvent, matched: bool) -> Case {
    Case {
        name,
        triggers,
        event,
        matched,
    }
}

#[test]
fn every_rule_of_section_3_5() {
    let files: &[&str] = &["src/main.rs", "docs/a.md"];
    let docs_only: &[&str] = &["docs/a.md", "README.md"];
    let cases = vec![
        case(
            "no triggers never matches",
            json!([]),
            push("main", None),
            false,
        ),
        case(
            "push: empty branches = all",
            json!([{"_type": "push", "branches": [], "paths": []}]),
            push("anything/x", None),
            true,
        ),
        case(
            "push: branch glob matches",
            json!([{"_type": "push", "branches": [glob("release/*")]}]),
            push("release/1.0", None),
            true,
        ),
        case(
            "push: * does not cross /",
            json!([{"_type": "push", "branches": [glob("release/*")]}]),
            push("release/1.0/hotfix", None),
            false,
        ),
        case(
            "push: ** crosses /",
            json!([{"_type": "push", "branches": [glob("release/**")]}]),
            push("release/1.0/hotfix", None),
            true,
        ),
        case(
            "push: branch regex with flags",
            json!([{"_type": "push", "branches": [{"type": "regex", "pattern": "^MAIN$", "flags": "i"}]}]),
            push("main", None),
            true,
        ),
        case(
            "push: no `!` exclusion for branches (picomatch negates the glob)",
            json!([{"_type": "push", "branches": [glob("!main")]}]),
            push("main", None),
            false,
        ),
        case(
            "push: `!` branch glob matches other branches (picomatch negation)",
            json!([{"_type": "push", "branches": [glob("!main")]}]),
            push("dev", None),
            true,
        ),
        case(
            "push: a pr event does not match a push trigger",
            json!([{"_type": "push", "branches": []}]),
            pr("opened", "main", Some("f"), None),
            false,
        ),
        case(
            "paths: empty list = match",
            json!([{"_type": "push", "paths": []}]),
            push("main", None),
            true,
        ),
        case(
            "paths: no changed files = no match",
            json!([{"_type": "push", "paths": ["src/**"]}]),
            push("main", None),
            false,
        ),
        case(
            "paths: empty changed files = no match",
            json!([{"_type": "push", "paths": ["src/**"]}]),
            push("main", Some(&[])),
            false,
        ),
        case(
            "paths: include matches a changed file",
            json!([{"_type": "push", "paths": ["src/**"]}]),
            push("main", Some(files)),
            true,
        ),
        case(
            "paths: include matches none",
            json!([{"_type": "push", "paths": ["lib/**"]}]),
            push("main", Some(files)),
            false,
        ),
        case(
            "paths: exclusions first, all excluded = no match",
            json!([{"_type": "push", "paths": ["**", "!docs/**", "!*.md"]}]),
            push("main", Some(docs_only)),
            false,
        ),
        case(
            "paths: only negations, remaining files match",
            json!([{"_type": "push", "paths": ["!docs/**"]}]),
            push("main", Some(files)),
            true,
        ),
        case(
            "paths: only negations, everything excluded",
            json!([{"_type": "push", "paths": ["!docs/**", "!*.md"]}]),
            push("main", Some(docs_only)),
            false,
        ),
        case(
            "paths: an excluded file cannot satisfy an include",
            json!([{"_type": "push", "paths": ["docs/**", "!docs/a.md"]}]),
            push("main", Some(&["docs/a.md", "src/x"])),
            false,
        ),
        case(
            "repos: include",
            json!([{"_type": "push", "repos": [glob("acme/*")]}]),
            push("main", None),
            true,
        ),
        case(
            "repos: exclusion",
            json!([{"_type": "push", "repos": [glob("acme/*"), glob("!acme/app")]}]),
            push("main", None),
            false,
        ),
        case(
            "repos: only negations = implicit include",
            json!([{"_type": "push", "repos": [glob("!other/*")]}]),
            push("main", None),
            true,
        ),
        case(
            "pr: events filter on the raw action",
            json!([{"_type": "pr", "events": ["opened", "synchronize"]}]),
            pr("synchronize", "main", Some("f"), None),
            true,
        ),
        case(
            "pr: action not in events",
            json!([{"_type": "pr", "events": ["opened"]}]),
            pr("closed", "main", Some("f"), None),
            false,
        ),
        case(
            "pr: target branches against the base",
            json!([{"_type": "pr", "targetBranches": [glob("main")]}]),
            pr("opened", "main", Some("f"), None),
            true,
        ),
        case(
            "pr: target branch mismatch",
            json!([{"_type": "pr", "targetBranches": [glob("main")]}]),
            pr("opened", "dev", Some("f"), None),
            false,
        ),
        case(
            "pr: source branches against the head",
            json!([{"_type": "pr", "sourceBranches": [glob("feat/**")]}]),
            pr("opened", "main", Some("feat/a/b"), None),
            true,
        ),
        case(
            "pr: sourceBranches with no source branch = no match",
            json!([{"_type": "pr", "sourceBranches": [glob("**")]}]),
            pr("opened", "main", None, None),
            false,
        ),
        case(
            "pr: paths apply too",
            json!([{"_type": "pr", "paths": ["src/**"]}]),
            pr("opened", "main", Some("f"), Some(docs_only)),
            false,
        ),
        case(
            "tag: pattern against the tag name",
            json!([{"_type": "tag", "patterns": [glob("v*.*.*")]}]),
            tag("v1.2.3"),
            true,
        ),
        case(
            "tag: a branch push is not a tag",
            json!([{"_type": "tag", "patterns": []}]),
            push("v1.2.3", None),
            false,
        ),
        case(
            "tag: pattern mismatch",
            json!([{"_type": "tag", "patterns": [glob("v*.*.*")]}]),
            tag("v1.2"),
            false,
        ),
        case(
            "triggers are OR-ed",
            json!([{"_type": "tag"}, {"_type": "push", "branches": [glob("main")]}]),
            push("main", None),
            true,
        ),
        case(
            "unsupported trigger kinds never match",
            json!([{"_type": "schedule", "cronExpression": "* * * * *"}]),
            push("main", None),
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for c in cases {
        let d = match_workflow(&workflow(c.triggers), &c.event);
        if d.matched != c.matched {
            wrong.push(format!(
                "{}: matched={} want {} ({})",
                c.name, d.matched, c.matched, d.summary
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn first_match_wins_and_is_named() {
    let wf = workflow(
        json!([{"_type": "push", "branches": [glob("dev")]}, {"_type": "push"}, {"_type": "push"}]),
    );
    let d = match_workflow(&wf, &push("main", None));
    assert_eq!(d.matched_trigger, Some(1));
    assert_eq!(d.summary, "Matched trigger 2 (push)");
}

#[test]
fn the_trace_says_why_nothing_matched() {
    let wf = workflow(
        json!([{"_type": "push", "branches": [glob("main")], "paths": ["src/**"]}, {"_type": "pr"}]),
    );
    let d = match_workflow(&wf, &push("main", None));
    assert!(!d.matched);
    assert_eq!(d.summary, "No triggers matched");
    let paths = d
        .checks
        .iter()
        .find(|c| c.check == "paths")
        .expect("paths check");
    assert!(!paths.passed);
    assert_eq!(
        paths.reason.as_deref(),
        Some("no changed files are known for this event")
    );
    let json = serde_json::to_value(&d).expect("serializable");
    assert_eq!(json["workflowName"], "ci");
    assert!(json.get("matchedTrigger").is_none());
    assert_eq!(
        json["checks"][0],
        json!({"check": "event type", "pattern": "push", "value": "push", "passed": true,
               "trigger": 0})
    );
    // What `pipeline::explain` needs: the trigger of each check, the pattern list, the file count.
    assert_eq!(json["checks"][1]["patterns"], json!(["main"]));
    assert_eq!(json["checks"][2]["patterns"], json!(["src/**"]));
    assert_eq!(json["checks"][2]["files"], 0);
    assert_eq!(json["checks"][3]["trigger"], 1);
    assert_eq!(
        json["checks"].as_array().map(Vec::len),
        Some(4),
        "push: type, branch, paths; pr: type"
    );
}

#[test]
fn unknown_events_match_nothing_and_say_so() {
    let e = normalize_github("gollum", None, &json!({}));
    let d = match_workflow(&workflow(json!([{"_type": "push"}])), &e);
    assert!(!d.matched);
    assert!(d.summary.contains("gollum"), "{}", d.summary);
}

#[test]
fn trace_text_is_clamped() {
    let long: Vec<String> = (0..100).map(|i| format!("some/long/path/{i}.rs")).collect();
    let mut e = push("main", None);
    e.changed_files = Some(long);
    let d = match_workflow(
        &workflow(json!([{"_type": "push", "paths": ["docs/**"]}])),
        &e,
    );
    let value = &d
        .checks
        .iter()
        .find(|c| c.check == "paths")
        .expect("paths")
        .value;
    assert!(value.chars().count() <= TRACE_TEXT_MAX + 1 && value.ends_with('…'));
}

#[test]
fn comment_and_release_triggers() {
    let comment = |body: &str, on_pr: bool| {
        let mut issue = json!({"number": 1});
        if on_pr {
            issue["pull_request"] = json!({"url": "x"});
        }
        normalize_github(
            "issue_comment",
            None,
            &json!({"action": "created", "issue": issue, "comment": {"body": body}, "repository": {"full_name": "acme/app"}}),
        )
    };
    let wf = workflow(
        json!([{"_type": "comment", "actions": ["created"], "source": "pr", "bodyMatch": {"type": "regex", "pattern": "^/kici run"}}]),
    );
    assert!(match_workflow(&wf, &comment("/kici run all", true)).matched);
    assert!(
        !match_workflow(&wf, &comment("/kici run all", false)).matched,
        "issue, not PR"
    );
    assert!(!match_workflow(&wf, &comment("lgtm", true)).matched, "body");
    let release = normalize_github(
        "release",
        None,
        &json!({"action": "published", "release": {"target_commitish": "main"}}),
    );
    assert!(
        match_workflow(
            &workflow(json!([{"_type": "release", "actions": ["published"]}])),
            &release
        )
        .matched
    );
    assert!(
        !match_workflow(
            &workflow(json!([{"_type": "release", "actions": ["created"]}])),
            &release
        )
        .matched
    );
}

#[test]
fn generic_webhook_triggers() {
    let e = normalize_generic(
        "src-1",
        "stripe",
        "invoice.paid",
        &json!({"data": {"amount": 5, "currency": "eur", "tags": ["a"]}}),
    );
    let t = |extra: Value| {
        let mut trig = json!({"_type": "generic_webhook", "source": "stripe"});
        if let (Some(t), Some(x)) = (trig.as_object_mut(), extra.as_object()) {
            t.extend(x.clone());
        }
        workflow(json!([trig]))
    };
    assert!(match_workflow(&t(json!({})), &e).matched, "by source name");
    assert!(
        match_workflow(&t(json!({"source": "src-1"})), &e).matched,
        "by source id"
    );
    assert!(!match_workflow(&t(json!({"source": "github"})), &e).matched);
    assert!(match_workflow(&t(json!({"events": ["invoice.paid"]})), &e).matched);
    assert!(!match_workflow(&t(json!({"events": ["invoice.failed"]})), &e).matched);
    assert!(
        match_workflow(
            &t(json!({"match": {"$.data.currency": ["usd", "eur"], "$.data.amount": 5}})),
            &e
        )
        .matched
    );
    assert!(match_workflow(&t(json!({"match": {"$.data.currency": "/^E/i"}})), &e).matched);
    assert!(!match_workflow(&t(json!({"match": {"$.data.missing": 1}})), &e).matched);
    assert!(!match_workflow(&t(json!({"not": {"$['data'].tags[0]": "a"}})), &e).matched);
    assert!(match_workflow(&t(json!({"not": {"$.data.currency": "usd"}})), &e).matched);
    let d = match_workflow(&t(json!({"match": {"$..amount": 5}})), &e);
    assert!(!d.matched);
    assert!(d.checks.iter().any(|c| c
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("not supported"))));
    assert!(!match_workflow(&t(json!({})), &push("main", None)).matched);
}

#[test]
fn changed_files_are_needed_only_for_path_filters_of_this_kind() {
    let with_paths = vec![workflow(json!([{"_type": "push", "paths": ["src/**"]}]))];
    let without = vec![workflow(
        json!([{"_type": "push"}, {"_type": "pr", "paths": ["x"]}]),
    )];
    assert!(needs_changed_files(&with_paths, &push("main", None)));
    assert!(!needs_changed_files(&without, &push("main", None)));
    assert!(needs_changed_files(
        &without,
        &pr("opened", "main", Some("f"), None)
    ));
}

#[test]
fn match_paths_and_repos_directly() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(match_paths(&[], &[]));
    assert!(!match_paths(&s(&["!x"]), &[]));
    assert!(match_paths(&s(&["**/*.rs"]), &s(&["a/b.rs"])));
    let repos: Vec<BranchPattern> =
        serde_json::from_value(json!([{"type": "regex", "pattern": "^acme/"}])).expect("p");
    assert!(match_repos(&repos, "acme/x"));
    assert!(!match_repos(&repos, "other/x"));
}
