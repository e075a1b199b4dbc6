//! What a user means when naming a DAG or a run: the DAG of the folder (or the last good
//! version the scheduler recorded while its file is broken), and the run `--date D` or
//! `--run ID` points at. The CLI and the command channel resolve names the same way.

use std::path::Path;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sluice_dag::{Dag, Folder};
use sluice_store::{Run, RunFilter, Store, StoreError};

/// How a request names one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunSelector {
    /// The run's logical date: a date (the run whose logical date falls on that day in the
    /// DAG's zone, the schedule's tick first) or a timestamp.
    Date(String),
    /// The run id (`manual__2026-03-01T05:00:00+00:00`).
    RunId(String),
}

/// Why a name did not lead to one DAG or one run. Each displays as the one line a user reads.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    NotFound(String),
    /// The DAG's file is in the folder but does not load (the errors follow, one a line).
    #[error("DAG `{dag_id}` does not load:\n{}", problems.join("\n"))]
    Broken { dag_id: String, problems: Vec<String> },
    /// A date names several runs, none of them the schedule's tick.
    #[error("DAG `{dag_id}` has {} runs on {day}; name one with --run: {}", run_ids.len(), run_ids.join(", "))]
    Ambiguous { dag_id: String, day: NaiveDate, run_ids: Vec<String> },
    /// The date is not one.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The DAG `id` of the folder; when its file is broken, why; when there is no such DAG, the
/// closest id.
pub fn dag_in_folder<'f>(folder: &'f Folder, id: &str) -> Result<&'f Dag, LookupError> {
    if let Some(dag) = folder.dag(id) {
        return Ok(dag);
    }
    if let Some(file) = folder.files.iter().find(|f| f.dag_id.as_deref() == Some(id)) {
        let problems = file.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
        return Err(LookupError::Broken { dag_id: id.to_string(), problems });
    }
    let known = folder.dags.iter().map(|d| d.id.as_str());
    Err(LookupError::NotFound(match sluice_dag::diagnostic::suggest(id, known) {
        Some(s) => format!("no DAG `{id}` in the folder (did you mean `{s}`?)"),
        None => format!("no DAG `{id}` in the folder"),
    }))
}

/// The DAG was not taken from the folder but from the store: the last good version the
/// scheduler recorded, which a running daemon keeps running.
#[derive(Debug)]
pub struct Fallback {
    /// Why the folder's version could not be used.
    pub reason: LookupError,
}

/// The DAG `id` of the folder or, while its file does not load (or is gone), the last good
/// version recorded in `store` with the reason in a [`Fallback`]: the daemon keeps running
/// that version, so whoever acts on the DAG must see it too. Without a store (no database
/// yet) or a recorded version, the folder's error.
pub async fn dag_with_fallback(
    folder: &Folder,
    store: Option<&dyn Store>,
    id: &str,
) -> Result<(Dag, Option<Fallback>), LookupError> {
    let reason = match dag_in_folder(folder, id) {
        Ok(dag) => return Ok((dag.clone(), None)),
        Err(e) => e,
    };
    if let Some(store) = store {
        if let Some((file, source)) = store.dag_source(id).await? {
            if let Some(dag) = sluice_dag::parse_dag(Path::new(&file), &source).dag {
                return Ok((dag, Some(Fallback { reason })));
            }
        }
    }
    Err(reason)
}

/// The run `selector` names in `dag`.
pub async fn find_run(store: &dyn Store, dag: &Dag, selector: &RunSelector) -> Result<Run, LookupError> {
    let date = match selector {
        RunSelector::RunId(id) => {
            return store
                .run_by_run_id(&dag.id, id)
                .await?
                .ok_or_else(|| LookupError::NotFound(format!("DAG `{}` has no run `{id}`", dag.id)));
        }
        RunSelector::Date(date) => date,
    };
    if let Ok(day) = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d") {
        return run_on_day(store, dag, day).await;
    }
    let at = sluice_dag::schedule::parse_instant(date, dag.timezone).map_err(LookupError::Invalid)?;
    store
        .run_by_logical_date(&dag.id, at.with_timezone(&Utc))
        .await?
        .ok_or_else(|| LookupError::NotFound(format!("DAG `{}` has no run with logical date {date}", dag.id)))
}

/// Any run whose logical date falls on `day` in the DAG's zone; the scheduled tick first.
async fn run_on_day(store: &dyn Store, dag: &Dag, day: NaiveDate) -> Result<Run, LookupError> {
    let filter = RunFilter { dag_id: Some(dag.id.clone()), ..Default::default() };
    let mut on_day: Vec<Run> = store
        .runs(&filter)
        .await?
        .into_iter()
        .filter(|r| r.logical_date.with_timezone(&dag.timezone).date_naive() == day)
        .collect();
    if let Ok(tick) = dag.logical_date_on(day) {
        if let Some(i) = on_day.iter().position(|r| r.logical_date == tick) {
            return Ok(on_day.swap_remove(i));
        }
    }
    match on_day.len() {
        0 => Err(LookupError::NotFound(format!("DAG `{}` has no run on {day}", dag.id))),
        1 => Ok(on_day.remove(0)),
        _ => Err(LookupError::Ambiguous {
            dag_id: dag.id.clone(),
            day,
            run_ids: on_day.into_iter().map(|r| r.run_id).collect(),
        }),
    }
}
