//! `dagctl list`: the DAGs of the folder with their schedules, and the files that fail.

use anyhow::Result;
use chrono::Utc;
use sluice_dag::schedule::now_in;
use sluice_dag::Dag;
use sluice_scheduler::views::{DagListView, DagView};

use crate::context::Ctx;
use crate::exit;

/// List the DAGs of the folder: schedule, time zone, next run, tasks; and broken files.
#[derive(clap::Args)]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let folder = ctx.folder()?;
    // Paused flags and schedule errors live in the database; a folder never scheduled has none.
    let rows_in_store: Vec<sluice_store::DagRow> = ctx
        .block_on(async {
            let Some(store) = ctx.existing_store().await? else { return Ok(Vec::new()) };
            Ok(store.dags().await?)
        })
        .unwrap_or_default();
    let list = DagListView::new(&folder, &rows_in_store, Utc::now());
    let unscheduled: Vec<(&str, &str)> =
        list.dags.iter().filter_map(|d| Some((d.id.as_str(), d.schedule_error.as_deref()?))).collect();
    if args.json {
        crate::output::json(&list)?;
    } else {
        let rows: Vec<Vec<String>> = folder.dags.iter().zip(&list.dags).map(|(dag, view)| row(dag, view)).collect();
        crate::output::table(&["DAG", "SCHEDULE", "TIMEZONE", "NEXT RUN", "TASKS", "PAUSED"], &rows);
        let broken = &list.failed_files;
        if !broken.is_empty() {
            println!("\n{} file{} failed to load:", broken.len(), if broken.len() == 1 { "" } else { "s" });
            for d in broken.iter().flat_map(|f| &f.errors) {
                println!("  {d}");
            }
        }
        if !unscheduled.is_empty() {
            println!(
                "\n{} DAG{} not scheduled by the scheduler:",
                unscheduled.len(),
                if unscheduled.len() == 1 { "" } else { "s" }
            );
            for (id, error) in &unscheduled {
                println!("  {id}: {error}");
            }
        }
    }
    Ok(if list.failed_files.is_empty() && unscheduled.is_empty() { exit::OK } else { exit::FAILURE })
}

/// A DAG's line: the next run's fire time in the DAG's zone, with its abbreviation.
fn row(dag: &Dag, view: &DagView) -> Vec<String> {
    let next = dag.runs_firing_after(now_in(dag.timezone)).next();
    vec![
        view.id.clone(),
        view.schedule.clone().unwrap_or_else(|| "manual".into()),
        view.timezone.clone(),
        next.map_or("-".into(), |r| format!("{} (ds {})", r.fire_time().format("%Y-%m-%d %H:%M %Z"), r.ds())),
        view.tasks.to_string(),
        if view.paused { "yes".into() } else { "no".into() },
    ]
}
