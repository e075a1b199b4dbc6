//! API tokens and who may do what.
//!
//! A token is 32 random bytes, shown once as `slc_` and 64 hex digits; the store keeps only
//! its SHA-256 (a token is a random key, not a password: a slow hash would add nothing but
//! latency to every request). It is sent as `Authorization: Bearer slc_...`. Roles are
//! ordered: a `viewer` reads, an `operator` also triggers, backfills, clears, marks and
//! pauses, an `admin` also manages tokens.
//!
//! Without a token, a request is served only when the API listens on loopback and no live
//! token exists (local use); once a token exists, or on any other address, every request but
//! the health checks needs one. A wrong, expired or revoked token is a 401 that says nothing
//! more; a token whose role is too weak, a 403.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_store::{NewToken, Store, StoreError, TokenRow};

use crate::error::Problem;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}`: use viewer, operator or admin")),
        }
    }

    /// The role a request needs: reads need `viewer`, token management `admin`, any other
    /// change `operator`.
    pub fn needed(method: &Method, path: &str) -> Role {
        if path.starts_with("/api/v1/tokens") {
            Role::Admin
        } else if method == Method::GET || method == Method::HEAD {
            Role::Viewer
        } else {
            Role::Operator
        }
    }
}

const PREFIX: &str = "slc_";

/// The stored form of a token's secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new secret, with its hash.
pub fn new_secret() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    let secret = format!("{PREFIX}{}", hex::encode(bytes));
    let hashed = hash(&secret);
    Ok((secret, hashed))
}

/// A token just created: the secret (shown once, never stored) and its row.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub row: TokenRow,
}

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a token: what `dagctl tokens create` and `POST /api/v1/tokens` call.
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    role: Role,
    expires_in: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<CreatedToken, TokenError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control()) {
        return Err(TokenError::Invalid("a token's name is 1 to 100 printable characters".into()));
    }
    let expires_at = match expires_in {
        None => None,
        Some(d) => {
            let d = chrono::Duration::from_std(d).ok().filter(|d| *d > chrono::Duration::zero());
            let at = d.and_then(|d| now.checked_add_signed(d)).filter(|t| t.timestamp() < 253_402_300_799);
            Some(at.ok_or_else(|| {
                TokenError::Invalid("the expiry must be more than 0 s and before the year 10000".into())
            })?)
        }
    };
    let (token, hash) = new_secret().map_err(TokenError::Invalid)?;
    let row = store
        .create_token(&NewToken { name: name.to_string(), role: role.name().to_string(), hash, expires_at }, now)
        .await?;
    Ok(CreatedToken { token, row })
}

/// Whether a token row is usable at `now`.
pub fn is_live(row: &TokenRow, now: DateTime<Utc>) -> bool {
    row.revoked_at.is_none() && row.expires_at.is_none_or(|e| e > now)
}

/// How a server decides who may call it.
pub struct Gate {
    /// Listening off loopback: a token is needed even when none exists yet.
    require_tokens: bool,
    /// When each token's `last_used_at` was last written (at most once a minute).
    touched: Mutex<HashMap<i64, Instant>>,
}

/// Who called.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No token, on loopback with no token configured.
    Local,
    Token {
        name: String,
        role: Role,
    },
}

const TOUCH_EVERY: Duration = Duration::from_secs(60);

fn unauthorized() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "a valid API token is needed: send `Authorization: Bearer <token>` (dagctl tokens create)",
    )
}

impl Gate {
    pub fn new(require_tokens: bool) -> Gate {
        Gate { require_tokens, touched: Mutex::new(HashMap::new()) }
    }

    /// Checks a request's token against the role it needs.
    pub async fn check(
        &self,
        store: &dyn Store,
        headers: &HeaderMap,
        needed: Role,
        now: DateTime<Utc>,
    ) -> Result<Caller, Problem> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            if self.require_tokens || store.has_live_tokens(now).await? {
                return Err(unauthorized());
            }
            return Ok(Caller::Local);
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|s| s.starts_with(PREFIX) && s.len() <= 200)
            .ok_or_else(unauthorized)?;
        let row = store.token_by_hash(&hash(secret)).await?.filter(|r| is_live(r, now)).ok_or_else(unauthorized)?;
        let role = Role::parse(&row.role).map_err(|_| unauthorized())?;
        if role < needed {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("this token's role `{}` may not do this: it needs `{}`", role.name(), needed.name()),
            ));
        }
        let touch = {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            let due = touched.get(&row.id).is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
            if due {
                touched.insert(row.id, Instant::now());
            }
            due
        };
        if touch {
            store.touch_token(row.id, now).await?;
        }
        Ok(Caller::Token { name: row.name, role })
    }
}
