//! `dagctl test`: one run of a DAG in this process, no daemon, against a throwaway database.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use sluice_scheduler::engine::{Engine, Mode};
use sluice_scheduler::runs;
use sluice_store::{RunKind, RunState, SqliteStore, Store};
use tokio::sync::{mpsc, watch};

use crate::context::Ctx;
use crate::exit;

/// Run one DAG run here and now, with live progress; exit 0 when it succeeds.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// Logical date: a date (the schedule's tick that day) or a timestamp [default: now].
    #[arg(long)]
    date: Option<String>,
    /// Run configuration merged over `[params]`, as a JSON object.
    #[arg(long)]
    conf: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    // The progress below says what runs; the engine's own log says only what goes wrong
    // (SLUICE_LOG=info for all of it).
    crate::output::init_tracing_with(false, "warn");
    let dag = ctx.dag(&args.dag).await?;
    let conf = args.conf.as_deref().map(sluice_dag::parse_conf).transpose().map_err(anyhow::Error::msg)?;
    let logical = args.date.as_deref().map(|d| dag.logical_date(d)).transpose().map_err(anyhow::Error::msg)?;
    // A test run leaves the real database alone: nothing to collide with, nothing for a
    // running daemon to pick up.
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("test.db").display().to_string()).await?);
    let dates = runs::manual_dates(&dag, logical, Utc::now());
    let run = runs::create_run(store.as_ref(), &dag, &dates, RunKind::Test, conf).await?.run().clone();
    println!("testing {} for ds {} (run {}), logs in {}", dag.id, dates.ds(), run.run_id, ctx.config.logs.display());
    let providers = crate::context::providers(&ctx.config);
    let mut engine = Engine::new(store.clone(), ctx.config.clone(), providers.into(), Mode::SingleRun(run.id));
    engine.add_dag(dag.clone());
    engine.load_active_runs().await?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let (done_tx, done_rx) = watch::channel(false);
    let (follower_store, logs, id) = (store.clone(), ctx.config.logs.clone(), run.id);
    let follower =
        tokio::spawn(
            async move { crate::progress::follow(follower_store.as_ref(), id, &logs, true, Some(done_rx)).await },
        );
    let result = engine.run(rx, reload_rx).await;
    let _ = done_tx.send(true);
    follower.await??;
    result?;
    let run = store.run(run.id).await?.context("the run disappeared")?;
    crate::cmd::tasks::print(store.as_ref(), &dag, &run, &ctx.config.logs).await?;
    Ok(if run.state == RunState::Success { exit::OK } else { exit::FAILURE })
}
