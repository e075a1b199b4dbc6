//! The views listings print, built from a real SQLite file: what they hold and their JSON shape.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sluice_dag::{parse_dag, TaskState};
use sluice_scheduler::actions::{self, TriggerRequest};
use sluice_scheduler::views::{DagListView, RunDetailView, RunView, ValidationView};
use sluice_store::TryOutcome;

const DAILY: &str = "schedule = \"0 5 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-03-01\"\n\
[tasks.z_first]\noperator = \"noop\"\n[tasks.a_second]\noperator = \"noop\"\ndepends_on = [\"z_first\"]\n";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 12, 0, 0).unwrap()
}

#[tokio::test]
async fn a_run_detail_has_tasks_in_the_dags_order_with_their_tries_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::testing::store_in(dir.path()).await;
    let dag = parse_dag(Path::new("daily.toml"), DAILY).dag.unwrap();
    let req = TriggerRequest { logical_date: Some("2026-03-02".into()), conf: None, idempotency_key: None };
    let run = actions::trigger(store.as_ref(), &dag, &req, now()).await.unwrap().run;
    store.set_task_states(run.id, &[("z_first".into(), TaskState::Scheduled)], now()).await.unwrap();
    let sluice_store::Start::Started(n) = store.start_try(run.id, "z_first", now()).await.unwrap() else {
        panic!("a scheduled task starts")
    };
    let failed = TryOutcome::Failed { error: "boom".into(), retry_at: None };
    store.finish_try(run.id, "z_first", n, &failed, now() + Duration::milliseconds(1500)).await.unwrap();

    let run = store.run(run.id).await.unwrap().unwrap();
    let logs = dir.path().join("logs");
    let detail = RunDetailView::load(store.as_ref(), &dag, &run, &logs).await.unwrap();
    assert_eq!(detail.run, RunView::from(&run));
    let ids: Vec<&str> = detail.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, vec!["z_first", "a_second"], "topological, not alphabetical");
    let first = &detail.tasks[0];
    let last = first.last_try().expect("a try");
    assert_eq!((last.try_number, last.error.as_deref(), last.duration_ms), (1, Some("boom"), Some(1500)));
    assert_eq!(last.log, logs.join("daily").join(&run.run_id).join("z_first").join("1.log"));
    assert!(detail.tasks[1].tries.is_empty() && detail.tasks[1].duration_ms.is_none());

    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["run"]["run_id"], run.run_id.as_str());
    assert_eq!(json["run"]["state"], "queued");
    assert_eq!(json["tasks"][0]["state"], "failed");
    assert_eq!(json["tasks"][0]["tries"][0]["error"], "boom");
    assert!(json["tasks"][0]["tries"][0]["external_ids"].is_object());
}

#[test]
fn a_dag_list_shows_paused_flags_from_the_store_or_as_the_dag_will_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("daily.toml"), DAILY).unwrap();
    std::fs::write(dir.path().join("later.toml"), format!("paused_at_creation = true\n{DAILY}")).unwrap();
    std::fs::write(dir.path().join("broken.toml"), "[tasks.a]\noperator = \"nope\"\n").unwrap();
    let folder = sluice_dag::load_folder(dir.path()).unwrap();

    let list = DagListView::new(&folder, &[], now());
    let paused: Vec<(&str, bool)> = list.dags.iter().map(|d| (d.id.as_str(), d.paused)).collect();
    assert_eq!(paused, vec![("daily", false), ("later", true)]);
    let daily = &list.dags[0];
    assert_eq!(daily.next_fire_time.as_deref(), Some("2026-03-21T05:00:00+00:00"));
    assert_eq!(daily.next_ds.as_deref(), Some("2026-03-20"));
    assert_eq!(list.failed_files.len(), 1);
    assert!(list.failed_files[0].file.ends_with("broken.toml"));
    assert!(!list.failed_files[0].errors.is_empty());

    let row = sluice_store::DagRow {
        dag_id: "later".into(),
        file: None,
        paused: false,
        parse_error: None,
        schedule_error: Some("the schedule ends".into()),
        updated_at: now(),
    };
    let list = DagListView::new(&folder, &[row], now());
    assert!(!list.dags[1].paused, "the store's flag wins");
    assert_eq!(list.dags[1].schedule_error.as_deref(), Some("the schedule ends"));

    let checked = ValidationView::from(&folder);
    assert!(!checked.valid);
    assert_eq!(checked.files.iter().filter(|f| !f.valid).count(), 1);
}

/// Every test of this file again on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
