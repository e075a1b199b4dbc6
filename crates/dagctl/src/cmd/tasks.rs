//! `dagctl tasks`: the task instances of one run.

use std::path::Path;

use anyhow::Result;
use sluice_dag::Dag;
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
        let tis = store.task_instances(run.id).await?;
        let tries = store.tries(run.id, None).await?;
        let items: Vec<_> = tis
            .iter()
            .map(|ti| {
                let mine: Vec<_> = tries.iter().filter(|t| t.task_id == ti.task_id).collect();
                serde_json::json!({ "task_id": ti.task_id, "state": ti.state, "try_number": ti.try_number,
                    "max_tries": ti.max_tries, "started_at": ti.started_at, "ended_at": ti.ended_at, "tries": mine })
            })
            .collect();
        crate::output::json(&serde_json::json!({ "run": run, "tasks": items }))?;
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
    let tis = store.task_instances(run.id).await?;
    let tries = store.tries(run.id, None).await?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for task in &dag.tasks {
        let Some(ti) = tis.iter().find(|t| t.task_id == task.id) else { continue };
        let last = tries.iter().filter(|t| t.task_id == task.id).max_by_key(|t| t.try_number);
        let ids = last.map_or(String::new(), |t| {
            t.external_ids
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect::<Vec<_>>()
                .join(" ")
        });
        rows.push(vec![
            task.id.clone(),
            ti.state.to_string(),
            format!("{}/{}", ti.try_number, ti.max_tries),
            time(ti.started_at),
            time(ti.ended_at),
            duration(ti.started_at, ti.ended_at),
            ids,
        ]);
        if let Some(t) = last.filter(|t| t.error.is_some() && ti.state.is_failure()) {
            let log = sluice_scheduler::engine::log_path(logs, &run.dag_id, &run.run_id, &task.id, t.try_number);
            notes.push(format!("{}: {} (log: {})", task.id, t.error.as_deref().unwrap_or(""), log.display()));
        }
    }
    crate::output::table(&["TASK", "STATE", "TRIES", "STARTED", "ENDED", "DURATION", "EXTERNAL IDS"], &rows);
    for n in notes {
        println!("{n}");
    }
    Ok(())
}
