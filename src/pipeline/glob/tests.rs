//! The glob matcher against picomatch itself (`tests/data/picomatch-golden.jsonl`) and against
//! picomatch behaviours the golden table does not cover.

use super::{is_match, Glob};

#[derive(serde::Deserialize)]
struct Case {
    pattern: String,
    input: String,
    #[serde(rename = "match")]
    expected: bool,
}

#[test]
fn agrees_with_every_picomatch_golden_case() {
    let text = include_str!("../../../tests/data/picomatch-golden.jsonl");
    let mut lines = text.lines();
    let about = lines.next().unwrap_or_default();
    assert!(
        about.contains("\"about\""),
        "first line is the about record"
    );
    let mut total = 0;
    let mut disagreements = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let case: Case =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 2));
        total += 1;
        let glob = Glob::new(&case.pattern).unwrap_or_else(|e| panic!("{e}"));
        let got = glob.is_match(&case.input);
        if got != case.expected {
            disagreements.push(format!(
                "  isMatch({:?}, {:?}): picomatch {} / ours {}",
                case.input, case.pattern, case.expected, got
            ));
        }
    }
    assert_eq!(total, 3657, "the golden table has 3,657 cases");
    assert!(
        disagreements.is_empty(),
        "{} of {total} cases disagree with picomatch; first 20:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Cases outside the golden table, from picomatch's documented behaviour.
#[test]
fn picomatch_behaviours_beyond_the_golden_table() {
    let cases: &[(&str, &str, bool)] = &[
        // leading `!` negates the whole pattern
        ("!main", "dev", true),
        ("!main", "main", false),
        ("!!main", "main", true),
        // extglobs
        ("+(a|b)", "a", true),
        ("+(a|b)", "abab", true),
        ("+(a|b)", "c", false),
        ("@(main|dev)", "dev", true),
        ("@(main|dev)", "devx", false),
        ("?(a)b", "b", true),
        ("?(a)b", "ab", true),
        ("*(ab)c", "ababc", true),
        ("!(main)", "dev", true),
        ("!(main)", "main", false),
        ("release/!(beta)", "release/stable", true),
        ("release/!(beta)", "release/beta", false),
        ("*.!(js)", "a.md", true),
        ("*.!(js)", "a.js", false),
        // numeric and letter ranges in braces
        ("v{1..3}", "v2", true),
        ("v{1..3}", "v4", false),
        ("{a..c}x", "bx", true),
        // escapes
        (r"a\*b", "a*b", true),
        (r"a\*b", "axb", false),
        (r"\[x\]", "[x]", true),
        // leading ./ on the pattern
        ("./src/*.rs", "src/a.rs", true),
        // posix classes
        ("[[:digit:]]*", "1abc", true),
        ("[[:digit:]]*", "abc", false),
        // dotfiles only when the pattern segment starts with a dot
        ("*", ".env", false),
        (".*", ".env", true),
        ("src/**", "src/.cache/x", false),
        ("src/**/.cache/*", "src/a/.cache/x", true),
        // an input equal to the pattern always matches, even with glob characters
        ("[!a]*", "[!a]*", true),
        // empty input never matches
        ("*", "", false),
        // `**` only as a whole segment: `a**` is a plain star
        ("a**", "abc", true),
        ("a**", "a/bc", false),
    ];
    let mut wrong = Vec::new();
    for &(pattern, input, expected) in cases {
        if is_match(input, pattern) != expected {
            wrong.push(format!(
                "isMatch({input:?}, {pattern:?}) should be {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn invalid_patterns_are_errors_that_name_the_pattern() {
    let err = Glob::new("").expect_err("empty");
    assert!(err.to_string().contains("empty"));
    let err = Glob::new(r"(a)\1").expect_err("backreference");
    assert!(err.to_string().contains(r#""(a)\\1""#), "{err}");
    assert!(err.to_string().contains("kici compile"), "{err}");
    assert!(!is_match("x", ""));
}

#[test]
fn hostile_patterns_and_inputs_stay_fast() {
    let input = format!("{}!", "a".repeat(4000));
    let started = std::time::Instant::now();
    for pattern in [
        "*(*(a))b",
        "+(a|aa)+(a|aa)c",
        "**/**/**/**/*b",
        "!(!(!(a)))b",
    ] {
        let glob = Glob::new(pattern).expect(pattern);
        assert!(!glob.is_match(&input), "{pattern}");
    }
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
}

/// The same pattern nested `levels` deep with each of the glob's nesting constructs.
fn nested(levels: usize) -> Vec<(&'static str, String)> {
    let wrap =
        |open: &str, close: &str| format!("{}a{}", open.repeat(levels), close.repeat(levels));
    vec![
        ("@(", wrap("@(", ")")),
        ("!(", wrap("!(", ")")),
        ("+(", wrap("+(", ")")),
        ("*(", wrap("*(", ")")),
        ("?(", wrap("?(", ")")),
        ("(", wrap("(", ")")),
        ("{", wrap("{", ",b}")),
        ("[", wrap("[", "]")),
    ]
}

#[test]
fn nesting_at_the_limit_compiles_one_more_is_refused() {
    use crate::pipeline::limits::PATTERN_NESTING_DEPTH;
    // `[` does not nest (a class's content is literal), so `[[[a]]]` is one level: it is
    // here to show it compiles at any depth rather than being refused.
    for (construct, pattern) in nested(PATTERN_NESTING_DEPTH) {
        if let Err(e) = Glob::new(&pattern) {
            panic!("{construct} at the limit: {e}");
        }
    }
    for (construct, pattern) in nested(PATTERN_NESTING_DEPTH + 1) {
        let result = Glob::new(&pattern);
        if construct == "[" {
            assert!(result.is_ok(), "a class is one level");
            continue;
        }
        let err = result.expect_err(construct).to_string();
        assert!(
            err.contains("nests 33 levels deep, more than 32"),
            "{construct}: {err}"
        );
    }
}

#[test]
fn twenty_thousand_levels_are_refused_without_a_stack_overflow() {
    // 40 KB, within the lock-file size limit: this used to abort the whole process.
    for (construct, pattern) in nested(20_000) {
        let result = Glob::new(&pattern);
        if construct == "[" {
            let err = result
                .expect_err("40 KB is over the length limit")
                .to_string();
            assert!(err.contains("bytes long, more than 1024"), "{err}");
            continue;
        }
        let err = result.expect_err(construct).to_string();
        assert!(
            err.contains("nests 20000 levels deep"),
            "{construct}: {err}"
        );
        assert!(err.len() < 400, "the message quotes only an excerpt: {err}");
    }
}

#[test]
fn length_at_the_limit_compiles_one_more_is_refused() {
    use crate::pipeline::limits::PATTERN_BYTES;
    let at = "a".repeat(PATTERN_BYTES);
    let glob = Glob::new(&at).expect("1024 bytes");
    assert!(glob.is_match(&at));
    let err = Glob::new(&format!("{at}a"))
        .expect_err("1025 bytes")
        .to_string();
    assert!(err.contains("1025 bytes long, more than 1024"), "{err}");
}

#[test]
fn escaped_and_bracketed_openers_do_not_count_as_nesting() {
    let escaped = r"\(".repeat(40);
    assert!(Glob::new(&escaped).is_ok(), "escaped parens are literal");
    let in_class = format!("[{}]", "(".repeat(40));
    assert!(
        Glob::new(&in_class).is_ok(),
        "parens in a class are literal"
    );
    assert!(is_match("(", &in_class));
}

#[test]
fn openers_after_an_unclosed_class_are_literal_or_meet_the_engines_backstop() {
    // The nesting count ignores a class's content; picomatch reads a `[` without `]` as a
    // literal but still tokenizes what followed it, so `{` there can open regex groups. The
    // engine's own depth bound refuses those cleanly.
    for opener in ["(", "@(", "{", "!("] {
        let pattern = format!("[{}a", opener.repeat(300));
        match Glob::new(&pattern) {
            Ok(glob) => assert!(glob.is_match(&pattern), "{opener}: the text itself matches"),
            Err(e) => assert!(
                e.reason.contains("nests more than 144 groups"),
                "{opener}: {e}"
            ),
        }
    }
}
