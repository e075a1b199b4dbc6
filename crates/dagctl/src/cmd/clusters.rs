//! `dagctl clusters`: the EMR clusters Sluice created, and the clean-up of leftovers.

use anyhow::Result;
use sluice_aws::emr;

use crate::context::Ctx;
use crate::exit;

/// List the EMR clusters Sluice created (by their tags) with their run and state.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Ended clusters too, not only live ones.
    #[arg(long)]
    all: bool,
    /// The `[connections.NAME]` to use [default: `default`, else the default chain].
    #[arg(long)]
    connection: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Terminate every live cluster whose run is finished (or unknown to this database).
    TerminateFinished,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let clients = sluice_aws::Clients::new(ctx.config.connections.clone());
    let emr = clients.emr(args.connection.as_deref()).await.map_err(|e| anyhow::anyhow!(e.message))?;
    match args.action {
        Some(Action::TerminateFinished) => {
            let store = ctx.store().await?;
            let done = emr::terminate_finished(&emr, store.as_ref()).await.map_err(anyhow::Error::msg)?;
            if args.json {
                crate::output::json(&done)?;
            } else if done.is_empty() {
                println!("no cluster left running after its run");
            } else {
                for c in &done {
                    println!("terminated {} ({}): {} {} {}", c.id, c.name, c.dag_id, c.run_id, c.task_id);
                }
            }
        }
        None => {
            let clusters = emr::list_clusters(&emr, args.all).await.map_err(|e| anyhow::anyhow!(e.message))?;
            if args.json {
                crate::output::json(&clusters)?;
            } else {
                let rows: Vec<Vec<String>> = clusters
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.clone(),
                            c.state.clone(),
                            c.dag_id.clone(),
                            c.run_id.clone(),
                            c.task_id.clone(),
                            c.name.clone(),
                        ]
                    })
                    .collect();
                crate::output::table(&["CLUSTER", "STATE", "DAG", "RUN", "TASK", "NAME"], &rows);
            }
        }
    }
    Ok(exit::OK)
}
