//! Branch, tag and path globs with picomatch 4's `isMatch(input, pattern)` semantics under default
//! options — the matcher the reference orchestrator used (docs/architecture.md, "Trigger
//! matching"), so a lock file's filters select the same branches and files here.
//!
//! What that means, in short: `*` and `?` stay inside one path segment; `**` spans segments
//! only as a whole segment (`a/**` also matches `a`); a segment starting with `.` is matched
//! only by a pattern segment that starts with `.`; `[…]` classes (`[!a]` is *literal* `!` or
//! `a`, as in picomatch; `[^a]` negates), `{a,b}` alternatives, `{1..3}` ranges, the extglobs
//! `+(…)`, `*(…)`, `?(…)`, `@(…)`, `!(…)`, `\` escapes, a leading `./` ignored, a leading `!`
//! negating the whole pattern, and an input equal to the pattern always matching.
//!
//! A pattern is compiled once (`Glob::new`) to a program of a small linear-time engine
//! (`engine`): matching never backtracks, so a hostile pattern or branch name cannot stall a
//! webhook. `tests/data/picomatch-golden.jsonl` (3,657 cases produced by picomatch 4.0.7)
//! must agree case for case.

mod engine;
mod translate;

use std::fmt;

use super::limits;

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    program: engine::Program,
}

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    pub pattern: String,
    pub reason: String,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "glob {} is not valid: {}; fix the pattern in the workflow and recompile the lock \
             file with `kici compile`",
            limits::excerpt(&self.pattern),
            self.reason
        )
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let error = |reason: &str| GlobError {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        if pattern.is_empty() {
            return Err(error("the pattern is empty"));
        }
        // Both before translation: the translator and the engine's parser recurse per level.
        limits::check_nesting(nesting_depth(pattern)).map_err(|e| error(&e))?;
        limits::check_length(pattern.len()).map_err(|e| error(&e))?;
        let source = translate::regex_source(pattern);
        let program = engine::Program::compile(&source).map_err(|e| error(&e.0))?;
        Ok(Glob {
            pattern: pattern.to_owned(),
            program,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// picomatch `isMatch(input, pattern)`: an empty input never matches; an input equal to the
    /// pattern always does.
    pub fn is_match(&self, input: &str) -> bool {
        if input.is_empty() {
            return false;
        }
        input == self.pattern || self.program.is_match(input)
    }
}

/// How deeply `pattern` nests `(`, `{` and `[`, counted without recursion. Unclosed openers
/// count too (picomatch reads them as literals, but only after tokenizing everything inside), and
/// a bracket class counts one level whatever it contains, as its content is literal.
fn nesting_depth(pattern: &str) -> usize {
    let (mut depth, mut deepest, mut in_class) = (0usize, 0usize, false);
    let mut chars = pattern.chars().peekable();
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                chars.next();
            }
            ']' if in_class && !at_class_start => {
                in_class = false;
                depth = depth.saturating_sub(1);
            }
            _ if in_class => {}
            '[' => {
                in_class = true;
                depth += 1;
                // `[]…]` and `[!]…]`/`[^]…]`: the first `]` is a literal member
                if matches!(chars.peek(), Some('!' | '^')) {
                    chars.next();
                }
                class_start = true;
            }
            '(' | '{' => depth += 1,
            ')' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        deepest = deepest.max(depth);
    }
    deepest
}

/// One-off convenience: compile and match (an invalid pattern matches nothing).
pub fn is_match(input: &str, pattern: &str) -> bool {
    Glob::new(pattern).is_ok_and(|g| g.is_match(input))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
