//! `dagctl next DAG`: the next fire times with their logical dates.

use std::path::Path;

use anyhow::{bail, Result};
use sluice_dag::schedule::{now_in, parse_instant};

use sluice_scheduler::views::RunDatesView;

use crate::exit;

/// Show the next scheduled runs: fire time, logical date, ds and deadline.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// How many runs.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// Start after this time (date, local time in the DAG's zone, or RFC 3339); default now.
    #[arg(long)]
    after: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(dags: &Path, args: Args) -> Result<u8> {
    let folder = crate::output::folder(dags)?;
    let dag = sluice_scheduler::lookup::dag_in_folder(&folder, &args.dag)?;
    if dag.schedule.is_none() {
        bail!("DAG `{}` has no schedule: it runs only when triggered", dag.id);
    }
    let after = match &args.after {
        Some(s) => parse_instant(s, dag.timezone).map_err(anyhow::Error::msg)?,
        None => now_in(dag.timezone),
    };
    let runs: Vec<RunDatesView> =
        dag.runs_firing_after(after).take(args.count).map(|r| RunDatesView::new(dag, &r)).collect();
    if args.json {
        crate::output::json(&runs)?;
    } else {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                let deadline = r.deadline.clone().unwrap_or_else(|| "-".into());
                vec![r.fire_time.clone(), r.ds.clone(), r.logical_date.clone(), deadline]
            })
            .collect();
        crate::output::table(&["FIRES AT", "DS", "LOGICAL DATE", "DEADLINE"], &rows);
        if runs.is_empty() {
            println!("(no runs: the schedule ends before then)");
        }
    }
    Ok(exit::OK)
}
