//! `alerts`: what a channel that never answers costs the scheduler.
//!
//! Two daemons, one after the other, each on its own store, run the same work: a chain of 20
//! `true` command tasks triggered through the API again and again (its task latency is the
//! figure), while a one-task DAG whose task fails is triggered every `FAIL_EVERY` for
//! `load_seconds`. In the first daemon the failures alert nobody; in the second each failure
//! alerts twice (`failure`, `task_failed`) to a webhook whose server accepts the connection and
//! never answers (a black hole held by this process), so every send hangs until its timeout
//! and every alert stays pending. The scenario checks that the second daemon's alerts did queue
//! and were tried (the black hole saw connections), and compares the two latencies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_store::{AlertQuery, AlertState, RunFilter, RunState, SqliteStore, Store};

use super::api::{chain_latencies, chains_while, trigger, wait_ready};
use super::{target, Scratch};
use crate::gen;
use crate::measure::quantile;
use crate::report::{Metric, ScenarioResult, Target};
use crate::{BenchError, DaemonKind, Options, Scenario};

const CHAIN_DAG: &str = "bench_alerts_chain";
const FAILING_DAG: &str = "bench_alerts_fail";
const FAIL_EVERY: Duration = Duration::from_millis(100);

/// A TCP server that accepts every connection and never reads or writes: each connection is
/// held open until the scenario ends.
struct BlackHole {
    url: String,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> Result<BlackHole, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/never", listener.local_addr()?);
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                held.push(stream);
            }
        });
        Ok(BlackHole { url, accepted, task })
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one daemon gave.
struct Pass {
    latencies: Vec<f64>,
    failing_runs: usize,
    /// Alerts in the store when the load ended, and how many of them were still pending.
    alerts: usize,
    pending: usize,
}

pub(crate) async fn alerts(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<ScenarioResult, BenchError> {
    if !matches!(o.daemon, DaemonKind::Binary(_)) {
        return Err(BenchError::Check("the alerts scenario needs the dagctl binary (its API)".into()));
    }
    let hole = BlackHole::start().await?;
    let quiet = pass(o, keep, &hole, false).await?;
    let alerting = pass(o, keep, &hole, true).await?;
    let accepted = hole.accepted.load(Ordering::Relaxed);
    // Every failure queued its two alerts, none of which could be delivered.
    if alerting.pending != alerting.alerts {
        return Err(BenchError::Check(format!(
            "{} alerts queued, {} pending: every one should be pending",
            alerting.alerts, alerting.pending
        )));
    }
    let quiet_p99 = quantile(&quiet.latencies, 0.99);
    // "Unchanged": within a quarter, or a millisecond, of the figure without alerts.
    let allowed = (quiet_p99 * 1.25).max(quiet_p99 + 1.0);
    let metrics = vec![
        Metric::single("task latency p99, failures alert nobody", "ms", quiet_p99, quiet.latencies.len(), None),
        Metric::single(
            "task latency p99, failures alert a channel that never answers",
            "ms",
            quantile(&alerting.latencies, 0.99),
            alerting.latencies.len(),
            target(o, Target::at_most(allowed)),
        ),
        Metric::single("alerts pending", "alerts", alerting.pending as f64, alerting.pending, None),
        Metric::single("connections to the channel", "connections", accepted as f64, accepted, None),
    ];
    Ok(ScenarioResult {
        scenario: Scenario::Alerts.name().into(),
        description: format!(
            "{} failing runs then {} with alerts to a webhook that never answers, a failure every {} ms, {} s each",
            quiet.failing_runs,
            alerting.failing_runs,
            FAIL_EVERY.as_millis(),
            o.load_seconds.as_secs_f64()
        ),
        tasks: 20,
        metrics,
    })
}

async fn pass(
    o: &Options,
    keep: &mut Vec<tempfile::TempDir>,
    hole: &BlackHole,
    alerting: bool,
) -> Result<Pass, BenchError> {
    let scratch = Scratch::new()?;
    let chain = gen::chain(CHAIN_DAG, 20).manual_only();
    chain.write(&scratch.dags())?;
    let rule =
        if alerting { "[[alerts]]\non = [\"failure\", \"task_failed\"]\nto = [\"webhook:never\"]\n\n" } else { "" };
    std::fs::write(
        scratch.dags().join(format!("{FAILING_DAG}.toml")),
        format!("# Generated by sluice-bench: fails at once.\n{rule}[tasks.boom]\noperator = \"command\"\ncommand = \"false\"\n"),
    )?;
    // The daemon reads the sluice.toml of its working folder, the scratch folder; the URL is a
    // secret, so it is in a file.
    let url_file = scratch.dir.path().join("never-url");
    std::fs::write(&url_file, &hole.url)?;
    std::fs::write(
        scratch.dir.path().join("sluice.toml"),
        format!("[channels.webhook.never]\nurl_file = \"{}\"\n", url_file.display()),
    )?;
    let (store, mut daemon) = scratch.start_with_api(o, "127.0.0.1:0").await?;
    let http = reqwest::Client::new();
    let result = async {
        let base = wait_ready(o, &http, &mut daemon, 2).await?;
        let mut failing_runs = 0;
        let runs = chains_while(&http, &base, &store, o, CHAIN_DAG, async {
            let began = Instant::now();
            while began.elapsed() < o.load_seconds {
                trigger(&http, &base, FAILING_DAG).await?;
                failing_runs += 1;
                tokio::time::sleep(FAIL_EVERY).await;
            }
            Ok(())
        })
        .await?;
        let latencies = chain_latencies(&store, &chain, &runs).await?;
        // Waits for the failures to end and their alerts to be queued (two each), and for the
        // channel to have been called.
        let began = Instant::now();
        loop {
            let failed = store
                .runs(&RunFilter { dag_id: Some(FAILING_DAG.into()), ..RunFilter::default() })
                .await?
                .iter()
                .filter(|r| r.state == RunState::Failed)
                .count();
            let (alerts, pending) = queued(&store).await?;
            let want = if alerting { 2 * failing_runs } else { 0 };
            let called = !alerting || hole.accepted.load(Ordering::Relaxed) > 0;
            if failed == failing_runs && alerts == want && called {
                return Ok(Pass { latencies, failing_runs, alerts, pending });
            }
            if began.elapsed() > o.timeout {
                return Err(BenchError::Check(format!(
                    "{failed} of {failing_runs} runs of {FAILING_DAG} failed and {alerts} of {want} alerts were \
                     queued within {:?}",
                    o.timeout
                )));
            }
            tokio::time::sleep(super::POLL).await;
        }
    }
    .await;
    let stopped = daemon.stop().await;
    store.close().await?;
    keep.push(scratch.dir);
    let pass = result?;
    stopped?;
    Ok(pass)
}

async fn queued(store: &SqliteStore) -> Result<(usize, usize), BenchError> {
    let all = store.alerts(&AlertQuery { limit: Some(100_000), ..AlertQuery::default() }).await?;
    let pending = all.iter().filter(|a| a.state == AlertState::Pending).count();
    Ok((all.len(), pending))
}
