//! The routes, one file per resource, and the extractors that turn bad input into a 400 (or
//! 413, 415) problem instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::error::Problem;
use crate::Api;

pub(crate) mod dags;
pub(crate) mod events;
mod feed;
pub(crate) mod health;
pub(crate) mod runs;
pub(crate) mod tasks;
pub(crate) mod tokens;

pub(crate) use feed::Feed;

/// Every endpoint: its method, its path (axum's `{param}` syntax, which is OpenAPI's) and its
/// handler. The router is built from this table and nothing else, and [`routes`] lists it, so
/// the OpenAPI document (`crate::openapi`, whose test holds it equal to [`routes`]) cannot
/// miss an endpoint or document one that is not served.
macro_rules! endpoints {
    ($($method:ident $path:literal => $handler:expr,)*) => {
        fn endpoints() -> Vec<(Method, &'static str, MethodRouter<Api>)> {
            vec![$((Method::$method, $path, on(MethodFilter::$method, $handler)),)*]
        }
    };
}

endpoints! {
    GET "/healthz" => health::healthz,
    GET "/readyz" => health::readyz,
    GET "/metrics" => health::metrics,
    GET "/api/v1/dags" => dags::list,
    GET "/api/v1/dags/{dag_id}" => dags::one,
    POST "/api/v1/dags/{dag_id}/pause" => dags::pause,
    POST "/api/v1/dags/{dag_id}/unpause" => dags::unpause,
    GET "/api/v1/dags/{dag_id}/grid" => dags::grid,
    GET "/api/v1/dags/{dag_id}/graph" => dags::graph,
    GET "/api/v1/dags/{dag_id}/calendar" => dags::calendar,
    POST "/api/v1/dags/{dag_id}/backfill" => runs::backfill,
    GET "/api/v1/dags/{dag_id}/runs" => runs::list_of_dag,
    POST "/api/v1/dags/{dag_id}/runs" => runs::trigger,
    GET "/api/v1/dags/{dag_id}/runs/{run_id}" => runs::one,
    POST "/api/v1/dags/{dag_id}/runs/{run_id}/clear" => runs::clear,
    POST "/api/v1/dags/{dag_id}/runs/{run_id}/mark" => runs::mark,
    GET "/api/v1/dags/{dag_id}/runs/{run_id}/wait" => runs::wait,
    GET "/api/v1/dags/{dag_id}/runs/{run_id}/tasks" => tasks::list,
    GET "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/tries" => tasks::tries,
    GET "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/tries/{try_number}/log" => tasks::log,
    GET "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/rendered" => tasks::rendered,
    GET "/api/v1/runs" => runs::list,
    GET "/api/v1/events" => events::list,
    GET "/api/v1/events/stream" => events::stream,
    GET "/api/v1/me" => tokens::me,
    GET "/api/v1/tokens" => tokens::list,
    POST "/api/v1/tokens" => tokens::create,
    DELETE "/api/v1/tokens/{name}" => tokens::revoke,
    GET "/api/v1/openapi.json" => crate::openapi::serve,
}

/// The method and path of every endpoint the router serves, in the table's order.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints().into_iter().map(|(method, path, _)| (method, path)).collect()
}

pub(crate) fn router() -> Router<Api> {
    // Two methods on one path are merged by axum into one route.
    endpoints()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| router.route(path, handler))
        .merge(sluice_ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// A path no endpoint serves: the web UI's page for a view's path (`/`, `/dags/ID`), else a
/// 404 problem (everything under `/api/` among them).
async fn not_found(method: Method, uri: axum::http::Uri, headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    if sluice_ui::is_public(&method, uri.path()) && sluice_ui::is_page(uri.path()) {
        return sluice_ui::page(&headers);
    }
    Problem::not_found("no such endpoint: the API is under /api/v1 (see /api/v1/openapi.json)").into_response()
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
