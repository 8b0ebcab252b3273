//! Glob → regex source, with picomatch 4's default-option semantics (posix, `dot: false`), so a
//! branch or path filter means here what it meant to the reference orchestrator.
//!
//! picomatch is a tokenizer whose decisions depend on the previous token and that sometimes
//! rewrites output it already produced (a `*` that turns out to be `**`, `a/**` at the end,
//! `{a}` that had no comma). This module makes the same decisions over its own token list; the
//! golden table in `tests/data/picomatch-golden.jsonl` (made by picomatch itself) pins them.
//! The output is JavaScript regex syntax, run by `engine` (which has the lookaheads it needs).

const DOT_LITERAL: &str = r"\.";
const PLUS_LITERAL: &str = r"\+";
const SLASH_LITERAL: &str = r"\/";
const ONE_CHAR: &str = "(?=.)";
const QMARK: &str = "[^/]";
const QMARK_NO_DOT: &str = r"[^.\/]";
const NO_DOT: &str = r"(?!\.)";
const NO_DOT_SLASH: &str = r"(?!\.{0,1}(?:\/|$))";
const STAR: &str = "[^/]*?";
/// `**` without `dot`: any text, but no path segment may start with `.`.
const GLOBSTAR: &str = r"(?:(?:(?!(?:^|\/)\.).)*?)";

/// The full regex source for `pattern` (anchored; negated patterns wrapped).
pub fn regex_source(pattern: &str) -> String {
    let fast = if pattern.starts_with('.') || pattern.starts_with('*') {
        fastpath(pattern)
    } else {
        None
    };
    let (output, negated) = match fast {
        Some(output) => (output, false),
        None => Parser::new(pattern).run(),
    };
    let source = format!("^(?:{output})$");
    if negated {
        format!("^(?!{source}).*$")
    } else {
        source
    }
}

fn replacements(input: &str) -> &str {
    match input {
        "***" => "*",
        "**/**" | "**/**/**" => "**",
        other => other,
    }
}

/// picomatch's precompiled shapes for the most common patterns (`*`, `**/*.ext`, …).
fn fastpath(pattern: &str) -> Option<String> {
    let input = replacements(pattern);
    let input = input.strip_prefix("./").unwrap_or(input);
    create(input).map(|source| format!("{source}{SLASH_LITERAL}?"))
}

fn create(s: &str) -> Option<String> {
    let any_dir = format!("(?:{NO_DOT}{GLOBSTAR}{SLASH_LITERAL})?");
    Some(match s {
        "*" => format!("{NO_DOT}{ONE_CHAR}{STAR}"),
        ".*" => format!("{DOT_LITERAL}{ONE_CHAR}{STAR}"),
        "*.*" => format!("{NO_DOT}{STAR}{DOT_LITERAL}{ONE_CHAR}{STAR}"),
        "*/*" => format!("{NO_DOT}{STAR}{SLASH_LITERAL}{ONE_CHAR}{NO_DOT}{STAR}"),
        "**" => format!("{NO_DOT}{GLOBSTAR}"),
        "**/*" => format!("{any_dir}{NO_DOT}{ONE_CHAR}{STAR}"),
        "**/*.*" => format!("{any_dir}{NO_DOT}{STAR}{DOT_LITERAL}{ONE_CHAR}{STAR}"),
        "**/.*" => format!("{any_dir}{DOT_LITERAL}{ONE_CHAR}{STAR}"),
        _ => {
            // `<shape>.<word chars>`, split at the leftmost dot that leaves only word chars.
            let (head, ext) = s
                .char_indices()
                .filter(|&(_, c)| c == '.')
                .find_map(|(i, _)| {
                    let ext = &s[i + 1..];
                    let word = !ext.is_empty()
                        && ext.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    word.then(|| (&s[..i], ext))
                })?;
            if head.chars().any(is_line_terminator) {
                return None;
            }
            format!("{}{DOT_LITERAL}{ext}", create(head)?)
        }
    })
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

const REGEX_SPECIAL: &str = "-*+?.^${}(|)[]";

fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if REGEX_SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Patterns with no `/`, brackets, braces, parens or quotes and not starting with `*`/`!`
/// become a regex directly: runs of one non-word character are escaped, `?` is one character
/// (no leading dot at the start), any run of `*` is one star.
fn simple_output(input: &[char]) -> String {
    let mut out = String::new();
    let mut backslashes = false;
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if is_word_char(c) {
            out.push(c);
            i += 1;
            continue;
        }
        let start = i;
        let esc = c == '\\' && i + 1 < input.len() && !is_word_char(input[i + 1]);
        let first_at = if esc { i + 1 } else { i };
        let first = input[first_at];
        let mut end = first_at + 1;
        while end < input.len() && input[end] == first {
            end += 1;
        }
        let rest = end - first_at - 1;
        let matched: String = input[start..end].iter().collect();
        let esc_str = if esc { "\\" } else { "" };
        match first {
            '\\' => {
                backslashes = true;
                out.push_str(&matched);
            }
            '?' if esc => out.push_str(&format!("{esc_str}?{}", QMARK.repeat(rest))),
            '?' if start == 0 => out.push_str(&format!("{QMARK_NO_DOT}{}", QMARK.repeat(rest))),
            '?' => out.push_str(&QMARK.repeat(rest + 1)),
            '.' => out.push_str(&DOT_LITERAL.repeat(rest + 1)),
            '*' if esc => out.push_str(&format!("{esc_str}*{}", if rest > 0 { STAR } else { "" })),
            '*' => out.push_str(STAR),
            _ if esc => out.push_str(&matched),
            _ => {
                out.push('\\');
                out.push_str(&matched);
            }
        }
        i = end;
    }
    if backslashes {
        // runs of backslashes collapse: even → one escaped backslash, odd → one escape
        let mut collapsed = String::with_capacity(out.len());
        let chars: Vec<char> = out.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            if chars[k] == '\\' {
                let mut n = 0;
                while k < chars.len() && chars[k] == '\\' {
                    n += 1;
                    k += 1;
                }
                collapsed.push_str(if n % 2 == 0 { r"\\" } else { "\\" });
            } else {
                collapsed.push(chars[k]);
                k += 1;
            }
        }
        out = collapsed;
    }
    out
}

mod groups;
mod tokens;

use tokens::Parser;

/// Escapes the last unescaped `c` (an unclosed `[`, `(` or `{` is literal).
fn escape_last(input: &str, c: char, before: Option<usize>) -> String {
    let hay = match before {
        Some(end) => &input[..end.min(input.len())],
        None => input,
    };
    let Some(idx) = hay.rfind(c) else {
        return input.to_owned();
    };
    if idx > 0 && input.as_bytes()[idx - 1] == b'\\' {
        return escape_last(input, c, Some(idx - 1));
    }
    format!("{}\\{}", &input[..idx], &input[idx..])
}

/// `{a..e}` → a class over the sorted bounds (picomatch's, not bash's, expansion).
fn expand_range(mut args: Vec<String>) -> String {
    args.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    let class = format!("[{}]", args.join("-"));
    if super::engine::Program::compile(&class).is_ok() {
        class
    } else {
        args.iter()
            .map(|a| escape_regex(a))
            .collect::<Vec<_>>()
            .join("..")
    }
}

fn posix_class(name: &str) -> Option<&'static str> {
    Some(match name {
        "alnum" => "a-zA-Z0-9",
        "alpha" => "a-zA-Z",
        "ascii" => r"\x00-\x7F",
        "blank" => r" \t",
        "cntrl" => r"\x00-\x1F\x7F",
        "digit" => "0-9",
        "graph" => r"\x21-\x7E",
        "lower" => "a-z",
        "print" => r"\x20-\x7E ",
        "punct" => r##"\-!"#$%&'()\*+,./:;<=>?@[\]^_`{|}~"##,
        "space" => r" \t\r\n\v\f",
        "upper" => "A-Z",
        "word" => "A-Za-z0-9_",
        "xdigit" => "A-Fa-f0-9",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::regex_source;

    #[test]
    fn common_shapes_compile_to_picomatchs_sources() {
        // picomatch's documented outputs (makeRe) for these shapes
        assert_eq!(regex_source("*.js"), r"^(?:(?!\.)(?=.)[^/]*?\.js\/?)$");
        assert_eq!(regex_source("main"), "^(?:main)$");
        assert_eq!(regex_source("a?c"), r"^(?:a[^/]c)$");
        assert_eq!(regex_source("{main,dev}"), "^(?:(main|dev))$");
        assert_eq!(regex_source("!main"), "^(?!^(?:main)$).*$");
    }
}
