//! Deadline alerts on the simulated clock: the engine turned by the test, the alerter and its
//! sender on the same clock, the channels of `sluice-alert` sending to a real HTTP server in
//! this test. An alert for a run still going at its deadline arrives while it still goes, and
//! one for a scheduled run that has not even started arrives too.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_dag::{parse_dag, Dag};
use sluice_scheduler::alerts::{self, Alerting};
use sluice_scheduler::engine::{Engine, Flow, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{runs, Clock, Config, ManualClock};
use sluice_store::{RunKind, RunState, Store};
use tokio::sync::watch;

mod support;
use support::GateProvider;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dag(id: &str, src: &str) -> Dag {
    let outcome = parse_dag(Path::new(&format!("{id}.toml")), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

type Inbox = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let keep = inbox.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let inbox = keep.clone();
        async move {
            inbox.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

/// Waits for the receiver to hold `n` posts (the safety limit only turns a hang into a failure).
async fn posts(inbox: &Inbox, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = inbox.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} alerts arrived: {got:?}", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_alerts_go_out_at_the_deadline_for_a_late_run_and_for_one_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), ..Config::default() };
    let clock = Arc::new(ManualClock::new(at("2026-03-01T12:00:05Z")));
    let (url, inbox) = receiver().await;
    std::fs::write(dir.path().join("hook-url"), &url).unwrap();
    let channels = sluice_alert::ChannelsConfig::from_sluice_toml(&format!(
        "[channels.webhook.hook]\nurl_file = \"{}\"\n",
        dir.path().join("hook-url").display()
    ))
    .unwrap();
    let notifier = sluice_alert::Notifier::new(channels, Default::default()).unwrap();

    let rules = "[[alerts]]\non = [\"deadline_missed\"]\nto = [\"webhook:hook\"]\n";
    let late = dag(
        "late",
        &format!("schedule = \"@hourly\"\nstart_date = \"2026-01-01\"\ndeadline = \"30m\"\n{rules}[tasks.t]\noperator = \"command\"\ncommand = \"gate\"\n"),
    );
    // With one slot for the whole scheduler, held by `late`'s try: its run cannot start.
    let stuck = dag(
        "stuck",
        &format!("schedule = \"@hourly\"\nstart_date = \"2026-01-01\"\ndeadline = \"30m\"\n{rules}[tasks.t]\noperator = \"command\"\ncommand = \"gate\"\n"),
    );

    alerts::ensure_cursor(store.as_ref()).await.unwrap();
    let mut created = Vec::new();
    let dates = runs::due_runs(store.as_ref(), &late, clock.now()).await.unwrap().pop().unwrap();
    created
        .push(runs::create_run(store.as_ref(), &late, &dates, RunKind::Scheduled, None).await.unwrap().run().clone());
    let (open, gate) = watch::channel(false);
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(GateProvider(gate)), Arc::new(LocalOperators)];
    let config = Config { parallelism: 1, ..config };
    let mut e = Engine::new(store.clone(), config, providers, Mode::Daemon).with_clock(clock.clone());
    e.add_dag(late.clone());
    e.load_active_runs().await.unwrap();
    assert_eq!(e.step().await.unwrap(), Flow::Continue);
    // `stuck` comes after `late`'s try took the one slot; the daemon-mode engine creates its
    // due run itself.
    e.add_dag(stuck.clone());

    let (stop, shutdown) = watch::channel(false);
    let alerting = Alerting {
        defaults: Vec::new(),
        base_url: None,
        notifier: Arc::new(notifier),
        send_timeout: Duration::from_secs(30),
        logs: dir.path().join("logs"),
    };
    let task = tokio::spawn(alerts::run(store.clone(), e.catalog(), clock.clone(), Arc::new(alerting), shutdown));

    assert_eq!(e.step().await.unwrap(), Flow::Continue);
    let filter = sluice_store::RunFilter { dag_id: Some("stuck".into()), ..Default::default() };
    created.push(store.runs(&filter).await.unwrap().pop().expect("the engine created `stuck`'s run"));
    assert!(store.tries(created[1].id, None).await.unwrap().is_empty(), "`stuck` waits for the slot");
    let deadline = created[0].deadline.unwrap();
    assert_eq!(deadline, at("2026-03-01T12:30:00Z"));
    assert!(inbox.lock().unwrap().is_empty(), "nothing before the deadline");

    clock.set(deadline);
    assert_eq!(e.step().await.unwrap(), Flow::Continue);
    let got = posts(&inbox, 2).await;
    let late_run = store.run(created[0].id).await.unwrap().unwrap();
    assert_eq!(late_run.state, RunState::Running, "the alert came while the run still runs");
    let title = |dag: &str| {
        got.iter().find(|p| p["dag_id"] == dag).and_then(|p| p["title"].as_str()).map(String::from).unwrap_or_default()
    };
    assert!(title("late").contains("is not finished by its deadline"), "{got:?}");
    assert!(title("stuck").contains("has not even started"), "{got:?}");
    assert!(got.iter().all(|p| p["rule"] == "deadline_missed"), "{got:?}");

    // The run ends late: no second alert for the same incident.
    open.send(true).unwrap();
    for _ in 0..50 {
        if e.is_idle() {
            break;
        }
        e.step().await.unwrap();
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(inbox.lock().unwrap().len(), 2);
    let alerts = store.alerts(&Default::default()).await.unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.state == sluice_store::AlertState::Delivered), "{alerts:?}");
}

/// The alerter and its sender on `clock`, sending to `inbox`'s webhook, for the DAGs given.
struct Alerts {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _catalog: watch::Sender<Arc<sluice_scheduler::Catalog>>,
}

async fn start_alerts(
    dir: &Path,
    store: &Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    url: &str,
    dags: &[&Dag],
) -> Alerts {
    std::fs::write(dir.join("hook-url"), url).unwrap();
    let channels = sluice_alert::ChannelsConfig::from_sluice_toml(&format!(
        "[channels.webhook.hook]\nurl_file = \"{}\"\n",
        dir.join("hook-url").display()
    ))
    .unwrap();
    let notifier = sluice_alert::Notifier::new(channels, Default::default()).unwrap();
    let alerting = Alerting {
        defaults: Vec::new(),
        base_url: None,
        notifier: Arc::new(notifier),
        send_timeout: Duration::from_secs(30),
        logs: dir.join("logs"),
    };
    let catalog = sluice_scheduler::Catalog {
        dags: dags.iter().map(|d| (d.id.clone(), Arc::new((*d).clone()))).collect(),
        ..Default::default()
    };
    let (catalog_tx, catalog) = watch::channel(Arc::new(catalog));
    let (stop, shutdown) = watch::channel(false);
    alerts::ensure_cursor(store.as_ref()).await.unwrap();
    let task = tokio::spawn(alerts::run(store.clone(), catalog, clock.clone(), Arc::new(alerting), shutdown));
    Alerts { stop, task, _catalog: catalog_tx }
}

/// A manual run of `dag` on `logical`, turned to its end; whenever the engine is idle the
/// clock jumps to its next timer (a retry's).
async fn run_once(store: &Arc<dyn Store>, clock: &Arc<ManualClock>, dir: &Path, d: &Dag, logical: &str) {
    let logical = sluice_dag::schedule::parse_instant(logical, d.timezone).unwrap();
    let dates = runs::manual_dates(d, Some(logical), clock.now());
    let run = runs::create_run(store.as_ref(), d, &dates, RunKind::Manual, None).await.unwrap().run().clone();
    let config = Config { logs: dir.join("logs"), dags: dir.join("dags"), ..Config::default() };
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(LocalOperators)];
    let mut e = Engine::new(store.clone(), config, providers, Mode::SingleRun(run.id)).with_clock(clock.clone());
    e.add_dag(d.clone());
    e.load_active_runs().await.unwrap();
    loop {
        if e.is_idle() {
            if let Some(t) = e.next_timer() {
                clock.set(t);
            }
        }
        if e.step().await.unwrap() == Flow::Done {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_failures_in_a_digest_and_the_recovery_each_alert_as_their_rules_say() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let clock = Arc::new(ManualClock::new(at("2026-03-05T08:00:00Z")));
    let (url, inbox) = receiver().await;
    let ok = dir.path().join("ok");
    let flaky = dag(
        "flaky",
        &format!(
            "[[alerts]]\non = [\"retry\", \"task_failed\", \"recovered\"]\nto = [\"webhook:hook\"]\n\n\
             [[alerts]]\non = [\"failure\"]\nto = [\"webhook:hook\"]\ndigest = \"5m\"\n\n\
             [tasks.t]\noperator = \"command\"\ncommand = \"test -f {}\"\nretries = 1\nretry_delay = \"1m\"\n",
            ok.display()
        ),
    );
    let alerts = start_alerts(dir.path(), &store, &clock, &url, &[&flaky]).await;

    // Two days fail, each after one retry: a `retry` and a `task_failed` alert each, at once.
    run_once(&store, &clock, dir.path(), &flaky, "2026-03-01").await;
    run_once(&store, &clock, dir.path(), &flaky, "2026-03-02").await;
    let got = posts(&inbox, 4).await;
    let rules = |got: &[Value]| {
        let mut r: Vec<String> = got.iter().map(|p| p["rule"].as_str().unwrap_or("?").to_string()).collect();
        r.sort();
        r
    };
    assert_eq!(rules(&got), ["retry", "retry", "task_failed", "task_failed"], "{got:?}");
    let retry = got.iter().find(|p| p["rule"] == "retry").unwrap();
    assert!(retry["title"].as_str().unwrap().contains("try 2 at"), "{retry}");
    // The failures wait for their digest: five minutes after the second, one message for both.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = store.alerts(&Default::default()).await.unwrap();
        if stored.iter().filter(|a| a.rule == "failure" && a.state == sluice_store::AlertState::Pending).count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the two failures were not queued: {stored:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(inbox.lock().unwrap().len(), 4, "nothing of the digest before its time");
    clock.advance(chrono::Duration::minutes(5));
    let got = posts(&inbox, 5).await;
    let digest = &got[4];
    assert_eq!(digest["rule"], "digest", "{got:?}");
    assert_eq!(digest["details"]["count"], 2);
    assert_eq!(digest["details"]["rule"], "failure");
    // Then a day succeeds: the incident is over.
    std::fs::write(&ok, "").unwrap();
    run_once(&store, &clock, dir.path(), &flaky, "2026-03-03").await;
    let got = posts(&inbox, 6).await;
    assert_eq!(got[5]["rule"], "recovered", "{got:?}");
    assert!(got[5]["title"].as_str().unwrap().contains("succeeded after a failure"));
    // A second success recovers nothing.
    run_once(&store, &clock, dir.path(), &flaky, "2026-03-04").await;
    alerts.stop.send(true).unwrap();
    alerts.task.await.unwrap();
    assert_eq!(inbox.lock().unwrap().len(), 6);
    let stored = store.alerts(&Default::default()).await.unwrap();
    assert_eq!(stored.len(), 7, "retry x2, task_failed x2, failure x2 (one message), recovered");
    assert!(stored.iter().all(|a| a.state == sluice_store::AlertState::Delivered), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_running_past_max_duration_alerts_once_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let clock = Arc::new(ManualClock::new(at("2026-03-05T08:00:00Z")));
    let (url, inbox) = receiver().await;
    let slow = dag(
        "slow",
        "[[alerts]]\non = [\"sla\"]\nto = [\"webhook:hook\"]\n[tasks.t]\noperator = \"command\"\ncommand = \"gate\"\nmax_duration = \"10m\"\n",
    );
    let alerts = start_alerts(dir.path(), &store, &clock, &url, &[&slow]).await;
    let dates = runs::manual_dates(&slow, None, clock.now());
    let run = runs::create_run(store.as_ref(), &slow, &dates, RunKind::Manual, None).await.unwrap().run().clone();
    let (open, gate) = watch::channel(false);
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(GateProvider(gate)), Arc::new(LocalOperators)];
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), ..Config::default() };
    let mut e = Engine::new(store.clone(), config, providers, Mode::SingleRun(run.id)).with_clock(clock.clone());
    e.add_dag(slow.clone());
    e.load_active_runs().await.unwrap();
    assert_eq!(e.step().await.unwrap(), Flow::Continue);
    assert_eq!(store.tries(run.id, None).await.unwrap().len(), 1, "the try runs");

    // Eleven minutes in (the alerter looks at least every minute of the clock, and at the
    // moment the limit passes): the alert, while the try still runs.
    clock.advance(chrono::Duration::minutes(9));
    clock.advance(chrono::Duration::minutes(2));
    let got = posts(&inbox, 1).await;
    assert_eq!(got[0]["rule"], "sla");
    assert!(got[0]["title"].as_str().unwrap().contains("has run for 11m"), "{got:?}");
    assert_eq!(store.tries(run.id, None).await.unwrap()[0].state, sluice_store::TaskState::Running);
    // Later looks find the same incident.
    clock.advance(chrono::Duration::minutes(5));
    open.send(true).unwrap();
    while e.step().await.unwrap() != Flow::Done {}
    alerts.stop.send(true).unwrap();
    alerts.task.await.unwrap();
    assert_eq!(inbox.lock().unwrap().len(), 1);
    assert_eq!(store.alerts(&Default::default()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_marked_by_hand_alerts_the_rules_that_ask_for_marks() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let clock = Arc::new(ManualClock::new(at("2026-03-05T08:00:00Z")));
    let (url, inbox) = receiver().await;
    let d = dag(
        "hand",
        "[[alerts]]\non = [\"marked\"]\nto = [\"webhook:hook\"]\n[tasks.a]\noperator = \"noop\"\n[tasks.b]\noperator = \"noop\"\n[tasks.c]\noperator = \"noop\"\n",
    );
    let alerts = start_alerts(dir.path(), &store, &clock, &url, &[&d]).await;
    let dates = runs::manual_dates(&d, None, clock.now());
    let run = runs::create_run(store.as_ref(), &d, &dates, RunKind::Manual, None).await.unwrap().run().clone();
    runs::mark(store.as_ref(), &run, Some("b"), sluice_store::TaskState::Failed, clock.now()).await.unwrap();
    let got = posts(&inbox, 1).await;
    assert_eq!(got[0]["rule"], "marked");
    assert_eq!(got[0]["task_id"], "b");
    assert!(got[0]["title"].as_str().unwrap().contains("was marked failed"), "{got:?}");
    // The whole run marked (its unfinished tasks): one alert naming every task it set, not
    // one per task.
    clock.advance(chrono::Duration::minutes(1));
    runs::mark(store.as_ref(), &run, None, sluice_store::TaskState::Success, clock.now()).await.unwrap();
    let got = posts(&inbox, 2).await;
    let title = got[1]["title"].as_str().unwrap();
    assert!(title.contains("2 tasks of run") && title.contains("were marked success: a, c"), "{got:?}");
    assert!(got[1].get("task_id").is_none_or(Value::is_null), "{got:?}");
    alerts.stop.send(true).unwrap();
    alerts.task.await.unwrap();
    assert_eq!(inbox.lock().unwrap().len(), 2, "one alert per mark");
    assert_eq!(store.alerts(&Default::default()).await.unwrap().len(), 2);
}

/// A webhook that answers 500 to its first `fail` posts, then 200; every post, with its answer.
async fn flaky_receiver(fail: usize) -> (String, Arc<Mutex<Vec<u16>>>) {
    let answers: Arc<Mutex<Vec<u16>>> = Arc::default();
    let keep = answers.clone();
    let app = axum::Router::new().fallback(move || {
        let answers = keep.clone();
        async move {
            let mut answers = answers.lock().unwrap();
            let status = if answers.len() < fail { 500 } else { 200 };
            answers.push(status);
            axum::http::StatusCode::from_u16(status).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, answers)
}

/// Waits until `probe` gives something (the safety limit only turns a hang into a failure).
async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_answering_500_for_a_while_is_tried_again_with_backoff_and_gets_the_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let clock = Arc::new(ManualClock::new(at("2026-03-05T08:00:00Z")));
    const FAILS: usize = 4;
    let (url, answers) = flaky_receiver(FAILS).await;
    let d = dag("boom", "[[alerts]]\non = [\"failure\"]\nto = [\"webhook:hook\"]\n[tasks.t]\noperator = \"command\"\ncommand = \"false\"\n");
    let alerts = start_alerts(dir.path(), &store, &clock, &url, &[&d]).await;
    run_once(&store, &clock, dir.path(), &d, "2026-03-04").await;

    // Each failed attempt is recorded with its retry time, 10 s after the first and doubling;
    // the clock is moved to it, and only then is the channel asked again.
    let alert =
        until("the alert queued", || async { store.alerts(&Default::default()).await.unwrap().into_iter().next() })
            .await;
    for k in 1..=FAILS as u32 {
        let row = until(&format!("attempt {k} recorded"), || async {
            store.alert(alert.id).await.unwrap().filter(|a| a.attempts == k)
        })
        .await;
        assert_eq!(row.state, sluice_store::AlertState::Pending, "{row:?}");
        assert!(row.last_error.as_deref().is_some_and(|e| e.contains("500")), "{row:?}");
        let retry_at = row.next_attempt_at.expect("a retry time");
        assert_eq!(retry_at, clock.now() + alerts::backoff(k), "attempt {k}'s backoff");
        assert_eq!(answers.lock().unwrap().len(), k as usize, "no attempt before its time");
        clock.set(retry_at);
    }
    let row = until("the alert delivered", || async {
        store.alert(alert.id).await.unwrap().filter(|a| a.state == sluice_store::AlertState::Delivered)
    })
    .await;
    assert_eq!(row.attempts, FAILS as u32 + 1);
    let attempts = store.alert_attempts(alert.id).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.ok).collect::<Vec<_>>(), [false, false, false, false, true]);
    let gaps: Vec<i64> = attempts.windows(2).map(|w| (w[1].at - w[0].at).num_seconds()).collect();
    assert_eq!(gaps, [10, 20, 40, 80]);
    alerts.stop.send(true).unwrap();
    alerts.task.await.unwrap();
    assert_eq!(*answers.lock().unwrap(), [500, 500, 500, 500, 200], "delivered once");
    assert_eq!(store.alerts(&Default::default()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_counts_from_the_last_success_and_a_new_success_starts_a_new_incident() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let clock = Arc::new(ManualClock::new(at("2026-03-05T06:00:00Z")));
    let (url, inbox) = receiver().await;
    let d = dag(
        "fresh",
        "start_date = \"2020-01-01\"\n[freshness]\nmax_age = \"26h\"\n\
         [[alerts]]\non = [\"freshness\"]\nto = [\"webhook:hook\"]\n[tasks.t]\noperator = \"noop\"\n",
    );
    // A success first (a DAG that never succeeded is stale from its start date at once).
    run_once(&store, &clock, dir.path(), &d, "2026-03-04").await;
    let succeeded = clock.now();
    let alerts = start_alerts(dir.path(), &store, &clock, &url, &[&d]).await;

    // 26 hours after that success, not before: the alert, counted from it.
    clock.set(succeeded + chrono::Duration::hours(26));
    let got = posts(&inbox, 1).await;
    assert_eq!(got[0]["rule"], "freshness");
    let title = got[0]["title"].as_str().unwrap();
    assert!(title.contains("no run has succeeded for 26h") && title.contains("since 2026-03-05 06:00:00"), "{got:?}");
    // Still stale an hour later: the same incident, nothing new.
    clock.advance(chrono::Duration::hours(1));
    // A new success, then 26 hours without one: a second incident.
    run_once(&store, &clock, dir.path(), &d, "2026-03-05").await;
    let second = clock.now();
    clock.set(second + chrono::Duration::hours(26));
    let got = posts(&inbox, 2).await;
    assert!(got[1]["title"].as_str().unwrap().contains("since 2026-03-06 09:00:00"), "{got:?}");
    alerts.stop.send(true).unwrap();
    alerts.task.await.unwrap();
    assert_eq!(inbox.lock().unwrap().len(), 2, "one alert per incident");
    assert_eq!(store.alerts(&Default::default()).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_committed_while_no_alerter_ran_is_alerted_once_when_one_starts() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let clock = Arc::new(ManualClock::new(at("2026-03-05T08:00:00Z")));
    let (url, inbox) = receiver().await;
    let d = dag("boom", "[[alerts]]\non = [\"failure\"]\nto = [\"webhook:hook\"]\n[tasks.t]\noperator = \"command\"\ncommand = \"false\"\n");
    // The daemon set the alerter's place at its start, committed the failure, and died before
    // the alerter read it (as `kill -9` between the two would leave it).
    alerts::ensure_cursor(store.as_ref()).await.unwrap();
    run_once(&store, &clock, dir.path(), &d, "2026-03-04").await;
    assert!(store.alerts(&Default::default()).await.unwrap().is_empty());

    // The next start reads on from its place: the alert, once.
    let first = start_alerts(dir.path(), &store, &clock, &url, &[&d]).await;
    let got = posts(&inbox, 1).await;
    assert_eq!(got[0]["rule"], "failure");
    first.stop.send(true).unwrap();
    first.task.await.unwrap();
    // The one after reads on from where that one stopped: a second failure is its first
    // alert, and the first failure is not told again on the way to it (the stream is read in
    // order).
    let second = start_alerts(dir.path(), &store, &clock, &url, &[&d]).await;
    run_once(&store, &clock, dir.path(), &d, "2026-03-05").await;
    let got = posts(&inbox, 2).await;
    second.stop.send(true).unwrap();
    second.task.await.unwrap();
    assert_ne!(got[0]["run_id"], got[1]["run_id"], "{got:?}");
    assert_eq!(inbox.lock().unwrap().len(), 2);
    assert_eq!(store.alerts(&Default::default()).await.unwrap().len(), 2);
}

/// Every test of this file again on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
