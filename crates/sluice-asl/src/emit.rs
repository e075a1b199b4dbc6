//! Writing TOML text: values, keys and comments, by hand so that the file reads like the
//! DAGs people write (one table per task, comments above it, nested lists one item a line).

use std::fmt::Write as _;

/// A TOML value of a task key.
#[derive(Debug, Clone, PartialEq)]
pub enum TVal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Arr(Vec<TVal>),
    Tbl(Vec<(String, TVal)>),
}

/// `s` as a TOML basic string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `k` as a TOML key: bare when it can be, quoted otherwise.
pub fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        string(k)
    }
}

/// `v` inline (arrays of tables one item a line, everything else on one line).
pub fn value(v: &TVal) -> String {
    match v {
        TVal::Str(s) => string(s),
        TVal::Int(i) => i.to_string(),
        TVal::Float(x) => {
            if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{x:.1}")
            } else if x.is_finite() {
                format!("{x}")
            } else {
                "0.0".into()
            }
        }
        TVal::Bool(b) => b.to_string(),
        TVal::Arr(items) if items.iter().any(|i| matches!(i, TVal::Tbl(_))) => {
            let mut out = String::from("[\n");
            for i in items {
                let _ = writeln!(out, "    {},", inline(i));
            }
            out.push(']');
            out
        }
        other => inline(other),
    }
}

fn inline(v: &TVal) -> String {
    match v {
        TVal::Arr(items) => {
            let parts: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", parts.join(", "))
        }
        TVal::Tbl(entries) if entries.is_empty() => "{}".into(),
        TVal::Tbl(entries) => {
            let parts: Vec<String> = entries.iter().map(|(k, v)| format!("{} = {}", key(k), inline(v))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        other => value(other),
    }
}

/// `text` as `# ` comment lines (each line of it one comment line, control characters
/// escaped).
pub fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "# {}", crate::report::one_line(line));
    }
}

/// `text` as a literal in a template: everything that would start a Jinja tag (`{{`, `{%`,
/// `{#`) is written as an expression printing the brace, so the text renders as itself.
pub fn jinja_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' && matches!(chars.peek(), Some('{' | '%' | '#')) {
            out.push_str("{{ \"{\" }}");
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` quoted for `sh`: in single quotes, each `'` written `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_keys_and_literals() {
        assert_eq!(string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(key("spark.sql.shuffle"), "\"spark.sql.shuffle\"");
        assert_eq!(key("role"), "role");
        assert_eq!(jinja_literal("a {{ b }} {% c {# d { e"), "a {{ \"{\" }}{ b }} {{ \"{\" }}% c {{ \"{\" }}# d { e");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(value(&TVal::Float(2.0)), "2.0");
        assert_eq!(value(&TVal::Float(1.5)), "1.5");
    }
}
