//! `dagctl clusters`: the EMR clusters Sluice created, and the clean-up of leftovers.

use std::sync::Arc;

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
    /// Terminate every live cluster whose run is finished (or unknown to this database). When
    /// no run in this database ever asked for a cluster, says so and calls no AWS API.
    TerminateFinished,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let clients = Arc::new(sluice_aws::Clients::new(ctx.config.connections.clone()));
    let connection = args.connection.as_deref();
    match args.action {
        Some(Action::TerminateFinished) => {
            // No database yet: no run, so no cluster either (and none is created for asking).
            let outcome = match ctx.existing_store().await? {
                Some(store) => {
                    let folder = ctx.folder()?;
                    emr::terminate_finished(&clients, connection, store.as_ref(), &folder.dags)
                        .await
                        .map_err(anyhow::Error::msg)?
                }
                None => emr::Janitor::NothingRequested,
            };
            let done = match outcome {
                emr::Janitor::NothingRequested => {
                    if args.json {
                        crate::output::json(&Vec::<emr::SluiceCluster>::new())?;
                    } else {
                        println!(
                            "nothing to terminate: no EMR cluster was ever requested by the runs in {}",
                            sluice_store::redacted(&ctx.config.db)
                        );
                    }
                    return Ok(exit::OK);
                }
                emr::Janitor::Terminated(done) => done,
            };
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
            let emr = clients.emr(connection).await.map_err(|e| anyhow::anyhow!(e.message))?;
            let clusters = sluice_aws::clients::scoped(&clients, connection, emr::list_clusters(&emr, args.all))
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
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
