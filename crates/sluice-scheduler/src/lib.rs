//! The Sluice scheduler: turns DAGs into runs and runs into executed tasks.
//!
//! - [`engine`]; the event loop over active runs: trigger rules, slots (parallelism, pools,
//!   `max_active_tasks`), retries with backoff, timeouts, deadlines, recovery after a crash.
//!   It waits for an event, then handles it, so a test can step it.
//! - [`clock`]; the engine's "now" and timers: the system clock, or a simulated one.
//! - [`commands`]; what an in-process caller asks the engine to do, carried out in its loop.
//! - [`operators`]; the operator trait and the local operators (`command`, `wait`, `noop`).
//! - [`runs`]; creating runs (cron, manual, backfill), clearing and marking them.
//! - [`actions`]; what a user asks for (trigger, backfill, clear, mark, pause), as typed
//!   requests and results: the CLI and the engine's command channel call the same functions.
//! - [`lookup`]; which DAG and which run a name means (`--date`, `--run`, the last good
//!   version of a broken DAG).
//! - [`views`]; runs, tasks, tries and DAGs as the listings show them (serde), one shape for
//!   `dagctl --json` and the API.
//! - [`daemon`]; `dagctl scheduler`: the engine with a watched DAG folder and a graceful stop.
//! - [`catalog`]; the loaded DAGs as a shared value, published after each folder load.
//! - [`stats`]; the engine's own figures (its last turn, what is in flight), for `/readyz`.
//! - [`config`]; `sluice.toml`.
//! - [`alerts`]; rules turned into alerts in the store from the event stream, and their
//!   delivery (the channels behind the [`alerts::Notifier`] trait).
//! - [`follow`]; a reader of the event stream from an id on (catch-up, then the broadcast).
//!
//! State lives in a [`sluice_store::Store`]; the engine writes every change there before
//! acting on it, so a crash at any point leaves a state the next start resumes from.

pub mod actions;
pub mod alerts;
pub mod catalog;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod follow;
mod job;
pub mod lease;
pub mod lookup;
pub mod operators;
pub mod runs;
pub mod stats;
pub mod tail;
pub mod views;

pub use catalog::Catalog;
pub use clock::{Clock, ManualClock, SystemClock};
pub use commands::{Command, CommandError, Commands, Reply};
pub use config::Config;
pub use engine::{Engine, EngineEvent, Flow, Mode};

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Io(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The scheduler's lease on a shared database was lost: it stopped, its tries cut off.
    #[error("{0}")]
    LeaseLost(String),
}
