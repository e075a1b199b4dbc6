//! `dagctl` on PostgreSQL, where it differs from SQLite: copying a SQLite state file over with
//! `dagctl db migrate-from`, and what is printed about a server URL. (The daemon's own tests
//! run on PostgreSQL too: `daemon.rs`'s `on_postgres`.)

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn dagctl(dir: &Path, db: &str, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dagctl"));
    c.arg("--dags").arg(dir.join("dags")).arg("--db").arg(db).arg("--logs").arg(dir.join("logs")).current_dir(dir);
    for v in ["SLUICE_DAGS", "SLUICE_DB", "SLUICE_LOGS", "SLUICE_CONFIG"] {
        c.env_remove(v);
    }
    c.args(args).output().expect("dagctl runs")
}

fn ok(dir: &Path, db: &str, args: &[&str]) -> String {
    let o = dagctl(dir, db, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "dagctl {args:?}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON a listing prints: one document, or one per line (`events --json`) as an array.
fn json(dir: &Path, db: &str, args: &[&str]) -> Value {
    let out = ok(dir, db, args);
    serde_json::from_str(&out).unwrap_or_else(|_| {
        Value::Array(out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect())
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

const DAG: &str = "schedule = \"0 5 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-01-01\"\n\
[tasks.extract]\noperator = \"command\"\ncommand = \"echo rows=42\"\n\
[tasks.flaky]\noperator = \"command\"\ndepends_on = [\"extract\"]\nretries = 1\nretry_delay = \"0s\"\n\
command = \"test -f tried || { touch tried; exit 3; }\"\n";

/// A SQLite file with history (runs, a retried task, outputs, events, a token) copied into a
/// new PostgreSQL schema reads back the same through every listing, ids included, and new
/// runs continue after the copied ids.
#[test]
fn migrate_from_copies_a_sqlite_file_and_the_listings_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dags")).unwrap();
    std::fs::write(dir.path().join("dags/shop.toml"), DAG).unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("sluice.db").display());
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_dagctl"))
        .arg("--dags")
        .arg(dir.path().join("dags"))
        .args(["--db", &sqlite, "--logs"])
        .arg(dir.path().join("logs"))
        .args(["scheduler", "--no-api"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ok(dir.path(), &sqlite, &["trigger", "shop", "--date", "2026-03-01", "--wait"]);
    ok(dir.path(), &sqlite, &["trigger", "shop", "--date", "2026-03-02", "--wait"]);
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert!(daemon.wait().unwrap().success());
    ok(dir.path(), &sqlite, &["tokens", "create", "--name", "ci", "--role", "viewer"]);
    let pg = runtime().block_on(sluice_store::testing::new_schema());

    let out = ok(dir.path(), &pg, &["db", "migrate-from", &sqlite]);
    assert!(out.contains("copied") && out.contains("events"), "{out}");

    for args in [
        &["runs", "shop", "--json"][..],
        &["tasks", "shop", "--date", "2026-03-01", "--json"],
        &["events", "--json"],
        &["tokens", "list", "--json"],
    ] {
        assert_eq!(json(dir.path(), &pg, args), json(dir.path(), &sqlite, args), "dagctl {args:?}");
    }
    let tasks = json(dir.path(), &pg, &["tasks", "shop", "--date", "2026-03-01", "--json"]);
    let flaky = tasks["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == "flaky").unwrap();
    assert_eq!(flaky["tries"].as_array().unwrap().len(), 2, "the retried task keeps both tries: {tasks:#}");

    // New rows continue after the copied ids.
    let copied = json(dir.path(), &pg, &["runs", "shop", "--json"]).as_array().unwrap().len();
    ok(dir.path(), &pg, &["trigger", "shop", "--date", "2026-03-03"]);
    let runs = json(dir.path(), &pg, &["runs", "shop", "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), copied + 1, "{runs:#?}");
    let new = runs.iter().find(|r| r["logical_date"].as_str().unwrap().starts_with("2026-03-03")).unwrap();
    let max_copied = runs.iter().filter(|r| r != &new).map(|r| r["id"].as_i64().unwrap()).max().unwrap();
    assert!(new["id"].as_i64().unwrap() > max_copied, "the new run's id follows the copied ones: {runs:#?}");

    // A second copy into the same database is refused and changes nothing.
    let again = dagctl(dir.path(), &pg, &["db", "migrate-from", &sqlite]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds DAGs, runs or events"), "{err}");
    assert_eq!(json(dir.path(), &pg, &["runs", "shop", "--json"]).as_array().unwrap().len(), copied + 1);
}

/// The copy refuses what it cannot do, saying why.
#[test]
fn migrate_from_refuses_a_missing_file_a_sqlite_target_and_a_running_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dags")).unwrap();
    let pg = runtime().block_on(sluice_store::testing::new_schema());
    let missing = format!("sqlite:{}", dir.path().join("none.db").display());
    let o = dagctl(dir.path(), &pg, &["db", "migrate-from", &missing]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"), "{o:?}");

    let sqlite = format!("sqlite:{}", dir.path().join("sluice.db").display());
    let o = dagctl(dir.path(), &sqlite, &["db", "migrate-from", &sqlite]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--db must name the PostgreSQL database"), "{o:?}");

    // A scheduler holding the file.
    std::fs::write(dir.path().join("sluice.db"), b"").unwrap();
    let _held = sluice_store::SchedulerLock::acquire(&sqlite).unwrap();
    let o = dagctl(dir.path(), &pg, &["db", "migrate-from", &sqlite]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a scheduler is running"), "{o:?}");
}

/// A password in the database URL is never printed, also when the server refuses it.
#[test]
fn a_password_in_the_url_is_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dags")).unwrap();
    // Nothing listens on port 1: the connection fails at once.
    let db = "postgres://sluice:hunter2-secret@127.0.0.1:1/test";
    let o = dagctl(dir.path(), db, &["runs", "--json"]);
    assert_ne!(o.status.code(), Some(0));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!all.contains("hunter2"), "{all}");
    assert!(all.contains("sluice:***@127.0.0.1:1"), "the URL is named, redacted: {all}");
}
