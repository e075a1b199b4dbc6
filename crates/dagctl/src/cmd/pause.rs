//! `dagctl pause` / `dagctl unpause`.

use anyhow::Result;

use crate::context::Ctx;
use crate::exit;

/// Pause a DAG: no new runs start; runs in flight finish.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    pub dag: String,
}

/// Unpause a DAG.
#[derive(clap::Args)]
pub struct UnpauseArgs {
    /// The DAG id.
    pub dag: String,
}

pub async fn run(ctx: &Ctx, dag: &str, paused: bool) -> Result<u8> {
    ctx.dag(dag).await?;
    let done = sluice_scheduler::actions::set_paused(ctx.store().await?.as_ref(), dag, paused).await?;
    println!("{} {}", done.dag_id, if done.paused { "paused" } else { "unpaused" });
    Ok(exit::OK)
}
