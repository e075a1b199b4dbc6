//! What `dagctl scheduler` and `dagctl server` share to serve the HTTP API.

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

/// Serves `api` on its socket in the background until `stop` turns true.
pub fn spawn(prepared: Prepared, api: sluice_api::Api, mut stop: watch::Receiver<bool>) {
    let Prepared { listening, tls } = prepared;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %format!("{scheme}://{}", listening.addr), "API listening");
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        let served = match tls {
            None => sluice_api::serve(listening.listener, api, shutdown).await.context("the API stopped"),
            Some(acceptor) => sluice_api::serve_tls(listening.listener, api, acceptor, shutdown)
                .await
                .context("the API (HTTPS) stopped"),
        };
        if let Err(e) = served {
            tracing::error!(error = %format!("{e:#}"), "API server failed");
        }
    });
}
