//! What `dagctl scheduler` and `dagctl server` share to serve the HTTP API.

use std::sync::Arc;

use anyhow::{Context, Result};
use sluice_scheduler::Config;
use sluice_store::Store;
use tokio::sync::watch;

/// The API's socket, bound, and its TLS identity when `[api]` gives one.
pub struct Prepared {
    listening: sluice_api::Listening,
    tls: Option<sluice_api::tls::TlsAcceptor>,
}

impl Prepared {
    pub fn require_tokens(&self) -> bool {
        self.listening.require_tokens
    }
}

/// Binds the API's socket as `[api]` says (refusing an address off loopback without a token)
/// and reads its certificate: any problem stops the command before anything runs.
pub async fn listen(config: &Config, store: &dyn Store) -> Result<Prepared> {
    let tls = match (&config.api.tls_cert, &config.api.tls_key) {
        (Some(cert), Some(key)) => Some(sluice_api::tls::acceptor(cert, key)?),
        _ => None,
    };
    let listening = sluice_api::listen(&config.api.bind, store, chrono::Utc::now()).await?;
    Ok(Prepared { listening, tls })
}

/// Serves `api` on its socket in the background (on the current runtime) until `stop` turns
/// true.
pub fn spawn(prepared: Prepared, api: sluice_api::Api, stop: watch::Receiver<bool>) {
    tokio::spawn(serve(prepared, api, stop));
}

/// How much lower than the scheduler's the priority of the API's threads is (`nice`).
const API_NICENESS: i32 = 10;

/// Serves the API beside a scheduler: on a runtime of its own whose threads run at a lower
/// priority than the engine's (nice 10), reading through a store handle of its own (opened on
/// that runtime, so its connections' threads have that priority too). The engine then never
/// waits for a request: under a load that keeps both cores busy its task latency stays what
/// it is on a quiet daemon (`dagctl bench --scenario api`), and requests take what is left.
/// `build` makes the API over that handle.
pub fn spawn_apart(
    prepared: Prepared,
    db: String,
    build: impl FnOnce(Arc<dyn Store>) -> sluice_api::Api + Send + 'static,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let Prepared { listening, tls } = prepared;
    let sluice_api::Listening { listener, addr, require_tokens } = listening;
    // Moved to the new runtime's reactor: the socket's readiness is then its own.
    let listener = listener.into_std().context("cannot hand the API's socket over")?;
    std::thread::Builder::new()
        .name("sluice-api".into())
        .spawn(move || {
            if !sluice_scheduler::daemon::lower_thread_priority(API_NICENESS) {
                tracing::warn!("cannot lower the API threads' priority; they run at the scheduler's");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sluice-api")
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => return tracing::error!(error = %e, "cannot start the API's runtime"),
            };
            runtime.block_on(async move {
                let store = match sluice_store::open(&db).await {
                    Ok(s) => s,
                    Err(e) => return tracing::error!(error = %e, "the API cannot open the database"),
                };
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "the API cannot take its socket"),
                };
                let prepared = Prepared { listening: sluice_api::Listening { listener, addr, require_tokens }, tls };
                serve(prepared, build(store), stop).await;
            });
        })
        .context("cannot start the API's thread")?;
    Ok(())
}

async fn serve(prepared: Prepared, api: sluice_api::Api, mut stop: watch::Receiver<bool>) {
    let Prepared { listening, tls } = prepared;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %format!("{scheme}://{}", listening.addr), "API listening");
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = match tls {
        None => sluice_api::serve(listening.listener, api, shutdown).await.context("the API stopped"),
        Some(acceptor) => {
            sluice_api::serve_tls(listening.listener, api, acceptor, shutdown).await.context("the API (HTTPS) stopped")
        }
    };
    if let Err(e) = served {
        tracing::error!(error = %format!("{e:#}"), "API server failed");
    }
}
