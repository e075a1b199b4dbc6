//! `dagctl tasks`: the task instances of one run.

use std::path::Path;

use anyhow::Result;
use sluice_dag::Dag;
use sluice_scheduler::views::RunDetailView;
use sluice_store::{Run, Store};

use crate::context::{Ctx, RunRef};
use crate::exit;
use crate::output::{duration, time};

/// Show the tasks of one run: state, tries, start, end, duration, external ids.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    #[command(flatten)]
    run: RunRef,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    let store = ctx.store().await?;
    let run = args.run.find(store.as_ref(), &dag).await?;
    if args.json {
        crate::output::json(&RunDetailView::load(store.as_ref(), &dag, &run, &ctx.config.logs).await?)?;
        return Ok(exit::OK);
    }
    print(store.as_ref(), &dag, &run, &ctx.config.logs).await?;
    Ok(exit::OK)
}

/// Prints a run and its tasks in topological order; for failed tasks, the last error and log.
pub async fn print(store: &dyn Store, dag: &Dag, run: &Run, logs: &Path) -> Result<()> {
    let mut took = String::new();
    if let Some(start) = run.started_at {
        took = format!("  started {}", time(Some(start)));
        if run.ended_at.is_some() {
            took.push_str(&format!(", took {}", duration(run.started_at, run.ended_at)));
        }
        if let Some(first) = run.first_started_at.filter(|f| *f != start) {
            took.push_str(&format!(" (this attempt; first started {})", time(Some(first))));
        }
    }
    println!("{} {}  state {}{took}", run.dag_id, run.run_id, run.state);
    let detail = RunDetailView::load(store, dag, run, logs).await?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    // The DAG's tasks only: a task the run has but the DAG no longer has is not shown.
    for ti in detail.tasks.iter().filter(|ti| dag.task(&ti.task_id).is_some()) {
        let last = ti.last_try();
        let ids = last.map_or(String::new(), |t| {
            t.external_ids
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect::<Vec<_>>()
                .join(" ")
        });
        rows.push(vec![
            ti.task_id.clone(),
            ti.state.to_string(),
            format!("{}/{}", ti.try_number, ti.max_tries),
            time(ti.started_at),
            time(ti.ended_at),
            duration(ti.started_at, ti.ended_at),
            ids,
        ]);
        if let Some(t) = last.filter(|t| t.error.is_some() && ti.state.is_failure()) {
            notes.push(format!("{}: {} (log: {})", ti.task_id, t.error.as_deref().unwrap_or(""), t.log.display()));
        }
    }
    crate::output::table(&["TASK", "STATE", "TRIES", "STARTED", "ENDED", "DURATION", "EXTERNAL IDS"], &rows);
    for n in notes {
        println!("{n}");
    }
    Ok(())
}
