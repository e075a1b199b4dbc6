//! What happened, as typed events: written by the store in the same transaction as the change
//! each describes, numbered so that a reader can resume after any one, and published in-process
//! after the commit (see [`crate::Store::subscribe`]).
//!
//! The serde form of [`Event`] is the wire form: `dagctl events --json` prints it, and the
//! coming API streams it. [`EventKind`] is internally tagged by `type`, so a new variant is a
//! new `type` and old readers can skip what they do not know.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{RunKind, RunState, TaskState};

/// One committed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Event {
    /// Strictly increasing in commit order: a reader that saw id `n` resumes with
    /// [`EventQuery::after`] `Some(n)` and sees every later event exactly once.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `None` for events of the daemon itself.
    pub dag_id: Option<String>,
    /// The human run id (`scheduled__...`), not the store's key.
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub kind: EventKind,
}

/// How a try ended, as events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TryResult {
    Success,
    Failed,
    Skipped,
}

impl TryResult {
    pub fn name(self) -> &'static str {
        match self {
            TryResult::Success => "success",
            TryResult::Failed => "failed",
            TryResult::Skipped => "skipped",
        }
    }
}

/// How one delivery attempt of an alert ended, as events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// It failed for good (an error a retry cannot fix, or a day of failures).
    GaveUp,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 3] = [AttemptResult::Delivered, AttemptResult::Retry, AttemptResult::GaveUp];

    pub fn name(self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retry => "retry",
            AttemptResult::GaveUp => "gave_up",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A DAG's file loaded and the store's row changed (new DAG, new text, or it was broken).
    DagLoaded {
        file: String,
    },
    /// A DAG's file failed to load with a new error; the last good version keeps running.
    DagBroken {
        file: String,
        error: String,
    },
    DagPaused {
        paused: bool,
    },
    RunCreated {
        run_kind: RunKind,
        logical_date: DateTime<Utc>,
    },
    /// A run went back to `queued` (a finished run cleared).
    RunQueued,
    RunStarted,
    RunFinished {
        state: RunState,
    },
    /// A change of a task's state not made by a try: scheduled, skipped, upstream_failed,
    /// removed, a manual mark, a clear (to `none`).
    TaskStateChanged {
        state: TaskState,
    },
    /// The task is now running this try.
    TryStarted {
        try_number: u32,
    },
    /// A try ended; `task_state` is what the task instance is after it (a task cleared or
    /// marked while the try ran keeps that state).
    TryFinished {
        try_number: u32,
        outcome: TryResult,
        error: Option<String>,
        task_state: TaskState,
    },
    /// A failed try will be followed by `try_number` (the next try) at `at`.
    RetryScheduled {
        try_number: u32,
        at: DateTime<Utc>,
    },
    /// The run was not finished by its deadline (`None`: the run recorded none).
    DeadlineMissed {
        deadline: Option<DateTime<Utc>>,
    },
    /// A restarted daemon took a running try back up (sensors, `wait`, AWS work it can find).
    TryResumed {
        try_number: u32,
    },
    /// A restarted daemon found a try that cannot be resumed and failed it.
    TryInterrupted {
        try_number: u32,
        error: String,
    },
    /// A stop cut a try off; the next start resumes or recovers it.
    TryCutOff {
        try_number: u32,
    },
    DaemonStarted {
        pid: u32,
        version: String,
    },
    /// A stop began with `running` tries in flight.
    DaemonStopping {
        running: u32,
    },
    /// The AWS janitor terminated a cluster.
    ClusterTerminated {
        cluster_id: String,
        reason: String,
    },
    /// An API token was created (`dag_id` is `None`); never its secret nor its hash.
    TokenCreated {
        name: String,
        role: String,
    },
    /// An API token was revoked (`dag_id` is `None`).
    TokenRevoked {
        name: String,
    },
    /// A delivery attempt of an alert ([`crate::Store::record_attempt`]): to `channel`
    /// (`slack:data-oncall`), for the rule's event `rule`.
    AlertAttempted {
        channel: String,
        rule: String,
        result: AttemptResult,
    },
    /// An event recorded before events were typed: its old kind and text.
    Legacy {
        kind: String,
        detail: String,
    },
}

impl EventKind {
    /// The snake_case tag (the `type` of the serde form; the `kind` column).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::DagLoaded { .. } => "dag_loaded",
            EventKind::DagBroken { .. } => "dag_broken",
            EventKind::DagPaused { .. } => "dag_paused",
            EventKind::RunCreated { .. } => "run_created",
            EventKind::RunQueued => "run_queued",
            EventKind::RunStarted => "run_started",
            EventKind::RunFinished { .. } => "run_finished",
            EventKind::TaskStateChanged { .. } => "task_state_changed",
            EventKind::TryStarted { .. } => "try_started",
            EventKind::TryFinished { .. } => "try_finished",
            EventKind::RetryScheduled { .. } => "retry_scheduled",
            EventKind::DeadlineMissed { .. } => "deadline_missed",
            EventKind::TryResumed { .. } => "try_resumed",
            EventKind::TryInterrupted { .. } => "try_interrupted",
            EventKind::TryCutOff { .. } => "try_cut_off",
            EventKind::DaemonStarted { .. } => "daemon_started",
            EventKind::DaemonStopping { .. } => "daemon_stopping",
            EventKind::ClusterTerminated { .. } => "cluster_terminated",
            EventKind::TokenCreated { .. } => "token_created",
            EventKind::TokenRevoked { .. } => "token_revoked",
            EventKind::AlertAttempted { .. } => "alert_attempted",
            EventKind::Legacy { .. } => "legacy",
        }
    }
}

/// The human text of a kind, without where it happened.
impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        match self {
            EventKind::DagLoaded { file } => write!(f, "DAG loaded from {file}"),
            EventKind::DagBroken { file, error } => write!(f, "DAG file {file} is broken: {}", one_line(error)),
            EventKind::DagPaused { paused: true } => write!(f, "DAG paused"),
            EventKind::DagPaused { paused: false } => write!(f, "DAG unpaused"),
            EventKind::RunCreated { run_kind, logical_date } => {
                write!(f, "{} run created for {}", run_kind.name(), time(logical_date))
            }
            EventKind::RunQueued => write!(f, "run queued again"),
            EventKind::RunStarted => write!(f, "run started"),
            EventKind::RunFinished { state } => write!(f, "run finished: {state}"),
            EventKind::TaskStateChanged { state } => write!(f, "task is now {state}"),
            EventKind::TryStarted { try_number } => write!(f, "try {try_number} started"),
            EventKind::TryFinished { try_number, outcome, error, task_state } => {
                write!(f, "try {try_number} {}", outcome.name())?;
                if let Some(error) = error {
                    write!(f, ": {}", one_line(error))?;
                }
                if task_state.name() != outcome.name() {
                    write!(f, " (task {task_state})")?;
                }
                Ok(())
            }
            EventKind::RetryScheduled { try_number, at } => write!(f, "try {try_number} scheduled at {}", time(at)),
            EventKind::DeadlineMissed { deadline: Some(d) } => write!(f, "run missed its deadline {}", time(d)),
            EventKind::DeadlineMissed { deadline: None } => write!(f, "run missed its deadline"),
            EventKind::TryResumed { try_number } => write!(f, "try {try_number} resumed after a restart"),
            EventKind::TryInterrupted { try_number, error } => {
                write!(f, "try {try_number} interrupted: {}", one_line(error))
            }
            EventKind::TryCutOff { try_number } => {
                write!(f, "try {try_number} cut off by a stop; taken up again on the next start")
            }
            EventKind::DaemonStarted { pid, version } => write!(f, "scheduler {version} started (pid {pid})"),
            EventKind::DaemonStopping { running } => write!(f, "scheduler stopping with {running} tries running"),
            EventKind::ClusterTerminated { cluster_id, reason } => {
                write!(f, "cluster {cluster_id} terminated: {}", one_line(reason))
            }
            EventKind::TokenCreated { name, role } => {
                write!(f, "API token {} created with role {}", quoted(name), quoted(role))
            }
            EventKind::TokenRevoked { name } => write!(f, "API token {} revoked", quoted(name)),
            EventKind::AlertAttempted { channel, rule, result } => {
                let what = match result {
                    AttemptResult::Delivered => "delivered",
                    AttemptResult::Retry => "not delivered; it will be tried again",
                    AttemptResult::GaveUp => "not delivered; given up",
                };
                write!(f, "{rule} alert to {channel}: {what}")
            }
            EventKind::Legacy { kind, detail } => write!(f, "{kind}: {}", one_line(detail)),
        }
    }
}

/// One human line: `#id time dag run task: what` (absent parts left out).
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.id, self.at.format("%Y-%m-%d %H:%M:%S%.3f"))?;
        for part in [&self.dag_id, &self.run_id, &self.task_id].into_iter().flatten() {
            write!(f, " {part}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Errors and reasons may span lines; an event is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A name given by a user, in backticks, on one line (control characters escaped).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('`');
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

/// An event that is not a state change of the store (the daemon's, a resumed or cut-off try,
/// the janitor's), for [`crate::Store::add_event`]; the store stamps its id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub kind: EventKind,
}

/// Which end of the id order [`EventQuery::limit`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Ascending ids from `after`: how a reader catches up.
    #[default]
    Oldest,
    /// Descending ids: the last `limit` events.
    Newest,
}

/// Which events [`crate::Store::events`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events with a higher id.
    pub after: Option<i64>,
    pub dag_id: Option<String>,
    /// The human run id.
    pub run_id: Option<String>,
    pub limit: u32,
    pub order: Order,
}

impl Default for EventQuery {
    fn default() -> EventQuery {
        EventQuery { after: None, dag_id: None, run_id: None, limit: 1000, order: Order::Oldest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serde_form_is_tagged_by_type_and_round_trips() {
        let e = Event {
            id: 7,
            at: "2026-03-01T05:00:00Z".parse().unwrap(),
            dag_id: Some("d".into()),
            run_id: Some("r".into()),
            task_id: Some("t".into()),
            kind: EventKind::TryFinished {
                try_number: 2,
                outcome: TryResult::Failed,
                error: Some("exit 1\nstderr".into()),
                task_state: TaskState::UpForRetry,
            },
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"]["type"], "try_finished");
        assert_eq!(json["kind"]["outcome"], "failed");
        assert_eq!(json["kind"]["task_state"], "up_for_retry");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
        assert_eq!(e.to_string(), "#7 2026-03-01 05:00:00.000 d r t: try 2 failed: exit 1 stderr (task up_for_retry)");
    }

    #[test]
    fn token_events_are_one_line_each() {
        let created = EventKind::TokenCreated { name: "ci".into(), role: "operator".into() };
        assert_eq!(created.to_string(), "API token `ci` created with role `operator`");
        let revoked = EventKind::TokenRevoked { name: "two\nlines".into() };
        assert_eq!(revoked.to_string(), "API token `two\\nlines` revoked");
    }

    #[test]
    fn name_is_the_serde_tag() {
        let kinds = [
            EventKind::RunQueued,
            EventKind::DagPaused { paused: true },
            EventKind::DeadlineMissed { deadline: None },
            EventKind::Legacy { kind: "retry".into(), detail: "x".into() },
            EventKind::DaemonStopping { running: 3 },
            EventKind::TokenCreated { name: "ci".into(), role: "operator".into() },
            EventKind::TokenRevoked { name: "ci".into() },
        ];
        for k in kinds {
            assert_eq!(serde_json::to_value(&k).unwrap()["type"], k.name());
        }
    }
}
