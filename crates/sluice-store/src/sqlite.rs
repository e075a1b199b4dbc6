//! The SQLite backend: one file, WAL mode, created and migrated on open.
//!
//! # Connections, transactions and locking
//!
//! A [`SqliteStore`] holds two things:
//!
//! - a pool of connections that only ever **read**;
//! - one dedicated connection (behind a `tokio::sync::Mutex`) through which **every write** of
//!   this handle goes.
//!
//! Every multi-statement write is a transaction opened with `BEGIN IMMEDIATE` (sqlx's
//! `Connection::begin_with`), which takes SQLite's write lock up front. A deferred `BEGIN`
//! would start as a reader and upgrade to a writer at its first write; if another process (the
//! daemon and the CLI share the file) committed in between, that upgrade fails at once with
//! `SQLITE_BUSY` and the busy timeout cannot help. With `BEGIN IMMEDIATE` a writer waits (up to
//! the 10 s busy timeout) for the lock *before* it has read anything, so it never works on a
//! stale snapshot. `begin_with` gives a `Transaction` guard: an error (`?`) or a cancelled
//! future drops it, and sqlx rolls the transaction back before the connection is used again.
//! Single-statement writes run in autocommit mode on the same connection: a write statement
//! takes the write lock when it starts, so it behaves like a one-statement `BEGIN IMMEDIATE`.
//!
//! One writer connection per handle (rather than writing through the pool) costs nothing, as
//! SQLite admits one writer at a time anyway, and it lets [`Store::changed_elsewhere`] be exact:
//! `PRAGMA data_version` on a connection changes when *another* connection commits, so asking
//! it on the writer connection reports other processes' (and other handles') commits and never
//! this handle's own writes. Readers never block writers nor each other in WAL mode.
//!
//! Migrations run on every open, on the writer connection, inside one `BEGIN IMMEDIATE`
//! transaction (sqlx turns each migration's own transaction into a savepoint), so two
//! processes opening a fresh file at once do not both try to create the tables.
//!
//! # Events
//!
//! Each writing method inserts the events of its change in its own transaction (multi-row
//! `INSERT`s, like the batches they describe), then, after the commit and still holding the
//! writer, publishes them on the handle's broadcast channel: subscribers see exactly the
//! committed events of this handle, in id order. With no receiver nothing is built for them.
//! Ids are the AUTOINCREMENT rowid: SQLite's single writer hands them out in commit order, and
//! the rows of one `INSERT` get consecutive ids.
//!
//! # Encoding
//!
//! Times are TEXT in UTC, fixed width with microseconds (`2026-03-01T05:00:00.000000Z`), so
//! they sort and compare as text; sub-microsecond precision is dropped. States are their
//! snake_case names; `conf`, `external_ids`, output values and alert messages are JSON text.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Executor, Row, Transaction};
use tokio::sync::{broadcast, Mutex};

use crate::backend::{
    self, json_text, parse_json_map, parse_run_state, parse_task_state, run_not_found, task_not_found, try_finished,
    try_not_found, try_number, Pending, RunNames, ALERT_COLS, ATTEMPT_COLS, BROADCAST_CAPACITY, EVENT_COLS, RUN_COLS,
    RUN_NCOLS, TI_COLS, TOKEN_COLS, TRY_COLS,
};
use crate::{
    AlertQuery, AlertRow, AlertState, Attempt, AttemptResult, AttemptRow, Created, DagRow, DagSync, DbUrl, Event,
    EventKind, EventQuery, Finish, FinishTry, GridCell, NewAlert, NewEvent, NewRun, NewToken, Order, Result, Run,
    RunFilter, RunKind, RunState, SchedulerRow, Start, Store, StoreError, TaskInstance, TaskState, TokenRow, Try,
    TryOutcome,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Store::check_writable`] waits for another process's write lock.
const PROBE_BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Read connections per handle.
const READERS: u32 = 4;

/// The SQLite [`Store`]. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct SqliteStore {
    /// Reads only.
    readers: SqlitePool,
    /// Every write, and `data_version` for [`Store::changed_elsewhere`]. Shared with the task
    /// that runs [`Store::check_writable`]'s probe, so the probe ends (and restores the busy
    /// timeout) even when its caller stops waiting.
    writer: Arc<Mutex<Writer>>,
    /// This handle's committed events, for [`Store::subscribe`].
    events: broadcast::Sender<Arc<Event>>,
    /// The URL it was opened with (its lock file names the scheduler).
    url: String,
}

struct Writer {
    conn: SqliteConnection,
    /// `PRAGMA data_version` as of the last `changed_elsewhere` (or the open).
    data_version: i64,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("readers", &self.readers).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the database at `url`: `sqlite:PATH`,
    /// `sqlite://PATH`, a bare file path, or `sqlite::memory:` (private to this handle). Any
    /// other scheme is [`StoreError::UnsupportedUrl`].
    pub async fn open(url: &str) -> Result<SqliteStore> {
        // Several processes opening a new file at the same moment (the daemon and the CLI)
        // contend for switching it to WAL and for migrating it; SQLite answers some of those
        // attempts "database is locked" without waiting. Such an open is simply tried again.
        let mut attempt = 0u32;
        loop {
            match Self::open_once(url).await {
                Err(e) if attempt < OPEN_ATTEMPTS && is_locked(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(url: &str) -> Result<SqliteStore> {
        let (options, memory) = connect_options(url)?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode, NORMAL loses nothing on a process crash (only, possibly, the last
            // commits on a power loss), and saves an fsync per commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        let mut conn = options.connect().await?;
        {
            let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await?;
            MIGRATOR.run_direct(&mut *tx).await?;
            tx.commit().await?;
        }
        let data_version = data_version(&mut conn).await?;

        // An in-memory database lives as long as one connection to it is open: the writer
        // connection stays open for the life of the handle, so the pool may come and go.
        let readers =
            SqlitePoolOptions::new().max_connections(if memory { 1 } else { READERS }).connect_with(options).await?;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Ok(SqliteStore {
            readers,
            writer: Arc::new(Mutex::new(Writer { conn, data_version })),
            events,
            url: url.to_string(),
        })
    }

    /// Inserts `events` into `tx`, commits it, then publishes the events with their ids. Called
    /// with the writer held, so publications keep commit order.
    async fn commit(&self, mut tx: Transaction<'_, Sqlite>, events: Vec<Pending>) -> Result<()> {
        let ids = insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        self.publish(events, ids);
        Ok(())
    }

    /// Sends committed events to the subscribers, if there are any.
    fn publish(&self, events: Vec<Pending>, ids: Vec<i64>) {
        backend::publish(&self.events, events, ids);
    }

    /// The pool of read connections (for copying the database elsewhere).
    #[cfg(feature = "postgres")]
    pub(crate) fn read_pool(&self) -> &SqlitePool {
        &self.readers
    }

    /// Closes every connection (checkpointing the WAL when this was the last one open).
    pub async fn close(self) -> Result<()> {
        self.readers.close().await;
        // Wait for a writability probe still running; its task then lets the writer go.
        drop(self.writer.lock().await);
        // Else a probe whose caller gave up before it started holds it: the connection then
        // closes when that probe drops it.
        if let Ok(writer) = Arc::try_unwrap(self.writer) {
            writer.into_inner().conn.close().await?;
        }
        Ok(())
    }
}

/// How often [`SqliteStore::open`] tries again when the new file is locked (about 5 s in all).
const OPEN_ATTEMPTS: u32 = 20;

/// "database is locked" (SQLITE_BUSY or SQLITE_LOCKED, however the error arrived).
fn is_locked(e: &StoreError) -> bool {
    let text = e.to_string();
    text.contains("database is locked") || text.contains("database table is locked") || text.contains("(code: 5)")
}

/// The connection options of a SQLite URL, and whether the database is in memory.
fn connect_options(url: &str) -> Result<(SqliteConnectOptions, bool)> {
    match DbUrl::parse(url)? {
        DbUrl::Sqlite { path } => Ok((SqliteConnectOptions::new().filename(path), false)),
        DbUrl::SqliteMemory => Ok((SqliteConnectOptions::from_str("sqlite::memory:")?, true)),
        DbUrl::Postgres(_) => Err(StoreError::UnsupportedUrl(url.to_string())),
    }
}

async fn data_version(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("PRAGMA data_version").fetch_one(conn).await?)
}

// --- Encoding ---

/// A time as stored: `2026-03-01T05:00:00.000000Z`, fixed width, so text order is time order.
/// Written by hand rather than through a `strftime` pattern, which chrono parses again on
/// every call: a busy batch formats one per row and event.
fn ts(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    if !(0..=9999).contains(&t.year()) {
        return t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    }
    let mut s = String::with_capacity(27);
    // A leap second's nanoseconds run past one second; the text keeps its fixed width.
    let micros = (t.nanosecond() / 1000).min(999_999);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    s
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad time `{s}`: {e}")))
}

// --- Decoding rows (by position) ---

fn text(row: &SqliteRow, i: usize) -> Result<String> {
    Ok(row.try_get::<String, _>(i)?)
}

fn opt_text(row: &SqliteRow, i: usize) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(i)?)
}

fn time(row: &SqliteRow, i: usize) -> Result<DateTime<Utc>> {
    parse_ts(&text(row, i)?)
}

fn opt_time(row: &SqliteRow, i: usize) -> Result<Option<DateTime<Utc>>> {
    opt_text(row, i)?.as_deref().map(parse_ts).transpose()
}

fn count(row: &SqliteRow, i: usize) -> Result<u32> {
    to_count(row.try_get(i)?)
}

fn to_count(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n} out of range")))
}

fn flag(row: &SqliteRow, i: usize) -> Result<bool> {
    Ok(row.try_get::<i64, _>(i)? != 0)
}

/// A run from [`RUN_COLS`] starting at column `at`.
fn run_at(row: &SqliteRow, at: usize) -> Result<Run> {
    let kind = text(row, at + 3)?;
    Ok(Run {
        id: row.try_get(at)?,
        dag_id: text(row, at + 1)?,
        run_id: text(row, at + 2)?,
        kind: RunKind::from_name(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown run kind `{kind}`")))?,
        logical_date: time(row, at + 4)?,
        data_interval_start: time(row, at + 5)?,
        data_interval_end: time(row, at + 6)?,
        state: parse_run_state(&text(row, at + 7)?)?,
        conf: opt_text(row, at + 8)?.map(|s| parse_json_map(&s, "run conf")).transpose()?,
        created_at: time(row, at + 9)?,
        started_at: opt_time(row, at + 10)?,
        ended_at: opt_time(row, at + 11)?,
        deadline: opt_time(row, at + 12)?,
        deadline_missed: flag(row, at + 13)?,
        first_started_at: opt_time(row, at + 14)?,
        idempotency_key: opt_text(row, at + 15)?,
    })
}

/// A try from [`TRY_COLS`] starting at column `at`.
fn try_at(row: &SqliteRow, at: usize) -> Result<Try> {
    Ok(Try {
        run: row.try_get(at)?,
        task_id: text(row, at + 1)?,
        try_number: count(row, at + 2)?,
        state: parse_task_state(&text(row, at + 3)?)?,
        started_at: time(row, at + 4)?,
        ended_at: opt_time(row, at + 5)?,
        error: opt_text(row, at + 6)?,
        external_ids: parse_json_map(&text(row, at + 7)?, "try external ids")?,
    })
}

fn event(row: &SqliteRow) -> Result<Event> {
    let data = text(row, 6)?;
    // A kind this version does not know (written by a newer one) is shown, not refused.
    let kind = serde_json::from_str(&data)
        .unwrap_or_else(|_| EventKind::Legacy { kind: text(row, 5).unwrap_or_default(), detail: data });
    Ok(Event {
        id: row.try_get(0)?,
        at: time(row, 1)?,
        dag_id: opt_text(row, 2)?,
        run_id: opt_text(row, 3)?,
        task_id: opt_text(row, 4)?,
        kind,
    })
}

/// A token from [`TOKEN_COLS`].
fn token_row(row: &SqliteRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: row.try_get(0)?,
        name: text(row, 1)?,
        role: text(row, 2)?,
        created_at: time(row, 3)?,
        expires_at: opt_time(row, 4)?,
        revoked_at: opt_time(row, 5)?,
        last_used_at: opt_time(row, 6)?,
    })
}

/// An alert from [`ALERT_COLS`].
fn alert_row(row: &SqliteRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: row.try_get(0)?,
        channel: text(row, 1)?,
        incident: text(row, 2)?,
        rule: text(row, 3)?,
        dag_id: text(row, 4)?,
        run_id: opt_text(row, 5)?,
        task_id: opt_text(row, 6)?,
        event_id: row.try_get(7)?,
        message: parse_json_map(&text(row, 8)?, "alert message")?,
        state: AlertState::from_str(&text(row, 9)?).map_err(StoreError::Corrupt)?,
        attempts: count(row, 10)?,
        created_at: time(row, 11)?,
        next_attempt_at: opt_time(row, 12)?,
        delivered_at: opt_time(row, 13)?,
        last_error: opt_text(row, 14)?,
    })
}

/// An attempt from [`ATTEMPT_COLS`].
fn attempt_row(row: &SqliteRow) -> Result<AttemptRow> {
    Ok(AttemptRow {
        alert: row.try_get(0)?,
        number: count(row, 1)?,
        at: time(row, 2)?,
        ok: flag(row, 3)?,
        text: text(row, 4)?,
    })
}

fn dag_row(row: &SqliteRow) -> Result<DagRow> {
    Ok(DagRow {
        dag_id: text(row, 0)?,
        file: opt_text(row, 1)?,
        paused: flag(row, 2)?,
        parse_error: opt_text(row, 3)?,
        updated_at: time(row, 4)?,
        schedule_error: opt_text(row, 5)?,
    })
}

// --- Queries shared by several methods ---

/// A value bound to a statement whose text is built at run time.
enum Arg {
    Text(String),
    Int(i64),
}

/// Binds `args`, in order.
fn bind_args<'q>(
    mut query: Query<'q, Sqlite, SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Text(s) => query.bind(s),
            Arg::Int(n) => query.bind(n),
        };
    }
    query
}

/// The `WHERE` clause (empty when nothing is asked) of a run filter on `runs r`, with its
/// arguments; with `cursor`, its `after` too. Each condition is its own clause, never
/// `? IS NULL OR ...`, so that SQLite picks an index from what is asked.
fn run_conditions(filter: &RunFilter, cursor: bool) -> (String, Vec<Arg>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut args = Vec::new();
    if let Some(dag_id) = &filter.dag_id {
        clauses.push("r.dag_id = ?".into());
        args.push(Arg::Text(dag_id.clone()));
    }
    if !filter.states.is_empty() {
        clauses.push(format!("r.state IN ({})", placeholders(filter.states.len())));
        args.extend(filter.states.iter().map(|s| Arg::Text(s.name().into())));
    }
    if !filter.kinds.is_empty() {
        clauses.push(format!("r.kind IN ({})", placeholders(filter.kinds.len())));
        args.extend(filter.kinds.iter().map(|k| Arg::Text(k.name().into())));
    }
    if let Some(from) = filter.logical_from {
        clauses.push("r.logical_date >= ?".into());
        args.push(Arg::Text(ts(from)));
    }
    if let Some(to) = filter.logical_to {
        clauses.push("r.logical_date <= ?".into());
        args.push(Arg::Text(ts(to)));
    }
    if let (true, Some(after)) = (cursor, &filter.after) {
        // Strictly after in (logical_date DESC, id DESC). The first term alone is a range of
        // the date indexes; the second finishes the comparison on the boundary date.
        clauses.push("r.logical_date <= ? AND (r.logical_date < ? OR r.id < ?)".into());
        let date = ts(after.logical_date);
        args.extend([Arg::Text(date.clone()), Arg::Text(date), Arg::Int(after.id)]);
    }
    if clauses.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", clauses.join(" AND ")), args)
    }
}

async fn fetch_run<'c, E: Executor<'c, Database = Sqlite>>(e: E, id: i64) -> Result<Option<Run>> {
    let sql = format!("SELECT {RUN_COLS} FROM runs r WHERE r.id = ?");
    sqlx::query(&sql).bind(id).fetch_optional(e).await?.map(|row| run_at(&row, 0)).transpose()
}

/// The [`RunNames`] of a run and its state, or `NotFound`.
async fn run_names_and_state(conn: &mut SqliteConnection, run: i64) -> Result<(RunNames, RunState)> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT dag_id, run_id, state FROM runs WHERE id = ?").bind(run).fetch_optional(conn).await?;
    let (dag_id, run_id, state) = row.ok_or_else(|| run_not_found(run))?;
    Ok(((dag_id, run_id, run), parse_run_state(&state)?))
}

/// The [`RunNames`] of a run, or `NotFound`.
async fn run_names(conn: &mut SqliteConnection, run: i64) -> Result<RunNames> {
    sqlx::query_as("SELECT dag_id, run_id, id FROM runs WHERE id = ?")
        .bind(run)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| run_not_found(run))
}

/// Rows per multi-row `INSERT INTO events` (seven bound values each).
const EVENT_CHUNK: usize = 128;

/// Writes `events` in a few multi-row statements; returns their ids, in order (the rows of one
/// `INSERT` get consecutive AUTOINCREMENT ids, the last one reported by SQLite).
async fn insert_events(conn: &mut SqliteConnection, events: &[Pending]) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(events.len());
    for piece in events.chunks(EVENT_CHUNK).flat_map(pow2_pieces) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; piece.len()].join(", ");
        let sql = format!("INSERT INTO events (at, dag_id, run_id, run, task_id, kind, data) VALUES {values}");
        let mut query = sqlx::query(&sql);
        for e in piece {
            let data = serde_json::to_string(&e.kind)
                .map_err(|err| StoreError::Corrupt(format!("event {} not encodable: {err}", e.kind.name())))?;
            query = query
                .bind(ts(e.at))
                .bind(e.dag_id.as_deref())
                .bind(e.run_id.as_deref())
                .bind(e.run)
                .bind(e.task_id.as_deref())
                .bind(e.kind.name())
                .bind(data);
        }
        let last = query.execute(&mut *conn).await?.last_insert_rowid();
        let first = last - piece.len() as i64 + 1;
        ids.extend(first..=last);
    }
    Ok(ids)
}

/// The (dag id, run id) of each run in `runs`, or `NotFound`.
async fn names_of(conn: &mut SqliteConnection, runs: Vec<i64>) -> Result<HashMap<i64, RunNames>> {
    let mut names = HashMap::new();
    for run in runs {
        if let std::collections::hash_map::Entry::Vacant(e) = names.entry(run) {
            e.insert(run_names(&mut *conn, run).await?);
        }
    }
    Ok(names)
}

/// Ids per `IN (...)` list: far below SQLite's limit of bound parameters; a power of two
/// (see [`padded`]).
const IN_CHUNK: usize = 256;

/// A bound list padded to a power of two by repeating its last item, which changes nothing in
/// an `IN (...)` list: a handful of statement texts then serve every batch size, and the
/// connection's cache of prepared statements is not churned by one text per size.
fn padded<T: Copy>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    if let Some(last) = items.last() {
        v.resize(items.len().next_power_of_two(), *last);
    }
    v
}

/// Rows split into pieces of power-of-two sizes, largest first: a multi-row `INSERT` cannot be
/// padded, so it is split instead (see [`padded`]).
fn pow2_pieces<T>(rows: &[T]) -> Vec<&[T]> {
    let mut pieces = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = 1usize << (usize::BITS - 1 - rest.len().leading_zeros());
        let (piece, tail) = rest.split_at(size);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// `?, ?, ?` (n of them).
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The first of `ids` that has no task instance in `run`.
async fn first_missing_task(tx: &mut SqliteConnection, run: i64, ids: &[&str]) -> Result<String> {
    for id in ids {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM task_instances WHERE run = ? AND task_id = ?")
            .bind(run)
            .bind(*id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(id.to_string());
        }
    }
    Ok(ids.first().map_or_else(String::new, |s| s.to_string()))
}

/// The rows of a `json_group_array(json_array(...))` result.
fn json_rows<T: serde::de::DeserializeOwned>(json: &str) -> Result<Vec<T>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("unreadable rows: {e}")))
}

/// The states the guarded start accepts.
const STARTABLE: &str = "('scheduled', 'queued')";

/// [`Store::finish_tries`] for successful tries of one run ended at `at` (`chunk` indexes
/// `tries`): the same rows, rules and events as [`finish_try_in`], in a few statements.
async fn finish_successes_in(
    tx: &mut SqliteConnection,
    names: &RunNames,
    at: DateTime<Utc>,
    tries: &[FinishTry],
    chunk: &[usize],
    done: &mut [Option<Finish>],
    events: &mut Vec<Pending>,
) -> Result<()> {
    let run = tries[chunk[0]].run;
    let at_text = ts(at);
    let bound = padded(chunk);
    // One read of each task instance with the state of the try that ends (the transaction
    // holds the write lock: nobody changes them before the writes below).
    let pairs = vec!["(?, ?)"; bound.len()].join(", ");
    // In one row, as in `start_distinct_in`.
    let sql = format!(
        "SELECT json_group_array(json_array(ti.task_id, ti.state, ti.try_number, t.state)) FROM (VALUES {pairs}) v \
         JOIN task_instances ti ON ti.run = ? AND ti.task_id = v.column1 \
         LEFT JOIN tries t ON t.run = ti.run AND t.task_id = ti.task_id AND t.try_number = v.column2"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for k in &bound {
        query = query.bind(&tries[*k].task_id).bind(i64::from(tries[*k].try_number));
    }
    let json = query.bind(run).fetch_one(&mut *tx).await?;
    let current: HashMap<String, (String, i64, Option<String>)> =
        json_rows::<(String, String, i64, Option<String>)>(&json)?
            .into_iter()
            .map(|(t, s, n, st)| (t, (s, n, st)))
            .collect();
    let mut ended: Vec<usize> = Vec::with_capacity(chunk.len());
    let mut follow: Vec<usize> = Vec::with_capacity(chunk.len());
    for k in chunk {
        let t = &tries[*k];
        let (state, number, try_state) = current.get(&t.task_id).ok_or_else(|| task_not_found(run, &t.task_id))?;
        let state = parse_task_state(state)?;
        match try_state.as_deref() {
            None => return Err(try_not_found(run, &t.task_id, t.try_number)),
            // Only a running try ends.
            Some(s) if s != "running" => done[*k] = Some(Finish::NotRunning(state)),
            Some(_) => {
                ended.push(*k);
                if state == TaskState::Running && *number == i64::from(t.try_number) {
                    // The task instance follows only while this try is its current, running one.
                    follow.push(*k);
                } else {
                    done[*k] = Some(Finish::TaskChanged(state));
                    events.push(try_finished(at, names, t, state));
                }
            }
        }
    }
    if !ended.is_empty() {
        let bound = padded(&ended);
        let pairs = vec!["(?, ?)"; bound.len()].join(", ");
        let sql = format!(
            "UPDATE tries SET state = 'success', ended_at = ?, error = NULL \
             WHERE run = ? AND state = 'running' AND (task_id, try_number) IN (VALUES {pairs})"
        );
        let mut query = sqlx::query(&sql).bind(&at_text).bind(run);
        for k in &bound {
            query = query.bind(&tries[*k].task_id).bind(i64::from(tries[*k].try_number));
        }
        query.execute(&mut *tx).await?;
    }
    if follow.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE task_instances SET state = 'success', ended_at = ?, next_try_at = NULL \
         WHERE run = ? AND task_id IN ({})",
        placeholders(follow.len().next_power_of_two())
    );
    let mut query = sqlx::query(&sql).bind(&at_text).bind(run);
    for k in &padded(&follow) {
        query = query.bind(&tries[*k].task_id);
    }
    query.execute(&mut *tx).await?;
    let outputs: Vec<(&str, &String, String)> = follow
        .iter()
        .flat_map(|k| {
            let t = &tries[*k];
            match &t.outcome {
                TryOutcome::Success { outputs } => {
                    outputs.iter().map(|(key, v)| (t.task_id.as_str(), key, v.to_string())).collect::<Vec<_>>()
                }
                _ => Vec::new(),
            }
        })
        .collect();
    for rows in outputs.chunks(IN_CHUNK / 4).flat_map(pow2_pieces) {
        let values = vec!["(?, ?, ?, ?)"; rows.len()].join(", ");
        let sql = format!(
            "INSERT INTO outputs (run, task_id, key, value) VALUES {values} \
             ON CONFLICT (run, task_id, key) DO UPDATE SET value = excluded.value"
        );
        let mut query = sqlx::query(&sql);
        for (task_id, key, value) in rows {
            query = query.bind(run).bind(*task_id).bind(*key).bind(value);
        }
        query.execute(&mut *tx).await?;
    }
    for k in follow {
        done[k] = Some(Finish::Applied(TaskState::Success));
        events.push(try_finished(at, names, &tries[k], TaskState::Success));
    }
    Ok(())
}

/// `NotFound` unless the try exists.
async fn try_exists(tx: &mut SqliteConnection, run: i64, task_id: &str, try_number: u32) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tries WHERE run = ? AND task_id = ? AND try_number = ?")
        .bind(run)
        .bind(task_id)
        .bind(i64::from(try_number))
        .fetch_optional(&mut *tx)
        .await?;
    found.map(|_| ()).ok_or_else(|| try_not_found(run, task_id, try_number))
}

/// The state of a task instance, or `NotFound`.
async fn task_state(tx: &mut SqliteConnection, run: i64, task_id: &str) -> Result<TaskState> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM task_instances WHERE run = ? AND task_id = ?")
        .bind(run)
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
    parse_task_state(&state.ok_or_else(|| task_not_found(run, task_id))?)
}

/// [`Store::start_tries`] for a batch naming each task once: one guarded UPDATE and one
/// multi-row INSERT per run and chunk of tasks, not two statements per task.
async fn start_distinct_in<'a>(
    tx: &mut SqliteConnection,
    tasks: &'a [(i64, String)],
    at: DateTime<Utc>,
) -> Result<HashMap<(i64, &'a str), Start>> {
    let mut starts = HashMap::with_capacity(tasks.len());
    let mut runs: Vec<i64> = tasks.iter().map(|(r, _)| *r).collect();
    runs.sort_unstable();
    runs.dedup();
    let at_text = ts(at);
    for run in runs {
        let ids: Vec<&str> = tasks.iter().filter(|(r, _)| *r == run).map(|(_, t)| t.as_str()).collect();
        for chunk in ids.chunks(IN_CHUNK) {
            // Read first (the transaction holds the write lock: nothing changes in between),
            // all in one row: a row per task would be a message per task from SQLite's thread.
            let sql = format!(
                "SELECT json_group_array(json_array(task_id, state, try_number)) FROM task_instances \
                 WHERE run = ? AND task_id IN ({})",
                placeholders(chunk.len().next_power_of_two())
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(run);
            for id in padded(chunk) {
                query = query.bind(id);
            }
            let current: HashMap<String, (String, i64)> =
                json_rows::<(String, String, i64)>(&query.fetch_one(&mut *tx).await?)?
                    .into_iter()
                    .map(|(t, s, n)| (t, (s, n)))
                    .collect();
            let mut startable: Vec<(&str, i64)> = Vec::with_capacity(chunk.len());
            for id in chunk {
                let (state, number) = current.get(*id).ok_or_else(|| task_not_found(run, id))?;
                let state = parse_task_state(state)?;
                if matches!(state, TaskState::Scheduled | TaskState::Queued) {
                    startable.push((*id, number + 1));
                    starts.insert((run, *id), Start::Started(try_number(number + 1)?));
                } else {
                    // A lost race, a task changed meanwhile: nothing is written for it.
                    starts.insert((run, *id), Start::NotStartable(state));
                }
            }
            if startable.is_empty() {
                continue;
            }
            let sql = format!(
                "UPDATE task_instances SET state = 'running', try_number = try_number + 1, started_at = ?, \
                 ended_at = NULL, next_try_at = NULL WHERE run = ? AND state IN {STARTABLE} AND task_id IN ({})",
                placeholders(startable.len().next_power_of_two())
            );
            let mut query = sqlx::query(&sql).bind(&at_text).bind(run);
            for (id, _) in padded(&startable) {
                query = query.bind(id);
            }
            query.execute(&mut *tx).await?;
            for piece in pow2_pieces(&startable) {
                let values = vec!["(?, ?, ?, 'running', ?, '{}')"; piece.len()].join(", ");
                let sql = format!(
                    "INSERT INTO tries (run, task_id, try_number, state, started_at, external_ids) VALUES {values}"
                );
                let mut insert = sqlx::query(&sql);
                for (task_id, number) in piece {
                    insert = insert.bind(run).bind(*task_id).bind(number).bind(&at_text);
                }
                insert.execute(&mut *tx).await?;
            }
        }
    }
    Ok(starts)
}

/// [`Store::set_task_states`] inside a transaction; its events go to `events`.
async fn set_states_in(
    tx: &mut SqliteConnection,
    run: i64,
    states: &[(String, TaskState)],
    at: DateTime<Utc>,
    events: &mut Vec<Pending>,
) -> Result<()> {
    let names = run_names(&mut *tx, run).await?;
    events.extend(states.iter().map(|(task_id, state)| {
        Pending::of_run(at, &names, Some(task_id), EventKind::TaskStateChanged { state: *state })
    }));
    let distinct: std::collections::HashSet<&str> = states.iter().map(|(t, _)| t.as_str()).collect();
    if distinct.len() == states.len() {
        // Each task once: one statement per state (and per chunk of ids), not per task.
        let mut by_state: Vec<(TaskState, Vec<&str>)> = Vec::new();
        for (task_id, state) in states {
            match by_state.iter_mut().find(|(s, _)| s == state) {
                Some((_, ids)) => ids.push(task_id),
                None => by_state.push((*state, vec![task_id])),
            }
        }
        for (state, ids) in by_state {
            for chunk in ids.chunks(IN_CHUNK) {
                let set = if state.is_finished() {
                    "state = ?, ended_at = ?"
                } else if matches!(state, TaskState::None | TaskState::Scheduled | TaskState::Queued) {
                    "state = ?, ended_at = NULL"
                } else {
                    "state = ?"
                };
                let sql = format!(
                    "UPDATE task_instances SET {set} WHERE run = ? AND task_id IN ({})",
                    placeholders(chunk.len().next_power_of_two())
                );
                let mut query = sqlx::query(&sql).bind(state.name());
                if state.is_finished() {
                    query = query.bind(ts(at));
                }
                query = query.bind(run);
                for id in padded(chunk) {
                    query = query.bind(id);
                }
                let done = query.execute(&mut *tx).await?;
                if done.rows_affected() != chunk.len() as u64 {
                    let missing = first_missing_task(&mut *tx, run, chunk).await?;
                    return Err(task_not_found(run, &missing));
                }
            }
        }
        return Ok(());
    }
    for (task_id, state) in states {
        let query = if state.is_finished() {
            sqlx::query("UPDATE task_instances SET state = ?, ended_at = ? WHERE run = ? AND task_id = ?")
                .bind(state.name())
                .bind(ts(at))
        } else if matches!(state, TaskState::None | TaskState::Scheduled | TaskState::Queued) {
            sqlx::query("UPDATE task_instances SET state = ?, ended_at = NULL WHERE run = ? AND task_id = ?")
                .bind(state.name())
        } else {
            sqlx::query("UPDATE task_instances SET state = ? WHERE run = ? AND task_id = ?").bind(state.name())
        };
        let done = query.bind(run).bind(task_id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(task_not_found(run, task_id));
        }
    }
    Ok(())
}

/// [`Store::start_tries`] inside a transaction; its events go to `events`.
async fn start_tries_in(
    tx: &mut SqliteConnection,
    tasks: &[(i64, String)],
    at: DateTime<Utc>,
    events: &mut Vec<Pending>,
) -> Result<Vec<Start>> {
    let names = names_of(&mut *tx, tasks.iter().map(|(r, _)| *r).collect()).await?;
    let distinct: std::collections::HashSet<(i64, &str)> = tasks.iter().map(|(r, t)| (*r, t.as_str())).collect();
    let mut starts = Vec::with_capacity(tasks.len());
    if distinct.len() != tasks.len() {
        for (run, task_id) in tasks {
            starts.push(start_try_in(&mut *tx, *run, task_id, at).await?);
        }
    } else {
        let mut started = start_distinct_in(&mut *tx, tasks, at).await?;
        for (run, task_id) in tasks {
            starts.push(started.remove(&(*run, task_id.as_str())).ok_or_else(|| task_not_found(*run, task_id))?);
        }
    }
    events.extend(tasks.iter().zip(&starts).filter_map(|((run, task_id), start)| match start {
        Start::Started(try_number) => {
            Some(Pending::of_run(at, &names[run], Some(task_id), EventKind::TryStarted { try_number: *try_number }))
        }
        Start::NotStartable(_) | Start::NoRoom => None,
    }));
    Ok(starts)
}

/// One task of [`Store::start_tries`] inside a transaction.
async fn start_try_in(tx: &mut SqliteConnection, run: i64, task_id: &str, at: DateTime<Utc>) -> Result<Start> {
    let sql = format!(
        "UPDATE task_instances SET state = 'running', try_number = try_number + 1, started_at = ?, \
         ended_at = NULL, next_try_at = NULL WHERE run = ? AND task_id = ? AND state IN {STARTABLE} \
         RETURNING try_number"
    );
    let number: Option<i64> =
        sqlx::query_scalar(&sql).bind(ts(at)).bind(run).bind(task_id).fetch_optional(&mut *tx).await?;
    let Some(number) = number else {
        return Ok(Start::NotStartable(task_state(&mut *tx, run, task_id).await?));
    };
    sqlx::query(
        "INSERT INTO tries (run, task_id, try_number, state, started_at, external_ids) \
         VALUES (?, ?, ?, 'running', ?, '{}')",
    )
    .bind(run)
    .bind(task_id)
    .bind(number)
    .bind(ts(at))
    .execute(&mut *tx)
    .await?;
    Ok(Start::Started(try_number(number)?))
}

/// One try of [`Store::finish_tries`] inside a transaction.
async fn finish_try_in(
    tx: &mut SqliteConnection,
    names: &RunNames,
    t: &FinishTry,
    events: &mut Vec<Pending>,
) -> Result<Finish> {
    let FinishTry { run, ref task_id, try_number, ref outcome, at } = *t;
    let (try_state, error) = match outcome {
        TryOutcome::Success { .. } => (TaskState::Success, None),
        TryOutcome::Failed { error, .. } => (TaskState::Failed, Some(error.as_str())),
        TryOutcome::Skipped { reason } => (TaskState::Skipped, Some(reason.as_str())),
    };
    let done = sqlx::query(
        "UPDATE tries SET state = ?, ended_at = ?, error = ? \
         WHERE run = ? AND task_id = ? AND try_number = ? AND state = 'running'",
    )
    .bind(try_state.name())
    .bind(ts(at))
    .bind(error)
    .bind(run)
    .bind(task_id)
    .bind(i64::from(try_number))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        try_exists(&mut *tx, run, task_id, try_number).await?;
        return Ok(Finish::NotRunning(task_state(&mut *tx, run, task_id).await?));
    }

    // The task instance follows only while this try is its current, running one: a task
    // cleared or marked by hand while the try ran keeps what was decided meanwhile (and a
    // stale try leaves no outputs behind).
    let (ti_state, ti_try): (String, i64) =
        sqlx::query_as("SELECT state, try_number FROM task_instances WHERE run = ? AND task_id = ?")
            .bind(run)
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| task_not_found(run, task_id))?;
    let current = parse_task_state(&ti_state)?;
    if current != TaskState::Running || ti_try != i64::from(try_number) {
        events.push(try_finished(at, names, t, current));
        return Ok(Finish::TaskChanged(current));
    }

    let applied = match outcome {
        TryOutcome::Failed { retry_at: Some(_), .. } => TaskState::UpForRetry,
        _ => try_state,
    };
    events.push(try_finished(at, names, t, applied));
    match outcome {
        TryOutcome::Failed { retry_at: Some(retry_at), .. } => {
            sqlx::query(
                "UPDATE task_instances SET state = 'up_for_retry', next_try_at = ?, ended_at = NULL \
                 WHERE run = ? AND task_id = ?",
            )
            .bind(ts(*retry_at))
            .bind(run)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
            let kind = EventKind::RetryScheduled { try_number: try_number.saturating_add(1), at: *retry_at };
            events.push(Pending::of_run(at, names, Some(task_id), kind));
        }
        _ => {
            sqlx::query(
                "UPDATE task_instances SET state = ?, ended_at = ?, next_try_at = NULL \
                 WHERE run = ? AND task_id = ?",
            )
            .bind(try_state.name())
            .bind(ts(at))
            .bind(run)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        }
    }
    if let TryOutcome::Success { outputs } = outcome {
        for (key, value) in outputs {
            sqlx::query(
                "INSERT INTO outputs (run, task_id, key, value) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (run, task_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(run)
            .bind(task_id)
            .bind(key)
            .bind(value.to_string())
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(Finish::Applied(applied))
}

/// One attempt of [`Store::record_attempts`] inside a transaction; its event goes to `events`.
/// A refusal (`Conflict`, `NotFound`) is answered before anything is written.
async fn record_attempt_in(
    tx: &mut SqliteConnection,
    alert: i64,
    at: DateTime<Utc>,
    attempt: &Attempt,
    events: &mut Vec<Pending>,
) -> Result<AlertRow> {
    let current: Option<(String, i64)> =
        sqlx::query_as("SELECT state, attempts FROM alerts WHERE id = ?").bind(alert).fetch_optional(&mut *tx).await?;
    let (state, attempts) = current.ok_or_else(|| StoreError::NotFound(format!("alert {alert}")))?;
    let state = AlertState::from_str(&state).map_err(StoreError::Corrupt)?;
    if state != AlertState::Pending {
        return Err(StoreError::Conflict(format!(
            "alert {alert} is {state}, not pending: it takes no more delivery attempts"
        )));
    }
    let at_text = ts(at);
    let (ok, text) = match attempt {
        Attempt::Delivered { answer } => (true, answer),
        Attempt::Failed { error, .. } => (false, error),
    };
    sqlx::query("INSERT INTO alert_attempts (alert, number, at, ok, text) VALUES (?, ?, ?, ?, ?)")
        .bind(alert)
        .bind(attempts + 1)
        .bind(&at_text)
        .bind(i64::from(ok))
        .bind(text)
        .execute(&mut *tx)
        .await?;
    let update = match attempt {
        Attempt::Delivered { .. } => sqlx::query(
            "UPDATE alerts SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, \
             next_attempt_at = NULL WHERE id = ?",
        )
        .bind(&at_text),
        Attempt::Failed { error, retry_at: Some(retry_at) } => {
            sqlx::query("UPDATE alerts SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?")
                .bind(ts(*retry_at))
                .bind(error)
        }
        Attempt::Failed { error, retry_at: None } => sqlx::query(
            "UPDATE alerts SET state = 'failed', attempts = attempts + 1, next_attempt_at = NULL, \
             last_error = ? WHERE id = ?",
        )
        .bind(error),
    };
    update.bind(alert).execute(&mut *tx).await?;
    let sql = format!("SELECT {ALERT_COLS} FROM alerts WHERE id = ?");
    let row = alert_row(&sqlx::query(&sql).bind(alert).fetch_one(&mut *tx).await?)?;
    let result = match attempt {
        Attempt::Delivered { .. } => AttemptResult::Delivered,
        Attempt::Failed { retry_at: Some(_), .. } => AttemptResult::Retry,
        Attempt::Failed { retry_at: None, .. } => AttemptResult::GaveUp,
    };
    let kind = EventKind::AlertAttempted { channel: row.channel.clone(), rule: row.rule.clone(), result };
    // The run's key, so the event is found with the run's others.
    let run: Option<i64> = match &row.run_id {
        Some(r) => {
            sqlx::query_scalar("SELECT id FROM runs WHERE dag_id = ? AND run_id = ?")
                .bind(&row.dag_id)
                .bind(r)
                .fetch_optional(&mut *tx)
                .await?
        }
        None => None,
    };
    let event = Pending {
        at,
        dag_id: Some(row.dag_id.clone()),
        run_id: row.run_id.clone(),
        run,
        task_id: row.task_id.clone(),
        kind,
    };
    events.push(event);
    Ok(row)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    // --- DAGs ---

    async fn sync_dags(&self, dags: &[DagSync]) -> Result<()> {
        if dags.is_empty() {
            return Ok(());
        }
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let at = Utc::now();
        let now = ts(at);
        let mut events = Vec::new();
        for d in dags {
            // Whether this call changes what the row says about the file (not just its time).
            let unchanged: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM dags WHERE dag_id = ?1 AND file IS ?2 AND parse_error IS ?3 \
                 AND (?4 IS NULL OR source IS ?4)",
            )
            .bind(&d.dag_id)
            .bind(&d.file)
            .bind(d.parse_error.as_deref())
            .bind(d.source.as_deref())
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO dags (dag_id, file, paused, source, parse_error, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (dag_id) DO UPDATE SET file = excluded.file, parse_error = excluded.parse_error, \
                 source = COALESCE(excluded.source, dags.source), \
                 schedule_error = CASE WHEN excluded.source IS NULL THEN dags.schedule_error END, \
                 updated_at = excluded.updated_at",
            )
            .bind(&d.dag_id)
            .bind(&d.file)
            .bind(i64::from(d.paused_at_creation))
            .bind(d.source.as_deref())
            .bind(d.parse_error.as_deref())
            .bind(&now)
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
        self.commit(tx, events).await
    }

    async fn set_schedule_error(&self, dag_id: &str, error: Option<&str>) -> Result<()> {
        let mut w = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO dags (dag_id, schedule_error, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (dag_id) DO UPDATE SET schedule_error = excluded.schedule_error, updated_at = excluded.updated_at",
        )
        .bind(dag_id)
        .bind(error)
        .bind(ts(Utc::now()))
        .execute(&mut w.conn)
        .await?;
        Ok(())
    }

    async fn dag_source(&self, dag_id: &str) -> Result<Option<(String, String)>> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT file, source FROM dags WHERE dag_id = ?")
                .bind(dag_id)
                .fetch_optional(&self.readers)
                .await?;
        Ok(match row {
            Some((Some(file), Some(source))) => Some((file, source)),
            _ => None,
        })
    }

    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let was: Option<i64> = sqlx::query_scalar("SELECT paused FROM dags WHERE dag_id = ?")
            .bind(dag_id)
            .fetch_optional(&mut *tx)
            .await?;
        let at = Utc::now();
        sqlx::query(
            "INSERT INTO dags (dag_id, paused, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (dag_id) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
        )
        .bind(dag_id)
        .bind(i64::from(paused))
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        let mut events = Vec::new();
        if was != Some(i64::from(paused)) {
            events.push(Pending::of_dag(at, dag_id, EventKind::DagPaused { paused }));
        }
        self.commit(tx, events).await
    }

    async fn dags(&self) -> Result<Vec<DagRow>> {
        sqlx::query("SELECT dag_id, file, paused, parse_error, updated_at, schedule_error FROM dags ORDER BY dag_id")
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(dag_row)
            .collect()
    }

    // --- Runs ---

    async fn create_run(&self, new: &NewRun) -> Result<Created> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let created_at = Utc::now();
        // No conflict target: DO NOTHING on either UNIQUE constraint. The write lock taken by
        // BEGIN IMMEDIATE means no other process can insert between this and the read below.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO runs (dag_id, run_id, kind, logical_date, data_interval_start, data_interval_end, \
             state, conf, created_at, deadline, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&new.dag_id)
        .bind(&new.run_id)
        .bind(new.kind.name())
        .bind(ts(new.logical_date))
        .bind(ts(new.data_interval_start))
        .bind(ts(new.data_interval_end))
        .bind(new.conf.as_ref().map(json_text))
        .bind(ts(created_at))
        .bind(new.deadline.map(ts))
        .bind(new.idempotency_key.as_deref())
        .fetch_optional(&mut *tx)
        .await?;

        let Some(id) = id else {
            // Prefer the run of the idempotency key (the request was made before), then the run
            // of the same logical date, when the keys name different runs. A NULL key matches
            // nothing (`= NULL` is NULL, hence the COALESCE in the order).
            let sql = format!(
                "SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = ?1 \
                 AND (r.logical_date = ?2 OR r.run_id = ?3 OR r.idempotency_key = ?4) \
                 ORDER BY COALESCE(r.idempotency_key = ?4, 0) DESC, r.logical_date = ?2 DESC LIMIT 1"
            );
            let row = sqlx::query(&sql)
                .bind(&new.dag_id)
                .bind(ts(new.logical_date))
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

        // Every task instance in one statement, in the DAG's order (the rowid order
        // `task_instances` reads back): a statement per task would be a round trip to SQLite's
        // thread per task, most of the time a 10,000-task run takes to be created.
        let rows: Vec<(&str, u32)> = new.tasks.iter().map(|(t, m)| (t.as_str(), *m)).collect();
        let rows = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(format!("task list: {e}")))?;
        sqlx::query(
            "INSERT INTO task_instances (run, task_id, state, try_number, max_tries) \
             SELECT ?, value ->> 0, 'none', 0, value ->> 1 FROM json_each(?) ORDER BY key",
        )
        .bind(id)
        .bind(rows)
        .execute(&mut *tx)
        .await?;
        let run = fetch_run(&mut *tx, id).await?.ok_or_else(|| run_not_found(id))?;
        let kind = EventKind::RunCreated { run_kind: new.kind, logical_date: run.logical_date };
        let names = (run.dag_id.clone(), run.run_id.clone(), run.id);
        self.commit(tx, vec![Pending::of_run(created_at, &names, None, kind)]).await?;
        Ok(Created::New(run))
    }

    async fn run(&self, id: i64) -> Result<Option<Run>> {
        fetch_run(&self.readers, id).await
    }

    async fn run_by_run_id(&self, dag_id: &str, run_id: &str) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = ? AND r.run_id = ?");
        sqlx::query(&sql)
            .bind(dag_id)
            .bind(run_id)
            .fetch_optional(&self.readers)
            .await?
            .map(|row| run_at(&row, 0))
            .transpose()
    }

    async fn run_by_logical_date(&self, dag_id: &str, logical_date: DateTime<Utc>) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = ? AND r.logical_date = ?");
        sqlx::query(&sql)
            .bind(dag_id)
            .bind(ts(logical_date))
            .fetch_optional(&self.readers)
            .await?
            .map(|row| run_at(&row, 0))
            .transpose()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let (conditions, mut args) = run_conditions(filter, true);
        let mut sql = format!("SELECT {RUN_COLS} FROM runs r{conditions} ORDER BY r.logical_date DESC, r.id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(" LIMIT ?");
            args.push(Arg::Int(i64::from(limit)));
        }
        bind_args(sqlx::query(&sql), args).fetch_all(&self.readers).await?.iter().map(|row| run_at(row, 0)).collect()
    }

    async fn count_runs(&self, filter: &RunFilter, cap: u32) -> Result<u64> {
        let (conditions, mut args) = run_conditions(filter, false);
        // The inner LIMIT bounds the work, not only the answer.
        let sql = format!("SELECT count(*) FROM (SELECT 1 FROM runs r{conditions} LIMIT ?)");
        args.push(Arg::Int(i64::from(cap)));
        let row = bind_args(sqlx::query(&sql), args).fetch_one(&self.readers).await?;
        let n: i64 = row.try_get(0)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n} out of range")))
    }

    async fn grid(&self, dag_id: &str, limit: u32) -> Result<(Vec<Run>, Vec<GridCell>)> {
        // One read transaction: both statements see the same snapshot, so a run created in
        // between cannot bring task instances without their run.
        let mut tx = self.readers.begin().await?;
        let sql =
            format!("SELECT {RUN_COLS} FROM runs r WHERE r.dag_id = ? ORDER BY r.logical_date DESC, r.id DESC LIMIT ?");
        let runs = sqlx::query(&sql)
            .bind(dag_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| run_at(row, 0))
            .collect::<Result<Vec<_>>>()?;
        // Every task instance of those runs in one statement, as one row per run holding its
        // cells as a JSON array of [task, state, try, start, end]: a row per cell would cost
        // more in the driver (one message per row) than the query itself.
        let sql = "SELECT ti.run, json_group_array(json_array(ti.task_id, ti.state, ti.try_number, ti.started_at, ti.ended_at)) \
             FROM (SELECT id FROM runs WHERE dag_id = ? ORDER BY logical_date DESC, id DESC LIMIT ?) g \
             JOIN task_instances ti ON ti.run = g.id GROUP BY ti.run";
        let rows = sqlx::query(sql).bind(dag_id).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut by_run: HashMap<i64, Vec<GridCell>> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let run: i64 = row.try_get(0)?;
            let text = text(row, 1)?;
            let cells: Vec<(String, String, i64, Option<String>, Option<String>)> = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("grid cells of run {run}: {e}")))?;
            let mut out = Vec::with_capacity(cells.len());
            for (task_id, state, try_number, started, ended) in cells {
                let duration_ms = match (started.as_deref(), ended.as_deref()) {
                    (Some(s), Some(e)) => Some((parse_ts(e)? - parse_ts(s)?).num_milliseconds().max(0)),
                    _ => None,
                };
                let try_number = u32::try_from(try_number)
                    .map_err(|_| StoreError::Corrupt(format!("count {try_number} out of range")))?;
                out.push(GridCell { run, task_id, state: parse_task_state(&state)?, try_number, duration_ms });
            }
            by_run.insert(run, out);
        }
        let cells = runs.iter().flat_map(|r| by_run.remove(&r.id).unwrap_or_default()).collect();
        Ok((runs, cells))
    }

    async fn latest_runs(&self, per_dag: u32) -> Result<Vec<Run>> {
        // Per DAG, its newest runs by the (dag_id, logical_date) index: a few index steps per
        // DAG. `ROW_NUMBER() OVER (PARTITION BY dag_id ...)` says the same but reads and sorts
        // every run (some 40 times the work at 300,000 runs); listing the DAG ids is one pass
        // over the small (dag_id, state, ended_at) index.
        let sql = format!(
            "SELECT {RUN_COLS} FROM (SELECT DISTINCT dag_id FROM runs) d \
             JOIN runs r ON r.id IN (SELECT x.id FROM runs x WHERE x.dag_id = d.dag_id \
             ORDER BY x.logical_date DESC, x.id DESC LIMIT ?) \
             ORDER BY r.dag_id, r.logical_date DESC, r.id DESC"
        );
        sqlx::query(&sql)
            .bind(i64::from(per_dag))
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(|row| run_at(row, 0))
            .collect()
    }

    async fn last_successes(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        // Per DAG, one step down the (dag_id, state, ended_at) index, not a read of every
        // successful run.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT dag_id, at FROM (SELECT d.dag_id, (SELECT MAX(x.ended_at) FROM runs x \
             WHERE x.dag_id = d.dag_id AND x.state = 'success') AS at FROM (SELECT DISTINCT dag_id FROM runs) d) \
             WHERE at IS NOT NULL ORDER BY dag_id",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(|(dag_id, at)| Ok((dag_id, parse_ts(&at)?))).collect()
    }

    async fn previous_finished_run(&self, dag_id: &str, before: DateTime<Utc>, exclude: i64) -> Result<Option<Run>> {
        // One step down the (dag_id, state, ended_at) index per finished state.
        let sql = format!(
            "SELECT {RUN_COLS} FROM runs r WHERE r.id = (SELECT x.id FROM (\
             SELECT * FROM (SELECT id, ended_at FROM runs WHERE dag_id = ?1 AND state = 'success' \
             AND ended_at <= ?2 AND id != ?3 ORDER BY ended_at DESC, id DESC LIMIT 1) \
             UNION ALL SELECT * FROM (SELECT id, ended_at FROM runs WHERE dag_id = ?1 AND state = 'failed' \
             AND ended_at <= ?2 AND id != ?3 ORDER BY ended_at DESC, id DESC LIMIT 1)) x \
             ORDER BY x.ended_at DESC, x.id DESC LIMIT 1)"
        );
        sqlx::query(&sql)
            .bind(dag_id)
            .bind(ts(before))
            .bind(exclude)
            .fetch_optional(&self.readers)
            .await?
            .map(|row| run_at(&row, 0))
            .transpose()
    }

    async fn set_run_state(&self, run: i64, state: RunState, at: DateTime<Utc>) -> Result<()> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let ((dag_id, run_id, _), was) = run_names_and_state(&mut tx, run).await?;
        let query = match state {
            RunState::Running => sqlx::query(
                "UPDATE runs SET started_at = CASE WHEN state = 'running' THEN started_at ELSE ?1 END, \
                 first_started_at = COALESCE(first_started_at, ?1), state = 'running', ended_at = NULL WHERE id = ?2",
            )
            .bind(ts(at)),
            RunState::Queued => sqlx::query("UPDATE runs SET state = 'queued', ended_at = NULL WHERE id = ?"),
            RunState::Success | RunState::Failed => {
                sqlx::query("UPDATE runs SET state = ?, ended_at = ? WHERE id = ?").bind(state.name()).bind(ts(at))
            }
        };
        query.bind(run).execute(&mut *tx).await?;
        let mut events = Vec::new();
        if was != state {
            let kind = match state {
                RunState::Running => EventKind::RunStarted,
                RunState::Queued => EventKind::RunQueued,
                RunState::Success | RunState::Failed => EventKind::RunFinished { state },
            };
            events.push(Pending::of_run(at, &(dag_id, run_id, run), None, kind));
        }
        self.commit(tx, events).await
    }

    async fn mark_deadline_missed(&self, run: i64, at: DateTime<Utc>) -> Result<bool> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let marked: Option<(String, String, Option<String>)> = sqlx::query_as(
            "UPDATE runs SET deadline_missed = 1 WHERE id = ? AND deadline_missed = 0 RETURNING dag_id, run_id, deadline",
        )
        .bind(run)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((dag_id, run_id, deadline)) = marked else {
            // Already marked, or no such run.
            run_names(&mut tx, run).await?;
            return Ok(false);
        };
        let deadline = deadline.as_deref().map(parse_ts).transpose()?;
        let event = Pending::of_run(at, &(dag_id, run_id, run), None, EventKind::DeadlineMissed { deadline });
        self.commit(tx, vec![event]).await?;
        Ok(true)
    }

    // --- Task instances and tries ---

    async fn task_instances(&self, run: i64) -> Result<Vec<TaskInstance>> {
        // rowid: the order the run was created with.
        // In one row, as in `start_distinct_in`: a row per task would be a message per task
        // from SQLite's thread. `json_group_array` keeps the order of its subquery.
        let sql = format!(
            "SELECT json_group_array(json_array({TI_COLS})) FROM \
             (SELECT {TI_COLS} FROM task_instances WHERE run = ? ORDER BY rowid)"
        );
        let json: String = sqlx::query_scalar(&sql).bind(run).fetch_one(&self.readers).await?;
        type Row = (i64, String, String, i64, i64, Option<String>, Option<String>, Option<String>);
        json_rows::<Row>(&json)?
            .into_iter()
            .map(|(run, task_id, state, try_number, max_tries, next_try_at, started_at, ended_at)| {
                Ok(TaskInstance {
                    run,
                    task_id,
                    state: parse_task_state(&state)?,
                    try_number: to_count(try_number)?,
                    max_tries: to_count(max_tries)?,
                    next_try_at: next_try_at.as_deref().map(parse_ts).transpose()?,
                    started_at: started_at.as_deref().map(parse_ts).transpose()?,
                    ended_at: ended_at.as_deref().map(parse_ts).transpose()?,
                })
            })
            .collect()
    }

    async fn set_task_states(&self, run: i64, states: &[(String, TaskState)], at: DateTime<Utc>) -> Result<()> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let mut events = Vec::with_capacity(states.len());
        set_states_in(&mut tx, run, states, at, &mut events).await?;
        self.commit(tx, events).await
    }

    async fn start_tries(&self, tasks: &[(i64, String)], at: DateTime<Utc>) -> Result<Vec<Start>> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let mut events = Vec::with_capacity(tasks.len());
        let starts = start_tries_in(&mut tx, tasks, at, &mut events).await?;
        self.commit(tx, events).await?;
        Ok(starts)
    }

    async fn set_states_and_start(
        &self,
        states: &[(i64, Vec<(String, TaskState)>)],
        tasks: &[(i64, String)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Start>> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let mut events = Vec::with_capacity(states.iter().map(|(_, s)| s.len()).sum::<usize>() + tasks.len());
        for (run, states) in states {
            set_states_in(&mut tx, *run, states, at, &mut events).await?;
        }
        let starts = start_tries_in(&mut tx, tasks, at, &mut events).await?;
        self.commit(tx, events).await?;
        Ok(starts)
    }

    async fn record_external_id(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
        key: &str,
        value: &Value,
    ) -> Result<()> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        // Read, merge, write, under the write lock: no JSON-path quoting of arbitrary keys.
        let ids: Option<String> =
            sqlx::query_scalar("SELECT external_ids FROM tries WHERE run = ? AND task_id = ? AND try_number = ?")
                .bind(run)
                .bind(task_id)
                .bind(i64::from(try_number))
                .fetch_optional(&mut *tx)
                .await?;
        let ids = ids.ok_or_else(|| try_not_found(run, task_id, try_number))?;
        let mut ids = parse_json_map(&ids, "try external ids")?;
        ids.insert(key.to_string(), value.clone());
        sqlx::query("UPDATE tries SET external_ids = ? WHERE run = ? AND task_id = ? AND try_number = ?")
            .bind(json_text(&ids))
            .bind(run)
            .bind(task_id)
            .bind(i64::from(try_number))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_tries(&self, tries: &[FinishTry]) -> Result<Vec<Finish>> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let names = names_of(&mut tx, tries.iter().map(|t| t.run).collect()).await?;
        let mut done: Vec<Option<Finish>> = vec![None; tries.len()];
        let mut events = Vec::with_capacity(tries.len());
        let distinct: std::collections::HashSet<(i64, &str)> =
            tries.iter().map(|t| (t.run, t.task_id.as_str())).collect();
        // Successes of one run at one time are written a chunk at a time (a few statements
        // for many tries); everything else, and a batch naming a task twice, one by one.
        let mut groups: Vec<((i64, DateTime<Utc>), Vec<usize>)> = Vec::new();
        for (k, t) in tries.iter().enumerate() {
            if distinct.len() == tries.len() && matches!(t.outcome, TryOutcome::Success { .. }) {
                match groups.iter_mut().find(|(key, _)| *key == (t.run, t.at)) {
                    Some((_, v)) => v.push(k),
                    None => groups.push(((t.run, t.at), vec![k])),
                }
            } else {
                done[k] = Some(finish_try_in(&mut tx, &names[&t.run], t, &mut events).await?);
            }
        }
        for ((run, at), members) in groups {
            for chunk in members.chunks(IN_CHUNK / 2) {
                finish_successes_in(&mut tx, &names[&run], at, tries, chunk, &mut done, &mut events).await?;
            }
        }
        self.commit(tx, events).await?;
        done.into_iter()
            .map(|d| d.ok_or_else(|| StoreError::Corrupt("a try of the batch was not finished".into())))
            .collect()
    }

    async fn tries(&self, run: i64, task_id: Option<&str>) -> Result<Vec<Try>> {
        let sql = format!(
            "SELECT {TRY_COLS} FROM tries t WHERE t.run = ?1 AND (?2 IS NULL OR t.task_id = ?2) \
             ORDER BY t.started_at, t.rowid"
        );
        sqlx::query(&sql)
            .bind(run)
            .bind(task_id)
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(|row| try_at(row, 0))
            .collect()
    }

    async fn running_tries(&self) -> Result<Vec<(Run, Try)>> {
        // The literal 'running' (not a parameter) lets SQLite use the partial index.
        let sql = format!(
            "SELECT {RUN_COLS}, {TRY_COLS} FROM tries t JOIN runs r ON r.id = t.run \
             WHERE t.state = 'running' ORDER BY t.started_at, t.rowid"
        );
        sqlx::query(&sql)
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(|row| Ok((run_at(row, 0)?, try_at(row, RUN_NCOLS)?)))
            .collect()
    }

    async fn take_over_tries(&self) -> Result<Vec<(Run, Try)>> {
        // One scheduler per file: every running try was left by the one before it.
        let mut tries = self.running_tries().await?;
        tries.retain(|(run, _)| run.kind != RunKind::Test);
        Ok(tries)
    }

    async fn outputs(&self, run: i64) -> Result<BTreeMap<String, Map<String, Value>>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT task_id, key, value FROM outputs WHERE run = ?")
                .bind(run)
                .fetch_all(&self.readers)
                .await?;
        let mut outputs: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (task_id, key, value) in rows {
            let value = serde_json::from_str(&value)
                .map_err(|e| StoreError::Corrupt(format!("output `{key}` of task `{task_id}` is not JSON: {e}")))?;
            outputs.entry(task_id).or_default().insert(key, value);
        }
        Ok(outputs)
    }

    async fn clear_tasks(&self, run: i64, tasks: &[(String, u32)], at: DateTime<Utc>) -> Result<()> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let (names, state) = run_names_and_state(&mut tx, run).await?;
        let mut events = Vec::with_capacity(tasks.len() + 1);
        for (task_id, tries) in tasks {
            events.push(Pending::of_run(
                at,
                &names,
                Some(task_id),
                EventKind::TaskStateChanged { state: TaskState::None },
            ));
            let done = sqlx::query(
                "UPDATE task_instances SET state = 'none', next_try_at = NULL, started_at = NULL, ended_at = NULL, \
                 max_tries = MIN(try_number + ?, 4294967295) WHERE run = ? AND task_id = ?",
            )
            .bind(i64::from(*tries))
            .bind(run)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(task_not_found(run, task_id));
            }
            sqlx::query("DELETE FROM outputs WHERE run = ? AND task_id = ?")
                .bind(run)
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
        }
        if state.is_finished() {
            sqlx::query("UPDATE runs SET state = 'queued', ended_at = NULL WHERE id = ?")
                .bind(run)
                .execute(&mut *tx)
                .await?;
            events.push(Pending::of_run(at, &names, None, EventKind::RunQueued));
        }
        self.commit(tx, events).await
    }

    // --- Events ---

    async fn add_event(&self, event: &NewEvent) -> Result<i64> {
        let w = &mut *self.writer.lock().await;
        let run = match (&event.dag_id, &event.run_id) {
            (Some(dag_id), Some(run_id)) => {
                sqlx::query_scalar("SELECT id FROM runs WHERE dag_id = ? AND run_id = ?")
                    .bind(dag_id)
                    .bind(run_id)
                    .fetch_optional(&mut w.conn)
                    .await?
            }
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
        let events = vec![pending];
        // One statement: autocommit.
        let ids = insert_events(&mut w.conn, &events).await?;
        let id = ids[0];
        self.publish(events, ids);
        Ok(id)
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        // Explicit clauses, not `?2 IS NULL OR ...`, so that SQLite uses the indexes.
        let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE id > ?");
        if query.dag_id.is_some() {
            sql.push_str(" AND dag_id = ?");
        }
        if query.run_id.is_some() {
            sql.push_str(" AND run IN (SELECT id FROM runs WHERE run_id = ?)");
        }
        sql.push_str(match query.order {
            Order::Oldest => " ORDER BY id ASC LIMIT ?",
            Order::Newest => " ORDER BY id DESC LIMIT ?",
        });
        let mut q = sqlx::query(&sql).bind(query.after.unwrap_or(0));
        if let Some(dag_id) = &query.dag_id {
            q = q.bind(dag_id);
        }
        if let Some(run_id) = &query.run_id {
            q = q.bind(run_id);
        }
        q.bind(i64::from(query.limit)).fetch_all(&self.readers).await?.iter().map(event).collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    async fn release_memory(&self) -> Result<()> {
        {
            let mut w = self.writer.lock().await;
            sqlx::query("PRAGMA shrink_memory").execute(&mut w.conn).await?;
        }
        // Every idle reader too (held at once, so each is a different connection).
        let mut held = Vec::new();
        for _ in 0..self.readers.num_idle() {
            match self.readers.try_acquire() {
                Some(conn) => held.push(conn),
                None => break,
            }
        }
        for conn in &mut held {
            sqlx::query("PRAGMA shrink_memory").execute(&mut **conn).await?;
        }
        Ok(())
    }

    async fn changed_elsewhere(&self) -> Result<bool> {
        let mut w = self.writer.lock().await;
        let now = data_version(&mut w.conn).await?;
        let changed = now != w.data_version;
        w.data_version = now;
        Ok(changed)
    }

    async fn schedulers(&self) -> Result<Vec<SchedulerRow>> {
        let Some(holder) = crate::lock::live_holder(&self.url) else { return Ok(Vec::new()) };
        let held: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tries WHERE state = 'running'").fetch_one(&self.readers).await?;
        let tries_held = u64::try_from(held).unwrap_or(0);
        Ok(vec![SchedulerRow { host: holder.host, pid: holder.pid, since: holder.since, renewed_at: None, tries_held }])
    }

    async fn check_writable(&self) -> Result<()> {
        // On a task of its own: a caller that stops waiting (a readiness check timing out)
        // must not leave the writer with the probe's short busy timeout.
        let writer = Arc::clone(&self.writer);
        let probe = tokio::spawn(async move {
            let mut w = writer.lock_owned().await;
            let conn = &mut w.conn;
            set_busy_timeout(conn, PROBE_BUSY_TIMEOUT).await?;
            let probed = async {
                let tx = conn.begin_with(BEGIN_IMMEDIATE).await?;
                tx.rollback().await?;
                Ok::<_, StoreError>(())
            }
            .await;
            let restored = set_busy_timeout(conn, BUSY_TIMEOUT).await;
            probed.and(restored)
        });
        match probe.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Db(sqlx::Error::WorkerCrashed)),
        }
    }

    // --- Alerts ---

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT event_id FROM cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?)
    }

    async fn set_cursor(&self, name: &str, event_id: i64) -> Result<()> {
        let mut w = self.writer.lock().await;
        // One statement: autocommit.
        move_cursor(&mut w.conn, name, event_id).await
    }

    async fn enqueue_alerts(
        &self,
        cursor: &str,
        up_to: i64,
        alerts: &[NewAlert],
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        let created_at = ts(at);
        let mut ids = Vec::with_capacity(alerts.len());
        for a in alerts {
            // An existing (channel, incident) returns no row: skipped.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO alerts (channel, incident, rule, dag_id, run_id, task_id, event_id, message, state, \
                 attempts, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) \
                 ON CONFLICT (channel, incident) DO NOTHING RETURNING id",
            )
            .bind(&a.channel)
            .bind(&a.incident)
            .bind(&a.rule)
            .bind(&a.dag_id)
            .bind(a.run_id.as_deref())
            .bind(a.task_id.as_deref())
            .bind(a.event_id)
            .bind(json_text(&a.message))
            .bind(&created_at)
            .bind(ts(a.due_at))
            .fetch_optional(&mut *tx)
            .await?;
            ids.extend(id);
        }
        move_cursor(&mut tx, cursor, up_to).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn due_alerts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<AlertRow>> {
        // The literal 'pending' (not a parameter) lets SQLite use the partial index.
        let sql = format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE state = 'pending' AND next_attempt_at <= ? \
             ORDER BY next_attempt_at, id LIMIT ?"
        );
        sqlx::query(&sql)
            .bind(ts(now))
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(alert_row)
            .collect()
    }

    async fn next_alert_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<String> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM alerts WHERE state = 'pending'")
                .fetch_one(&self.readers)
                .await?;
        next.as_deref().map(parse_ts).transpose()
    }

    async fn record_attempts(&self, at: DateTime<Utc>, attempts: &[(i64, Attempt)]) -> Result<Vec<Result<AlertRow>>> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
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
        // Explicit clauses, so that SQLite picks an index from what is asked.
        let mut clauses: Vec<String> = Vec::new();
        let mut args = Vec::new();
        if let Some(dag_id) = &query.dag_id {
            clauses.push("dag_id = ?".into());
            args.push(Arg::Text(dag_id.clone()));
        }
        if !query.states.is_empty() {
            clauses.push(format!("state IN ({})", placeholders(query.states.len())));
            args.extend(query.states.iter().map(|s| Arg::Text(s.name().into())));
        }
        let mut sql = format!("SELECT {ALERT_COLS} FROM alerts");
        if !clauses.is_empty() {
            sql.push_str(&format!(" WHERE {}", clauses.join(" AND ")));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        // SQLite's "no limit" is a negative one.
        args.push(Arg::Int(query.limit.map_or(-1, i64::from)));
        bind_args(sqlx::query(&sql), args).fetch_all(&self.readers).await?.iter().map(alert_row).collect()
    }

    async fn alert(&self, id: i64) -> Result<Option<AlertRow>> {
        let sql = format!("SELECT {ALERT_COLS} FROM alerts WHERE id = ?");
        sqlx::query(&sql).bind(id).fetch_optional(&self.readers).await?.as_ref().map(alert_row).transpose()
    }

    async fn alert_attempts(&self, alert: i64) -> Result<Vec<AttemptRow>> {
        let sql = format!("SELECT {ATTEMPT_COLS} FROM alert_attempts WHERE alert = ? ORDER BY number");
        sqlx::query(&sql).bind(alert).fetch_all(&self.readers).await?.iter().map(attempt_row).collect()
    }

    // --- API tokens ---

    async fn create_token(&self, new: &NewToken, at: DateTime<Utc>) -> Result<TokenRow> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        // Checked under the write lock, so the answers hold for the insert below (the
        // indexes would refuse it too, with a less helpful message).
        let live: Option<i64> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE name = ? AND revoked_at IS NULL")
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await?;
        if live.is_some() {
            return Err(StoreError::Conflict(format!("a token named `{}` already exists; revoke it first", new.name)));
        }
        let same_hash: Option<i64> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE hash = ?")
            .bind(&new.hash)
            .fetch_optional(&mut *tx)
            .await?;
        if same_hash.is_some() {
            return Err(StoreError::Conflict(format!(
                "another token has the hash of token `{}`; make a new secret",
                new.name
            )));
        }
        let sql = format!(
            "INSERT INTO api_tokens (name, role, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?) \
             RETURNING {TOKEN_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&new.name)
            .bind(&new.role)
            .bind(&new.hash)
            .bind(ts(at))
            .bind(new.expires_at.map(ts))
            .fetch_one(&mut *tx)
            .await?;
        let token = token_row(&row)?;
        let kind = EventKind::TokenCreated { name: token.name.clone(), role: token.role.clone() };
        self.commit(tx, vec![Pending::of_store(at, kind)]).await?;
        Ok(token)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let sql = format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id");
        sqlx::query(&sql).fetch_all(&self.readers).await?.iter().map(token_row).collect()
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        let sql = format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE hash = ?");
        sqlx::query(&sql).bind(hash).fetch_optional(&self.readers).await?.as_ref().map(token_row).transpose()
    }

    async fn revoke_token(&self, name: &str, at: DateTime<Utc>) -> Result<Option<TokenRow>> {
        let mut w = self.writer.lock().await;
        let mut tx = w.conn.begin_with(BEGIN_IMMEDIATE).await?;
        // At most one live token has the name (a partial unique index).
        let sql = format!(
            "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING {TOKEN_COLS}"
        );
        let row = sqlx::query(&sql).bind(ts(at)).bind(name).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = token_row(&row)?;
        let kind = EventKind::TokenRevoked { name: token.name.clone() };
        self.commit(tx, vec![Pending::of_store(at, kind)]).await?;
        Ok(Some(token))
    }

    async fn touch_token(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let mut w = self.writer.lock().await;
        // One statement: autocommit.
        let done = sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
            .bind(ts(at))
            .bind(id)
            .execute(&mut w.conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("API token {id}")));
        }
        Ok(())
    }

    async fn has_live_tokens(&self, now: DateTime<Utc>) -> Result<bool> {
        let live: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > ?))",
        )
        .bind(ts(now))
        .fetch_one(&self.readers)
        .await?;
        Ok(live != 0)
    }
}

/// Moves the cursor `name` to `event_id` unless it is further already.
async fn move_cursor(conn: &mut SqliteConnection, name: &str, event_id: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO cursors (name, event_id) VALUES (?, ?) \
         ON CONFLICT (name) DO UPDATE SET event_id = MAX(event_id, excluded.event_id)",
    )
    .bind(name)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the connection's busy timeout (how long a statement waits for another connection's
/// lock before it fails with "database is locked").
async fn set_busy_timeout(conn: &mut SqliteConnection, timeout: Duration) -> Result<()> {
    sqlx::query(&format!("PRAGMA busy_timeout = {}", timeout.as_millis())).execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Timelike, Utc};

    use super::{parse_ts, ts};

    /// The hand-written format is the `strftime` one, to the byte, and reads back.
    #[test]
    fn times_are_stored_as_the_fixed_width_text_they_always_were() {
        let mut t: DateTime<Utc> = "1970-01-01T00:00:00Z".parse().unwrap();
        for step in [Duration::nanoseconds(999), Duration::microseconds(1_234_567), Duration::days(4_219)] {
            for _ in 0..200 {
                assert_eq!(ts(t), t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
                assert_eq!(parse_ts(&ts(t)).unwrap(), t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap());
                t += step;
            }
        }
        let last: DateTime<Utc> = "9999-12-31T23:59:59.999999999Z".parse().unwrap();
        assert_eq!(ts(last), "9999-12-31T23:59:59.999999Z");
        assert_eq!(ts(DateTime::<Utc>::MAX_UTC), DateTime::<Utc>::MAX_UTC.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    }
}
