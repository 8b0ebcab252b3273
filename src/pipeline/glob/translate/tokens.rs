//! picomatch's tokenizer, part one: the token list, the parser state and the main loop. The
//! handlers for stars, brackets, braces, dots and extglobs are in `groups`.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bos,
    Text,
    Star,
    Globstar,
    Qmark,
    Bracket,
    Brace,
    Comma,
    Slash,
    Dot,
    Dots,
    Paren,
    Negate,
    Plus,
    At,
    MaybeSlash,
}

#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub(super) kind: Kind,
    pub(super) value: String,
    pub(super) output: Option<String>,
    pub(super) prev: usize,
    pub(super) extglob: bool,
    pub(super) posix: bool,
    pub(super) star: bool,
}

impl Tok {
    pub(super) fn new(kind: Kind, value: impl Into<String>, output: Option<&str>) -> Tok {
        Tok {
            kind,
            value: value.into(),
            output: output.map(str::to_owned),
            prev: 0,
            extglob: false,
            posix: false,
            star: false,
        }
    }

    pub(super) fn out(&self) -> &str {
        self.output.as_deref().unwrap_or(&self.value)
    }
}

#[derive(Debug)]
pub(super) struct ExtGlob {
    pub(super) kind: Kind,
    pub(super) close: &'static str,
    pub(super) parens: i32,
    pub(super) inner: String,
}

#[derive(Debug)]
pub(super) struct BraceOpen {
    pub(super) tok: usize,
    pub(super) output_index: usize,
    pub(super) tokens_index: usize,
    pub(super) comma: bool,
    pub(super) dots: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nest {
    Brackets,
    Braces,
    Parens,
}

pub(super) struct Parser {
    pub(super) input: Vec<char>,
    pub(super) index: isize,
    pub(super) start: usize,
    pub(super) output: String,
    pub(super) backtrack: bool,
    pub(super) negated: bool,
    pub(super) brackets: i32,
    pub(super) braces: i32,
    pub(super) parens: i32,
    pub(super) quotes: bool,
    pub(super) arena: Vec<Tok>,
    pub(super) tokens: Vec<usize>,
    pub(super) prev: usize,
    pub(super) extglobs: Vec<ExtGlob>,
    pub(super) brace_stack: Vec<BraceOpen>,
    pub(super) stack: Vec<Nest>,
}

impl Parser {
    pub(super) fn new(pattern: &str) -> Parser {
        let input = replacements(pattern);
        let input = input.strip_prefix("./").unwrap_or(input);
        Parser {
            input: input.chars().collect(),
            index: -1,
            start: 0,
            output: String::new(),
            backtrack: false,
            negated: false,
            brackets: 0,
            braces: 0,
            parens: 0,
            quotes: false,
            arena: vec![Tok::new(Kind::Bos, "", Some(""))],
            tokens: vec![0],
            prev: 0,
            extglobs: Vec::new(),
            brace_stack: Vec::new(),
            stack: Vec::new(),
        }
    }

    pub(super) fn eos(&self) -> bool {
        self.index == self.input.len() as isize - 1
    }

    pub(super) fn peek(&self, n: isize) -> Option<char> {
        let at = self.index + n;
        (at >= 0)
            .then(|| self.input.get(at as usize).copied())
            .flatten()
    }

    pub(super) fn advance(&mut self) -> Option<char> {
        self.index += 1;
        self.input.get(self.index as usize).copied()
    }

    pub(super) fn remaining(&self) -> String {
        self.input[((self.index + 1) as usize).min(self.input.len())..]
            .iter()
            .collect()
    }

    pub(super) fn increment(&mut self, n: Nest) {
        match n {
            Nest::Brackets => self.brackets += 1,
            Nest::Braces => self.braces += 1,
            Nest::Parens => self.parens += 1,
        }
        self.stack.push(n);
    }

    pub(super) fn decrement(&mut self, n: Nest) {
        match n {
            Nest::Brackets => self.brackets -= 1,
            Nest::Braces => self.braces -= 1,
            Nest::Parens => self.parens -= 1,
        }
        self.stack.pop();
    }

    pub(super) fn truncate_output(&mut self, by: usize) {
        let keep = self.output.len().saturating_sub(by);
        self.output.truncate(keep);
    }

    pub(super) fn push(&mut self, mut tok: Tok) {
        let prev = self.prev;
        if self.arena[prev].kind == Kind::Globstar {
            let is_brace = self.braces > 0 && matches!(tok.kind, Kind::Comma | Kind::Brace);
            let is_extglob = tok.extglob || (!self.extglobs.is_empty() && tok.kind == Kind::Paren);
            if tok.kind != Kind::Slash && tok.kind != Kind::Paren && !is_brace && !is_extglob {
                let old = self.arena[prev].out().len();
                self.truncate_output(old);
                let p = &mut self.arena[prev];
                p.kind = Kind::Star;
                p.value = "*".to_owned();
                p.output = Some(STAR.to_owned());
                self.output.push_str(STAR);
            }
        }
        if tok.kind != Kind::Paren {
            if let Some(ext) = self.extglobs.last_mut() {
                ext.inner.push_str(&tok.value);
            }
        }
        if !tok.value.is_empty() || tok.output.as_deref().is_some_and(|o| !o.is_empty()) {
            self.output.push_str(tok.out());
        }
        if self.arena[prev].kind == Kind::Text && tok.kind == Kind::Text {
            let p = &mut self.arena[prev];
            p.value.push_str(&tok.value);
            let merged = format!("{}{}", p.output.as_deref().unwrap_or(""), tok.value);
            p.output = Some(merged);
            return;
        }
        tok.prev = prev;
        self.arena.push(tok);
        self.prev = self.arena.len() - 1;
        self.tokens.push(self.prev);
    }

    /// Appends to the output and to the current token (inside brackets and quotes).
    pub(super) fn append_to_prev(&mut self, value: &str) {
        self.arena[self.prev].value.push_str(value);
        self.output.push_str(value);
    }

    /// `(output, negated)` for the whole pattern.
    pub(super) fn run(self) -> (String, bool) {
        if !self.needs_tokenizer() {
            return (simple_output(&self.input), false);
        }
        self.run_tokens()
    }

    pub(super) fn needs_tokenizer(&self) -> bool {
        matches!(self.input.first(), Some('*' | '!'))
            || self
                .input
                .iter()
                .any(|c| matches!(c, '/' | '(' | ')' | '[' | ']' | '{' | '}' | '"'))
    }

    pub(super) fn run_tokens(mut self) -> (String, bool) {
        while !self.eos() && !self.input.is_empty() {
            let Some(c) = self.advance() else { break };
            self.step(c);
        }
        self.finish()
    }

    pub(super) fn step(&mut self, c: char) {
        if c == '\0' {
            return;
        }
        let mut value = c.to_string();
        if c == '\\' {
            let next = self.peek(1);
            if matches!(next, Some('/' | '.' | ';')) {
                return;
            }
            let Some(_) = next else {
                self.push(Tok::new(Kind::Text, r"\\", None));
                return;
            };
            let run = self.remaining().chars().take_while(|&c| c == '\\').count();
            if run > 2 {
                self.index += run as isize;
                if run % 2 != 0 {
                    value.push('\\');
                }
            }
            if let Some(n) = self.advance() {
                value.push(n);
            }
            if self.brackets == 0 {
                self.push(Tok::new(Kind::Text, value, None));
                return;
            }
        }
        let prev_value = self.arena[self.prev].value.clone();
        if self.brackets > 0 && (value != "]" || prev_value == "[" || prev_value == "[^") {
            self.in_bracket(value);
            return;
        }
        if self.quotes && value != "\"" {
            let escaped = escape_regex(&value);
            self.append_to_prev(&escaped);
            return;
        }
        match c {
            '"' => self.quotes = !self.quotes,
            '(' => {
                self.increment(Nest::Parens);
                self.push(Tok::new(Kind::Paren, "(", None));
            }
            ')' => {
                let closes_extglob = self
                    .extglobs
                    .last()
                    .is_some_and(|e| self.parens == e.parens + 1);
                if closes_extglob {
                    if let Some(ext) = self.extglobs.pop() {
                        self.extglob_close(ext, ')');
                    }
                    return;
                }
                let out = if self.parens != 0 { ")" } else { r"\)" };
                self.push(Tok::new(Kind::Paren, ")", Some(out)));
                self.decrement(Nest::Parens);
            }
            '[' => {
                if self.remaining().contains(']') {
                    self.increment(Nest::Brackets);
                    self.push(Tok::new(Kind::Bracket, "[", None));
                } else {
                    self.push(Tok::new(Kind::Bracket, r"\[", None));
                }
            }
            ']' => self.close_bracket(),
            '{' => {
                self.increment(Nest::Braces);
                let tok = self.arena.len();
                self.brace_stack.push(BraceOpen {
                    tok,
                    output_index: self.output.len(),
                    tokens_index: self.tokens.len(),
                    comma: false,
                    dots: false,
                });
                self.push(Tok::new(Kind::Brace, "{", Some("(")));
            }
            '}' => self.close_brace(),
            '|' => self.push(Tok::new(Kind::Text, "|", None)),
            ',' => {
                let mut out = ",";
                if self.stack.last() == Some(&Nest::Braces) {
                    if let Some(b) = self.brace_stack.last_mut() {
                        b.comma = true;
                        out = "|";
                    }
                }
                self.push(Tok::new(Kind::Comma, ",", Some(out)));
            }
            '/' => {
                if self.arena[self.prev].kind == Kind::Dot && self.index == self.start as isize + 1
                {
                    self.start = (self.index + 1) as usize;
                    self.output.clear();
                    self.tokens.pop();
                    self.prev = 0;
                    return;
                }
                self.push(Tok::new(Kind::Slash, "/", Some(SLASH_LITERAL)));
            }
            '.' => self.dot(),
            '?' => self.qmark(),
            '!' if self.peek(1) == Some('(')
                && (self.peek(2) != Some('?')
                    || !matches!(self.peek(3), Some('!' | '=' | '<' | ':'))) =>
            {
                self.extglob_open(Kind::Negate, '!')
            }
            '!' if self.index == 0 => self.negate(),
            '+' => self.plus(),
            '@' if self.peek(1) == Some('(') && self.peek(2) != Some('?') => {
                let mut tok = Tok::new(Kind::At, "@", Some(""));
                tok.extglob = true;
                self.push(tok);
            }
            '*' => self.star(),
            _ => self.text(c),
        }
    }

    pub(super) fn text(&mut self, c: char) {
        let mut value = if c == '$' || c == '^' {
            format!("\\{c}")
        } else {
            c.to_string()
        };
        const SPECIAL: &str = "@![].,$*+?^{}()|\\/";
        let run: String = self
            .remaining()
            .chars()
            .take_while(|c| !SPECIAL.contains(*c))
            .collect();
        self.index += run.chars().count() as isize;
        value.push_str(&run);
        self.push(Tok::new(Kind::Text, value, None));
    }

    pub(super) fn negate(&mut self) {
        let mut count = 1;
        while self.peek(1) == Some('!') && (self.peek(2) != Some('(') || self.peek(3) == Some('?'))
        {
            self.advance();
            self.start += 1;
            count += 1;
        }
        if count % 2 == 0 {
            return;
        }
        self.negated = true;
        self.start += 1;
    }

    pub(super) fn finish(mut self) -> (String, bool) {
        while self.brackets > 0 {
            self.output = escape_last(&self.output, '[', None);
            self.decrement(Nest::Brackets);
        }
        while self.parens > 0 {
            self.output = escape_last(&self.output, '(', None);
            self.decrement(Nest::Parens);
        }
        while self.braces > 0 {
            self.output = escape_last(&self.output, '{', None);
            self.decrement(Nest::Braces);
        }
        if matches!(self.arena[self.prev].kind, Kind::Star | Kind::Bracket) {
            let slash = format!("{SLASH_LITERAL}?");
            self.push(Tok::new(Kind::MaybeSlash, "", Some(&slash)));
        }
        if self.backtrack {
            self.output = self
                .tokens
                .iter()
                .map(|&t| self.arena[t].out().to_owned())
                .collect();
        }
        (self.output, self.negated)
    }
}
