//! What every subcommand resolves first: the config (file, then flags and environment), the
//! DAG folder, the store.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use sluice_dag::{Dag, Folder};
use sluice_scheduler::lookup::{self, RunSelector};
use sluice_scheduler::Config;
use sluice_store::{DbUrl, Store};

use crate::Global;

pub struct Ctx {
    pub config: Config,
}

impl Ctx {
    pub fn new(g: &Global) -> Result<Ctx> {
        let mut config = match &g.config {
            Some(path) => Config::load(path)?,
            None if Path::new("sluice.toml").exists() => Config::load(Path::new("sluice.toml"))?,
            None => Config::default(),
        };
        if let Some(d) = &g.dags {
            config.dags = d.clone();
        }
        if let Some(db) = &g.db {
            config.db = db.clone();
        }
        if let Some(l) = &g.logs {
            config.logs = l.clone();
        }
        Ok(Ctx { config })
    }

    pub fn block_on<T, F: std::future::Future<Output = Result<T>>>(&self, f: F) -> Result<T> {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
    }

    pub fn folder(&self) -> Result<Folder> {
        crate::output::folder(&self.config.dags)
    }

    /// Loads the folder and returns one DAG by id. While the DAG's file does not load (or is
    /// gone), the last good version the scheduler recorded is used, with a warning: the daemon
    /// keeps running that version, so the CLI must be able to see and act on it too.
    pub async fn dag(&self, id: &str) -> Result<Dag> {
        let folder = self.folder()?;
        // The database is opened only when the folder cannot answer.
        let store = if folder.dag(id).is_some() { None } else { self.existing_store().await? };
        let (dag, fallback) = lookup::dag_with_fallback(&folder, store.as_deref(), id).await?;
        if let Some(f) = fallback {
            eprintln!("warning: {}", f.reason);
            eprintln!("warning: using the last good version of `{id}` the scheduler recorded");
        }
        Ok(dag)
    }

    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        sluice_store::open(&self.config.db)
            .await
            .with_context(|| format!("cannot open the database {}", sluice_store::redacted(&self.config.db)))
    }
}

impl Ctx {
    /// The store, only if its database already exists (read-only listings do not create one).
    pub async fn existing_store(&self) -> Result<Option<Arc<dyn Store>>> {
        let exists = match DbUrl::parse(&self.config.db)? {
            DbUrl::Sqlite { path } => path.exists(),
            DbUrl::SqliteMemory | DbUrl::Postgres(_) => true,
        };
        if exists {
            Ok(Some(self.store().await?))
        } else {
            Ok(None)
        }
    }
}

/// How a command names one run: `--date D` or `--run RUN_ID`.
#[derive(clap::Args)]
pub struct RunRef {
    /// The run's logical date: a date (the run whose logical date falls on that day) or a
    /// timestamp.
    #[arg(long, required_unless_present = "run")]
    pub date: Option<String>,
    /// The run id.
    #[arg(long)]
    pub run: Option<String>,
}

impl RunRef {
    /// The run named: by id when `--run` is given, else by date.
    pub fn selector(&self) -> Result<RunSelector> {
        match (&self.run, &self.date) {
            (Some(id), _) => Ok(RunSelector::RunId(id.clone())),
            (None, Some(date)) => Ok(RunSelector::Date(date.clone())),
            (None, None) => anyhow::bail!("name the run with --date DATE or --run RUN_ID"),
        }
    }

    pub async fn find(&self, store: &dyn Store, dag: &Dag) -> Result<sluice_store::Run> {
        Ok(lookup::find_run(store, dag, &self.selector()?).await?)
    }
}

/// The operator families every run can use, asked in this order: the local ones, then the AWS
/// ones. The one place a family is added (the daemon and `dagctl test` both take it from here).
pub fn providers(config: &sluice_scheduler::Config) -> sluice_scheduler::operators::OperatorRegistry {
    sluice_scheduler::operators::OperatorRegistry::new()
        .with(sluice_scheduler::operators::LocalOperators)
        .with(sluice_aws::AwsOperators::new(config.connections.clone()))
}

/// The channels of `[channels]`, ready to send to; `None` when none is declared (then no
/// alert can be sent, and the daemon runs no alerting at all). A problem of `[channels]` names
/// the channel and the key, and stops the command.
pub fn notifier(config: &sluice_scheduler::Config) -> Result<Option<Arc<sluice_alert::Notifier>>> {
    if config.channels.values().all(|names| names.is_empty()) {
        return Ok(None);
    }
    let table = toml::Value::try_from(&config.channels).context("cannot read [channels]")?;
    let channels: sluice_alert::ChannelsConfig =
        table.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("sluice.toml [channels]: {}", e.message()))?;
    let notifier =
        sluice_alert::Notifier::new(channels, config.connections.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(Arc::new(notifier)))
}
