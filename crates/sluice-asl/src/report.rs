//! The import report: every decision the converter made, one line each.

use std::fmt::{self, Write as _};

/// How a part of the state machine was carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Carried over with the same meaning (or folded away where Sluice needs nothing).
    Mapped,
    /// Carried over with a different meaning, said in the message: `--strict` refuses it.
    Approximated,
    /// Not carried over: the DAG is not written unless `--allow-partial`.
    Rejected,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Mapped => "mapped",
            Level::Approximated => "approximated",
            Level::Rejected => "rejected",
        }
    }
}

/// One decision: its level, its stable code (see [`crate::codes`]), where it is in the JSON,
/// what happened, and what to do instead (for approximations and rejections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub level: Level,
    pub code: &'static str,
    /// The JSON path in the state machine, e.g. `$.States.CreateCluster.Retry[0]`.
    pub path: String,
    pub message: String,
    pub instead: Option<String>,
}

/// Every decision, in the order the states were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    pub fn mapped(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.items.push(Item {
            level: Level::Mapped,
            code: "",
            path: path.into(),
            message: message.into(),
            instead: None,
        });
    }

    pub fn approximated(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.push(Level::Approximated, code, path.into(), message.into(), instead.into());
    }

    pub fn rejected(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.push(Level::Rejected, code, path.into(), message.into(), instead.into());
    }

    fn push(&mut self, level: Level, code: &'static str, path: String, message: String, instead: String) {
        let item = Item { level, code, path, message, instead: if instead.is_empty() { None } else { Some(instead) } };
        // The same problem found twice (a path read by two keys) is reported once.
        if !self.items.contains(&item) {
            self.items.push(item);
        }
    }

    pub fn count(&self, level: Level) -> usize {
        self.items.iter().filter(|i| i.level == level).count()
    }

    pub fn has_rejections(&self) -> bool {
        self.count(Level::Rejected) > 0
    }

    pub fn has_approximations(&self) -> bool {
        self.count(Level::Approximated) > 0
    }

    /// The codes of the approximations and rejections, in order, for tests.
    pub fn codes(&self) -> Vec<&'static str> {
        self.items.iter().filter(|i| i.level != Level::Mapped).map(|i| i.code).collect()
    }
}

impl fmt::Display for Report {
    /// One line per decision, `LEVEL [CODE] PATH: MESSAGE; instead: ...`, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            let mut line = String::new();
            let _ = write!(line, "{}", item.level.name());
            if !item.code.is_empty() {
                let _ = write!(line, " [{}]", item.code);
            }
            let _ = write!(line, " {}: {}", item.path, item.message);
            if let Some(instead) = &item.instead {
                let _ = write!(line, "; instead: {instead}");
            }
            writeln!(f, "{}", one_line(&line))?;
        }
        writeln!(
            f,
            "{} mapped, {} approximated, {} rejected",
            self.count(Level::Mapped),
            self.count(Level::Approximated),
            self.count(Level::Rejected)
        )
    }
}

/// `s` with control characters escaped, so that a name from the JSON never breaks a line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
