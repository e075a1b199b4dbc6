//! Problems found in DAG files, each pointing at a file, a line and (where known) a task.
//!
//! A diagnostic displays as exactly one line, whatever its file name, task id or message
//! hold: control characters are escaped (`\n` for a newline), and names taken from a file are
//! quoted with [`quoted`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one DAG file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based line, where the problem has one.
    pub line: Option<usize>,
    /// 1-based column, for TOML syntax errors.
    pub column: Option<usize>,
    /// The task the problem is in, if any.
    pub task: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(&self.file.display().to_string()))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {sev}: ")?;
        if let Some(task) = &self.task {
            write!(f, "task {}: ", quoted(task))?;
        }
        f.write_str(&one_line(&self.message))
    }
}

/// A name taken from a file (a task id, a key, an operator...), for a message: in backticks,
/// with control characters escaped (`a\nb`), and backticks and backslashes too, so that the
/// name can end neither the line nor the quote.
pub fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        match c {
            '`' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => push_escaped(&mut out, c),
        }
    }
    out.push('`');
    out
}

/// `s` with its control characters (and the Unicode line and paragraph separators) escaped,
/// so that it prints as one line.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(breaks_line) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn breaks_line(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if breaks_line(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Turns byte offsets of a source file into 1-based lines and columns.
pub(crate) struct SourceMap {
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub(crate) fn new(src: &str) -> SourceMap {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap { line_starts }
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    pub(crate) fn line_col(&self, src: &str, offset: usize) -> (usize, usize) {
        let line = self.line(offset);
        let start = self.line_starts[line - 1];
        let col = src.get(start..offset.min(src.len())).map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }
}

/// Collects the diagnostics of one file.
pub(crate) struct Sink<'a> {
    pub(crate) file: &'a Path,
    pub(crate) map: SourceMap,
    pub(crate) out: Vec<Diagnostic>,
    /// Diagnostics past [`MAX_DIAGNOSTICS`], counted instead of kept: (errors, warnings).
    dropped: (usize, usize),
}

/// The most diagnostics one file keeps: a 16 MiB file of unknown keys would otherwise hold a
/// million of them (a gigabyte). The rest are counted in one last diagnostic.
pub const MAX_DIAGNOSTICS: usize = 1000;

impl<'a> Sink<'a> {
    pub(crate) fn new(file: &'a Path, src: &str) -> Sink<'a> {
        Sink { file, map: SourceMap::new(src), out: Vec::new(), dropped: (0, 0) }
    }

    pub(crate) fn push(&mut self, severity: Severity, at: Option<usize>, task: Option<&str>, message: String) {
        if self.is_full() {
            self.drop_one(severity);
            return;
        }
        let d = self.make(severity, at, task, message);
        self.out.push(d);
    }

    /// Keeps `d`, unless the file has [`MAX_DIAGNOSTICS`] already.
    pub(crate) fn record(&mut self, d: Diagnostic) {
        if self.is_full() {
            self.drop_one(d.severity);
        } else {
            self.out.push(d);
        }
    }

    /// Whether more diagnostics would only be counted (so not worth a costly message).
    pub(crate) fn is_full(&self) -> bool {
        self.out.len() >= MAX_DIAGNOSTICS
    }

    fn drop_one(&mut self, severity: Severity) {
        match severity {
            Severity::Error => self.dropped.0 += 1,
            Severity::Warning => self.dropped.1 += 1,
        }
    }

    /// Back to [`MAX_DIAGNOSTICS`], after diagnostics were put in without [`Sink::record`].
    pub(crate) fn truncate(&mut self) {
        while self.out.len() > MAX_DIAGNOSTICS {
            let d = self.out.pop().expect("longer than the limit");
            self.drop_one(d.severity);
        }
    }

    /// The diagnostics, in line order, and one more counting those that were dropped.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.out.sort_by_key(|d| d.line.unwrap_or(0));
        let (errors, warnings) = self.dropped;
        if errors + warnings > 0 {
            let severity = if errors > 0 { Severity::Error } else { Severity::Warning };
            let message = format!(
                "{} more problems ({errors} errors, {warnings} warnings) not shown: a file reports its first {MAX_DIAGNOSTICS}",
                errors + warnings
            );
            let d = self.make(severity, None, None, message);
            self.out.push(d);
        }
        self.out
    }

    /// A diagnostic of this file at byte offset `at`, not yet reported.
    pub(crate) fn make(
        &self,
        severity: Severity,
        at: Option<usize>,
        task: Option<&str>,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line: at.map(|o| self.map.line(o)),
            column: None,
            task: task.map(str::to_string),
            message: one_line(&message).into_owned(),
        }
    }

    pub(crate) fn error(&mut self, at: Option<usize>, task: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, at, task, message.into());
    }

    pub(crate) fn warning(&mut self, at: Option<usize>, task: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Warning, at, task, message.into());
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.dropped.0 > 0 || self.out.iter().any(Diagnostic::is_error)
    }
}

/// The closest candidate to a misspelt name, if one is close enough to suggest.
pub fn suggest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let chars = name.chars().count();
    let limit = |c: &str| (c.len().max(name.len()) / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            // A name that is the start of a candidate (`s3` for `s3_key`) is as good as one typo.
            if name.len() >= 2 && c.starts_with(name) {
                return Some((1, c));
            }
            // The distance is at least the difference in length: skip the costly measure when
            // that already rules the candidate out.
            if c.chars().count().abs_diff(chars) > limit(c) {
                return None;
            }
            Some((strsim::damerau_levenshtein(name, c), c))
        })
        .filter(|(d, c)| *d <= limit(c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` or nothing.
pub(crate) fn did_you_mean<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    suggest(name, candidates).map(|s| format!(" (did you mean {}?)", quoted(s))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let src = "a = 1\nbé = 2\n";
        let map = SourceMap::new(src);
        assert_eq!(map.line(0), 1);
        assert_eq!(map.line(6), 2);
        assert_eq!(map.line_col(src, 10), (2, 4));
    }

    #[test]
    fn names_are_quoted_and_escaped() {
        assert_eq!(quoted("plain_name"), "`plain_name`");
        assert_eq!(quoted("a\nb\t`c`\\"), "`a\\nb\\t\\`c\\`\\\\`");
        assert_eq!(quoted("\u{0}\u{7f}\u{2028}é"), "`\\0\\u{7f}\\u{2028}é`");
        assert_eq!(one_line("no break"), "no break");
        assert_eq!(one_line("a\r\nb\u{85}"), "a\\r\\nb\\u{85}");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("depend_on", ["depends_on", "doc"]), Some("depends_on"));
        assert_eq!(suggest("zzz", ["depends_on", "doc"]), None);
    }
}
