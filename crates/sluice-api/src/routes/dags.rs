//! `/api/v1/dags`: the DAGs with their latest runs, one DAG, pause and unpause, the grid.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_dag::{Dag, RunState, TaskState};
use sluice_scheduler::actions::Paused;
use sluice_scheduler::views::{CalendarView, DagView, FailedFileView};
use sluice_scheduler::{Command, Reply};
use sluice_store::{EventQuery, Order, Run, RunKind};

use super::{limit, Path, Query};
use crate::error::{ApiResult, Problem};
use crate::Api;

/// A run as the DAG list and the grid show it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunBrief {
    pub run_id: String,
    pub kind: RunKind,
    pub logical_date: DateTime<Utc>,
    pub state: RunState,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub deadline_missed: bool,
}

impl From<&Run> for RunBrief {
    fn from(r: &Run) -> RunBrief {
        RunBrief {
            run_id: r.run_id.clone(),
            kind: r.kind,
            logical_date: r.logical_date,
            state: r.state,
            started_at: r.started_at,
            ended_at: r.ended_at,
            deadline_missed: r.deadline_missed,
        }
    }
}

/// One DAG of the list.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DagSummary {
    #[serde(flatten)]
    pub dag: DagView,
    pub description: Option<String>,
    /// The deadline, as written (`07:00`, `6h`).
    pub deadline: Option<String>,
    /// Why the DAG's file does not load now (its last good version is shown and runs).
    pub parse_error: Option<String>,
    /// The newest runs, newest first.
    pub last_runs: Vec<RunBrief>,
}

/// `GET /api/v1/dags`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DagList {
    pub dags: Vec<DagSummary>,
    /// Files of the folder that do not load, with their errors (file, line, message).
    pub failed_files: Vec<FailedFileView>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// How many of each DAG's newest runs to include (default 14, at most 50).
    #[schemars(range(min = 1, max = 50))]
    pub last: Option<u32>,
    /// Only DAGs with this tag.
    pub tag: Option<String>,
}

pub(crate) async fn list(State(api): State<Api>, Query(q): Query<ListQuery>) -> ApiResult<Json<DagList>> {
    let per_dag = limit(q.last, 14, 50, "last")?;
    let catalog = api.catalog();
    let rows = api.store().dags().await?;
    let mut latest: HashMap<String, Vec<RunBrief>> = HashMap::new();
    for run in api.store().latest_runs(per_dag).await? {
        latest.entry(run.dag_id.clone()).or_default().push(RunBrief::from(&run));
    }
    let now = api.now();
    let dags = catalog
        .dags
        .values()
        .filter(|dag| q.tag.as_ref().is_none_or(|t| dag.tags.contains(t)))
        .map(|dag| {
            let row = rows.iter().find(|r| r.dag_id == dag.id);
            DagSummary {
                dag: DagView::new(dag, row, now),
                description: dag.description.clone(),
                deadline: dag.deadline.map(|d| d.to_string()),
                parse_error: row.and_then(|r| r.parse_error.clone()),
                last_runs: latest.remove(&dag.id).unwrap_or_default(),
            }
        })
        .collect();
    Ok(Json(DagList { dags, failed_files: catalog.failed_files.clone() }))
}

/// A task of a DAG, as the graph shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TaskSummary {
    pub id: String,
    pub operator: String,
    pub trigger_rule: String,
    pub depends_on: Vec<String>,
    pub retries: u32,
    pub timeout: Option<String>,
    pub pool: Option<String>,
    pub priority: i64,
    pub doc: Option<String>,
    /// The line of the task's table in the DAG file.
    pub line: usize,
}

/// `GET /api/v1/dags/{dag_id}`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DagDetail {
    #[serde(flatten)]
    pub dag: DagView,
    pub description: Option<String>,
    pub deadline: Option<String>,
    pub catchup: bool,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The tasks in topological order.
    pub tasks: Vec<TaskSummary>,
    /// `[upstream, downstream]` pairs.
    pub edges: Vec<[String; 2]>,
    /// The text of the version the scheduler loaded, as recorded in the store.
    pub source: Option<String>,
    /// Why the file does not load now (the version shown is the last good one).
    pub parse_error: Option<String>,
}

pub(crate) fn loaded_dag(api: &Api, dag_id: &str) -> ApiResult<Arc<Dag>> {
    api.catalog().dag(dag_id).cloned().ok_or_else(|| Problem::not_found(format!("no DAG `{dag_id}` is loaded")))
}

pub(crate) async fn one(State(api): State<Api>, Path(dag_id): Path<String>) -> ApiResult<Json<DagDetail>> {
    let dag = loaded_dag(&api, &dag_id)?;
    let rows = api.store().dags().await?;
    let row = rows.iter().find(|r| r.dag_id == dag.id);
    let source = api.store().dag_source(&dag.id).await?.map(|(_, text)| text);
    let tasks = dag
        .tasks
        .iter()
        .map(|t| TaskSummary {
            id: t.id.clone(),
            operator: t.operator.kind().to_string(),
            trigger_rule: t.trigger_rule.to_string(),
            depends_on: t.depends_on.clone(),
            retries: t.retry.retries,
            timeout: t.timeout.map(|d| d.to_string()),
            pool: t.pool.clone(),
            priority: t.priority,
            doc: t.doc.clone(),
            line: t.line,
        })
        .collect();
    let edges = dag.tasks.iter().flat_map(|t| t.depends_on.iter().map(|up| [up.clone(), t.id.clone()])).collect();
    Ok(Json(DagDetail {
        dag: DagView::new(&dag, row, api.now()),
        description: dag.description.clone(),
        deadline: dag.deadline.map(|d| d.to_string()),
        catchup: dag.catchup,
        max_active_runs: dag.max_active_runs,
        max_active_tasks: dag.max_active_tasks,
        params: dag.params.clone(),
        tasks,
        edges,
        source,
        parse_error: row.and_then(|r| r.parse_error.clone()),
    }))
}

async fn set_paused(api: &Api, dag_id: String, paused: bool) -> ApiResult<Json<Paused>> {
    loaded_dag(api, &dag_id)?;
    match api.act(Command::SetPaused { dag_id, paused }).await? {
        Reply::Paused(p) => Ok(Json(p)),
        _ => Err(Problem::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "the engine answered another command")),
    }
}

pub(crate) async fn pause(State(api): State<Api>, Path(dag_id): Path<String>) -> ApiResult<Json<Paused>> {
    set_paused(&api, dag_id, true).await
}

pub(crate) async fn unpause(State(api): State<Api>, Path(dag_id): Path<String>) -> ApiResult<Json<Paused>> {
    set_paused(&api, dag_id, false).await
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GridQuery {
    /// How many of the newest runs (default 25, at most 365).
    #[schemars(range(min = 1, max = 365))]
    pub runs: Option<u32>,
}

/// `GET /api/v1/dags/{dag_id}/grid`: the newest runs by every task, as columns. `states[r][t]`
/// is the state of task `tasks[t]` in run `runs[r]` (`null`: the run has no such task), and
/// `tries` and `durations_ms` are laid out the same way.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Grid {
    pub dag_id: String,
    /// The DAG's tasks in topological order, then tasks only old runs have.
    pub tasks: Vec<String>,
    /// Newest first.
    pub runs: Vec<RunBrief>,
    pub states: Vec<Vec<Option<TaskState>>>,
    pub tries: Vec<Vec<Option<u32>>>,
    pub durations_ms: Vec<Vec<Option<i64>>>,
}

pub(crate) async fn grid(
    State(api): State<Api>,
    Path(dag_id): Path<String>,
    Query(q): Query<GridQuery>,
) -> ApiResult<Response> {
    let n = limit(q.runs, 25, 365, "runs")?;
    let dag = loaded_dag(&api, &dag_id)?;
    // Every change a grid shows (a run created, a task's state, a try) commits an event of
    // its DAG in the same transaction: a grid computed at the DAG's newest event is still the
    // grid while that event is the newest. Read before the grid, so a change committed in
    // between only costs a recomputation.
    let q = EventQuery { dag_id: Some(dag.id.clone()), limit: 1, order: Order::Newest, ..EventQuery::default() };
    let version = api.store().events(&q).await?.first().map_or(0, |e| e.id);
    let body = match api.grids().get(&dag, n, version) {
        Some(body) => body,
        None => {
            let grid = compute_grid(&api, &dag, n).await?;
            let body = Bytes::from(
                serde_json::to_vec(&grid)
                    .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
            );
            api.grids().put(&dag, n, version, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn compute_grid(api: &Api, dag: &Dag, n: u32) -> ApiResult<Grid> {
    let (runs, cells) = api.store().grid(&dag.id, n).await?;
    let mut tasks: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
    let mut column: HashMap<&str, usize> = dag.tasks.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
    for c in &cells {
        if !column.contains_key(c.task_id.as_str()) {
            column.insert(&c.task_id, tasks.len());
            tasks.push(c.task_id.clone());
        }
    }
    let row_of: HashMap<i64, usize> = runs.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let (w, h) = (tasks.len(), runs.len());
    let mut states = vec![vec![None; w]; h];
    let mut tries = vec![vec![None; w]; h];
    let mut durations_ms = vec![vec![None; w]; h];
    for c in &cells {
        let (Some(&r), Some(&t)) = (row_of.get(&c.run), column.get(c.task_id.as_str())) else { continue };
        states[r][t] = Some(c.state);
        tries[r][t] = Some(c.try_number);
        durations_ms[r][t] = c.duration_ms;
    }
    Ok(Grid {
        dag_id: dag.id.clone(),
        tasks,
        runs: runs.iter().map(RunBrief::from).collect(),
        states,
        tries,
        durations_ms,
    })
}

/// The last grids answered, each with the DAG version and newest event it was computed at.
#[derive(Default)]
pub(crate) struct GridCache {
    entries: std::sync::Mutex<Vec<GridEntry>>,
}

struct GridEntry {
    /// Held, so a reloaded DAG (another `Arc`) never matches an old entry.
    dag: Arc<Dag>,
    runs: u32,
    version: i64,
    body: Bytes,
}

/// Grids kept: a few DAGs' grids, each at most a few hundred KB (365 runs by 50 tasks: 0.3 MB).
const GRIDS_KEPT: usize = 8;

impl GridCache {
    fn get(&self, dag: &Arc<Dag>, runs: u32, version: i64) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|e| Arc::ptr_eq(&e.dag, dag) && e.runs == runs && e.version == version)
            .map(|e| e.body.clone())
    }

    fn put(&self, dag: &Arc<Dag>, runs: u32, version: i64, body: Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| !(e.dag.id == dag.id && e.runs == runs));
        if entries.len() >= GRIDS_KEPT {
            entries.remove(0);
        }
        entries.push(GridEntry { dag: dag.clone(), runs, version, body });
    }
}

/// `GET /api/v1/dags/{dag_id}/graph`: the task graph laid out left to right
/// ([`sluice_dag::layout`]), with each task's operator.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Graph {
    pub dag_id: String,
    #[serde(flatten)]
    pub layout: sluice_dag::layout::Layout,
    /// The operator of each node, in the order of `nodes`.
    pub operators: Vec<String>,
}

pub(crate) async fn graph(State(api): State<Api>, Path(dag_id): Path<String>) -> ApiResult<Json<Graph>> {
    let dag = loaded_dag(&api, &dag_id)?;
    Ok(Json(Graph {
        dag_id: dag.id.clone(),
        layout: sluice_dag::layout::dag_layout(&dag),
        operators: dag.tasks.iter().map(|t| t.operator.kind().to_string()).collect(),
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    /// The year, in the DAG's zone (default: this year there).
    #[schemars(range(min = 1970, max = 9999))]
    pub year: Option<i32>,
}

/// `GET /api/v1/dags/{dag_id}/calendar`: a year of runs counted by logical date, in the DAG's
/// zone (one store query).
pub(crate) async fn calendar(
    State(api): State<Api>,
    Path(dag_id): Path<String>,
    Query(q): Query<CalendarQuery>,
) -> ApiResult<Json<CalendarView>> {
    let dag = loaded_dag(&api, &dag_id)?;
    let year = match q.year {
        Some(y) if (1970..=9999).contains(&y) => y,
        Some(y) => return Err(Problem::bad_request(format!("`year` is {y}: it must be 1970 to 9999"))),
        None => chrono::Datelike::year(&api.now().with_timezone(&dag.timezone)),
    };
    let (from, to) = CalendarView::range(&dag, year)
        .ok_or_else(|| Problem::bad_request(format!("year {year} has no start in the DAG's zone")))?;
    let filter = sluice_store::RunFilter {
        dag_id: Some(dag.id.clone()),
        logical_from: Some(from),
        logical_to: Some(to),
        ..Default::default()
    };
    let runs = api.store().runs(&filter).await?;
    Ok(Json(CalendarView::new(&dag, year, &runs)))
}
