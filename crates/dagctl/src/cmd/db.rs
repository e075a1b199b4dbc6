//! `dagctl db`: the state database itself. `migrate-from` copies a SQLite state file into the
//! PostgreSQL database `--db` names (`sluice_store::copy`).

use anyhow::{bail, Context, Result};
use sluice_store::DbUrl;

use crate::context::Ctx;
use crate::exit;

/// Manage the state database.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Copy a SQLite state file (runs, tries, outputs, events, alerts, tokens) into the
    /// PostgreSQL database of --db, which must be new. Ids are kept; the file is not changed.
    ///
    /// Stop the scheduler first: the copy holds the file's scheduler lock, so none can start
    /// on it meanwhile.
    MigrateFrom {
        /// The SQLite database to copy, e.g. sqlite:sluice.db.
        from: String,
    },
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    match args.what {
        What::MigrateFrom { from } => migrate_from(ctx, &from).await,
    }
}

#[cfg(feature = "postgres")]
async fn migrate_from(ctx: &Ctx, from: &str) -> Result<u8> {
    let DbUrl::Postgres(_) = DbUrl::parse(&ctx.config.db)? else {
        bail!(
            "--db must name the PostgreSQL database to copy into (postgres://...), not {}",
            sluice_store::redacted(&ctx.config.db)
        );
    };
    let DbUrl::Sqlite { path } = DbUrl::parse(from)? else {
        bail!("the database to copy must be a SQLite file (sqlite:PATH), not {from}");
    };
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    // No scheduler may write the file while it is copied.
    let _lock = sluice_store::SchedulerLock::acquire(from)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot copy a database a scheduler is running on")?;
    let source = sluice_store::SqliteStore::open(from).await.with_context(|| format!("cannot open {from}"))?;
    let target = sluice_store::PgStore::open(&ctx.config.db).await.context("cannot open the PostgreSQL database")?;
    let counts = sluice_store::copy::sqlite_to_postgres(&source, &target)
        .await
        .context("the copy failed; nothing was written")?;
    for (table, rows) in &counts {
        println!("{table:<15} {rows:>9} rows");
    }
    println!("copied {} into PostgreSQL; point --db (or SLUICE_DB) at it", path.display());
    Ok(exit::OK)
}

#[cfg(not(feature = "postgres"))]
async fn migrate_from(_ctx: &Ctx, _from: &str) -> Result<u8> {
    bail!("this build of dagctl has no PostgreSQL support (cargo feature `postgres`)")
}
