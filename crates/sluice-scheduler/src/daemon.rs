//! `dagctl scheduler`: the engine plus what a long-running process needs: the DAG folder
//! watched for changes, recovery of interrupted tries at start, and a graceful stop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_dag::LoadChecks;
use sluice_store::{EventKind, NewEvent, Store};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::alerts::{self, Alerting};
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::commands::Commands;
use crate::config::Config;
use crate::engine::{Engine, LoadedDags, Mode, Reload};
use crate::operators::OperatorProvider;
use crate::stats::EngineStats;
use crate::SchedulerError;
use sluice_alert::Notify;

/// How long the folder must be quiet after a change before it is reloaded.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(300);

/// What a front door inside the daemon (the HTTP API) holds of its engine.
#[derive(Clone)]
pub struct Handles {
    /// Sends the engine commands, carried out in its loop.
    pub commands: Commands,
    /// The DAGs it runs, republished after every folder load.
    pub catalog: watch::Receiver<Arc<Catalog>>,
    /// When its loop last turned, what is in flight.
    pub stats: Arc<EngineStats>,
}

/// Runs the scheduler until `shutdown` turns true (then stops within the grace period).
pub async fn run(
    config: Config,
    store: Arc<dyn Store>,
    providers: Vec<Arc<dyn OperatorProvider>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SchedulerError> {
    run_with(config, store, providers, None, shutdown, |_| {}).await
}

/// [`run`], handing `on_start` the engine's [`Handles`] once the folder is loaded and recovery
/// is done, just before the loop starts: where the daemon starts its API. With a `notifier`,
/// the DAGs' alert rules are followed (see [`crate::alerts`]).
pub async fn run_with(
    config: Config,
    store: Arc<dyn Store>,
    providers: Vec<Arc<dyn OperatorProvider>>,
    notifier: Option<Arc<dyn Notify>>,
    shutdown: watch::Receiver<bool>,
    on_start: impl FnOnce(Handles),
) -> Result<(), SchedulerError> {
    limit_malloc_arenas();
    let checks = LoadChecks { channels: Some(config.declared_channels()) };
    // Watched before it is first read: a file that lands while the daemon starts is reloaded
    // (the reloads wait in the channel until the engine runs), never missed.
    let (tx, rx) = mpsc::channel(4);
    let (dir, reload_checks) = (config.dags.clone(), checks.clone());
    let _watcher = watch_folder(config.dags.clone(), move || {
        let (dir, tx, checks) = (dir.clone(), tx.clone(), reload_checks.clone());
        async move {
            match load(dir, checks).await {
                Ok((folder, (dags, failed_files))) => {
                    info!(dags, failed_files, "DAG folder changed; reloaded");
                    tx.send(Reload::Folder(folder)).await.is_ok()
                }
                Err(e) => {
                    warn!(error = %e, "DAG folder reload failed");
                    true
                }
            }
        }
    })?;
    let (folder, counts) = load(config.dags.clone(), checks.clone()).await?;
    info!(dags = counts.0, failed_files = counts.1, folder = %config.dags.display(), "DAG folder loaded");
    // First in the event stream, so that what this daemon finds and does follows it.
    let started = EventKind::DaemonStarted { pid: std::process::id(), version: env!("CARGO_PKG_VERSION").to_string() };
    store.add_event(&NewEvent { dag_id: None, run_id: None, task_id: None, kind: started }).await?;
    if notifier.is_some() {
        // Before the engine commits anything: every event from here on is looked at.
        alerts::ensure_cursor(store.as_ref()).await?;
    }
    let alert_store = store.clone();
    // On a shared database: this scheduler's place among the others, kept by its lease.
    let claim = store.claim_scheduler(config.lease.as_std()).await?;
    let lease = crate::lease::keep(store.clone(), claim);
    let release = store.clone();
    let mut engine = Engine::new(store, config.clone(), providers, Mode::Daemon);
    if let Some(lost) = lease {
        engine = engine.fenced_by(lost);
    }
    let catalog = engine.catalog();
    engine.set_dags(folder).await?;
    engine.load_active_runs().await?;
    engine.recover().await?;
    let alerting = notifier.map(|notifier| {
        let alerting = Alerting {
            defaults: config.alerts.clone(),
            base_url: config.alerting.base_url.clone(),
            notifier,
            send_timeout: alerts::SEND_LIMIT,
            logs: config.logs.clone(),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        alerts::spawn_apart(alert_store, catalog.clone(), clock, Arc::new(alerting), shutdown.clone())
    });
    let alerting =
        alerting.transpose().map_err(|e| SchedulerError::Io(format!("cannot start the alerts' thread: {e}")))?;
    on_start(Handles { commands: engine.commands(), catalog, stats: engine.stats() });
    info!("scheduler running");
    engine.run(shutdown, rx).await?;
    // What is left running is taken over by the other schedulers now, not after the lease.
    if let Err(e) = release.release_claim().await {
        warn!(error = %e, "cannot end the scheduler's lease; the other schedulers wait for it to run out");
    }
    if let Some(task) = alerting {
        // It saves its place and stops; a delivery under way is not waited for long (its
        // alert stays pending and goes out after the next start).
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    info!("scheduler stopped");
    Ok(())
}

/// Lowers the calling thread's scheduling priority by `by` (and that of the threads it
/// starts, which inherit it); whether it could.
pub fn lower_thread_priority(by: i32) -> bool {
    // SAFETY: changes the scheduling priority of the calling thread only (on Linux a thread
    // id is a `who` of PRIO_PROCESS).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, now.saturating_add(by)) == 0
    }
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), and each keeps
/// its freed memory: the folder loader, the database's connection threads and the runtime's
/// workers would each hold megabytes. The daemon is one event loop; two arenas serve it as
/// fast (measured: `dagctl bench`) with 3 MB less resident after loading 1,000 DAGs and 8 MB
/// less at the peak of a 10,000-task run. Threads started before the call keep theirs.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Loads and prepares the folder on a blocking thread, never on the engine's: a huge file is
/// parsed and made ready while the loop goes on. Also returns (DAGs, files that failed).
async fn load(dir: PathBuf, checks: LoadChecks) -> Result<(LoadedDags, (usize, usize)), SchedulerError> {
    tokio::task::spawn_blocking(move || {
        let folder = sluice_dag::load_folder_checked(&dir, &checks)?;
        let counts = (folder.dags.len(), folder.files.iter().filter(|f| f.has_errors()).count());
        Ok((LoadedDags::prepare(folder), counts))
    })
    .await
    .map_err(|e| SchedulerError::Internal(e.to_string()))?
    .map_err(|e: std::io::Error| SchedulerError::Io(format!("cannot read the DAG folder: {e}")))
}

/// The DAG folder as a [`Catalog`], loaded now and again after each change (with `checks`, as
/// the daemon loads it), for a process that serves the DAGs without scheduling them
/// (`dagctl server`). Keep the watcher: dropping it stops the reloads.
pub async fn watch_catalog(
    dir: PathBuf,
    checks: LoadChecks,
) -> Result<(watch::Receiver<Arc<Catalog>>, notify::RecommendedWatcher), SchedulerError> {
    let (tx, rx) = watch::channel(Arc::new(Catalog::default()));
    let tx = Arc::new(tx);
    // Watched before it is first read, so that no change is missed; each load and its send are
    // one step under this lock, so the catalog last sent is the folder as last read.
    let step = Arc::new(tokio::sync::Mutex::new(()));
    let (folder, reload_checks, reload_tx, reload_step) = (dir.clone(), checks.clone(), tx.clone(), step.clone());
    let watcher = watch_folder(dir.clone(), move || {
        let (dir, tx, checks, step) = (folder.clone(), reload_tx.clone(), reload_checks.clone(), reload_step.clone());
        async move {
            let _step = step.lock().await;
            match load_catalog(dir, checks).await {
                Ok(catalog) => {
                    tx.send_replace(Arc::new(catalog));
                    !tx.is_closed()
                }
                Err(e) => {
                    warn!(error = %e, "DAG folder reload failed");
                    true
                }
            }
        }
    })?;
    {
        let _step = step.lock().await;
        tx.send_replace(Arc::new(load_catalog(dir, checks).await?));
    }
    Ok((rx, watcher))
}

async fn load_catalog(dir: PathBuf, checks: LoadChecks) -> Result<Catalog, SchedulerError> {
    tokio::task::spawn_blocking(move || {
        sluice_dag::load_folder_checked(&dir, &checks).map(|f| Catalog::from_folder(f, chrono::Utc::now()))
    })
    .await
    .map_err(|e| SchedulerError::Internal(e.to_string()))?
    .map_err(|e| SchedulerError::Io(format!("cannot read the DAG folder: {e}")))
}

/// Watches the DAG folder (inotify on Linux) and calls `on_change` after each burst of changes,
/// until it answers false.
fn watch_folder<F, Fut>(dir: PathBuf, mut on_change: F) -> Result<notify::RecommendedWatcher, SchedulerError>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    use notify::Watcher;
    let (ping_tx, mut ping_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| !e.kind.is_access()) {
            let _ = ping_tx.send(());
        }
    })
    .map_err(|e| SchedulerError::Io(format!("cannot watch the DAG folder: {e}")))?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .map_err(|e| SchedulerError::Io(format!("cannot watch {}: {e}", dir.display())))?;
    tokio::spawn(async move {
        while ping_rx.recv().await.is_some() {
            // Debounce: editors write several events per save.
            loop {
                match tokio::time::timeout(RELOAD_DEBOUNCE, ping_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if !on_change().await {
                return;
            }
        }
    });
    Ok(watcher)
}
