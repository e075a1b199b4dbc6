//! `dagctl server`: the HTTP API without a scheduler.

use anyhow::Result;
use tokio::sync::watch;

use crate::context::Ctx;
use crate::exit;

/// Serve the HTTP API (and, later, the web UI) without scheduling: it reads the store and
/// writes actions to it, which the daemon picks up within a second. For a host apart from the
/// daemon's, on the same database.
#[derive(clap::Args)]
pub struct Args {
    /// Where the API listens [default: [api] bind, else 127.0.0.1:8080].
    #[arg(long, env = "SLUICE_API_BIND")]
    api_bind: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    crate::output::init_tracing(args.log_json);
    let mut config = ctx.config.clone();
    if let Some(bind) = args.api_bind {
        config.api.bind = bind;
    }
    let store = ctx.store().await?;
    let listening = crate::api::listen(&config, store.as_ref()).await?;
    // The folder as the daemon loads it: alert rules checked against `[channels]`.
    let checks = sluice_dag::LoadChecks { channels: Some(config.declared_channels()) };
    let (catalog, _watcher) = sluice_scheduler::daemon::watch_catalog(config.dags.clone(), checks).await?;
    let api = sluice_api::Api::builder(store, catalog, config.logs.clone())
        .require_tokens(listening.require_tokens())
        .build();
    let (tx, rx) = watch::channel(false);
    crate::api::spawn(listening, api, rx.clone());
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    let _ = tx.send(true);
    Ok(exit::OK)
}
