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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
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
