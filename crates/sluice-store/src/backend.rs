//! What every backend shares: the events a transaction writes and publishes after its commit,
//! the decoding of states and JSON, and the errors naming what was not found.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, Utc};
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::{Event, EventKind, FinishTry, Result, RunState, StoreError, TaskState, TryOutcome, TryResult};

/// Events a subscriber may fall behind by before it gets `Lagged`: a few batches of the
/// largest size the engine commits.
pub(crate) const BROADCAST_CAPACITY: usize = 16_384;

/// Columns of a run, in the order `run_at` reads them; the table is always aliased `r`.
pub(crate) const RUN_COLS: &str = "r.id, r.dag_id, r.run_id, r.kind, r.logical_date, r.data_interval_start, \
     r.data_interval_end, r.state, r.conf, r.created_at, r.started_at, r.ended_at, r.deadline, r.deadline_missed, \
     r.first_started_at, r.idempotency_key";
pub(crate) const RUN_NCOLS: usize = 16;
/// Columns of a try, in the order `try_at` reads them; the table is always aliased `t`.
pub(crate) const TRY_COLS: &str =
    "t.run, t.task_id, t.try_number, t.state, t.started_at, t.ended_at, t.error, t.external_ids";
pub(crate) const TI_COLS: &str = "run, task_id, state, try_number, max_tries, next_try_at, started_at, ended_at";
/// Columns of an API token, in the order `token_row` reads them (never the hash).
pub(crate) const TOKEN_COLS: &str = "id, name, role, created_at, expires_at, revoked_at, last_used_at";
pub(crate) const EVENT_COLS: &str = "id, at, dag_id, run_id, task_id, kind, data";
/// Columns of an alert, in the order `alert_row` reads them.
pub(crate) const ALERT_COLS: &str =
    "id, channel, incident, rule, dag_id, run_id, task_id, event_id, message, state, attempts, \
     created_at, next_attempt_at, delivered_at, last_error";
pub(crate) const ATTEMPT_COLS: &str = "alert, number, at, ok, text";

/// Sends committed events, with their ids, to the subscribers of `sender`, if there are any.
pub(crate) fn publish(sender: &broadcast::Sender<Arc<Event>>, events: Vec<Pending>, ids: Vec<i64>) {
    if sender.receiver_count() == 0 {
        return;
    }
    for (p, id) in events.into_iter().zip(ids) {
        // The time as stored (to the microsecond), so a subscriber and a reader agree.
        let at = p.at.duration_trunc(chrono::TimeDelta::microseconds(1)).unwrap_or(p.at);
        let event = Event { id, at, dag_id: p.dag_id, run_id: p.run_id, task_id: p.task_id, kind: p.kind };
        // An error only means the last receiver went away meanwhile.
        let _ = sender.send(Arc::new(event));
    }
}

pub(crate) fn json_text(map: &Map<String, Value>) -> String {
    Value::Object(map.clone()).to_string()
}

pub(crate) fn parse_json_map(s: &str, what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(StoreError::Corrupt(format!("{what} is not a JSON object: {other}"))),
        Err(e) => Err(StoreError::Corrupt(format!("{what} is not JSON: {e}"))),
    }
}

pub(crate) fn parse_task_state(s: &str) -> Result<TaskState> {
    TaskState::from_str(s).map_err(StoreError::Corrupt)
}

pub(crate) fn parse_run_state(s: &str) -> Result<RunState> {
    RunState::from_str(s).map_err(StoreError::Corrupt)
}

/// The (dag id, run id, key) of a run, what its events carry; or `NotFound`.
pub(crate) type RunNames = (String, String, i64);

/// An event written in a transaction, published once it commits.
pub(crate) struct Pending {
    pub(crate) at: DateTime<Utc>,
    pub(crate) dag_id: Option<String>,
    pub(crate) run_id: Option<String>,
    /// The run's key: events are found by run through an index of integers, not of run ids.
    pub(crate) run: Option<i64>,
    pub(crate) task_id: Option<String>,
    pub(crate) kind: EventKind,
}

impl Pending {
    /// An event of a run (of one of its tasks, with `task_id`).
    pub(crate) fn of_run(at: DateTime<Utc>, names: &RunNames, task_id: Option<&str>, kind: EventKind) -> Pending {
        Pending {
            at,
            dag_id: Some(names.0.clone()),
            run_id: Some(names.1.clone()),
            run: Some(names.2),
            task_id: task_id.map(str::to_string),
            kind,
        }
    }

    pub(crate) fn of_dag(at: DateTime<Utc>, dag_id: &str, kind: EventKind) -> Pending {
        Pending { at, dag_id: Some(dag_id.to_string()), run_id: None, run: None, task_id: None, kind }
    }

    /// An event of no DAG (an API token's).
    pub(crate) fn of_store(at: DateTime<Utc>, kind: EventKind) -> Pending {
        Pending { at, dag_id: None, run_id: None, run: None, task_id: None, kind }
    }
}

pub(crate) fn run_not_found(run: i64) -> StoreError {
    StoreError::NotFound(format!("run {run}"))
}

pub(crate) fn task_not_found(run: i64, task_id: &str) -> StoreError {
    StoreError::NotFound(format!("task `{task_id}` of run {run}"))
}

pub(crate) fn try_not_found(run: i64, task_id: &str, try_number: u32) -> StoreError {
    StoreError::NotFound(format!("try {try_number} of task `{task_id}` of run {run}"))
}

/// The `try_finished` event of `t`, the task being `task_state` after it.
pub(crate) fn try_finished(at: DateTime<Utc>, names: &RunNames, t: &FinishTry, task_state: TaskState) -> Pending {
    let (outcome, error) = match &t.outcome {
        TryOutcome::Success { .. } => (TryResult::Success, None),
        TryOutcome::Failed { error, .. } => (TryResult::Failed, Some(error.clone())),
        TryOutcome::Skipped { reason } => (TryResult::Skipped, Some(reason.clone())),
    };
    let kind = EventKind::TryFinished { try_number: t.try_number, outcome, error, task_state };
    Pending::of_run(at, names, Some(&t.task_id), kind)
}

pub(crate) fn try_number(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("try number {n} out of range")))
}
