//! picomatch's tokenizer, part two: stars and globstars, brackets, braces and ranges, dots,
//! `?`, `+` and the extglobs — the handlers whose output depends on the tokens around them.

use super::tokens::*;
use super::*;

impl Parser {
    pub(super) fn extglob_open(&mut self, kind: Kind, value: char) {
        let (open, close) = match value {
            '!' => ("(?:(?!(?:", "))[^/]*?)"),
            '?' => ("(?:", ")?"),
            '+' => ("(?:", ")+"),
            _ => ("(?:", ")*"),
        };
        let ext = ExtGlob {
            kind,
            close,
            parens: self.parens,
            inner: String::new(),
        };
        self.increment(Nest::Parens);
        let lead = if self.output.is_empty() { ONE_CHAR } else { "" };
        self.push(Tok::new(kind, value, Some(lead)));
        let paren = self.advance().map(String::from).unwrap_or_default();
        let mut tok = Tok::new(Kind::Paren, paren, Some(open));
        tok.extglob = true;
        self.push(tok);
        self.extglobs.push(ext);
    }

    pub(super) fn extglob_close(&mut self, ext: ExtGlob, value: char) {
        let mut output = ext.close.to_owned();
        if ext.kind == Kind::Negate {
            let mut ext_star = STAR;
            if ext.inner.chars().count() > 1 && ext.inner.contains('/') {
                ext_star = GLOBSTAR;
            }
            let rest = self.remaining();
            if ext_star != STAR
                || self.eos()
                || (!rest.is_empty() && rest.chars().all(|c| c == ')'))
            {
                output = format!(")$)){ext_star}");
            }
            let dotted_ext = rest.len() > 1
                && rest.starts_with('.')
                && rest[1..].chars().all(|c| !matches!(c, '\\' | '/' | '.'));
            if ext.inner.contains('*') && dotted_ext {
                let (expression, _) = Parser::new(&rest).run_tokens();
                output = format!("){expression}){ext_star})");
            }
        }
        let mut tok = Tok::new(Kind::Paren, value, Some(&output));
        tok.extglob = true;
        self.push(tok);
        self.decrement(Nest::Parens);
    }

    pub(super) fn in_bracket(&mut self, mut value: String) {
        if value == ":" {
            let prev_value = self.arena[self.prev].value.clone();
            let inner = &prev_value[1.min(prev_value.len())..];
            if inner.contains('[') {
                self.arena[self.prev].posix = true;
                if inner.contains(':') {
                    let idx = prev_value.rfind('[').unwrap_or(0);
                    let pre = &prev_value[..idx];
                    let name = prev_value.get(idx + 2..).unwrap_or("");
                    if let Some(class) = posix_class(name) {
                        self.arena[self.prev].value = format!("{pre}{class}");
                        self.backtrack = true;
                        self.advance();
                        if self.arena[0].out().is_empty() && self.tokens.get(1) == Some(&self.prev)
                        {
                            self.arena[0].output = Some(ONE_CHAR.to_owned());
                        }
                        return;
                    }
                }
            }
        }
        let prev_value = &self.arena[self.prev].value;
        if (value == "[" && self.peek(1) != Some(':'))
            || (value == "-" && self.peek(1) == Some(']'))
        {
            value = format!("\\{value}");
        }
        if value == "]" && (prev_value == "[" || prev_value == "[^") {
            value = r"\]".to_owned();
        }
        self.append_to_prev(&value);
    }

    pub(super) fn close_bracket(&mut self) {
        let prev = self.prev;
        if self.arena[prev].kind == Kind::Bracket && self.arena[prev].value.chars().count() == 1 {
            self.push(Tok::new(Kind::Text, "]", Some(r"\]")));
            return;
        }
        if self.brackets == 0 {
            self.push(Tok::new(Kind::Text, "]", Some(r"\]")));
            return;
        }
        self.decrement(Nest::Brackets);
        let inner: String = self.arena[prev].value.chars().skip(1).collect();
        let mut value = "]".to_owned();
        if !self.arena[prev].posix && inner.starts_with('^') && !inner.contains('/') {
            value = "/]".to_owned();
        }
        self.append_to_prev(&value);
        if inner.chars().any(|c| REGEX_SPECIAL.contains(c)) {
            return;
        }
        // No class syntax inside: match the brackets literally, or as a class.
        let whole = self.arena[prev].value.clone();
        let escaped = escape_regex(&whole);
        self.truncate_output(whole.len());
        let both = format!("(?:{escaped}|{whole})");
        self.output.push_str(&both);
        self.arena[prev].value = both;
    }

    pub(super) fn close_brace(&mut self) {
        let Some(brace) = self.brace_stack.pop() else {
            self.push(Tok::new(Kind::Text, "}", Some("}")));
            return;
        };
        let mut output = ")".to_owned();
        let mut value = "}".to_owned();
        if brace.dots {
            let mut range = Vec::new();
            while let Some(t) = self.tokens.pop() {
                if self.arena[t].kind == Kind::Brace {
                    break;
                }
                if self.arena[t].kind != Kind::Dots {
                    range.insert(0, self.arena[t].value.clone());
                }
            }
            output = expand_range(range);
            self.backtrack = true;
        }
        if !brace.comma && !brace.dots {
            self.output.truncate(brace.output_index);
            let b = &mut self.arena[brace.tok];
            b.value = r"\{".to_owned();
            b.output = Some(r"\{".to_owned());
            value = r"\}".to_owned();
            output = r"\}".to_owned();
            let rebuilt: String = self.tokens[brace.tokens_index.min(self.tokens.len())..]
                .iter()
                .map(|&t| {
                    let t = &self.arena[t];
                    match t.output.as_deref() {
                        Some(o) if !o.is_empty() => o.to_owned(),
                        _ => t.value.clone(),
                    }
                })
                .collect();
            self.output.push_str(&rebuilt);
        }
        // the count drops after the push, as in picomatch (push looks at it)
        self.push(Tok::new(Kind::Brace, value, Some(&output)));
        self.decrement(Nest::Braces);
    }

    pub(super) fn dot(&mut self) {
        let prev = self.prev;
        if self.braces > 0 && self.arena[prev].kind == Kind::Dot {
            let p = &mut self.arena[prev];
            if p.value == "." {
                p.output = Some(DOT_LITERAL.to_owned());
            }
            p.kind = Kind::Dots;
            p.output.get_or_insert_with(String::new).push('.');
            p.value.push('.');
            if let Some(b) = self.brace_stack.last_mut() {
                b.dots = true;
            }
            return;
        }
        let kind = self.arena[prev].kind;
        if self.braces + self.parens == 0 && kind != Kind::Bos && kind != Kind::Slash {
            self.push(Tok::new(Kind::Text, ".", Some(DOT_LITERAL)));
            return;
        }
        self.push(Tok::new(Kind::Dot, ".", Some(DOT_LITERAL)));
    }

    pub(super) fn qmark(&mut self) {
        let prev = &self.arena[self.prev];
        let is_group = prev.value == "(";
        if !is_group && self.peek(1) == Some('(') && self.peek(2) != Some('?') {
            self.extglob_open(Kind::Qmark, '?');
            return;
        }
        if prev.kind == Kind::Paren {
            let next = self.peek(1);
            let rest = self.remaining();
            let lookaround = matches!(next, Some('!' | '=' | '<' | ':'));
            // picomatch searches the rest for `<!`, `<=` or `<name>` anywhere
            let named_or_behind = rest.match_indices('<').any(|(i, _)| {
                let after = &rest[i + 1..];
                let name: String = after.chars().take_while(|&c| is_word_char(c)).collect();
                after.starts_with('!')
                    || after.starts_with('=')
                    || (!name.is_empty() && after[name.len()..].starts_with('>'))
            });
            let out =
                if (prev.value == "(" && !lookaround) || (next == Some('<') && !named_or_behind) {
                    r"\?"
                } else {
                    "?"
                };
            self.push(Tok::new(Kind::Text, "?", Some(out)));
            return;
        }
        let out = if matches!(prev.kind, Kind::Slash | Kind::Bos) {
            QMARK_NO_DOT
        } else {
            QMARK
        };
        self.push(Tok::new(Kind::Qmark, "?", Some(out)));
    }

    pub(super) fn plus(&mut self) {
        if self.peek(1) == Some('(') && self.peek(2) != Some('?') {
            self.extglob_open(Kind::Plus, '+');
            return;
        }
        let prev = &self.arena[self.prev];
        if prev.value == "(" {
            self.push(Tok::new(Kind::Plus, "+", Some(PLUS_LITERAL)));
        } else if matches!(prev.kind, Kind::Bracket | Kind::Paren | Kind::Brace) || self.parens > 0
        {
            self.push(Tok::new(Kind::Plus, "+", None));
        } else {
            self.push(Tok::new(Kind::Plus, PLUS_LITERAL, None));
        }
    }

    pub(super) fn star(&mut self) {
        let prev = self.prev;
        if self.arena[prev].kind == Kind::Globstar || self.arena[prev].star {
            let p = &mut self.arena[prev];
            p.kind = Kind::Star;
            p.star = true;
            p.value.push('*');
            p.output = Some(STAR.to_owned());
            self.backtrack = true;
            return;
        }
        let mut rest = self.remaining();
        if rest.starts_with('(') && rest.chars().nth(1).is_some_and(|c| c != '?') {
            self.extglob_open(Kind::Star, '*');
            return;
        }
        if self.arena[prev].kind == Kind::Star {
            let prior = self.arena[prev].prev;
            let prior_kind = self.arena[prior].kind;
            let before = self.arena[prior].prev;
            let is_start = matches!(prior_kind, Kind::Slash | Kind::Bos);
            let after_star =
                prior != 0 && matches!(self.arena[before].kind, Kind::Star | Kind::Globstar);
            let is_brace = self.braces > 0 && matches!(prior_kind, Kind::Comma | Kind::Brace);
            let is_extglob = !self.extglobs.is_empty() && prior_kind == Kind::Paren;
            if !is_start && prior_kind != Kind::Paren && !is_brace && !is_extglob {
                self.push(Tok::new(Kind::Star, "*", Some("")));
                return;
            }
            while rest.starts_with("/**") {
                let after = self.input.get((self.index + 4) as usize).copied();
                if after.is_some_and(|a| a != '/') {
                    break;
                }
                rest = rest[3..].to_owned();
                self.index += 3;
            }
            let prior_prev_bos = self.arena[self.arena[prior].prev].kind == Kind::Bos;
            if prior_kind == Kind::Bos && self.eos() {
                let p = &mut self.arena[prev];
                p.kind = Kind::Globstar;
                p.value.push('*');
                p.output = Some(GLOBSTAR.to_owned());
                self.output = GLOBSTAR.to_owned();
                return;
            }
            if prior_kind == Kind::Slash && !prior_prev_bos && !after_star && self.eos() {
                self.rewrite_slash_globstar(prior, prev, format!("{GLOBSTAR}|$)"));
                return;
            }
            if prior_kind == Kind::Slash && !prior_prev_bos && rest.starts_with('/') {
                let end = if rest.chars().count() > 1 { "|$" } else { "" };
                let out = format!("{GLOBSTAR}{SLASH_LITERAL}|{SLASH_LITERAL}{end})");
                self.rewrite_slash_globstar(prior, prev, out);
                self.advance();
                self.push(Tok::new(Kind::Slash, "/", Some("")));
                return;
            }
            if prior_kind == Kind::Bos && rest.starts_with('/') {
                let out = format!("(?:^|{SLASH_LITERAL}|{GLOBSTAR}{SLASH_LITERAL})");
                let p = &mut self.arena[prev];
                p.kind = Kind::Globstar;
                p.value.push('*');
                p.output = Some(out.clone());
                self.output = out;
                self.advance();
                self.push(Tok::new(Kind::Slash, "/", Some("")));
                return;
            }
            let old = self.arena[prev].out().len();
            self.truncate_output(old);
            let p = &mut self.arena[prev];
            p.kind = Kind::Globstar;
            p.output = Some(GLOBSTAR.to_owned());
            p.value.push('*');
            self.output.push_str(GLOBSTAR);
            return;
        }
        let prev_kind = self.arena[prev].kind;
        if self.index == self.start as isize || matches!(prev_kind, Kind::Slash | Kind::Dot) {
            let mut guard = if prev_kind == Kind::Dot {
                NO_DOT_SLASH
            } else {
                NO_DOT
            }
            .to_owned();
            if self.peek(1) != Some('*') {
                guard.push_str(ONE_CHAR);
            }
            self.output.push_str(&guard);
            let p = &mut self.arena[prev];
            p.output = Some(format!("{}{guard}", p.out()));
        }
        self.push(Tok::new(Kind::Star, "*", Some(STAR)));
    }

    /// `a/**` and `a/**/b`: the slash before `**` becomes optional together with it.
    pub(super) fn rewrite_slash_globstar(
        &mut self,
        prior: usize,
        prev: usize,
        globstar_out: String,
    ) {
        let old = self.arena[prior].out().len() + self.arena[prev].out().len();
        self.truncate_output(old);
        let prior_out = format!("(?:{}", self.arena[prior].out());
        self.arena[prior].output = Some(prior_out.clone());
        let p = &mut self.arena[prev];
        p.kind = Kind::Globstar;
        p.output = Some(globstar_out.clone());
        p.value.push('*');
        self.output.push_str(&prior_out);
        self.output.push_str(&globstar_out);
    }
}
