//! The engine with real processes and a real SQLite file, on the system clock: trigger rules,
//! timeouts, slot limits, priorities, panicking operators, a stop. What is about time
//! (retries, deadlines, catch-up, DST days, depends_on_past) is in `simulated.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_dag::{parse_dag, Dag, TaskState};
use sluice_scheduler::engine::{Engine, LoadedDags, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{runs, Config};
use sluice_store::{EventKind, EventQuery, Run, RunKind, RunState, Store, Try};
use tokio::sync::{mpsc, watch};

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    config: Config,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
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

/// Every event of a DAG, oldest first.
fn dag_events(dag_id: &str) -> EventQuery {
    EventQuery { dag_id: Some(dag_id.into()), limit: 100_000, ..EventQuery::default() }
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

/// Every test of this file again on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
