//! Sluice's HTTP API: `/api/v1` (REST, JSON, errors as RFC 7807 problems), the live event
//! stream (Server-Sent Events from the store's broadcast), `/metrics` (Prometheus),
//! `/healthz` and `/readyz`; and the web UI ([`sluice_ui`]) at `/`.
//!
//! It is glue over the same library calls as `dagctl`: listings are
//! [`sluice_scheduler::views`], actions are [`sluice_scheduler::actions`]. Inside the daemon,
//! actions go through the engine's command channel, so the engine acts on them in the same
//! turn; in `dagctl server` (no engine) they are written to the store, where the daemon finds
//! them within a second. The API knows no backend and no AWS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Utc};
use sluice_scheduler::daemon::Handles;
use sluice_scheduler::{Catalog, Clock, Command, Commands, Reply, SystemClock};
use sluice_store::Store;
use tokio::sync::watch;

pub mod auth;
pub mod error;
pub mod metrics;
mod openapi;
mod routes;
pub mod tls;

pub use auth::{Caller, Gate, Role};
pub use error::Problem;
pub use openapi::document as openapi_document;
pub use routes::routes;

/// The largest request body the API reads (a trigger's `conf` included): 1 MiB.
pub const MAX_BODY: usize = 1 << 20;

/// How long the scheduler loop may go without a turn before `/readyz` says it is stalled. An
/// idle loop turns once a second.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(30);

/// Everything a request handler reads: cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// The handle the engine commits through: live events come from its broadcast.
    events: Arc<dyn Store>,
    catalog: watch::Receiver<Arc<Catalog>>,
    engine: Option<Handles>,
    logs: PathBuf,
    clock: Arc<dyn Clock>,
    gate: Gate,
    stall_after: Duration,
    metrics: metrics::Metrics,
    grids: routes::dags::GridCache,
    /// Turns true when the server stops: every open stream ends then.
    closing: watch::Sender<bool>,
}

/// How an [`Api`] is put together.
pub struct ApiBuilder {
    store: Arc<dyn Store>,
    events: Option<Arc<dyn Store>>,
    catalog: watch::Receiver<Arc<Catalog>>,
    engine: Option<Handles>,
    logs: PathBuf,
    clock: Arc<dyn Clock>,
    require_tokens: bool,
    stall_after: Duration,
}

impl ApiBuilder {
    /// In the daemon: actions go through the engine, `/readyz` watches its loop.
    pub fn engine(mut self, handles: Handles) -> ApiBuilder {
        self.engine = Some(handles);
        self
    }

    /// The store handle the engine commits through, when the API reads through another one
    /// (its own, so that its reads never queue behind the engine's): live events are taken
    /// from this handle's broadcast. Default: the store the API reads.
    pub fn events_from(mut self, store: Arc<dyn Store>) -> ApiBuilder {
        self.events = Some(store);
        self
    }

    /// "Now" for token expiry and readiness (tests step a simulated clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> ApiBuilder {
        self.clock = clock;
        self
    }

    /// Needs a token on every request but the health checks, even before one exists: what a
    /// bind off loopback gets.
    pub fn require_tokens(mut self, yes: bool) -> ApiBuilder {
        self.require_tokens = yes;
        self
    }

    pub fn stall_after(mut self, d: Duration) -> ApiBuilder {
        self.stall_after = d;
        self
    }

    pub fn build(self) -> Api {
        let events = self.events.unwrap_or_else(|| self.store.clone());
        let live = self.engine.as_ref().map(|_| events.subscribe());
        let metrics = metrics::Metrics::new(self.store.clone(), self.engine.as_ref().map(|h| h.stats.clone()), live);
        Api {
            inner: Arc::new(Inner {
                store: self.store,
                events,
                catalog: self.catalog,
                engine: self.engine,
                logs: self.logs,
                clock: self.clock,
                gate: Gate::new(self.require_tokens),
                stall_after: self.stall_after,
                metrics,
                grids: routes::dags::GridCache::default(),
                closing: watch::channel(false).0,
            }),
        }
    }
}

impl Api {
    /// An API over `store`, the DAGs of `catalog` and the try logs under `logs`.
    pub fn builder(store: Arc<dyn Store>, catalog: watch::Receiver<Arc<Catalog>>, logs: PathBuf) -> ApiBuilder {
        ApiBuilder {
            store,
            events: None,
            catalog,
            engine: None,
            logs,
            clock: Arc::new(SystemClock),
            require_tokens: false,
            stall_after: DEFAULT_STALL_AFTER,
        }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(crate) fn store_handle(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The store whose broadcast carries the engine's events (see [`ApiBuilder::events_from`]).
    pub(crate) fn events_store(&self) -> &dyn Store {
        self.inner.events.as_ref()
    }

    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.borrow().clone()
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn logs(&self) -> &std::path::Path {
        &self.inner.logs
    }

    pub(crate) fn engine(&self) -> Option<&Handles> {
        self.inner.engine.as_ref()
    }

    pub(crate) fn commands(&self) -> Option<&Commands> {
        self.inner.engine.as_ref().map(|h| &h.commands)
    }

    pub(crate) fn stall_after(&self) -> Duration {
        self.inner.stall_after
    }

    /// Turns true when the server stops (streams end on it).
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Ends every open stream (SSE, `wait`, log follow): a server stopping does not wait for
    /// clients that never hang up.
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) fn grids(&self) -> &routes::dags::GridCache {
        &self.inner.grids
    }

    /// Carries out an action: through the engine when there is one, else on the store.
    pub(crate) async fn act(&self, command: Command) -> Result<Reply, Problem> {
        if let Some(commands) = self.commands() {
            return Ok(commands.send(command).await?);
        }
        use sluice_scheduler::actions;
        let catalog = self.catalog();
        let dag_id = command.dag_id().to_string();
        let dag = catalog.dag(&dag_id).ok_or_else(|| Problem::not_found(format!("no DAG `{dag_id}` is loaded")))?;
        let (store, now) = (self.store(), self.now());
        Ok(match &command {
            Command::Trigger { request, .. } => Reply::Triggered(actions::trigger(store, dag, request, now).await?),
            Command::Backfill { request, .. } => Reply::Backfilled(actions::backfill(store, dag, request, now).await?),
            Command::Clear { request, .. } => Reply::Cleared(actions::clear(store, dag, request, now).await?),
            Command::Mark { request, .. } => Reply::Marked(actions::mark(store, dag, request, now).await?),
            Command::SetPaused { paused, .. } => Reply::Paused(actions::set_paused(store, &dag.id, *paused).await?),
        })
    }

    /// The whole HTTP surface.
    pub fn router(&self) -> Router {
        routes::router()
            .layer(middleware::from_fn_with_state(self.clone(), authorize))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(middleware::from_fn(refuse_large_bodies))
            .with_state(self.clone())
    }
}

/// Refuses a body whose declared length is over [`MAX_BODY`] at once, before reading it (a
/// body without a length is cut at the limit as it is read).
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let declared =
        request.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(len) if len > MAX_BODY as u64 => Problem::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is {len} bytes; the API reads at most {MAX_BODY}"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Checks the caller's token against what the request needs; health checks are open.
async fn authorize(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // The health checks, and the web UI's page and assets (no data: the page asks for a
    // token when the API answers 401).
    if matches!(path, "/healthz" | "/readyz") || sluice_ui::is_public(request.method(), path) {
        return next.run(request).await;
    }
    let needed = Role::needed(request.method(), path);
    match api.inner.gate.check(api.store(), request.headers(), needed, api.now()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// Why the API cannot listen where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("invalid API address `{0}`: write HOST:PORT, e.g. 127.0.0.1:8080")]
    Address(String),
    #[error(
        "refusing to serve the API on {0} without authentication: create a token first (dagctl tokens create --name NAME --role admin), or bind to 127.0.0.1"
    )]
    NoAuth(SocketAddr),
    #[error("cannot listen on {addr}: {source} (set [api] bind or --api-bind, or --no-api)")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
}

/// A socket the API listens on, and whether every request on it needs a token.
pub struct Listening {
    pub listener: tokio::net::TcpListener,
    /// The address bound (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Off loopback: a token is needed even before one exists.
    pub require_tokens: bool,
}

/// Binds the API's socket. An address off loopback is refused while no live token exists, so
/// the API is never open to the network by accident.
pub async fn listen(bind: &str, store: &dyn Store, now: DateTime<Utc>) -> Result<Listening, ListenError> {
    let addr: SocketAddr = match bind.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(bind)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ListenError::Address(bind.to_string()))?,
    };
    let loopback = addr.ip().is_loopback();
    if !loopback && !store.has_live_tokens(now).await? {
        return Err(ListenError::NoAuth(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ListenError::Io { addr, source })?;
    let addr = listener.local_addr().map_err(|source| ListenError::Io { addr, source })?;
    Ok(Listening { listener, addr, require_tokens: !loopback })
}

/// Serves the API on `listener` until `shutdown` resolves; streams in flight are ended then.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = api.router();
    let stop = async move {
        shutdown.await;
        api.close_streams();
    };
    axum::serve(listener, router).with_graceful_shutdown(stop).await
}

/// [`serve`] over HTTPS (the acceptor from [`tls::acceptor`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    api: Api,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, acceptor)?;
    let router = api.router();
    let stop = async move {
        shutdown.await;
        api.close_streams();
    };
    axum::serve(listener, router).with_graceful_shutdown(stop).await
}
