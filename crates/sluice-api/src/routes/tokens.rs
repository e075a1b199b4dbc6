//! `/api/v1/tokens` (admin): list, create (the secret is in this answer only), revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sluice_store::TokenRow;

use super::{Body, Path};
use crate::auth::{self, CreatedToken, Role, TokenError};
use crate::error::{ApiResult, Problem};
use crate::Api;

pub(crate) async fn list(State(api): State<Api>) -> ApiResult<Json<Vec<TokenRow>>> {
    Ok(Json(api.store().tokens().await?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// 1 to 100 printable characters, unique among live tokens.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    pub role: Role,
    /// How long it is valid (`90d`, `12h`); none: until revoked.
    #[serde(default)]
    pub expires_in: Option<String>,
}

pub(crate) async fn create(
    State(api): State<Api>,
    Body(body): Body<NewTokenBody>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let expires = body
        .expires_in
        .as_deref()
        .map(|s| s.parse::<sluice_dag::Duration>().map(|d| d.as_std()))
        .transpose()
        .map_err(|e| Problem::bad_request(format!("expires_in: {e}")))?;
    match auth::create_token(api.store(), &body.name, body.role, expires, api.now()).await {
        Ok(created) => Ok((StatusCode::CREATED, Json(created))),
        Err(TokenError::Invalid(m)) => Err(Problem::bad_request(m)),
        Err(TokenError::Store(sluice_store::StoreError::Conflict(m))) => Err(Problem::new(StatusCode::CONFLICT, m)),
        Err(TokenError::Store(e)) => Err(e.into()),
    }
}

pub(crate) async fn revoke(State(api): State<Api>, Path(name): Path<String>) -> ApiResult<Json<TokenRow>> {
    api.store()
        .revoke_token(&name, api.now())
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no live token is named `{name}`")))
}

/// `GET /api/v1/me`: who the caller is, so a client shows only what it may do.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Me {
    /// The token's name; none for a local caller without a token.
    pub name: Option<String>,
    /// What the caller may do: a local caller (loopback, no token configured) may do
    /// everything, as `admin`.
    pub role: Role,
}

pub(crate) async fn me(caller: Option<axum::Extension<crate::Caller>>) -> Json<Me> {
    Json(match caller.map(|c| c.0) {
        Some(crate::Caller::Token { name, role }) => Me { name: Some(name), role },
        Some(crate::Caller::Local) | None => Me { name: None, role: Role::Admin },
    })
}
