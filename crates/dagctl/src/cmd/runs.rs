//! `dagctl runs`: runs, newest first, with state, times and missed deadlines.

use anyhow::Result;
use sluice_scheduler::views::RunView;
use sluice_store::RunFilter;

use crate::context::Ctx;
use crate::exit;
use crate::output::{duration, time};

/// List runs, newest logical date first.
#[derive(clap::Args)]
pub struct Args {
    /// Only this DAG's runs.
    dag: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let store = ctx.store().await?;
    let filter = RunFilter { dag_id: args.dag.clone(), limit: Some(args.limit), ..Default::default() };
    let runs = store.runs(&filter).await?;
    if args.json {
        crate::output::json(&runs.iter().map(RunView::from).collect::<Vec<_>>())?;
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.dag_id.clone(),
                r.run_id.clone(),
                r.kind.name().to_string(),
                r.state.to_string(),
                time(r.started_at),
                duration(r.started_at, r.ended_at),
                match (r.deadline, r.deadline_missed) {
                    (_, true) => "MISSED".into(),
                    (Some(d), false) => format!("by {}", d.format("%Y-%m-%d %H:%M UTC")),
                    (None, _) => "-".into(),
                },
            ]
        })
        .collect();
    crate::output::table(&["DAG", "RUN", "KIND", "STATE", "STARTED", "DURATION", "DEADLINE"], &rows);
    Ok(exit::OK)
}
