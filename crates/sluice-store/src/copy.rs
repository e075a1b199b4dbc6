//! Copying a SQLite state file into PostgreSQL (`dagctl db migrate-from`), so that a team can
//! move without losing history: every table, ids kept (the alerter's cursors and the API's run
//! keys stay valid), in one PostgreSQL transaction (all or nothing).
//!
//! The source is migrated to the latest SQLite schema first (as any open does), and read table
//! by table in key order; each table goes over in pieces of [`PIECE`] rows, one `INSERT ...
//! SELECT FROM unnest(...)` each. The target must hold no DAG, run or event yet.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use crate::{PgStore, Result, SqliteStore, StoreError};

/// Rows per `INSERT`.
const PIECE: usize = 2_000;

/// How a column is stored in SQLite and written to PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    /// SQLite 0/1.
    Bool,
    /// SQLite's fixed-width UTC text.
    Time,
    /// JSON text.
    Json,
}

/// One table to copy: its columns and the identity column whose sequence continues after the
/// copied ids. Rows go over in SQLite's rowid order: the order runs were created with, which
/// `seq` keeps in PostgreSQL for task instances and tries.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    identity: Option<&'static str>,
}

use Kind::{Bool, Int, Json, Text, Time};

/// Every table, parents before children.
const TABLES: &[Table] = &[
    Table {
        name: "dags",
        columns: &[
            ("dag_id", Text),
            ("file", Text),
            ("paused", Bool),
            ("parse_error", Text),
            ("source", Text),
            ("updated_at", Time),
            ("schedule_error", Text),
        ],
        identity: None,
    },
    Table {
        name: "runs",
        columns: &[
            ("id", Int),
            ("dag_id", Text),
            ("run_id", Text),
            ("kind", Text),
            ("logical_date", Time),
            ("data_interval_start", Time),
            ("data_interval_end", Time),
            ("state", Text),
            ("conf", Json),
            ("created_at", Time),
            ("started_at", Time),
            ("ended_at", Time),
            ("deadline", Time),
            ("deadline_missed", Bool),
            ("first_started_at", Time),
            ("idempotency_key", Text),
        ],
        identity: Some("id"),
    },
    Table {
        name: "task_instances",
        columns: &[
            ("run", Int),
            ("task_id", Text),
            ("state", Text),
            ("try_number", Int),
            ("max_tries", Int),
            ("next_try_at", Time),
            ("started_at", Time),
            ("ended_at", Time),
        ],
        identity: None,
    },
    Table {
        name: "tries",
        columns: &[
            ("run", Int),
            ("task_id", Text),
            ("try_number", Int),
            ("state", Text),
            ("started_at", Time),
            ("ended_at", Time),
            ("error", Text),
            ("external_ids", Json),
        ],
        identity: None,
    },
    Table {
        name: "outputs",
        columns: &[("run", Int), ("task_id", Text), ("key", Text), ("value", Json)],
        identity: None,
    },
    Table {
        name: "events",
        columns: &[
            ("id", Int),
            ("at", Time),
            ("dag_id", Text),
            ("run_id", Text),
            ("run", Int),
            ("task_id", Text),
            ("kind", Text),
            ("data", Json),
        ],
        identity: Some("id"),
    },
    Table {
        name: "api_tokens",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("role", Text),
            ("hash", Text),
            ("created_at", Time),
            ("expires_at", Time),
            ("revoked_at", Time),
            ("last_used_at", Time),
        ],
        identity: Some("id"),
    },
    Table {
        name: "alerts",
        columns: &[
            ("id", Int),
            ("channel", Text),
            ("incident", Text),
            ("rule", Text),
            ("dag_id", Text),
            ("run_id", Text),
            ("task_id", Text),
            ("event_id", Int),
            ("message", Json),
            ("state", Text),
            ("attempts", Int),
            ("created_at", Time),
            ("next_attempt_at", Time),
            ("delivered_at", Time),
            ("last_error", Text),
        ],
        identity: Some("id"),
    },
    Table {
        name: "alert_attempts",
        columns: &[("alert", Int), ("number", Int), ("at", Time), ("ok", Bool), ("text", Text)],
        identity: None,
    },
    Table { name: "cursors", columns: &[("name", Text), ("event_id", Int)], identity: None },
];

/// One column of a piece, as PostgreSQL receives it.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<DateTime<Utc>>>),
}

impl Column {
    fn new(kind: Kind) -> Column {
        match kind {
            Text | Json => Column::Text(Vec::new()),
            Int => Column::Int(Vec::new()),
            Bool => Column::Bool(Vec::new()),
            Time => Column::Time(Vec::new()),
        }
    }

    fn bind(self, query: Query<'_, Postgres, PgArguments>) -> Query<'_, Postgres, PgArguments> {
        match self {
            Column::Text(v) => query.bind(v),
            Column::Int(v) => query.bind(v),
            Column::Bool(v) => query.bind(v),
            Column::Time(v) => query.bind(v),
        }
    }
}

/// Copies every table of the SQLite database `from` into the (empty) PostgreSQL database `to`,
/// in one transaction. Returns the rows copied per table, in copy order.
pub async fn sqlite_to_postgres(from: &SqliteStore, to: &PgStore) -> Result<Vec<(&'static str, u64)>> {
    let source = from.read_pool();
    let mut tx = to.pool().begin().await?;
    let used: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dags) OR EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM events)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if used {
        return Err(StoreError::Conflict(
            "the PostgreSQL database already holds DAGs, runs or events: copy into a new database (or schema)".into(),
        ));
    }
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let names: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        // Paged by rowid (every table has one), so a page costs the same however deep it is.
        let select =
            format!("SELECT rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?", names.join(", "), table.name);
        let casts: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                let ty = match kind {
                    Text | Json => "text",
                    Int => "bigint",
                    Bool => "bool",
                    Time => "timestamptz",
                };
                format!("${}::{ty}[]", i + 1)
            })
            .collect();
        let values: Vec<String> = table
            .columns
            .iter()
            .map(|(c, kind)| match kind {
                Json => format!("u.{c}::json"),
                _ => format!("u.{c}"),
            })
            .collect();
        let overriding = if table.identity.is_some() { " OVERRIDING SYSTEM VALUE" } else { "" };
        let insert = format!(
            "INSERT INTO {t} ({cols}){overriding} SELECT {values} FROM unnest({casts}) WITH ORDINALITY \
             AS u ({cols}, n) ORDER BY u.n",
            t = table.name,
            cols = names.join(", "),
            values = values.join(", "),
            casts = casts.join(", "),
        );
        let (mut copied, mut after) = (0u64, 0i64);
        loop {
            let rows = sqlx::query(&select).bind(after).bind(PIECE as i64).fetch_all(source).await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get(0)?;
            let mut columns: Vec<Column> = table.columns.iter().map(|(_, k)| Column::new(*k)).collect();
            for row in &rows {
                for (k, ((name, kind), column)) in table.columns.iter().zip(columns.iter_mut()).enumerate() {
                    let i = k + 1;
                    match (kind, column) {
                        (Text | Json, Column::Text(v)) => v.push(row.try_get(i)?),
                        (Int, Column::Int(v)) => v.push(row.try_get(i)?),
                        (Bool, Column::Bool(v)) => v.push(row.try_get::<Option<i64>, _>(i)?.map(|b| b != 0)),
                        (Time, Column::Time(v)) => {
                            let text: Option<String> = row.try_get(i)?;
                            let at = text
                                .as_deref()
                                .map(crate::sqlite::parse_ts)
                                .transpose()
                                .map_err(|e| StoreError::Corrupt(format!("{}.{name}: {e}", table.name)))?;
                            v.push(at);
                        }
                        _ => unreachable!("a column is made for its kind"),
                    }
                }
            }
            let mut query = sqlx::query(&insert);
            for column in columns {
                query = column.bind(query);
            }
            query.execute(&mut *tx).await?;
            copied += rows.len() as u64;
        }
        if let Some(id) = table.identity {
            // New rows continue after the copied ids.
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{t}', '{id}'), COALESCE((SELECT max({id}) FROM {t}), 0) + 1, false)",
                t = table.name
            );
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
        counts.push((table.name, copied));
    }
    tx.commit().await?;
    Ok(counts)
}
