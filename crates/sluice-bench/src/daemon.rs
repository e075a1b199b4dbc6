//! The daemon under test: the real `dagctl scheduler` binary in its own process (what
//! `dagctl bench` uses), or the same daemon code on a thread of this process (what the
//! crate's tests use, as they have no binary to start).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::Config;
use sluice_store::Store;
use tokio::sync::watch;

use crate::BenchError;

/// Where the daemon runs.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonKind {
    /// `<binary> scheduler`: a separate process whose memory and CPU time are its own.
    Binary(PathBuf),
    /// `sluice_scheduler::daemon::run` on a thread with its own tokio runtime (as
    /// `dagctl scheduler` builds it), local operators only. Memory and CPU figures are then
    /// those of the whole process.
    InProcess,
}

/// A started daemon.
pub(crate) enum Daemon {
    Process { child: Child, log: PathBuf },
    Thread { shutdown: watch::Sender<bool>, handle: Option<std::thread::JoinHandle<Result<(), String>>> },
}

/// Where a scenario's daemon keeps its things.
pub(crate) struct Paths<'a> {
    pub root: &'a Path,
    pub dags: &'a Path,
    pub db_url: &'a str,
    pub logs: &'a Path,
    /// Where the daemon serves its API; `None`: `--no-api`.
    pub api_bind: Option<&'a str>,
}

impl Daemon {
    pub(crate) fn start(kind: &DaemonKind, paths: &Paths<'_>, parallelism: usize) -> Result<Daemon, BenchError> {
        Daemon::start_logged(kind, paths, parallelism, "daemon.log")
    }

    /// [`Daemon::start`], a process daemon logging to `log_name` in the scenario's folder (one
    /// file per daemon where several share the database).
    pub(crate) fn start_logged(
        kind: &DaemonKind,
        paths: &Paths<'_>,
        parallelism: usize,
        log_name: &str,
    ) -> Result<Daemon, BenchError> {
        match kind {
            DaemonKind::Binary(exe) => {
                let log = paths.root.join(log_name);
                let stderr = std::fs::File::create(&log)?;
                let mut command = Command::new(exe);
                command
                    .arg("--dags")
                    .arg(paths.dags)
                    .arg("--db")
                    .arg(paths.db_url)
                    .arg("--logs")
                    .arg(paths.logs)
                    .arg("scheduler");
                match paths.api_bind {
                    Some(bind) => command.arg("--api-bind").arg(bind),
                    None => command.arg("--no-api"),
                };
                let child = command
                    .arg("--parallelism")
                    .arg(parallelism.to_string())
                    // No sluice.toml of the caller's working folder, no settings of its
                    // environment: the scenario's paths and the defaults only.
                    .current_dir(paths.root)
                    .env_remove("SLUICE_CONFIG")
                    .env_remove("SLUICE_PARALLELISM")
                    .env_remove("SLUICE_GRACE_PERIOD")
                    .env_remove("SLUICE_LOG")
                    .env_remove("SLUICE_API_BIND")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(stderr))
                    .spawn()
                    .map_err(|e| BenchError::Daemon(format!("cannot start {} scheduler: {e}", exe.display())))?;
                Ok(Daemon::Process { child, log })
            }
            DaemonKind::InProcess => {
                let config = Config {
                    db: paths.db_url.to_string(),
                    dags: paths.dags.to_path_buf(),
                    logs: paths.logs.to_path_buf(),
                    parallelism,
                    ..Config::default()
                };
                let (tx, rx) = watch::channel(false);
                let handle = std::thread::spawn(move || {
                    let rt =
                        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
                    rt.block_on(async move {
                        let store: Arc<dyn Store> = sluice_store::open(&config.db).await.map_err(|e| e.to_string())?;
                        let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(LocalOperators)];
                        sluice_scheduler::daemon::run(config, store, providers, rx).await.map_err(|e| e.to_string())
                    })
                });
                Ok(Daemon::Thread { shutdown: tx, handle: Some(handle) })
            }
        }
    }

    /// What the daemon logged so far (empty for one in this process).
    pub(crate) fn log_text(&self) -> String {
        match self {
            Daemon::Process { log, .. } => std::fs::read_to_string(log).unwrap_or_default(),
            Daemon::Thread { .. } => String::new(),
        }
    }

    /// The process to measure.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Daemon::Process { child, .. } => child.id(),
            Daemon::Thread { .. } => std::process::id(),
        }
    }

    /// An error if the daemon has already stopped (with the end of its log).
    pub(crate) fn check_alive(&mut self) -> Result<(), BenchError> {
        match self {
            Daemon::Process { child, log } => match child.try_wait()? {
                None => Ok(()),
                Some(status) => Err(BenchError::Daemon(format!("the daemon exited ({status}): {}", tail(log)))),
            },
            Daemon::Thread { handle, .. } => {
                if handle.as_ref().is_some_and(|h| h.is_finished()) {
                    let result = handle.take().expect("handle").join();
                    let why = match result {
                        Ok(Ok(())) => "it returned".to_string(),
                        Ok(Err(e)) => e,
                        Err(_) => "it panicked".to_string(),
                    };
                    return Err(BenchError::Daemon(format!("the daemon stopped: {why}")));
                }
                Ok(())
            }
        }
    }

    /// SIGTERM (or the shutdown signal), then waits for a clean exit.
    pub(crate) async fn stop(self) -> Result<(), BenchError> {
        match self {
            Daemon::Process { mut child, log } => {
                // SAFETY: sending a signal to our own child.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(status) = child.try_wait()? {
                        if !status.success() {
                            return Err(BenchError::Daemon(format!("the daemon exited with {status}: {}", tail(&log))));
                        }
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(BenchError::Daemon("the daemon did not stop within 30 s of SIGTERM".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Daemon::Thread { shutdown, handle } => {
                let _ = shutdown.send(true);
                let Some(handle) = handle else { return Ok(()) };
                let joined = tokio::task::spawn_blocking(move || handle.join())
                    .await
                    .map_err(|e| BenchError::Daemon(e.to_string()))?;
                match joined {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(BenchError::Daemon(e)),
                    Err(_) => Err(BenchError::Daemon("the daemon panicked".into())),
                }
            }
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
