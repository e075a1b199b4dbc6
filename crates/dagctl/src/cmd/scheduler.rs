//! `dagctl scheduler`: the daemon, with its HTTP API.

use anyhow::Result;
use std::sync::Arc;
use tokio::sync::watch;

use crate::context::Ctx;
use crate::exit;

/// Run the scheduler daemon: fire schedules, run tasks, serve the API, until SIGTERM or Ctrl-C.
#[derive(clap::Args)]
pub struct Args {
    /// Most task tries running at once (overrides the config file).
    #[arg(long, env = "SLUICE_PARALLELISM")]
    parallelism: Option<usize>,
    /// On SIGTERM/SIGINT, how long running tasks may take to finish, e.g. "30s".
    #[arg(long, env = "SLUICE_GRACE_PERIOD")]
    grace_period: Option<sluice_dag::Duration>,
    /// Where the HTTP API listens [default: [api] bind, else 127.0.0.1:8080].
    #[arg(long, env = "SLUICE_API_BIND", conflicts_with = "no_api")]
    api_bind: Option<String>,
    /// Serve no HTTP API.
    #[arg(long)]
    no_api: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    crate::output::init_tracing(args.log_json);
    let mut config = ctx.config.clone();
    if let Some(p) = args.parallelism {
        anyhow::ensure!(p > 0, "--parallelism must be at least 1");
        config.parallelism = p;
    }
    if let Some(g) = args.grace_period {
        config.grace_period = g;
    }
    if let Some(bind) = args.api_bind {
        config.api.bind = bind;
    }
    if args.no_api {
        config.api.enabled = false;
    }
    // One scheduler per database file, decided before the database is even opened: a second
    // one exits 1 at once, naming the first, and touches nothing.
    let _lock = sluice_store::SchedulerLock::acquire(&config.db)?;
    let store = ctx.store().await?;
    // The API's socket is bound before anything runs: an address in use, or off loopback
    // without a token, stops the daemon here.
    let listening = match config.api.enabled {
        true => Some(crate::api::listen(&config, store.as_ref()).await?),
        false => None,
    };
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        let _ = tx.send(true);
    });
    let providers = crate::context::providers(&config);
    let notifier = crate::context::notifier(&config)?.map(|n| n as Arc<dyn sluice_alert::Notify>);
    let api_store: Arc<dyn sluice_store::Store> = store.clone();
    let api_config = config.clone();
    let stop = rx.clone();
    let on_start = move |handles: sluice_scheduler::daemon::Handles| {
        let Some(listening) = listening else { return };
        let require_tokens = listening.require_tokens();
        let build = move |reads: Arc<dyn sluice_store::Store>| {
            sluice_api::Api::builder(reads, handles.catalog.clone(), api_config.logs.clone())
                .events_from(api_store)
                .engine(handles)
                .require_tokens(require_tokens)
                .stall_after(api_config.api.stall_after.as_std())
                .build()
        };
        if let Err(e) = crate::api::spawn_apart(listening, api_config.db.clone(), build, stop) {
            tracing::error!(error = %format!("{e:#}"), "the API did not start");
        }
    };
    sluice_scheduler::daemon::run_with(config, store, providers.into(), notifier, rx, on_start).await?;
    Ok(exit::OK)
}
