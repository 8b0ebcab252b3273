//! A small regular-expression engine for the sources `translate` produces: the subset of
//! JavaScript regex syntax picomatch emits (groups, alternation, greedy and lazy quantifiers,
//! classes, `.`, `^`/`$`, `\b`, and the lookaheads `(?=…)`/`(?!…)` that carry its dotfile rules).
//!
//! Why not the `regex` crate: it has no lookaround, and picomatch's semantics live in lookaheads
//! (`(?!\.)` at a segment start, `(?!(?:^|\/)\.)` inside `**`, `!(…)` extglobs). Why not a
//! backtracking engine: a branch name is attacker-chosen text and a pattern like `*(*(a))b`
//! backtracks exponentially. This one compiles to a Thompson NFA and simulates all threads at
//! once (no backtracking): matching is O(input × program) plus, per lookahead, one memoised
//! sub-run per input position — polynomial in the worst case, never exponential.
//!
//! Text is UTF-16 code units, as in JavaScript without the `u` flag, so `?` and `[^/]` see one
//! half of a surrogate pair exactly as picomatch does.

use std::collections::HashMap;

mod syntax;

use syntax::{Node, Parser};

use crate::pipeline::limits::PROGRAM_STEPS;

/// A compiled program: `main` plus the sub-programs of its lookaheads.
#[derive(Debug, Clone)]
pub struct Program {
    progs: Vec<Vec<Inst>>,
}

#[derive(Debug, Clone)]
enum Inst {
    Unit(u16),
    Class(Class),
    /// `.`: any unit but a line terminator.
    Any,
    Split(usize, usize),
    Jmp(usize),
    Start,
    End,
    WordBoundary(bool),
    /// Lookahead into `progs[prog]`; `negate` for `(?!…)`.
    Look {
        prog: usize,
        negate: bool,
    },
    Match,
}

#[derive(Debug, Clone)]
pub(super) struct Class {
    pub(super) ranges: Vec<(u16, u16)>,
    pub(super) negated: bool,
}

impl Class {
    pub(super) fn contains(&self, c: u16) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// Why a source did not compile (a pattern the translator passed through verbatim, such as a
/// backreference or a lookbehind written inside a glob's parentheses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError(pub String);

/// Bounds the size of `{n,m}` expansions so a pattern cannot ask for a huge program.
const MAX_REPEAT: u32 = 1000;

impl Program {
    pub fn compile(source: &str) -> Result<Program, EngineError> {
        let units: Vec<u16> = source.encode_utf16().collect();
        let mut parser = Parser {
            s: &units,
            i: 0,
            depth: 0,
        };
        let node = parser.alternation()?;
        if parser.i < units.len() {
            return Err(EngineError(format!(
                "unbalanced ')' at offset {} of regex {source:?}",
                parser.i
            )));
        }
        let mut compiler = Compiler {
            progs: vec![Vec::new()],
            steps: 0,
        };
        compiler.emit_program(0, &node)?;
        Ok(Program {
            progs: compiler.progs,
        })
    }

    /// JavaScript `RegExp.prototype.test` (unanchored search) on `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let units: Vec<u16> = text.encode_utf16().collect();
        let mut run = Run {
            progs: &self.progs,
            text: &units,
            memo: HashMap::new(),
        };
        run.search(0, 0, false)
    }
}

struct Compiler {
    progs: Vec<Vec<Inst>>,
    /// `emit` calls so far: each adds at most three instructions besides its children's, so
    /// bounding the calls bounds the program (`{n,m}` copies its body; nested ones multiply).
    steps: usize,
}

impl Compiler {
    fn emit_program(&mut self, p: usize, node: &Node) -> Result<(), EngineError> {
        self.emit(p, node)?;
        self.progs[p].push(Inst::Match);
        Ok(())
    }

    fn emit(&mut self, p: usize, node: &Node) -> Result<(), EngineError> {
        self.steps += 1;
        if self.steps > PROGRAM_STEPS {
            return Err(EngineError(format!(
                "the regex compiles to more than {PROGRAM_STEPS} steps"
            )));
        }
        match node {
            Node::Empty => {}
            Node::Unit(u) => self.progs[p].push(Inst::Unit(*u)),
            Node::Class(c) => self.progs[p].push(Inst::Class(c.clone())),
            Node::Any => self.progs[p].push(Inst::Any),
            Node::Start => self.progs[p].push(Inst::Start),
            Node::End => self.progs[p].push(Inst::End),
            Node::WordBoundary(b) => self.progs[p].push(Inst::WordBoundary(*b)),
            Node::Look(inner, negate) => {
                let sub = self.progs.len();
                self.progs.push(Vec::new());
                self.emit_program(sub, inner)?;
                self.progs[p].push(Inst::Look {
                    prog: sub,
                    negate: *negate,
                });
            }
            Node::Concat(items) => {
                for n in items {
                    self.emit(p, n)?;
                }
            }
            Node::Alt(alts) => {
                let mut jumps = Vec::new();
                for (k, alt) in alts.iter().enumerate() {
                    if k + 1 < alts.len() {
                        let split = self.progs[p].len();
                        self.progs[p].push(Inst::Split(split + 1, 0));
                        self.emit(p, alt)?;
                        jumps.push(self.progs[p].len());
                        self.progs[p].push(Inst::Jmp(0));
                        let next = self.progs[p].len();
                        self.progs[p][split] = Inst::Split(split + 1, next);
                    } else {
                        self.emit(p, alt)?;
                    }
                }
                let end = self.progs[p].len();
                for j in jumps {
                    self.progs[p][j] = Inst::Jmp(end);
                }
            }
            Node::Repeat(inner, min, None) if *min > 0 => {
                // `x+` as `L: x; split(L, out)`: one copy of the body, not two. Two copies
                // double the program per nesting level, so `+(+(…))` 32 deep would ask for
                // 2^32 instructions.
                for _ in 1..*min {
                    self.emit(p, inner)?;
                }
                let start = self.progs[p].len();
                self.emit(p, inner)?;
                let split = self.progs[p].len();
                self.progs[p].push(Inst::Split(start, split + 1));
            }
            Node::Repeat(inner, min, max) => {
                for _ in 0..*min {
                    self.emit(p, inner)?;
                }
                match max {
                    None => {
                        // L: split(body, out); body; jmp L
                        let split = self.progs[p].len();
                        self.progs[p].push(Inst::Split(split + 1, 0));
                        self.emit(p, inner)?;
                        self.progs[p].push(Inst::Jmp(split));
                        let out = self.progs[p].len();
                        self.progs[p][split] = Inst::Split(split + 1, out);
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.progs[p].len());
                            self.progs[p].push(Inst::Split(0, 0));
                            self.emit(p, inner)?;
                        }
                        let out = self.progs[p].len();
                        for s in splits {
                            self.progs[p][s] = Inst::Split(s + 1, out);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

struct Run<'a> {
    progs: &'a [Vec<Inst>],
    text: &'a [u16],
    memo: HashMap<(usize, usize), bool>,
}

fn is_line_terminator(c: u16) -> bool {
    matches!(c, 0x0a | 0x0d | 0x2028 | 0x2029)
}

fn is_word(c: u16) -> bool {
    matches!(c, 0x30..=0x39 | 0x41..=0x5a | 0x5f | 0x61..=0x7a)
}

impl Run<'_> {
    /// Does program `p` match starting at `from` (only there when `anchored`, else at any later
    /// position too)? A match may end anywhere: that is what both `test` and a lookahead ask.
    fn search(&mut self, p: usize, from: usize, anchored: bool) -> bool {
        let len = self.progs[p].len();
        let mut current: Vec<usize> = Vec::with_capacity(len);
        let mut on: Vec<bool> = vec![false; len];
        let mut pos = from;
        loop {
            if (pos == from || !anchored) && self.add(p, 0, pos, &mut current, &mut on) {
                return true;
            }
            if current.is_empty() && (anchored || pos >= self.text.len()) {
                return false;
            }
            let Some(&c) = self.text.get(pos) else {
                return false;
            };
            let mut next = Vec::with_capacity(len);
            let mut next_on = vec![false; len];
            for &pc in &current {
                let step = match &self.progs[p][pc] {
                    Inst::Unit(u) => *u == c,
                    Inst::Class(class) => class.contains(c),
                    Inst::Any => !is_line_terminator(c),
                    _ => false,
                };
                if step && self.add(p, pc + 1, pos + 1, &mut next, &mut next_on) {
                    return true;
                }
            }
            current = next;
            on = next_on;
            pos += 1;
        }
    }

    /// Adds the thread at `pc` and everything reachable without consuming; true on `Match`.
    fn add(
        &mut self,
        p: usize,
        pc: usize,
        pos: usize,
        set: &mut Vec<usize>,
        on: &mut [bool],
    ) -> bool {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if on[pc] {
                continue;
            }
            on[pc] = true;
            match self.progs[p][pc] {
                Inst::Match => return true,
                Inst::Jmp(t) => stack.push(t),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Start => {
                    if pos == 0 {
                        stack.push(pc + 1);
                    }
                }
                Inst::End => {
                    if pos == self.text.len() {
                        stack.push(pc + 1);
                    }
                }
                Inst::WordBoundary(want) => {
                    let before = pos > 0 && is_word(self.text[pos - 1]);
                    let after = self.text.get(pos).is_some_and(|&c| is_word(c));
                    if (before != after) == want {
                        stack.push(pc + 1);
                    }
                }
                Inst::Look { prog, negate } => {
                    let found = match self.memo.get(&(prog, pos)) {
                        Some(&f) => f,
                        None => {
                            let f = self.search(prog, pos, true);
                            self.memo.insert((prog, pos), f);
                            f
                        }
                    };
                    if found != negate {
                        stack.push(pc + 1);
                    }
                }
                Inst::Unit(_) | Inst::Class(_) | Inst::Any => set.push(pc),
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(re: &str, text: &str) -> bool {
        Program::compile(re).expect(re).is_match(text)
    }

    #[test]
    fn literals_anchors_and_search() {
        assert!(m("^(?:main)$", "main"));
        assert!(!m("^(?:main)$", "mainline"));
        assert!(m("ain", "mainline"), "unanchored search finds a substring");
        assert!(!m("^ain", "mainline"));
    }

    #[test]
    fn classes_quantifiers_and_alternation() {
        assert!(m("^[a-c]+$", "abcab"));
        assert!(!m("^[^/]*?$", "a/b"));
        assert!(m("^(rs|toml)$", "toml"));
        assert!(m("^a{2,3}$", "aaa"));
        assert!(!m("^a{2,3}$", "aaaa"));
        assert!(
            m("^a{x$", "a{x"),
            "a brace that is not a quantifier is literal"
        );
        assert!(m(r"^\d\w\s$", "7_ "));
        assert!(m(r"^[\x00-\x7F]$", "q"));
        assert!(m(r"^\-\.\/$", "-./"));
    }

    #[test]
    fn lookaheads() {
        assert!(!m(r"^(?!\.)(?=.)[^/]*?$", ".hidden"));
        assert!(m(r"^(?!\.)(?=.)[^/]*?$", "visible"));
        assert!(!m(r"^(?!\.)(?=.)[^/]*?$", ""));
        assert!(m(r"^(?:(?!(?:a|b)$)[^/]*?)$", "c"));
        assert!(!m(r"^(?:(?!(?:a|b)$)[^/]*?)$", "a"));
    }

    #[test]
    fn no_exponential_blowup() {
        let text = "a".repeat(5000);
        assert!(!m("^(a*)*b$", &text));
        assert!(!m("^(?:(a|aa)+)+c$", &text));
    }

    #[test]
    fn utf16_units_like_javascript() {
        // One astral character is two units: `.` alone does not cover it, `..` does.
        assert!(!m("^.$", "😀"));
        assert!(m("^..$", "😀"));
    }

    #[test]
    fn deep_or_huge_programs_are_refused_before_they_are_built() {
        use crate::pipeline::limits::PROGRAM_NESTING_DEPTH as DEPTH;
        let nested = |n: usize| format!("{}a{}", "(?:".repeat(n), ")".repeat(n));
        assert!(Program::compile(&nested(DEPTH)).is_ok());
        let err = Program::compile(&nested(DEPTH + 1)).expect_err("too deep");
        assert!(err.0.contains("nests more than 144 groups"), "{err:?}");
        assert!(
            Program::compile(&nested(100_000)).is_err(),
            "no stack overflow"
        );
        let err = Program::compile("((a{1000}){1000}){1000}").expect_err("10^9 copies");
        assert!(err.0.contains("more than 200000 steps"), "{err:?}");
    }

    #[test]
    fn nested_plus_stays_linear_in_size() {
        // `(?:(?:a)+)+` nested: one body copy per level, so 100 levels is a small program
        let source = format!("^{}a{}$", "(?:".repeat(100), ")+".repeat(100));
        let program = Program::compile(&source).expect("compiles");
        assert!(program.progs[0].len() < 1000, "{}", program.progs[0].len());
        assert!(program.is_match("aaaa"));
        assert!(!program.is_match("aab"));
    }

    #[test]
    fn unsupported_syntax_is_an_error() {
        assert!(Program::compile("(?<=a)b").is_err());
        assert!(Program::compile(r"(a)\1").is_err());
        assert!(Program::compile("(a").is_err());
        assert!(Program::compile("a)").is_err());
    }
}
