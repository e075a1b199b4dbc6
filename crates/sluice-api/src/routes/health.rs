//! `/healthz` (the process answers), `/readyz` (the scheduler loop turns and the store takes
//! writes) and `/metrics`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::Api;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Health {
    #[schemars(extend("const" = "ok"))]
    pub status: &'static str,
}

pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One check of `/readyz`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// `GET /readyz`: 200 when every check passes, else 503 with the reasons.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schemars(extend("enum" = ["ready", "not_ready"]))]
    pub status: &'static str,
    pub checks: Vec<Check>,
}

pub(crate) async fn readyz(State(api): State<Api>) -> Response {
    let mut checks = Vec::new();
    if let Some(engine) = api.engine() {
        let limit = api.stall_after();
        let (ok, detail) = match engine.stats.last_turn_at() {
            None => (false, "the scheduler loop has not finished its first turn".to_string()),
            Some(at) => {
                let ago = (api.now() - at).to_std().unwrap_or_default();
                if ago > limit {
                    let detail = format!(
                        "the scheduler loop last turned {} s ago (an idle loop turns every second; stalled after {} s)",
                        ago.as_secs(),
                        limit.as_secs()
                    );
                    (false, detail)
                } else {
                    (true, format!("last turn {} ms ago", ago.as_millis()))
                }
            }
        };
        checks.push(Check { name: "scheduler_loop", ok, detail });
    }
    let (ok, detail) = match api.store().check_writable().await {
        Ok(()) => (true, "writable".to_string()),
        Err(e) => (false, format!("the store cannot be written: {e}")),
    };
    checks.push(Check { name: "store", ok, detail });
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { status: if ready { "ready" } else { "not_ready" }, checks })).into_response()
}

pub(crate) async fn metrics(State(api): State<Api>) -> Response {
    let body = api.metrics().render().await;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
