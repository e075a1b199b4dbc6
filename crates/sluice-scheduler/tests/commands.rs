//! The engine's command channel: a command sent in-process is carried out by the same
//! `actions` the CLI calls and acted on in the turn that handles it, without waiting for the
//! once-a-second check of the store. The engine runs on a simulated clock, turn by turn, with a
//! real SQLite file.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sluice_dag::{parse_dag, Folder, TaskState};
use sluice_scheduler::actions::{self, BackfillRequest, ClearRequest, Rerun, TriggerRequest};
use sluice_scheduler::engine::{Engine, EngineEvent, Flow, LoadedDags, Mode};
use sluice_scheduler::lookup::RunSelector;
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{Command, CommandError, Commands, Config, ManualClock, Reply};
use sluice_store::{RunFilter, RunState, Store};
use tokio::task::JoinHandle;

const DAG: &str = r#"
schedule = "0 5 * * *"
timezone = "UTC"
start_date = "2026-01-01"

[tasks.first]
operator = "noop"

[tasks.second]
operator = "noop"
depends_on = ["first"]
"#;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    engine: Engine,
    commands: Commands,
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A daemon-mode engine with the DAG loaded, its first turn taken, and a command handle.
async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), ..Config::default() };
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(LocalOperators)];
    // Before the first fire time after the start date's tick: nothing is due yet.
    let clock = Arc::new(ManualClock::new(at("2026-01-01T01:00:00Z")));
    let mut engine = Engine::new(store.clone(), config, providers, Mode::Daemon).with_clock(clock);
    let dag = parse_dag(Path::new("cmd.toml"), DAG).dag.expect("valid DAG");
    let folder = Folder { dags: vec![dag], files: Vec::new() };
    engine.set_dags(LoadedDags::prepare(folder)).await.unwrap();
    engine.load_active_runs().await.unwrap();
    assert!(matches!(engine.next_event().await, EngineEvent::Started));
    assert_eq!(engine.handle(EngineEvent::Started).await.unwrap(), Flow::Continue);
    let commands = engine.commands();
    Env { _dir: dir, store, engine, commands }
}

/// Sends `command` from another task; the caller turns the engine.
fn send(env: &Env, command: Command) -> JoinHandle<Result<Reply, CommandError>> {
    let commands = env.commands.clone();
    tokio::spawn(async move { commands.send(command).await })
}

/// Turns the engine until it has handled one command (other events, such as the change check,
/// are handled as they come); returns how many turns that took.
async fn handle_one_command(engine: &mut Engine) -> usize {
    let mut turns = 0;
    loop {
        let event = engine.next_event().await;
        let was_command = matches!(event, EngineEvent::Command(_));
        turns += 1;
        assert_eq!(engine.handle(event).await.unwrap(), Flow::Continue);
        if was_command {
            return turns;
        }
    }
}

fn trigger(date: &str) -> Command {
    Command::Trigger {
        dag_id: "cmd".into(),
        request: TriggerRequest { logical_date: Some(date.into()), conf: None, idempotency_key: None },
    }
}

#[tokio::test]
async fn a_triggered_run_starts_its_first_task_in_the_turn_that_handles_the_command() {
    let mut env = setup().await;
    let reply = send(&env, trigger("2026-01-01"));
    handle_one_command(&mut env.engine).await;
    // The reply is there, and so is the work: handled and acted on in one turn.
    let Reply::Triggered(triggered) = reply.await.unwrap().unwrap() else { panic!("a trigger's reply") };
    assert!(triggered.created);
    let run = env.store.run_by_run_id("cmd", &triggered.run.run_id).await.unwrap().expect("the run is stored");
    assert_eq!(run.state, RunState::Running, "the run was started in the same turn");
    let first = env.store.tries(run.id, Some("first")).await.unwrap();
    assert_eq!(first.len(), 1, "its first task's try started in the same turn: {first:#?}");
    assert!(env.store.tries(run.id, Some("second")).await.unwrap().is_empty());

    // The second trigger of that date finds the run: one run per logical date.
    let again = send(&env, trigger("2026-01-01"));
    handle_one_command(&mut env.engine).await;
    let Reply::Triggered(again) = again.await.unwrap().unwrap() else { panic!("a trigger's reply") };
    assert!(!again.created);
    assert_eq!(again.run.run_id, triggered.run.run_id);
}

#[tokio::test]
async fn a_refused_command_gets_the_error_the_cli_prints_and_the_engine_goes_on() {
    let mut env = setup().await;
    let bad = send(&env, trigger("the day after tomorrow"));
    handle_one_command(&mut env.engine).await;
    let via_engine = bad.await.unwrap().unwrap_err().to_string();
    // The CLI's path: the same action, called directly.
    let dag = parse_dag(Path::new("cmd.toml"), DAG).dag.unwrap();
    let request =
        TriggerRequest { logical_date: Some("the day after tomorrow".into()), conf: None, idempotency_key: None };
    let via_cli = actions::trigger(env.store.as_ref(), &dag, &request, at("2026-01-01T01:00:00Z")).await.unwrap_err();
    assert_eq!(via_engine, via_cli.to_string());
    assert!(env.store.runs(&RunFilter::default()).await.unwrap().is_empty(), "nothing was created");

    let unknown = send(&env, Command::SetPaused { dag_id: "nope".into(), paused: true });
    handle_one_command(&mut env.engine).await;
    let err = unknown.await.unwrap().unwrap_err();
    assert!(matches!(err, CommandError::Action(actions::ActionError::NotFound(_))), "{err}");

    // The engine still works.
    let ok = send(&env, trigger("2026-01-02"));
    handle_one_command(&mut env.engine).await;
    assert!(matches!(ok.await.unwrap().unwrap(), Reply::Triggered(t) if t.created));
}

#[tokio::test]
async fn a_backfill_dry_run_answers_what_the_cli_would_do_and_writes_nothing() {
    let mut env = setup().await;
    let request = BackfillRequest {
        from: "2026-01-01".into(),
        to: "2026-01-03".into(),
        rerun: Rerun::None,
        conf: None,
        dry_run: true,
    };
    let dry = send(&env, Command::Backfill { dag_id: "cmd".into(), request: request.clone() });
    handle_one_command(&mut env.engine).await;
    let Reply::Backfilled(via_engine) = dry.await.unwrap().unwrap() else { panic!("a backfill's reply") };
    let dag = parse_dag(Path::new("cmd.toml"), DAG).dag.unwrap();
    let via_cli = actions::backfill(env.store.as_ref(), &dag, &request, at("2026-01-01T01:00:00Z")).await.unwrap();
    assert_eq!(via_engine, via_cli);
    assert_eq!(via_engine.runs.len(), 3);
    assert!(env.store.runs(&RunFilter::default()).await.unwrap().is_empty(), "a dry run writes nothing");

    let real =
        send(&env, Command::Backfill { dag_id: "cmd".into(), request: BackfillRequest { dry_run: false, ..request } });
    handle_one_command(&mut env.engine).await;
    let Reply::Backfilled(done) = real.await.unwrap().unwrap() else { panic!("a backfill's reply") };
    assert_eq!(done.runs.len(), 3);
    // The oldest starts in that same turn; `max_active_runs = 1` (the default) holds the others.
    let runs = env.store.runs(&RunFilter::default()).await.unwrap();
    let states: Vec<(String, RunState)> = runs.iter().rev().map(|r| (r.run_id.clone(), r.state)).collect();
    assert_eq!(
        states,
        [
            ("backfill__2026-01-01T05:00:00+00:00".to_string(), RunState::Running),
            ("backfill__2026-01-02T05:00:00+00:00".to_string(), RunState::Queued),
            ("backfill__2026-01-03T05:00:00+00:00".to_string(), RunState::Queued),
        ]
    );
}

#[tokio::test]
async fn a_pause_holds_from_the_turn_that_handles_it_and_a_clear_runs_tasks_again() {
    let mut env = setup().await;
    let reply = send(&env, Command::SetPaused { dag_id: "cmd".into(), paused: true });
    handle_one_command(&mut env.engine).await;
    assert!(matches!(reply.await.unwrap().unwrap(), Reply::Paused(p) if p.paused));
    assert!(env.store.dags().await.unwrap().iter().any(|d| d.dag_id == "cmd" && d.paused));
    // A paused DAG starts no queued run: the triggered run stays queued.
    let t = send(&env, trigger("2026-01-01"));
    handle_one_command(&mut env.engine).await;
    let Reply::Triggered(t) = t.await.unwrap().unwrap() else { panic!("a trigger's reply") };
    let run = env.store.run_by_run_id("cmd", &t.run.run_id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Queued);

    let unpause = send(&env, Command::SetPaused { dag_id: "cmd".into(), paused: false });
    handle_one_command(&mut env.engine).await;
    unpause.await.unwrap().unwrap();
    let run = env.store.run(run.id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Running, "unpaused and started in the same turn");

    // Run it to its end, then clear `second` through the channel: it runs again.
    while env.store.run(run.id).await.unwrap().unwrap().state == RunState::Running {
        env.engine.step().await.unwrap();
    }
    let clear = send(
        &env,
        Command::Clear {
            dag_id: "cmd".into(),
            request: ClearRequest {
                run: RunSelector::RunId(run.run_id.clone()),
                task: Some("second".into()),
                downstream: false,
                upstream: false,
                failed_only: false,
                dry_run: false,
            },
        },
    );
    handle_one_command(&mut env.engine).await;
    let Reply::Cleared(cleared) = clear.await.unwrap().unwrap() else { panic!("a clear's reply") };
    assert_eq!(cleared.tasks, ["second"]);
    let tis = env.store.task_instances(run.id).await.unwrap();
    let second = tis.iter().find(|t| t.task_id == "second").unwrap();
    assert_eq!((second.state, second.try_number), (TaskState::Running, 2), "started again in the same turn");
}

/// Every test of this file again on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
