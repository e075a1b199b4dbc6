//! `dagctl logs`: the log of one try of a task.

use anyhow::{Context, Result};

use crate::context::{Ctx, RunRef};
use crate::exit;

/// Print a task's log (the last try, or --try N).
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// The task id.
    task: String,
    #[command(flatten)]
    run: RunRef,
    /// Which try [default: the last].
    #[arg(long = "try")]
    try_number: Option<u32>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    if dag.task(&args.task).is_none() {
        let hint = sluice_dag::diagnostic::suggest(&args.task, dag.tasks.iter().map(|t| t.id.as_str()))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        anyhow::bail!(
            "DAG `{}` has no task `{}`{hint}; its tasks: {}",
            dag.id,
            args.task.escape_debug(),
            dag.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let store = ctx.store().await?;
    let run = args.run.find(store.as_ref(), &dag).await?;
    let tries = store.tries(run.id, Some(&args.task)).await?;
    let n = match args.try_number {
        Some(n) => n,
        None => tries
            .iter()
            .map(|t| t.try_number)
            .max()
            .with_context(|| format!("task `{}` has not run in {}", args.task, run.run_id))?,
    };
    anyhow::ensure!(tries.iter().any(|t| t.try_number == n), "task `{}` has no try {n} in {}", args.task, run.run_id);
    let path = sluice_scheduler::engine::log_path(&ctx.config.logs, &run.dag_id, &run.run_id, &args.task, n);
    // A try's log is created by its first line: a try that said nothing (a `noop`) has none.
    match std::fs::read_to_string(&path) {
        Ok(text) => print!("{text}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("try {n} of task {} in {} wrote no log", args.task, run.run_id)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    Ok(exit::OK)
}
