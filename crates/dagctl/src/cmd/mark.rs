//! `dagctl mark`: set a task (or a whole run) success or failed by hand.

use anyhow::Result;
use sluice_dag::TaskState;
use sluice_scheduler::runs;

use crate::context::{Ctx, RunRef};
use crate::exit;

/// Mark a task, or every unfinished task and the run, success or failed.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// `success` or `failed`.
    #[arg(value_enum)]
    state: MarkState,
    #[command(flatten)]
    run: RunRef,
    /// Only this task.
    #[arg(long)]
    task: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum MarkState {
    Success,
    Failed,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    let store = ctx.store().await?;
    let run = args.run.find(store.as_ref(), &dag).await?;
    let state = match args.state {
        MarkState::Success => TaskState::Success,
        MarkState::Failed => TaskState::Failed,
    };
    let marked = runs::mark(store.as_ref(), &run, args.task.as_deref(), state).await?;
    println!("marked {state}: {}", if marked.is_empty() { "(no unfinished task)".into() } else { marked.join(", ") });
    Ok(exit::OK)
}
