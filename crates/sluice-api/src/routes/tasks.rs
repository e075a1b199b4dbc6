//! A run's task instances, a task's tries, a try's log (from a byte offset, and followed as
//! the file grows until the try ends), and a task's keys as its templates render for the run.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_scheduler::views::{RunDetailView, TaskInstanceView, TryView};
use sluice_store::{Run, TaskState, Try};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::dags::loaded_dag;
use super::runs::find;
use super::{Path, Query};
use crate::error::{ApiResult, Problem};
use crate::Api;

pub(crate) async fn list(
    State(api): State<Api>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<TaskInstanceView>>> {
    let dag = loaded_dag(&api, &dag_id)?;
    let run = find(&api, &dag_id, &run_id).await?;
    Ok(Json(RunDetailView::load(api.store(), &dag, &run, api.logs()).await?.tasks))
}

async fn task_tries(api: &Api, run: &Run, task_id: &str) -> ApiResult<Vec<Try>> {
    let tis = api.store().task_instances(run.id).await?;
    if !tis.iter().any(|t| t.task_id == task_id) {
        return Err(Problem::not_found(format!("run `{}` has no task `{task_id}`", run.run_id)));
    }
    Ok(api.store().tries(run.id, Some(task_id)).await?)
}

pub(crate) async fn tries(
    State(api): State<Api>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<TryView>>> {
    let run = find(&api, &dag_id, &run_id).await?;
    let tries = task_tries(&api, &run, &task_id).await?;
    Ok(Json(tries.iter().map(|t| TryView::new(&run, t, api.logs())).collect()))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Start at this byte of the log (default 0).
    #[serde(default)]
    pub offset: u64,
    /// Keep the response open and send what the try writes, until it ends.
    #[serde(default)]
    pub follow: bool,
}

/// The size of the log when the answer was made (for the next `offset`).
const LOG_SIZE: HeaderName = HeaderName::from_static("x-log-size");
/// How often a followed log is looked at for new bytes (as `tail -f` does).
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// The most bytes one read sends.
const CHUNK: usize = 64 * 1024;

/// The try's log file, checked to lie inside the log folder. Its path is built from the
/// store's names for the run, the task and the try, never from the request's text.
fn log_file(api: &Api, run: &Run, t: &Try) -> ApiResult<PathBuf> {
    let path = TryView::new(run, t, api.logs()).log;
    let root = std::fs::canonicalize(api.logs()).ok();
    let inside = match (root, path.parent().and_then(|p| std::fs::canonicalize(p).ok())) {
        (Some(root), Some(dir)) => dir.starts_with(&root),
        // The folder does not exist yet: nothing was written, nothing can be read.
        _ => !path.components().any(|c| matches!(c, std::path::Component::ParentDir)),
    };
    if !inside {
        return Err(Problem::not_found("the try's log is not in the log folder"));
    }
    Ok(path)
}

async fn read_from(path: &PathBuf, offset: u64, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let size = file.metadata().await?.len();
    if offset >= size {
        return Ok((Vec::new(), size));
    }
    file.seek(SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(max.min((size - offset) as usize));
    file.take(max as u64).read_to_end(&mut buf).await?;
    Ok((buf, size))
}

pub(crate) async fn log(
    State(api): State<Api>,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, u32)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let run = find(&api, &dag_id, &run_id).await?;
    let tries = task_tries(&api, &run, &task_id).await?;
    let t = tries
        .iter()
        .find(|t| t.try_number == try_number)
        .ok_or_else(|| Problem::not_found(format!("task `{task_id}` of run `{run_id}` has no try {try_number}")))?;
    let path = log_file(&api, &run, t)?;
    let io = |e: std::io::Error| {
        Problem::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the log: {e}"))
    };
    if !q.follow || t.state != TaskState::Running {
        let (bytes, size) = read_from(&path, q.offset, usize::MAX >> 1).await.map_err(io)?;
        let mut response = bytes.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        headers.insert(LOG_SIZE, HeaderValue::from(size));
        return Ok(response);
    }
    let follow = Follow {
        api: api.clone(),
        run_key: run.id,
        task_id,
        try_number,
        path,
        offset: q.offset,
        ended: false,
        closing: api.closing(),
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let chunk = f.next().await?;
        Some((Ok::<_, std::io::Error>(chunk), f))
    });
    let mut response = HttpBody::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}

struct Follow {
    api: Api,
    run_key: i64,
    task_id: String,
    try_number: u32,
    path: PathBuf,
    offset: u64,
    /// The try has ended: what is left of the file is sent, then the stream ends.
    ended: bool,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Follow {
    async fn still_running(&self) -> bool {
        match self.api.store().tries(self.run_key, Some(&self.task_id)).await {
            Ok(tries) => tries.iter().any(|t| t.try_number == self.try_number && t.state == TaskState::Running),
            Err(_) => false,
        }
    }

    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            let (bytes, _) = read_from(&self.path, self.offset, CHUNK).await.ok()?;
            if !bytes.is_empty() {
                self.offset += bytes.len() as u64;
                return Some(bytes);
            }
            if self.ended || *self.closing.borrow() {
                return None;
            }
            // Whether the try ended is read before the next look at the file, so the bytes it
            // wrote before ending are all sent.
            self.ended = !self.still_running().await;
            if !self.ended {
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                    _ = self.closing.wait_for(|c| *c) => {}
                }
            }
        }
    }
}

/// A task's keys with their templates rendered for a run: what the template produced.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RenderedKeys {
    pub task_id: String,
    /// The task's operator.
    pub operator: String,
    /// The rendered keys; absent when a template does not render (see `error`). An output of
    /// an upstream that has none yet (not run, or failed) shows as `<tasks.ID.FIELD>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<serde_json::Value>,
    /// Why the keys do not render, if they do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The task's keys rendered as `dagctl render` renders them (`Dag::render_for_display`), for
/// this run: its dates, its conf over the DAG's `[params]`, and the outputs its upstreams
/// stored. The DAG is the one loaded now: the store keeps the last version that loaded, not
/// each run's. Like `dagctl render`, nothing is hidden: the keys are the DAG file's, which
/// `GET /api/v1/dags/{dag_id}` shows too, and the template context holds no secret.
pub(crate) async fn rendered(
    State(api): State<Api>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<RenderedKeys>> {
    let dag = loaded_dag(&api, &dag_id)?;
    let run = find(&api, &dag_id, &run_id).await?;
    let task = dag.task(&task_id).ok_or_else(|| {
        Problem::not_found(format!("DAG `{dag_id}` has no task `{task_id}` now (its file may have dropped it)"))
    })?;
    let outputs = api.store().outputs(run.id).await?;
    let dates = sluice_scheduler::engine::run_dates(&dag, &run);
    let (keys, error) = match dag.render_for_display(task, &run.run_id, &dates, run.conf.as_ref(), outputs) {
        Ok(keys) => (Some(keys), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Json(RenderedKeys { task_id, operator: task.operator.kind().to_string(), keys, error }))
}
