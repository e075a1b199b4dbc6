//! `/readyz` against a real engine on a simulated clock and a real SQLite file: ready while
//! the loop turns; 503, with the reason, when the loop has not turned within its interval (the
//! test stalls it by not stepping it while the clock moves on) or when the store cannot be
//! written (another connection holds SQLite's write lock).

use std::sync::Arc;
use std::time::Duration;

use sluice_api::Api;
use sluice_scheduler::daemon::Handles;
use sluice_scheduler::engine::{Engine, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{Config, ManualClock};
use sluice_store::{SqliteStore, Store};
use sqlx::Connection;

async fn ready(c: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_loop_is_stalled_or_the_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sluice.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db.display().to_string()).await.unwrap());
    let config = Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), ..Config::default() };
    let clock = Arc::new(ManualClock::new("2026-03-01T12:00:00Z".parse().unwrap()));
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(LocalOperators)];
    let mut engine = Engine::new(store.clone(), config.clone(), providers, Mode::Daemon).with_clock(clock.clone());
    let handles = Handles { commands: engine.commands(), catalog: engine.catalog(), stats: engine.stats() };
    let api = Api::builder(store.clone(), handles.catalog.clone(), config.logs.clone())
        .engine(handles)
        .clock(clock.clone())
        .stall_after(Duration::from_secs(30))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sluice_api::serve(listener, api, std::future::pending()));
    let c = reqwest::Client::new();

    let (status, body) = ready(&c, &base).await;
    assert_eq!(status, 503, "no turn yet: {body}");
    assert!(body["checks"][0]["detail"].as_str().unwrap().contains("first turn"), "{body}");

    engine.step().await.unwrap();
    let (status, body) = ready(&c, &base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    // The loop does not turn while the clock moves on a minute: stalled.
    clock.advance(chrono::Duration::seconds(60));
    let (status, body) = ready(&c, &base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    let loop_check = &body["checks"][0];
    assert_eq!((loop_check["name"].as_str(), loop_check["ok"].as_bool()), (Some("scheduler_loop"), Some(false)));
    assert!(loop_check["detail"].as_str().unwrap().contains("last turned 60 s ago"), "{body}");
    assert_eq!(body["checks"][1]["ok"], true, "the store is fine: {body}");

    // One turn later it is ready again.
    engine.step().await.unwrap();
    assert_eq!(ready(&c, &base).await.0, 200);

    // Another connection holds the write lock: the store cannot be written.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display())).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut other).await.unwrap();
    let (status, body) = ready(&c, &base).await;
    assert_eq!(status, 503, "{body}");
    let store_check = &body["checks"][1];
    assert_eq!((store_check["name"].as_str(), store_check["ok"].as_bool()), (Some("store"), Some(false)));
    assert!(store_check["detail"].as_str().unwrap().contains("cannot be written"), "{body}");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    assert_eq!(ready(&c, &base).await.0, 200);
}
