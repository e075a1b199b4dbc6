//! Sluice's persistent state, behind one trait.
//!
//! The [`Store`] trait is everything the scheduler and the CLI read or write: DAG rows (paused
//! flag, last parse error), runs, task instances, each try of a task (with the external ids
//! its operator reported), task outputs (what templates read as `tasks.<id>.<field>`), typed
//! [`Event`]s, the HTTP API's tokens (as the caller's hash of each secret, never the secret),
//! and the outbox of [`alert`]s with the durable cursors of the event stream's readers.
//!
//! Every method that changes state is one transaction, so a crash between any two calls
//! leaves a state the daemon can resume from, and it writes the events that describe its
//! change in that same transaction: an event is committed exactly when its change is. SQLite
//! ([`SqliteStore`]) is the default backend: one file, WAL mode, created and migrated on first
//! open. PostgreSQL ([`PgStore`], feature `postgres`) is the other, behind the same trait and
//! the same contract tests (`tests/contract`); [`open`] picks the backend from the URL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
pub use sluice_dag::{RunState, TaskState};
use std::sync::Arc;
use tokio::sync::broadcast;

pub mod alert;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod backend;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub mod copy;
pub mod event;
pub mod lock;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod url;
pub use alert::{AlertQuery, AlertRow, AlertState, Attempt, AttemptRow, NewAlert};
pub use event::{AttemptResult, Event, EventKind, EventQuery, NewEvent, Order, TryResult};
pub use lock::{LockError, SchedulerLock};
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use url::{redacted, DbUrl};

/// Opens the store a URL names (see [`DbUrl`]): the one place that maps a URL to a backend.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    match DbUrl::parse(url)? {
        #[cfg(feature = "sqlite")]
        DbUrl::Sqlite { .. } | DbUrl::SqliteMemory => Ok(Arc::new(SqliteStore::open(url).await?)),
        #[cfg(not(feature = "sqlite"))]
        DbUrl::Sqlite { .. } | DbUrl::SqliteMemory => Err(StoreError::NotBuilt("SQLite")),
        #[cfg(feature = "postgres")]
        DbUrl::Postgres(_) => Ok(Arc::new(PgStore::open(url).await?)),
        #[cfg(not(feature = "postgres"))]
        DbUrl::Postgres(_) => Err(StoreError::NotBuilt("PostgreSQL")),
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}` (use {supported})", supported = url::SUPPORTED)]
    UnsupportedUrl(String),
    #[error("this build of Sluice has no {0} support (use {supported})", supported = url::SUPPORTED)]
    NotBuilt(&'static str),
    #[error("{0} not found")]
    NotFound(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The change would break a rule the caller can act on (a second live API token of the
    /// same name, an attempt recorded for an alert that is no longer pending); the message
    /// says which and what to do.
    #[error("{0}")]
    Conflict(String),
    /// Another scheduler took this try over (this one's lease had expired): nothing was
    /// written, and the caller does nothing more for the try.
    #[error("{0}")]
    TakenOver(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Scheduled,
    Manual,
    Backfill,
    /// Created by `dagctl test` and run in that process; a daemon leaves it alone.
    Test,
}

impl RunKind {
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Scheduled => "scheduled",
            RunKind::Manual => "manual",
            RunKind::Backfill => "backfill",
            RunKind::Test => "test",
        }
    }

    pub fn from_name(s: &str) -> Option<RunKind> {
        [RunKind::Scheduled, RunKind::Manual, RunKind::Backfill, RunKind::Test].into_iter().find(|k| k.name() == s)
    }
}

/// A DAG as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DagRow {
    pub dag_id: String,
    pub file: Option<String>,
    pub paused: bool,
    /// The error of the last load of its file, when it failed (the last good version keeps
    /// running).
    pub parse_error: Option<String>,
    /// Why the scheduler stopped scheduling the DAG although its file loads (a schedule that
    /// could not be computed); cleared when a new version of the file loads.
    pub schedule_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What a folder load found for one DAG id, for [`Store::sync_dags`].
#[derive(Debug, Clone, PartialEq)]
pub struct DagSync {
    pub dag_id: String,
    pub file: String,
    /// The text of the version that loaded; `None` when the file failed to load (the last
    /// good source is kept).
    pub source: Option<String>,
    /// The file's errors when it failed to load.
    pub parse_error: Option<String>,
    /// The DAG's row, when it is created now, starts paused (Airflow's
    /// `is_paused_upon_creation`). An existing row keeps its paused flag.
    pub paused_at_creation: bool,
}

/// A run to create, with all its tasks (created in state `none`).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub dag_id: String,
    pub run_id: String,
    pub kind: RunKind,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: Option<Map<String, Value>>,
    /// When the run must be finished by, if the DAG has a deadline.
    pub deadline: Option<DateTime<Utc>>,
    /// (task id, max tries = retries + 1)
    pub tasks: Vec<(String, u32)>,
    /// The caller's key for the request that creates the run (an API trigger's
    /// `Idempotency-Key`): a second `create_run` of the same DAG with the same key gets the
    /// first run back, whatever its logical date. `None`: no key (runs without one never
    /// collide on it).
    pub idempotency_key: Option<String>,
}

/// A run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// The store's key for the run.
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub kind: RunKind,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub state: RunState,
    pub conf: Option<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    /// When the run's latest attempt started: a run cleared after it ended starts again.
    pub started_at: Option<DateTime<Utc>>,
    /// When the run first started (before any clear).
    pub first_started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub deadline_missed: bool,
    /// The key of the request that created the run, if it gave one (see
    /// [`NewRun::idempotency_key`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `create_run` either created the run or found the one that already exists for that
/// (dag, idempotency key), (dag, logical date) or (dag, run id).
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(Run),
    Existing(Run),
}

impl Created {
    pub fn run(&self) -> &Run {
        match self {
            Created::New(r) | Created::Existing(r) => r,
        }
    }
}

/// Which runs to list ([`Store::runs`], [`Store::count_runs`]). Every condition narrows the
/// listing; `Default` lists every run.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<RunState>,
    /// At most this many runs (the first of the listing order).
    pub limit: Option<u32>,
    /// Empty: any kind.
    pub kinds: Vec<RunKind>,
    /// Only runs whose logical date is at or after this (inclusive).
    pub logical_from: Option<DateTime<Utc>>,
    /// Only runs whose logical date is at or before this (inclusive).
    pub logical_to: Option<DateTime<Utc>>,
    /// Only runs strictly after this one in the listing order (logical date, then id, both
    /// descending): the next page of a listing whose last run was `after`. A keyset cursor, so
    /// a page costs the same however deep it is, and runs created meanwhile neither repeat nor
    /// shift a page.
    pub after: Option<RunCursor>,
}

/// A position in the run listing: the last run of a page ([`RunFilter::after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunCursor {
    pub logical_date: DateTime<Utc>,
    pub id: i64,
}

impl RunCursor {
    /// The cursor just after `run`.
    pub fn of(run: &Run) -> RunCursor {
        RunCursor { logical_date: run.logical_date, id: run.id }
    }
}

/// How a scheduler holds the database ([`Store::claim_scheduler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The only scheduler (SQLite): nothing to renew.
    Exclusive,
    /// One of several (PostgreSQL): registered as scheduler `id`, with a lease of `lease`
    /// to renew well before it runs out ([`Store::renew_lease`]).
    Leased { id: i64, lease: std::time::Duration },
}

/// A scheduler running on the database, as [`Store::schedulers`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchedulerRow {
    pub host: String,
    pub pid: u32,
    pub since: DateTime<Utc>,
    /// When it last renewed its lease (PostgreSQL); `None` for SQLite's scheduler, which holds
    /// the database by its lock file and needs no renewal.
    pub renewed_at: Option<DateTime<Utc>>,
    /// Tries running now that it holds.
    pub tries_held: u64,
}

/// An API token to create ([`Store::create_token`]). The store keeps only `hash` (the caller
/// hashes the secret and never hands the secret itself over) and knows nothing of what a
/// `role` allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Unique among the tokens not revoked.
    pub name: String,
    pub role: String,
    /// What the caller derives from the secret (e.g. hex SHA-256); unique.
    pub hash: String,
    /// Recorded, not enforced: the caller compares it with its clock.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API token as the store knows it: never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// As last recorded by [`Store::touch_token`] (the caller decides how often).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A task instance as a DAG's grid shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GridCell {
    pub run: i64,
    pub task_id: String,
    pub state: TaskState,
    pub try_number: u32,
    /// Its start to its end, when it has both.
    pub duration_ms: Option<i64>,
}

/// One task in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInstance {
    pub run: i64,
    pub task_id: String,
    pub state: TaskState,
    /// Tries started so far (0 before the first).
    pub try_number: u32,
    /// The task may start tries while `try_number < max_tries`.
    pub max_tries: u32,
    /// For `up_for_retry`: when the next try may start.
    pub next_try_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One try of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Try {
    pub run: i64,
    pub task_id: String,
    /// 1 for the first try.
    pub try_number: u32,
    /// `running`, then `success`, `failed` or `skipped`.
    pub state: TaskState,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What the operator reported the moment it knew (`cluster_id`, `step_ids`, `pid`, ...).
    pub external_ids: Map<String, Value>,
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TryOutcome {
    /// The task succeeded; its outputs become `tasks.<id>.<field>` for downstream templates.
    Success { outputs: Map<String, Value> },
    /// The try failed; with `retry_at`, the task goes `up_for_retry` until then, else `failed`.
    Failed { error: String, retry_at: Option<DateTime<Utc>> },
    /// The task ends skipped (e.g. a sensor with `soft_fail` that timed out).
    Skipped { reason: String },
}

/// One try to end with [`Store::finish_tries`].
#[derive(Debug, Clone, PartialEq)]
pub struct FinishTry {
    pub run: i64,
    pub task_id: String,
    pub try_number: u32,
    pub outcome: TryOutcome,
    pub at: DateTime<Utc>,
}

/// What [`Store::start_tries`] did with one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The try with this number started; the task is `running`.
    Started(u32),
    /// The task was not `scheduled` or `queued` (another scheduler started it, or it was
    /// cleared, marked or removed meanwhile): nothing was written. Its state now.
    NotStartable(TaskState),
    /// A limit the schedulers of the database share ([`Limits`]) is reached: nothing was
    /// written; the task stays as it was, to be started when there is room.
    NoRoom,
}

/// The limits tries start under, counted over every scheduler of a shared database
/// ([`Store::set_states_and_start_within`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most tries running at once over every DAG (`parallelism`).
    pub parallelism: usize,
    /// One per task to start, in order.
    pub tasks: Vec<TaskLimits>,
}

/// What one task's start must stay within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLimits {
    /// Its DAG's `max_active_tasks`: most tries of the DAG running at once.
    pub max_active_tasks: usize,
    /// Its pool and the pool's slots.
    pub pool: Option<(String, usize)>,
}

/// What [`Store::finish_tries`] did with one try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The try and its task instance ended; the task's state now.
    Applied(TaskState),
    /// The try was recorded, but its task was cleared or marked while it ran (or started a
    /// newer try) and keeps that state, given here; a success leaves no outputs.
    TaskChanged(TaskState),
    /// The try had already ended (another caller finished it): nothing was written. The task's
    /// state now.
    NotRunning(TaskState),
    /// Another scheduler holds the try now (it took it over after this one's lease expired):
    /// nothing was written. The task's state now.
    TakenOver(TaskState),
}

impl Finish {
    /// The task instance's state after the call, whatever happened.
    pub fn task_state(self) -> TaskState {
        match self {
            Finish::Applied(s) | Finish::TaskChanged(s) | Finish::NotRunning(s) | Finish::TakenOver(s) => s,
        }
    }
}

/// Everything the scheduler and the CLI read and write. Every method that changes state is
/// one transaction.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // --- DAGs ---
    /// Records that `dag_id` was loaded from `file` with its text `source` (then
    /// `parse_error` is `None`), or that its file failed to load (`source` `None`, the last
    /// good source is kept). Creates the row if needed; never changes `paused`.
    async fn sync_dag(&self, dag_id: &str, file: &str, source: Option<&str>, parse_error: Option<&str>) -> Result<()> {
        let sync = DagSync {
            dag_id: dag_id.to_string(),
            file: file.to_string(),
            source: source.map(str::to_string),
            parse_error: parse_error.map(str::to_string),
            paused_at_creation: false,
        };
        self.sync_dags(std::slice::from_ref(&sync)).await
    }
    /// Records several DAGs as [`Store::sync_dag`] does, in one transaction; a DAG whose row is
    /// created here starts paused when its `paused_at_creation` says so. A DAG that loaded
    /// (`source` given) has its `schedule_error` cleared. Writes `dag_loaded` / `dag_broken`
    /// for the rows it changes (new row, new text, new error, another file), not for a DAG
    /// found as it was.
    async fn sync_dags(&self, dags: &[DagSync]) -> Result<()>;
    /// Records (or clears, with `None`) why the scheduler stopped scheduling a DAG whose file
    /// loads: what `dagctl list` shows.
    async fn set_schedule_error(&self, dag_id: &str, error: Option<&str>) -> Result<()>;
    /// The file and the text of the last version of `dag_id` that loaded, if one was recorded:
    /// what the CLI falls back to while the file is broken.
    async fn dag_source(&self, dag_id: &str) -> Result<Option<(String, String)>>;
    /// Pauses or unpauses a DAG, creating its row if needed; a `dag_paused` event when the flag
    /// changes.
    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<()>;
    async fn dags(&self) -> Result<Vec<DagRow>>;

    // --- Runs ---
    /// Creates a run and its task instances in one transaction. A run is never created twice
    /// for the same (dag, logical date) or (dag, run id), nor for the same (dag, idempotency
    /// key) when a key is given, also when several processes race: the loser gets
    /// `Created::Existing`. That is the run with the key when a run of the DAG has it
    /// (whatever its logical date), else the run of the logical date, else of the run id. A new
    /// run gets a `run_created` event.
    async fn create_run(&self, new: &NewRun) -> Result<Created>;
    async fn run(&self, id: i64) -> Result<Option<Run>>;
    async fn run_by_run_id(&self, dag_id: &str, run_id: &str) -> Result<Option<Run>>;
    async fn run_by_logical_date(&self, dag_id: &str, logical_date: DateTime<Utc>) -> Result<Option<Run>>;
    /// Runs matching `filter`, newest logical date first (then highest id first): the listing
    /// order [`RunFilter::after`] pages through.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// How many runs match `filter`, ignoring its `after` and `limit`, counting no further
    /// than `cap`: the answer is `min(matching, cap)`, so a count over millions of runs costs
    /// at most `cap` rows (an answer of `cap` reads "`cap` or more").
    async fn count_runs(&self, filter: &RunFilter, cap: u32) -> Result<u64>;
    /// The grid of a DAG: its `limit` newest runs (newest logical date first) and a cell for
    /// every task instance of those runs, grouped by run in that order (within a run, in no
    /// particular order). The cells are read with one statement, and both reads see the same
    /// snapshot.
    async fn grid(&self, dag_id: &str, limit: u32) -> Result<(Vec<Run>, Vec<GridCell>)>;
    /// The `per_dag` newest runs of every DAG that has runs, in one statement: ordered by DAG
    /// id, then newest logical date first (then highest id).
    async fn latest_runs(&self, per_dag: u32) -> Result<Vec<Run>>;
    /// Per DAG with a successful run, the latest end of such a run; ordered by DAG id.
    async fn last_successes(&self) -> Result<Vec<(String, DateTime<Utc>)>>;
    /// The finished run (success or failed) of `dag_id` that ended last at or before `before`,
    /// other than run `exclude`: what the run that just finished (`exclude`, ended at
    /// `before`) follows, e.g. to tell a recovery. Of runs that ended at the same instant the
    /// one with the highest id counts as the last.
    async fn previous_finished_run(&self, dag_id: &str, before: DateTime<Utc>, exclude: i64) -> Result<Option<Run>>;
    /// Sets a run's state: `started_at` is set each time it becomes running (a cleared run
    /// starts again; `first_started_at` keeps the first start), `ended_at`
    /// when it finishes (and cleared if it runs again). A change of state writes
    /// `run_started`, `run_finished` or `run_queued`; setting the state it has writes nothing.
    async fn set_run_state(&self, run: i64, state: RunState, at: DateTime<Utc>) -> Result<()>;
    /// Marks a run's deadline missed and writes a `deadline_missed` event, once. Returns
    /// whether it was newly marked.
    async fn mark_deadline_missed(&self, run: i64, at: DateTime<Utc>) -> Result<bool>;

    // --- Task instances and tries ---
    async fn task_instances(&self, run: i64) -> Result<Vec<TaskInstance>>;
    /// Sets the state of several task instances of a run in one transaction (scheduled,
    /// queued, skipped, upstream_failed, removed, or a manual success/failed mark), with a
    /// `task_state_changed` event per task.
    async fn set_task_states(&self, run: i64, states: &[(String, TaskState)], at: DateTime<Utc>) -> Result<()>;
    /// Starts the next try of one task, as [`Store::start_tries`] does.
    async fn start_try(&self, run: i64, task_id: &str, at: DateTime<Utc>) -> Result<Start> {
        let started = self.start_tries(&[(run, task_id.to_string())], at).await?;
        started.into_iter().next().ok_or_else(|| StoreError::Corrupt("start_tries returned nothing".into()))
    }
    /// Merges `key = value` into the try's external ids, at once and durably.
    async fn record_external_id(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
        key: &str,
        value: &Value,
    ) -> Result<()>;
    /// Ends one try, as [`Store::finish_tries`] does.
    async fn finish_try(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
        outcome: &TryOutcome,
        at: DateTime<Utc>,
    ) -> Result<Finish> {
        let one = FinishTry { run, task_id: task_id.to_string(), try_number, outcome: outcome.clone(), at };
        let finished = self.finish_tries(std::slice::from_ref(&one)).await?;
        finished.into_iter().next().ok_or_else(|| StoreError::Corrupt("finish_tries returned nothing".into()))
    }
    /// Starts the next try of each `(run, task id)` whose task is `scheduled` or `queued`:
    /// `try_number + 1`, task `running`, a new try row, a `try_started` event; all in one
    /// transaction (a scheduler starting many tasks at once commits once). A task in any other
    /// state is not touched and reported [`Start::NotStartable`]: of two callers racing to start
    /// the same try, exactly one gets [`Start::Started`]. One answer per item, in order.
    async fn start_tries(&self, tasks: &[(i64, String)], at: DateTime<Utc>) -> Result<Vec<Start>>;
    /// Ends several tries, all in one transaction. A try ends only while its row is `running`
    /// (else [`Finish::NotRunning`], nothing written: of two callers finishing the same try,
    /// exactly one is applied). The try row gets its state, error and end, and a `try_finished`
    /// event is written; the task instance, its outputs (on success) and a `retry_scheduled`
    /// event (on a retry) follow only while this try is the task's current running one
    /// ([`Finish::Applied`]): a task cleared or marked while the try ran keeps what was decided
    /// meanwhile ([`Finish::TaskChanged`]). One answer per item, in order.
    async fn finish_tries(&self, tries: &[FinishTry]) -> Result<Vec<Finish>>;
    /// Sets task states (per run, as [`Store::set_task_states`]), then starts tries (as
    /// [`Store::start_tries`]): what a scheduler's turn decided, committed at once. A backend
    /// that can should do both in one transaction; this default commits each part on its own,
    /// which is as safe (nothing has acted on the states before the tries start).
    async fn set_states_and_start(
        &self,
        states: &[(i64, Vec<(String, TaskState)>)],
        tasks: &[(i64, String)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Start>> {
        for (run, states) in states {
            self.set_task_states(*run, states, at).await?;
        }
        self.start_tries(tasks, at).await
    }
    /// [`Store::set_states_and_start`], each try starting only while `limits` leave room,
    /// counted with every try running on the database (whoever runs it); a task without room
    /// gets [`Start::NoRoom`]. The default ignores the limits: a store with one scheduler
    /// leaves them to that scheduler, which counts its own tries.
    async fn set_states_and_start_within(
        &self,
        states: &[(i64, Vec<(String, TaskState)>)],
        tasks: &[(i64, String)],
        limits: &Limits,
        at: DateTime<Utc>,
    ) -> Result<Vec<Start>> {
        let _ = limits;
        self.set_states_and_start(states, tasks, at).await
    }
    /// The tries of a run (of one task, when given), oldest first.
    async fn tries(&self, run: i64, task_id: Option<&str>) -> Result<Vec<Try>>;
    /// Every try still `running`, with its run: what a restarted daemon must recover.
    async fn running_tries(&self) -> Result<Vec<(Run, Try)>>;
    /// Outputs of a run's tasks: task id -> field -> value.
    async fn outputs(&self, run: i64) -> Result<BTreeMap<String, Map<String, Value>>>;
    /// Resets tasks to `none` so they run again (Airflow's clear): their outputs are deleted,
    /// their tries kept, `max_tries` becomes `try_number + retries + 1` (given per task), and a
    /// finished run goes back to `queued`. Writes `task_state_changed` (to `none`) per task and
    /// `run_queued` when the run was finished.
    async fn clear_tasks(&self, run: i64, tasks: &[(String, u32)], at: DateTime<Utc>) -> Result<()>;

    // --- Events ---
    /// Records an event that is no state change of the store (the daemon starting, a try
    /// resumed or cut off, a cluster the janitor terminated), stamped now. Returns its id.
    async fn add_event(&self, event: &NewEvent) -> Result<i64>;
    /// Events matching `query`, in the order it asks for. Ids are strictly increasing in commit
    /// order, so `after: Some(last id seen)` with [`Order::Oldest`] resumes a reader with every
    /// later event exactly once. SQLite gives this by its single writer and the AUTOINCREMENT
    /// rowid; a PostgreSQL backend must give the same guarantee (ids handed out in commit
    /// order, e.g. under a lock taken by each writing transaction), a plain sequence does not.
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;
    /// The events this handle commits, from now on, each after its commit and in id order:
    /// what in-process readers (the API's live stream, metrics, alerts) listen to instead of
    /// polling. Other processes' (and other handles') events are not sent: read them with
    /// [`Store::events`]. A receiver that falls more than the channel's capacity behind gets
    /// `RecvError::Lagged` and must catch up from the store with `after` its last id. The
    /// default is a channel that never sends (its receiver reports `Closed`).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        broadcast::channel(1).1
    }

    /// Hands memory the backend caches but does not need now back to the system (SQLite's
    /// page cache after the DAG sources were synced). Changes no state.
    async fn release_memory(&self) -> Result<()> {
        Ok(())
    }

    /// True when another process has committed a change since the last call (SQLite's
    /// `data_version`); lets the daemon notice CLI writes without rescanning tables.
    async fn changed_elsewhere(&self) -> Result<bool>;

    /// Makes this handle a scheduler of the database, for as long as it lives. The default
    /// ([`Claim::Exclusive`]) does nothing: SQLite's daemon holds [`SchedulerLock`], a file
    /// lock taken before the database is even opened, and is the only scheduler. A shared
    /// database (PostgreSQL) registers the scheduler with a lease of `lease` in the database's
    /// time ([`Claim::Leased`]): the tries this handle starts are its own, fenced by a token,
    /// until it stops renewing. Calling it again returns the first claim.
    async fn claim_scheduler(&self, lease: std::time::Duration) -> Result<Claim> {
        let _ = lease;
        Ok(Claim::Exclusive)
    }

    /// Renews this handle's lease by the length it was claimed with, measured from the
    /// database's clock now. `Ok(false)`: the lease was lost (it expired, so other schedulers
    /// may have taken its tries over); the scheduler must stop its work. Always `Ok(true)`
    /// for an exclusive claim.
    async fn renew_lease(&self) -> Result<bool> {
        Ok(true)
    }

    /// A clean stop: ends this handle's lease now, so that other schedulers take over what it
    /// leaves running at once instead of after the lease.
    async fn release_claim(&self) -> Result<()> {
        Ok(())
    }

    /// The running tries no live scheduler holds, each now held by this handle (its token
    /// moved on, so the previous holder's writes are refused): what a scheduler recovers at
    /// start and, on a shared database, takes over from schedulers that died. Runs of
    /// [`RunKind::Test`] are never taken. With an exclusive claim (SQLite) every running try is
    /// an orphan: a scheduler calls this once, at start, when the daemon before it is gone.
    async fn take_over_tries(&self) -> Result<Vec<(Run, Try)>>;

    /// Starts the queued run `run` if its DAG has fewer than `max_active` running runs (test
    /// runs not counted); whether it started (a run that is not queued is not started). A
    /// shared store counts under a lock, so that schedulers sharing the database never exceed
    /// the limit together. The default trusts the caller's count, right for a store with one
    /// scheduler: it sets the run running.
    async fn start_run(&self, run: i64, max_active: usize, at: DateTime<Utc>) -> Result<bool> {
        let _ = max_active;
        self.set_run_state(run, RunState::Running, at).await?;
        Ok(true)
    }

    /// The schedulers running on this database now, oldest first.
    async fn schedulers(&self) -> Result<Vec<SchedulerRow>>;

    /// Proves that a write could commit now, changing nothing (what a readiness probe asks):
    /// takes the write lock and lets it go. Waits about 2 s at most for a lock another process
    /// holds, then returns the error (SQLite: a [`StoreError::Db`] saying "database is
    /// locked").
    async fn check_writable(&self) -> Result<()>;

    // --- Alerts ---
    /// The position of the event reader `name`: the id of the last event it has dealt with
    /// (`None` before it first recorded one).
    async fn cursor(&self, name: &str) -> Result<Option<i64>>;
    /// Moves the cursor `name` to `event_id`, creating it if needed; never back: a cursor
    /// already further stays where it is.
    async fn set_cursor(&self, name: &str, event_id: i64) -> Result<()>;
    /// Enqueues `alerts` (state `pending`, created at `at`, first attempt due at each one's
    /// `due_at`) and moves the cursor `cursor` to `up_to` (as [`Store::set_cursor`]), in one
    /// transaction. An alert whose (channel, incident) is already stored, whatever its state,
    /// or repeats one earlier in `alerts`, is skipped: a reader that reads the same events
    /// again after a crash enqueues nothing twice. Returns the ids of the alerts inserted, in
    /// the order of `alerts`.
    async fn enqueue_alerts(
        &self,
        cursor: &str,
        up_to: i64,
        alerts: &[NewAlert],
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>>;
    /// At most `limit` pending alerts whose next attempt is due at `now` or earlier, the
    /// earliest due first (then the oldest).
    async fn due_alerts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<AlertRow>>;
    /// When the earliest pending alert is due (`None` when none is pending): how long a sender
    /// may sleep.
    async fn next_alert_due(&self) -> Result<Option<DateTime<Utc>>>;
    /// Records an attempt to deliver a pending alert, in one transaction: the attempt is
    /// appended (numbered from 1) and the alert updated: delivered (`delivered_at`, nothing
    /// due), failed with `retry_at` (still pending, due then, `last_error`), or failed without
    /// (state `failed`, `last_error`), with an `alert_attempted` event. Returns the alert as
    /// it is now. An alert that is not
    /// pending (delivered or given up, e.g. by another sender) is refused with
    /// [`StoreError::Conflict`] and nothing is written; an unknown id is `NotFound`.
    async fn record_attempt(&self, alert: i64, at: DateTime<Utc>, attempt: &Attempt) -> Result<AlertRow> {
        let mut answers = self.record_attempts(at, &[(alert, attempt.clone())]).await?;
        answers.pop().unwrap_or_else(|| Err(StoreError::Corrupt("no answer for the attempt".into())))
    }

    /// [`Store::record_attempt`] for several alerts at `at`, in one transaction (a sender
    /// whose sends ended together writes once, not once per alert): an answer per attempt, in
    /// order, a refused one (`Conflict`, `NotFound`) without stopping the others.
    async fn record_attempts(&self, at: DateTime<Utc>, attempts: &[(i64, Attempt)]) -> Result<Vec<Result<AlertRow>>>;
    /// The alerts matching `query`, newest first (highest id first).
    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<AlertRow>>;
    async fn alert(&self, id: i64) -> Result<Option<AlertRow>>;
    /// The attempts of an alert, first first (empty for an unknown alert).
    async fn alert_attempts(&self, alert: i64) -> Result<Vec<AttemptRow>>;

    // --- API tokens ---
    /// Records a new API token, with a `token_created` event. Refused with
    /// [`StoreError::Conflict`] when a token of that name is not revoked, or a token has that
    /// hash.
    async fn create_token(&self, new: &NewToken, at: DateTime<Utc>) -> Result<TokenRow>;
    /// Every token, revoked and expired ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRow>>;
    /// The token with this hash, whatever its state: the caller checks `revoked_at` and
    /// `expires_at`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>>;
    /// Revokes the live (not revoked) token named `name`, with a `token_revoked` event; `None`
    /// (nothing written) when there is none.
    async fn revoke_token(&self, name: &str, at: DateTime<Utc>) -> Result<Option<TokenRow>>;
    /// Records that a token was used at `at`: one plain update, no event (bookkeeping, not a
    /// change anyone follows). `NotFound` for an unknown id.
    async fn touch_token(&self, id: i64, at: DateTime<Utc>) -> Result<()>;
    /// Whether any token is neither revoked nor expired at `now`.
    async fn has_live_tokens(&self, now: DateTime<Utc>) -> Result<bool>;
}
