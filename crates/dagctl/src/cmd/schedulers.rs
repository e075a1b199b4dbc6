//! `dagctl schedulers`: the schedulers running on the database.

use anyhow::Result;

use crate::context::Ctx;
use crate::exit;

/// List the schedulers running on this database: host, pid, since, last renewal, tries held.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let schedulers = match ctx.existing_store().await? {
        Some(store) => store.schedulers().await?,
        None => Vec::new(),
    };
    if args.json {
        crate::output::json(&schedulers)?;
        return Ok(exit::OK);
    }
    if schedulers.is_empty() {
        println!("no scheduler is running on this database");
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = schedulers
        .iter()
        .map(|s| {
            vec![
                s.host.clone(),
                s.pid.to_string(),
                s.since.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                // A lock needs no renewal.
                s.renewed_at.map_or_else(|| "- (holds the lock)".to_string(), |t| t.format("%H:%M:%S").to_string()),
                s.tries_held.to_string(),
            ]
        })
        .collect();
    crate::output::table(&["HOST", "PID", "SINCE", "LAST RENEWAL", "TRIES HELD"], &rows);
    Ok(exit::OK)
}
