//! `dagctl scheduler`: the daemon.

use anyhow::Result;
use tokio::sync::watch;

use crate::context::Ctx;
use crate::exit;

/// Run the scheduler daemon: fire schedules, run tasks, until SIGTERM or Ctrl-C.
#[derive(clap::Args)]
pub struct Args {
    /// Most task tries running at once (overrides the config file).
    #[arg(long, env = "SLUICE_PARALLELISM")]
    parallelism: Option<usize>,
    /// On SIGTERM/SIGINT, how long running tasks may take to finish, e.g. "30s".
    #[arg(long, env = "SLUICE_GRACE_PERIOD")]
    grace_period: Option<sluice_dag::Duration>,
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
    // One scheduler per database file, decided before the database is even opened: a second
    // one exits 1 at once, naming the first, and touches nothing.
    let _lock = sluice_store::SchedulerLock::acquire(&config.db)?;
    let store = ctx.store().await?;
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
    sluice_scheduler::daemon::run(config, store, providers.into(), rx).await?;
    Ok(exit::OK)
}
