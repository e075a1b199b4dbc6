//! `/api/v1/openapi.json`. (Being written: generated from the Rust types.)

use axum::Json;

pub(crate) async fn serve() -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"openapi": "3.1.0", "info": {"title": "Sluice", "version": env!("CARGO_PKG_VERSION")}, "paths": {}}),
    )
}
