//! The PostgreSQL backend: the same contract as SQLite's, for a database several processes
//! and several schedulers share over the network.
//!
//! # Connections, transactions and locking
//!
//! A [`PgStore`] holds a pool of connections; every method that changes state is one
//! transaction at PostgreSQL's default isolation (READ COMMITTED). A check and the write it
//! decides are made safe by row locks (`SELECT ... FOR UPDATE`) or by guarded statements
//! (`UPDATE ... WHERE state = 'running'`), never by the isolation level: a lost race is a guard
//! that matched no row, reported as SQLite's backend reports it.
//!
//! Every writing transaction takes its locks in one order: `runs` rows, then `task_instances`
//! rows sorted by (run, task id), then `tries`, `outputs`, and last the event lock. Two
//! transactions that both follow it cannot deadlock.
//!
//! # Events
//!
//! Event ids must be strictly increasing in commit order (a reader resumes after the last id it
//! saw), which a sequence alone does not give. A transaction that writes events takes the
//! transaction-scoped advisory lock [`EVENTS_LOCK`] as its last step, inserts its events, and
//! commits: ids are handed out and commits happen in the order of that lock. Within one handle
//! a mutex keeps that step in order too, so the handle publishes its events (after the commit)
//! in id order. The same step sends a `NOTIFY` naming the handle: other handles learn of the
//! change from it ([`Store::changed_elsewhere`]), as SQLite's backend learns from
//! `data_version`.
//!
//! # Several schedulers
//!
//! [`Store::claim_scheduler`] registers the handle in `schedulers` with a lease in the
//! database's clock, which [`Store::renew_lease`] keeps moving. The tries a scheduler starts
//! carry it as their owner and a fencing token; every later write for a try compares both, and
//! [`Store::take_over_tries`] moves them on for the running tries of schedulers whose lease ran
//! out. See ARCHITECTURE.md ("Several schedulers") for the whole protocol.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{ConnectOptions, Connection, Executor, Row, Transaction};
use tokio::sync::{broadcast, Mutex};

use crate::backend::{
    self, json_text, parse_run_state, parse_task_state, run_not_found, task_not_found, try_finished, try_not_found,
    try_number, Pending, RunNames, ALERT_COLS, ATTEMPT_COLS, BROADCAST_CAPACITY, EVENT_COLS, RUN_COLS, RUN_NCOLS,
    TI_COLS, TOKEN_COLS, TRY_COLS,
};
use crate::{
    AlertQuery, AlertRow, AlertState, Attempt, AttemptResult, AttemptRow, Claim, Created, DagRow, DagSync, DbUrl,
    Event, EventKind, EventQuery, Finish, FinishTry, GridCell, Limits, NewAlert, NewEvent, NewRun, NewToken, Order,
    Result, Run, RunFilter, RunKind, RunState, SchedulerRow, Start, Store, StoreError, TaskInstance, TaskState,
    TokenRow, Try, TryOutcome,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The advisory lock every event-writing transaction takes last (see the module docs). Advisory
/// locks are keyed by (this, a hash of the schema): a database can hold several Sluice schemas,
/// each with its own locks.
const EVENTS_LOCK: i32 = 0x736c_0001;
/// The advisory lock, with a hash of the schema and the DAG id, under which a run of that DAG
/// is started ([`Store::start_run`]).
const RUNS_LOCK: i32 = 0x736c_0003;
/// The advisory lock, with a hash of the schema, under which tries start within the limits
/// every scheduler shares ([`Store::set_states_and_start_within`]); the first lock its
/// transaction takes.
const LIMITS_LOCK: i32 = 0x736c_0004;
/// The `NOTIFY` channel of committed changes; the payload is the writing handle's id.
const CHANGES: &str = "sluice_changes";
/// How long [`Store::check_writable`] waits for the event lock.
const PROBE_LOCK_TIMEOUT: &str = "2s";
/// How long the server lets a session sit idle inside a transaction before ending it.
const IDLE_IN_TRANSACTION: &str = "5s";
/// Connections per handle.
const CONNECTIONS: u32 = 8;

/// The DAG ids that have runs, one index step each (a skip scan of `runs_dag_state`), as the
/// CTE `d`; its last row is NULL.
const DAG_IDS: &str = "WITH RECURSIVE d (dag_id) AS (SELECT min(dag_id) FROM runs UNION ALL \
     SELECT (SELECT min(x.dag_id) FROM runs x WHERE x.dag_id > d.dag_id) FROM d WHERE d.dag_id IS NOT NULL)";

/// The PostgreSQL [`Store`]. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct PgStore {
    pool: PgPool,
    /// This handle's committed events, for [`Store::subscribe`].
    events: broadcast::Sender<Arc<Event>>,
    /// Held from a transaction's event lock to its publication, so this handle publishes in
    /// id order.
    tail: Mutex<()>,
    /// This handle's name in the `NOTIFY`s it sends.
    me: String,
    /// Set when another handle's `NOTIFY` arrives, by a task the first `changed_elsewhere`
    /// starts (stopped when the handle is dropped).
    listener: Mutex<Option<(Arc<AtomicBool>, tokio::task::AbortHandle)>>,
    /// This handle's scheduler id and lease length, once claimed.
    claim: std::sync::OnceLock<(i64, Duration)>,
    /// Held while claiming, so one handle registers once.
    claiming: Mutex<()>,
    /// The fencing tokens of the running tries this handle took over; a try it started itself
    /// has token 1.
    tokens: std::sync::Mutex<HashMap<(i64, String, u32), i64>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("PgStore").field("me", &self.me).finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some((_, task)) = self.listener.get_mut().take() {
            task.abort();
        }
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://...` or `postgresql://...`) and migrates
    /// it. Several processes opening a new database at once migrate it once: sqlx's migrator
    /// holds an advisory lock while it runs. The tables go into the first schema of the
    /// connection's `search_path` (`?options[search_path]=NAME` picks one), which must exist.
    pub async fn open(url: &str) -> Result<PgStore> {
        let DbUrl::Postgres(url) = DbUrl::parse(url)? else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        // A process frozen inside a transaction (SIGSTOP, a stalled VM) would hold its row
        // locks, and with them every other scheduler, for as long as it stays frozen: the
        // server ends such a session after IDLE_IN_TRANSACTION. Nothing of Sluice's idles in a
        // transaction for anywhere near that.
        let options = PgConnectOptions::from_str(&url)?
            .application_name("sluice")
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]);
        // One connection first, outside the pool: a wrong address or a refused login fails at
        // once with the server's answer (the pool would keep trying until its timeout).
        let mut first = options.clone().connect().await?;
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut first).await?;
        if schema.is_none() {
            return Err(StoreError::Conflict(
                "the database has no schema to create Sluice's tables in: create the schema its search_path names \
                 (CREATE SCHEMA ...) or name an existing one"
                    .into(),
            ));
        }
        MIGRATOR.run_direct(&mut first).await?;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(60)))
            .connect_lazy_with(options.clone());
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let me = format!("{}-{:016x}", std::process::id(), rand_u64());
        Ok(PgStore {
            pool,
            events,
            tail: Mutex::new(()),
            me,
            listener: Mutex::new(None),
            claim: std::sync::OnceLock::new(),
            claiming: Mutex::new(()),
            tokens: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Creates the schema `name` on the database at `server` (a `postgres://` URL); returns the
    /// URL of a store in it, for [`PgStore::open`]. `name` must be a plain identifier
    /// (lowercase ASCII letters, digits, `_`, not starting with a digit).
    pub async fn create_schema(server: &str, name: &str) -> Result<String> {
        let name = plain_identifier(name)?;
        let mut conn = PgConnection::connect(server).await?;
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut conn).await?;
        conn.close().await?;
        let joiner = if server.contains('?') { '&' } else { '?' };
        Ok(format!("{server}{joiner}options[search_path]={name}"))
    }

    /// Drops the schema `name` (see [`PgStore::create_schema`]) with everything in it; a
    /// schema that is not there is no error.
    pub async fn drop_schema(server: &str, name: &str) -> Result<()> {
        let name = plain_identifier(name)?;
        let mut conn = PgConnection::connect(server).await?;
        drop_schema_in(&mut conn, name).await?;
        conn.close().await?;
        Ok(())
    }

    /// Drops the schemas named `<prefix><pid>_...` whose process `pid` is gone from this host:
    /// what a killed test or benchmark run left behind.
    pub async fn drop_orphan_schemas(server: &str, prefix: &str) -> Result<()> {
        let mut conn = PgConnection::connect(server).await?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT schema_name::text FROM information_schema.schemata WHERE starts_with(schema_name, $1)",
        )
        .bind(prefix)
        .fetch_all(&mut conn)
        .await?;
        for name in names {
            let pid =
                name.strip_prefix(prefix).and_then(|rest| rest.split('_').next()).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !crate::lock::pid_alive(pid)) && plain_identifier(&name).is_ok() {
                // Another process may be dropping it at the same moment.
                let _ = drop_schema_in(&mut conn, &name).await;
            }
        }
        conn.close().await?;
        Ok(())
    }

    /// How many tries each scheduler that ever claimed this database started, most first (a
    /// try taken over counts for its new owner): how the work was shared.
    pub async fn tries_per_scheduler(&self) -> Result<Vec<u64>> {
        let counts: Vec<i64> = sqlx::query_scalar(
            "SELECT count(t.owner) FROM schedulers s LEFT JOIN tries t ON t.owner = s.id GROUP BY s.id ORDER BY 1 DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(counts.into_iter().map(|c| u64::try_from(c).unwrap_or(0)).collect())
    }

    /// The pool (for copying another database in).
    #[cfg(feature = "sqlite")]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }

    /// [`Store::set_states_and_start`], within `limits` when given, in one transaction.
    async fn states_and_starts(
        &self,
        states: &[(i64, Vec<(String, TaskState)>)],
        tasks: &[(i64, String)],
        limits: Option<&Limits>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Start>> {
        let mut tx = self.pool.begin().await?;
        if limits.is_some() {
            // The first lock of the transaction: the counts below cannot change until it ends.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
                .bind(LIMITS_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let mut events = Vec::with_capacity(states.iter().map(|(_, s)| s.len()).sum::<usize>() + tasks.len());
        let names = names_of(&mut tx, &states.iter().map(|(r, _)| *r).collect::<Vec<_>>()).await?;
        // Runs in ascending order (the lock order); events in the caller's order.
        let mut order: Vec<usize> = (0..states.len()).collect();
        order.sort_by_key(|k| states[*k].0);
        let mut per_state: Vec<Vec<Pending>> = (0..states.len()).map(|_| Vec::new()).collect();
        for k in order {
            let (run, run_states) = &states[k];
            set_states_in(&mut tx, &names[run], run_states, at, &mut per_state[k]).await?;
        }
        events.extend(per_state.into_iter().flatten());
        let Some(limits) = limits else {
            let starts = start_tries_in(&mut tx, tasks, at, self.owner(), &mut events).await?;
            self.commit(tx, events).await?;
            return Ok(starts);
        };
        let room = room_for(&mut tx, tasks, limits).await?;
        let chosen: Vec<(i64, String)> = room.iter().map(|k| tasks[*k].clone()).collect();
        let started = start_tries_in(&mut tx, &chosen, at, self.owner(), &mut events).await?;
        let mut answers = vec![Start::NoRoom; tasks.len()];
        let (mut runs, mut ids, mut numbers, mut pools) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, start) in room.iter().zip(started) {
            answers[*k] = start;
            if let (Start::Started(n), Some((pool, _))) = (start, &limits.tasks[*k].pool) {
                runs.push(tasks[*k].0);
                ids.push(tasks[*k].1.as_str());
                numbers.push(i64::from(n));
                pools.push(pool.as_str());
            }
        }
        if !runs.is_empty() {
            sqlx::query(
                "UPDATE tries t SET pool = v.pool FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[]) \
                 AS v (run, task_id, n, pool) WHERE t.run = v.run AND t.task_id = v.task_id AND t.try_number = v.n",
            )
            .bind(&runs)
            .bind(&ids)
            .bind(&numbers)
            .bind(&pools)
            .execute(&mut *tx)
            .await?;
        }
        self.commit(tx, events).await?;
        Ok(answers)
    }

    /// The scheduler this handle is, once claimed: the owner of the tries it starts.
    fn owner(&self) -> Option<i64> {
        self.claim.get().map(|(id, _)| *id)
    }

    /// The fencing token this handle holds for a try it runs.
    fn token(&self, run: i64, task_id: &str, try_number: u32) -> i64 {
        token_of(&self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner), run, task_id, try_number)
    }

    /// Takes the event lock, inserts `events`, sends the change notice and commits, then
    /// publishes the events with their ids.
    async fn commit(&self, tx: Transaction<'_, Postgres>, events: Vec<Pending>) -> Result<()> {
        self.commit_ids(tx, events).await.map(|_| ())
    }

    /// [`PgStore::commit`], answering the events' ids.
    async fn commit_ids(&self, mut tx: Transaction<'_, Postgres>, events: Vec<Pending>) -> Result<Vec<i64>> {
        if events.is_empty() {
            notify(&mut tx, &self.me).await?;
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let _order = self.tail.lock().await;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
            .bind(EVENTS_LOCK)
            .execute(&mut *tx)
            .await?;
        let ids = insert_events(&mut tx, &events).await?;
        notify(&mut tx, &self.me).await?;
        tx.commit().await?;
        backend::publish(&self.events, events, ids.clone());
        Ok(ids)
    }
}

/// The token in `held` (the tries a handle took over) of a try; 1 for a try the handle started.
fn token_of(held: &HashMap<(i64, String, u32), i64>, run: i64, task_id: &str, try_number: u32) -> i64 {
    held.get(&(run, task_id.to_string(), try_number)).copied().unwrap_or(1)
}

/// Drops the schema `name` (a [`plain_identifier`]) and everything in it, if it is there.
async fn drop_schema_in(conn: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(conn).await?;
    Ok(())
}

/// `name` if it is safe to splice into SQL as an identifier as it is.
fn plain_identifier(name: &str) -> Result<&str> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Conflict(format!("`{name}` is not a plain schema name (lowercase letters, digits, _)")))
    }
}

/// A random number for a handle's name (no cryptographic use).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

async fn notify(tx: &mut PgConnection, me: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGES).bind(me).execute(tx).await?;
    Ok(())
}

/// Writes `events` in one statement; returns their ids, in order. Rows are produced in the
/// order of the input (`ORDER BY n`), and the identity hands out increasing ids as rows are
/// produced, so the sorted ids are the events' in order.
async fn insert_events(tx: &mut PgConnection, events: &[Pending]) -> Result<Vec<i64>> {
    let mut at = Vec::with_capacity(events.len());
    let mut dag_ids = Vec::with_capacity(events.len());
    let mut run_ids = Vec::with_capacity(events.len());
    let mut runs = Vec::with_capacity(events.len());
    let mut task_ids = Vec::with_capacity(events.len());
    let mut kinds = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    for e in events {
        at.push(e.at);
        dag_ids.push(e.dag_id.clone());
        run_ids.push(e.run_id.clone());
        runs.push(e.run);
        task_ids.push(e.task_id.clone());
        kinds.push(e.kind.name().to_string());
        data.push(
            serde_json::to_string(&e.kind)
                .map_err(|err| StoreError::Corrupt(format!("event {} not encodable: {err}", e.kind.name())))?,
        );
    }
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO events (at, dag_id, run_id, run, task_id, kind, data) \
         SELECT at, dag_id, run_id, run, task_id, kind, data::json FROM unnest($1::timestamptz[], $2::text[], \
         $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY \
         AS e (at, dag_id, run_id, run, task_id, kind, data, n) ORDER BY n RETURNING id",
    )
    .bind(at)
    .bind(dag_ids)
    .bind(run_ids)
    .bind(runs)
    .bind(task_ids)
    .bind(kinds)
    .bind(data)
    .fetch_all(&mut *tx)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

// --- Decoding rows (by position) ---

fn count(row: &PgRow, i: usize) -> Result<u32> {
    let n: i64 = row.try_get(i)?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n} out of range")))
}

fn json_map(row: &PgRow, i: usize, what: &str) -> Result<Map<String, Value>> {
    match row.try_get::<Value, _>(i)? {
        Value::Object(map) => Ok(map),
        other => Err(StoreError::Corrupt(format!("{what} is not a JSON object: {other}"))),
    }
}

fn opt_json_map(row: &PgRow, i: usize, what: &str) -> Result<Option<Map<String, Value>>> {
    match row.try_get::<Option<Value>, _>(i)? {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(StoreError::Corrupt(format!("{what} is not a JSON object: {other}"))),
    }
}

/// A run from [`RUN_COLS`] starting at column `at`.
fn run_at(row: &PgRow, at: usize) -> Result<Run> {
    let kind: String = row.try_get(at + 3)?;
    Ok(Run {
        id: row.try_get(at)?,
        dag_id: row.try_get(at + 1)?,
        run_id: row.try_get(at + 2)?,
        kind: RunKind::from_name(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown run kind `{kind}`")))?,
        logical_date: row.try_get(at + 4)?,
        data_interval_start: row.try_get(at + 5)?,
        data_interval_end: row.try_get(at + 6)?,
        state: parse_run_state(row.try_get(at + 7)?)?,
        conf: opt_json_map(row, at + 8, "run conf")?,
        created_at: row.try_get(at + 9)?,
        started_at: row.try_get(at + 10)?,
        ended_at: row.try_get(at + 11)?,
        deadline: row.try_get(at + 12)?,
        deadline_missed: row.try_get(at + 13)?,
        first_started_at: row.try_get(at + 14)?,
        idempotency_key: row.try_get(at + 15)?,
    })
}

/// A try from [`TRY_COLS`] starting at column `at`.
fn try_at(row: &PgRow, at: usize) -> Result<Try> {
    Ok(Try {
        run: row.try_get(at)?,
        task_id: row.try_get(at + 1)?,
        try_number: count(row, at + 2)?,
        state: parse_task_state(row.try_get(at + 3)?)?,
        started_at: row.try_get(at + 4)?,
        ended_at: row.try_get(at + 5)?,
        error: row.try_get(at + 6)?,
        external_ids: json_map(row, at + 7, "try external ids")?,
    })
}

fn task_instance(row: &PgRow) -> Result<TaskInstance> {
    Ok(TaskInstance {
        run: row.try_get(0)?,
        task_id: row.try_get(1)?,
        state: parse_task_state(row.try_get(2)?)?,
        try_number: count(row, 3)?,
        max_tries: count(row, 4)?,
        next_try_at: row.try_get(5)?,
        started_at: row.try_get(6)?,
        ended_at: row.try_get(7)?,
    })
}

fn event(row: &PgRow) -> Result<Event> {
    let data: Value = row.try_get(6)?;
    // A kind this version does not know (written by a newer one) is shown, not refused.
    let kind = serde_json::from_value(data.clone())
        .unwrap_or_else(|_| EventKind::Legacy { kind: row.try_get(5).unwrap_or_default(), detail: data.to_string() });
    Ok(Event {
        id: row.try_get(0)?,
        at: row.try_get(1)?,
        dag_id: row.try_get(2)?,
        run_id: row.try_get(3)?,
        task_id: row.try_get(4)?,
        kind,
    })
}

/// A token from [`TOKEN_COLS`].
fn token_row(row: &PgRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        role: row.try_get(2)?,
        created_at: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        revoked_at: row.try_get(5)?,
        last_used_at: row.try_get(6)?,
    })
}

/// An alert from [`ALERT_COLS`].
fn alert_row(row: &PgRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: row.try_get(0)?,
        channel: row.try_get(1)?,
        incident: row.try_get(2)?,
        rule: row.try_get(3)?,
        dag_id: row.try_get(4)?,
        run_id: row.try_get(5)?,
        task_id: row.try_get(6)?,
        event_id: row.try_get(7)?,
        message: json_map(row, 8, "alert message")?,
        state: AlertState::from_str(row.try_get(9)?).map_err(StoreError::Corrupt)?,
        attempts: count(row, 10)?,
        created_at: row.try_get(11)?,
        next_attempt_at: row.try_get(12)?,
        delivered_at: row.try_get(13)?,
        last_error: row.try_get(14)?,
    })
}

/// An attempt from [`ATTEMPT_COLS`].
fn attempt_row(row: &PgRow) -> Result<AttemptRow> {
    Ok(AttemptRow {
        alert: row.try_get(0)?,
        number: count(row, 1)?,
        at: row.try_get(2)?,
        ok: row.try_get(3)?,
        text: row.try_get(4)?,
    })
}

fn dag_row(row: &PgRow) -> Result<DagRow> {
    Ok(DagRow {
        dag_id: row.try_get(0)?,
        file: row.try_get(1)?,
        paused: row.try_get(2)?,
        parse_error: row.try_get(3)?,
        updated_at: row.try_get(4)?,
        schedule_error: row.try_get(5)?,
    })
}

// --- Statements built at run time ---

/// A value bound to a statement whose text is built at run time.
enum Arg {
    Text(String),
    Texts(Vec<String>),
    Int(i64),
    Time(DateTime<Utc>),
}

/// Conditions and their arguments, numbered `$1`, `$2`, ... as they are added.
#[derive(Default)]
struct Clauses {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Clauses {
    /// The placeholder of a new argument.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    /// `condition` with each `{}` replaced by the placeholder of the next of `args`.
    fn push(&mut self, condition: &str, args: Vec<Arg>) {
        let mut text = condition.to_string();
        for arg in args {
            let p = self.arg(arg);
            text = text.replacen("{}", &p, 1);
        }
        self.clauses.push(text);
    }

    fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    fn query(self, sql: &str) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
        let mut query = sqlx::query(sql);
        for arg in self.args {
            query = match arg {
                Arg::Text(s) => query.bind(s),
                Arg::Texts(v) => query.bind(v),
                Arg::Int(n) => query.bind(n),
                Arg::Time(t) => query.bind(t),
            };
        }
        query
    }
}

/// The conditions of a run filter on `runs r`; with `cursor`, its `after` too.
fn run_conditions(filter: &RunFilter, cursor: bool) -> Clauses {
    let mut c = Clauses::default();
    if let Some(dag_id) = &filter.dag_id {
        c.push("r.dag_id = {}", vec![Arg::Text(dag_id.clone())]);
    }
    if !filter.states.is_empty() {
        c.push("r.state = ANY({})", vec![Arg::Texts(filter.states.iter().map(|s| s.name().to_string()).collect())]);
    }
    if !filter.kinds.is_empty() {
        c.push("r.kind = ANY({})", vec![Arg::Texts(filter.kinds.iter().map(|k| k.name().to_string()).collect())]);
    }
    if let Some(from) = filter.logical_from {
        c.push("r.logical_date >= {}", vec![Arg::Time(from)]);
    }
    if let Some(to) = filter.logical_to {
        c.push("r.logical_date <= {}", vec![Arg::Time(to)]);
    }
    if let (true, Some(after)) = (cursor, &filter.after) {
        // Strictly after in (logical_date DESC, id DESC): a row comparison, one range of the
        // (logical_date, id) index.
        c.push("(r.logical_date, r.id) < ({}, {})", vec![Arg::Time(after.logical_date), Arg::Int(after.id)]);
    }
    c
}

// --- Reads and locks shared by several methods ---

async fn fetch_run<'c, E: Executor<'c, Database = Postgres>>(e: E, id: i64) -> Result<Option<Run>> {
    let sql = format!("SELECT {RUN_COLS} FROM runs r WHERE r.id = $1");
    sqlx::query(&sql).bind(id).fetch_optional(e).await?.map(|row| run_at(&row, 0)).transpose()
}

/// Locks a run's row; its [`RunNames`] and state, or `NotFound`.
async fn lock_run(tx: &mut PgConnection, run: i64) -> Result<(RunNames, RunState)> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT dag_id, run_id, state FROM runs WHERE id = $1 FOR UPDATE")
            .bind(run)
            .fetch_optional(tx)
            .await?;
    let (dag_id, run_id, state) = row.ok_or_else(|| run_not_found(run))?;
    Ok(((dag_id, run_id, run), parse_run_state(&state)?))
}

/// The [`RunNames`] of each run in `runs`, or `NotFound`.
async fn names_of(tx: &mut PgConnection, runs: &[i64]) -> Result<HashMap<i64, RunNames>> {
    let mut ids = runs.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, dag_id, run_id FROM runs WHERE id = ANY($1)").bind(&ids).fetch_all(tx).await?;
    let names: HashMap<i64, RunNames> = rows.into_iter().map(|(id, d, r)| (id, (d, r, id))).collect();
    match ids.iter().find(|id| !names.contains_key(id)) {
        Some(missing) => Err(run_not_found(*missing)),
        None => Ok(names),
    }
}

/// Locks the task instances `task_ids` of `run`, in task id order (the lock order); their
/// state and try number by task id. A task with no instance is missing from the answer.
async fn lock_tasks(tx: &mut PgConnection, run: i64, task_ids: &[&str]) -> Result<HashMap<String, (TaskState, i64)>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT task_id, state, try_number FROM task_instances WHERE run = $1 AND task_id = ANY($2) \
         ORDER BY task_id FOR UPDATE",
    )
    .bind(run)
    .bind(task_ids)
    .fetch_all(tx)
    .await?;
    rows.into_iter().map(|(t, s, n)| Ok((t, (parse_task_state(&s)?, n)))).collect()
}

/// Runs in ascending order, each with the indexes of its items in `runs` (in their order).
fn by_run(runs: impl Iterator<Item = i64>) -> BTreeMap<i64, Vec<usize>> {
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (k, run) in runs.enumerate() {
        groups.entry(run).or_default().push(k);
    }
    groups
}

/// Whether some task appears twice among `items` of one run.
fn repeats<'a>(items: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().any(|t| !seen.insert(t))
}

/// [`Store::set_task_states`] inside a transaction; its events go to `events`.
async fn set_states_in(
    tx: &mut PgConnection,
    names: &RunNames,
    states: &[(String, TaskState)],
    at: DateTime<Utc>,
    events: &mut Vec<Pending>,
) -> Result<()> {
    let run = names.2;
    if repeats(states.iter().map(|(t, _)| t.as_str())) {
        // A task named twice: one at a time, in order, so the last one wins.
        for one in states {
            Box::pin(set_states_in(tx, names, std::slice::from_ref(one), at, events)).await?;
        }
        return Ok(());
    }
    let ids: Vec<&str> = states.iter().map(|(t, _)| t.as_str()).collect();
    let found = lock_tasks(tx, run, &ids).await?;
    if let Some(missing) = ids.iter().find(|t| !found.contains_key(**t)) {
        return Err(task_not_found(run, missing));
    }
    // Schedulers sharing the database decide the same transitions from their own views: a
    // transition whose starting point is gone (another scheduler took it first, or started the
    // task) is dropped, never applied over what happened meanwhile.
    let states: Vec<(String, TaskState)> =
        states.iter().filter(|(t, to)| may_set(found[t.as_str()].0, *to)).cloned().collect();
    if states.is_empty() {
        return Ok(());
    }
    let states = states.as_slice();
    let ids: Vec<&str> = states.iter().map(|(t, _)| t.as_str()).collect();
    let names_col: Vec<&str> = states.iter().map(|(_, s)| s.name()).collect();
    // Finished states take the time as their end; none, scheduled and queued clear it; the
    // others keep it.
    let finished: Vec<bool> = states.iter().map(|(_, s)| s.is_finished()).collect();
    let reset: Vec<bool> =
        states.iter().map(|(_, s)| matches!(s, TaskState::None | TaskState::Scheduled | TaskState::Queued)).collect();
    sqlx::query(
        "UPDATE task_instances ti SET state = v.state, \
         ended_at = CASE WHEN v.finished THEN $2 WHEN v.reset THEN NULL ELSE ti.ended_at END \
         FROM unnest($3::text[], $4::text[], $5::bool[], $6::bool[]) AS v (task_id, state, finished, reset) \
         WHERE ti.run = $1 AND ti.task_id = v.task_id",
    )
    .bind(run)
    .bind(at)
    .bind(&ids)
    .bind(&names_col)
    .bind(&finished)
    .bind(&reset)
    .execute(&mut *tx)
    .await?;
    events.extend(states.iter().map(|(task_id, state)| {
        Pending::of_run(at, names, Some(task_id), EventKind::TaskStateChanged { state: *state })
    }));
    Ok(())
}

/// Which of `tasks` (indexes, in order) have room under `limits`, counted with every try
/// running on the database; called under [`LIMITS_LOCK`].
async fn room_for(tx: &mut PgConnection, tasks: &[(i64, String)], limits: &Limits) -> Result<Vec<usize>> {
    let names = names_of(tx, &tasks.iter().map(|(r, _)| *r).collect::<Vec<_>>()).await?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tries WHERE state = 'running'").fetch_one(&mut *tx).await?;
    let dag_ids: Vec<&str> = names.values().map(|n| n.0.as_str()).collect();
    let per_dag: HashMap<String, i64> = sqlx::query_as(
        "SELECT r.dag_id, count(*) FROM tries t JOIN runs r ON r.id = t.run \
         WHERE t.state = 'running' AND r.dag_id = ANY($1) GROUP BY r.dag_id",
    )
    .bind(&dag_ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let pool_names: Vec<&str> = limits.tasks.iter().filter_map(|t| t.pool.as_ref().map(|(p, _)| p.as_str())).collect();
    let per_pool: HashMap<String, i64> = if pool_names.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as("SELECT pool, count(*) FROM tries WHERE state = 'running' AND pool = ANY($1) GROUP BY pool")
            .bind(&pool_names)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
    };
    let count = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    let mut total = count(total);
    let mut per_dag: HashMap<String, usize> = per_dag.into_iter().map(|(d, n)| (d, count(n))).collect();
    let mut per_pool: HashMap<String, usize> = per_pool.into_iter().map(|(p, n)| (p, count(n))).collect();
    let mut room = Vec::new();
    for (k, ((run, _), limit)) in tasks.iter().zip(&limits.tasks).enumerate() {
        let dag = &names[run].0;
        let in_dag = per_dag.get(dag).copied().unwrap_or(0);
        let in_pool = limit.pool.as_ref().map(|(p, slots)| (p, per_pool.get(p).copied().unwrap_or(0), *slots));
        if total >= limits.parallelism
            || in_dag >= limit.max_active_tasks
            || in_pool.is_some_and(|(_, used, slots)| used >= slots)
        {
            continue;
        }
        total += 1;
        *per_dag.entry(dag.clone()).or_default() += 1;
        if let Some((p, _, _)) = in_pool {
            *per_pool.entry(p.clone()).or_default() += 1;
        }
        room.push(k);
    }
    Ok(room)
}

/// Whether a task in state `from` may be set to `to` by [`Store::set_task_states`]: what a
/// scheduler decides (scheduled, skipped, upstream failed, removed) only from the state it was
/// decided from; anything else (a mark) from any state.
fn may_set(from: TaskState, to: TaskState) -> bool {
    use TaskState as S;
    match to {
        S::Scheduled => matches!(from, S::None | S::UpForRetry),
        S::Skipped | S::UpstreamFailed => from == S::None,
        S::Removed => !from.is_finished() && from != S::Removed && from != S::Running,
        _ => true,
    }
}

/// [`Store::start_tries`] inside a transaction; its events go to `events`.
async fn start_tries_in(
    tx: &mut PgConnection,
    tasks: &[(i64, String)],
    at: DateTime<Utc>,
    owner: Option<i64>,
    events: &mut Vec<Pending>,
) -> Result<Vec<Start>> {
    let names = names_of(tx, &tasks.iter().map(|(r, _)| *r).collect::<Vec<_>>()).await?;
    let mut starts: Vec<Option<Start>> = vec![None; tasks.len()];
    for (run, members) in by_run(tasks.iter().map(|(r, _)| *r)) {
        if repeats(members.iter().map(|k| tasks[*k].1.as_str())) {
            // A task named twice: one at a time, so the second finds the first's try running.
            for k in members {
                starts[k] = Some(start_run_tasks(tx, run, &[tasks[k].1.as_str()], at, owner).await?[0]);
            }
        } else {
            let ids: Vec<&str> = members.iter().map(|k| tasks[*k].1.as_str()).collect();
            for (k, start) in members.iter().zip(start_run_tasks(tx, run, &ids, at, owner).await?) {
                starts[*k] = Some(start);
            }
        }
    }
    let starts: Vec<Start> = starts.into_iter().map(|s| s.expect("every task has an answer")).collect();
    events.extend(tasks.iter().zip(&starts).filter_map(|((run, task_id), start)| match start {
        Start::Started(try_number) => {
            Some(Pending::of_run(at, &names[run], Some(task_id), EventKind::TryStarted { try_number: *try_number }))
        }
        Start::NotStartable(_) | Start::NoRoom => None,
    }));
    Ok(starts)
}

/// Starts the next try of each of `ids` (distinct) of `run` that is `scheduled` or `queued`:
/// three statements whatever their number. One answer per id, in order. The tries belong to
/// scheduler `owner`, with token 1.
async fn start_run_tasks(
    tx: &mut PgConnection,
    run: i64,
    ids: &[&str],
    at: DateTime<Utc>,
    owner: Option<i64>,
) -> Result<Vec<Start>> {
    let current = lock_tasks(tx, run, ids).await?;
    let mut answers = Vec::with_capacity(ids.len());
    let mut startable: Vec<&str> = Vec::new();
    let mut numbers: Vec<i64> = Vec::new();
    for id in ids {
        let (state, number) = current.get(*id).ok_or_else(|| task_not_found(run, id))?;
        if matches!(state, TaskState::Scheduled | TaskState::Queued) {
            startable.push(id);
            numbers.push(number + 1);
            answers.push(Start::Started(try_number(number + 1)?));
        } else {
            // A lost race, a task changed meanwhile: nothing is written for it.
            answers.push(Start::NotStartable(*state));
        }
    }
    if startable.is_empty() {
        return Ok(answers);
    }
    sqlx::query(
        "UPDATE task_instances SET state = 'running', try_number = try_number + 1, started_at = $2, \
         ended_at = NULL, next_try_at = NULL WHERE run = $1 AND task_id = ANY($3) AND state IN ('scheduled', 'queued')",
    )
    .bind(run)
    .bind(at)
    .bind(&startable)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO tries (run, task_id, try_number, state, started_at, owner, token) \
         SELECT $1, x.task_id, x.n, 'running', $2, $5, 1 FROM unnest($3::text[], $4::bigint[]) WITH ORDINALITY \
         AS x (task_id, n, k) ORDER BY x.k",
    )
    .bind(run)
    .bind(at)
    .bind(&startable)
    .bind(&numbers)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    Ok(answers)
}

/// The try row state, task state and error a finished try is written with.
fn finished_states(outcome: &TryOutcome) -> (TaskState, Option<&str>) {
    match outcome {
        TryOutcome::Success { .. } => (TaskState::Success, None),
        TryOutcome::Failed { error, .. } => (TaskState::Failed, Some(error.as_str())),
        TryOutcome::Skipped { reason } => (TaskState::Skipped, Some(reason.as_str())),
    }
}

/// The caller's claim on the tries it finishes: the scheduler it is (if any) and, per try of
/// the batch, the token it holds.
struct Fence<'a> {
    owner: Option<i64>,
    tokens: &'a [i64],
}

/// [`Store::finish_tries`] for the tries `members` (indexes into `tries`, naming each task
/// once) of one run: a few statements whatever their number.
async fn finish_run_tries(
    tx: &mut PgConnection,
    names: &RunNames,
    tries: &[FinishTry],
    members: &[usize],
    fence: &Fence<'_>,
    done: &mut [Option<Finish>],
    events: &mut Vec<Pending>,
) -> Result<()> {
    let run = names.2;
    let ids: Vec<&str> = members.iter().map(|k| tries[*k].task_id.as_str()).collect();
    let numbers: Vec<i64> = members.iter().map(|k| i64::from(tries[*k].try_number)).collect();
    let tasks = lock_tasks(tx, run, &ids).await?;
    let rows: Vec<(String, i64, String, Option<i64>, i64)> = sqlx::query_as(
        "SELECT t.task_id, t.try_number, t.state, t.owner, t.token FROM tries t \
         JOIN unnest($2::text[], $3::bigint[]) AS v (task_id, n) ON t.task_id = v.task_id AND t.try_number = v.n \
         WHERE t.run = $1 ORDER BY t.task_id FOR UPDATE OF t",
    )
    .bind(run)
    .bind(&ids)
    .bind(&numbers)
    .fetch_all(&mut *tx)
    .await?;
    let try_states: HashMap<(String, i64), (String, Option<i64>, i64)> =
        rows.into_iter().map(|(t, n, s, owner, token)| ((t, n), (s, owner, token))).collect();

    // The try rows that end, and the task instances that follow them.
    let (mut end_ids, mut end_numbers, mut end_states, mut end_errors, mut end_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ti_ids, mut ti_states, mut ti_ended, mut ti_next) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut out_ids, mut out_keys, mut out_values) = (Vec::new(), Vec::new(), Vec::new());
    for k in members {
        let t = &tries[*k];
        let (state, number) = *tasks.get(&t.task_id).ok_or_else(|| task_not_found(run, &t.task_id))?;
        let (try_state, owner, token) = try_states
            .get(&(t.task_id.clone(), i64::from(t.try_number)))
            .ok_or_else(|| try_not_found(run, &t.task_id, t.try_number))?;
        if try_state != "running" {
            // Only a running try ends.
            done[*k] = Some(Finish::NotRunning(state));
            continue;
        }
        if *owner != fence.owner || *token != fence.tokens[*k] {
            // Another scheduler took the try over: its outcome is that one's to record.
            done[*k] = Some(Finish::TakenOver(state));
            continue;
        }
        let (row_state, error) = finished_states(&t.outcome);
        end_ids.push(t.task_id.as_str());
        end_numbers.push(i64::from(t.try_number));
        end_states.push(row_state.name());
        end_errors.push(error);
        end_at.push(t.at);
        if state != TaskState::Running || number != i64::from(t.try_number) {
            // The task instance follows only while this try is its current, running one: a
            // task cleared or marked while the try ran keeps what was decided meanwhile.
            done[*k] = Some(Finish::TaskChanged(state));
            events.push(try_finished(t.at, names, t, state));
            continue;
        }
        let retry_at = match &t.outcome {
            TryOutcome::Failed { retry_at, .. } => *retry_at,
            _ => None,
        };
        let applied = if retry_at.is_some() { TaskState::UpForRetry } else { row_state };
        ti_ids.push(t.task_id.as_str());
        ti_states.push(applied.name());
        ti_ended.push(if retry_at.is_some() { None } else { Some(t.at) });
        ti_next.push(retry_at);
        if let TryOutcome::Success { outputs } = &t.outcome {
            for (key, value) in outputs {
                out_ids.push(t.task_id.as_str());
                out_keys.push(key.as_str());
                out_values.push(value.to_string());
            }
        }
        done[*k] = Some(Finish::Applied(applied));
        events.push(try_finished(t.at, names, t, applied));
        if let Some(retry_at) = retry_at {
            let kind = EventKind::RetryScheduled { try_number: t.try_number.saturating_add(1), at: retry_at };
            events.push(Pending::of_run(t.at, names, Some(&t.task_id), kind));
        }
    }
    if !end_ids.is_empty() {
        sqlx::query(
            "UPDATE tries t SET state = v.state, ended_at = v.at, error = v.error \
             FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[]) \
             AS v (task_id, n, state, error, at) \
             WHERE t.run = $1 AND t.task_id = v.task_id AND t.try_number = v.n AND t.state = 'running'",
        )
        .bind(run)
        .bind(&end_ids)
        .bind(&end_numbers)
        .bind(&end_states)
        .bind(&end_errors)
        .bind(&end_at)
        .execute(&mut *tx)
        .await?;
    }
    if !ti_ids.is_empty() {
        sqlx::query(
            "UPDATE task_instances ti SET state = v.state, ended_at = v.ended, next_try_at = v.next \
             FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS v (task_id, state, ended, next) \
             WHERE ti.run = $1 AND ti.task_id = v.task_id",
        )
        .bind(run)
        .bind(&ti_ids)
        .bind(&ti_states)
        .bind(&ti_ended)
        .bind(&ti_next)
        .execute(&mut *tx)
        .await?;
    }
    if !out_ids.is_empty() {
        sqlx::query(
            "INSERT INTO outputs (run, task_id, key, value) \
             SELECT $1, v.task_id, v.key, v.value::json FROM unnest($2::text[], $3::text[], $4::text[]) \
             AS v (task_id, key, value) \
             ON CONFLICT (run, task_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(run)
        .bind(&out_ids)
        .bind(&out_keys)
        .bind(&out_values)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One attempt of [`Store::record_attempts`] inside a transaction (the alert's row locked);
/// its event goes to `events`. A refusal (`Conflict`, `NotFound`) is answered before anything
/// is written.
async fn record_attempt_in(
    tx: &mut PgConnection,
    alert: i64,
    at: DateTime<Utc>,
    attempt: &Attempt,
    events: &mut Vec<Pending>,
) -> Result<AlertRow> {
    let current: Option<(String, i64)> = sqlx::query_as("SELECT state, attempts FROM alerts WHERE id = $1 FOR UPDATE")
        .bind(alert)
        .fetch_optional(&mut *tx)
        .await?;
    let (state, attempts) = current.ok_or_else(|| StoreError::NotFound(format!("alert {alert}")))?;
    let state = AlertState::from_str(&state).map_err(StoreError::Corrupt)?;
    if state != AlertState::Pending {
        return Err(StoreError::Conflict(format!(
            "alert {alert} is {state}, not pending: it takes no more delivery attempts"
        )));
    }
    let (ok, text) = match attempt {
        Attempt::Delivered { answer } => (true, answer),
        Attempt::Failed { error, .. } => (false, error),
    };
    sqlx::query("INSERT INTO alert_attempts (alert, number, at, ok, text) VALUES ($1, $2, $3, $4, $5)")
        .bind(alert)
        .bind(attempts + 1)
        .bind(at)
        .bind(ok)
        .bind(text)
        .execute(&mut *tx)
        .await?;
    let update = match attempt {
        Attempt::Delivered { .. } => sqlx::query(
            "UPDATE alerts SET state = 'delivered', attempts = attempts + 1, delivered_at = $2, \
             next_attempt_at = NULL WHERE id = $1",
        )
        .bind(alert)
        .bind(at),
        Attempt::Failed { error, retry_at: Some(retry_at) } => sqlx::query(
            "UPDATE alerts SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1",
        )
        .bind(alert)
        .bind(*retry_at)
        .bind(error),
        Attempt::Failed { error, retry_at: None } => sqlx::query(
            "UPDATE alerts SET state = 'failed', attempts = attempts + 1, next_attempt_at = NULL, \
             last_error = $2 WHERE id = $1",
        )
        .bind(alert)
        .bind(error),
    };
    update.execute(&mut *tx).await?;
    let sql = format!("SELECT {ALERT_COLS} FROM alerts WHERE id = $1");
    let row = alert_row(&sqlx::query(&sql).bind(alert).fetch_one(&mut *tx).await?)?;
    let result = match attempt {
        Attempt::Delivered { .. } => AttemptResult::Delivered,
        Attempt::Failed { retry_at: Some(_), .. } => AttemptResult::Retry,
        Attempt::Failed { retry_at: None, .. } => AttemptResult::GaveUp,
    };
    let kind = EventKind::AlertAttempted { channel: row.channel.clone(), rule: row.rule.clone(), result };
    let run = run_key(tx, &row.dag_id, row.run_id.as_deref()).await?;
    events.push(Pending {
        at,
        dag_id: Some(row.dag_id.clone()),
        run_id: row.run_id.clone(),
        run,
        task_id: row.task_id.clone(),
        kind,
    });
    Ok(row)
}

/// The key of the run `run_id` of `dag_id`, if both are given and it exists.
async fn run_key(tx: &mut PgConnection, dag_id: &str, run_id: Option<&str>) -> Result<Option<i64>> {
    let Some(run_id) = run_id else { return Ok(None) };
    Ok(sqlx::query_scalar("SELECT id FROM runs WHERE dag_id = $1 AND run_id = $2")
        .bind(dag_id)
        .bind(run_id)
        .fetch_optional(tx)
        .await?)
}

/// Moves the cursor `name` to `event_id` unless it is further already.
async fn move_cursor<'c, E: Executor<'c, Database = Postgres>>(e: E, name: &str, event_id: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO cursors (name, event_id) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET event_id = GREATEST(cursors.event_id, excluded.event_id)",
    )
    .bind(name)
    .bind(event_id)
    .execute(e)
    .await?;
    Ok(())
}

/// The refusal of a write for a try another scheduler holds now.
fn taken_over(run: i64, task_id: &str, try_number: u32) -> StoreError {
    StoreError::TakenOver(format!(
        "try {try_number} of task `{task_id}` (run {run}) was taken over by another scheduler: this one's lease \
         had expired"
    ))
}

/// A lease length in whole milliseconds, for SQL.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether `e` is PostgreSQL's unique violation (SQLSTATE 23505).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

#[async_trait::async_trait]
impl Store for PgStore {
    // --- DAGs ---

    async fn sync_dags(&self, dags: &[DagSync]) -> Result<()> {
        if dags.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let at = Utc::now();
        let mut events = Vec::new();
        // In DAG id order, so that two processes syncing the same DAGs lock them in one order.
        let mut sorted: Vec<&DagSync> = dags.iter().collect();
        sorted.sort_by(|a, b| a.dag_id.cmp(&b.dag_id));
        for d in sorted {
            // Whether this call changes what the row says about the file (not just its time).
            let unchanged: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM dags WHERE dag_id = $1 AND file IS NOT DISTINCT FROM $2 \
                 AND parse_error IS NOT DISTINCT FROM $3 AND ($4::text IS NULL OR source IS NOT DISTINCT FROM $4) \
                 FOR UPDATE",
            )
            .bind(&d.dag_id)
            .bind(&d.file)
            .bind(d.parse_error.as_deref())
            .bind(d.source.as_deref())
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO dags (dag_id, file, paused, source, parse_error, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (dag_id) DO UPDATE SET file = excluded.file, parse_error = excluded.parse_error, \
                 source = COALESCE(excluded.source, dags.source), \
                 schedule_error = CASE WHEN excluded.source IS NULL THEN dags.schedule_error END, \
                 updated_at = excluded.updated_at",
            )
            .bind(&d.dag_id)
            .bind(&d.file)
            .bind(d.paused_at_creation)
            .bind(d.source.as_deref())
            .bind(d.parse_error.as_deref())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if unchanged.is_none() {
                let kind = match (&d.source, &d.parse_error) {
                    (Some(_), _) => EventKind::DagLoaded { file: d.file.clone() },
                    (None, error) => {
                        EventKind::DagBroken { file: d.file.clone(), error: error.clone().unwrap_or_default() }
                    }
                };
                events.push(Pending::of_dag(at, &d.dag_id, kind));
            }
        }
        // Events in the order the caller gave the DAGs.
        events.sort_by_key(|e| dags.iter().position(|d| Some(&d.dag_id) == e.dag_id.as_ref()));
        self.commit(tx, events).await
    }

    async fn set_schedule_error(&self, dag_id: &str, error: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO dags (dag_id, schedule_error, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (dag_id) DO UPDATE SET schedule_error = excluded.schedule_error, updated_at = excluded.updated_at",
        )
        .bind(dag_id)
        .bind(error)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dag_source(&self, dag_id: &str) -> Result<Option<(String, String)>> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT file, source FROM dags WHERE dag_id = $1")
                .bind(dag_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((Some(file), Some(source))) => Some((file, source)),
            _ => None,
        })
    }

    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let at = Utc::now();
        // The row as it was, locked; a new row's insert races only another insert, which the
        // upsert resolves.
        let was: Option<bool> = sqlx::query_scalar("SELECT paused FROM dags WHERE dag_id = $1 FOR UPDATE")
            .bind(dag_id)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO dags (dag_id, paused, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (dag_id) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
        )
        .bind(dag_id)
        .bind(paused)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let mut events = Vec::new();
        if was != Some(paused) {
            events.push(Pending::of_dag(at, dag_id, EventKind::DagPaused { paused }));
        }
        self.commit(tx, events).await
    }

    async fn dags(&self) -> Result<Vec<DagRow>> {
        sqlx::query("SELECT dag_id, file, paused, parse_error, updated_at, schedule_error FROM dags ORDER BY dag_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(dag_row)
            .collect()
    }

    // --- Runs ---

    async fn create_run(&self, new: &NewRun) -> Result<Created> {
        let mut tx = self.pool.begin().await?;
        let created_at = Utc::now();
        // No conflict target: DO NOTHING on any of the unique constraints. A racing insert of
        // the same run waits for the other transaction, then does nothing.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO runs (dag_id, run_id, kind, logical_date, data_interval_start, data_interval_end, \
             state, conf, created_at, deadline, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7::json, $8, $9, $10) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&new.dag_id)
        .bind(&new.run_id)
        .bind(new.kind.name())
        .bind(new.logical_date)
        .bind(new.data_interval_start)
        .bind(new.data_interval_end)
        .bind(new.conf.as_ref().map(json_text))
        .bind(created_at)
        .bind(new.deadline)
        .bind(new.idempotency_key.as_deref())
        .fetch_optional(&mut *tx)
        .await?;

        let Some(id) = id else {
            // Prefer the run of the idempotency key, then the run of the same logical date.
            let sql = format!(
                "SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = $1 \
                 AND (r.logical_date = $2 OR r.run_id = $3 OR r.idempotency_key = $4) \
                 ORDER BY COALESCE(r.idempotency_key = $4, FALSE) DESC, (r.logical_date = $2) DESC LIMIT 1"
            );
            let row = sqlx::query(&sql)
                .bind(&new.dag_id)
                .bind(new.logical_date)
                .bind(&new.run_id)
                .bind(new.idempotency_key.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            let row = row.ok_or_else(|| {
                StoreError::Corrupt(format!("run `{}` of `{}` conflicts with no run", new.run_id, new.dag_id))
            })?;
            return Ok(Created::Existing(run_at(&row, 0)?));
        };

        let task_ids: Vec<&str> = new.tasks.iter().map(|(t, _)| t.as_str()).collect();
        let max_tries: Vec<i64> = new.tasks.iter().map(|(_, m)| i64::from(*m)).collect();
        sqlx::query(
            "INSERT INTO task_instances (run, task_id, state, try_number, max_tries) \
             SELECT $1, x.task_id, 'none', 0, x.m FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY \
             AS x (task_id, m, k) ORDER BY x.k",
        )
        .bind(id)
        .bind(&task_ids)
        .bind(&max_tries)
        .execute(&mut *tx)
        .await?;
        let run = fetch_run(&mut *tx, id).await?.ok_or_else(|| run_not_found(id))?;
        let kind = EventKind::RunCreated { run_kind: new.kind, logical_date: run.logical_date };
        let names = (run.dag_id.clone(), run.run_id.clone(), run.id);
        self.commit(tx, vec![Pending::of_run(created_at, &names, None, kind)]).await?;
        Ok(Created::New(run))
    }

    async fn run(&self, id: i64) -> Result<Option<Run>> {
        fetch_run(&self.pool, id).await
    }

    async fn run_by_run_id(&self, dag_id: &str, run_id: &str) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = $1 AND r.run_id = $2");
        sqlx::query(&sql)
            .bind(dag_id)
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| run_at(&row, 0))
            .transpose()
    }

    async fn run_by_logical_date(&self, dag_id: &str, logical_date: DateTime<Utc>) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = $1 AND r.logical_date = $2");
        sqlx::query(&sql)
            .bind(dag_id)
            .bind(logical_date)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| run_at(&row, 0))
            .transpose()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut c = run_conditions(filter, true);
        let mut sql =
            format!("SELECT {RUN_COLS} FROM runs r{} ORDER BY r.logical_date DESC, r.id DESC", c.where_clause());
        if let Some(limit) = filter.limit {
            let p = c.arg(Arg::Int(i64::from(limit)));
            sql.push_str(&format!(" LIMIT {p}"));
        }
        c.query(&sql).fetch_all(&self.pool).await?.iter().map(|row| run_at(row, 0)).collect()
    }

    async fn count_runs(&self, filter: &RunFilter, cap: u32) -> Result<u64> {
        let mut c = run_conditions(filter, false);
        let conditions = c.where_clause();
        let p = c.arg(Arg::Int(i64::from(cap)));
        // The inner LIMIT bounds the work, not only the answer.
        let sql = format!("SELECT count(*) FROM (SELECT 1 FROM runs r{conditions} LIMIT {p}) AS c");
        let n: i64 = c.query(&sql).fetch_one(&self.pool).await?.try_get(0)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n} out of range")))
    }

    async fn grid(&self, dag_id: &str, limit: u32) -> Result<(Vec<Run>, Vec<GridCell>)> {
        // One snapshot for both statements: a run created in between cannot bring task
        // instances without their run.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        let sql = format!(
            "SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = $1 ORDER BY r.logical_date DESC, r.id DESC LIMIT $2"
        );
        let runs = sqlx::query(&sql)
            .bind(dag_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| run_at(row, 0))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let rows = sqlx::query(
            "SELECT run, task_id, state, try_number, started_at, ended_at FROM task_instances \
             WHERE run = ANY($1) ORDER BY run, seq",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut by_run: HashMap<i64, Vec<GridCell>> = HashMap::with_capacity(runs.len());
        for row in &rows {
            let run: i64 = row.try_get(0)?;
            let started: Option<DateTime<Utc>> = row.try_get(4)?;
            let ended: Option<DateTime<Utc>> = row.try_get(5)?;
            let duration_ms = match (started, ended) {
                (Some(s), Some(e)) => Some((e - s).num_milliseconds().max(0)),
                _ => None,
            };
            by_run.entry(run).or_default().push(GridCell {
                run,
                task_id: row.try_get(1)?,
                state: parse_task_state(row.try_get(2)?)?,
                try_number: count(row, 3)?,
                duration_ms,
            });
        }
        let cells = runs.iter().flat_map(|r| by_run.remove(&r.id).unwrap_or_default()).collect();
        Ok((runs, cells))
    }

    async fn latest_runs(&self, per_dag: u32) -> Result<Vec<Run>> {
        // Per DAG, its newest runs by the (dag_id, logical_date) index: a few index steps per DAG.
        let sql = format!(
            "{DAG_IDS} SELECT {RUN_COLS} FROM d CROSS JOIN LATERAL (SELECT * FROM runs x WHERE x.dag_id = d.dag_id \
             ORDER BY x.logical_date DESC, x.id DESC LIMIT $1) r WHERE d.dag_id IS NOT NULL \
             ORDER BY r.dag_id, r.logical_date DESC, r.id DESC"
        );
        sqlx::query(&sql)
            .bind(i64::from(per_dag))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| run_at(row, 0))
            .collect()
    }

    async fn last_successes(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let sql = format!(
            "{DAG_IDS} SELECT dag_id, at FROM (SELECT d.dag_id, (SELECT max(x.ended_at) FROM runs x \
             WHERE x.dag_id = d.dag_id AND x.state = 'success') AS at FROM d WHERE d.dag_id IS NOT NULL) s \
             WHERE at IS NOT NULL ORDER BY dag_id"
        );
        Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
    }

    async fn previous_finished_run(&self, dag_id: &str, before: DateTime<Utc>, exclude: i64) -> Result<Option<Run>> {
        let sql = format!(
            "SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = $1 AND r.state IN ('success', 'failed') \
             AND r.ended_at <= $2 AND r.id <> $3 ORDER BY r.ended_at DESC, r.id DESC LIMIT 1"
        );
        sqlx::query(&sql)
            .bind(dag_id)
            .bind(before)
            .bind(exclude)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| run_at(&row, 0))
            .transpose()
    }

    async fn set_run_state(&self, run: i64, state: RunState, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (names, was) = lock_run(&mut tx, run).await?;
        let query = match state {
            RunState::Running => sqlx::query(
                "UPDATE runs SET started_at = CASE WHEN state = 'running' THEN started_at ELSE $2 END, \
                 first_started_at = COALESCE(first_started_at, $2), state = 'running', ended_at = NULL WHERE id = $1",
            )
            .bind(run)
            .bind(at),
            RunState::Queued => {
                sqlx::query("UPDATE runs SET state = 'queued', ended_at = NULL WHERE id = $1").bind(run)
            }
            RunState::Success | RunState::Failed => {
                sqlx::query("UPDATE runs SET state = $2, ended_at = $3 WHERE id = $1")
                    .bind(run)
                    .bind(state.name())
                    .bind(at)
            }
        };
        query.execute(&mut *tx).await?;
        let mut events = Vec::new();
        if was != state {
            let kind = match state {
                RunState::Running => EventKind::RunStarted,
                RunState::Queued => EventKind::RunQueued,
                RunState::Success | RunState::Failed => EventKind::RunFinished { state },
            };
            events.push(Pending::of_run(at, &names, None, kind));
        }
        self.commit(tx, events).await
    }

    async fn mark_deadline_missed(&self, run: i64, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let marked: Option<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "UPDATE runs SET deadline_missed = TRUE WHERE id = $1 AND NOT deadline_missed \
             RETURNING dag_id, run_id, deadline",
        )
        .bind(run)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((dag_id, run_id, deadline)) = marked else {
            // Already marked, or no such run.
            fetch_run(&mut *tx, run).await?.ok_or_else(|| run_not_found(run))?;
            return Ok(false);
        };
        let event = Pending::of_run(at, &(dag_id, run_id, run), None, EventKind::DeadlineMissed { deadline });
        self.commit(tx, vec![event]).await?;
        Ok(true)
    }

    // --- Task instances and tries ---

    async fn task_instances(&self, run: i64) -> Result<Vec<TaskInstance>> {
        // seq: the order the run was created with.
        let sql = format!("SELECT {TI_COLS} FROM task_instances WHERE run = $1 ORDER BY seq");
        sqlx::query(&sql).bind(run).fetch_all(&self.pool).await?.iter().map(task_instance).collect()
    }

    async fn set_task_states(&self, run: i64, states: &[(String, TaskState)], at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let names = names_of(&mut tx, &[run]).await?.remove(&run).ok_or_else(|| run_not_found(run))?;
        let mut events = Vec::with_capacity(states.len());
        set_states_in(&mut tx, &names, states, at, &mut events).await?;
        self.commit(tx, events).await
    }

    async fn start_tries(&self, tasks: &[(i64, String)], at: DateTime<Utc>) -> Result<Vec<Start>> {
        let mut tx = self.pool.begin().await?;
        let mut events = Vec::with_capacity(tasks.len());
        let starts = start_tries_in(&mut tx, tasks, at, self.owner(), &mut events).await?;
        self.commit(tx, events).await?;
        Ok(starts)
    }

    async fn set_states_and_start(
        &self,
        states: &[(i64, Vec<(String, TaskState)>)],
        tasks: &[(i64, String)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Start>> {
        self.states_and_starts(states, tasks, None, at).await
    }

    async fn set_states_and_start_within(
        &self,
        states: &[(i64, Vec<(String, TaskState)>)],
        tasks: &[(i64, String)],
        limits: &Limits,
        at: DateTime<Utc>,
    ) -> Result<Vec<Start>> {
        self.states_and_starts(states, tasks, Some(limits), at).await
    }

    async fn record_external_id(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
        key: &str,
        value: &Value,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Read, merge, write, with the row locked.
        let row: Option<(Value, Option<i64>, i64)> = sqlx::query_as(
            "SELECT external_ids, owner, token FROM tries WHERE run = $1 AND task_id = $2 AND try_number = $3 \
             FOR UPDATE",
        )
        .bind(run)
        .bind(task_id)
        .bind(i64::from(try_number))
        .fetch_optional(&mut *tx)
        .await?;
        let (ids, owner, token) = row.ok_or_else(|| try_not_found(run, task_id, try_number))?;
        if owner != self.owner() || token != self.token(run, task_id, try_number) {
            return Err(taken_over(run, task_id, try_number));
        }
        let mut ids = match ids {
            Value::Object(map) => map,
            other => return Err(StoreError::Corrupt(format!("try external ids is not a JSON object: {other}"))),
        };
        ids.insert(key.to_string(), value.clone());
        sqlx::query("UPDATE tries SET external_ids = $4::json WHERE run = $1 AND task_id = $2 AND try_number = $3")
            .bind(run)
            .bind(task_id)
            .bind(i64::from(try_number))
            .bind(json_text(&ids))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_tries(&self, tries: &[FinishTry]) -> Result<Vec<Finish>> {
        let mut tx = self.pool.begin().await?;
        let names = names_of(&mut tx, &tries.iter().map(|t| t.run).collect::<Vec<_>>()).await?;
        let mut done: Vec<Option<Finish>> = vec![None; tries.len()];
        let tokens: Vec<i64> = {
            let held = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match held.is_empty() {
                // The common case: every try of the batch was started by this handle.
                true => vec![1; tries.len()],
                false => tries.iter().map(|t| token_of(&held, t.run, &t.task_id, t.try_number)).collect(),
            }
        };
        let fence = Fence { owner: self.owner(), tokens: &tokens };
        // Per run in ascending order (the lock order), then events in the caller's order.
        let mut per_try: Vec<Vec<Pending>> = (0..tries.len()).map(|_| Vec::new()).collect();
        for (run, members) in by_run(tries.iter().map(|t| t.run)) {
            if repeats(members.iter().map(|k| tries[*k].task_id.as_str())) {
                for k in members {
                    let mut events = Vec::new();
                    finish_run_tries(&mut tx, &names[&run], tries, &[k], &fence, &mut done, &mut events).await?;
                    per_try[k] = events;
                }
            } else {
                let mut events = Vec::new();
                finish_run_tries(&mut tx, &names[&run], tries, &members, &fence, &mut done, &mut events).await?;
                // Each member's events, in member order (a finish writes one or two).
                for e in events {
                    let k = members
                        .iter()
                        .copied()
                        .find(|k| Some(&tries[*k].task_id) == e.task_id.as_ref())
                        .expect("an event of a member");
                    per_try[k].push(e);
                }
            }
        }
        self.commit(tx, per_try.into_iter().flatten().collect()).await?;
        {
            let mut held = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !held.is_empty() {
                for t in tries {
                    held.remove(&(t.run, t.task_id.clone(), t.try_number));
                }
            }
        }
        done.into_iter()
            .map(|d| d.ok_or_else(|| StoreError::Corrupt("a try of the batch was not finished".into())))
            .collect()
    }

    async fn tries(&self, run: i64, task_id: Option<&str>) -> Result<Vec<Try>> {
        let sql = format!(
            "SELECT {TRY_COLS} FROM tries t WHERE t.run = $1 AND ($2::text IS NULL OR t.task_id = $2) \
             ORDER BY t.started_at, t.seq"
        );
        sqlx::query(&sql)
            .bind(run)
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| try_at(row, 0))
            .collect()
    }

    async fn running_tries(&self) -> Result<Vec<(Run, Try)>> {
        let sql = format!(
            "SELECT {RUN_COLS}, {TRY_COLS} FROM tries t JOIN runs r ON r.id = t.run \
             WHERE t.state = 'running' ORDER BY t.started_at, t.seq"
        );
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((run_at(row, 0)?, try_at(row, RUN_NCOLS)?)))
            .collect()
    }

    async fn outputs(&self, run: i64) -> Result<BTreeMap<String, Map<String, Value>>> {
        let rows: Vec<(String, String, Value)> =
            sqlx::query_as("SELECT task_id, key, value FROM outputs WHERE run = $1")
                .bind(run)
                .fetch_all(&self.pool)
                .await?;
        let mut outputs: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (task_id, key, value) in rows {
            outputs.entry(task_id).or_default().insert(key, value);
        }
        Ok(outputs)
    }

    async fn clear_tasks(&self, run: i64, tasks: &[(String, u32)], at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (names, state) = lock_run(&mut tx, run).await?;
        let ids: Vec<&str> = tasks.iter().map(|(t, _)| t.as_str()).collect();
        let found = lock_tasks(&mut tx, run, &ids).await?;
        if let Some(missing) = ids.iter().find(|t| !found.contains_key(**t)) {
            return Err(task_not_found(run, missing));
        }
        let mut events = Vec::with_capacity(tasks.len() + 1);
        for (task_id, tries) in tasks {
            events.push(Pending::of_run(
                at,
                &names,
                Some(task_id),
                EventKind::TaskStateChanged { state: TaskState::None },
            ));
            sqlx::query(
                "UPDATE task_instances SET state = 'none', next_try_at = NULL, started_at = NULL, ended_at = NULL, \
                 max_tries = LEAST(try_number + $3, 4294967295) WHERE run = $1 AND task_id = $2",
            )
            .bind(run)
            .bind(task_id)
            .bind(i64::from(*tries))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM outputs WHERE run = $1 AND task_id = ANY($2)")
            .bind(run)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        if state.is_finished() {
            sqlx::query("UPDATE runs SET state = 'queued', ended_at = NULL WHERE id = $1")
                .bind(run)
                .execute(&mut *tx)
                .await?;
            events.push(Pending::of_run(at, &names, None, EventKind::RunQueued));
        }
        self.commit(tx, events).await
    }

    // --- Events ---

    async fn add_event(&self, event: &NewEvent) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let run = match (&event.dag_id, &event.run_id) {
            (Some(dag_id), run_id) => run_key(&mut tx, dag_id, run_id.as_deref()).await?,
            _ => None,
        };
        let pending = Pending {
            at: Utc::now(),
            dag_id: event.dag_id.clone(),
            run_id: event.run_id.clone(),
            run,
            task_id: event.task_id.clone(),
            kind: event.kind.clone(),
        };
        let ids = self.commit_ids(tx, vec![pending]).await?;
        ids.first().copied().ok_or_else(|| StoreError::Corrupt("the event got no id".into()))
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let mut c = Clauses::default();
        c.push("id > {}", vec![Arg::Int(query.after.unwrap_or(0))]);
        if let Some(dag_id) = &query.dag_id {
            c.push("dag_id = {}", vec![Arg::Text(dag_id.clone())]);
        }
        if let Some(run_id) = &query.run_id {
            c.push("run IN (SELECT id FROM runs WHERE run_id = {})", vec![Arg::Text(run_id.clone())]);
        }
        let conditions = c.where_clause();
        let p = c.arg(Arg::Int(i64::from(query.limit)));
        let order = match query.order {
            Order::Oldest => "ASC",
            Order::Newest => "DESC",
        };
        let sql = format!("SELECT {EVENT_COLS} FROM events{conditions} ORDER BY id {order} LIMIT {p}");
        c.query(&sql).fetch_all(&self.pool).await?.iter().map(event).collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    async fn changed_elsewhere(&self) -> Result<bool> {
        let mut listener = self.listener.lock().await;
        match &*listener {
            Some((flag, _)) => Ok(flag.swap(false, Ordering::AcqRel)),
            None => {
                // The first call starts listening; what happened before it is unknown, so it
                // answers "changed".
                let mut l = PgListener::connect_with(&self.pool).await?;
                l.listen(CHANGES).await?;
                let flag = Arc::new(AtomicBool::new(false));
                let set = Arc::clone(&flag);
                let me = self.me.clone();
                let task = tokio::spawn(async move {
                    loop {
                        match l.try_recv().await {
                            Ok(Some(n)) if n.payload() == me => {}
                            // Another handle's change, or a lost connection (notices may be
                            // lost with it; the listener reconnects on the next call).
                            Ok(_) => set.store(true, Ordering::Release),
                            Err(_) => {
                                set.store(true, Ordering::Release);
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                });
                *listener = Some((flag, task.abort_handle()));
                Ok(true)
            }
        }
    }

    async fn schedulers(&self) -> Result<Vec<SchedulerRow>> {
        let rows: Vec<(String, i64, DateTime<Utc>, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT s.host, s.pid, s.started_at, s.renewed_at, \
             (SELECT count(*) FROM tries t WHERE t.state = 'running' AND t.owner = s.id) \
             FROM schedulers s WHERE s.lease_until > now() AND s.stopped_at IS NULL ORDER BY s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let here = crate::lock::hostname();
        Ok(rows
            .into_iter()
            .filter_map(|(host, pid, since, renewed, held)| {
                let pid = u32::try_from(pid).ok()?;
                // A scheduler of this host whose process is gone is dead, lease or not.
                (host != here || crate::lock::pid_alive(pid)).then_some(SchedulerRow {
                    host,
                    pid,
                    since,
                    renewed_at: Some(renewed),
                    tries_held: u64::try_from(held).unwrap_or(0),
                })
            })
            .collect())
    }

    async fn check_writable(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let read_only: String = sqlx::query_scalar("SHOW transaction_read_only").fetch_one(&mut *tx).await?;
        if read_only == "on" {
            return Err(StoreError::Conflict("the database is read-only (a standby server?)".into()));
        }
        sqlx::query(&format!("SET LOCAL lock_timeout = '{PROBE_LOCK_TIMEOUT}'")).execute(&mut *tx).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
            .bind(EVENTS_LOCK)
            .execute(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(())
    }

    async fn claim_scheduler(&self, lease: Duration) -> Result<Claim> {
        let _one = self.claiming.lock().await;
        if let Some((id, lease)) = self.claim.get() {
            return Ok(Claim::Leased { id: *id, lease: *lease });
        }
        let host = crate::lock::hostname();
        let mut tx = self.pool.begin().await?;
        // Schedulers of this host whose process is gone died without a clean stop: their
        // leases end now, so that a restart takes their tries over at once.
        let here: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, pid FROM schedulers WHERE host = $1 AND lease_until > now() FOR UPDATE")
                .bind(&host)
                .fetch_all(&mut *tx)
                .await?;
        let dead: Vec<i64> = here
            .into_iter()
            .filter(|(_, pid)| u32::try_from(*pid).map_or(true, |pid| !crate::lock::pid_alive(pid)))
            .map(|(id, _)| id)
            .collect();
        if !dead.is_empty() {
            sqlx::query("UPDATE schedulers SET lease_until = now() WHERE id = ANY($1)")
                .bind(&dead)
                .execute(&mut *tx)
                .await?;
        }
        // Rows of schedulers long dead that hold nothing any more.
        sqlx::query(
            "DELETE FROM schedulers s WHERE s.lease_until < now() - interval '7 days' \
             AND NOT EXISTS (SELECT 1 FROM tries t WHERE t.state = 'running' AND t.owner = s.id)",
        )
        .execute(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO schedulers (host, pid, started_at, renewed_at, lease_until) \
             VALUES ($1, $2, now(), now(), now() + $3 * interval '1 millisecond') RETURNING id",
        )
        .bind(&host)
        .bind(i64::from(std::process::id()))
        .bind(millis(lease))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let _ = self.claim.set((id, lease));
        Ok(Claim::Leased { id, lease })
    }

    async fn renew_lease(&self) -> Result<bool> {
        let Some((id, lease)) = self.claim.get() else { return Ok(true) };
        // Only a lease still running is renewed: once it has run out, others may have taken
        // the tries over, whether or not they did yet.
        let renewed = sqlx::query(
            "UPDATE schedulers SET renewed_at = now(), lease_until = now() + $2 * interval '1 millisecond' \
             WHERE id = $1 AND lease_until > now() AND stopped_at IS NULL",
        )
        .bind(id)
        .bind(millis(*lease))
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn release_claim(&self) -> Result<()> {
        let Some((id, _)) = self.claim.get() else { return Ok(()) };
        sqlx::query("UPDATE schedulers SET lease_until = now(), stopped_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_over_tries(&self) -> Result<Vec<(Run, Try)>> {
        // One statement (a scheduler asks every second): tries another scheduler is taking
        // over right now are skipped, not waited for; the token moves on with the owner.
        let sql = format!(
            "WITH x AS ( \
               SELECT o.run, o.task_id, o.try_number FROM tries o JOIN runs r ON r.id = o.run \
               WHERE o.state = 'running' AND r.kind <> 'test' AND ($1::bigint IS NULL OR o.owner IS DISTINCT FROM $1) \
               AND (o.owner IS NULL OR NOT EXISTS (SELECT 1 FROM schedulers s WHERE s.id = o.owner \
                    AND s.lease_until > now() AND s.stopped_at IS NULL)) \
               ORDER BY o.run, o.task_id, o.try_number FOR UPDATE OF o SKIP LOCKED), \
             t AS (UPDATE tries u SET owner = $1, token = u.token + 1 FROM x \
               WHERE u.run = x.run AND u.task_id = x.task_id AND u.try_number = x.try_number RETURNING u.*) \
             SELECT {RUN_COLS}, {TRY_COLS}, t.token FROM t JOIN runs r ON r.id = t.run ORDER BY t.started_at, t.seq"
        );
        let rows = sqlx::query(&sql).bind(self.owner()).fetch_all(&self.pool).await?;
        let mut taken = Vec::with_capacity(rows.len());
        let mut held = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for row in &rows {
            let (run, t) = (run_at(row, 0)?, try_at(row, RUN_NCOLS)?);
            let token: i64 = row.try_get(RUN_NCOLS + 8)?;
            held.insert((run.id, t.task_id.clone(), t.try_number), token);
            taken.push((run, t));
        }
        Ok(taken)
    }

    async fn start_run(&self, run: i64, max_active: usize, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let dag_id: Option<String> =
            sqlx::query_scalar("SELECT dag_id FROM runs WHERE id = $1").bind(run).fetch_optional(&mut *tx).await?;
        let dag_id = dag_id.ok_or_else(|| run_not_found(run))?;
        // The DAG's row is the lock every scheduler starting one of its runs takes first (before
        // any `runs` row): the count below cannot change until this transaction ends.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || '/' || $2))")
            .bind(RUNS_LOCK)
            .bind(&dag_id)
            .execute(&mut *tx)
            .await?;
        let (names, was) = lock_run(&mut tx, run).await?;
        if was != RunState::Queued {
            tx.rollback().await?;
            return Ok(false);
        }
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM runs WHERE dag_id = $1 AND state = 'running' AND kind <> 'test'")
                .bind(&dag_id)
                .fetch_one(&mut *tx)
                .await?;
        if usize::try_from(running).unwrap_or(usize::MAX) >= max_active {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE runs SET started_at = $2, first_started_at = COALESCE(first_started_at, $2), state = 'running', \
             ended_at = NULL WHERE id = $1",
        )
        .bind(run)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        self.commit(tx, vec![Pending::of_run(at, &names, None, EventKind::RunStarted)]).await?;
        Ok(true)
    }

    // --- Alerts ---

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT event_id FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_cursor(&self, name: &str, event_id: i64) -> Result<()> {
        move_cursor(&self.pool, name, event_id).await
    }

    async fn enqueue_alerts(
        &self,
        cursor: &str,
        up_to: i64,
        alerts: &[NewAlert],
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(alerts.len());
        for a in alerts {
            // An existing (channel, incident) returns no row: skipped.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO alerts (channel, incident, rule, dag_id, run_id, task_id, event_id, message, state, \
                 attempts, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json, 'pending', 0, \
                 $9, $10) ON CONFLICT (channel, incident) DO NOTHING RETURNING id",
            )
            .bind(&a.channel)
            .bind(&a.incident)
            .bind(&a.rule)
            .bind(&a.dag_id)
            .bind(a.run_id.as_deref())
            .bind(a.task_id.as_deref())
            .bind(a.event_id)
            .bind(json_text(&a.message))
            .bind(at)
            .bind(a.due_at)
            .fetch_optional(&mut *tx)
            .await?;
            ids.extend(id);
        }
        move_cursor(&mut *tx, cursor, up_to).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn due_alerts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<AlertRow>> {
        let sql = format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE state = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        );
        sqlx::query(&sql).bind(now).bind(i64::from(limit)).fetch_all(&self.pool).await?.iter().map(alert_row).collect()
    }

    async fn next_alert_due(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar("SELECT min(next_attempt_at) FROM alerts WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn record_attempts(&self, at: DateTime<Utc>, attempts: &[(i64, Attempt)]) -> Result<Vec<Result<AlertRow>>> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        // The alerts' rows in id order first (the lock order), then each attempt in order.
        let mut ids: Vec<i64> = attempts.iter().map(|(a, _)| *a).collect();
        ids.sort_unstable();
        sqlx::query("SELECT id FROM alerts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let mut events = Vec::with_capacity(attempts.len());
        let mut answers = Vec::with_capacity(attempts.len());
        for (alert, attempt) in attempts {
            match record_attempt_in(&mut tx, *alert, at, attempt, &mut events).await {
                Ok(row) => answers.push(Ok(row)),
                Err(e @ (StoreError::Conflict(_) | StoreError::NotFound(_))) => answers.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        self.commit(tx, events).await?;
        Ok(answers)
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<AlertRow>> {
        let mut c = Clauses::default();
        if let Some(dag_id) = &query.dag_id {
            c.push("dag_id = {}", vec![Arg::Text(dag_id.clone())]);
        }
        if !query.states.is_empty() {
            c.push("state = ANY({})", vec![Arg::Texts(query.states.iter().map(|s| s.name().to_string()).collect())]);
        }
        let conditions = c.where_clause();
        let limit = match query.limit {
            Some(n) => format!(" LIMIT {}", c.arg(Arg::Int(i64::from(n)))),
            None => String::new(),
        };
        let sql = format!("SELECT {ALERT_COLS} FROM alerts{conditions} ORDER BY id DESC{limit}");
        c.query(&sql).fetch_all(&self.pool).await?.iter().map(alert_row).collect()
    }

    async fn alert(&self, id: i64) -> Result<Option<AlertRow>> {
        let sql = format!("SELECT {ALERT_COLS} FROM alerts WHERE id = $1");
        sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.as_ref().map(alert_row).transpose()
    }

    async fn alert_attempts(&self, alert: i64) -> Result<Vec<AttemptRow>> {
        let sql = format!("SELECT {ATTEMPT_COLS} FROM alert_attempts WHERE alert = $1 ORDER BY number");
        sqlx::query(&sql).bind(alert).fetch_all(&self.pool).await?.iter().map(attempt_row).collect()
    }

    // --- API tokens ---

    async fn create_token(&self, new: &NewToken, at: DateTime<Utc>) -> Result<TokenRow> {
        let mut tx = self.pool.begin().await?;
        let live: Option<i64> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE name = $1 AND revoked_at IS NULL")
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await?;
        let name_taken =
            || StoreError::Conflict(format!("a token named `{}` already exists; revoke it first", new.name));
        if live.is_some() {
            return Err(name_taken());
        }
        let same_hash: Option<i64> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE hash = $1")
            .bind(&new.hash)
            .fetch_optional(&mut *tx)
            .await?;
        let hash_taken =
            || StoreError::Conflict(format!("another token has the hash of token `{}`; make a new secret", new.name));
        if same_hash.is_some() {
            return Err(hash_taken());
        }
        let sql = format!(
            "INSERT INTO api_tokens (name, role, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {TOKEN_COLS}"
        );
        // A racing creator can still win between the checks and the insert: the indexes refuse
        // this one then, and the answer is the same.
        let row = match sqlx::query(&sql)
            .bind(&new.name)
            .bind(&new.role)
            .bind(&new.hash)
            .bind(at)
            .bind(new.expires_at)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => {
                let on_hash = e.as_database_error().and_then(|d| d.constraint()).is_some_and(|c| c.contains("hash"));
                return Err(if on_hash { hash_taken() } else { name_taken() });
            }
            Err(e) => return Err(e.into()),
        };
        let token = token_row(&row)?;
        let kind = EventKind::TokenCreated { name: token.name.clone(), role: token.role.clone() };
        self.commit(tx, vec![Pending::of_store(at, kind)]).await?;
        Ok(token)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let sql = format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id");
        sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(token_row).collect()
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        let sql = format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE hash = $1");
        sqlx::query(&sql).bind(hash).fetch_optional(&self.pool).await?.as_ref().map(token_row).transpose()
    }

    async fn revoke_token(&self, name: &str, at: DateTime<Utc>) -> Result<Option<TokenRow>> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING {TOKEN_COLS}"
        );
        let row = sqlx::query(&sql).bind(at).bind(name).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = token_row(&row)?;
        let kind = EventKind::TokenRevoked { name: token.name.clone() };
        self.commit(tx, vec![Pending::of_store(at, kind)]).await?;
        Ok(Some(token))
    }

    async fn touch_token(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("API token {id}")));
        }
        Ok(())
    }

    async fn has_live_tokens(&self, now: DateTime<Utc>) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1))",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::plain_identifier;

    #[test]
    fn only_plain_schema_names_are_spliced_into_sql() {
        for ok in ["sluice_bench_12_0", "_x", "a1"] {
            assert_eq!(plain_identifier(ok).ok(), Some(ok));
        }
        let long = "a".repeat(64);
        for bad in ["", "1abc", "Upper", "a;DROP TABLE runs", "a b", "a\"b", "a-b", long.as_str()] {
            assert!(plain_identifier(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
