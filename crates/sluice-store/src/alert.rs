//! Alerts: the outbox of messages to channels (Slack, SNS, email, webhooks).
//!
//! The daemon's alerter reads committed events after a durable cursor and turns them into
//! [`NewAlert`]s, one per incident and channel, written with the cursor's new position in one
//! transaction ([`crate::Store::enqueue_alerts`]): after a crash it reads the same events again
//! and finds their alerts there, so nothing is enqueued twice and nothing is lost. A sender
//! delivers the due ones ([`crate::Store::due_alerts`]) and records each attempt
//! ([`crate::Store::record_attempt`]): delivered, failed with a time to try again, or failed
//! for good. The store knows nothing of channels nor of what a message says.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An alert to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The channel reference, `kind:name` (`slack:data-oncall`).
    pub channel: String,
    /// The alerter's key of the incident: an alert with the same (channel, incident) as one
    /// already stored is not enqueued again.
    pub incident: String,
    /// The rule's event name (`failure`, `deadline_missed`, ...).
    pub rule: String,
    pub dag_id: String,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    /// The event the alert was made from, if one.
    pub event_id: Option<i64>,
    /// What the message says (the channel crate's message, as JSON).
    pub message: Map<String, Value>,
    /// When the first attempt may be made (later than now for a digest window).
    pub due_at: DateTime<Utc>,
}

/// Where an alert is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Waiting for its next attempt (its first, or one after a failure that may be retried).
    Pending,
    /// A channel accepted it.
    Delivered,
    /// Every attempt failed and the sender gave up.
    Failed,
}

impl AlertState {
    pub const ALL: [AlertState; 3] = [AlertState::Pending, AlertState::Delivered, AlertState::Failed];

    pub fn name(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Delivered => "delivered",
            AlertState::Failed => "failed",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertState::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = AlertState::ALL.iter().map(|a| a.name()).collect();
            format!("unknown alert state `{s}` (one of {})", names.join(", "))
        })
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An alert as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AlertRow {
    pub id: i64,
    pub channel: String,
    pub incident: String,
    pub rule: String,
    pub dag_id: String,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub event_id: Option<i64>,
    pub message: Map<String, Value>,
    pub state: AlertState,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due; `None` unless pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The error of the last failed attempt (kept once delivered).
    pub last_error: Option<String>,
}

/// How one delivery attempt went, for [`crate::Store::record_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The channel accepted the message; `answer` is what it said (short, no secret).
    Delivered { answer: String },
    /// The attempt failed; with `retry_at` the alert stays pending until then, without it the
    /// sender gives up and the alert is `failed`.
    Failed { error: String, retry_at: Option<DateTime<Utc>> },
}

/// One recorded attempt of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AttemptRow {
    pub alert: i64,
    /// 1 for the first attempt.
    pub number: u32,
    pub at: DateTime<Utc>,
    /// Whether the channel accepted the message.
    pub ok: bool,
    /// The channel's answer when `ok`, else the error.
    pub text: String,
}

/// Which alerts to list ([`crate::Store::alerts`]); `Default` lists every alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub dag_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<AlertState>,
    /// At most this many alerts (the newest).
    pub limit: Option<u32>,
}
