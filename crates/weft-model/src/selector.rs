//! Node selectors in Calico's syntax (`nodeSelector`, `peerSelector`), which operators
//! of BGP clusters already write: `all()`, `has(k)`, `!has(k)`, `k == 'v'`, `k != 'v'`,
//! `k in {'a', 'b'}`, `k not in {'a'}`, joined by `&&` and `||` (`&&` binds tighter),
//! grouped with parentheses, negated with `!`. Values are quoted with `'` or `"`.
//!
//! A selector is parsed once, where it is read (a peer record, the network config), so
//! a bad one is refused there with the position it stops making sense; matching is a
//! plain function of a node's labels.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// A node's labels (`--node-labels`, published in its lease).
pub type NodeLabels = BTreeMap<String, String>;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Has(String),
    Equals(String, String),
    In(String, Vec<String>),
    Not(Box<Selector>),
    And(Box<Selector>, Box<Selector>),
    Or(Box<Selector>, Box<Selector>),
}

/// Why a selector could not be read: what was expected, and where (a character offset).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("selector {text:?}: {what} at character {at}")]
pub struct SelectorError {
    pub text: String,
    pub what: String,
    pub at: usize,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser {
            text,
            chars: text.char_indices().collect(),
            pos: 0,
        };
        let s = p.or()?;
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(p.error("expected && or || or the end"));
        }
        Ok(s)
    }

    /// Whether a node with these labels is selected.
    pub fn matches(&self, labels: &NodeLabels) -> bool {
        match self {
            Selector::All => true,
            Selector::Has(k) => labels.contains_key(k),
            Selector::Equals(k, v) => labels.get(k) == Some(v),
            Selector::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Selector::Not(s) => !s.matches(labels),
            Selector::And(a, b) => a.matches(labels) && b.matches(labels),
            Selector::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

impl fmt::Display for Selector {
    /// In the syntax it was read from (so a stored selector reads back the same).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |vs: &[String]| {
            vs.iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Equals(k, v) => write!(f, "{k} == '{v}'"),
            Selector::In(k, vs) => write!(f, "{k} in {{{}}}", list(vs)),
            Selector::Not(s) => match s.as_ref() {
                Selector::Has(k) => write!(f, "!has({k})"),
                Selector::Equals(k, v) => write!(f, "{k} != '{v}'"),
                Selector::In(k, vs) => write!(f, "{k} not in {{{}}}", list(vs)),
                other => write!(f, "!({other})"),
            },
            Selector::And(a, b) => {
                let side = |s: &Selector| match s {
                    Selector::Or(..) => format!("({s})"),
                    _ => s.to_string(),
                };
                write!(f, "{} && {}", side(a), side(b))
            }
            Selector::Or(a, b) => write!(f, "{a} || {b}"),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> SelectorError {
        SelectorError {
            text: self.text.to_owned(),
            what: what.to_owned(),
            at: self.pos,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|(_, c)| *c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Takes `token` (after any spaces) if it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        let n = token.chars().count();
        let next: String = self.chars[self.pos..]
            .iter()
            .take(n)
            .map(|(_, c)| c)
            .collect();
        if next == token {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Selector::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.term()?;
        while self.eat("&&") {
            left = Selector::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Selector, SelectorError> {
        if self.eat("!") {
            return Ok(Selector::Not(Box::new(self.term()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("expected )"));
            }
            return Ok(inner);
        }
        if self.eat("all()") {
            return Ok(Selector::All);
        }
        let key = self.key()?;
        if key == "has" && self.eat("(") {
            let k = self.key()?;
            if !self.eat(")") {
                return Err(self.error("expected ) after has(key"));
            }
            return Ok(Selector::Has(k));
        }
        if self.eat("==") {
            return Ok(Selector::Equals(key, self.value()?));
        }
        if self.eat("!=") {
            return Ok(Selector::Not(Box::new(Selector::Equals(
                key,
                self.value()?,
            ))));
        }
        if self.eat("not") {
            if !self.eat("in") {
                return Err(self.error("expected `in` after `not`"));
            }
            return Ok(Selector::Not(Box::new(Selector::In(key, self.set()?))));
        }
        if self.eat("in") {
            return Ok(Selector::In(key, self.set()?));
        }
        Err(self.error("expected ==, !=, in or not in after a label key"))
    }

    /// A label key: letters, digits and `-_./`.
    fn key(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a label key, all(), has(key) or ("));
        }
        Ok(self.chars[start..self.pos].iter().map(|(_, c)| c).collect())
    }

    /// A quoted value.
    fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let Some(quote) = self.peek().filter(|c| *c == '\'' || *c == '"') else {
            return Err(self.error("expected a quoted value ('v' or \"v\")"));
        };
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c != quote) {
            self.pos += 1;
        }
        if self.peek().is_none() {
            return Err(self.error("the quoted value is not closed"));
        }
        let v = self.chars[start..self.pos].iter().map(|(_, c)| c).collect();
        self.pos += 1;
        Ok(v)
    }

    /// `{'a', 'b'}`.
    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("expected { after in"));
        }
        let mut out = Vec::new();
        if self.eat("}") {
            return Ok(out);
        }
        loop {
            out.push(self.value()?);
            if self.eat("}") {
                return Ok(out);
            }
            if !self.eat(",") {
                return Err(self.error("expected , or }"));
            }
        }
    }
}

/// Parses `k=v,k2=v2` (`--node-labels`, kubectl's `label` form), each label checked by
/// the rules pod and namespace labels are (`weft_policy::selector::label_problems`).
pub fn parse_labels(text: &str) -> Result<NodeLabels, LabelsError> {
    let mut out = NodeLabels::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| LabelsError(format!("{part:?} is not key=value")))?;
        out.insert(k.to_owned(), v.to_owned());
    }
    match weft_policy::selector::label_problems(&out).as_slice() {
        [] => Ok(out),
        problems => Err(LabelsError(problems.join("; "))),
    }
}

/// Why node labels could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("node labels: {0}")]
pub struct LabelsError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> NodeLabels {
        parse_labels(s).unwrap()
    }

    #[test]
    fn calico_selectors_select_by_labels() {
        let rr = labels("route-reflector=true,rack=r1");
        let plain = labels("rack=r2");
        for (sel, on_rr, on_plain) in [
            ("all()", true, true),
            ("has(route-reflector)", true, false),
            ("!has(route-reflector)", false, true),
            ("route-reflector == 'true'", true, false),
            ("rack != 'r1'", false, true),
            ("rack in {'r1', 'r2'}", true, true),
            ("rack not in {\"r1\"}", false, true),
            ("rack == 'r2' || has(route-reflector)", true, true),
            ("rack == 'r1' && !has(route-reflector)", false, false),
            (
                "(rack == 'r2' || rack == 'r1') && has(route-reflector)",
                true,
                false,
            ),
        ] {
            let s = Selector::parse(sel).unwrap();
            assert_eq!(s.matches(&rr), on_rr, "{sel} on the reflector");
            assert_eq!(s.matches(&plain), on_plain, "{sel} on the plain node");
            // It reads back as written, meaning the same.
            assert_eq!(Selector::parse(&s.to_string()).unwrap(), s, "{sel}");
        }
    }

    #[test]
    fn a_bad_selector_says_where_it_stops() {
        for (sel, what) in [
            ("", "expected a label key"),
            ("rack = 'r1'", "expected ==, !=, in"),
            ("rack == r1", "expected a quoted value"),
            ("rack == 'r1", "not closed"),
            ("rack == 'r1' &&", "expected a label key"),
            ("has(rack", "expected )"),
            ("(rack == 'a'", "expected )"),
            ("rack in 'a'", "expected {"),
            ("rack == 'a' rack", "expected && or ||"),
        ] {
            let e = Selector::parse(sel).unwrap_err();
            assert!(e.to_string().contains(what), "{sel:?}: {e}");
        }
    }

    #[test]
    fn labels_parse_or_say_which_is_wrong() {
        assert_eq!(labels(" a=1 , b.c/d=x-y ").len(), 2);
        assert!(parse_labels("").unwrap().is_empty());
        for bad in [
            "a",
            "=1",
            "a b=1",
            "a=b c",
            &format!("a={}", "x".repeat(64)),
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }
}
