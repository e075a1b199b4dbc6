//! The store contract: what every backend must do, written against `Arc<dyn Store>` from the
//! URL factory. `backend!` stamps one `#[tokio::test]` per contract test for a backend; the
//! SQLite backend is instantiated at the bottom, and PostgreSQL adds one line.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use sluice_store::{Created, Event, EventKind, EventQuery, NewRun, RunKind, Start, Store, TaskState};
use tempfile::TempDir;

mod alerts;
mod api;
mod events;
mod lifecycle;
mod races;

/// One fresh database of a backend; every [`Db::handle`] opens another handle on it (another
/// process, as far as the store can tell).
pub struct Db {
    dir: TempDir,
    postgres: bool,
    /// Made by the first handle.
    url: tokio::sync::OnceCell<String>,
}

impl Db {
    pub fn sqlite() -> Db {
        Db { dir: TempDir::new().unwrap(), postgres: false, url: tokio::sync::OnceCell::new() }
    }

    /// A schema of its own on the test PostgreSQL server (`sluice_store::testing`).
    #[cfg(feature = "postgres")]
    pub fn postgres() -> Db {
        Db { dir: TempDir::new().unwrap(), postgres: true, url: tokio::sync::OnceCell::new() }
    }

    pub async fn handle(&self) -> Arc<dyn Store> {
        let url = self
            .url
            .get_or_init(|| async {
                match self.postgres {
                    true => sluice_store::testing::new_schema().await,
                    false => format!("sqlite:{}", self.dir.path().join("sluice.db").display()),
                }
            })
            .await;
        sluice_store::open(url).await.unwrap()
    }
}

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub fn new_run(dag_id: &str, run_id: &str, logical_date: &str) -> NewRun {
    let start = t(logical_date);
    NewRun {
        dag_id: dag_id.into(),
        run_id: run_id.into(),
        kind: RunKind::Scheduled,
        logical_date: start,
        data_interval_start: start,
        data_interval_end: start + Duration::days(1),
        conf: None,
        deadline: None,
        tasks: vec![("extract".into(), 3), ("load".into(), 1)],
        idempotency_key: None,
    }
}

pub fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Creates a run and returns its id, asserting it is new.
pub async fn create(store: &Arc<dyn Store>, new: &NewRun) -> i64 {
    match store.create_run(new).await.unwrap() {
        Created::New(run) => run.id,
        Created::Existing(run) => panic!("run {} already existed", run.run_id),
    }
}

/// Schedules a task and starts its next try, as the engine does; returns the try number.
pub async fn start(store: &Arc<dyn Store>, run: i64, task_id: &str, at: DateTime<Utc>) -> u32 {
    store.set_task_states(run, &[(task_id.to_string(), TaskState::Scheduled)], at).await.unwrap();
    match store.start_try(run, task_id, at).await.unwrap() {
        Start::Started(n) => n,
        other => panic!("{task_id} did not start: {other:?}"),
    }
}

/// Every event, oldest first.
pub async fn all_events(store: &Arc<dyn Store>) -> Vec<Event> {
    store.events(&EventQuery { limit: u32::MAX, ..EventQuery::default() }).await.unwrap()
}

/// The events after `after`, oldest first.
pub async fn events_after(store: &Arc<dyn Store>, after: i64) -> Vec<Event> {
    store.events(&EventQuery { after: Some(after), limit: u32::MAX, ..EventQuery::default() }).await.unwrap()
}

/// The id of the last event (0 for none).
pub async fn last_id(store: &Arc<dyn Store>) -> i64 {
    let newest = EventQuery { limit: 1, order: sluice_store::Order::Newest, ..EventQuery::default() };
    store.events(&newest).await.unwrap().first().map_or(0, |e| e.id)
}

/// The kinds of `events`, with the task each names.
pub fn kinds(events: &[Event]) -> Vec<(Option<&str>, EventKind)> {
    events.iter().map(|e| (e.task_id.as_deref(), e.kind.clone())).collect()
}

/// One `#[tokio::test]` per contract test, for the backend whose fresh databases `$db` makes.
macro_rules! backend {
    ($backend:ident, $db:expr) => {
        mod $backend {
            backend!(@stamp $db;
                lifecycle::create_run_returns_the_existing_run_for_the_same_logical_date_or_run_id,
                lifecycle::the_try_lifecycle,
                lifecycle::a_skipped_try_records_its_reason,
                lifecycle::unknown_runs_tasks_and_tries_are_not_found,
                lifecycle::task_and_run_states_keep_their_times,
                lifecycle::runs_filter_by_dag_and_state_newest_first,
                lifecycle::clear_tasks_resets_them_deletes_outputs_and_requeues_the_run,
                lifecycle::a_try_finishing_after_its_task_was_cleared_changes_only_the_try,
                lifecycle::paused_survives_sync_dag,
                lifecycle::a_cleared_run_that_runs_again_counts_its_duration_from_its_new_start,
                lifecycle::sync_dags_pauses_only_new_dags_and_clears_schedule_errors_on_load,
                lifecycle::a_deadline_is_marked_missed_once,
                lifecycle::batched_starts_and_finishes_do_what_the_single_calls_do,
                lifecycle::batches_larger_than_one_statement_are_complete,
                lifecycle::a_large_run_keeps_its_tasks_in_the_dag_order_with_their_ids_and_tries,
                lifecycle::running_tries_survive_a_new_handle,
                lifecycle::set_states_and_start_sets_the_states_then_starts_the_tries,
                events::every_change_writes_its_events_with_it,
                events::refused_and_rolled_back_changes_write_no_events,
                events::after_resumes_with_every_event_exactly_once,
                events::filters_and_newest_first,
                events::subscribers_get_this_handles_committed_events_in_store_order,
                races::two_handles_starting_the_same_try_one_wins,
                races::two_handles_starting_the_same_batch_start_each_try_once,
                races::two_handles_finishing_the_same_try_one_applies,
                api::pages_by_cursor_list_every_matching_run_once_in_order,
                api::the_grid_is_the_newest_runs_with_all_their_tasks,
                api::latest_runs_per_dag_and_the_last_success_of_each,
                api::api_tokens_keep_a_hash_and_are_revoked_by_name,
                api::an_idempotency_key_gives_one_run_per_dag,
                api::racing_creators_with_one_idempotency_key_make_one_run,
                alerts::enqueue_with_the_cursor_never_enqueues_an_incident_twice,
                alerts::cursors_never_go_back,
                alerts::due_alerts_come_earliest_due_first,
                alerts::attempts_deliver_retry_or_give_up,
                alerts::attempts_of_several_alerts_are_one_transaction_each_answered,
                alerts::alert_listings_filter_by_dag_and_state_newest_first,
                alerts::a_reopened_store_keeps_alerts_attempts_and_cursors,
                alerts::previous_finished_run_is_the_last_one_that_ended_before,
            );
        }
    };
    (@stamp $db:expr; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                crate::$module::$test(&$db).await
            }
        )*
    };
}

backend!(sqlite, crate::Db::sqlite());
#[cfg(feature = "postgres")]
backend!(postgres, crate::Db::postgres());
