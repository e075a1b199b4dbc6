//! The alert outbox: enqueued with the reader's cursor in one transaction and never twice,
//! delivered when due, every attempt recorded; and the previous finished run a recovery is
//! told from.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sluice_store::{AlertQuery, AlertRow, AlertState, Attempt, NewAlert, RunState, Store, StoreError};

use crate::{create, map, new_run, t, Db};

const CURSOR: &str = "alerter";

fn alert(channel: &str, incident: &str, dag_id: &str, due_at: DateTime<Utc>) -> NewAlert {
    NewAlert {
        channel: channel.into(),
        incident: incident.into(),
        rule: "failure".into(),
        dag_id: dag_id.into(),
        run_id: Some("scheduled__1".into()),
        task_id: Some("load".into()),
        event_id: Some(7),
        message: map(json!({"title": format!("{dag_id} failed"), "error": "exit status 1"})),
        due_at,
    }
}

fn ids(rows: &[AlertRow]) -> Vec<i64> {
    rows.iter().map(|a| a.id).collect()
}

async fn every_alert(store: &Arc<dyn Store>) -> Vec<AlertRow> {
    store.alerts(&AlertQuery::default()).await.unwrap()
}

pub async fn enqueue_with_the_cursor_never_enqueues_an_incident_twice(db: &Db) {
    let store = db.handle().await;
    let at = t("2026-03-02T07:00:00Z");
    assert_eq!(store.cursor(CURSOR).await.unwrap(), None);

    let first = [
        alert("slack:data-oncall", "failure/d/1", "d", at),
        alert("sns:pipeline-alerts", "failure/d/1", "d", at),
        alert("slack:data-oncall", "failure/e/1", "e", at + Duration::minutes(10)),
    ];
    let inserted = store.enqueue_alerts(CURSOR, 10, &first, at).await.unwrap();
    assert_eq!(inserted.len(), 3);
    assert_eq!(store.cursor(CURSOR).await.unwrap(), Some(10));
    let row = store.alert(inserted[0]).await.unwrap().unwrap();
    assert_eq!(
        row,
        AlertRow {
            id: inserted[0],
            channel: "slack:data-oncall".into(),
            incident: "failure/d/1".into(),
            rule: "failure".into(),
            dag_id: "d".into(),
            run_id: Some("scheduled__1".into()),
            task_id: Some("load".into()),
            event_id: Some(7),
            message: first[0].message.clone(),
            state: AlertState::Pending,
            attempts: 0,
            created_at: at,
            next_attempt_at: Some(at),
            delivered_at: None,
            last_error: None,
        }
    );
    assert_eq!(store.alert(inserted[2]).await.unwrap().unwrap().next_attempt_at, Some(at + Duration::minutes(10)));

    // The same events read again (a restart before the sender ran) plus a new incident, and a
    // batch naming one incident twice: only the new one is inserted, once.
    let mut again = first.to_vec();
    again.push(alert("slack:data-oncall", "failure/d/2", "d", at));
    again.push(alert("slack:data-oncall", "failure/d/2", "d", at));
    let later = at + Duration::hours(1);
    let inserted_again = store.enqueue_alerts(CURSOR, 12, &again, later).await.unwrap();
    assert_eq!(inserted_again.len(), 1);
    let new = store.alert(inserted_again[0]).await.unwrap().unwrap();
    assert_eq!((new.incident.as_str(), new.created_at), ("failure/d/2", later));
    assert_eq!(store.cursor(CURSOR).await.unwrap(), Some(12));
    assert_eq!(every_alert(&store).await.len(), 4);
    // The first rows were left as they were.
    assert_eq!(store.alert(inserted[0]).await.unwrap().unwrap(), row);

    // A delivered incident is not enqueued again either.
    store.record_attempt(inserted[0], at, &Attempt::Delivered { answer: "ok".into() }).await.unwrap();
    assert!(store.enqueue_alerts(CURSOR, 12, &first[..1], later).await.unwrap().is_empty());
    assert_eq!(store.alert(inserted[0]).await.unwrap().unwrap().state, AlertState::Delivered);

    // An older position (another reader's stale view) does not move the cursor back; nothing to
    // enqueue still moves it forward.
    assert!(store.enqueue_alerts(CURSOR, 5, &[], later).await.unwrap().is_empty());
    assert_eq!(store.cursor(CURSOR).await.unwrap(), Some(12));
    assert!(store.enqueue_alerts(CURSOR, 20, &[], later).await.unwrap().is_empty());
    assert_eq!(store.cursor(CURSOR).await.unwrap(), Some(20));
    // Another handle (another process) sees the same.
    let other = db.handle().await;
    assert_eq!(other.cursor(CURSOR).await.unwrap(), Some(20));
    assert_eq!(every_alert(&other).await.len(), 4);
}

pub async fn cursors_never_go_back(db: &Db) {
    let store = db.handle().await;
    store.set_cursor("a", 5).await.unwrap();
    store.set_cursor("a", 3).await.unwrap();
    assert_eq!(store.cursor("a").await.unwrap(), Some(5));
    store.set_cursor("a", 8).await.unwrap();
    assert_eq!(store.cursor("a").await.unwrap(), Some(8));
    // Cursors are independent of each other.
    assert_eq!(store.cursor("b").await.unwrap(), None);
    store.set_cursor("b", 1).await.unwrap();
    assert_eq!(store.cursor("b").await.unwrap(), Some(1));
    assert_eq!(store.cursor("a").await.unwrap(), Some(8));
    // Through another handle too.
    let other = db.handle().await;
    other.set_cursor("a", 2).await.unwrap();
    assert_eq!(store.cursor("a").await.unwrap(), Some(8));
    // The enqueue's cursor is the same one.
    store.enqueue_alerts("b", 0, &[], t("2026-03-02T07:00:00Z")).await.unwrap();
    assert_eq!(store.cursor("b").await.unwrap(), Some(1));
}

pub async fn due_alerts_come_earliest_due_first(db: &Db) {
    let store = db.handle().await;
    let now = t("2026-03-02T07:00:00Z");
    assert!(store.due_alerts(now, 10).await.unwrap().is_empty());
    assert_eq!(store.next_alert_due().await.unwrap(), None);

    let minutes = |m: i64| now + Duration::minutes(m);
    // Inserted out of due order; two share a due time (then the older comes first).
    let new = [
        alert("slack:a", "i1", "d", minutes(-1)),
        alert("slack:a", "i2", "d", minutes(-5)),
        alert("slack:a", "i3", "d", minutes(5)),
        alert("slack:a", "i4", "d", minutes(-1)),
        alert("slack:a", "i5", "d", minutes(0)),
    ];
    let id = store.enqueue_alerts(CURSOR, 1, &new, minutes(-10)).await.unwrap();
    let due = store.due_alerts(now, 10).await.unwrap();
    assert_eq!(ids(&due), [id[1], id[0], id[3], id[4]], "due at `now` is due; later is not");
    assert_eq!(ids(&store.due_alerts(now, 2).await.unwrap()), [id[1], id[0]]);
    assert_eq!(store.next_alert_due().await.unwrap(), Some(minutes(-5)));

    // Delivered and given-up alerts are never due again.
    store.record_attempt(id[1], now, &Attempt::Delivered { answer: "ok".into() }).await.unwrap();
    let give_up = Attempt::Failed { error: "404 no such channel".into(), retry_at: None };
    store.record_attempt(id[0], now, &give_up).await.unwrap();
    assert_eq!(ids(&store.due_alerts(now, 10).await.unwrap()), [id[3], id[4]]);
    assert_eq!(store.next_alert_due().await.unwrap(), Some(minutes(-1)));
    // A retry moves the alert behind the others.
    let retry = Attempt::Failed { error: "503".into(), retry_at: Some(minutes(1)) };
    store.record_attempt(id[3], now, &retry).await.unwrap();
    assert_eq!(ids(&store.due_alerts(now, 10).await.unwrap()), [id[4]]);
    assert_eq!(ids(&store.due_alerts(minutes(5), 10).await.unwrap()), [id[4], id[3], id[2]]);
    for k in [2, 3, 4] {
        store.record_attempt(id[k], minutes(5), &Attempt::Delivered { answer: "ok".into() }).await.unwrap();
    }
    assert!(store.due_alerts(minutes(60), 10).await.unwrap().is_empty());
    assert_eq!(store.next_alert_due().await.unwrap(), None);
}

pub async fn attempts_deliver_retry_or_give_up(db: &Db) {
    let store = db.handle().await;
    let t0 = t("2026-03-02T07:00:00Z");
    let id = store
        .enqueue_alerts(CURSOR, 1, &[alert("slack:a", "i1", "d", t0), alert("email:b", "i1", "d", t0)], t0)
        .await
        .unwrap();
    let (retried, given_up) = (id[0], id[1]);

    // A failure that may be retried: still pending, due at the retry time.
    let retry_at = t0 + Duration::minutes(2);
    let failed = Attempt::Failed { error: "HTTP 500 from hooks.slack.com".into(), retry_at: Some(retry_at) };
    let row = store.record_attempt(retried, t0, &failed).await.unwrap();
    assert_eq!(row.state, AlertState::Pending);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.next_attempt_at, Some(retry_at));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 500 from hooks.slack.com"));
    assert_eq!(row.delivered_at, None);
    assert_eq!(store.alert(retried).await.unwrap().unwrap(), row);
    // Then delivered: no longer due; the last error is kept for the record.
    let delivered_at = retry_at + Duration::seconds(1);
    let row = store.record_attempt(retried, delivered_at, &Attempt::Delivered { answer: "ok".into() }).await.unwrap();
    assert_eq!(row.state, AlertState::Delivered);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.next_attempt_at, None);
    assert_eq!(row.delivered_at, Some(delivered_at));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 500 from hooks.slack.com"));
    let attempts: Vec<_> = store
        .alert_attempts(retried)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.alert, a.number, a.at, a.ok, a.text))
        .collect();
    assert_eq!(
        attempts,
        [
            (retried, 1, t0, false, "HTTP 500 from hooks.slack.com".to_string()),
            (retried, 2, delivered_at, true, "ok".to_string())
        ]
    );

    // A failure without a retry time: the sender gave up.
    let give_up = Attempt::Failed { error: "535 authentication failed".into(), retry_at: None };
    let row = store.record_attempt(given_up, t0, &give_up).await.unwrap();
    assert_eq!((row.state, row.attempts, row.next_attempt_at), (AlertState::Failed, 1, None));
    assert_eq!(row.last_error.as_deref(), Some("535 authentication failed"));

    // Neither takes another attempt: refused, nothing written.
    for (alert, attempts) in [(retried, 2), (given_up, 1)] {
        let before = store.alert(alert).await.unwrap().unwrap();
        for attempt in [Attempt::Delivered { answer: "ok".into() }, failed.clone()] {
            match store.record_attempt(alert, delivered_at, &attempt).await {
                Err(StoreError::Conflict(message)) => assert!(message.contains("not pending"), "{message}"),
                other => panic!("attempt on a finished alert: {other:?}"),
            }
        }
        assert_eq!(store.alert(alert).await.unwrap().unwrap(), before);
        assert_eq!(store.alert_attempts(alert).await.unwrap().len(), attempts);
    }
    assert!(matches!(
        store.record_attempt(9999, t0, &Attempt::Delivered { answer: "ok".into() }).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.alert_attempts(9999).await.unwrap().is_empty());
    assert_eq!(store.alert(9999).await.unwrap(), None);
}

pub async fn attempts_of_several_alerts_are_one_transaction_each_answered(db: &Db) {
    let store = db.handle().await;
    let t0 = t("2026-03-02T07:00:00Z");
    let new =
        [alert("webhook:a", "i/1", "d", t0), alert("webhook:a", "i/2", "d", t0), alert("webhook:a", "i/3", "d", t0)];
    let id = store.enqueue_alerts(CURSOR, 1, &new, t0).await.unwrap();
    store.record_attempt(id[2], t0, &Attempt::Delivered { answer: "ok".into() }).await.unwrap();
    let events_before = store.events(&Default::default()).await.unwrap().len();

    // Two pending, one delivered already, one unknown: the two are recorded, the others
    // refused in their place, and the batch goes on past them.
    let retry = Attempt::Failed { error: "no answer".into(), retry_at: Some(t0 + Duration::seconds(10)) };
    let batch = [
        (id[0], retry.clone()),
        (id[2], Attempt::Delivered { answer: "again".into() }),
        (9999, Attempt::Delivered { answer: "ok".into() }),
        (id[1], Attempt::Delivered { answer: "202".into() }),
    ];
    let answers = store.record_attempts(t0, &batch).await.unwrap();
    assert_eq!(answers.len(), 4);
    assert!(matches!(&answers[0], Ok(r) if r.state == AlertState::Pending && r.attempts == 1));
    assert!(matches!(&answers[1], Err(StoreError::Conflict(_))), "{:?}", answers[1]);
    assert!(matches!(&answers[2], Err(StoreError::NotFound(_))), "{:?}", answers[2]);
    assert!(matches!(&answers[3], Ok(r) if r.state == AlertState::Delivered));
    assert_eq!(store.alert(id[0]).await.unwrap().unwrap().next_attempt_at, Some(t0 + Duration::seconds(10)));
    assert_eq!(store.alert_attempts(id[2]).await.unwrap().len(), 1, "the refused attempt wrote nothing");
    // One event per recorded attempt.
    assert_eq!(store.events(&Default::default()).await.unwrap().len(), events_before + 2);
    assert!(store.record_attempts(t0, &[]).await.unwrap().is_empty());
}

pub async fn alert_listings_filter_by_dag_and_state_newest_first(db: &Db) {
    let store = db.handle().await;
    let t0 = t("2026-03-02T07:00:00Z");
    let new: Vec<NewAlert> = (0..6).map(|i| alert("slack:a", &format!("i{i}"), ["a", "b"][i % 2], t0)).collect();
    let id = store.enqueue_alerts(CURSOR, 1, &new, t0).await.unwrap();
    store.record_attempt(id[0], t0, &Attempt::Delivered { answer: "ok".into() }).await.unwrap();
    store.record_attempt(id[1], t0, &Attempt::Failed { error: "no".into(), retry_at: None }).await.unwrap();
    store.record_attempt(id[2], t0, &Attempt::Delivered { answer: "ok".into() }).await.unwrap();

    let list = |query: AlertQuery| {
        let store = Arc::clone(&store);
        async move { ids(&store.alerts(&query).await.unwrap()) }
    };
    assert_eq!(list(AlertQuery::default()).await, [id[5], id[4], id[3], id[2], id[1], id[0]]);
    assert_eq!(list(AlertQuery { dag_id: Some("a".into()), ..Default::default() }).await, [id[4], id[2], id[0]]);
    assert_eq!(list(AlertQuery { states: vec![AlertState::Delivered], ..Default::default() }).await, [id[2], id[0]]);
    assert_eq!(
        list(AlertQuery { states: vec![AlertState::Pending, AlertState::Failed], ..Default::default() }).await,
        [id[5], id[4], id[3], id[1]]
    );
    assert_eq!(
        list(AlertQuery { dag_id: Some("b".into()), states: vec![AlertState::Pending], limit: Some(5) }).await,
        [id[5], id[3]]
    );
    assert_eq!(list(AlertQuery { limit: Some(2), ..Default::default() }).await, [id[5], id[4]]);
    assert_eq!(list(AlertQuery { limit: Some(0), ..Default::default() }).await, Vec::<i64>::new());
    assert_eq!(list(AlertQuery { dag_id: Some("none".into()), ..Default::default() }).await, Vec::<i64>::new());
}

pub async fn a_reopened_store_keeps_alerts_attempts_and_cursors(db: &Db) {
    let t0 = t("2026-03-02T07:00:00Z");
    let new = [alert("slack:a", "i1", "d", t0), alert("webhook:pd", "i1", "d", t0)];
    let (before, attempts) = {
        let store = db.handle().await;
        let id = store.enqueue_alerts(CURSOR, 42, &new, t0).await.unwrap();
        let retry = Attempt::Failed { error: "timed out after 10s".into(), retry_at: Some(t0 + Duration::minutes(1)) };
        store.record_attempt(id[0], t0, &retry).await.unwrap();
        store.record_attempt(id[1], t0, &Attempt::Delivered { answer: "202 Accepted".into() }).await.unwrap();
        (every_alert(&store).await, store.alert_attempts(id[0]).await.unwrap())
        // The handle is dropped here: its connections close.
    };
    let store = db.handle().await;
    assert_eq!(every_alert(&store).await, before);
    assert_eq!(store.alert_attempts(before[1].id).await.unwrap(), attempts);
    assert_eq!(store.cursor(CURSOR).await.unwrap(), Some(42));
    assert_eq!(store.next_alert_due().await.unwrap(), Some(t0 + Duration::minutes(1)));
    // What the restarted reader enqueues again is found.
    assert!(store.enqueue_alerts(CURSOR, 42, &new, t0).await.unwrap().is_empty());
    // And the pending alert goes on where it was.
    let delivered = Attempt::Delivered { answer: "ok".into() };
    let row = store.record_attempt(before[1].id, t0 + Duration::minutes(1), &delivered).await.unwrap();
    assert_eq!((row.state, row.attempts), (AlertState::Delivered, 2));
}

pub async fn previous_finished_run_is_the_last_one_that_ended_before(db: &Db) {
    let store = db.handle().await;
    let h = |n: i64| t("2026-03-10T00:00:00Z") + Duration::hours(n);
    let run = |id: &str, date: &str| new_run("d", id, date);
    let failed = create(&store, &run("r1", "2026-03-01T00:00:00Z")).await;
    let succeeded = create(&store, &run("r2", "2026-03-02T00:00:00Z")).await;
    let running = create(&store, &run("r3", "2026-03-03T00:00:00Z")).await;
    let recovered = create(&store, &run("r4", "2026-03-04T00:00:00Z")).await;
    let queued = create(&store, &run("r5", "2026-03-05T00:00:00Z")).await;
    let other_dag = create(&store, &new_run("e", "r1", "2026-03-02T00:00:00Z")).await;
    store.set_run_state(failed, RunState::Failed, h(1)).await.unwrap();
    store.set_run_state(succeeded, RunState::Success, h(2)).await.unwrap();
    store.set_run_state(running, RunState::Running, h(0)).await.unwrap();
    store.set_run_state(other_dag, RunState::Success, h(3)).await.unwrap();
    store.set_run_state(recovered, RunState::Success, h(4)).await.unwrap();
    // A run that finished, then was cleared: not finished any more.
    store.set_run_state(queued, RunState::Failed, h(3)).await.unwrap();
    store.clear_tasks(queued, &[("load".into(), 0)], h(3)).await.unwrap();

    let previous = |before: DateTime<Utc>, exclude: i64| {
        let store = Arc::clone(&store);
        async move { store.previous_finished_run("d", before, exclude).await.unwrap().map(|r| r.id) }
    };
    assert_eq!(previous(h(4), recovered).await, Some(succeeded));
    assert_eq!(previous(h(2), succeeded).await, Some(failed));
    assert_eq!(previous(h(1), failed).await, None);
    // Inclusive of `before`, but never the excluded run.
    assert_eq!(previous(h(2), failed).await, Some(succeeded));
    assert_eq!(previous(h(1) + Duration::minutes(30), recovered).await, Some(failed));
    let found = store.previous_finished_run("d", h(4), recovered).await.unwrap().unwrap();
    assert_eq!((found.run_id.as_str(), found.state, found.ended_at), ("r2", RunState::Success, Some(h(2))));
    assert_eq!(store.previous_finished_run("none", h(9), 0).await.unwrap(), None);

    // Two runs that ended at the same instant: the higher id is the later.
    let tie = create(&store, &run("r6", "2026-03-06T00:00:00Z")).await;
    store.set_run_state(tie, RunState::Failed, h(2)).await.unwrap();
    assert_eq!(previous(h(4), recovered).await, Some(tie));
    assert_eq!(previous(h(2), tie).await, Some(succeeded));
}
