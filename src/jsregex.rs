//! JavaScript regexes from lock files (`new RegExp(source, flags).test(text)`) on the `regex`
//! crate. The crate matches in linear time, so a lock file's pattern cannot stall the
//! orchestrator (the reference needed a separate ReDoS guard for that); in exchange it has no
//! lookaround and no backreferences, and such a pattern is refused with a message saying so.
//!
//! Flags: `i`, `m`, `s` map to the crate's; `u` and `v` are accepted (the crate is Unicode-aware
//! already); `g` and `d` do not change what `test` answers on a fresh RegExp and are ignored;
//! `y` (sticky, from index 0) anchors the match at the start. Any other or repeated flag is an
//! error, as `new RegExp` throws. Without `s`, `.` excludes JavaScript's line terminators;
//! `\d` and `\w` (and `\D`, `\W` outside classes) are ASCII, as in JavaScript.

use std::fmt;

use crate::pipeline::limits;

/// A compiled JavaScript regex.
#[derive(Debug, Clone)]
pub struct JsRegex {
    source: String,
    flags: String,
    regex: regex::Regex,
}

/// A source or flag set that cannot be compiled, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsRegexError {
    pub source: String,
    pub flags: String,
    pub reason: String,
}

impl fmt::Display for JsRegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "regex /{}/{} cannot be used: {}",
            excerpt_source(&self.source),
            self.flags,
            self.reason
        )
    }
}

impl std::error::Error for JsRegexError {}

/// The source as written when short, else its start and length (a hostile 40 KB source must
/// not fill the run's failure reason).
fn excerpt_source(source: &str) -> String {
    if source.len() <= 64 {
        return source.to_owned();
    }
    let shown = limits::excerpt(source);
    // `excerpt` quotes like `{:?}`; between slashes the quotes are noise
    shown.trim_start_matches('"').replacen("\"…", "…", 1)
}

/// Bounds the compiled size of one pattern (the crate's default is 10 MiB).
const SIZE_LIMIT: usize = 1 << 20;

impl JsRegex {
    pub fn new(source: &str, flags: &str) -> Result<JsRegex, JsRegexError> {
        let error = |reason: String| JsRegexError {
            source: source.to_owned(),
            flags: flags.to_owned(),
            reason,
        };
        let mut prefix = String::new();
        let (mut dot_all, mut sticky) = (false, false);
        let mut seen = String::new();
        for flag in flags.chars() {
            if seen.contains(flag) {
                return Err(error(format!("flag `{flag}` is repeated")));
            }
            seen.push(flag);
            match flag {
                'i' => prefix.push('i'),
                'm' => prefix.push('m'),
                's' => {
                    dot_all = true;
                    prefix.push('s');
                }
                'y' => sticky = true,
                'u' | 'v' | 'g' | 'd' => {}
                other => {
                    return Err(error(format!(
                        "unknown flag `{other}` (JavaScript knows dgimsuvy)"
                    )))
                }
            }
        }
        // Before translating: the regex crate's parser has its own nesting limit (250), but
        // the lock file's bound is the same for every pattern kind, and a message that names
        // it helps more than the crate's.
        check_limits(source).map_err(error)?;
        let body = translate(source, dot_all).map_err(error)?;
        let mut pattern = String::new();
        if !prefix.is_empty() {
            pattern.push_str(&format!("(?{prefix})"));
        }
        if sticky {
            pattern.push_str(r"\A");
        }
        pattern.push_str(&format!("(?:{body})"));
        let regex = regex::RegexBuilder::new(&pattern)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| error(first_line(&e.to_string())))?;
        Ok(JsRegex {
            source: source.to_owned(),
            flags: flags.to_owned(),
            regex,
        })
    }

    /// `RegExp.prototype.test`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn flags(&self) -> &str {
        &self.flags
    }
}

fn first_line(s: &str) -> String {
    // the crate's messages draw the pattern over several lines; the last one says what is wrong
    let last = s.lines().rev().find(|l| !l.trim().is_empty());
    last.unwrap_or(s).trim().to_owned()
}

/// The lock file's bounds on a regex source (`limits`): its length, and how deeply its groups
/// nest, counted without recursion (`\\` escapes the next character; a class's content is
/// literal; in JavaScript a `]` right after `[` closes the class).
pub fn check_limits(source: &str) -> Result<(), String> {
    limits::check_length(source.len())?;
    let (mut depth, mut deepest, mut in_class) = (0usize, 0usize, false);
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '[' => in_class = true,
            '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    limits::check_nesting(deepest)
}

/// Rewrites the JavaScript-only spellings; refuses what the crate cannot do.
fn translate(source: &str, dot_all: bool) -> Result<String, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    return Err("it ends with a lone backslash".to_owned());
                };
                i += 2;
                match n {
                    '1'..='9' => return Err("backreferences are not supported".to_owned()),
                    'k' if chars.get(i) == Some(&'<') => {
                        return Err("named backreferences are not supported".to_owned())
                    }
                    'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                    'w' => out.push_str(if in_class {
                        "0-9A-Za-z_"
                    } else {
                        "[0-9A-Za-z_]"
                    }),
                    'D' if !in_class => out.push_str("[^0-9]"),
                    'W' if !in_class => out.push_str("[^0-9A-Za-z_]"),
                    'c' => match chars.get(i) {
                        Some(l) if l.is_ascii_alphabetic() => {
                            out.push_str(&format!(r"\x{:02X}", (*l as u8) % 32));
                            i += 1;
                        }
                        _ => out.push_str(r"\\c"),
                    },
                    '0' if !chars.get(i).is_some_and(char::is_ascii_digit) => out.push_str(r"\x00"),
                    '/' => out.push('/'),
                    'b' if in_class => out.push_str(r"\x08"),
                    'n' | 'r' | 't' | 'v' | 'f' | 's' | 'S' | 'b' | 'B' | 'D' | 'W' => {
                        out.push('\\');
                        out.push(n);
                    }
                    'x' | 'u' => {
                        let width = if n == 'x' { 2 } else { 4 };
                        let hex: String = chars[i..].iter().take(width).collect();
                        let braced = n == 'u' && chars.get(i) == Some(&'{');
                        if hex.len() == width && hex.chars().all(|h| h.is_ascii_hexdigit()) {
                            out.push_str(&format!(r"\x{{{hex}}}"));
                            i += width;
                        } else if braced {
                            out.push_str(r"\x"); // `\u{…}` (u flag) is the crate's `\x{…}`
                        } else {
                            out.push(n); // identity escape
                        }
                    }
                    'p' | 'P' if chars.get(i) == Some(&'{') => {
                        out.push('\\');
                        out.push(n);
                    }
                    n if n.is_ascii_alphanumeric() => out.push(n), // identity escape
                    n => {
                        out.push('\\');
                        out.push(n);
                    }
                }
                continue;
            }
            '[' if !in_class => {
                if chars.get(i + 1) == Some(&'^') && chars.get(i + 2) == Some(&']') {
                    out.push_str("(?s:.)");
                    i += 3;
                    continue;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str(r"[^\x00-\x{10FFFF}]");
                    i += 2;
                    continue;
                }
                in_class = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            '[' => out.push_str(r"\["), // literal inside a JS class; nested class in the crate
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' | '-' if in_class && chars.get(i + 1) == Some(&c) => {
                out.push('\\');
                out.push(c); // `&&`, `~~`, `--` are set operators in the crate
            }
            '.' if !in_class && !dot_all => out.push_str(r"[^\n\r\x{2028}\x{2029}]"),
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => match chars.get(i + 2) {
                Some('=' | '!') => return Err("lookahead is not supported".to_owned()),
                Some('<') if matches!(chars.get(i + 3), Some('=' | '!')) => {
                    return Err("lookbehind is not supported".to_owned())
                }
                _ => out.push('('),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(source: &str, flags: &str, text: &str) -> bool {
        JsRegex::new(source, flags).expect(source).is_match(text)
    }

    #[test]
    fn javascript_semantics() {
        assert!(t("^release/v\\d+$", "", "release/v12"));
        assert!(
            !t("^release/v\\d+$", "", "release/v١"),
            "\\d is ASCII in JavaScript"
        );
        assert!(t("^MAIN$", "i", "main"));
        assert!(!t("^MAIN$", "", "main"));
        assert!(t("feat", "", "my-feature"), "test() searches");
        assert!(!t("feat", "y", "my-feature"), "sticky anchors at 0");
        assert!(t("^a.b$", "", "a-b"));
        assert!(!t("^a.b$", "", "a\nb"));
        assert!(t("^a.b$", "s", "a\nb"));
        assert!(t("^b$", "m", "a\nb"));
        assert!(t("^a\\/b$", "", "a/b"));
        assert!(t("^[^]$", "", "\n"));
        assert!(
            t("^x[a&&b]$", "", "x&"),
            "`&&` is not an operator in JavaScript"
        );
        assert!(t("^(?<name>a)$", "g", "a"));
    }

    #[test]
    fn refused_with_reasons() {
        let cases = [
            ("a(?=b)", "", "lookahead"),
            ("(?<!a)b", "", "lookbehind"),
            ("(a)\\1", "", "backreference"),
            ("a", "x", "unknown flag"),
            ("a", "ii", "repeated"),
            ("(", "", "regex /(/"),
        ];
        for (source, flags, expected) in cases {
            let err = JsRegex::new(source, flags).expect_err(source).to_string();
            assert!(err.contains(expected), "{source}: {err}");
        }
    }

    #[test]
    fn nesting_at_the_limit_compiles_one_more_is_refused() {
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")+".repeat(n));
        assert!(t(&nested(32), "", "aaa"));
        let err = JsRegex::new(&nested(33), "")
            .expect_err("33 levels")
            .to_string();
        assert!(err.contains("nests 33 levels deep, more than 32"), "{err}");
        let escaped = format!("{}a", r"\(".repeat(40));
        assert!(
            JsRegex::new(&escaped, "").is_ok(),
            "escaped parens do not nest"
        );
        let in_class = format!("[{}]", "(".repeat(40));
        assert!(
            JsRegex::new(&in_class, "").is_ok(),
            "parens in a class do not nest"
        );
    }

    #[test]
    fn length_at_the_limit_compiles_one_more_is_refused() {
        let at = "a".repeat(1024);
        assert!(t(&at, "", &at));
        let err = JsRegex::new(&format!("{at}a"), "")
            .expect_err("1025 bytes")
            .to_string();
        assert!(err.contains("1025 bytes long, more than 1024"), "{err}");
        assert!(err.len() < 300, "the message quotes only an excerpt: {err}");
    }

    #[test]
    fn twenty_thousand_levels_are_refused_without_a_stack_overflow() {
        let deep = format!("{}a{}", "(".repeat(20_000), ")".repeat(20_000));
        let err = JsRegex::new(&deep, "").expect_err("40 KB").to_string();
        assert!(err.contains("more than 1024"), "{err}");
    }

    #[test]
    fn catastrophic_patterns_run_in_linear_time() {
        let re = JsRegex::new("^(a+)+$", "").expect("compiles");
        let text = format!("{}!", "a".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(!re.is_match(&text));
        assert!(started.elapsed().as_secs() < 5);
    }
}

#[cfg(test)]
mod props {
    //! Lock-file regexes (label matchers, branch patterns, `/re/flags` filters) are hostile text.

    use proptest::prelude::*;

    use super::JsRegex;

    fn regex_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => prop::sample::select(vec![
                "(", ")", "(?:", "(?=", "(?!", "(?<=", "(?<n>", "[", "]", "[^", "[^]", "[]",
                "\\", "\\d", "\\w", "\\b", "\\1", "\\k<", "\\c", "\\x4", "\\u{", "\\u00e9",
                "\\p{L}", "&&", "--", "~~", "{", "}", "{2,3}", "*", "+", "?", "|", ".", "^", "$",
                "a", "é", "😀", "\n",
            ])
            .prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_translating_and_matching(
            source in regex_text(),
            flags in "[dgimsuvyx]{0,3}",
            text in any::<String>(),
        ) {
            if let Ok(re) = JsRegex::new(&source, &flags) {
                re.is_match(&text);
            }
        }

        #[test]
        fn never_panics_on_arbitrary_text(source in any::<String>(), flags in any::<String>()) {
            let _ = JsRegex::new(&source, &flags);
        }
    }
}
