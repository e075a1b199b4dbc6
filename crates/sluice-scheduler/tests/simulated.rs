//! The engine on a simulated clock, with a real SQLite file and real (fast) tries: retries
//! with their backoff, deadlines, catch-up after downtime, DST days, `depends_on_past`. The
//! test drives the engine turn by turn and moves the clock to the engine's next timer when
//! it has nothing else to do, so an hour's retry delay takes no wall time and every time the
//! engine records is exactly the one the rules compute.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sluice_dag::{parse_dag, retry_time, Dag, EndedTry, TaskState};
use sluice_scheduler::engine::{Engine, Flow, LoadedDags, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{runs, Clock, Config, ManualClock};
use sluice_store::{EventKind, EventQuery, Run, RunFilter, RunKind, RunState, Store, Try};
use tokio::sync::watch;

mod support;
use support::GateProvider;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    config: Config,
    clock: Arc<ManualClock>,
}

async fn setup(now: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), ..Config::default() };
    std::fs::create_dir_all(&config.dags).unwrap();
    Env { dir, store, config, clock: Arc::new(ManualClock::new(at(now))) }
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dag(id: &str, src: &str) -> Dag {
    let outcome = parse_dag(Path::new(&format!("{id}.toml")), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

fn engine(env: &Env, mode: Mode, providers: Vec<Arc<dyn OperatorProvider>>) -> Engine {
    Engine::new(env.store.clone(), env.config.clone(), providers, mode).with_clock(env.clock.clone())
}

fn local() -> Vec<Arc<dyn OperatorProvider>> {
    vec![Arc::new(LocalOperators)]
}

/// Turns the engine until it is done, or idle with no timer due by `until`; whenever it is
/// idle before then, the clock jumps to its next timer.
async fn drive(engine: &mut Engine, clock: &ManualClock, until: DateTime<Utc>) -> Flow {
    loop {
        if engine.is_idle() {
            match engine.next_timer() {
                Some(t) if t <= until => clock.set(t),
                _ => return Flow::Continue,
            }
        }
        if engine.step().await.unwrap() == Flow::Done {
            return Flow::Done;
        }
    }
}

/// A manual run of `dag` (logical date `logical`, or the clock's now), run to its end.
async fn run_to_end(env: &Env, dag: &Dag, logical: Option<&str>) -> Run {
    let run = manual_run(env, dag, logical).await;
    let mut e = engine(env, Mode::SingleRun(run.id), local());
    e.add_dag(dag.clone());
    e.load_active_runs().await.unwrap();
    assert_eq!(drive(&mut e, &env.clock, DateTime::<Utc>::MAX_UTC).await, Flow::Done, "the run ends");
    env.store.run(run.id).await.unwrap().unwrap()
}

async fn manual_run(env: &Env, dag: &Dag, logical: Option<&str>) -> Run {
    let logical = logical.map(|l| sluice_dag::schedule::parse_instant(l, dag.timezone).unwrap());
    let dates = runs::manual_dates(dag, logical, env.clock.now());
    runs::create_run(env.store.as_ref(), dag, &dates, RunKind::Manual, None).await.unwrap().run().clone()
}

/// Every event of a DAG, oldest first.
fn dag_events(dag_id: &str) -> EventQuery {
    EventQuery { dag_id: Some(dag_id.into()), limit: 100_000, ..EventQuery::default() }
}

async fn tries(env: &Env, run: &Run, task: &str) -> Vec<Try> {
    env.store.tries(run.id, Some(task)).await.unwrap()
}

async fn state(env: &Env, run: &Run, task: &str) -> TaskState {
    env.store.task_instances(run.id).await.unwrap().into_iter().find(|t| t.task_id == task).unwrap().state
}

/// Runs a task that always fails and checks each retry against the rule: the next try starts
/// exactly when `retry_time` says, within 80-100% of `nominal` (seconds) after the failure.
async fn retries_follow_the_rule(src: &str, nominal: &[i64]) {
    let env = setup("2026-03-01T12:00:00Z").await;
    let d = dag("retry", src);
    let run = run_to_end(&env, &d, None).await;
    let t = tries(&env, &run, "t").await;
    assert_eq!(t.len(), nominal.len() + 1, "{t:#?}");
    assert_eq!(t[0].started_at, at("2026-03-01T12:00:00Z"));
    assert!(t
        .iter()
        .all(|t| t.state == TaskState::Failed && t.error.as_deref() == Some("command exited with status 1")));
    for (pair, nominal) in t.windows(2).zip(nominal) {
        let failed = pair[0].ended_at.unwrap();
        let ended = EndedTry {
            dag_id: &d.id,
            run_id: &run.run_id,
            task_id: "t",
            try_number: pair[0].try_number,
            max_tries: t.len() as u32,
            at: failed,
        };
        assert_eq!(pair[1].started_at, retry_time(&ended, &d.tasks[0].retry), "try {}", pair[1].try_number);
        let delay = (pair[1].started_at - failed).num_milliseconds();
        assert!(
            delay <= nominal * 1000 && delay >= nominal * 800,
            "try {}: {delay} ms for {nominal} s",
            pair[1].try_number
        );
    }
    // One event per retry, saying when the next try was due: exactly when it started.
    let events = env.store.events(&dag_events("retry")).await.unwrap();
    let scheduled: Vec<(u32, DateTime<Utc>)> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::RetryScheduled { try_number, at } => Some((try_number, at)),
            _ => None,
        })
        .collect();
    let started: Vec<(u32, DateTime<Utc>)> = t[1..].iter().map(|t| (t.try_number, t.started_at)).collect();
    assert_eq!(scheduled, started, "{events:#?}");
    assert_eq!(state(&env, &run, "t").await, TaskState::Failed);
    assert_eq!(run.state, RunState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_retries_run_every_try_after_the_same_delay() {
    retries_follow_the_rule(
        "[tasks.t]\noperator = \"command\"\ncommand = \"exit 1\"\nretries = 2\nretry_delay = \"10m\"\n",
        &[600, 600],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_backoff_doubles_the_delay_up_to_the_cap() {
    retries_follow_the_rule(
        "[tasks.t]\noperator = \"command\"\ncommand = \"exit 1\"\nretries = 4\nretry_delay = \"1h\"\n\
         retry_backoff = \"exponential\"\nmax_retry_delay = \"5h\"\n",
        &[3600, 7200, 14400, 18000],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_succeeds_makes_the_task_succeed() {
    let env = setup("2026-03-01T12:00:00Z").await;
    let flag = env.dir.path().join("flag");
    let d = dag(
        "recover",
        &format!(
            "[tasks.t]\noperator = \"command\"\ncommand = \"if [ -f {0} ]; then echo fine; else touch {0}; exit 1; fi\"\nretries = 1\nretry_delay = \"1h\"\n\
             [tasks.after]\noperator = \"command\"\ndepends_on = [\"t\"]\ncommand = \"echo upstream said {{{{ tasks.t.output }}}}\"\n",
            flag.display()
        ),
    );
    let run = run_to_end(&env, &d, None).await;
    assert_eq!(run.state, RunState::Success);
    let t = tries(&env, &run, "t").await;
    assert_eq!(t.len(), 2);
    assert!(t[1].started_at - t[0].ended_at.unwrap() >= chrono::Duration::minutes(48), "{t:#?}");
    let out = env.store.outputs(run.id).await.unwrap();
    assert_eq!(out["after"]["output"], "upstream said fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_is_recorded_once_at_the_deadline_while_the_run_still_runs() {
    let env = setup("2026-03-01T12:00:05Z").await;
    let d = dag(
        "late",
        "schedule = \"@hourly\"\nstart_date = \"2026-01-01\"\ndeadline = \"30m\"\n[tasks.t]\noperator = \"command\"\ncommand = \"gate\"\n",
    );
    let dates = runs::due_runs(env.store.as_ref(), &d, env.clock.now()).await.unwrap().pop().unwrap();
    let run = runs::create_run(env.store.as_ref(), &d, &dates, RunKind::Scheduled, None).await.unwrap().run().clone();
    let deadline = run.deadline.expect("a deadline");
    assert_eq!(deadline, at("2026-03-01T12:30:00Z"), "30 minutes after the run fired");
    let (open, gate) = watch::channel(false);
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(GateProvider(gate)), Arc::new(LocalOperators)];
    let mut e = engine(&env, Mode::SingleRun(run.id), providers);
    e.add_dag(d.clone());
    e.load_active_runs().await.unwrap();
    assert_eq!(e.step().await.unwrap(), Flow::Continue);
    assert_eq!(state(&env, &run, "t").await, TaskState::Running);
    assert!(!e.is_idle(), "a try is in flight");
    assert_eq!(e.next_timer(), Some(deadline));
    assert!(!env.store.run(run.id).await.unwrap().unwrap().deadline_missed, "not before the deadline");

    env.clock.set(deadline);
    assert_eq!(e.step().await.unwrap(), Flow::Continue);
    let stored = env.store.run(run.id).await.unwrap().unwrap();
    assert!(stored.deadline_missed);
    assert_eq!(stored.state, RunState::Running, "recorded while the run still runs");
    assert_eq!(e.next_timer(), None, "the deadline is not looked at again");

    env.clock.set(at("2026-03-01T13:10:00Z"));
    open.send(true).unwrap();
    assert_eq!(drive(&mut e, &env.clock, DateTime::<Utc>::MAX_UTC).await, Flow::Done);
    let stored = env.store.run(run.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RunState::Success, "a late run still finishes");
    let events = env.store.events(&dag_events("late")).await.unwrap();
    let missed: Vec<_> = events.iter().filter(|e| matches!(e.kind, EventKind::DeadlineMissed { .. })).collect();
    assert_eq!(missed.len(), 1, "{events:#?}");
    assert_eq!(missed[0].at, deadline);
    assert_eq!(missed[0].kind, EventKind::DeadlineMissed { deadline: Some(deadline) });
}

/// A daemon-mode engine over the DAG folder, driven until it is idle with no timer due by
/// `until`.
async fn daemon(env: &Env, until: &str) {
    let folder = sluice_dag::load_folder(&env.config.dags).unwrap();
    let mut e = engine(env, Mode::Daemon, local());
    e.set_dags(LoadedDags::prepare(folder)).await.unwrap();
    e.load_active_runs().await.unwrap();
    e.recover().await.unwrap();
    assert_eq!(drive(&mut e, &env.clock, at(until)).await, Flow::Continue);
}

async fn scheduled_runs(env: &Env, dag: &str) -> Vec<Run> {
    let filter = RunFilter { dag_id: Some(dag.into()), ..Default::default() };
    let mut r: Vec<Run> =
        env.store.runs(&filter).await.unwrap().into_iter().filter(|r| r.kind == RunKind::Scheduled).collect();
    r.sort_by_key(|r| r.logical_date);
    r
}

/// An hourly DAG whose last run fired at 05:00, and a daemon that starts again at 10:30. One
/// run at a time: a queued run starts in the turn that finishes the one before.
async fn after_downtime(catchup: bool) -> (Env, Vec<Run>) {
    let env = setup("2026-06-01T10:30:00Z").await;
    let src = format!(
        "schedule = \"@hourly\"\nstart_date = \"2026-05-30\"\ncatchup = {catchup}\nmax_active_runs = 1\n[tasks.t]\noperator = \"noop\"\n"
    );
    std::fs::write(env.config.dags.join("hourly.toml"), &src).unwrap();
    let d = dag("hourly", &src);
    let last = d.runs_firing_after(at("2026-06-01T04:59:00Z").with_timezone(&d.timezone)).next().unwrap();
    runs::create_run(env.store.as_ref(), &d, &last, RunKind::Scheduled, None).await.unwrap();
    daemon(&env, "2026-06-01T10:30:00Z").await;
    let runs = scheduled_runs(&env, "hourly").await;
    assert!(runs.iter().all(|r| r.state == RunState::Success), "{runs:#?}");
    (env, runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_false_creates_only_the_latest_missed_run_then_follows_the_clock() {
    let (env, runs) = after_downtime(false).await;
    assert_eq!(runs.len(), 2, "the old run and the latest missed one: {runs:#?}");
    assert_eq!(runs[1].data_interval_end, at("2026-06-01T10:00:00Z"));
    // Up again: the next tick fires when the clock gets there, and not before.
    daemon(&env, "2026-06-01T10:59:59Z").await;
    assert_eq!(scheduled_runs(&env, "hourly").await.len(), 2);
    daemon(&env, "2026-06-01T11:00:00Z").await;
    let runs = scheduled_runs(&env, "hourly").await;
    assert_eq!(runs.len(), 3, "{runs:#?}");
    assert_eq!((runs[2].data_interval_end, runs[2].state), (at("2026-06-01T11:00:00Z"), RunState::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_true_creates_every_missed_run_oldest_first() {
    let (_env, runs) = after_downtime(true).await;
    assert_eq!(runs.len(), 6, "the old run and the 5 missed hourly runs: {runs:#?}");
    for pair in runs.windows(2) {
        assert_eq!(pair[1].logical_date - pair[0].logical_date, chrono::Duration::hours(1));
    }
    assert_eq!(runs[5].data_interval_end, at("2026-06-01T10:00:00Z"));
}

/// A daily DAG at 01:30 London time from `start`, run by the daemon from `from` to `to` on
/// the clock; the ds of every run, each of which succeeded.
async fn daily_runs(catchup: bool, start: &str, from: &str, to: &str) -> Vec<String> {
    let env = setup(from).await;
    let src = format!(
        "schedule = \"30 1 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"{start}\"\ncatchup = {catchup}\n[tasks.t]\noperator = \"noop\"\n"
    );
    std::fs::write(env.config.dags.join("dst.toml"), &src).unwrap();
    daemon(&env, to).await;
    let runs = scheduled_runs(&env, "dst").await;
    assert!(runs.iter().all(|r| r.state == RunState::Success), "{runs:#?}");
    let tz: chrono_tz::Tz = "Europe/London".parse().unwrap();
    runs.iter().map(|r| r.logical_date.with_timezone(&tz).format("%Y-%m-%d").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dst_change_day_produces_exactly_one_run() {
    for catchup in [false, true] {
        // Spring forward (2026-03-29: 01:30 does not exist) and fall back (2026-10-25: twice).
        let spring = daily_runs(catchup, "2026-03-27", "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z").await;
        assert_eq!(spring, vec!["2026-03-27", "2026-03-28", "2026-03-29"], "catchup {catchup}");
        let fall = daily_runs(catchup, "2026-10-20", "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z").await;
        // Consecutive days, none doubled, ending with the run that fired inside the overlap
        // (ds 2026-10-24, at the first 01:30 of 2026-10-25) and the one after it.
        for pair in fall.windows(2) {
            let (a, b): (chrono::NaiveDate, chrono::NaiveDate) = (pair[0].parse().unwrap(), pair[1].parse().unwrap());
            assert_eq!(b, a.succ_opt().unwrap(), "catchup {catchup}: {fall:?}");
        }
        assert_eq!(&fall[fall.len() - 3..], ["2026-10-23", "2026-10-24", "2026-10-25"], "catchup {catchup}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_past_waits_for_the_previous_run() {
    let env = setup("2026-03-01T12:00:00Z").await;
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
    let first = run_to_end(&env, &d, Some("2026-01-01")).await;
    assert_eq!(state(&env, &first, "t").await, TaskState::Failed);
    // The next run: `t` must not start while the previous `t` is failed; `other` runs, and
    // then the engine has nothing to do.
    let second = manual_run(&env, &d, Some("2026-01-02")).await;
    let mut e = engine(&env, Mode::SingleRun(second.id), local());
    e.add_dag(d.clone());
    e.load_active_runs().await.unwrap();
    assert_eq!(drive(&mut e, &env.clock, DateTime::<Utc>::MAX_UTC).await, Flow::Continue, "the run waits");
    assert_eq!(state(&env, &second, "other").await, TaskState::Success);
    assert_eq!(state(&env, &second, "t").await, TaskState::None);
    assert!(tries(&env, &second, "t").await.is_empty());
    drop(e);
    // Once the past is fixed (cleared and succeeded), the later run goes ahead.
    std::fs::remove_file(&flag).unwrap();
    runs::clear(env.store.as_ref(), &d, &first, Some("t"), false, false, false, env.clock.now()).await.unwrap();
    let mut e = engine(&env, Mode::SingleRun(first.id), local());
    e.add_dag(d.clone());
    e.load_active_runs().await.unwrap();
    assert_eq!(drive(&mut e, &env.clock, DateTime::<Utc>::MAX_UTC).await, Flow::Done);
    let mut e = engine(&env, Mode::SingleRun(second.id), local());
    e.add_dag(d.clone());
    e.load_active_runs().await.unwrap();
    assert_eq!(drive(&mut e, &env.clock, DateTime::<Utc>::MAX_UTC).await, Flow::Done);
    assert_eq!(env.store.run(second.id).await.unwrap().unwrap().state, RunState::Success);
}

/// Every test of this file again on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
