//! `dagctl list`: the DAGs of the folder with their schedules, and the files that fail.

use anyhow::Result;
use sluice_dag::schedule::{now_in, rfc3339};

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
    // A DAG the store does not know yet is as the scheduler will create it: paused when it
    // says `paused_at_creation`.
    let paused: Vec<String> = folder
        .dags
        .iter()
        .filter(|dag| match rows_in_store.iter().find(|r| r.dag_id == dag.id) {
            Some(row) => row.paused,
            None => dag.paused_at_creation,
        })
        .map(|dag| dag.id.clone())
        .collect();
    let unscheduled: Vec<(&str, &str)> = rows_in_store
        .iter()
        .filter(|d| folder.dag(&d.dag_id).is_some())
        .filter_map(|d| Some((d.dag_id.as_str(), d.schedule_error.as_deref()?)))
        .collect();
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for dag in &folder.dags {
        let next = dag.runs_firing_after(now_in(dag.timezone)).next();
        rows.push(vec![
            dag.id.clone(),
            dag.schedule.as_ref().map_or("manual".into(), |s| s.expr().to_string()),
            dag.timezone.name().to_string(),
            next.map_or("-".into(), |r| format!("{} (ds {})", r.fire_time().format("%Y-%m-%d %H:%M %Z"), r.ds())),
            dag.tasks.len().to_string(),
            if paused.contains(&dag.id) { "yes".into() } else { "no".into() },
        ]);
        items.push(serde_json::json!({
            "id": dag.id,
            "file": dag.file,
            "schedule": dag.schedule.as_ref().map(|s| s.expr()),
            "timezone": dag.timezone.name(),
            "next_fire_time": next.map(|r| rfc3339(r.fire_time())),
            "next_ds": next.map(|r| r.ds()),
            "tasks": dag.tasks.len(),
            "paused": paused.contains(&dag.id),
            "schedule_error": unscheduled.iter().find(|(id, _)| *id == dag.id).map(|(_, e)| e),
            "tags": dag.tags,
        }));
    }
    let broken: Vec<_> = folder.files.iter().filter(|f| f.has_errors()).collect();
    if args.json {
        let errors: Vec<_> = broken
            .iter()
            .map(|f| serde_json::json!({ "file": f.path, "dag_id": f.dag_id, "errors": f.diagnostics.iter().filter(|d| d.is_error()).collect::<Vec<_>>() }))
            .collect();
        crate::output::json(&serde_json::json!({ "dags": items, "failed_files": errors }))?;
    } else {
        crate::output::table(&["DAG", "SCHEDULE", "TIMEZONE", "NEXT RUN", "TASKS", "PAUSED"], &rows);
        if !broken.is_empty() {
            println!("\n{} file{} failed to load:", broken.len(), if broken.len() == 1 { "" } else { "s" });
            for f in &broken {
                for d in f.diagnostics.iter().filter(|d| d.is_error()) {
                    println!("  {d}");
                }
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
    Ok(if broken.is_empty() && unscheduled.is_empty() { exit::OK } else { exit::FAILURE })
}
