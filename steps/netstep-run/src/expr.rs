//! A small boolean expression language: the subset of expr-lang Argo uses in
//! `retryStrategy.expression`, of govaluate used in `when`, and the DAG `depends` syntax.
//!
//! Supported: string ('..' or ".."), integer/float and boolean literals, identifiers with
//! dots (`lastRetry.exitCode`, `task-a.Succeeded`), calls `asInt(x)`, `asFloat(x)`,
//! `string(x)`, comparisons `== != < <= > >=`, `&& || !` (also `and or not`) and
//! parentheses. Anything else is a parse error naming the unsupported token.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(String),
    Num(f64),
    Bool(bool),
    Ident(String),
    Call(String, Vec<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A runtime value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Str(s) => write!(f, "{s:?}"),
            Val::Num(n) => write!(f, "{n}"),
            Val::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (in `{source_text}`)")]
pub struct ExprError {
    pub message: String,
    pub source_text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(f64),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(src: &str, dash_idents: bool) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op2 = ["==", "!=", "<=", ">=", "&&", "||"]
            .into_iter()
            .find(|o| *o == two);
        if let Some(op) = op2 {
            out.push(Tok::Op(op));
            i += 2;
            continue;
        }
        match c {
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            ',' => out.push(Tok::Comma),
            '<' => out.push(Tok::Op("<")),
            '>' => out.push(Tok::Op(">")),
            '!' => out.push(Tok::Op("!")),
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err("unterminated string literal".into());
                    };
                    if ch == quote {
                        break;
                    }
                    if ch == '\\' {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&other) => s.push(other),
                            None => return Err("unterminated string literal".into()),
                        }
                    } else {
                        s.push(ch);
                    }
                    i += 1;
                }
                out.push(Tok::Str(s));
            }
            _ if c.is_ascii_digit()
                || (c == '-'
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                    && !matches!(
                        out.last(),
                        Some(Tok::Num(_) | Tok::Str(_) | Tok::Ident(_) | Tok::RParen)
                    )) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse::<f64>()
                    .map_err(|_| format!("bad number `{text}`"))?;
                out.push(Tok::Num(n));
                continue;
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric()
                        || chars[i] == '_'
                        || chars[i] == '.'
                        || (dash_idents && chars[i] == '-'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.as_str() {
                    "and" => out.push(Tok::Op("&&")),
                    "or" => out.push(Tok::Op("||")),
                    "not" => out.push(Tok::Op("!")),
                    _ => out.push(Tok::Ident(word)),
                }
                continue;
            }
            other => return Err(format!("unsupported syntax at `{other}`")),
        }
        i += 1;
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    pos: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.eat_op("||") {
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.cmp()?;
        while self.eat_op("&&") {
            l = Expr::And(Box::new(l), Box::new(self.cmp()?));
        }
        Ok(l)
    }
    fn cmp(&mut self) -> Result<Expr, String> {
        let l = self.unary()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => return Ok(l),
        };
        self.pos += 1;
        let r = self.unary()?;
        Ok(Expr::Cmp(op, Box::new(l), Box::new(r)))
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<Expr, String> {
        let Some(tok) = self.toks.get(self.pos).cloned() else {
            return Err("unexpected end of expression".into());
        };
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::LParen => {
                let e = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err("expected `)`".into());
                }
                self.pos += 1;
                Ok(e)
            }
            Tok::Ident(id) => {
                if id == "true" || id == "false" {
                    return Ok(Expr::Bool(id == "true"));
                }
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    let mut args = Vec::new();
                    if self.peek() != Some(&Tok::RParen) {
                        loop {
                            args.push(self.or()?);
                            if self.peek() == Some(&Tok::Comma) {
                                self.pos += 1;
                                continue;
                            }
                            break;
                        }
                    }
                    if self.peek() != Some(&Tok::RParen) {
                        return Err("expected `)` after function arguments".into());
                    }
                    self.pos += 1;
                    if !matches!(id.as_str(), "asInt" | "asFloat" | "string") {
                        return Err(format!(
                            "unsupported function `{id}` (supported: asInt, asFloat, string)"
                        ));
                    }
                    if args.len() != 1 {
                        return Err(format!("`{id}` takes exactly one argument"));
                    }
                    return Ok(Expr::Call(id, args));
                }
                Ok(Expr::Ident(id))
            }
            Tok::Op(o) => Err(format!("unexpected `{o}`")),
            Tok::RParen => Err("unexpected `)`".into()),
            Tok::Comma => Err("unexpected `,`".into()),
        }
    }
}

/// Parses an expression. `dash_idents` allows `-` inside identifiers (task names in
/// `depends`); otherwise `-` is only a number sign.
pub fn parse(src: &str, dash_idents: bool) -> Result<Expr, ExprError> {
    let err = |message: String| ExprError {
        message,
        source_text: src.to_string(),
    };
    let toks = tokenize(src, dash_idents).map_err(err)?;
    let mut p = P { toks, pos: 0 };
    let e = p.or().map_err(err)?;
    if let Some(t) = p.peek() {
        let shown = match t {
            Tok::Str(s) => format!("{s:?}"),
            Tok::Num(n) => n.to_string(),
            Tok::Ident(i) => i.clone(),
            Tok::Op(o) => (*o).to_string(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
        };
        return Err(err(format!("unsupported syntax at `{shown}`")));
    }
    Ok(e)
}

impl Expr {
    /// Every identifier used (for lint).
    pub fn idents(&self, out: &mut Vec<String>) {
        match self {
            Expr::Ident(i) => out.push(i.clone()),
            Expr::Call(_, a) => a.iter().for_each(|x| x.idents(out)),
            Expr::Not(a) => a.idents(out),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => {
                a.idents(out);
                b.idents(out);
            }
            Expr::Str(_) | Expr::Num(_) | Expr::Bool(_) => {}
        }
    }

    /// Evaluates to a value; `env` resolves identifiers.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<Val>) -> Result<Val, String> {
        Ok(match self {
            Expr::Str(s) => Val::Str(s.clone()),
            Expr::Num(n) => Val::Num(*n),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Ident(i) => env(i).ok_or_else(|| format!("unknown variable `{i}`"))?,
            Expr::Call(f, args) => {
                let v = args[0].eval(env)?;
                match (f.as_str(), v) {
                    ("string", Val::Str(s)) => Val::Str(s),
                    ("string", Val::Num(n)) => Val::Str(n.to_string()),
                    ("string", Val::Bool(b)) => Val::Str(b.to_string()),
                    ("asInt", Val::Num(n)) => Val::Num(n.trunc()),
                    ("asInt", Val::Str(s)) => Val::Num(
                        s.trim()
                            .parse::<i64>()
                            .map_err(|_| format!("asInt: `{s}` is not an integer"))?
                            as f64,
                    ),
                    ("asFloat", Val::Num(n)) => Val::Num(n),
                    ("asFloat", Val::Str(s)) => Val::Num(
                        s.trim()
                            .parse::<f64>()
                            .map_err(|_| format!("asFloat: `{s}` is not a number"))?,
                    ),
                    (f, v) => return Err(format!("{f}({v}) is not supported")),
                }
            }
            Expr::Not(a) => Val::Bool(!a.eval_bool(env)?),
            Expr::And(a, b) => Val::Bool(a.eval_bool(env)? && b.eval_bool(env)?),
            Expr::Or(a, b) => Val::Bool(a.eval_bool(env)? || b.eval_bool(env)?),
            Expr::Cmp(op, a, b) => {
                let (a, b) = (a.eval(env)?, b.eval(env)?);
                Val::Bool(match op {
                    // Like expr-lang: values of different types are never equal.
                    CmpOp::Eq => a == b,
                    CmpOp::Ne => a != b,
                    _ => {
                        let ord = match (&a, &b) {
                            (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
                            (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
                            _ => None,
                        }
                        .ok_or_else(|| format!("cannot order {a} and {b}"))?;
                        match op {
                            CmpOp::Lt => ord.is_lt(),
                            CmpOp::Le => ord.is_le(),
                            CmpOp::Gt => ord.is_gt(),
                            _ => ord.is_ge(),
                        }
                    }
                })
            }
        })
    }

    pub fn eval_bool(&self, env: &dyn Fn(&str) -> Option<Val>) -> Result<bool, String> {
        match self.eval(env)? {
            Val::Bool(b) => Ok(b),
            other => Err(format!("expected a boolean, got {other}")),
        }
    }

    /// Comparisons of `ident` against a number literal without a conversion: always
    /// false in Argo because the variable is a string (lint helper).
    pub fn compares_ident_with_number(&self, ident: &str) -> bool {
        match self {
            Expr::Cmp(_, a, b) => {
                matches!((&**a, &**b), (Expr::Ident(i), Expr::Num(_)) | (Expr::Num(_), Expr::Ident(i)) if i == ident)
            }
            Expr::Not(a) => a.compares_ident_with_number(ident),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.compares_ident_with_number(ident) || b.compares_ident_with_number(ident)
            }
            _ => false,
        }
    }
}

/// Results a `depends` expression can test (`task.Succeeded`, ...).
pub const TASK_RESULTS: &[&str] = &[
    "Succeeded",
    "Failed",
    "Errored",
    "Skipped",
    "Omitted",
    "Daemoned",
    "AnySucceeded",
    "AllFailed",
];

/// Splits a `depends` atom into (task, result); bare `task` gives result None.
pub fn split_depends_atom(ident: &str) -> (&str, Option<&str>) {
    match ident.rsplit_once('.') {
        Some((task, res)) if TASK_RESULTS.contains(&res) => (task, Some(res)),
        _ => (ident, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(code: &str, status: &str) -> impl Fn(&str) -> Option<Val> {
        let (c, s) = (code.to_string(), status.to_string());
        move |i| match i {
            "lastRetry.exitCode" => Some(Val::Str(c.clone())),
            "lastRetry.status" => Some(Val::Str(s.clone())),
            _ => None,
        }
    }

    #[test]
    fn retry_expressions() {
        let e = parse(
            "asInt(lastRetry.exitCode) == 75 || lastRetry.status == \"Error\"",
            false,
        )
        .unwrap();
        assert!(e.eval_bool(&env("75", "Failed")).unwrap());
        assert!(!e.eval_bool(&env("1", "Failed")).unwrap());
        assert!(e.eval_bool(&env("-1", "Error")).unwrap());
        let e = parse(
            "(lastRetry.exitCode == '75') && !(lastRetry.status != 'Failed')",
            false,
        )
        .unwrap();
        assert!(e.eval_bool(&env("75", "Failed")).unwrap());
        assert!(!e.eval_bool(&env("75", "Error")).unwrap());
        // string vs number: never equal (Argo's exitCode is a string)
        let e = parse("lastRetry.exitCode == 75", false).unwrap();
        assert!(!e.eval_bool(&env("75", "Failed")).unwrap());
        assert!(e.compares_ident_with_number("lastRetry.exitCode"));
        assert!(parse("asInt(lastRetry.exitCode) != -1", false).is_ok());
    }

    #[test]
    fn unsupported_syntax_is_a_clear_error() {
        let e = parse("lastRetry.message matches 'x'", false).unwrap_err();
        assert!(e.message.contains("unsupported syntax at `matches`"), "{e}");
        let e = parse("lastRetry.exitCode in [1]", false).unwrap_err();
        assert!(e.message.contains("unsupported syntax at `[`"), "{e}");
        let e = parse("len(x) > 1", false).unwrap_err();
        assert!(e.message.contains("unsupported function `len`"), "{e}");
    }

    #[test]
    fn depends_expressions() {
        let e = parse("tag-groups && (mesh-connect.Succeeded || b.Failed)", true).unwrap();
        let mut ids = Vec::new();
        e.idents(&mut ids);
        assert_eq!(
            ids,
            vec!["tag-groups", "mesh-connect.Succeeded", "b.Failed"]
        );
        assert_eq!(split_depends_atom("b.Failed"), ("b", Some("Failed")));
        assert_eq!(split_depends_atom("tag-groups"), ("tag-groups", None));
    }
}
