//! Sluice's benchmark: speed and footprint of the scheduler, measured through the real daemon.
//!
//! Every scenario generates its DAG files into a fresh temporary folder, starts the daemon on
//! it (the `dagctl scheduler` binary, or the same daemon code in this process for the tests)
//! with its SQLite file on disk, and reads what happened back from that file: a run's
//! `created_at` (the daemon's own cron creating it: the trigger) and `ended_at`, and each
//! try's `started_at` / `ended_at` (microseconds). Memory and CPU come from `/proc`.
//!
//! | scenario | what |
//! |---|---|
//! | `chain_50` | 50 `command` tasks running `true`, linear: trigger to run success |
//! | `wide_200` | 200 independent `command` tasks: trigger to success |
//! | `fan_200` | 1 -> 200 -> 1 `command` tasks: trigger to success |
//! | `noop_10k` | 10,000 `noop` tasks, binary fan-out then fan-in: tasks per second |
//! | `many_dags` | 1,000 files of 10 tasks: load and validate time, daemon memory after loading |
//! | `latency` | every task of the three command scenarios: its try's recorded start minus the recorded end of its last upstream's try (a root task: minus the run's start) |
//! | `idle` | daemon CPU over `idle_seconds` with 100 DAGs loaded and nothing due; memory |
//! | `huge_dag` | one file of a 20,000-task chain: load and validate time |
//! | `reload_huge` | that file dropped into a running daemon's folder while a chain of 100 short `sleep` tasks runs: the chain's task latency while the daemon reloads |
//! | `api` | the HTTP API with 10,000 runs stored, loaded from a second process: latency and throughput per endpoint, and the scheduler's task latency meanwhile (not in the default set: `--scenario api`) |
//! | `alerts` | failing runs alerting a webhook that never answers, beside a chain triggered through the API: the chain's task latency with and without the alerts (not in the default set: `--scenario alerts`) |
//! | `postgres` | `wide_200` and `noop_10k` on one PostgreSQL database shared by 1, 2 and 4 scheduler processes: trigger to success, tasks per second, task latency, and how the tries were shared (not in the default set: `--scenario postgres`) |
//! | `ui` | the web UI with 10,000 runs of a 20-task DAG and 200 DAGs stored: each view's API requests (p99 server time per view), and the DAG page's 365-run grid drawn in headless Chromium through chromedriver (not in the default set: `--scenario ui`) |
//!
//! [`run`] returns a [`Report`], printed as a table ([`Report::table`]) or JSON.
//!
//! Each run of a DAG is checked, not only timed: the run and every task must end in success
//! with exactly one try each, and no task may start before its upstreams ended; a scenario
//! that does not is an error. Scratch folders are kept until the whole benchmark is over (see
//! `run_all`), so one repetition's clean-up does not slow the next one's file creation.

use std::path::PathBuf;
use std::time::Duration;

mod daemon;
pub mod gen;
pub mod load;
pub mod measure;
mod report;
mod scenarios;

pub use daemon::DaemonKind;
pub use report::{Metric, Report, ScenarioResult, Target};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error("{0}")]
    Daemon(String),
    /// A scenario ended, but not as it should (a task that did not succeed, a count off).
    #[error("{0}")]
    Check(String),
    #[error("unknown scenario `{0}`; the scenarios are {names}", names = Scenario::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "))]
    UnknownScenario(String),
}

/// One line of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    Chain,
    Wide,
    Fan,
    Noop,
    ManyDags,
    Latency,
    Idle,
    HugeDag,
    ReloadHuge,
    Api,
    Alerts,
    Ui,
    Postgres,
}

impl Scenario {
    /// Every scenario, in the table's order.
    pub const ALL: [Scenario; 13] = [
        Scenario::Chain,
        Scenario::Wide,
        Scenario::Fan,
        Scenario::Noop,
        Scenario::ManyDags,
        Scenario::Latency,
        Scenario::Idle,
        Scenario::HugeDag,
        Scenario::ReloadHuge,
        Scenario::Api,
        Scenario::Alerts,
        Scenario::Ui,
        Scenario::Postgres,
    ];

    /// What runs when no scenario is chosen: all but `api`, which takes some minutes and
    /// measures the API rather than the scheduler, `alerts`, which measures what a broken
    /// alert channel costs, `ui`, which measures the web UI (and wants Chromium), and
    /// `postgres`, which wants a PostgreSQL server.
    pub fn default_set() -> Vec<Scenario> {
        Scenario::ALL
            .into_iter()
            .filter(|s| !matches!(s, Scenario::Api | Scenario::Alerts | Scenario::Ui | Scenario::Postgres))
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Chain => "chain_50",
            Scenario::Wide => "wide_200",
            Scenario::Fan => "fan_200",
            Scenario::Noop => "noop_10k",
            Scenario::ManyDags => "many_dags",
            Scenario::Latency => "latency",
            Scenario::Idle => "idle",
            Scenario::HugeDag => "huge_dag",
            Scenario::ReloadHuge => "reload_huge",
            Scenario::Api => "api",
            Scenario::Alerts => "alerts",
            Scenario::Ui => "ui",
            Scenario::Postgres => "postgres",
        }
    }

    pub fn from_name(name: &str) -> Result<Scenario, BenchError> {
        Scenario::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| BenchError::UnknownScenario(name.into()))
    }
}

/// How big each scenario is. [`Sizes::full`] is the issue's; [`Sizes::small`] is for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizes {
    pub chain: usize,
    pub wide: usize,
    pub fan: usize,
    pub noop: usize,
    pub many_dags: usize,
    pub tasks_per_dag: usize,
    pub idle_dags: usize,
    /// Tasks of the one huge DAG file (`huge_dag`, `reload_huge`).
    pub huge: usize,
    /// Tasks of the chain that runs while the huge file is reloaded.
    pub reload_chain: usize,
    /// `api`: runs of the 20-task DAG in the store.
    pub api_runs: usize,
    /// `api`: runs of the 50-task DAG whose grid is asked for (the grid shows up to 365).
    pub grid_runs: usize,
    /// `ui`: runs of the 20-task DAG in the store.
    pub ui_runs: usize,
    /// `ui`: DAGs in the folder and the store (the DAG list's rows), that one among them.
    pub ui_dags: usize,
    /// `ui`: loads of each view whose server time is measured.
    pub ui_samples: usize,
    /// `ui`: loads of the DAG page in Chromium whose drawing time is measured.
    pub ui_browser_loads: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            chain: 50,
            wide: 200,
            fan: 200,
            noop: 10_000,
            many_dags: 1_000,
            tasks_per_dag: 10,
            idle_dags: 100,
            huge: 20_000,
            reload_chain: 100,
            api_runs: 10_000,
            grid_runs: 365,
            ui_runs: 10_000,
            ui_dags: 200,
            ui_samples: 200,
            ui_browser_loads: 10,
        }
    }

    pub fn small() -> Sizes {
        Sizes {
            chain: 5,
            wide: 20,
            fan: 20,
            noop: 100,
            many_dags: 20,
            tasks_per_dag: 10,
            idle_dags: 5,
            huge: 2_000,
            reload_chain: 50,
            api_runs: 300,
            grid_runs: 30,
            ui_runs: 400,
            ui_dags: 10,
            ui_samples: 5,
            ui_browser_loads: 1,
        }
    }
}

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Empty: every scenario.
    pub scenarios: Vec<Scenario>,
    /// Measurements per scenario; figures are medians.
    pub repeat: u32,
    /// How long the idle daemon is watched.
    pub idle_seconds: u64,
    pub sizes: Sizes,
    pub daemon: DaemonKind,
    /// The daemon's `--parallelism` (default 256, above the widest command scenario, so no
    /// task of those waits for a slot). The DAGs' `max_active_tasks` is their task count, so
    /// only this limits how much runs at once.
    pub parallelism: usize,
    /// `api`: how long each endpoint is loaded.
    pub load_seconds: Duration,
    /// Give up on a run after this long.
    pub timeout: Duration,
    /// Compare with the targets (meaningful at full size only).
    pub targets: bool,
    /// `postgres`: the server (a `postgres://` URL); each run gets a schema of its own there.
    pub postgres: String,
    /// `postgres`: how many schedulers share the database, one measurement each.
    pub schedulers: Vec<usize>,
}

/// The PostgreSQL server of this machine's tests and benchmark.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

impl Options {
    /// The full benchmark against a `dagctl` binary.
    pub fn full(dagctl: PathBuf) -> Options {
        Options {
            scenarios: Vec::new(),
            repeat: 5,
            idle_seconds: 60,
            sizes: Sizes::full(),
            daemon: DaemonKind::Binary(dagctl),
            parallelism: 256,
            load_seconds: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            targets: true,
            postgres: DEFAULT_POSTGRES.into(),
            schedulers: vec![1, 2, 4],
        }
    }

    /// Every scenario at a small size, daemon in this process, one repetition, no targets.
    pub fn small() -> Options {
        Options {
            scenarios: Vec::new(),
            repeat: 1,
            idle_seconds: 1,
            sizes: Sizes::small(),
            daemon: DaemonKind::InProcess,
            parallelism: 256,
            load_seconds: Duration::from_secs(1),
            timeout: Duration::from_secs(120),
            targets: false,
            postgres: DEFAULT_POSTGRES.into(),
            schedulers: vec![1, 2],
        }
    }
}

/// Runs the chosen scenarios ([`Scenario::default_set`] when none is chosen), in the table's
/// order.
pub async fn run(options: &Options) -> Result<Report, BenchError> {
    scenarios::run_all(options).await
}
