//! The regex syntax `translate` emits (JavaScript's, sloppy mode), parsed to a tree for
//! `engine`'s compiler. Text is UTF-16 code units, as in JavaScript without the `u` flag.

use super::{Class, EngineError, MAX_REPEAT};
use crate::pipeline::limits::PROGRAM_NESTING_DEPTH;

#[derive(Debug, Clone)]
pub(super) enum Node {
    Empty,
    Unit(u16),
    Class(Class),
    Any,
    Start,
    End,
    WordBoundary(bool),
    Look(Box<Node>, bool),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat(Box<Node>, u32, Option<u32>),
}

pub(super) struct Parser<'a> {
    pub(super) s: &'a [u16],
    pub(super) i: usize,
    /// Groups open around the current position: `group` recurses once per level.
    pub(super) depth: usize,
}

fn unit(c: char) -> u16 {
    c as u16
}

impl Parser<'_> {
    fn peek(&self) -> Option<u16> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(unit(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn alternation(&mut self) -> Result<Node, EngineError> {
        let mut alts = vec![self.concat()?];
        while self.eat('|') {
            alts.push(self.concat()?);
        }
        Ok(if alts.len() == 1 {
            alts.remove(0)
        } else {
            Node::Alt(alts)
        })
    }

    fn concat(&mut self) -> Result<Node, EngineError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == unit('|') || c == unit(')') {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, EngineError> {
        let (min, max) = match self.peek() {
            Some(c) if c == unit('*') => (0, None),
            Some(c) if c == unit('+') => (1, None),
            Some(c) if c == unit('?') => (0, Some(1)),
            Some(c) if c == unit('{') => match self.braces() {
                Some(bounds) => {
                    self.i -= 1; // `braces` consumed through `}`; the shared step below re-adds it
                    bounds
                }
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        self.i += 1;
        if matches!(
            atom,
            Node::Start | Node::End | Node::WordBoundary(_) | Node::Look(..)
        ) {
            // JavaScript allows quantified lookaheads in sloppy mode; a repeated assertion is
            // the assertion itself (or nothing when it may repeat zero times).
            return Ok(if min == 0 { Node::Empty } else { atom });
        }
        self.eat('?'); // lazy: the same language
        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
            return Err(EngineError(format!(
                "repetition over {MAX_REPEAT} in a glob"
            )));
        }
        Ok(Node::Repeat(Box::new(atom), min, max))
    }

    /// `{n}`, `{n,}`, `{n,m}` (consumed); anything else is a literal `{` (not consumed).
    fn braces(&mut self) -> Option<(u32, Option<u32>)> {
        let start = self.i;
        // Only the text up to the first `}`: converting the whole rest at every `{` is
        // quadratic in the regex length.
        let close = self.s[start..].iter().position(|&u| u == unit('}'))?;
        let rest: String = String::from_utf16_lossy(&self.s[start..=start + close]);
        let close = rest.len() - 1;
        let body = &rest[1..close];
        let (lo, hi) = match body.split_once(',') {
            None => {
                let n = parse_num(body)?;
                (n, Some(n))
            }
            Some((lo, "")) => (parse_num(lo)?, None),
            Some((lo, hi)) => (parse_num(lo)?, Some(parse_num(hi)?)),
        };
        if hi.is_some_and(|h| h < lo) {
            return None;
        }
        self.i = start + rest[..=close].encode_utf16().count();
        Some((lo, hi))
    }

    fn atom(&mut self) -> Result<Node, EngineError> {
        let c = self.peek().unwrap_or(0);
        self.i += 1;
        Ok(match char::from_u32(u32::from(c)).unwrap_or('\u{fffd}') {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '[' => Node::Class(self.class()?),
            '(' => self.group()?,
            '\\' => self.escape()?,
            '*' | '+' | '?' => {
                return Err(EngineError("nothing to repeat".to_owned()));
            }
            _ => Node::Unit(c),
        })
    }

    fn group(&mut self) -> Result<Node, EngineError> {
        if self.depth >= PROGRAM_NESTING_DEPTH {
            return Err(EngineError(format!(
                "the regex nests more than {PROGRAM_NESTING_DEPTH} groups deep"
            )));
        }
        let look = if self.eat('?') {
            if self.eat(':') {
                None
            } else if self.eat('=') {
                Some(false)
            } else if self.eat('!') {
                Some(true)
            } else {
                return Err(EngineError(
                    "lookbehind and named groups are not supported in globs".to_owned(),
                ));
            }
        } else {
            None
        };
        self.depth += 1;
        let inner = self.alternation();
        self.depth -= 1;
        let inner = inner?;
        if !self.eat(')') {
            return Err(EngineError("unterminated group".to_owned()));
        }
        Ok(match look {
            Some(negate) => Node::Look(Box::new(inner), negate),
            None => inner,
        })
    }

    fn escape(&mut self) -> Result<Node, EngineError> {
        let Some(c) = self.peek() else {
            return Err(EngineError("regex ends with a lone backslash".to_owned()));
        };
        let ch = char::from_u32(u32::from(c)).unwrap_or('\u{fffd}');
        match ch {
            'b' => {
                self.i += 1;
                Ok(Node::WordBoundary(true))
            }
            'B' => {
                self.i += 1;
                Ok(Node::WordBoundary(false))
            }
            '1'..='9' => Err(EngineError(
                "backreferences are not supported in globs".to_owned(),
            )),
            _ => Ok(Node::Class(self.class_escape()?)),
        }
    }

    /// An escape as a set (`\d`, `\w`, `\s`, their negations) or a single unit.
    fn class_escape(&mut self) -> Result<Class, EngineError> {
        let c = self.peek().unwrap_or(0);
        self.i += 1;
        let ch = char::from_u32(u32::from(c)).unwrap_or('\u{fffd}');
        let set = |ranges: &[(u16, u16)], negated| Class {
            ranges: ranges.to_vec(),
            negated,
        };
        const DIGIT: &[(u16, u16)] = &[(0x30, 0x39)];
        const WORD: &[(u16, u16)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];
        const SPACE: &[(u16, u16)] = &[
            (0x09, 0x0d),
            (0x20, 0x20),
            (0xa0, 0xa0),
            (0x1680, 0x1680),
            (0x2000, 0x200a),
            (0x2028, 0x2029),
            (0x202f, 0x202f),
            (0x205f, 0x205f),
            (0x3000, 0x3000),
            (0xfeff, 0xfeff),
        ];
        let single = |u: u16| Class {
            ranges: vec![(u, u)],
            negated: false,
        };
        Ok(match ch {
            'd' => set(DIGIT, false),
            'D' => set(DIGIT, true),
            'w' => set(WORD, false),
            'W' => set(WORD, true),
            's' => set(SPACE, false),
            'S' => set(SPACE, true),
            't' => single(0x09),
            'n' => single(0x0a),
            'v' => single(0x0b),
            'f' => single(0x0c),
            'r' => single(0x0d),
            '0' => single(0),
            'x' => single(self.hex(2).unwrap_or(unit('x'))),
            'u' => single(self.hex(4).unwrap_or(unit('u'))),
            _ => single(c), // identity escape (sloppy mode)
        })
    }

    fn hex(&mut self, n: usize) -> Option<u16> {
        let digits = self.s.get(self.i..self.i + n)?;
        let text = String::from_utf16(digits).ok()?;
        let v = u16::from_str_radix(&text, 16).ok()?;
        self.i += n;
        Some(v)
    }

    fn class(&mut self) -> Result<Class, EngineError> {
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(EngineError("unterminated character class".to_owned()));
            };
            if c == unit(']') {
                self.i += 1;
                break;
            }
            let lo = self.class_atom()?;
            let dash_range = self.peek() == Some(unit('-'))
                && self.s.get(self.i + 1).is_some_and(|&n| n != unit(']'));
            match (lo, dash_range) {
                (Atom::One(a), true) => {
                    self.i += 1;
                    match self.class_atom()? {
                        Atom::One(b) if a <= b => ranges.push((a, b)),
                        Atom::One(_) => {
                            return Err(EngineError("range out of order in class".to_owned()));
                        }
                        // `[a-\d]`: sloppy mode reads the dash literally
                        Atom::Set(set) => {
                            ranges.extend([(a, a), (unit('-'), unit('-'))]);
                            ranges.extend(set_ranges(&set));
                        }
                    }
                }
                (Atom::One(a), false) => ranges.push((a, a)),
                (Atom::Set(set), _) => ranges.extend(set_ranges(&set)),
            }
        }
        Ok(Class { ranges, negated })
    }

    fn class_atom(&mut self) -> Result<Atom, EngineError> {
        let c = self.peek().unwrap_or(0);
        if c != unit('\\') {
            self.i += 1;
            return Ok(Atom::One(c));
        }
        self.i += 1;
        if self.peek() == Some(unit('b')) {
            self.i += 1;
            return Ok(Atom::One(0x08));
        }
        let class = self.class_escape()?;
        Ok(match class.ranges.as_slice() {
            [(a, b)] if a == b && !class.negated => Atom::One(*a),
            _ => Atom::Set(class),
        })
    }
}

enum Atom {
    One(u16),
    Set(Class),
}

/// A negated escape class (`\D`, `\W`, `\S`) inside brackets, as plain ranges.
fn set_ranges(set: &Class) -> Vec<(u16, u16)> {
    if !set.negated {
        return set.ranges.clone();
    }
    let mut sorted = set.ranges.clone();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut next: u32 = 0;
    for (lo, hi) in sorted {
        if u32::from(lo) > next {
            out.push((next as u16, lo - 1));
        }
        next = next.max(u32::from(hi) + 1);
    }
    if next <= 0xffff {
        out.push((next as u16, 0xffff));
    }
    out
}

fn parse_num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
