//! `dagctl mark`: set a task (or a whole run) success or failed by hand.

use anyhow::Result;
use chrono::Utc;
use sluice_scheduler::actions::{self, MarkRequest, MarkState};

use crate::context::{Ctx, RunRef};
use crate::exit;

/// Mark a task, or every unfinished task and the run, success or failed.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// `success` or `failed`.
    #[arg(value_enum)]
    state: MarkArg,
    #[command(flatten)]
    run: RunRef,
    /// Only this task.
    #[arg(long)]
    task: Option<String>,
    /// List the tasks that would be marked, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum MarkArg {
    Success,
    Failed,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    let store = ctx.store().await?;
    let state = match args.state {
        MarkArg::Success => MarkState::Success,
        MarkArg::Failed => MarkState::Failed,
    };
    let req = MarkRequest { run: args.run.selector()?, task: args.task, state, dry_run: args.dry_run };
    let marked = actions::mark(store.as_ref(), &dag, &req, Utc::now()).await?;
    let state = sluice_dag::TaskState::from(marked.state);
    let tasks = if marked.tasks.is_empty() { "(no unfinished task)".into() } else { marked.tasks.join(", ") };
    if marked.dry_run {
        println!("would mark {state}: {tasks} (dry run)");
    } else {
        println!("marked {state}: {tasks}");
    }
    Ok(exit::OK)
}
