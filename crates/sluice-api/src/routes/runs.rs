//! Runs: the listing across DAGs with a keyset cursor, one run, trigger (idempotent by key),
//! backfill, clear, mark (each with `dry_run`), and `wait`, which streams the run's events as
//! NDJSON until it is final.

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sluice_dag::RunState;
use sluice_scheduler::actions::{
    BackfillRequest, Backfilled, ClearRequest, Cleared, MarkRequest, MarkState, Marked, TriggerRequest, Triggered,
};
use sluice_scheduler::lookup::RunSelector;
use sluice_scheduler::views::RunView;
use sluice_scheduler::{Command, Reply};
use sluice_store::{EventKind, Run, RunCursor, RunFilter, RunKind};

use super::dags::loaded_dag;
use super::{limit, Body, Feed, Path, Query};
use crate::error::{ApiResult, Problem};
use crate::Api;

/// The most runs one page holds.
pub const MAX_PAGE: u32 = 1000;
/// A count of matching runs stops at this many (`count_capped` then says so).
pub const COUNT_CAP: u32 = 10_000;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    pub dag_id: Option<String>,
    /// Comma-separated run states.
    pub state: Option<String>,
    /// Comma-separated run kinds (scheduled, manual, backfill, test).
    pub kind: Option<String>,
    /// Logical dates from (a date: from the start of that day, UTC or the DAG's zone).
    pub from: Option<String>,
    /// Logical dates to, inclusive (a date: to the end of that day).
    pub to: Option<String>,
    /// Runs per page (default 100, at most 1000).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Also count every matching run (up to 10,000).
    #[serde(default)]
    pub count: bool,
}

/// A page of runs, newest logical date first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunPage {
    pub runs: Vec<RunView>,
    /// Give it back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// How many runs match, when `count` was asked for.
    pub count: Option<u64>,
    /// True when there are more matching runs than `count` says.
    pub count_capped: bool,
}

fn cursor_text(r: &Run) -> String {
    format!("{}_{}", r.logical_date.timestamp_micros(), r.id)
}

fn parse_cursor(s: &str) -> Result<RunCursor, Problem> {
    let bad =
        || Problem::bad_request(format!("invalid cursor {s:?}: pass `next_cursor` from the previous page as it is"));
    let (micros, id) = s.split_once('_').ok_or_else(bad)?;
    let logical_date = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    let id = id.parse::<i64>().map_err(|_| bad())?;
    Ok(RunCursor { logical_date, id })
}

fn parse_list<T>(what: &str, s: Option<&str>, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, Problem> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse(p).ok_or_else(|| Problem::bad_request(format!("unknown {what} `{p}`"))))
        .collect()
}

/// A bound of a logical date range: with a DAG, in its zone ([`sluice_dag::Dag::logical_bound`]);
/// across DAGs, a date is a UTC day.
fn bound(api: &Api, dag_id: Option<&str>, s: &str, end_of_day: bool) -> Result<DateTime<Utc>, Problem> {
    if let Some(dag) = dag_id.and_then(|d| api.catalog().dag(d).cloned()) {
        return dag.logical_bound(s, end_of_day).map(|t| t.with_timezone(&Utc)).map_err(Problem::bad_request);
    }
    if let Ok(day) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        let start = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default());
        return Ok(if end_of_day {
            start + chrono::Duration::days(1) - chrono::Duration::microseconds(1)
        } else {
            start
        });
    }
    sluice_dag::schedule::parse_instant(s, chrono_tz::UTC).map(|t| t.with_timezone(&Utc)).map_err(Problem::bad_request)
}

pub(crate) async fn list(State(api): State<Api>, Query(q): Query<RunsQuery>) -> ApiResult<Json<RunPage>> {
    let dag_id = q.dag_id.clone();
    page(&api, dag_id, q).await
}

pub(crate) async fn list_of_dag(
    State(api): State<Api>,
    Path(dag_id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<RunPage>> {
    if q.dag_id.as_ref().is_some_and(|d| *d != dag_id) {
        return Err(Problem::bad_request("`dag_id` in the query names another DAG than the path"));
    }
    page(&api, Some(dag_id), q).await
}

async fn page(api: &Api, dag_id: Option<String>, q: RunsQuery) -> ApiResult<Json<RunPage>> {
    let n = limit(q.limit, 100, MAX_PAGE, "limit")?;
    let states = parse_list("run state", q.state.as_deref(), |s| s.parse::<RunState>().ok())?;
    let kinds = parse_list("run kind", q.kind.as_deref(), RunKind::from_name)?;
    let logical_from = q.from.as_deref().map(|s| bound(api, dag_id.as_deref(), s, false)).transpose()?;
    let logical_to = q.to.as_deref().map(|s| bound(api, dag_id.as_deref(), s, true)).transpose()?;
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    // One more than the page, to know whether another page follows.
    let filter = RunFilter { dag_id, states, kinds, logical_from, logical_to, after, limit: Some(n + 1) };
    let mut runs = api.store().runs(&filter).await?;
    let more = runs.len() > n as usize;
    runs.truncate(n as usize);
    let next_cursor = if more { runs.last().map(cursor_text) } else { None };
    let (count, count_capped) = if q.count {
        let c = api.store().count_runs(&filter, COUNT_CAP + 1).await?;
        (Some(c.min(u64::from(COUNT_CAP))), c > u64::from(COUNT_CAP))
    } else {
        (None, false)
    };
    Ok(Json(RunPage { runs: runs.iter().map(RunView::from).collect(), next_cursor, count, count_capped }))
}

/// The run a path names (by run id), in a DAG the store knows.
pub(crate) async fn find(api: &Api, dag_id: &str, run_id: &str) -> ApiResult<Run> {
    api.store()
        .run_by_run_id(dag_id, run_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("DAG `{dag_id}` has no run `{run_id}`")))
}

pub(crate) async fn one(
    State(api): State<Api>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<RunView>> {
    Ok(Json(RunView::from(&find(&api, &dag_id, &run_id).await?)))
}

fn unexpected() -> Problem {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the engine answered another command")
}

/// The header that makes a trigger idempotent: the same key on the same DAG gives the run
/// the first request created.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(crate) async fn trigger(
    State(api): State<Api>,
    Path(dag_id): Path<String>,
    headers: HeaderMap,
    Body(mut request): Body<TriggerRequest>,
) -> ApiResult<(StatusCode, Json<Triggered>)> {
    loaded_dag(&api, &dag_id)?;
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        let key = key.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= 255).ok_or_else(|| {
            Problem::bad_request("the Idempotency-Key header must be 1 to 255 visible ASCII characters")
        })?;
        request.idempotency_key = Some(key.to_string());
    }
    let conf = request.conf.clone();
    let Reply::Triggered(t) = api.act(Command::Trigger { dag_id, request }).await? else { return Err(unexpected()) };
    if !t.created && t.run.idempotency_key.is_some() && t.run.conf != conf {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key was already used for run `{}` with another conf: use a new key for a new run",
                t.run.run_id
            ),
        ));
    }
    let status = if t.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(t)))
}

pub(crate) async fn backfill(
    State(api): State<Api>,
    Path(dag_id): Path<String>,
    Body(request): Body<BackfillRequest>,
) -> ApiResult<Json<Backfilled>> {
    loaded_dag(&api, &dag_id)?;
    let Reply::Backfilled(b) = api.act(Command::Backfill { dag_id, request }).await? else { return Err(unexpected()) };
    Ok(Json(b))
}

/// `POST .../clear`: which tasks of the run to run again.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearBody {
    /// Only this task (else every task).
    #[serde(default)]
    pub task: Option<String>,
    /// With `task`: also everything downstream of it.
    #[serde(default)]
    pub downstream: bool,
    /// With `task`: also everything upstream of it.
    #[serde(default)]
    pub upstream: bool,
    /// Only tasks that failed (or were upstream_failed).
    #[serde(default)]
    pub failed_only: bool,
    /// List what would be cleared; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

pub(crate) async fn clear(
    State(api): State<Api>,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<ClearBody>,
) -> ApiResult<Json<Cleared>> {
    loaded_dag(&api, &dag_id)?;
    find(&api, &dag_id, &run_id).await?;
    let request = ClearRequest {
        run: RunSelector::RunId(run_id),
        task: body.task,
        downstream: body.downstream,
        upstream: body.upstream,
        failed_only: body.failed_only,
        dry_run: body.dry_run,
    };
    let Reply::Cleared(c) = api.act(Command::Clear { dag_id, request }).await? else { return Err(unexpected()) };
    Ok(Json(c))
}

/// `POST .../mark`: a task, or every unfinished task and the run, set by hand.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkBody {
    pub state: MarkState,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

pub(crate) async fn mark(
    State(api): State<Api>,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<MarkBody>,
) -> ApiResult<Json<Marked>> {
    loaded_dag(&api, &dag_id)?;
    find(&api, &dag_id, &run_id).await?;
    let request =
        MarkRequest { run: RunSelector::RunId(run_id), task: body.task, state: body.state, dry_run: body.dry_run };
    let Reply::Marked(m) = api.act(Command::Mark { dag_id, request }).await? else { return Err(unexpected()) };
    Ok(Json(m))
}

/// One line of `wait`'s NDJSON stream.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WaitLine {
    /// The run as it is when the wait starts.
    Run { run: RunView },
    /// An event of the run.
    Event { event: sluice_store::Event },
    /// The run is final: the last line.
    Final { state: RunState, run: RunView },
}

fn ndjson_line(line: &WaitLine) -> Vec<u8> {
    let mut out = serde_json::to_vec(line).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// `GET .../wait`: the run now, then each of its events as it commits, ending with a `final`
/// line once the run succeeded or failed (at once, for a run already final).
pub(crate) async fn wait(
    State(api): State<Api>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    // Follow the events before looking at the run: no change in between is missed.
    let feed = Feed::new(&api, None, Some(dag_id.clone()), Some(run_id.clone())).await?;
    let run = find(&api, &dag_id, &run_id).await?;
    let state =
        WaitState { api: api.clone(), first: Some(run), dag_id, run_id, feed, done: false, closing: api.closing() };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let line = st.next_lines().await?;
        Some((Ok::<_, std::io::Error>(line), st))
    });
    let mut response = HttpBody::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

struct WaitState {
    api: Api,
    first: Option<Run>,
    dag_id: String,
    run_id: String,
    feed: Feed,
    done: bool,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl WaitState {
    /// The next line(s) of the stream; `None` once the final line went out (or the server stops).
    async fn next_lines(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        if let Some(run) = self.first.take() {
            let view = RunView::from(&run);
            return Some(if run.state.is_finished() {
                self.done = true;
                ndjson_line(&WaitLine::Final { state: run.state, run: view })
            } else {
                ndjson_line(&WaitLine::Run { run: view })
            });
        }
        let event = tokio::select! {
            e = self.feed.next() => e.ok()?,
            _ = self.closing.wait_for(|c| *c) => return None,
        };
        let finished = matches!(event.kind, EventKind::RunFinished { .. });
        let mut out = ndjson_line(&WaitLine::Event { event });
        if finished {
            if let Ok(Some(run)) = self.api.store().run_by_run_id(&self.dag_id, &self.run_id).await {
                if run.state.is_finished() {
                    self.done = true;
                    out.extend(ndjson_line(&WaitLine::Final { state: run.state, run: RunView::from(&run) }));
                }
            }
        }
        Some(out)
    }
}
