//! The actions (trigger, backfill, clear, mark, pause) and the lookups behind them, against a
//! real SQLite file: what each writes, what its dry run lists, and the errors a user reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sluice_dag::{parse_dag, Dag, TaskState};
use sluice_scheduler::actions::{
    self, ActionError, BackfillAction, BackfillRequest, ClearRequest, MarkRequest, MarkState, Rerun, TriggerRequest,
};
use sluice_scheduler::lookup::{self, LookupError, RunSelector};
use sluice_store::{Run, RunFilter, RunState, Store};

/// Daily at 05:00 in London from 2026-03-01: `a`, then `b` and `c` after it.
const DAILY: &str = "schedule = \"0 5 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-03-01\"\n\
[tasks.a]\noperator = \"noop\"\n[tasks.b]\noperator = \"noop\"\ndepends_on = [\"a\"]\n\
[tasks.c]\noperator = \"noop\"\ndepends_on = [\"b\"]\n";

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    dag: Dag,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    Env { _dir: dir, store, dag: dag("daily", DAILY) }
}

fn dag(id: &str, src: &str) -> Dag {
    let outcome = parse_dag(Path::new(&format!("{id}.toml")), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 12, 0, 0).unwrap()
}

fn date(d: &str) -> RunSelector {
    RunSelector::Date(d.into())
}

async fn all_runs(env: &Env) -> Vec<Run> {
    env.store.runs(&RunFilter::default()).await.unwrap()
}

async fn states(env: &Env, run: &Run) -> HashMap<String, TaskState> {
    env.store.task_instances(run.id).await.unwrap().into_iter().map(|t| (t.task_id, t.state)).collect()
}

async fn trigger(env: &Env, logical: &str) -> Run {
    let req = TriggerRequest { logical_date: Some(logical.into()), conf: None, idempotency_key: None };
    let t = actions::trigger(env.store.as_ref(), &env.dag, &req, now()).await.unwrap();
    env.store.run(t.run.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn triggering_the_same_date_twice_makes_one_run() {
    let env = setup().await;
    let conf = json!({"bucket": "other"}).as_object().cloned();
    let req = TriggerRequest { logical_date: Some("2026-03-02".into()), conf: conf.clone(), idempotency_key: None };
    let first = actions::trigger(env.store.as_ref(), &env.dag, &req, now()).await.unwrap();
    assert!(first.created);
    assert_eq!(first.ds, "2026-03-02");
    assert_eq!(first.logical_date, "2026-03-02T05:00:00+00:00", "a date means the schedule's tick");
    assert_eq!(first.run.conf, conf);
    let second = actions::trigger(env.store.as_ref(), &env.dag, &req, now()).await.unwrap();
    assert!(!second.created, "the existing run is found");
    assert_eq!(second.run.id, first.run.id);
    assert_eq!(all_runs(&env).await.len(), 1);
}

#[tokio::test]
async fn a_trigger_without_a_date_runs_now_over_the_last_complete_interval() {
    let env = setup().await;
    let t = actions::trigger(env.store.as_ref(), &env.dag, &TriggerRequest::default(), now()).await.unwrap();
    assert_eq!(t.run.logical_date, now(), "the given now, not the system clock");
    assert_eq!(t.run.data_interval_start, Utc.with_ymd_and_hms(2026, 3, 19, 5, 0, 0).unwrap());
    assert_eq!(t.run.data_interval_end, Utc.with_ymd_and_hms(2026, 3, 20, 5, 0, 0).unwrap());
}

#[tokio::test]
async fn a_trigger_for_an_impossible_date_is_refused() {
    let env = setup().await;
    let req = TriggerRequest { logical_date: Some("2026-02-30".into()), conf: None, idempotency_key: None };
    let e = actions::trigger(env.store.as_ref(), &env.dag, &req, now()).await.unwrap_err();
    assert!(matches!(e, ActionError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("invalid date"), "{e}");
    assert!(all_runs(&env).await.is_empty());
}

#[tokio::test]
async fn a_backfill_dry_run_lists_what_it_would_do_and_writes_nothing() {
    let env = setup().await;
    let existing = trigger(&env, "2026-03-03").await;
    env.store.set_run_state(existing.id, RunState::Failed, now()).await.unwrap();
    let req = BackfillRequest {
        from: "2026-03-02".into(),
        to: "2026-03-04".into(),
        rerun: Rerun::All,
        conf: None,
        dry_run: true,
    };
    let plan = actions::backfill(env.store.as_ref(), &env.dag, &req, now()).await.unwrap();
    assert!(plan.dry_run);
    let listed: Vec<(&str, &str, &BackfillAction)> =
        plan.runs.iter().map(|i| (i.ds.as_str(), i.run_id.as_str(), &i.action)).collect();
    let all = BackfillAction::Clear { tasks: vec!["a".into(), "b".into(), "c".into()] };
    assert_eq!(
        listed,
        vec![
            ("2026-03-02", "backfill__2026-03-02T05:00:00+00:00", &BackfillAction::Create),
            ("2026-03-03", existing.run_id.as_str(), &all),
            ("2026-03-04", "backfill__2026-03-04T05:00:00+00:00", &BackfillAction::Create),
        ]
    );
    assert!(plan.runs[0].run.is_none() && plan.runs[2].run.is_none(), "nothing exists for a run to create");
    assert_eq!(all_runs(&env).await, vec![env.store.run(existing.id).await.unwrap().unwrap()], "nothing created");
    assert_eq!(env.store.run(existing.id).await.unwrap().unwrap().state, RunState::Failed, "nothing cleared");

    // The real backfill does what the dry run said.
    let done = actions::backfill(env.store.as_ref(), &env.dag, &BackfillRequest { dry_run: false, ..req }, now())
        .await
        .unwrap();
    assert!(!done.dry_run);
    let did: Vec<(&str, &str, &BackfillAction)> =
        done.runs.iter().map(|i| (i.ds.as_str(), i.run_id.as_str(), &i.action)).collect();
    assert_eq!(did, listed);
    assert_eq!(all_runs(&env).await.len(), 3);
    assert_eq!(env.store.run(existing.id).await.unwrap().unwrap().state, RunState::Queued, "cleared to run again");
}

#[tokio::test]
async fn a_backfill_reruns_only_failed_runs_with_rerun_failed() {
    let env = setup().await;
    let ok = trigger(&env, "2026-03-02").await;
    let failed = trigger(&env, "2026-03-03").await;
    env.store.set_run_state(ok.id, RunState::Success, now()).await.unwrap();
    env.store.set_task_states(failed.id, &[("b".into(), TaskState::Failed)], now()).await.unwrap();
    env.store.set_run_state(failed.id, RunState::Failed, now()).await.unwrap();
    let req = BackfillRequest {
        from: "2026-03-02".into(),
        to: "2026-03-03".into(),
        rerun: Rerun::Failed,
        conf: None,
        dry_run: false,
    };
    let done = actions::backfill(env.store.as_ref(), &env.dag, &req, now()).await.unwrap();
    let actions: Vec<&BackfillAction> = done.runs.iter().map(|i| &i.action).collect();
    assert_eq!(actions, vec![&BackfillAction::LeaveAlone, &BackfillAction::Clear { tasks: vec!["b".into()] }]);
    assert_eq!(states(&env, &failed).await["b"], TaskState::None);
}

#[tokio::test]
async fn a_backfill_needs_an_ordered_range_and_a_schedule() {
    let env = setup().await;
    let req = |from: &str, to: &str| BackfillRequest {
        from: from.into(),
        to: to.into(),
        rerun: Rerun::None,
        conf: None,
        dry_run: false,
    };
    let e = actions::backfill(env.store.as_ref(), &env.dag, &req("2026-03-05", "2026-03-01"), now()).await.unwrap_err();
    assert_eq!(e.to_string(), "--from 2026-03-05 is after --to 2026-03-01: the range holds no date");
    let manual = dag("manual", "[tasks.a]\noperator = \"noop\"\n");
    let e = actions::backfill(env.store.as_ref(), &manual, &req("2026-03-01", "2026-03-02"), now()).await.unwrap_err();
    assert_eq!(e.to_string(), "DAG `manual` has no schedule: a backfill needs schedule ticks");
    let e = actions::backfill(env.store.as_ref(), &env.dag, &req("yesterday", "2026-03-02"), now()).await.unwrap_err();
    assert!(matches!(e, ActionError::Invalid(_)) && e.to_string().contains("invalid date"), "{e}");
    // A range of millions of days is refused whole, dry run or not, before anything is written.
    for dry_run in [true, false] {
        let huge = BackfillRequest { dry_run, ..req("2026-03-01", "9999-12-31") };
        let e = actions::backfill(env.store.as_ref(), &env.dag, &huge, now()).await.unwrap_err();
        assert!(matches!(e, ActionError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("holds more than 10000 runs of `daily`: backfill it in parts"), "{e}");
    }
    assert!(all_runs(&env).await.is_empty());
}

#[tokio::test]
async fn a_clear_dry_run_lists_the_tasks_and_the_real_one_resets_them() {
    let env = setup().await;
    let run = trigger(&env, "2026-03-02").await;
    let done =
        [("a".into(), TaskState::Success), ("b".into(), TaskState::Failed), ("c".into(), TaskState::UpstreamFailed)];
    env.store.set_task_states(run.id, &done, now()).await.unwrap();
    let before = states(&env, &run).await;
    let req = ClearRequest {
        run: date("2026-03-02"),
        task: Some("a".into()),
        downstream: true,
        upstream: false,
        failed_only: true,
        dry_run: true,
    };
    let plan = actions::clear(env.store.as_ref(), &env.dag, &req, now()).await.unwrap();
    assert_eq!(plan.tasks, vec!["b", "c"], "a's downstream, failed only");
    assert_eq!(plan.run.run_id, run.run_id);
    assert_eq!(states(&env, &run).await, before, "a dry run writes nothing");

    let cleared =
        actions::clear(env.store.as_ref(), &env.dag, &ClearRequest { dry_run: false, ..req }, now()).await.unwrap();
    assert_eq!(cleared.tasks, plan.tasks);
    let after = states(&env, &run).await;
    assert_eq!((after["a"], after["b"], after["c"]), (TaskState::Success, TaskState::None, TaskState::None));

    let unknown = ClearRequest {
        run: date("2026-03-02"),
        task: Some("zz".into()),
        downstream: false,
        upstream: false,
        failed_only: false,
        dry_run: true,
    };
    let e = actions::clear(env.store.as_ref(), &env.dag, &unknown, now()).await.unwrap_err();
    assert!(matches!(e, ActionError::NotFound(_)), "{e:?}");

    // Upstream: the task's ancestors first, then the task; nothing is written on a dry run.
    let up = ClearRequest { task: Some("c".into()), upstream: true, failed_only: false, ..unknown.clone() };
    let plan = actions::clear(env.store.as_ref(), &env.dag, &up, now()).await.unwrap();
    assert_eq!(plan.tasks, vec!["a", "b", "c"]);
    let both = ClearRequest { task: Some("b".into()), downstream: true, ..up.clone() };
    assert_eq!(actions::clear(env.store.as_ref(), &env.dag, &both, now()).await.unwrap().tasks, vec!["a", "b", "c"]);
    let none = ClearRequest { task: None, ..up };
    let invalid = actions::clear(env.store.as_ref(), &env.dag, &none, now()).await.unwrap_err();
    assert!(matches!(invalid, ActionError::Invalid(_)), "{invalid:?}");
    assert_eq!(e.to_string(), "task `zz` in DAG `daily` not found");
}

#[tokio::test]
async fn mark_sets_one_task_or_the_unfinished_ones_and_the_run() {
    let env = setup().await;
    let run = trigger(&env, "2026-03-02").await;
    env.store.set_task_states(run.id, &[("a".into(), TaskState::Success)], now()).await.unwrap();
    let selector = RunSelector::RunId(run.run_id.clone());
    let whole = MarkRequest { run: selector.clone(), task: None, state: MarkState::Failed, dry_run: true };
    let plan = actions::mark(env.store.as_ref(), &env.dag, &whole, now()).await.unwrap();
    assert_eq!(plan.tasks, vec!["b", "c"], "the unfinished tasks");
    assert_eq!(plan.run_state, Some(RunState::Failed));
    assert_eq!(states(&env, &run).await["b"], TaskState::None, "a dry run writes nothing");
    assert_eq!(env.store.run(run.id).await.unwrap().unwrap().state, RunState::Queued);

    let one = MarkRequest { run: selector.clone(), task: Some("b".into()), state: MarkState::Success, dry_run: false };
    let marked = actions::mark(env.store.as_ref(), &env.dag, &one, now()).await.unwrap();
    assert_eq!((marked.tasks, marked.run_state), (vec!["b".to_string()], None));
    assert_eq!(states(&env, &run).await["b"], TaskState::Success);

    let marked =
        actions::mark(env.store.as_ref(), &env.dag, &MarkRequest { dry_run: false, ..whole }, now()).await.unwrap();
    assert_eq!(marked.tasks, vec!["c"]);
    let s = states(&env, &run).await;
    assert_eq!((s["a"], s["b"], s["c"]), (TaskState::Success, TaskState::Success, TaskState::Failed));
    assert_eq!(env.store.run(run.id).await.unwrap().unwrap().state, RunState::Failed);

    let unknown = MarkRequest { run: selector, task: Some("zz".into()), state: MarkState::Success, dry_run: false };
    let e = actions::mark(env.store.as_ref(), &env.dag, &unknown, now()).await.unwrap_err();
    assert_eq!(e.to_string(), format!("task `zz` in run {} not found", run.run_id));
}

#[tokio::test]
async fn set_paused_pauses_and_unpauses() {
    let env = setup().await;
    let paused = |env: &Env| {
        let store = env.store.clone();
        async move { store.dags().await.unwrap().into_iter().find(|d| d.dag_id == "daily").map(|d| d.paused) }
    };
    let done = actions::set_paused(env.store.as_ref(), "daily", true).await.unwrap();
    assert_eq!((done.dag_id.as_str(), done.paused), ("daily", true));
    assert_eq!(paused(&env).await, Some(true));
    actions::set_paused(env.store.as_ref(), "daily", false).await.unwrap();
    assert_eq!(paused(&env).await, Some(false));
}

#[tokio::test]
async fn a_date_with_two_runs_and_no_tick_is_ambiguous() {
    let env = setup().await;
    let early = trigger(&env, "2026-03-02T07:00").await;
    let late = trigger(&env, "2026-03-02T09:00").await;
    let e = lookup::find_run(env.store.as_ref(), &env.dag, &date("2026-03-02")).await.unwrap_err();
    assert!(matches!(e, LookupError::Ambiguous { ref run_ids, .. } if run_ids.len() == 2), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("DAG `daily` has 2 runs on 2026-03-02; name one with --run: "), "{msg}");
    assert!(msg.contains(&early.run_id) && msg.contains(&late.run_id), "{msg}");
    // Through an action, the same message as an invalid request.
    let req = ClearRequest {
        run: date("2026-03-02"),
        task: None,
        downstream: false,
        upstream: false,
        failed_only: false,
        dry_run: true,
    };
    let e = actions::clear(env.store.as_ref(), &env.dag, &req, now()).await.unwrap_err();
    assert!(matches!(e, ActionError::Invalid(ref m) if *m == msg), "{e:?}");
    // A timestamp or the run id names one of them; the tick, once it exists, wins the date.
    let at = lookup::find_run(env.store.as_ref(), &env.dag, &date("2026-03-02T09:00")).await.unwrap();
    assert_eq!(at.id, late.id);
    let by_id =
        lookup::find_run(env.store.as_ref(), &env.dag, &RunSelector::RunId(early.run_id.clone())).await.unwrap();
    assert_eq!(by_id.id, early.id);
    let tick = trigger(&env, "2026-03-02").await;
    assert_eq!(lookup::find_run(env.store.as_ref(), &env.dag, &date("2026-03-02")).await.unwrap().id, tick.id);
}

#[tokio::test]
async fn a_missing_run_says_which() {
    let env = setup().await;
    let find = |s: RunSelector| {
        let (store, dag) = (env.store.clone(), env.dag.clone());
        async move { lookup::find_run(store.as_ref(), &dag, &s).await.unwrap_err().to_string() }
    };
    assert_eq!(find(date("2026-03-02")).await, "DAG `daily` has no run on 2026-03-02");
    assert_eq!(find(date("2026-03-02T06:00")).await, "DAG `daily` has no run with logical date 2026-03-02T06:00");
    assert_eq!(find(RunSelector::RunId("x".into())).await, "DAG `daily` has no run `x`");
    assert!(find(date("soon")).await.contains("invalid date"));
}

#[tokio::test]
async fn a_broken_file_falls_back_to_the_last_good_version_in_the_store() {
    let env = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("daily.toml");
    std::fs::write(&file, "schedule = \"0 5 * * *\"\n[tasks.a]\noperator = \"nope\"\n").unwrap();
    let folder = sluice_dag::load_folder(dir.path()).unwrap();

    let e = lookup::dag_with_fallback(&folder, None, "daily").await.unwrap_err();
    assert!(matches!(e, LookupError::Broken { .. }), "without a store, the folder's error: {e:?}");
    assert!(e.to_string().starts_with("DAG `daily` does not load:\n"), "{e}");

    env.store.sync_dag("daily", &file.display().to_string(), Some(DAILY), None).await.unwrap();
    let (dag, fallback) = lookup::dag_with_fallback(&folder, Some(env.store.as_ref()), "daily").await.unwrap();
    assert_eq!(dag.tasks.len(), 3, "the recorded version");
    assert!(matches!(fallback.unwrap().reason, LookupError::Broken { .. }));

    let e = lookup::dag_with_fallback(&folder, Some(env.store.as_ref()), "dayly").await.unwrap_err();
    assert_eq!(e.to_string(), "no DAG `dayly` in the folder");
}

/// Every test of this file again on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
