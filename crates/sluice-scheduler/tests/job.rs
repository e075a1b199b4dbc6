//! One try from the inside, through the engine with real processes and a real SQLite file:
//! what its log holds (and when it has none), and how a try that cannot render ends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice_dag::{parse_dag, Dag, TaskState};
use sluice_scheduler::engine::{log_path, Engine, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{runs, Config};
use sluice_store::{Run, RunKind, Store};
use tokio::sync::{mpsc, watch};

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    config: Config,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), ..Config::default() };
    Env { _dir: dir, store, config }
}

fn dag(id: &str, src: &str) -> Dag {
    let outcome = parse_dag(Path::new(&format!("{id}.toml")), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

/// Creates a manual run and runs it to its end in-process.
async fn run_dag(env: &Env, dag: &Dag) -> Run {
    let dates = runs::manual_dates(dag, None, Utc::now());
    let run = runs::create_run(env.store.as_ref(), dag, &dates, RunKind::Manual, None).await.unwrap().run().clone();
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(LocalOperators)];
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers, Mode::SingleRun(run.id));
    engine.add_dag(dag.clone());
    engine.load_active_runs().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    tokio::time::timeout(Duration::from_secs(60), engine.run(rx, rrx)).await.expect("run finishes").unwrap();
    env.store.run(run.id).await.unwrap().unwrap()
}

async fn state(env: &Env, run: &Run, task: &str) -> TaskState {
    env.store.task_instances(run.id).await.unwrap().into_iter().find(|t| t.task_id == task).unwrap().state
}

fn log(env: &Env, run: &Run, task: &str) -> Option<String> {
    std::fs::read_to_string(log_path(&env.config.logs, &run.dag_id, &run.run_id, task, 1)).ok()
}

/// `noop_10k` spent most of its time creating two inodes per try: a try that writes nothing
/// leaves neither its file nor its folder, while a try that speaks, fails or is skipped keeps
/// its opening line, its words and how it ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_try_that_writes_nothing_leaves_no_log_and_one_that_fails_writes_its_reason() {
    let env = setup().await;
    let d = dag(
        "logs",
        "[tasks.quiet]\noperator = \"noop\"\n\
         [tasks.talks]\noperator = \"command\"\ncommand = \"echo hello\"\n\
         [tasks.fails]\noperator = \"command\"\ncommand = \"exit 3\"\n",
    );
    let run = run_dag(&env, &d).await;
    assert_eq!(state(&env, &run, "quiet").await, TaskState::Success);
    assert_eq!(log(&env, &run, "quiet"), None);
    let quiet_dir = log_path(&env.config.logs, &run.dag_id, &run.run_id, "quiet", 1);
    assert!(!quiet_dir.parent().unwrap().exists(), "no folder for a silent try");

    let talks = log(&env, &run, "talks").expect("a log for a try that wrote");
    let lines: Vec<&str> = talks.lines().collect();
    assert!(lines[0].starts_with("[sluice] ") && lines[0].contains("try 1 of task talks in run"), "{talks}");
    assert_eq!(&lines[1..], ["$ echo hello", "hello", "[sluice] success"], "{talks}");

    let fails = log(&env, &run, "fails").expect("a log for a failed try");
    assert!(fails.lines().next().unwrap().contains("try 1 of task fails in run"), "{fails}");
    assert!(fails.ends_with("[sluice] failed: command exited with status 3\n"), "{fails}");
}

/// A template that reads an output its upstream never produced means there is nothing to do
/// (a terminate after a cluster that was never created): the task is skipped, with the reason
/// in its log. A template that fails for another reason fails the task at once, no retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_upstream_output_skips_the_task_and_another_render_error_fails_it_without_retry() {
    let env = setup().await;
    let d = dag(
        "render",
        "[params]\nword = \"x\"\n\
         [tasks.up]\noperator = \"command\"\ncommand = \"exit 1\"\n\
         [tasks.reads]\noperator = \"command\"\ncommand = \"echo {{ tasks.up.output }}\"\ndepends_on = [\"up\"]\ntrigger_rule = \"all_done\"\n\
         [tasks.bad]\noperator = \"command\"\ncommand = \"echo {{ ds_add(params.word, 1) }}\"\nretries = 2\nretry_delay = \"1s\"\n",
    );
    let run = run_dag(&env, &d).await;
    assert_eq!(state(&env, &run, "up").await, TaskState::Failed);
    assert_eq!(state(&env, &run, "reads").await, TaskState::Skipped);
    let reads = log(&env, &run, "reads").expect("a skip writes its reason");
    assert!(reads.contains("[sluice] skipped: upstream `up` produced no outputs"), "{reads}");

    assert_eq!(state(&env, &run, "bad").await, TaskState::Failed);
    assert_eq!(env.store.tries(run.id, Some("bad")).await.unwrap().len(), 1, "a render error is not retried");
    let bad = log(&env, &run, "bad").expect("a failure writes its reason");
    assert!(bad.contains("[sluice] failed: key `command`"), "{bad}");
    assert!(!bad.contains("skipped"), "{bad}");
}

/// Every test of this file again on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
