//! `dagctl next DAG`: the next fire times with their logical dates.

use std::path::Path;

use anyhow::{bail, Result};
use sluice_dag::schedule::{now_in, parse_instant, rfc3339};

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
    let dag = crate::output::dag(&folder, &args.dag)?;
    if dag.schedule.is_none() {
        bail!("DAG `{}` has no schedule: it runs only when triggered", dag.id);
    }
    let after = match &args.after {
        Some(s) => parse_instant(s, dag.timezone).map_err(anyhow::Error::msg)?,
        None => now_in(dag.timezone),
    };
    let runs: Vec<_> = dag.runs_firing_after(after).take(args.count).collect();
    if args.json {
        let items: Vec<_> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "fire_time": rfc3339(r.fire_time()),
                    "logical_date": rfc3339(r.logical_date),
                    "ds": r.ds(),
                    "data_interval_start": rfc3339(r.data_interval_start),
                    "data_interval_end": rfc3339(r.data_interval_end),
                    "deadline": dag.deadline.and_then(|d| d.for_fire_time(r.fire_time())).map(rfc3339),
                })
            })
            .collect();
        crate::output::json(&items)?;
    } else {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    rfc3339(r.fire_time()),
                    r.ds(),
                    rfc3339(r.logical_date),
                    dag.deadline.and_then(|d| d.for_fire_time(r.fire_time())).map_or("-".into(), rfc3339),
                ]
            })
            .collect();
        crate::output::table(&["FIRES AT", "DS", "LOGICAL DATE", "DEADLINE"], &rows);
        if runs.is_empty() {
            println!("(no runs: the schedule ends before then)");
        }
    }
    Ok(exit::OK)
}
