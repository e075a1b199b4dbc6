//! What the HTTP API reads and writes: run listings paged by a keyset cursor and counted with a
//! cap, the grid, the latest runs and last success per DAG, API tokens, idempotency keys.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sluice_store::{
    Created, EventKind, NewToken, Run, RunCursor, RunFilter, RunKind, RunState, Store, StoreError, TokenRow,
};

use crate::{all_events, create, events_after, last_id, new_run, t, Db};

/// Every page of `filter` (`page` runs each), following the cursor until a short page.
async fn all_pages(store: &Arc<dyn Store>, filter: &RunFilter, page: u32) -> Vec<Run> {
    let mut seen = Vec::new();
    let mut filter = RunFilter { limit: Some(page), after: None, ..filter.clone() };
    loop {
        let runs = store.runs(&filter).await.unwrap();
        assert!(runs.len() <= page as usize);
        let Some(last) = runs.last() else { break };
        filter.after = Some(RunCursor::of(last));
        let short = runs.len() < page as usize;
        seen.extend(runs);
        if short {
            break;
        }
    }
    seen
}

fn ids(runs: &[Run]) -> Vec<i64> {
    runs.iter().map(|r| r.id).collect()
}

pub async fn pages_by_cursor_list_every_matching_run_once_in_order(db: &Db) {
    let store = db.handle().await;
    let base = t("2026-01-01T00:00:00Z");
    let kinds = [RunKind::Scheduled, RunKind::Manual, RunKind::Backfill, RunKind::Test];
    let mut runs: Vec<Run> = Vec::new();
    for i in 0..1000i64 {
        // Created out of date order (so ids do not follow dates), three DAGs sharing each date
        // (so the listing of all DAGs breaks ties by id).
        let j = (i * 7919) % 1000;
        let dag = ["a", "b", "c"][(j % 3) as usize];
        let date = base + Duration::hours(j / 3);
        let mut new = new_run(dag, &format!("r{j}"), &date.to_rfc3339());
        new.kind = kinds[(j % 4) as usize];
        let id = create(&store, &new).await;
        match j % 5 {
            0 => store.set_run_state(id, RunState::Running, date).await.unwrap(),
            1 => store.set_run_state(id, RunState::Success, date).await.unwrap(),
            _ => {}
        }
        runs.push(store.run(id).await.unwrap().unwrap());
    }
    runs.sort_by_key(|r| std::cmp::Reverse((r.logical_date, r.id)));

    let day = |d: i64| base + Duration::days(d);
    let filters = [
        RunFilter::default(),
        RunFilter { dag_id: Some("b".into()), ..Default::default() },
        RunFilter { states: vec![RunState::Running, RunState::Success], ..Default::default() },
        RunFilter { kinds: vec![RunKind::Manual], ..Default::default() },
        RunFilter { logical_from: Some(day(3)), logical_to: Some(day(9)), ..Default::default() },
        RunFilter {
            dag_id: Some("a".into()),
            states: vec![RunState::Queued],
            kinds: vec![RunKind::Scheduled, RunKind::Backfill],
            logical_from: Some(day(1)),
            logical_to: Some(day(12)),
            ..Default::default()
        },
        RunFilter { dag_id: Some("none".into()), ..Default::default() },
    ];
    for filter in &filters {
        let expected: Vec<i64> = runs
            .iter()
            .filter(|r| filter.dag_id.as_ref().is_none_or(|d| &r.dag_id == d))
            .filter(|r| filter.states.is_empty() || filter.states.contains(&r.state))
            .filter(|r| filter.kinds.is_empty() || filter.kinds.contains(&r.kind))
            .filter(|r| filter.logical_from.is_none_or(|f| r.logical_date >= f))
            .filter(|r| filter.logical_to.is_none_or(|to| r.logical_date <= to))
            .map(|r| r.id)
            .collect();
        // The date bounds are inclusive: a bound on a run's own date keeps it.
        assert_eq!(ids(&all_pages(&store, filter, 7).await), expected, "{filter:?}");
        assert_eq!(ids(&store.runs(filter).await.unwrap()), expected, "{filter:?} unpaged");
        let n = expected.len() as u64;
        assert_eq!(store.count_runs(filter, 10_000).await.unwrap(), n, "{filter:?}");
        assert_eq!(store.count_runs(filter, 5).await.unwrap(), n.min(5), "{filter:?} capped");
        assert_eq!(store.count_runs(filter, 0).await.unwrap(), 0, "{filter:?} cap 0");
        // The count ignores the cursor and the limit.
        if let Some(first) = runs.iter().find(|r| expected.contains(&r.id)) {
            let paged = RunFilter { after: Some(RunCursor::of(first)), limit: Some(1), ..filter.clone() };
            assert_eq!(store.count_runs(&paged, 10_000).await.unwrap(), n, "{filter:?} with a cursor");
        }
    }

    // A bound exactly on a date is inclusive at both ends.
    let on = RunFilter { logical_from: Some(day(2)), logical_to: Some(day(2)), ..Default::default() };
    let found = store.runs(&on).await.unwrap();
    assert_eq!(found.len(), 3, "one run per DAG on that hour");
    assert!(found.iter().all(|r| r.logical_date == day(2)));

    // Runs created meanwhile do not shift the next page.
    let first = RunFilter { limit: Some(7), ..Default::default() };
    let page = store.runs(&first).await.unwrap();
    create(&store, &new_run("a", "newest", "2030-01-01T00:00:00Z")).await;
    let next = RunFilter { after: Some(RunCursor::of(page.last().unwrap())), ..first };
    assert_eq!(ids(&store.runs(&next).await.unwrap()), ids(&runs[7..14]));
}

pub async fn the_grid_is_the_newest_runs_with_all_their_tasks(db: &Db) {
    let store = db.handle().await;
    let mut made = Vec::new();
    for (i, day) in ["03", "01", "05", "02", "04"].iter().enumerate() {
        let mut new = new_run("d", &format!("r{day}"), &format!("2026-03-{day}T00:00:00Z"));
        // Runs of one DAG may have different tasks (the DAG changed between them).
        new.tasks = (0..=i).map(|k| (format!("t{k}"), 1)).collect();
        made.push(create(&store, &new).await);
    }
    create(&store, &new_run("other", "x", "2026-03-06T00:00:00Z")).await;
    store
        .set_task_states(
            made[2],
            &[("t0".into(), sluice_store::TaskState::Queued), ("t1".into(), sluice_store::TaskState::Scheduled)],
            t("2026-03-06T00:00:00Z"),
        )
        .await
        .unwrap();

    // One try of t0 in the newest run, to give it a duration.
    assert_eq!(
        store.start_try(made[2], "t0", t("2026-03-06T00:00:00Z")).await.unwrap(),
        sluice_store::Start::Started(1)
    );
    let finish = sluice_store::FinishTry {
        run: made[2],
        task_id: "t0".into(),
        try_number: 1,
        outcome: sluice_store::TryOutcome::Success { outputs: Default::default() },
        at: t("2026-03-06T00:01:30.250Z"),
    };
    store.finish_tries(&[finish]).await.unwrap();

    let (runs, cells) = store.grid("d", 3).await.unwrap();
    // Newest first: the 5th, the 4th, the 3rd of March.
    assert_eq!(ids(&runs), [made[2], made[4], made[0]]);
    // Grouped by run in the runs' order; every task instance of each, as it is.
    let mut at = 0;
    for run in &runs {
        let tis = store.task_instances(run.id).await.unwrap();
        let mut got: Vec<_> = cells[at..at + tis.len()].to_vec();
        got.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        let mut expected: Vec<_> = tis
            .iter()
            .map(|ti| sluice_store::GridCell {
                run: ti.run,
                task_id: ti.task_id.clone(),
                state: ti.state,
                try_number: ti.try_number,
                duration_ms: match (ti.started_at, ti.ended_at) {
                    (Some(s), Some(e)) => Some((e - s).num_milliseconds()),
                    _ => None,
                },
            })
            .collect();
        expected.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        assert_eq!(got, expected, "run {}", run.run_id);
        at += tis.len();
    }
    assert_eq!(cells.len(), 3 + 5 + 1);
    let cell = |task: &str| cells.iter().find(|c| c.run == made[2] && c.task_id == task).unwrap();
    assert_eq!(cell("t0").duration_ms, Some(90_250));
    assert_eq!(cell("t0").try_number, 1);
    assert_eq!(cell("t1").state, sluice_store::TaskState::Scheduled);
    assert_eq!(cell("t1").duration_ms, None);

    let (all, cells) = store.grid("d", 100).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(cells.len(), 1 + 2 + 3 + 4 + 5);
    assert_eq!(store.grid("d", 0).await.unwrap(), (vec![], vec![]));
    assert_eq!(store.grid("missing", 10).await.unwrap(), (vec![], vec![]));
}

pub async fn latest_runs_per_dag_and_the_last_success_of_each(db: &Db) {
    let store = db.handle().await;
    let mut id = std::collections::HashMap::new();
    for (dag, day) in [("b", "01"), ("a", "02"), ("a", "04"), ("c", "01"), ("a", "01"), ("a", "03"), ("c", "02")] {
        let run = create(&store, &new_run(dag, &format!("{dag}{day}"), &format!("2026-03-{day}T00:00:00Z"))).await;
        id.insert(format!("{dag}{day}"), run);
    }
    let latest = store.latest_runs(2).await.unwrap();
    let names: Vec<&str> = latest.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(names, ["a04", "a03", "b01", "c02", "c01"]);
    let one: Vec<String> = store.latest_runs(1).await.unwrap().into_iter().map(|r| r.run_id).collect();
    assert_eq!(one, ["a04", "b01", "c02"]);
    assert_eq!(store.latest_runs(10).await.unwrap().len(), 7);
    assert!(store.latest_runs(0).await.unwrap().is_empty());

    assert!(store.last_successes().await.unwrap().is_empty(), "nothing succeeded yet");
    let at = |h: i64| t("2026-03-10T00:00:00Z") + Duration::hours(h);
    // An older run of `a` succeeding later is its last success; a later failure does not count.
    store.set_run_state(id["a04"], RunState::Success, at(1)).await.unwrap();
    store.set_run_state(id["a01"], RunState::Success, at(5)).await.unwrap();
    store.set_run_state(id["a03"], RunState::Failed, at(9)).await.unwrap();
    store.set_run_state(id["c01"], RunState::Success, at(2)).await.unwrap();
    store.set_run_state(id["b01"], RunState::Failed, at(3)).await.unwrap();
    // A success run again (cleared, running) is no success any more.
    store.set_run_state(id["c02"], RunState::Success, at(7)).await.unwrap();
    store.set_run_state(id["c02"], RunState::Queued, at(8)).await.unwrap();
    let last = store.last_successes().await.unwrap();
    assert_eq!(last, [("a".to_string(), at(5)), ("c".to_string(), at(2))]);
}

fn token(name: &str, role: &str, hash: &str, expires_at: Option<DateTime<Utc>>) -> NewToken {
    NewToken { name: name.into(), role: role.into(), hash: hash.into(), expires_at }
}

fn conflict(result: sluice_store::Result<TokenRow>) -> String {
    match result {
        Err(StoreError::Conflict(message)) => message,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn api_tokens_keep_a_hash_and_are_revoked_by_name(db: &Db) {
    let store = db.handle().await;
    let (t1, t2, t3) = (t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"), t("2026-03-03T00:00:00Z"));
    let before = last_id(&store).await;
    assert!(!store.has_live_tokens(t1).await.unwrap());

    let ci = store.create_token(&token("ci", "operator", "h1", None), t1).await.unwrap();
    assert_eq!((ci.name.as_str(), ci.role.as_str(), ci.created_at), ("ci", "operator", t1));
    assert_eq!((ci.expires_at, ci.revoked_at, ci.last_used_at), (None, None, None));
    let json = serde_json::to_value(&ci).unwrap();
    assert!(json.get("hash").is_none(), "never the hash: {json}");

    let message = conflict(store.create_token(&token("ci", "admin", "h2", None), t2).await);
    assert_eq!(message, "a token named `ci` already exists; revoke it first");
    let message = conflict(store.create_token(&token("other", "viewer", "h1", None), t2).await);
    assert!(message.contains("`other`"), "{message}");

    assert_eq!(store.tokens().await.unwrap(), std::slice::from_ref(&ci));
    assert_eq!(store.token_by_hash("h1").await.unwrap(), Some(ci.clone()));
    assert_eq!(store.token_by_hash("h2").await.unwrap(), None);
    assert!(store.has_live_tokens(t1).await.unwrap());

    store.touch_token(ci.id, t2).await.unwrap();
    assert_eq!(store.token_by_hash("h1").await.unwrap().unwrap().last_used_at, Some(t2));
    assert!(matches!(store.touch_token(ci.id + 1000, t2).await, Err(StoreError::NotFound(_))));

    let revoked = store.revoke_token("ci", t3).await.unwrap().unwrap();
    assert_eq!((revoked.id, revoked.revoked_at, revoked.last_used_at), (ci.id, Some(t3), Some(t2)));
    assert_eq!(store.revoke_token("ci", t3).await.unwrap(), None, "nothing live of that name");
    assert_eq!(store.revoke_token("never", t3).await.unwrap(), None);
    assert!(!store.has_live_tokens(t3).await.unwrap());
    // A revoked token is still found by its hash (the caller refuses it) and listed.
    assert_eq!(store.token_by_hash("h1").await.unwrap().unwrap().revoked_at, Some(t3));

    // The name is free again once revoked; an expiry in the past is the caller's business.
    let again = store.create_token(&token("ci", "admin", "h2", None), t3).await.unwrap();
    let expired = store.create_token(&token("old", "viewer", "h3", Some(t1)), t3).await.unwrap();
    assert_eq!(expired.expires_at, Some(t1));
    assert_eq!(store.token_by_hash("h3").await.unwrap(), Some(expired.clone()));
    let names: Vec<(String, bool)> =
        store.tokens().await.unwrap().into_iter().map(|t| (t.name, t.revoked_at.is_some())).collect();
    assert_eq!(names, [("ci".into(), true), ("ci".into(), false), ("old".into(), false)], "oldest first");
    store.revoke_token("ci", t3).await.unwrap().unwrap();
    assert!(!store.has_live_tokens(t3).await.unwrap(), "`old` expired at t1");
    assert!(store.has_live_tokens(t1 - Duration::seconds(1)).await.unwrap(), "`old` not yet expired");
    assert!(store.tokens().await.unwrap()[1].revoked_at.is_some());
    assert_ne!(again.id, ci.id);

    // Each creation and revocation wrote its event, of no DAG; refusals, touches and
    // revocations of nothing wrote none.
    let events = events_after(&store, before).await;
    assert!(events.iter().all(|e| e.dag_id.is_none() && e.run_id.is_none()));
    let kinds: Vec<EventKind> = events.into_iter().map(|e| e.kind).collect();
    let created = |name: &str, role: &str| EventKind::TokenCreated { name: name.into(), role: role.into() };
    let revoked = || EventKind::TokenRevoked { name: "ci".into() };
    assert_eq!(
        kinds,
        [created("ci", "operator"), revoked(), created("ci", "admin"), created("old", "viewer"), revoked()]
    );
}

pub async fn an_idempotency_key_gives_one_run_per_dag(db: &Db) {
    let store = db.handle().await;
    let keyed = |dag: &str, run_id: &str, date: &str, key: &str| {
        let mut new = new_run(dag, run_id, date);
        new.idempotency_key = Some(key.into());
        new
    };
    let first = store.create_run(&keyed("d", "r1", "2026-03-01T00:00:00Z", "k1")).await.unwrap();
    let Created::New(first) = first else { panic!("{first:?}") };
    assert_eq!(first.idempotency_key.as_deref(), Some("k1"));
    assert_eq!(store.run(first.id).await.unwrap().unwrap(), first);

    // The same key again, another date and run id: the first run.
    let again = store.create_run(&keyed("d", "r2", "2026-03-05T00:00:00Z", "k1")).await.unwrap();
    assert_eq!(again, Created::Existing(first.clone()));
    // The same key on another DAG: another run.
    let other = store.create_run(&keyed("e", "r1", "2026-03-01T00:00:00Z", "k1")).await.unwrap();
    assert!(matches!(other, Created::New(_)), "{other:?}");
    // A key given with a date another run holds: the key's run is preferred.
    let keyless = create(&store, &new_run("d", "r9", "2026-03-09T00:00:00Z")).await;
    let preferred = store.create_run(&keyed("d", "r10", "2026-03-09T00:00:00Z", "k1")).await.unwrap();
    assert_eq!(preferred, Created::Existing(first.clone()));
    // A new key on a date a run already has: that run, whose key says it was another request.
    let taken = store.create_run(&keyed("d", "r11", "2026-03-09T00:00:00Z", "k2")).await.unwrap();
    let Created::Existing(taken) = taken else { panic!("{taken:?}") };
    assert_eq!((taken.id, taken.idempotency_key), (keyless, None));
    // Runs without a key never collide on it.
    create(&store, &new_run("d", "r12", "2026-03-12T00:00:00Z")).await;

    let d = RunFilter { dag_id: Some("d".into()), ..Default::default() };
    assert_eq!(store.count_runs(&d, 100).await.unwrap(), 3);
    // The key is in the serde form only when there is one.
    assert_eq!(serde_json::to_value(&first).unwrap()["idempotency_key"], "k1");
    let plain = store.run(keyless).await.unwrap().unwrap();
    assert!(serde_json::to_value(&plain).unwrap().get("idempotency_key").is_none());
}

pub async fn racing_creators_with_one_idempotency_key_make_one_run(db: &Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    for round in 0..10 {
        let key = format!("k{round}");
        let make = |store: Arc<dyn Store>, day: u32| {
            let mut new =
                new_run("d", &format!("r{round}_{day}"), &format!("2026-{:02}-{day:02}T00:00:00Z", round + 1));
            new.idempotency_key = Some(key.clone());
            tokio::spawn(async move { store.create_run(&new).await.unwrap() })
        };
        let (x, y) = (make(a.clone(), 1), make(b.clone(), 2));
        let (x, y) = (x.await.unwrap(), y.await.unwrap());
        assert_eq!(x.run().id, y.run().id, "round {round}: one run");
        let new = [&x, &y].iter().filter(|c| matches!(c, Created::New(_))).count();
        assert_eq!(new, 1, "round {round}: one creator");
    }
    assert_eq!(a.count_runs(&RunFilter::default(), 100).await.unwrap(), 10);
    let created = all_events(&a).await.iter().filter(|e| matches!(e.kind, EventKind::RunCreated { .. })).count();
    assert_eq!(created, 10);
}
