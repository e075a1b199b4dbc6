//! `dagctl clear`: run tasks of a run again.

use anyhow::Result;
use sluice_scheduler::runs;

use crate::context::{Ctx, RunRef};
use crate::exit;

/// Reset tasks of a run so they run again (all tasks, or one with --task).
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    #[command(flatten)]
    run: RunRef,
    /// Only this task.
    #[arg(long)]
    task: Option<String>,
    /// With --task: its downstream tasks too.
    #[arg(long, requires = "task")]
    downstream: bool,
    /// Only tasks that failed (or are upstream_failed).
    #[arg(long)]
    failed_only: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    let store = ctx.store().await?;
    let run = args.run.find(store.as_ref(), &dag).await?;
    let cleared =
        runs::clear(store.as_ref(), &dag, &run, args.task.as_deref(), args.downstream, args.failed_only).await?;
    if cleared.is_empty() {
        println!("nothing to clear in {}", run.run_id);
    } else {
        println!("cleared {} task(s) of {}: {}", cleared.len(), run.run_id, cleared.join(", "));
    }
    Ok(exit::OK)
}
