//! The store's share of the `noop_10k` benchmark: 10,000 tasks of one run scheduled, started
//! and finished in batches the size the engine commits, every commit durable (WAL, synchronous
//! NORMAL, as the daemon runs). Prints the tasks per second of each step and of the whole.
//!
//! `cargo run --release -p sluice-store --example batch_bench [TASKS] [BATCH]`

use std::time::Instant;

use chrono::{Duration, Utc};
use serde_json::Map;
use sluice_store::{FinishTry, NewRun, RunKind, SqliteStore, Store, TaskState, TryOutcome};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(512), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&format!("sqlite:{}", dir.path().join("bench.db").display())).await?;
    let now = Utc::now();
    let ids: Vec<String> = (0..tasks).map(|i| format!("t{i:05}")).collect();
    let created = store
        .create_run(&NewRun {
            dag_id: "bench".into(),
            run_id: "bench_run".into(),
            kind: RunKind::Manual,
            logical_date: now,
            data_interval_start: now,
            data_interval_end: now + Duration::days(1),
            conf: None,
            deadline: None,
            tasks: ids.iter().map(|t| (t.clone(), 1)).collect(),
            idempotency_key: None,
        })
        .await?;
    let run = created.run().id;

    let (mut schedule, mut start, mut finish) = (0.0, 0.0, 0.0);
    let all = Instant::now();
    for chunk in ids.chunks(batch) {
        let states: Vec<(String, TaskState)> = chunk.iter().map(|t| (t.clone(), TaskState::Scheduled)).collect();
        let t0 = Instant::now();
        store.set_task_states(run, &states, Utc::now()).await?;
        schedule += t0.elapsed().as_secs_f64();

        let keys: Vec<(i64, String)> = chunk.iter().map(|t| (run, t.clone())).collect();
        let t0 = Instant::now();
        let started = store.start_tries(&keys, Utc::now()).await?;
        start += t0.elapsed().as_secs_f64();
        assert_eq!(started.len(), chunk.len());

        let at = Utc::now();
        let done: Vec<FinishTry> = chunk
            .iter()
            .map(|t| FinishTry {
                run,
                task_id: t.clone(),
                try_number: 1,
                outcome: TryOutcome::Success { outputs: Map::new() },
                at,
            })
            .collect();
        let t0 = Instant::now();
        store.finish_tries(&done).await?;
        finish += t0.elapsed().as_secs_f64();
    }
    let total = all.elapsed().as_secs_f64();
    let rate = |s: f64| tasks as f64 / s;
    println!(
        "{tasks} tasks in batches of {batch}: schedule {:.0}/s, start {:.0}/s, finish {:.0}/s, start+finish {:.0}/s, all {:.0}/s",
        rate(schedule),
        rate(start),
        rate(finish),
        rate(start + finish),
        rate(total)
    );
    Ok(())
}
