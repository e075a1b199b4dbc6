//! Static data flow: what a JSONPath in a state's input refers to, when it can be told
//! without running the machine, and the `States.Format` intrinsic.
//!
//! A state's input is a [`Sym`]: a symbolic JSON document whose parts are the execution
//! input, an earlier task's result, constants, or something that cannot be known statically.

use std::collections::BTreeMap;

use serde_json::Value;

/// One step of a JSONPath: `.name`, `['name']` or `[3]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Field(String),
    Index(usize),
}

/// A symbolic JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Sym {
    /// The execution input at this path (`[]` is the whole input).
    Input(Vec<Seg>),
    /// The result of the task `task` (a Sluice task id), at this path inside the result.
    Output { task: String, path: Vec<Seg> },
    /// A constant (a Pass state's `Result`, a literal in `Parameters`).
    Const(Value),
    /// A string template already in Sluice's syntax (from `States.Format` or the context
    /// object).
    Tpl(String),
    /// An object built by `Parameters` or `ResultPath`: its fields, over `base` for the
    /// fields it does not set.
    Obj { fields: BTreeMap<String, Sym>, base: Option<Box<Sym>> },
    /// A list (a Parallel state's branch outputs).
    Arr(Vec<Sym>),
    /// Not known statically, and why.
    Unknown(String),
}

impl Sym {
    /// What `path` points at inside `self`.
    pub fn resolve(&self, path: &[Seg]) -> Sym {
        let Some((first, rest)) = path.split_first() else {
            return self.clone();
        };
        match self {
            Sym::Input(p) => {
                let mut p = p.clone();
                p.extend(path.iter().cloned());
                Sym::Input(p)
            }
            Sym::Output { task, path: p } => {
                let mut p = p.clone();
                p.extend(path.iter().cloned());
                Sym::Output { task: task.clone(), path: p }
            }
            Sym::Const(v) => {
                let next = match (first, v) {
                    (Seg::Field(f), Value::Object(m)) => m.get(f),
                    (Seg::Index(i), Value::Array(a)) => a.get(*i),
                    _ => None,
                };
                match next {
                    Some(v) => Sym::Const(v.clone()).resolve(rest),
                    None => Sym::Unknown(format!("`{}` is not in the constant", render(path))),
                }
            }
            Sym::Tpl(_) => Sym::Unknown(format!("`{}` reads into a string", render(path))),
            Sym::Obj { fields, base } => match first {
                Seg::Field(f) => match (fields.get(f), base) {
                    (Some(s), _) => s.resolve(rest),
                    (None, Some(b)) => b.resolve(path),
                    (None, None) => Sym::Unknown(format!("`{}` is not set by the state before", render(path))),
                },
                Seg::Index(_) => Sym::Unknown(format!("`{}` indexes an object", render(path))),
            },
            Sym::Arr(items) => match first {
                Seg::Index(i) => match items.get(*i) {
                    Some(s) => s.resolve(rest),
                    None => Sym::Unknown(format!("`{}` is past the end of the list", render(path))),
                },
                Seg::Field(_) => Sym::Unknown(format!("`{}` reads a field of a list", render(path))),
            },
            Sym::Unknown(why) => Sym::Unknown(why.clone()),
        }
    }

    /// `self` with `value` at `path` (what a `ResultPath` does).
    pub fn set(&self, path: &[Seg], value: Sym) -> Sym {
        let Some((first, rest)) = path.split_first() else {
            return value;
        };
        let Seg::Field(f) = first else {
            return Sym::Unknown("a ResultPath with a list index".into());
        };
        let inner = self.resolve(std::slice::from_ref(first));
        let inner = if matches!(inner, Sym::Unknown(_)) && !rest.is_empty() {
            Sym::Obj { fields: BTreeMap::new(), base: None }
        } else {
            inner
        };
        // Flat: the new field beside the old ones, over the same base, so that a long chain of
        // states with a ResultPath does not nest (nor recurse) once per state.
        let (mut fields, base) = match self {
            Sym::Obj { fields, base } => (fields.clone(), base.clone()),
            other => (BTreeMap::new(), Some(Box::new(other.clone()))),
        };
        fields.insert(f.clone(), inner.set(rest, value));
        Sym::Obj { fields, base }
    }

    /// One document for a state reached from two places: what both agree on.
    pub fn merge(&self, other: &Sym) -> Sym {
        if self == other {
            return self.clone();
        }
        match (self, other) {
            (Sym::Obj { fields: a, base: ba }, Sym::Obj { fields: b, base: bb }) => {
                let mut fields = BTreeMap::new();
                for (k, va) in a {
                    let vb = b.get(k).cloned().unwrap_or_else(|| other.resolve(&[Seg::Field(k.clone())]));
                    fields.insert(k.clone(), va.merge(&vb));
                }
                for (k, vb) in b {
                    if !a.contains_key(k) {
                        fields.insert(k.clone(), self.resolve(&[Seg::Field(k.clone())]).merge(vb));
                    }
                }
                let base = match (ba, bb) {
                    (Some(x), Some(y)) => Some(Box::new(x.merge(y))),
                    _ => None,
                };
                Sym::Obj { fields, base }
            }
            _ => Sym::Unknown("the state is reached from several states that pass it different data".into()),
        }
    }
}

/// Parses a static JSONPath (`$`, `$.a.b`, `$['a b'][0]`); `None` for anything dynamic
/// (`..`, `*`, filters, slices). `root` is `$` or `$$`.
pub fn parse_path(src: &str, root: &str) -> Option<Vec<Seg>> {
    let rest = src.strip_prefix(root)?;
    if root == "$" && rest.starts_with('$') {
        return None;
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    let mut segs = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name.is_empty() || name == "*" || name.contains(['(', ')', '?', '@', '*']) {
                    return None;
                }
                segs.push(Seg::Field(name));
            }
            '[' => {
                let close = chars[i..].iter().position(|c| *c == ']')? + i;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    segs.push(Seg::Field(q.to_string()));
                } else if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    segs.push(Seg::Field(q.to_string()));
                } else if let Ok(n) = inner.parse::<usize>() {
                    segs.push(Seg::Index(n));
                } else {
                    return None;
                }
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(segs)
}

/// `path` written back as JSONPath, for messages.
pub fn render(path: &[Seg]) -> String {
    let mut out = String::from("$");
    for s in path {
        match s {
            Seg::Field(f) if f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                out.push('.');
                out.push_str(f);
            }
            Seg::Field(f) => {
                out.push_str("['");
                out.push_str(f);
                out.push_str("']");
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// An argument of an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    Num(String),
    Bool(bool),
    Null,
    Path(String),
    Call(Call),
}

/// An intrinsic function call, `States.Name(args...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
}

/// Whether `s` is an intrinsic function call (`States.X(...)`).
pub fn is_call(s: &str) -> bool {
    s.trim_start().starts_with("States.")
}

/// Parses an intrinsic function call; `Err` says what is wrong.
pub fn parse_call(src: &str) -> Result<Call, String> {
    let chars: Vec<char> = src.trim().chars().collect();
    let mut i = 0;
    let call = call_at(&chars, &mut i)?;
    if i != chars.len() {
        return Err(format!("unexpected text after the call at character {i}"));
    }
    Ok(call)
}

fn call_at(c: &[char], i: &mut usize) -> Result<Call, String> {
    let start = *i;
    while *i < c.len() && (c[*i].is_ascii_alphanumeric() || c[*i] == '.') {
        *i += 1;
    }
    let name: String = c[start..*i].iter().collect();
    if *i >= c.len() || c[*i] != '(' {
        return Err(format!("`{name}` is not followed by `(`"));
    }
    *i += 1;
    let mut args = Vec::new();
    loop {
        skip_ws(c, i);
        if *i >= c.len() {
            return Err("the call has no closing `)`".into());
        }
        if c[*i] == ')' && args.is_empty() {
            *i += 1;
            return Ok(Call { name, args });
        }
        args.push(arg_at(c, i)?);
        skip_ws(c, i);
        match c.get(*i) {
            Some(',') => *i += 1,
            Some(')') => {
                *i += 1;
                return Ok(Call { name, args });
            }
            _ => return Err("expected `,` or `)` between the arguments".into()),
        }
    }
}

fn skip_ws(c: &[char], i: &mut usize) {
    while *i < c.len() && c[*i].is_whitespace() {
        *i += 1;
    }
}

fn arg_at(c: &[char], i: &mut usize) -> Result<Arg, String> {
    match c[*i] {
        '\'' => {
            *i += 1;
            let mut s = String::new();
            while *i < c.len() {
                match c[*i] {
                    '\\' if *i + 1 < c.len() => {
                        // `\'` stands for `'`; `\{`, `\}` and `\\` keep their escape so that
                        // `States.Format` can tell a brace from a placeholder ([`unescape`]).
                        let next = c[*i + 1];
                        if next == '{' || next == '}' || next == '\\' {
                            s.push('\\');
                        }
                        s.push(next);
                        *i += 2;
                    }
                    '\'' => {
                        *i += 1;
                        return Ok(Arg::Str(s));
                    }
                    ch => {
                        s.push(ch);
                        *i += 1;
                    }
                }
            }
            Err("a string argument has no closing `'`".into())
        }
        '$' => {
            let start = *i;
            let mut depth = 0usize;
            while *i < c.len() {
                match c[*i] {
                    '[' => depth += 1,
                    ']' => depth = depth.saturating_sub(1),
                    ',' | ')' if depth == 0 => break,
                    _ => {}
                }
                *i += 1;
            }
            Ok(Arg::Path(c[start..*i].iter().collect::<String>().trim().to_string()))
        }
        'S' => Ok(Arg::Call(call_at(c, i)?)),
        _ => {
            let start = *i;
            while *i < c.len() && c[*i] != ',' && c[*i] != ')' {
                *i += 1;
            }
            let word: String = c[start..*i].iter().collect::<String>().trim().to_string();
            match word.as_str() {
                "true" => Ok(Arg::Bool(true)),
                "false" => Ok(Arg::Bool(false)),
                "null" => Ok(Arg::Null),
                w if w.parse::<f64>().is_ok() => Ok(Arg::Num(w.to_string())),
                w => Err(format!("`{w}` is not an argument")),
            }
        }
    }
}

/// A string argument's text, its escapes undone.
pub fn unescape(s: &str) -> String {
    format_pieces(s).into_iter().map(|p| p.unwrap_or_else(|| "{}".into())).collect()
}

/// The pieces of a `States.Format` template: literal text and `{}` placeholders (`None`).
pub fn format_pieces(template: &str) -> Vec<Option<String>> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = template.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(n) = chars.next() {
                    lit.push(n);
                }
            }
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                pieces.push(Some(std::mem::take(&mut lit)));
                pieces.push(None);
            }
            ch => lit.push(ch),
        }
    }
    pieces.push(Some(lit));
    pieces.retain(|p| p.as_ref().is_none_or(|s| !s.is_empty()));
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Seg {
        Seg::Field(s.into())
    }

    #[test]
    fn static_paths_parse_and_dynamic_ones_do_not() {
        assert_eq!(parse_path("$", "$"), Some(vec![]));
        assert_eq!(parse_path("$.a.b", "$"), Some(vec![f("a"), f("b")]));
        assert_eq!(parse_path("$['a b'][2].c", "$"), Some(vec![f("a b"), Seg::Index(2), f("c")]));
        assert_eq!(parse_path("$$.Execution.Id", "$$"), Some(vec![f("Execution"), f("Id")]));
        assert_eq!(parse_path("$$.Execution.Id", "$"), None);
        for dynamic in ["$..a", "$.a[*]", "$.a[?(@.b)]", "$.a[0:2]", "$.*", "a.b"] {
            assert_eq!(parse_path(dynamic, "$"), None, "{dynamic}");
        }
    }

    #[test]
    fn result_paths_set_and_resolve() {
        let input = Sym::Input(vec![]);
        let out = input.set(&[f("cluster")], Sym::Output { task: "c".into(), path: vec![] });
        assert_eq!(
            out.resolve(&[f("cluster"), f("ClusterId")]),
            Sym::Output { task: "c".into(), path: vec![f("ClusterId")] }
        );
        assert_eq!(out.resolve(&[f("bucket")]), Sym::Input(vec![f("bucket")]));
    }

    #[test]
    fn format_calls_parse() {
        let call = parse_call("States.Format('s3://{}/raw/{}', $.bucket, $$.Execution.Name)").unwrap();
        assert_eq!(call.name, "States.Format");
        assert_eq!(call.args.len(), 3);
        assert_eq!(call.args[1], Arg::Path("$.bucket".into()));
        assert_eq!(format_pieces("s3://{}/raw/{}"), vec![Some("s3://".into()), None, Some("/raw/".into()), None]);
        assert_eq!(format_pieces("a\\{}b"), vec![Some("a{}b".into())]);
        assert!(parse_call("States.Format('a'").is_err());
        assert!(parse_call("States.Format('a', )").is_err());
    }
}
