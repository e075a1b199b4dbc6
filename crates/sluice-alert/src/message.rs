//! What an alert says, whatever the channel: [`AlertMessage`]. Its JSON form is what the store
//! keeps as an alert's `message`, and what a webhook body template sees as its variables.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most log lines a message carries (the channels may show fewer).
pub const LOG_TAIL_LINES: usize = 20;

/// The most alerts a digest lists one by one; the rest are counted.
pub const DIGEST_LISTED: usize = 50;

/// One alert's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// The event of the rule that fired (`failure`, `deadline_missed`, ...), or `digest`.
    pub rule: String,
    /// One line: what happened ("run 2026-01-01 of `sales` failed").
    pub title: String,
    pub dag_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The run's or task's state, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last lines of the failed try's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_date: Option<String>,
    /// When the event happened.
    pub at: DateTime<Utc>,
    /// Where to look (the run in the UI or API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Anything else the rule knows (a deadline, a max age, a digest's alerts).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

/// The variables of a webhook body template: the message's fields.
pub const FIELDS: &[&str] = &[
    "rule",
    "title",
    "dag_id",
    "run_id",
    "task_id",
    "state",
    "error",
    "log_tail",
    "logical_date",
    "at",
    "link",
    "details",
];

impl AlertMessage {
    /// A message with only what every alert has.
    pub fn new(
        rule: impl Into<String>,
        title: impl Into<String>,
        dag_id: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        AlertMessage {
            rule: rule.into(),
            title: title.into(),
            dag_id: dag_id.into(),
            run_id: None,
            task_id: None,
            state: None,
            error: None,
            log_tail: None,
            logical_date: None,
            at,
            link: None,
            details: Map::new(),
        }
    }

    /// What `dagctl alerts test CHANNEL` sends.
    pub fn test(channel: &str, at: DateTime<Utc>) -> AlertMessage {
        let mut m = AlertMessage::new("test", format!("Test alert from Sluice to {channel}"), "sluice", at);
        m.details.insert("note".into(), Value::String("sent by `dagctl alerts test`; nothing failed".into()));
        m
    }

    /// The template variables: every field, absent ones as `none`, `at` in RFC 3339.
    pub fn variables(&self) -> Map<String, Value> {
        let mut vars = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for f in FIELDS {
            vars.entry(f.to_string()).or_insert(Value::Null);
        }
        vars.insert("at".into(), Value::String(self.at.to_rfc3339_opts(SecondsFormat::Secs, true)));
        if !vars.get("details").is_some_and(Value::is_object) {
            vars.insert("details".into(), Value::Object(Map::new()));
        }
        vars
    }

    /// The alerts a digest groups, when this is one.
    pub fn digested(&self) -> Vec<AlertMessage> {
        match self.details.get("alerts") {
            Some(Value::Array(items)) if self.rule == "digest" => {
                items.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Several alerts of one rule, DAG and channel as one message: the newest time, the fields
    /// all of them share, and each one (at most [`DIGEST_LISTED`], newest last) under
    /// `details.alerts`, their number under `details.count`. One alert is itself; none is an
    /// empty digest.
    pub fn digest(messages: &[AlertMessage]) -> AlertMessage {
        if let [one] = messages {
            return one.clone();
        }
        let common = |f: fn(&AlertMessage) -> Option<&str>| -> Option<String> {
            let first = f(messages.first()?)?;
            messages.iter().all(|m| f(m) == Some(first)).then(|| first.to_string())
        };
        let at = messages.iter().map(|m| m.at).max().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let rule = common(|m| Some(m.rule.as_str()));
        let dag = common(|m| Some(m.dag_id.as_str()));
        let n = messages.len();
        let what = rule.clone().unwrap_or_else(|| "alert".to_string());
        let title = match &dag {
            _ if n == 0 => "No alerts".to_string(),
            Some(d) => format!("{n} {what} alerts for `{d}`"),
            None => format!("{n} {what} alerts"),
        };
        let mut details = Map::new();
        details.insert("count".into(), Value::from(n));
        if let Some(r) = &rule {
            details.insert("rule".into(), Value::String(r.clone()));
        }
        let skip = n.saturating_sub(DIGEST_LISTED);
        let mut listed: Vec<&AlertMessage> = messages.iter().collect();
        listed.sort_by_key(|m| m.at);
        let alerts: Vec<Value> = listed
            .into_iter()
            .skip(skip)
            .map(|m| {
                // A digest of digests does not nest: it lists what they listed.
                let mut m = m.clone();
                m.log_tail = None;
                serde_json::to_value(m).unwrap_or(Value::Null)
            })
            .collect();
        details.insert("alerts".into(), Value::Array(alerts));
        AlertMessage {
            rule: "digest".to_string(),
            title,
            dag_id: dag.unwrap_or_else(|| "several DAGs".to_string()),
            run_id: common(|m| m.run_id.as_deref()),
            task_id: common(|m| m.task_id.as_deref()),
            state: common(|m| m.state.as_deref()),
            error: None,
            log_tail: None,
            logical_date: common(|m| m.logical_date.as_deref()),
            at,
            link: common(|m| m.link.as_deref()),
            details,
        }
    }

    /// The message as plain text (email body, SNS message, Slack's fallback): the title, then
    /// one line per field that is set, then the error and the log's last lines.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n\n", self.title);
        let mut line = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                out.push_str(&format!("{k:<13} {v}\n"));
            }
        };
        line("DAG:", Some(&self.dag_id));
        line("Run:", self.run_id.as_deref());
        line("Task:", self.task_id.as_deref());
        line("State:", self.state.as_deref());
        line("Logical date:", self.logical_date.as_deref());
        line("Event:", Some(&self.rule));
        line("At:", Some(&self.at.to_rfc3339_opts(SecondsFormat::Secs, true)));
        line("Link:", self.link.as_deref());
        for (k, v) in &self.details {
            if k == "alerts" || k == "count" || k == "rule" {
                continue;
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("{:<13} {v}\n", format!("{k}:")));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("\nError:\n{e}\n"));
        }
        if let Some(t) = &self.log_tail {
            out.push_str(&format!("\nLast lines of the log:\n{}\n", last_lines(t, LOG_TAIL_LINES)));
        }
        let items = self.digested();
        if !items.is_empty() {
            out.push_str("\nAlerts:\n");
            for m in &items {
                out.push_str(&format!("- {}\n", m.summary()));
            }
            let count = self.details.get("count").and_then(Value::as_u64).unwrap_or(items.len() as u64);
            if count > items.len() as u64 {
                out.push_str(&format!("- and {} older ones\n", count - items.len() as u64));
            }
        }
        out
    }

    /// One line for a digest's list: the title, the time, and the error's first line.
    pub fn summary(&self) -> String {
        let mut s = format!("{} ({})", self.title, self.at.to_rfc3339_opts(SecondsFormat::Secs, true));
        if let Some(e) = self.error.as_deref().and_then(|e| e.lines().find(|l| !l.trim().is_empty())) {
            s.push_str(": ");
            s.push_str(&cut_chars(e.trim(), 200));
        }
        s
    }
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `text`, cut to at most `max` characters, with `...` when cut.
pub fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(3)) {
        Some((i, _)) if text.chars().count() > max => format!("{}...", &text[..i]),
        _ => text.to_string(),
    }
}

/// `text` cut to its last characters, at most `max`, starting after a line break when one is
/// near: for log tails, whose end matters most.
pub fn cut_front(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let skip = count - max.saturating_sub(4);
    let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
    let tail = &text[start..];
    let tail = tail.split_once('\n').map_or(tail, |(_, rest)| rest);
    format!("...\n{tail}")
}
