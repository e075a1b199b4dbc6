//! Channel references, `kind:name`, as the DAG model defines them (`sluice_dag::ChannelRef`).
//!
//! A stand-in with the model's shape until `sluice_dag::alerts` is on this branch; then this
//! module becomes `pub use sluice_dag::{ChannelKind, ChannelRef};` and nothing else changes.

use std::fmt;
use std::str::FromStr;

/// The kinds of channel, as written before the `:` of a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    Slack,
    Sns,
    Email,
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [ChannelKind::Slack, ChannelKind::Sns, ChannelKind::Email, ChannelKind::Webhook];

    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Sns => "sns",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChannelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ChannelKind, String> {
        ChannelKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.name()).collect();
            let hint = sluice_dag::diagnostic::suggest(s, names.iter().copied())
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            format!(
                "unknown channel kind {}: the kinds are {}{hint}",
                sluice_dag::diagnostic::quoted(s),
                names.join(", ")
            )
        })
    }
}

/// A channel, as rules name it: `slack:data-oncall`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelRef {
    pub kind: ChannelKind,
    pub name: String,
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.name)
    }
}

impl FromStr for ChannelRef {
    type Err = String;

    fn from_str(s: &str) -> Result<ChannelRef, String> {
        let Some((kind, name)) = s.split_once(':') else {
            return Err(format!(
                "channel {} is not of the form `kind:name` (e.g. `slack:data-oncall`)",
                sluice_dag::diagnostic::quoted(s)
            ));
        };
        let kind = kind.parse::<ChannelKind>()?;
        if !valid_name(name) {
            return Err(format!(
                "channel name {} may only hold letters, digits, `_`, `.` and `-`",
                sluice_dag::diagnostic::quoted(name)
            ));
        }
        Ok(ChannelRef { kind, name: name.to_string() })
    }
}

/// Whether `name` can be a channel's name: `[A-Za-z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
