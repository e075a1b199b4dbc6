//! `dagctl clear`: run tasks of a run again.

use anyhow::Result;
use chrono::Utc;
use sluice_scheduler::actions::{self, ClearRequest};

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
    /// With --task: its upstream tasks too.
    #[arg(long, requires = "task")]
    upstream: bool,
    /// Only tasks that failed (or are upstream_failed).
    #[arg(long)]
    failed_only: bool,
    /// List the tasks that would be cleared, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    let store = ctx.store().await?;
    let req = ClearRequest {
        run: args.run.selector()?,
        task: args.task,
        downstream: args.downstream,
        upstream: args.upstream,
        failed_only: args.failed_only,
        dry_run: args.dry_run,
    };
    let cleared = actions::clear(store.as_ref(), &dag, &req, Utc::now()).await?;
    let (run, tasks) = (&cleared.run.run_id, &cleared.tasks);
    match (tasks.is_empty(), cleared.dry_run) {
        (true, _) => println!("nothing to clear in {run}"),
        (false, false) => println!("cleared {} task(s) of {run}: {}", tasks.len(), tasks.join(", ")),
        (false, true) => println!("would clear {} task(s) of {run}: {} (dry run)", tasks.len(), tasks.join(", ")),
    }
    Ok(exit::OK)
}
