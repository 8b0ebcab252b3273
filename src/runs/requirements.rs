//! What a queued job asks of an agent (its `runsOn` labels and patterns, its exclusions) and
//! whether an agent's labels and taint satisfy it. Pure.
//!
//! Patterns are JavaScript regexes from the lock file (`{kind: 'regex', source, flags}`), flags
//! honoured. They are stored in `dispatch_queue` as a plain string when they have no flags (the
//! historical format, still read) and as `{"source", "flags"}` otherwise. A claim compiles each
//! distinct pattern once ([`Compiled`]), before any row is locked.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::jsregex::JsRegex;

/// A regex label matcher: `new RegExp(source, flags)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Pattern {
    pub source: String,
    pub flags: String,
}

impl Pattern {
    /// A pattern without flags.
    pub fn plain(source: &str) -> Pattern {
        Pattern {
            source: source.to_owned(),
            flags: String::new(),
        }
    }

    /// As stored in a `dispatch_queue` pattern column.
    pub fn to_json(&self) -> Value {
        if self.flags.is_empty() {
            json!(self.source)
        } else {
            json!({ "source": self.source, "flags": self.flags })
        }
    }

    /// From a stored element: a string, or an object with `source` and `flags`.
    pub fn from_json(v: &Value) -> Option<Pattern> {
        match v {
            Value::String(s) => Some(Pattern::plain(s)),
            Value::Object(o) => Some(Pattern {
                source: o.get("source")?.as_str()?.to_owned(),
                flags: o
                    .get("flags")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            }),
            _ => None,
        }
    }
}

/// Stored pattern list → patterns (elements that are neither form are dropped).
pub fn patterns_from_json(v: &Value) -> Vec<Pattern> {
    v.as_array()
        .map(|a| a.iter().filter_map(Pattern::from_json).collect())
        .unwrap_or_default()
}

/// Patterns → the stored list.
pub fn patterns_to_json(patterns: &[Pattern]) -> Value {
    Value::Array(patterns.iter().map(Pattern::to_json).collect())
}

/// What a queued job asks of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    pub labels: Vec<String>,
    pub patterns: Vec<Pattern>,
    pub exclude_labels: Vec<String>,
    pub exclude_patterns: Vec<Pattern>,
}

/// Compiled patterns, each distinct `(source, flags)` compiled once; a pattern that does not
/// compile is remembered as such (and never matches).
#[derive(Default)]
pub struct Compiled {
    cache: HashMap<Pattern, Option<JsRegex>>,
}

impl Compiled {
    fn matches_any(&mut self, p: &Pattern, labels: &[String]) -> bool {
        self.cache
            .entry(p.clone())
            .or_insert_with(|| JsRegex::new(&p.source, &p.flags).ok())
            .as_ref()
            .is_some_and(|re| labels.iter().any(|l| re.is_match(l)))
    }

    /// Whether an agent with `labels` and `taint` may take a job: every exact label present,
    /// every pattern matching some label, no excluded label or pattern hit, and every taint label
    /// among the job's own `runsOn` labels. Patterns that do not compile never match.
    pub fn eligible(&mut self, labels: &[String], taint: &[String], req: &Requirements) -> bool {
        let has = |l: &String| labels.contains(l);
        req.labels.iter().all(has)
            && req.patterns.iter().all(|p| self.matches_any(p, labels))
            && !req.exclude_labels.iter().any(has)
            && !req
                .exclude_patterns
                .iter()
                .any(|p| self.matches_any(p, labels))
            && taint.iter().all(|t| req.labels.contains(t))
    }
}

/// [`Compiled::eligible`] for one job (compiles its patterns).
pub fn eligible(labels: &[String], taint: &[String], req: &Requirements) -> bool {
    Compiled::default().eligible(labels, taint, req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn p(v: &[&str]) -> Vec<Pattern> {
        v.iter().map(|x| Pattern::plain(x)).collect()
    }

    #[test]
    fn eligibility() {
        let agent = s(&["linux", "x64", "kici:os:linux"]);
        let req = |l: &[&str], pt: &[&str], xl: &[&str], xp: &[&str]| Requirements {
            labels: s(l),
            patterns: p(pt),
            exclude_labels: s(xl),
            exclude_patterns: p(xp),
        };
        assert!(
            eligible(&agent, &[], &req(&[], &[], &[], &[])),
            "no labels: any agent"
        );
        assert!(eligible(&agent, &[], &req(&["linux"], &[], &[], &[])));
        assert!(!eligible(
            &agent,
            &[],
            &req(&["linux", "gpu"], &[], &[], &[])
        ));
        assert!(eligible(&agent, &[], &req(&[], &["^x(64|86)$"], &[], &[])));
        assert!(!eligible(&agent, &[], &req(&[], &["^arm"], &[], &[])));
        assert!(!eligible(&agent, &[], &req(&["linux"], &[], &["x64"], &[])));
        assert!(!eligible(
            &agent,
            &[],
            &req(&["linux"], &[], &[], &["^kici:os:"])
        ));
        assert!(
            !eligible(&agent, &[], &req(&[], &["("], &[], &[])),
            "a broken pattern matches nothing"
        );
        // Taint: a tainted agent only takes jobs that ask for the taint.
        let taint = s(&["gpu"]);
        let gpu_agent = s(&["linux", "gpu"]);
        assert!(!eligible(
            &gpu_agent,
            &taint,
            &req(&["linux"], &[], &[], &[])
        ));
        assert!(eligible(
            &gpu_agent,
            &taint,
            &req(&["linux", "gpu"], &[], &[], &[])
        ));
    }

    #[test]
    fn flags_are_honoured() {
        let agent = s(&["Linux-X64"]);
        let ci = Pattern {
            source: "^linux".into(),
            flags: "i".into(),
        };
        let with = |pattern: Pattern| Requirements {
            patterns: vec![pattern],
            ..Requirements::default()
        };
        assert!(eligible(&agent, &[], &with(ci.clone())), "`i` ignores case");
        assert!(!eligible(&agent, &[], &with(Pattern::plain("^linux"))));
        let excluded = Requirements {
            exclude_patterns: vec![ci.clone()],
            ..Requirements::default()
        };
        assert!(!eligible(&agent, &[], &excluded));
        // An unknown flag is refused as `new RegExp` would: the pattern never matches.
        let bad = Pattern {
            source: "^Linux".into(),
            flags: "q".into(),
        };
        assert!(!eligible(&agent, &[], &with(bad)));
    }

    #[test]
    fn stored_forms_round_trip() {
        let plain = Pattern::plain("^x64$");
        let flagged = Pattern {
            source: "^linux".into(),
            flags: "i".into(),
        };
        let stored = patterns_to_json(&[plain.clone(), flagged.clone()]);
        assert_eq!(stored, json!(["^x64$", {"source": "^linux", "flags": "i"}]));
        assert_eq!(patterns_from_json(&stored), [plain, flagged]);
        assert_eq!(patterns_from_json(&json!([1, null])), []);
        assert_eq!(patterns_from_json(&Value::Null), []);
    }

    #[test]
    fn each_pattern_is_compiled_once() {
        let mut compiled = Compiled::default();
        let req = Requirements {
            patterns: p(&["^linux$"]),
            ..Requirements::default()
        };
        for _ in 0..3 {
            assert!(compiled.eligible(&s(&["linux"]), &[], &req));
        }
        assert_eq!(compiled.cache.len(), 1);
    }
}
