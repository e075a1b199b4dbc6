//! The HTTP API against a real daemon: the `dagctl` binary serving on a free loopback port
//! (`--api-bind 127.0.0.1:0`; the port is read from its log), a real SQLite file, real
//! processes, and a real HTTP client. Waiting is for the event itself (a log line, a run's
//! state, the stream's next line), with a generous safety limit; nothing is timed.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;

use common::{urlencode, Env, SAFETY_LIMIT};

/// Polls `probe` until it gives something (a safety limit only turns a hang into a failure).
async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + SAFETY_LIMIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(c: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn post(c: &reqwest::Client, url: &str, body: Value) -> (StatusCode, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A manual DAG of three command tasks: `a`, then `b` (which prints, waits for a gate file,
/// prints again) and `c`.
fn gated_dag(env: &Env, id: &str) -> String {
    let gate = env.file(&format!("{id}.gate"));
    format!(
        r#"id = "{id}"
start_date = 2026-01-01
[tasks.a]
operator = "command"
command = "echo hello from a"
[tasks.b]
operator = "command"
depends_on = ["a"]
command = "echo first line; while [ ! -e '{gate}' ]; do sleep 0.05; done; echo second line"
[tasks.c]
operator = "command"
depends_on = ["b"]
command = "true"
"#
    )
}

const DAILY: &str = r#"id = "daily"
schedule = "0 5 * * *"
timezone = "Europe/London"
start_date = 2020-01-01
catchup = false
paused_at_creation = true
[tasks.only]
operator = "noop"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_endpoint_answers_and_a_trigger_runs() {
    let env = Env::new();
    env.write_dag("gated.toml", &gated_dag(&env, "gated"));
    env.write_dag("daily.toml", DAILY);
    env.write_dag("broken.toml", "id = \"broken\"\n[tasks.x]\noperator = \"nope\"\n");
    let d = env.daemon();
    let c = reqwest::Client::new();

    let (s, body) = get(&c, &d.url("/healthz")).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, body) = get(&c, &d.url("/readyz")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");

    let (s, list) = get(&c, &d.url("/api/v1/dags")).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = list["dags"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["daily", "gated"]);
    let daily = &list["dags"][0];
    assert_eq!(daily["paused"], true);
    assert_eq!(daily["schedule"], "0 5 * * *");
    assert!(
        daily["next_fire_time"].as_str().unwrap().ends_with(":00+00:00")
            || daily["next_fire_time"].as_str().unwrap().ends_with(":00+01:00")
    );
    let failed = list["failed_files"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{list}");
    assert!(failed[0]["file"].as_str().unwrap().ends_with("broken.toml"));
    assert!(failed[0]["errors"][0]["line"].as_u64().is_some(), "{list}");

    let (s, one) = get(&c, &d.url("/api/v1/dags/gated")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["edges"], json!([["a", "b"], ["b", "c"]]));
    assert!(one["source"].as_str().unwrap().contains("[tasks.b]"));
    let (s, p) = get(&c, &d.url("/api/v1/dags/nope")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(p["status"], 404);
    assert!(p["detail"].as_str().unwrap().contains("nope"));

    // Trigger, then follow the run: wait streams until final once the gate opens.
    let (s, t) = post(&c, &d.url("/api/v1/dags/gated/runs"), json!({"conf": {"k": 1}})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let run_id = t["run"]["run_id"].as_str().unwrap().to_string();
    let enc = urlencode(&run_id);
    let run_url = d.url(&format!("/api/v1/dags/gated/runs/{enc}"));
    until("task b to run", || {
        let c = c.clone();
        let url = format!("{run_url}/tasks");
        async move {
            let (_, tasks) = get(&c, &url).await;
            (tasks[1]["state"] == "running").then_some(())
        }
    })
    .await;

    // The log of b, followed while it runs: the first line, then (after the gate) the rest.
    let log_url = format!("{run_url}/tasks/b/tries/1/log?follow=true");
    let mut log = c.get(&log_url).send().await.unwrap().bytes_stream();
    let mut text = String::new();
    while !text.contains("first line") {
        text.push_str(&String::from_utf8_lossy(&log.next().await.unwrap().unwrap()));
    }
    let wait = c.get(format!("{run_url}/wait")).send().await.unwrap();
    assert_eq!(wait.headers()["content-type"], "application/x-ndjson");
    std::fs::write(env.file("gated.gate"), "").unwrap();
    while let Some(chunk) = log.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.contains("first line") && text.contains("second line"), "{text}");
    let lines = wait.text().await.unwrap();
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!((last["type"].as_str(), last["state"].as_str()), (Some("final"), Some("success")), "{lines}");
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "run");

    let (s, run) = get(&c, &run_url).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((run["state"].as_str(), &run["conf"]), (Some("success"), &json!({"k": 1})));
    let (_, tasks) = get(&c, &format!("{run_url}/tasks")).await;
    let states: Vec<&str> = tasks.as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["success", "success", "success"]);
    let (_, tries) = get(&c, &format!("{run_url}/tasks/a/tries")).await;
    assert!(tries[0]["external_ids"]["pid"].as_u64().is_some(), "{tries}");
    let r = c.get(format!("{run_url}/tasks/a/tries/1/log")).send().await.unwrap();
    let size: u64 = r.headers()["x-log-size"].to_str().unwrap().parse().unwrap();
    let whole = r.text().await.unwrap();
    assert!(whole.contains("hello from a"));
    assert_eq!(size, whole.len() as u64);
    let tail = c.get(format!("{run_url}/tasks/a/tries/1/log?offset={}", size - 3)).send().await.unwrap();
    assert_eq!(tail.text().await.unwrap(), &whole[whole.len() - 3..]);

    let (s, grid) = get(&c, &d.url("/api/v1/dags/gated/grid?runs=5")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(grid["tasks"], json!(["a", "b", "c"]));
    assert_eq!(grid["states"], json!([["success", "success", "success"]]));
    let (s, _) = get(&c, &d.url("/api/v1/dags/gated/grid?runs=366")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, page) = get(&c, &d.url(&format!("/api/v1/events?dag_id=gated&run_id={enc}&after=0"))).await;
    assert_eq!(s, StatusCode::OK);
    let kinds: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["kind"]["type"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds.first(), Some(&"run_created"), "{page}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{page}");
    // A grid is kept for the DAG's newest event: a change after it shows in the next answer.
    let (s, _) = post(&c, &format!("{run_url}/mark"), json!({"state": "failed", "task": "c"})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, grid) = get(&c, &d.url("/api/v1/dags/gated/grid?runs=5")).await;
    assert_eq!(grid["states"], json!([["success", "success", "failed"]]));

    // The run's end reaches /metrics through the event stream (counted as it arrives).
    let metrics_url = d.url("/metrics");
    let metrics = until("the run counted in /metrics", || {
        let (c, url) = (c.clone(), metrics_url.clone());
        async move {
            let text = c.get(&url).send().await.ok()?.text().await.ok()?;
            text.contains("sluice_runs_finished_total{dag=\"gated\",state=\"success\"} 1").then_some(text)
        }
    })
    .await;
    assert!(metrics.contains("sluice_last_success_timestamp_seconds{dag=\"gated\"}"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"));
    let (s, doc) = get(&c, &d.url("/api/v1/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let (s, p) = get(&c, &d.url("/api/v2/dags")).await;
    assert_eq!((s, p["status"].as_u64()), (StatusCode::NOT_FOUND, Some(404)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_with_the_same_idempotency_key_creates_one_run() {
    let env = Env::new();
    env.write_dag("gated.toml", &gated_dag(&env, "gated"));
    std::fs::write(env.file("gated.gate"), "").unwrap();
    let d = env.daemon();
    let c = reqwest::Client::new();
    let url = d.url("/api/v1/dags/gated/runs");
    let send =
        |conf: Value| c.post(&url).header("Idempotency-Key", "ci-build-4711").json(&json!({ "conf": conf })).send();
    let first = send(json!({"n": 1})).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = send(json!({"n": 1})).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(again["run"]["run_id"], first["run"]["run_id"]);
    let other = send(json!({"n": 2})).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, page) = get(&c, &d.url("/api/v1/runs?dag_id=gated&count=true")).await;
    assert_eq!(page["count"], 1, "{page}");
    // Without the key, a trigger is a new run.
    let (s, _) = post(&c, &url, json!({"logical_date": "2026-02-01"})).await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_over_a_thousand_runs_have_no_duplicate_and_no_gap_and_dry_runs_change_nothing() {
    let env = Env::new();
    env.write_dag("daily.toml", DAILY);
    let d = env.daemon();
    let c = reqwest::Client::new();
    // The DAG is paused: the backfill's runs stay queued.
    let backfill = d.url("/api/v1/dags/daily/backfill");
    let (s, dry) = post(&c, &backfill, json!({"from": "2023-01-01", "to": "2025-09-26", "dry_run": true})).await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(dry["runs"].as_array().unwrap().len(), 1000);
    let (_, page) = get(&c, &d.url("/api/v1/runs?count=true")).await;
    assert_eq!(page["count"], 0, "a dry run created nothing");
    let (s, done) = post(&c, &backfill, json!({"from": "2023-01-01", "to": "2025-09-26"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(done["runs"].as_array().unwrap().len(), 1000);

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = d.url("/api/v1/runs?limit=37&dag_id=daily");
        if let Some(cur) = &cursor {
            url.push_str(&format!("&cursor={cur}"));
        }
        let (s, page) = get(&c, &url).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seen.extend(page["runs"].as_array().unwrap().iter().map(|r| r["logical_date"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1000, "no duplicate");
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no gap");
    let (_, page) = get(&c, &d.url("/api/v1/runs?from=2024-01-01&to=2024-12-31&count=true&limit=1")).await;
    assert_eq!(page["count"], 366);
    let (s, p) = get(&c, &d.url("/api/v1/runs?cursor=garbage")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    let (s, _) = get(&c, &d.url("/api/v1/runs?state=sideways")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Dry runs of clear and mark list what they would do and write nothing.
    let (_, before) = get(&c, &d.url("/api/v1/events?limit=1")).await;
    let run = d.url("/api/v1/dags/daily/runs/");
    let run_id = urlencode(seen[0].as_str());
    let _ = run_id;
    let (_, latest) = get(&c, &d.url("/api/v1/runs?limit=1")).await;
    let rid = urlencode(latest["runs"][0]["run_id"].as_str().unwrap());
    let (s, cleared) = post(&c, &format!("{run}{rid}/clear"), json!({"dry_run": true})).await;
    assert_eq!(s, StatusCode::OK, "{cleared}");
    assert_eq!((cleared["dry_run"].as_bool(), &cleared["tasks"]), (Some(true), &json!(["only"])));
    let (s, marked) = post(&c, &format!("{run}{rid}/mark"), json!({"state": "failed", "dry_run": true})).await;
    assert_eq!(s, StatusCode::OK, "{marked}");
    assert_eq!(marked["tasks"], json!(["only"]));
    let (_, after) = get(&c, &d.url("/api/v1/events?limit=1")).await;
    assert_eq!(before["events"][0]["id"], after["events"][0]["id"], "no event: nothing was written");
    let (_, still) = get(&c, &format!("{run}{rid}")).await;
    assert_eq!(still["state"], "queued");
    // The real mark.
    let (s, marked) = post(&c, &format!("{run}{rid}/mark"), json!({"state": "failed"})).await;
    assert_eq!(s, StatusCode::OK, "{marked}");
    let (_, now) = get(&c, &format!("{run}{rid}")).await;
    assert_eq!(now["state"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_a_live_run_and_resumes_with_last_event_id() {
    let env = Env::new();
    env.write_dag("gated.toml", &gated_dag(&env, "gated"));
    let d = env.daemon();
    let c = reqwest::Client::new();
    let stream_url = d.url("/api/v1/events/stream?dag_id=gated");
    let r = c.get(&stream_url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut sse = Sse::new(r);
    let (s, t) = post(&c, &d.url("/api/v1/dags/gated/runs"), json!({})).await;
    assert_eq!(s, StatusCode::CREATED);
    let run_id = t["run"]["run_id"].as_str().unwrap().to_string();
    // Read until b's try has started, then hang up.
    let mut got: Vec<(i64, Value)> = Vec::new();
    loop {
        let (id, data) = sse.next().await;
        let started_b = data["kind"]["type"] == "try_started" && data["task_id"] == "b";
        got.push((id, data));
        if started_b {
            break;
        }
    }
    drop(sse);
    let last = got.last().unwrap().0;
    std::fs::write(env.file("gated.gate"), "").unwrap();
    // Reconnect with Last-Event-ID: every later event once, up to the run's end.
    let r = c.get(&stream_url).header("Last-Event-ID", last.to_string()).send().await.unwrap();
    let mut sse = Sse::new(r);
    loop {
        let (id, data) = sse.next().await;
        let end = data["kind"]["type"] == "run_finished";
        got.push((id, data));
        if end {
            break;
        }
    }
    let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
    let (_, page) =
        get(&c, &d.url(&format!("/api/v1/events?dag_id=gated&run_id={}&after=0&limit=1000", urlencode(&run_id)))).await;
    let stored: Vec<i64> = page["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, stored, "the stream gave exactly the stored events, in order, across the reconnect");
    assert_eq!(got.last().unwrap().1["kind"]["state"], "success");
}

/// A minimal Server-Sent Events reader: `(id, data as JSON)` per event.
struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buf: String,
}

impl Sse {
    fn new(r: reqwest::Response) -> Sse {
        Sse { body: Box::pin(r.bytes_stream().map(|c| c.map(|b| b.to_vec()))), buf: String::new() }
    }

    async fn next(&mut self) -> (i64, Value) {
        let deadline = Instant::now() + SAFETY_LIMIT;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return (id, serde_json::from_str(&data).unwrap());
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout_at(deadline.into(), self.body.next())
                .await
                .expect("an event within the safety limit");
            self.buf.push_str(&String::from_utf8_lossy(&chunk.expect("the stream is open").unwrap()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_needs_a_token_and_roles_are_enforced() {
    let env = Env::new();
    env.write_dag("gated.toml", &gated_dag(&env, "gated"));
    std::fs::write(env.file("gated.gate"), "").unwrap();

    // No token exists: a bind off loopback is refused before anything runs.
    let o = env.run(&["scheduler", "--api-bind", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing to serve the API on 0.0.0.0:0 without authentication"), "{err}");
    assert!(!env.root().join("logs").join("gated").exists(), "nothing ran");

    let token = |name: &str, role: &str, extra: &[&str]| {
        let mut args = vec!["tokens", "create", "--name", name, "--role", role];
        args.extend_from_slice(extra);
        env.ok(&args).trim().to_string()
    };
    let admin = token("boss", "admin", &[]);
    let operator = token("ci", "operator", &["--expires", "90d"]);
    let viewer = token("dash", "viewer", &[]);
    let doomed = token("old", "viewer", &[]);
    assert!(admin.starts_with("slc_") && admin.len() == 68, "{admin}");
    let listed = env.ok(&["tokens", "list", "--json"]);
    assert!(!listed.contains(&admin[4..]), "a listing never shows a secret");
    env.ok(&["tokens", "revoke", "old"]);
    let o = env.run(&["tokens", "create", "--name", "ci", "--role", "viewer"]);
    assert_eq!(o.status.code(), Some(1), "a live name is unique");

    let d = env.start("scheduler", "0.0.0.0", &[]);
    let c = reqwest::Client::new();
    let dags = d.url("/api/v1/dags");
    let trigger = d.url("/api/v1/dags/gated/runs");
    let status = |r: reqwest::Response| r.status();
    // Health checks stay open; everything else needs a token.
    assert_eq!(status(c.get(d.url("/healthz")).send().await.unwrap()), StatusCode::OK);
    let r = c.get(&dags).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    for bad in ["Bearer slc_0000", "Bearer nonsense", "Basic Zm9vOmJhcg==", &format!("Bearer {doomed}")] {
        let r = c.get(&dags).header("Authorization", bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    let auth = |t: &str| format!("Bearer {t}");
    assert_eq!(status(c.get(&dags).header("Authorization", auth(&viewer)).send().await.unwrap()), StatusCode::OK);
    let r = c.post(&trigger).header("Authorization", auth(&viewer)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("needs `operator`"), "{p}");
    let r = c.post(&trigger).header("Authorization", auth(&operator)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let tokens = d.url("/api/v1/tokens");
    assert_eq!(
        status(c.get(&tokens).header("Authorization", auth(&operator)).send().await.unwrap()),
        StatusCode::FORBIDDEN
    );
    let r = c.get(&tokens).header("Authorization", auth(&admin)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rows: Value = r.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert!(!rows.to_string().contains("hash"), "{rows}");

    // A token that expires: accepted before, refused after.
    let r = c
        .post(&tokens)
        .header("Authorization", auth(&admin))
        .json(&json!({"name": "brief", "role": "viewer", "expires_in": "2s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let brief: Value = r.json().await.unwrap();
    let secret = brief["token"].as_str().unwrap().to_string();
    let expires: chrono::DateTime<chrono::Utc> = brief["expires_at"].as_str().unwrap().parse().unwrap();
    while chrono::Utc::now() <= expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status(c.get(&dags).header("Authorization", auth(&secret)).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    // Revoked through the API.
    let r = c.delete(format!("{tokens}/dash")).header("Authorization", auth(&admin)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        status(c.get(&dags).header("Authorization", auth(&viewer)).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    // No secret in the daemon's log.
    let logs = d.logs();
    for secret in [&admin, &operator, &viewer, &secret] {
        assert!(!logs.contains(&secret[4..]), "a token in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_path_tricks_get_clear_errors_and_read_nothing() {
    let env = Env::new();
    env.write_dag("gated.toml", &gated_dag(&env, "gated"));
    std::fs::write(env.file("gated.gate"), "").unwrap();
    std::fs::write(env.root().join("secret.txt"), "top secret").unwrap();
    let d = env.daemon();
    let c = reqwest::Client::new();
    let trigger = d.url("/api/v1/dags/gated/runs");
    // A body over the limit is refused from its Content-Length, before it is read: the
    // client below sends the headers only and gets its answer.
    let mut raw = tokio::net::TcpStream::connect(d.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /api/v1/dags/gated/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(SAFETY_LIMIT, tokio::io::AsyncReadExt::read(&mut raw, &mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let r = c.post(&trigger).header("content-type", "application/json").body("{\"conf\": ").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("invalid JSON body"), "{p}");
    let (s, p) = post(&c, &trigger, json!({"conf": 5})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    let (s, p) = post(&c, &trigger, json!({"surprise": true})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("surprise"), "{p}");
    let (s, p) = post(&c, &trigger, json!({"logical_date": "someday"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let r = c.post(&trigger).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (_, t) = post(&c, &trigger, json!({})).await;
    let run = urlencode(t["run"]["run_id"].as_str().unwrap());
    let base = d.url(&format!("/api/v1/dags/gated/runs/{run}/tasks"));
    for trick in [
        "..%2F..%2F..%2Fsecret.txt/tries/1/log",
        "%2E%2E/tries/1/log",
        "a/tries/1/..%2F..%2F..%2F..%2F..%2Fsecret.txt",
        "a%2F..%2F..%2F..%2F..%2F..%2Fsecret.txt/tries/1/log",
        "a/tries/-1/log",
        "a/tries/99999999999/log",
    ] {
        let r = c.get(format!("{base}/{trick}")).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST, "{trick}: {status}");
        assert!(!body.contains("top secret"), "{trick} read outside the log folder");
    }
    let (s, _) = get(&c, &d.url("/api/v1/dags/gated/runs/nope")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = c.delete(d.url("/api/v1/dags")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dagctl_server_serves_the_store_and_writes_actions_for_the_daemon() {
    let env = Env::new();
    env.write_dag("gated.toml", &gated_dag(&env, "gated"));
    std::fs::write(env.file("gated.gate"), "").unwrap();
    let server = env.start("server", "127.0.0.1", &[]);
    let c = reqwest::Client::new();
    let (s, list) = get(&c, &server.url("/api/v1/dags")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["dags"][0]["id"], "gated");
    let (s, ready) = get(&c, &server.url("/readyz")).await;
    assert_eq!(s, StatusCode::OK, "{ready}");
    let (s, t) = post(&c, &server.url("/api/v1/dags/gated/runs"), json!({"logical_date": "2026-03-01"})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["run"]["state"], "queued");
    // The daemon, another process, picks the run up from the store and runs it.
    let _daemon = env.daemon();
    let run = urlencode(t["run"]["run_id"].as_str().unwrap());
    let wait = c.get(server.url(&format!("/api/v1/dags/gated/runs/{run}/wait"))).send().await.unwrap();
    let lines = wait.text().await.unwrap();
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(last["state"], "success", "{lines}");
}

/// Templates that read params, the run's conf, the run id and an upstream's output, and an
/// Athena query read from a file.
const RENDERED: &str = r#"id = "rendered"
start_date = 2026-01-01
[params]
region = "eu"
[tasks.first]
operator = "command"
command = "echo out-{{ params.region }}"
[tasks.second]
operator = "command"
depends_on = ["first"]
command = "echo got {{ tasks.first.output }} for {{ params.region }} in {{ run_id }}; exit 1"
[tasks.query]
operator = "athena"
depends_on = ["second"]
query_file = "report.sql"
database = "sales"
output_location = "s3://results/{{ ds }}/"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_keys_are_the_templates_for_the_run_with_its_conf_and_upstream_outputs() {
    let env = Env::new();
    env.write_dag("rendered.toml", RENDERED);
    std::fs::write(env.root().join("dags/report.sql"), "SELECT * FROM orders WHERE ds = '{{ ds }}'").unwrap();
    let d = env.daemon();
    let c = reqwest::Client::new();
    let (s, t) = post(&c, &d.url("/api/v1/dags/rendered/runs"), json!({"conf": {"region": "us"}})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let run_id = t["run"]["run_id"].as_str().unwrap().to_string();
    let run_url = d.url(&format!("/api/v1/dags/rendered/runs/{}", urlencode(&run_id)));
    until("the run to fail", || async {
        let (_, r) = get(&c, &run_url).await;
        (r["state"] == "failed").then_some(())
    })
    .await;

    // The upstream's stored output, the run's conf over the params, the run's id.
    let (s, r) = get(&c, &format!("{run_url}/tasks/second/rendered")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["operator"], "command");
    assert_eq!(r["keys"]["command"], format!("echo got out-us for us in {run_id}; exit 1"));
    assert!(r.get("error").is_none(), "{r}");
    // The Athena task never ran (its upstream failed): its query file and the run's date,
    // rendered all the same.
    let (s, r) = get(&c, &format!("{run_url}/tasks/query/rendered")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, run) = get(&c, &run_url).await;
    let ds = &run["logical_date"].as_str().unwrap()[..10];
    assert_eq!(r["keys"]["query"], format!("SELECT * FROM orders WHERE ds = '{ds}'"), "{r}");
    assert_eq!(r["keys"]["output_location"], format!("s3://results/{ds}/"));
    // What `dagctl render` prints for that date is the same text.
    let cli: Value = serde_json::from_str(&env.ok(&["render", "rendered", "query", "--date", ds, "--json"])).unwrap();
    assert_eq!(cli["query"], r["keys"]["query"]);

    // A template that no longer renders says why; unknown tasks and runs are 404s.
    std::fs::remove_file(env.root().join("dags/report.sql")).unwrap();
    let (s, r) = get(&c, &format!("{run_url}/tasks/query/rendered")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r.get("keys").is_none(), "{r}");
    assert!(r["error"].as_str().unwrap().contains("cannot read"), "{r}");
    let (s, r) = get(&c, &format!("{run_url}/tasks/nope/rendered")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    assert!(r["detail"].as_str().unwrap_or_default().contains("no task `nope`"), "{r}");
    let (s, _) = get(&c, &d.url("/api/v1/dags/rendered/runs/nope/tasks/first/rendered")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
