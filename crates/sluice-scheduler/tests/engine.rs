//! The engine with real processes and a real SQLite file: trigger rules, retries, timeouts,
//! slot limits, catchup, DST days, depends_on_past.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_dag::{parse_dag, Dag, TaskState};
use sluice_scheduler::engine::{Engine, LoadedDags, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{runs, Config};
use sluice_store::{EventKind, EventQuery, Run, RunFilter, RunKind, RunState, SqliteStore, Store, Try};
use tokio::sync::{mpsc, watch};

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    config: Config,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("sluice.db").display().to_string()).await.unwrap());
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), ..Config::default() };
    Env { dir, store, config }
}

fn dag(id: &str, src: &str) -> Dag {
    let outcome = parse_dag(Path::new(&format!("{id}.toml")), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

fn providers() -> Vec<Arc<dyn OperatorProvider>> {
    vec![Arc::new(LocalOperators)]
}

/// Creates a manual run for `logical` (or now) and runs it to its end in-process.
async fn run_dag(env: &Env, dag: &Dag, logical: Option<&str>) -> Run {
    let logical = logical.map(|l| sluice_dag::schedule::parse_instant(l, dag.timezone).unwrap());
    let dates = runs::manual_dates(dag, logical, Utc::now());
    let run = runs::create_run(env.store.as_ref(), dag, &dates, RunKind::Manual, None).await.unwrap().run().clone();
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers(), Mode::SingleRun(run.id));
    engine.add_dag(dag.clone());
    engine.load_active_runs().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    tokio::time::timeout(Duration::from_secs(60), engine.run(rx, rrx)).await.expect("run finishes").unwrap();
    env.store.run(run.id).await.unwrap().unwrap()
}

async fn states(env: &Env, run: &Run) -> HashMap<String, TaskState> {
    env.store.task_instances(run.id).await.unwrap().into_iter().map(|t| (t.task_id, t.state)).collect()
}

async fn tries(env: &Env, run: &Run, task: &str) -> Vec<Try> {
    env.store.tries(run.id, Some(task)).await.unwrap()
}

/// The most tries that overlapped in time.
fn max_overlap(tries: &[Try]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for t in tries {
        edges.push((t.started_at, 1));
        edges.push((t.ended_at.expect("finished"), -1));
    }
    edges.sort(); // an end at the same instant as a start sorts first (-1 < 1)
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn every_trigger_rule_with_real_processes() {
    let env = setup().await;
    let rules = [
        "all_success",
        "all_failed",
        "all_done",
        "one_success",
        "one_failed",
        "one_done",
        "none_failed",
        "none_failed_min_one_success",
        "none_skipped",
        "always",
    ];
    let mut src = String::from(
        "[tasks.ok]\noperator = \"command\"\ncommand = \"true\"\n\
         [tasks.bad]\noperator = \"command\"\ncommand = \"exit 1\"\n\
         [tasks.skipped]\noperator = \"command\"\ncommand = \"true\"\ndepends_on = [\"ok\"]\ntrigger_rule = \"all_failed\"\n",
    );
    for r in rules {
        src.push_str(&format!(
            "[tasks.{r}__ok_bad]\noperator = \"command\"\ncommand = \"true\"\ndepends_on = [\"ok\", \"bad\"]\ntrigger_rule = \"{r}\"\n\
             [tasks.{r}__ok_skipped]\noperator = \"command\"\ncommand = \"true\"\ndepends_on = [\"ok\", \"skipped\"]\ntrigger_rule = \"{r}\"\n"
        ));
    }
    let d = dag("rules", &src);
    let run = run_dag(&env, &d, None).await;
    let s = states(&env, &run).await;
    use TaskState::{Skipped as K, Success as S, UpstreamFailed as U};
    assert_eq!(s["skipped"], K, "all_failed over a success skips");
    let expected: [(&str, TaskState, TaskState); 10] = [
        ("all_success", U, K),
        ("all_failed", K, K),
        ("all_done", S, S),
        ("one_success", S, S),
        ("one_failed", S, K),
        ("one_done", S, S),
        ("none_failed", U, S),
        ("none_failed_min_one_success", U, S),
        ("none_skipped", S, K),
        ("always", S, S),
    ];
    for (rule, over_ok_bad, over_ok_skipped) in expected {
        assert_eq!(s[&format!("{rule}__ok_bad")], over_ok_bad, "{rule} over [success, failed]");
        assert_eq!(s[&format!("{rule}__ok_skipped")], over_ok_skipped, "{rule} over [success, skipped]");
    }
    // `bad` is a leaf that failed: the run fails, as in Airflow.
    assert_eq!(run.state, RunState::Failed);
    // A task that never ran has no try.
    assert!(tries(&env, &run, "all_success__ok_bad").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn fixed_retries_run_the_right_number_of_tries_with_their_delays() {
    let env = setup().await;
    let d = dag(
        "retry",
        "[tasks.flaky]\noperator = \"command\"\ncommand = \"exit 7\"\nretries = 2\nretry_delay = \"1s\"\n",
    );
    let run = run_dag(&env, &d, None).await;
    let t = tries(&env, &run, "flaky").await;
    assert_eq!(t.iter().map(|t| t.try_number).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(t.iter().all(|t| t.state == TaskState::Failed));
    assert_eq!(t[0].error.as_deref(), Some("command exited with status 7"));
    // retry_delay 1s, jitter takes off at most 20%.
    assert_eq!(retry_delays(&env, &run, "flaky").await, vec![(800, 1000), (800, 1000)]);
    assert_eq!(states(&env, &run).await["flaky"], TaskState::Failed);
}

/// Every event of a DAG, oldest first.
fn dag_events(dag_id: &str) -> EventQuery {
    EventQuery { dag_id: Some(dag_id.into()), limit: 100_000, ..EventQuery::default() }
}

/// For each retry of `task`: the delay the engine chose (from the end of the failed try to the
/// next try's due time, both as recorded), as `(nominal * 0.8, nominal)` bounds it fell in,
/// checked against `nominal` values read off the recorded times, and that the next try did not
/// start before it was due. Deterministic: it reads what the engine decided, not how long the
/// machine took.
async fn retry_delays(env: &Env, run: &Run, task: &str) -> Vec<(i64, i64)> {
    let t = tries(env, run, task).await;
    let mut events: Vec<_> = env.store.events(&dag_events(&run.dag_id)).await.unwrap();
    events.retain(|e| e.task_id.as_deref() == Some(task));
    let events: Vec<DateTime<Utc>> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::RetryScheduled { at, .. } => Some(at),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), t.len() - 1, "one retry event per retry: {events:#?}");
    let mut out = Vec::new();
    for (pair, due) in t.windows(2).zip(events) {
        let ended = pair[0].ended_at.unwrap();
        assert!(pair[1].started_at >= due, "try {} started before it was due ({due}): {t:#?}", pair[1].try_number);
        let ms = (due - ended).num_milliseconds();
        // Rounded to the bounds of the jitter window it must fall in.
        let nominal = [100, 200, 500, 1000, 2000, 4000].into_iter().find(|n| ms > n * 8 / 10 - 2 && ms <= *n + 1);
        let n = nominal.unwrap_or_else(|| panic!("a retry delay of {ms} ms fits no nominal delay"));
        out.push((n * 8 / 10, n));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn exponential_backoff_doubles_the_delay_up_to_the_cap() {
    let env = setup().await;
    let d = dag(
        "expo",
        "[tasks.t]\noperator = \"command\"\ncommand = \"exit 1\"\nretries = 3\nretry_delay = \"500ms\"\nretry_backoff = \"exponential\"\nmax_retry_delay = \"1s\"\n",
    );
    let run = run_dag(&env, &d, None).await;
    assert_eq!(tries(&env, &run, "t").await.len(), 4);
    // 500ms, 1s, then capped at 1s (each up to 20% less for jitter).
    assert_eq!(retry_delays(&env, &run, "t").await, vec![(400, 500), (800, 1000), (800, 1000)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_that_succeeds_makes_the_task_succeed() {
    let env = setup().await;
    let flag = env.dir.path().join("flag");
    let d = dag(
        "recover",
        &format!(
            "[tasks.t]\noperator = \"command\"\ncommand = \"if [ -f {0} ]; then echo fine; else touch {0}; exit 1; fi\"\nretries = 1\nretry_delay = \"100ms\"\n\
             [tasks.after]\noperator = \"command\"\ndepends_on = [\"t\"]\ncommand = \"echo upstream said {{{{ tasks.t.output }}}}\"\n",
            flag.display()
        ),
    );
    let run = run_dag(&env, &d, None).await;
    assert_eq!(run.state, RunState::Success);
    assert_eq!(tries(&env, &run, "t").await.len(), 2);
    let out = env.store.outputs(run.id).await.unwrap();
    assert_eq!(out["after"]["output"], "upstream said fine");
}

fn alive(pid: i32) -> bool {
    // A zombie (reaped later by init) no longer runs.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_whole_process_tree() {
    let env = setup().await;
    let pidfile = env.dir.path().join("child.pid");
    let d = dag(
        "slow",
        &format!(
            "[tasks.t]\noperator = \"command\"\ncommand = \"sleep 30 & echo $! > {}; wait\"\ntimeout = \"1s\"\n",
            pidfile.display()
        ),
    );
    let run = run_dag(&env, &d, None).await;
    let t = tries(&env, &run, "t").await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].error.as_deref(), Some("timed out after 1s"));
    assert!(t[0].ended_at.unwrap() - t[0].started_at < chrono::Duration::seconds(30), "cut off, not waited for");
    let child: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // A safety limit on waiting for the kill (SIGTERM, then SIGKILL 3 s later), not a timing.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while alive(child) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(child), "the background child of the timed-out command still runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_max_active_tasks_and_parallelism_are_never_exceeded() {
    let mut env = setup().await;
    env.config.pools = BTreeMap::from([("db".to_string(), 2)]);
    let mut src = String::from("max_active_tasks = 3\n");
    for i in 0..6 {
        src.push_str(&format!("[tasks.pooled_{i}]\noperator = \"command\"\ncommand = \"sleep 0.3\"\npool = \"db\"\n"));
    }
    let d = dag("pooled", &src);
    let run = run_dag(&env, &d, None).await;
    let all = env.store.tries(run.id, None).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(max_overlap(&all), 2, "pool `db` has 2 slots");

    let mut src = String::from("max_active_tasks = 3\n");
    for i in 0..6 {
        src.push_str(&format!("[tasks.t_{i}]\noperator = \"command\"\ncommand = \"sleep 0.3\"\n"));
    }
    let d = dag("capped", &src);
    let run = run_dag(&env, &d, None).await;
    assert_eq!(max_overlap(&env.store.tries(run.id, None).await.unwrap()), 3, "max_active_tasks = 3");

    env.config.parallelism = 1;
    let run = run_dag(&env, &d, Some("2026-01-02")).await;
    assert_eq!(max_overlap(&env.store.tries(run.id, None).await.unwrap()), 1, "parallelism = 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_in_an_undeclared_pool_fails_with_a_clear_error() {
    let env = setup().await;
    let d = dag("nopool", "[tasks.t]\noperator = \"noop\"\npool = \"missing\"\n");
    let run = run_dag(&env, &d, None).await;
    let t = tries(&env, &run, "t").await;
    assert!(t[0].error.as_deref().unwrap().contains("pool `missing` is not declared"), "{t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn higher_priority_starts_first_when_slots_are_short() {
    let mut env = setup().await;
    env.config.parallelism = 1;
    let d = dag(
        "prio",
        "[tasks.low]\noperator = \"command\"\ncommand = \"sleep 0.1\"\npriority = 1\n\
         [tasks.high]\noperator = \"command\"\ncommand = \"sleep 0.1\"\npriority = 10\n",
    );
    let run = run_dag(&env, &d, None).await;
    let high = tries(&env, &run, "high").await[0].started_at;
    let low = tries(&env, &run, "low").await[0].started_at;
    assert!(high < low);
}

/// A daemon-mode engine over the DAG folder whose clock shows `now`, stopped (cleanly) once
/// `done` says the store holds what the test waits for.
async fn daemon_until(env: &Env, now: DateTime<Utc>, done: impl Fn(&[Run]) -> bool) {
    let folder = sluice_dag::load_folder(&env.config.dags).unwrap();
    let clock = Arc::new(sluice_scheduler::ManualClock::new(now));
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers(), Mode::Daemon).with_clock(clock);
    engine.set_dags(LoadedDags::prepare(folder)).await.unwrap();
    engine.load_active_runs().await.unwrap();
    engine.recover().await.unwrap();
    let (tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    let store = env.store.clone();
    let engine = tokio::spawn(async move { engine.run(rx, rrx).await });
    // A safety limit on waiting for the event, not a timing.
    let limit = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let runs = store.runs(&RunFilter::default()).await.unwrap();
        if done(&runs) {
            break;
        }
        assert!(std::time::Instant::now() < limit, "the engine did not get there: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tx.send(true).unwrap();
    engine.await.unwrap().unwrap();
}

async fn scheduled_runs(env: &Env, dag: &str) -> Vec<Run> {
    let filter = RunFilter { dag_id: Some(dag.into()), ..Default::default() };
    let mut r: Vec<Run> =
        env.store.runs(&filter).await.unwrap().into_iter().filter(|r| r.kind == RunKind::Scheduled).collect();
    r.sort_by_key(|r| r.logical_date);
    r
}

/// An hourly DAG whose last run fired 5 hours before the engine's (simulated) now: what a
/// restarted daemon creates.
async fn after_downtime(catchup: bool, expected: usize) -> Vec<Run> {
    let env = setup().await;
    std::fs::create_dir_all(&env.config.dags).unwrap();
    let src = format!(
        "schedule = \"@hourly\"\nstart_date = \"2026-05-30\"\ncatchup = {catchup}\nmax_active_runs = 16\n[tasks.t]\noperator = \"noop\"\n"
    );
    std::fs::write(env.config.dags.join("hourly.toml"), &src).unwrap();
    let d = dag("hourly", &src);
    let now: DateTime<Utc> = "2026-06-01T10:30:00Z".parse().unwrap();
    // The run the daemon created before it went down: the one that fired at 05:00.
    let last = d
        .runs_firing_after("2026-06-01T04:59:00Z".parse::<DateTime<Utc>>().unwrap().with_timezone(&d.timezone))
        .next()
        .unwrap();
    runs::create_run(env.store.as_ref(), &d, &last, RunKind::Scheduled, None).await.unwrap();
    daemon_until(&env, now, |runs| runs.len() >= expected && runs.iter().all(|r| r.state == RunState::Success)).await;
    scheduled_runs(&env, "hourly").await
}
#[tokio::test(flavor = "multi_thread")]
async fn catchup_false_creates_only_the_latest_missed_run() {
    let runs = after_downtime(false, 2).await;
    assert_eq!(runs.len(), 2, "the old run and the latest missed one: {runs:#?}");
    assert_eq!(runs[1].data_interval_end, "2026-06-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
    assert!(runs.iter().all(|r| r.state == RunState::Success));
}

#[tokio::test(flavor = "multi_thread")]
async fn catchup_true_creates_every_missed_run_oldest_first() {
    let runs = after_downtime(true, 6).await;
    assert_eq!(runs.len(), 6, "the old run and the 5 missed hourly runs: {runs:#?}");
    for pair in runs.windows(2) {
        assert_eq!(pair[1].logical_date - pair[0].logical_date, chrono::Duration::hours(1));
    }
    assert_eq!(runs[5].data_interval_end, "2026-06-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
    assert!(runs.iter().all(|r| r.state == RunState::Success), "{runs:#?}");
}

/// Steps a simulated clock through `[from, to]` and does what the daemon's cron does at each
/// step; returns the ds of every run created.
async fn simulate(env: &Env, d: &Dag, from: &str, to: &str) -> Vec<String> {
    let mut now: DateTime<Utc> = from.parse().unwrap();
    let to: DateTime<Utc> = to.parse().unwrap();
    while now <= to {
        for dates in runs::due_runs(env.store.as_ref(), d, now).await.unwrap() {
            runs::create_run(env.store.as_ref(), d, &dates, RunKind::Scheduled, None).await.unwrap();
        }
        now += chrono::Duration::minutes(7);
    }
    scheduled_runs(env, &d.id)
        .await
        .iter()
        .map(|r| r.logical_date.with_timezone(&d.timezone).format("%Y-%m-%d").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dst_change_day_produces_exactly_one_run() {
    for catchup in [false, true] {
        let env = setup().await;
        let src = format!(
            "schedule = \"30 1 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-03-27\"\ncatchup = {catchup}\n[tasks.t]\noperator = \"noop\"\n"
        );
        let d = dag("dst", &src);
        // Spring forward (2026-03-29: 01:30 does not exist) and fall back (2026-10-25: twice).
        let spring = simulate(&env, &d, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z").await;
        assert_eq!(spring, vec!["2026-03-27", "2026-03-28", "2026-03-29"], "catchup {catchup}");
        let env = setup().await;
        let fall = simulate(&env, &d, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z").await;
        // Consecutive days, none doubled, ending with the run that fired inside the overlap
        // (ds 2026-10-24, at the first 01:30 of 2026-10-25) and the one after it.
        for pair in fall.windows(2) {
            let (a, b): (chrono::NaiveDate, chrono::NaiveDate) = (pair[0].parse().unwrap(), pair[1].parse().unwrap());
            assert_eq!(b, a.succ_opt().unwrap(), "catchup {catchup}: {fall:?}");
        }
        assert_eq!(&fall[fall.len() - 3..], ["2026-10-23", "2026-10-24", "2026-10-25"], "catchup {catchup}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn depends_on_past_waits_for_the_previous_run() {
    let env = setup().await;
    let flag = env.dir.path().join("fail");
    std::fs::write(&flag, "").unwrap();
    let d = dag(
        "past",
        &format!(
            "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\n\
             [tasks.t]\noperator = \"command\"\ncommand = \"test ! -f {}\"\ndepends_on_past = true\n\
             [tasks.other]\noperator = \"noop\"\n",
            flag.display()
        ),
    );
    let first = run_dag(&env, &d, Some("2026-01-01")).await;
    assert_eq!(states(&env, &first).await["t"], TaskState::Failed);
    // The next run: `t` must not start while the previous `t` is failed; `other` runs.
    let dates = d.run_dates(sluice_dag::schedule::parse_instant("2026-01-02", d.timezone).unwrap());
    let second = runs::create_run(env.store.as_ref(), &d, &dates, RunKind::Manual, None).await.unwrap().run().clone();
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers(), Mode::SingleRun(second.id));
    engine.add_dag(d.clone());
    engine.load_active_runs().await.unwrap();
    let (tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    let running = tokio::spawn(async move { engine.run(rx, rrx).await });
    // `t` is evaluated (and held back by its past) in the turn that starts `other`: once
    // `other` has succeeded, `t` has been decided.
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    while states(&env, &second).await["other"] != TaskState::Success {
        assert!(std::time::Instant::now() < limit, "`other` never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    running.await.unwrap().unwrap();
    let s = states(&env, &second).await;
    assert_eq!(s["t"], TaskState::None, "the run must wait");
    assert!(tries(&env, &second, "t").await.is_empty());
    // Once the past is fixed (cleared and succeeded), the later run goes ahead.
    std::fs::remove_file(&flag).unwrap();
    runs::clear(env.store.as_ref(), &d, &first, Some("t"), false, false).await.unwrap();
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers(), Mode::SingleRun(first.id));
    engine.add_dag(d.clone());
    engine.load_active_runs().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    engine.run(rx, rrx).await.unwrap();
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers(), Mode::SingleRun(second.id));
    engine.add_dag(d.clone());
    engine.load_active_runs().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    tokio::time::timeout(Duration::from_secs(10), engine.run(rx, rrx)).await.unwrap().unwrap();
    assert_eq!(env.store.run(second.id).await.unwrap().unwrap().state, RunState::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missed_deadline_is_recorded_once() {
    let env = setup().await;
    // Fires every minute with a 1-second deadline; the task takes 2 seconds.
    let d = dag(
        "late",
        "schedule = \"* * * * *\"\nstart_date = \"2026-01-01\"\ndeadline = \"1s\"\n[tasks.t]\noperator = \"command\"\ncommand = \"sleep 2\"\n",
    );
    let now = Utc::now();
    let dates = runs::due_runs(env.store.as_ref(), &d, now).await.unwrap().pop().unwrap();
    let run = runs::create_run(env.store.as_ref(), &d, &dates, RunKind::Scheduled, None).await.unwrap().run().clone();
    assert!(run.deadline.is_some());
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers(), Mode::SingleRun(run.id));
    engine.add_dag(d.clone());
    engine.load_active_runs().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    engine.run(rx, rrx).await.unwrap();
    let run = env.store.run(run.id).await.unwrap().unwrap();
    assert!(run.deadline_missed);
    assert_eq!(run.state, RunState::Success, "a late run still finishes");
    let events = env.store.events(&dag_events("late")).await.unwrap();
    assert_eq!(events.iter().filter(|e| matches!(e.kind, EventKind::DeadlineMissed { .. })).count(), 1);
}

/// An operator that panics.
struct Panics;

#[async_trait::async_trait]
impl sluice_scheduler::operators::TaskOperator for Panics {
    async fn run(
        &self,
        _ctx: &sluice_scheduler::operators::TryContext,
    ) -> Result<sluice_scheduler::operators::Outcome, sluice_scheduler::operators::TaskError> {
        panic!("index out of bounds in a plugin")
    }
}

/// Builds [`Panics`] for the command `panic`, and leaves every other task to the others.
struct PanicProvider;

#[async_trait::async_trait]
impl OperatorProvider for PanicProvider {
    fn build(
        &self,
        op: &sluice_dag::Operator,
        _dag: &Dag,
        _task: &sluice_dag::Task,
    ) -> Option<Box<dyn sluice_scheduler::operators::TaskOperator>> {
        match op {
            sluice_dag::Operator::Command(c) if c.command == "panic" => Some(Box::new(Panics)),
            _ => None,
        }
    }
}

/// A try that panicked used to end the daemon ("a try panicked"); it fails its try, with the
/// panic's message, and the rest of the run goes on by the trigger rules.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_that_panics_fails_its_try_and_the_engine_goes_on() {
    let env = setup().await;
    let d = dag(
        "boom",
        "[tasks.bad]\noperator = \"command\"\ncommand = \"panic\"\nretries = 2\nretry_delay = \"100ms\"\n\
         [tasks.good]\noperator = \"command\"\ncommand = \"echo fine\"\n\
         [tasks.cleanup]\noperator = \"command\"\ncommand = \"echo cleanup\"\ndepends_on = [\"bad\"]\ntrigger_rule = \"all_done\"\n",
    );
    let dates = runs::manual_dates(&d, None, Utc::now());
    let run = runs::create_run(env.store.as_ref(), &d, &dates, RunKind::Manual, None).await.unwrap().run().clone();
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(PanicProvider), Arc::new(LocalOperators)];
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers, Mode::SingleRun(run.id));
    engine.add_dag(d.clone());
    engine.load_active_runs().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    engine.run(rx, rrx).await.expect("the engine survives a panicking operator");
    let run = env.store.run(run.id).await.unwrap().unwrap();
    let s = states(&env, &run).await;
    // `bad` is not a leaf (its all_done cleanup ran), so the run's state follows its leaves.
    assert_eq!(run.state, RunState::Success);
    assert_eq!((s["bad"], s["good"], s["cleanup"]), (TaskState::Failed, TaskState::Success, TaskState::Success));
    let t = tries(&env, &run, "bad").await;
    assert_eq!(t.len(), 1, "a panic is not retried: {t:#?}");
    let error = t[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("panicked") && error.contains("index out of bounds in a plugin"), "{error}");
}

/// A stop used to wait out the whole grace period for a sensor; a sensor (or a `wait`) is cut
/// off at once, left running in the store, and the next start resumes it as the same try.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_does_not_wait_for_sensors_and_the_next_start_resumes_them() {
    let mut env = setup().await;
    // Were the stop to wait for the sensor, the test would hit its safety limit below.
    env.config.grace_period = sluice_dag::Duration::from_secs(3600);
    let d = dag("sensing", "[tasks.nap]\noperator = \"wait\"\nduration = \"1h\"\n");
    std::fs::create_dir_all(&env.config.dags).unwrap();
    std::fs::write(env.config.dags.join("sensing.toml"), "[tasks.nap]\noperator = \"wait\"\nduration = \"1h\"\n")
        .unwrap();
    let dates = runs::manual_dates(&d, None, Utc::now());
    let run = runs::create_run(env.store.as_ref(), &d, &dates, RunKind::Manual, None).await.unwrap().run().clone();

    let start = |env: &Env| {
        let folder = sluice_dag::load_folder(&env.config.dags).unwrap();
        let (store, config) = (env.store.clone(), env.config.clone());
        let (tx, rx) = watch::channel(false);
        let engine = tokio::spawn(async move {
            let mut engine = Engine::new(store, config, providers(), Mode::Daemon);
            engine.set_dags(LoadedDags::prepare(folder)).await.unwrap();
            engine.load_active_runs().await.unwrap();
            engine.recover().await.unwrap();
            let (_rtx, rrx) = mpsc::channel(1);
            engine.run(rx, rrx).await
        });
        (tx, engine)
    };
    let until_recorded = |env: &Env| {
        let store = env.store.clone();
        let id = run.id;
        async move {
            let limit = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let t = store.tries(id, Some("nap")).await.unwrap();
                if let Some(until) = t.first().and_then(|t| t.external_ids.get("until")) {
                    return (t.len(), until.clone());
                }
                assert!(std::time::Instant::now() < limit, "the wait never started");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let (tx, engine) = start(&env);
    let (_, until) = until_recorded(&env).await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), engine)
        .await
        .expect("the stop does not wait for the sensor")
        .unwrap()
        .unwrap();
    let t = tries(&env, &run, "nap").await;
    assert_eq!((t.len(), t[0].state), (1, TaskState::Running), "left running for the next start: {t:#?}");
    let events = env.store.events(&dag_events("sensing")).await.unwrap();
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::TryCutOff { .. })), "{events:#?}");

    let (tx, engine) = start(&env);
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    let log = env.config.logs.join("sensing").join(&run.run_id).join("nap").join("1.log");
    while std::fs::read_to_string(&log).unwrap_or_default().matches("resumed").count() < 1 {
        assert!(std::time::Instant::now() < limit, "the wait was not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = tries(&env, &run, "nap").await;
    assert_eq!(t.len(), 1, "resumed as the same try: {t:#?}");
    assert_eq!(t[0].external_ids["until"], until, "the resumed wait keeps its end");
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), engine).await.unwrap().unwrap().unwrap();
}
