//! `/metrics` against a real SQLite store: state changes made through the store reach the
//! figures through its events (the broadcast, as in the daemon; reading by id once a second,
//! as in `dagctl server`), the last success per DAG starts from the store, and the engine's
//! figures and its operator families' counters render as they read.
//!
//! Each test waits for the figure it expects to appear in the rendered text (a safety limit
//! of 90 s turns a hang into a failure), then asserts exact values.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_api::metrics::Metrics;
use sluice_scheduler::engine::{Engine, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::stats::{EngineStats, Meter, Telemetry};
use sluice_scheduler::{Config, ManualClock};
use sluice_store::{FinishTry, NewRun, RunKind, RunState, SqliteStore, Store, TaskState, TryOutcome};

const LIMIT: Duration = Duration::from_secs(90);

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let db = dir.path().join("sluice.db");
    Arc::new(SqliteStore::open(&db.display().to_string()).await.unwrap())
}

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

/// Renders until `series` has value `expected` (or the safety limit passes), and returns
/// that text.
async fn wait_for(metrics: &Metrics, series: &str, expected: f64) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = metrics.render().await;
        if value(&text, series) == Some(expected) {
            return text;
        }
        assert!(start.elapsed() < LIMIT, "`{series}` never became {expected}; last text:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A run of `dag` whose interval ends at `end` (an hour long), with one task `t`.
async fn new_run(store: &dyn Store, dag: &str, kind: RunKind, end: DateTime<Utc>) -> i64 {
    let start = end - chrono::Duration::hours(1);
    let new = NewRun {
        dag_id: dag.into(),
        run_id: format!("{}__{}", kind.name(), start.to_rfc3339()),
        kind,
        logical_date: start,
        data_interval_start: start,
        data_interval_end: end,
        conf: None,
        deadline: None,
        tasks: vec![("t".into(), 1)],
        idempotency_key: None,
    };
    store.create_run(&new).await.unwrap().run().id
}

/// Runs `run`'s task `t` once, from `from` to `to`, with `outcome`.
async fn run_task(store: &dyn Store, run: i64, from: DateTime<Utc>, to: DateTime<Utc>, outcome: TryOutcome) {
    store.set_task_states(run, &[("t".into(), TaskState::Scheduled)], from).await.unwrap();
    store.start_tries(&[(run, "t".into())], from).await.unwrap();
    let finish = FinishTry { run, task_id: "t".into(), try_number: 1, outcome, at: to };
    store.finish_tries(&[finish]).await.unwrap();
}

fn success() -> TryOutcome {
    TryOutcome::Success { outputs: Default::default() }
}

/// What both feeds must count, the same way: a scheduled run of `a` that starts 90 s after
/// its interval, runs a task for 40 s, misses its deadline and succeeds after 10 minutes; a
/// manual run of `b` whose task fails and the run with it.
async fn drive_and_check(store: &dyn Store, metrics: &Metrics) {
    let end = t("2026-03-01T11:00:00Z");
    let a = new_run(store, "a", RunKind::Scheduled, end).await;
    let started = end + chrono::Duration::seconds(90);
    store.set_run_state(a, RunState::Running, started).await.unwrap();
    run_task(store, a, started, started + chrono::Duration::seconds(40), success()).await;
    assert!(store.mark_deadline_missed(a, started + chrono::Duration::seconds(300)).await.unwrap());
    let ended = started + chrono::Duration::seconds(600);
    store.set_run_state(a, RunState::Success, ended).await.unwrap();

    let b = new_run(store, "b", RunKind::Manual, end).await;
    store.set_run_state(b, RunState::Running, end).await.unwrap();
    let failed = TryOutcome::Failed { error: "exit 1".into(), retry_at: None };
    run_task(store, b, end, end + chrono::Duration::seconds(2), failed).await;
    store.set_run_state(b, RunState::Failed, end + chrono::Duration::seconds(3)).await.unwrap();

    // The last event committed; everything before it was applied first.
    let text = wait_for(metrics, r#"sluice_runs_finished_total{dag="b",state="failed"}"#, 1.0).await;
    let v = |series: &str| value(&text, series);
    assert_eq!(v(r#"sluice_runs_finished_total{dag="a",state="success"}"#), Some(1.0), "{text}");
    assert_eq!(v(r#"sluice_runs_finished_total{dag="a",state="failed"}"#), None, "no such run");
    assert_eq!(v(r#"sluice_tries_finished_total{dag="a",outcome="success"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_tries_finished_total{dag="b",outcome="failed"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_deadline_misses_total{dag="a"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_deadline_misses_total{dag="b"}"#), None);
    // The last success is the run's ended_at, as the store holds it.
    let run = store.run(a).await.unwrap().unwrap();
    let ended_at = run.ended_at.unwrap().timestamp() as f64;
    assert_eq!(ended_at, ended.timestamp() as f64);
    assert_eq!(v(r#"sluice_last_success_timestamp_seconds{dag="a"}"#), Some(ended_at));
    assert_eq!(v(r#"sluice_last_success_timestamp_seconds{dag="b"}"#), None, "b never succeeded");
    // Run durations: 600 s for a (in the 600 s bucket, not the 300 s one), 3 s for b.
    assert_eq!(v(r#"sluice_run_duration_seconds_count{dag="a"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_run_duration_seconds_sum{dag="a"}"#), Some(600.0));
    assert_eq!(v(r#"sluice_run_duration_seconds_bucket{le="300.0",dag="a"}"#), Some(0.0), "{text}");
    assert_eq!(v(r#"sluice_run_duration_seconds_bucket{le="600.0",dag="a"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_run_duration_seconds_bucket{le="+Inf",dag="a"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_run_duration_seconds_sum{dag="b"}"#), Some(3.0));
    // Try durations: 40 s and 2 s.
    assert_eq!(v(r#"sluice_try_duration_seconds_sum{dag="a"}"#), Some(40.0));
    assert_eq!(v(r#"sluice_try_duration_seconds_bucket{le="30.0",dag="a"}"#), Some(0.0));
    assert_eq!(v(r#"sluice_try_duration_seconds_bucket{le="60.0",dag="a"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_try_duration_seconds_sum{dag="b"}"#), Some(2.0));
    // Schedule delay: only the scheduled run, 90 s late.
    assert_eq!(v(r#"sluice_schedule_delay_seconds_count{dag="a"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_schedule_delay_seconds_sum{dag="a"}"#), Some(90.0));
    assert_eq!(v(r#"sluice_schedule_delay_seconds_bucket{le="60.0",dag="a"}"#), Some(0.0));
    assert_eq!(v(r#"sluice_schedule_delay_seconds_bucket{le="300.0",dag="a"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_schedule_delay_seconds_count{dag="b"}"#), None, "a manual run is never late");
    // No run or task ids in any label.
    assert!(!text.contains("scheduled__") && !text.contains("manual__") && !text.contains("task="), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// A run of `dag` that succeeded at `at`, before any exporter started.
async fn earlier_success(store: &dyn Store, dag: &str, at: DateTime<Utc>) {
    let run = new_run(store, dag, RunKind::Manual, t("2026-02-01T00:00:00Z")).await;
    store.set_run_state(run, RunState::Running, at - chrono::Duration::seconds(5)).await.unwrap();
    store.set_run_state(run, RunState::Success, at).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_counts_from_the_broadcast_and_starts_from_the_last_successes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    earlier_success(store.as_ref(), "old", t("2026-02-01T06:30:00Z")).await;
    let stats = Arc::new(EngineStats::default());
    let metrics = Metrics::new(store.clone(), Some(stats), Some(store.subscribe()));
    let old = t("2026-02-01T06:30:00Z").timestamp() as f64;
    let text = wait_for(&metrics, r#"sluice_last_success_timestamp_seconds{dag="old"}"#, old).await;
    assert_eq!(
        value(&text, r#"sluice_runs_finished_total{dag="old",state="success"}"#),
        None,
        "counters start with the exporter"
    );
    assert_eq!(value(&text, "sluice_scheduler_turns_total"), Some(0.0), "{text}");
    drive_and_check(store.as_ref(), &metrics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_follows_the_events_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    earlier_success(store.as_ref(), "a", t("2026-02-01T06:30:00Z")).await;
    let metrics = Metrics::new(store.clone(), None, None);
    let old = t("2026-02-01T06:30:00Z").timestamp() as f64;
    wait_for(&metrics, r#"sluice_last_success_timestamp_seconds{dag="a"}"#, old).await;
    // Another process's writes: a second handle on the same file (its events are not on this
    // handle's broadcast).
    let other = self::store(&dir).await;
    drive_and_check(other.as_ref(), &metrics).await;
    let text = metrics.render().await;
    assert!(!text.contains("sluice_scheduler_turns"), "no engine, no engine figures: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_figures_and_the_aws_counters_render_as_they_read() {
    const SCANNED: Meter = Meter { name: "athena_scanned_bytes", help: "Bytes scanned" };
    const HOURS: Meter = Meter { name: "emr_normalized_instance_hours", help: "Instance hours" };
    let telemetry = Arc::new(Telemetry::new("aws"));
    let emr = telemetry.service("emr");
    for _ in 0..3 {
        emr.called();
    }
    emr.failed(true);
    emr.failed(false);
    telemetry.service("athena").called();
    telemetry.add_usage(SCANNED, "q1", "report", 1_000);
    telemetry.add_usage(SCANNED, "q1", "report", 1_000); // the same query seen again
    telemetry.add_usage(SCANNED, "q2", "report", 24);
    telemetry.add_usage(HOURS, "j-1", "spark", 16);
    let pools = BTreeMap::from([("db".to_string(), 2)]);
    let stats = Arc::new(EngineStats::new(&pools, vec![telemetry.clone()]));

    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let metrics = Metrics::new(store.clone(), Some(stats), Some(store.subscribe()));
    let text = metrics.render().await;
    let v = |series: &str| value(&text, series);
    assert_eq!(v(r#"sluice_aws_api_calls_total{service="emr"}"#), Some(3.0), "{text}");
    assert_eq!(v(r#"sluice_aws_api_throttles_total{service="emr"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_aws_api_errors_total{service="emr"}"#), Some(2.0));
    assert_eq!(v(r#"sluice_aws_api_calls_total{service="athena"}"#), Some(1.0));
    assert_eq!(v(r#"sluice_aws_api_errors_total{service="athena"}"#), Some(0.0));
    assert_eq!(v(r#"sluice_athena_scanned_bytes_total{dag="report"}"#), Some(1_024.0));
    assert_eq!(v(r#"sluice_emr_normalized_instance_hours_total{dag="spark"}"#), Some(16.0));
    assert!(text.contains("# TYPE sluice_aws_api_calls counter"), "{text}");
    assert_eq!(v(r#"sluice_pool_slots{pool="db"}"#), Some(2.0));
    assert_eq!(v(r#"sluice_pool_slots_in_use{pool="db"}"#), Some(0.0));
    assert_eq!(v("sluice_running_tries"), Some(0.0));
    assert_eq!(v("sluice_active_runs"), Some(0.0));
    assert_eq!(v("sluice_scheduler_turn_duration_seconds_count"), Some(0.0));
    assert_eq!(v(r#"sluice_scheduler_turn_duration_seconds_bucket{le="+Inf"}"#), Some(0.0));
    assert!(text.contains("# TYPE sluice_scheduler_turn_duration_seconds histogram"), "{text}");
    assert_eq!(v("sluice_scheduler_last_turn_timestamp_seconds"), None, "no turn yet");

    // Read at scrape time: a later call shows in the next render.
    emr.called();
    let text = metrics.render().await;
    assert_eq!(value(&text, r#"sluice_aws_api_calls_total{service="emr"}"#), Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_engine_feeds_its_turns_and_pools() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let pools = BTreeMap::from([("db".to_string(), 3)]);
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), pools, ..Config::default() };
    let now = t("2026-03-01T12:00:00Z");
    let clock = Arc::new(ManualClock::new(now));
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(LocalOperators)];
    let mut engine = Engine::new(store.clone(), config, providers, Mode::Daemon).with_clock(clock);
    let metrics = Metrics::new(store.clone(), Some(engine.stats()), Some(store.subscribe()));
    engine.step().await.unwrap();
    engine.step().await.unwrap();
    let text = metrics.render().await;
    let v = |series: &str| value(&text, series);
    assert_eq!(v("sluice_scheduler_turns_total"), Some(2.0), "{text}");
    assert_eq!(v("sluice_scheduler_turn_duration_seconds_count"), Some(2.0));
    assert_eq!(v(r#"sluice_scheduler_turn_duration_seconds_bucket{le="+Inf"}"#), Some(2.0));
    assert_eq!(v("sluice_scheduler_last_turn_timestamp_seconds"), Some(now.timestamp() as f64), "the engine's clock");
    assert_eq!(v(r#"sluice_pool_slots{pool="db"}"#), Some(3.0));
    assert_eq!(v(r#"sluice_pool_slots_in_use{pool="db"}"#), Some(0.0));
    assert!(!text.contains("sluice_aws_"), "the local operators call no service: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_daemon_another_processs_events_are_read_from_the_gap_they_leave() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let metrics = Metrics::new(store.clone(), Some(Arc::new(EngineStats::default())), Some(store.subscribe()));
    // The daemon's own handle commits; the feed applied it.
    let end = t("2026-03-01T11:00:00Z");
    let mine = new_run(store.as_ref(), "mine", RunKind::Manual, end).await;
    store.set_run_state(mine, RunState::Running, end).await.unwrap();
    store.set_run_state(mine, RunState::Failed, end + chrono::Duration::seconds(1)).await.unwrap();
    wait_for(&metrics, r#"sluice_runs_finished_total{dag="mine",state="failed"}"#, 1.0).await;
    // A CLI (another handle: nothing on the daemon's broadcast) finishes a run...
    let cli = self::store(&dir).await;
    let theirs = new_run(cli.as_ref(), "theirs", RunKind::Manual, end).await;
    cli.set_run_state(theirs, RunState::Running, end).await.unwrap();
    cli.set_run_state(theirs, RunState::Success, end + chrono::Duration::seconds(7)).await.unwrap();
    // ...and the daemon's next event shows the gap: the feed reads what it missed.
    new_run(store.as_ref(), "mine", RunKind::Manual, end + chrono::Duration::hours(1)).await;
    let text = wait_for(&metrics, r#"sluice_runs_finished_total{dag="theirs",state="success"}"#, 1.0).await;
    assert_eq!(value(&text, r#"sluice_run_duration_seconds_sum{dag="theirs"}"#), Some(7.0), "{text}");
    assert_eq!(value(&text, r#"sluice_runs_finished_total{dag="mine",state="failed"}"#), Some(1.0), "once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_deliveries_are_counted_by_channel_and_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let metrics = Metrics::new(store.clone(), Some(Arc::new(EngineStats::default())), Some(store.subscribe()));
    let alert = |incident: &str| sluice_store::NewAlert {
        channel: "slack:oncall".into(),
        incident: incident.into(),
        rule: "failure".into(),
        dag_id: "d".into(),
        run_id: None,
        task_id: None,
        event_id: None,
        message: Default::default(),
        due_at: t("2026-03-01T00:00:00Z"),
    };
    let at = t("2026-03-01T00:00:00Z");
    let ids = store.enqueue_alerts("test", 1, &[alert("a"), alert("b")], at).await.unwrap();
    let retry =
        sluice_store::Attempt::Failed { error: "500".into(), retry_at: Some(at + chrono::Duration::seconds(10)) };
    store.record_attempt(ids[0], at, &retry).await.unwrap();
    store.record_attempt(ids[0], at, &sluice_store::Attempt::Delivered { answer: "200".into() }).await.unwrap();
    store
        .record_attempt(ids[1], at, &sluice_store::Attempt::Failed { error: "404".into(), retry_at: None })
        .await
        .unwrap();
    let series = |result: &str| format!(r#"sluice_alert_deliveries_total{{channel="slack:oncall",result="{result}"}}"#);
    let text = wait_for(&metrics, &series("gave_up"), 1.0).await;
    assert_eq!(value(&text, &series("delivered")), Some(1.0), "{text}");
    assert_eq!(value(&text, &series("retry")), Some(1.0), "{text}");
}
