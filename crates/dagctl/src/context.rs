//! What every subcommand resolves first: the config (file, then flags and environment), the
//! DAG folder, the store.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use sluice_dag::{Dag, Folder};
use sluice_scheduler::Config;
use sluice_store::{SqliteStore, Store};

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
        let err = match crate::output::dag(&folder, id) {
            Ok(dag) => return Ok(dag.clone()),
            Err(e) => e,
        };
        if let Some(store) = self.existing_store().await? {
            if let Some((file, source)) = store.dag_source(id).await? {
                if let Some(dag) = sluice_dag::parse_dag(Path::new(&file), &source).dag {
                    eprintln!("warning: {err:#}");
                    eprintln!("warning: using the last good version of `{id}` the scheduler recorded");
                    return Ok(dag);
                }
            }
        }
        Err(err)
    }

    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        let store = SqliteStore::open(&self.config.db)
            .await
            .with_context(|| format!("cannot open the database {}", self.config.db))?;
        Ok(Arc::new(store))
    }
}

impl Ctx {
    /// The store, only if its database already exists (read-only listings do not create one).
    pub async fn existing_store(&self) -> Result<Option<Arc<dyn Store>>> {
        let db = &self.config.db;
        let path = db.strip_prefix("sqlite://").or_else(|| db.strip_prefix("sqlite:")).unwrap_or(db);
        if path.starts_with(':') || Path::new(path).exists() {
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
    pub async fn find(&self, store: &dyn Store, dag: &Dag) -> Result<sluice_store::Run> {
        find_run(store, dag, self.date.as_deref(), self.run.as_deref()).await
    }
}

/// The run a user names with `--date D` (a date or a timestamp) or `--run RUN_ID`.
pub async fn find_run(
    store: &dyn Store,
    dag: &Dag,
    date: Option<&str>,
    run_id: Option<&str>,
) -> Result<sluice_store::Run> {
    if let Some(id) = run_id {
        return store.run_by_run_id(&dag.id, id).await?.with_context(|| format!("DAG `{}` has no run `{id}`", dag.id));
    }
    let date = date.context("name the run with --date DATE or --run RUN_ID")?;
    if let Ok(day) = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d") {
        // Any run whose logical date falls on that day in the DAG's zone; the scheduled tick
        // first.
        let filter = sluice_store::RunFilter { dag_id: Some(dag.id.clone()), ..Default::default() };
        let mut on_day: Vec<_> = store
            .runs(&filter)
            .await?
            .into_iter()
            .filter(|r| r.logical_date.with_timezone(&dag.timezone).date_naive() == day)
            .collect();
        if let Ok(tick) = dag.logical_date_on(day) {
            if let Some(i) = on_day.iter().position(|r| r.logical_date == tick) {
                return Ok(on_day.swap_remove(i));
            }
        }
        return match on_day.len() {
            0 => anyhow::bail!("DAG `{}` has no run on {day}", dag.id),
            1 => Ok(on_day.remove(0)),
            _ => anyhow::bail!(
                "DAG `{}` has {} runs on {day}; name one with --run: {}",
                dag.id,
                on_day.len(),
                on_day.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        };
    }
    let at = sluice_dag::schedule::parse_instant(date, dag.timezone).map_err(anyhow::Error::msg)?;
    store
        .run_by_logical_date(&dag.id, at.with_timezone(&chrono::Utc))
        .await?
        .with_context(|| format!("DAG `{}` has no run with logical date {date}", dag.id))
}

/// The operator families every run can use, asked in this order: the local ones, then the AWS
/// ones. The one place a family is added (the daemon and `dagctl test` both take it from here).
pub fn providers(config: &sluice_scheduler::Config) -> sluice_scheduler::operators::OperatorRegistry {
    sluice_scheduler::operators::OperatorRegistry::new()
        .with(sluice_scheduler::operators::LocalOperators)
        .with(sluice_aws::AwsOperators::new(config.connections.clone()))
}
