//! Alert rules: which events of a DAG are sent to which channels.
//!
//! A rule is an `[[alerts]]` table, in a DAG file or (as the default of every DAG) in
//! `sluice.toml`:
//!
//! ```toml
//! [[alerts]]
//! on = ["failure", "deadline_missed", "recovered"]
//! to = ["slack:data-oncall", "webhook:pagerduty"]
//! digest = "10m"
//! ```
//!
//! Channels are referred to as `kind:name` and declared once, in `sluice.toml`
//! (`[channels.<kind>.<name>]`); [`check_channels`] checks a DAG's references against them.
//! The types here read both from a DAG file (through the parser, which reports every problem
//! with its line) and with serde (as `sluice.toml` is read), with the same messages.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::dag::Dag;
use crate::diagnostic::{did_you_mean, one_line, quoted, suggest, Diagnostic, Severity, MAX_DIAGNOSTICS};
use crate::duration::Duration;

/// What an alert rule fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertOn {
    /// A run failed.
    Failure,
    /// A try failed with no retry left.
    TaskFailed,
    /// A try failed and the task will be tried again (opt-in: noisy).
    Retry,
    /// A run was not finished at its deadline (sent at the deadline, while the run goes on),
    /// or a scheduled run had not even started by then.
    DeadlineMissed,
    /// A try ran longer than its task's `max_duration`.
    Sla,
    /// No run of the DAG succeeded for longer than `[freshness] max_age`.
    Freshness,
    /// The first success after a failure or a missed deadline.
    Recovered,
    /// A person marked a run or a task (opt-in).
    Marked,
}

impl AlertOn {
    pub const ALL: [AlertOn; 8] = [
        AlertOn::Failure,
        AlertOn::TaskFailed,
        AlertOn::Retry,
        AlertOn::DeadlineMissed,
        AlertOn::Sla,
        AlertOn::Freshness,
        AlertOn::Recovered,
        AlertOn::Marked,
    ];

    /// The name rules write it as.
    pub fn name(self) -> &'static str {
        match self {
            AlertOn::Failure => "failure",
            AlertOn::TaskFailed => "task_failed",
            AlertOn::Retry => "retry",
            AlertOn::DeadlineMissed => "deadline_missed",
            AlertOn::Sla => "sla",
            AlertOn::Freshness => "freshness",
            AlertOn::Recovered => "recovered",
            AlertOn::Marked => "marked",
        }
    }
}

impl FromStr for AlertOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertOn::ALL.into_iter().find(|e| e.name() == s).ok_or_else(|| {
            format!(
                "unknown alert event {}{}; expected one of {}",
                quoted(s),
                did_you_mean(s, AlertOn::ALL.iter().map(|e| e.name())),
                AlertOn::ALL.map(|e| e.name()).join(", ")
            )
        })
    }
}

impl fmt::Display for AlertOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kinds of channel an alert can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    /// A Slack incoming webhook.
    Slack,
    /// An AWS SNS topic.
    Sns,
    /// Email, through SMTP.
    Email,
    /// Any HTTP endpoint, with a templated body (PagerDuty, Opsgenie, Teams, ...).
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [ChannelKind::Slack, ChannelKind::Sns, ChannelKind::Email, ChannelKind::Webhook];

    /// The name channel references and `[channels.<kind>]` write it as.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Sns => "sns",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl FromStr for ChannelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            format!(
                "unknown channel kind {}{}; expected one of {}",
                quoted(s),
                did_you_mean(s, ChannelKind::ALL.iter().map(|k| k.name())),
                ChannelKind::ALL.map(|k| k.name()).join(", ")
            )
        })
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reference to a channel declared in `sluice.toml`: `slack:data-oncall` means
/// `[channels.slack.data-oncall]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelRef {
    pub kind: ChannelKind,
    /// Letters, digits, `_`, `.` and `-`.
    pub name: String,
}

impl ChannelRef {
    pub fn new(kind: ChannelKind, name: impl Into<String>) -> ChannelRef {
        ChannelRef { kind, name: name.into() }
    }

    /// The `sluice.toml` table that declares it: `[channels.slack.data-oncall]` (a name holding
    /// a `.` is quoted, as TOML needs).
    pub fn table(&self) -> String {
        if self.name.contains('.') {
            format!("[channels.{}.\"{}\"]", self.kind, self.name)
        } else {
            format!("[channels.{}.{}]", self.kind, self.name)
        }
    }
}

/// Whether `name` may name a channel; `Err` says why not.
pub fn check_channel_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the channel name is empty".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("channel name {} holds {c:?}; use letters, digits, `_`, `.` and `-`", quoted(name)));
    }
    Ok(())
}

impl FromStr for ChannelRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((kind, name)) = s.split_once(':') else {
            let hint = match suggest(s, ChannelKind::ALL.iter().map(|k| k.name())) {
                Some(k) => format!(", e.g. `{k}:<name>`"),
                None => ", e.g. `slack:data-oncall`".into(),
            };
            return Err(format!(
                "channel {} is not a reference `kind:name`{hint} (kinds: {})",
                quoted(s),
                ChannelKind::ALL.map(|k| k.name()).join(", ")
            ));
        };
        let kind = kind.parse::<ChannelKind>().map_err(|e| format!("channel {}: {e}", quoted(s)))?;
        check_channel_name(name).map_err(|e| format!("channel {}: {e}", quoted(s)))?;
        Ok(ChannelRef { kind, name: name.to_string() })
    }
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A value read from its text with [`FromStr`], whose error is the message.
struct FromText<T>(std::marker::PhantomData<T>, &'static str);

impl<T: FromStr<Err = String>> Visitor<'_> for FromText<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! text_serde {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(FromText(std::marker::PhantomData, $what))
            }
        }
    };
}

text_serde!(AlertOn, "an alert event name such as \"failure\"");
text_serde!(ChannelKind, "a channel kind: \"slack\", \"sns\", \"email\" or \"webhook\"");
text_serde!(ChannelRef, "a channel reference `kind:name` such as \"slack:data-oncall\"");

/// One `[[alerts]]` rule: events of a DAG, sent to channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The events it fires on; never empty.
    #[serde(deserialize_with = "non_empty_events")]
    pub on: Vec<AlertOn>,
    /// Where its alerts go; never empty.
    #[serde(deserialize_with = "non_empty_channels")]
    pub to: Vec<ChannelRef>,
    /// Alerts of this rule for one DAG and channel within this window go as one message.
    #[serde(default, deserialize_with = "positive_digest", skip_serializing_if = "Option::is_none")]
    pub digest: Option<Duration>,
    /// 1-based line of the rule's `[[alerts]]` header, 0 if unknown.
    #[serde(skip)]
    pub line: usize,
    /// The line of each `to` entry (0 if unknown), in the order of `to`.
    #[serde(skip)]
    pub to_lines: Vec<usize>,
}

/// The keys of an `[[alerts]]` rule.
pub const ALERT_RULE_KEYS: &[&str] = &["on", "to", "digest"];

pub(crate) const EMPTY_ON: &str =
    "lists no events: give at least one, e.g. [\"failure\"] (events: failure, task_failed, retry, deadline_missed, sla, freshness, recovered, marked)";
pub(crate) const EMPTY_TO: &str = "lists no channels: give at least one, e.g. [\"slack:data-oncall\"]";

fn non_empty_events<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AlertOn>, D::Error> {
    let v = Vec::<AlertOn>::deserialize(d)?;
    if v.is_empty() {
        return Err(de::Error::custom(format!("key `on` {EMPTY_ON}")));
    }
    Ok(v)
}

fn non_empty_channels<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ChannelRef>, D::Error> {
    let v = Vec::<ChannelRef>::deserialize(d)?;
    if v.is_empty() {
        return Err(de::Error::custom(format!("key `to` {EMPTY_TO}")));
    }
    Ok(v)
}

fn positive_digest<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = Duration::deserialize(d)?;
    if v.as_std().is_zero() {
        return Err(de::Error::custom(format!("key `digest` {}", MUST_BE_POSITIVE)));
    }
    Ok(Some(v))
}

/// What follows a duration key that must not be zero.
pub(crate) const MUST_BE_POSITIVE: &str = "must be longer than zero";

impl AlertRule {
    /// Whether it fires on `event`.
    pub fn fires_on(&self, event: AlertOn) -> bool {
        self.on.contains(&event)
    }

    /// What is wrong with it but does not make it invalid: an event or a channel named twice.
    /// (The DAG parser reports these as warnings with their lines; this is for rules read
    /// with serde.)
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut events = HashSet::new();
        for e in &self.on {
            if !events.insert(e) {
                out.push(format!("`on` names {} twice", quoted(e.name())));
            }
        }
        let mut channels = HashSet::new();
        for c in &self.to {
            if !channels.insert(c) {
                out.push(format!("`to` names {} twice", quoted(&c.to_string())));
            }
        }
        out
    }
}

/// `[freshness]` of a DAG: a successful run at least every `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    pub max_age: Duration,
}

/// The keys of `[freshness]`.
pub const FRESHNESS_KEYS: &[&str] = &["max_age"];

/// Why `channel` is not among `declared`, or `None` when it is.
pub fn undeclared_channel(channel: &ChannelRef, declared: &[ChannelRef]) -> Option<String> {
    if declared.contains(channel) {
        return None;
    }
    let text = channel.to_string();
    let names: Vec<String> = declared.iter().map(ChannelRef::to_string).collect();
    let hint = suggest(&text, names.iter().map(String::as_str))
        .map(|s| format!("; did you mean {}?", quoted(s)))
        .unwrap_or_default();
    Some(format!("alert channel {} is not declared in sluice.toml ({}){hint}", quoted(&text), channel.table()))
}

/// An error for every channel the DAG's rules send to that is not in `declared` (the
/// channels of `sluice.toml`), at the line of that `to` entry. At most [`MAX_DIAGNOSTICS`],
/// then one more counting the rest.
pub fn check_channels(dag: &Dag, declared: &[ChannelRef]) -> Vec<Diagnostic> {
    let known: HashSet<&ChannelRef> = declared.iter().collect();
    let mut out = Vec::new();
    let mut more = 0usize;
    for rule in &dag.alerts {
        for (i, channel) in rule.to.iter().enumerate() {
            if known.contains(channel) {
                continue;
            }
            if out.len() >= MAX_DIAGNOSTICS {
                more += 1;
                continue;
            }
            let Some(message) = undeclared_channel(channel, declared) else { continue };
            let line = rule.to_lines.get(i).copied().or(Some(rule.line)).filter(|l| *l > 0);
            out.push(Diagnostic {
                severity: Severity::Error,
                file: dag.file.clone(),
                line,
                column: None,
                task: None,
                message: one_line(&message).into_owned(),
            });
        }
    }
    if more > 0 {
        out.push(Diagnostic {
            severity: Severity::Error,
            file: dag.file.clone(),
            line: None,
            column: None,
            task: None,
            message: format!("{more} more undeclared alert channels not shown"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in AlertOn::ALL {
            assert_eq!(e.name().parse::<AlertOn>(), Ok(e));
        }
        for k in ChannelKind::ALL {
            assert_eq!(k.name().parse::<ChannelKind>(), Ok(k));
        }
        let c: ChannelRef = "webhook:pager.duty-1_x".parse().unwrap();
        assert_eq!((c.kind, c.name.as_str()), (ChannelKind::Webhook, "pager.duty-1_x"));
        assert_eq!(c.to_string(), "webhook:pager.duty-1_x");
        assert_eq!(c.table(), "[channels.webhook.\"pager.duty-1_x\"]");
    }

    #[test]
    fn bad_names_say_what_is_valid() {
        let e = "failur".parse::<AlertOn>().unwrap_err();
        assert!(e.contains("unknown alert event `failur` (did you mean `failure`?); expected one of failure,"), "{e}");
        let e = "slak:x".parse::<ChannelRef>().unwrap_err();
        assert!(e.contains("channel `slak:x`: unknown channel kind `slak` (did you mean `slack`?)"), "{e}");
        let e = "slack".parse::<ChannelRef>().unwrap_err();
        assert!(e.contains("is not a reference `kind:name`, e.g. `slack:<name>`"), "{e}");
        let e = "sns:".parse::<ChannelRef>().unwrap_err();
        assert!(e.contains("the channel name is empty"), "{e}");
        let e = "sns:a b".parse::<ChannelRef>().unwrap_err();
        assert!(e.contains("channel name `a b` holds ' '"), "{e}");
        let e = "sns:a:b".parse::<ChannelRef>().unwrap_err();
        assert!(e.contains("holds ':'"), "{e}");
    }

    #[test]
    fn undeclared_channels_get_a_suggestion() {
        let declared = vec![ChannelRef::new(ChannelKind::Slack, "data-oncall")];
        assert_eq!(undeclared_channel(&declared[0], &declared), None);
        let m = undeclared_channel(&"slack:data-oncal".parse().unwrap(), &declared).unwrap();
        assert_eq!(
            m,
            "alert channel `slack:data-oncal` is not declared in sluice.toml ([channels.slack.data-oncal]); did you mean `slack:data-oncall`?"
        );
        let m = undeclared_channel(&"email:team".parse().unwrap(), &[]).unwrap();
        assert!(!m.contains("did you mean"), "{m}");
    }
}
