//! The routes, one file per resource, and the extractors that turn bad input into a 400 (or
//! 413, 415) problem instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::error::Problem;
use crate::Api;

mod dags;
mod events;
mod feed;
mod health;
mod runs;
mod tasks;
mod tokens;

pub(crate) use feed::Feed;

pub(crate) fn router() -> Router<Api> {
    let v1 = Router::new()
        .route("/dags", get(dags::list))
        .route("/dags/{dag_id}", get(dags::one))
        .route("/dags/{dag_id}/pause", post(dags::pause))
        .route("/dags/{dag_id}/unpause", post(dags::unpause))
        .route("/dags/{dag_id}/grid", get(dags::grid))
        .route("/dags/{dag_id}/backfill", post(runs::backfill))
        .route("/dags/{dag_id}/runs", get(runs::list_of_dag).post(runs::trigger))
        .route("/dags/{dag_id}/runs/{run_id}", get(runs::one))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(runs::clear))
        .route("/dags/{dag_id}/runs/{run_id}/mark", post(runs::mark))
        .route("/dags/{dag_id}/runs/{run_id}/wait", get(runs::wait))
        .route("/dags/{dag_id}/runs/{run_id}/tasks", get(tasks::list))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/tries", get(tasks::tries))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/tries/{try_number}/log", get(tasks::log))
        .route("/runs", get(runs::list))
        .route("/events", get(events::list))
        .route("/events/stream", get(events::stream))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", delete(tokens::revoke))
        .route("/openapi.json", get(crate::openapi::serve));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint: the API is under /api/v1 (see /api/v1/openapi.json)")
}

async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method (see /api/v1/openapi.json)")
}

/// A JSON request body; an empty body is `{}` (every field has its default).
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| {
            let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| Problem::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"{}")
                .map(Body)
                .map_err(|e| Problem::bad_request(format!("a body is needed: {e}")));
        }
        if json_type == Some(false) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"));
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// A query string.
pub(crate) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

/// Path parameters.
pub(crate) struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

/// A limit from a query, within `1..=max`, `default` when absent.
pub(crate) fn limit(given: Option<u32>, default: u32, max: u32, name: &str) -> Result<u32, Problem> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(format!("`{name}` is {n}: it must be 1 to {max}"))),
    }
}
