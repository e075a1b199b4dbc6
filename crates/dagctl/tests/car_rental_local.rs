//! The car-rental workload on this machine: the PySpark jobs against the hand-checked fixture
//! (`spark/tests/`, run with the project venv's pyspark), and `dags/car_rental_local.toml` end
//! to end through the real daemon: input picked up or generated, both Spark jobs by local
//! `spark-submit`, the DuckDB report, whose numbers are checked against the fixture's
//! hand-written expected values (`tests/fixtures/car_rental/expected.json`).
//!
//! Needs Java 17+ and the project venv (`tests/tooling/venv.sh` makes it on first use).

#[path = "../../sluice-aws/tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DAGCTL: &str = env!("CARGO_BIN_EXE_dagctl");
const FIXTURE_DATE: &str = "2026-03-01";

fn repo() -> PathBuf {
    support::workspace_root()
}

/// PATH with the venv (spark-submit, python3 with DuckDB) and this build's `dagctl` first.
fn path_with_tools() -> String {
    let root = repo();
    support::ensure_venv(&root);
    let dagctl_dir = Path::new(DAGCTL).parent().unwrap();
    format!(
        "{}:{}:{}",
        root.join(".venv/bin").display(),
        dagctl_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn explain(o: &Output) -> String {
    format!("status {:?}\n--- stdout\n{}\n--- stderr\n{}", o.status, text(&o.stdout), text(&o.stderr))
}

fn expected() -> Value {
    let path = repo().join("tests/fixtures/car_rental/expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("expected.json is JSON")
}

/// The Spark jobs, the star schema ETL and the report script against the hand-checked fixture:
/// every KPI, the dirty-row counts by reason, and re-runs leaving exactly one partition.
#[test]
fn spark_jobs_match_the_hand_checked_fixture() {
    let o = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "spark/tests", "-v"])
        .current_dir(repo())
        .env("PATH", path_with_tools())
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "spark/tests failed\n{}", explain(&o));
    // unittest reports on stderr; make sure it ran tests rather than finding none.
    let report = text(&o.stderr);
    assert!(report.contains("\nOK"), "{report}");
    assert!(!report.contains("Ran 0 tests"), "{report}");
}

/// A daemon in a temp folder laid out like the repository: `dags/` holds the shipped
/// `car_rental_local.toml` (unchanged) and links to `dags/sql`; `spark/` links to the jobs.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = repo();
        std::fs::create_dir_all(dir.path().join("dags")).unwrap();
        std::fs::copy(root.join("dags/car_rental_local.toml"), dir.path().join("dags/car_rental_local.toml")).unwrap();
        std::os::unix::fs::symlink(root.join("dags/sql"), dir.path().join("dags/sql")).unwrap();
        std::os::unix::fs::symlink(root.join("spark"), dir.path().join("spark")).unwrap();
        World { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn dagctl(&self) -> Command {
        let mut c = Command::new(DAGCTL);
        c.current_dir(self.root()).env("PATH", path_with_tools()).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("SLUICE_") {
                c.env_remove(k);
            }
        }
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.dagctl().args(args).output().unwrap();
        assert!(o.status.success(), "dagctl {args:?}\n{}", explain(&o));
        text(&o.stdout)
    }

    /// Copies the fixture's raw CSV into `data/raw/<dataset>/<date>/`.
    fn land_fixture(&self, date: &str) {
        self.land(date, &["vehicles", "users", "locations", "rental_transactions"]);
    }

    /// Copies some of the fixture's datasets into `data/raw/<dataset>/<date>/`.
    fn land(&self, date: &str, datasets: &[&str]) {
        let raw = repo().join("tests/fixtures/car_rental/raw");
        for &dataset in datasets {
            let from = raw.join(dataset).join(FIXTURE_DATE);
            let to = self.root().join("data/raw").join(dataset).join(date);
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&from).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        }
    }

    fn report_json(&self, date: &str) -> Value {
        let path = self.root().join(format!("data/reports/car_rental_{date}.json"));
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&src).unwrap()
    }

    fn tasks(&self, date: &str) -> Vec<Value> {
        let out = self.ok(&["tasks", "car_rental_local", "--date", date, "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["tasks"].as_array().unwrap().clone()
    }
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Numbers equal to the cent (the jobs round money and hours to 2 decimals); anything else
/// exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() < 0.005,
        _ => a == b,
    }
}

/// Every field of every expected row is in the report's row at the same position.
fn assert_rows(query: &str, got: &Value, want: &Value) {
    let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(got.len(), want.len(), "{query}: rows\n got {got:#?}\nwant {want:#?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (k, wv) in w.as_object().unwrap() {
            let gv = &g[k.as_str()];
            assert!(same(gv, wv), "{query} row {i} `{k}`: report says {gv}, the fixture's hand count {wv}");
        }
    }
}

/// The shipped local DAG through the daemon: the day's input already landed (the fixture), so
/// `prepare_input` leaves it alone; both jobs run; the report answers the three questions and
/// the daily summary with the hand-computed numbers. A second day has no input: the generator
/// writes it, and the jobs' data-quality counts match what the generator says it made dirty.
#[test]
fn car_rental_local_runs_end_to_end_through_the_daemon() {
    let w = World::new();
    w.land_fixture(FIXTURE_DATE);
    let fixture_csv = std::fs::read(w.root().join("data/raw/rental_transactions/2026-03-01/rental_transactions.csv"))
        .expect("fixture transactions landed");
    assert!(w.ok(&["validate"]).contains("1 valid"));

    let log = File::create(w.root().join("daemon.log")).unwrap();
    let _daemon = Daemon(w.dagctl().arg("scheduler").stdout(Stdio::null()).stderr(log).spawn().unwrap());

    // Day 1: the hand-checked fixture.
    let o = w.dagctl().args(["trigger", "car_rental_local", "--date", FIXTURE_DATE, "--wait"]).output().unwrap();
    let daemon_log = || std::fs::read_to_string(w.root().join("daemon.log")).unwrap_or_default();
    assert!(o.status.success(), "{}\n--- daemon\n{}", explain(&o), daemon_log());
    for t in w.tasks(FIXTURE_DATE) {
        assert_eq!(t["state"], "success", "{t}");
        assert_eq!(t["try_number"], 1, "{t}");
    }
    let after =
        std::fs::read(w.root().join("data/raw/rental_transactions/2026-03-01/rental_transactions.csv")).unwrap();
    assert_eq!(after, fixture_csv, "prepare_input must not overwrite input that has landed");

    let report = w.report_json(FIXTURE_DATE);
    assert_eq!(report["date"], FIXTURE_DATE);
    let want = expected();
    let want_queries = want["report"].as_object().expect("expected.json has the report's answers");
    for query in ["top_revenue_locations", "most_rented_vehicle_type", "top_spending_users", "daily_summary"] {
        assert_rows(query, &report["queries"][query], &want_queries[query]);
    }
    let md = std::fs::read_to_string(w.root().join(format!("data/reports/car_rental_{FIXTURE_DATE}.md"))).unwrap();
    let top = &want_queries["top_revenue_locations"][0];
    assert!(md.contains(FIXTURE_DATE) && md.contains(top["city"].as_str().unwrap()), "{md}");
    let out = w.ok(&["logs", "car_rental_local", "report", "--date", FIXTURE_DATE]);
    assert!(out.contains(&format!("data/reports/car_rental_{FIXTURE_DATE}.md")), "{out}");

    // Day 2: nothing landed, so the generator writes a small dirty day.
    let day2 = "2026-03-02";
    let conf = r#"{"transactions": 3000, "dirty": 0.01, "seed": 7}"#;
    let o =
        w.dagctl().args(["trigger", "car_rental_local", "--date", day2, "--conf", conf, "--wait"]).output().unwrap();
    assert!(o.status.success(), "{}\n--- daemon\n{}", explain(&o), daemon_log());
    let generated = w.root().join("data/raw/rental_transactions").join(day2);
    assert!(generated.is_dir(), "the generator wrote the day's transactions");
    let report = w.report_json(day2);
    let dq = &report["data_quality"];
    // 3000 transactions, 1% of each dropped kind: 30 rows per reason, in the job that checks it.
    let vl = &dq["vehicle_location_metrics"];
    let ut = &dq["user_transaction_metrics"];
    assert!(!vl.is_null() && !ut.is_null(), "{dq:#}");
    for reason in
        ["missing_value", "bad_timestamp", "bad_amount", "negative_amount", "end_before_start", "duplicate_id"]
    {
        assert_eq!(count(vl, "rental_transactions", reason), 30, "job 1 {reason}: {vl:#}");
        assert_eq!(count(ut, "rental_transactions", reason), 30, "job 2 {reason}: {ut:#}");
    }
    assert_eq!(count(vl, "rental_transactions", "unknown_vehicle"), 30, "{vl:#}");
    assert_eq!(count(vl, "rental_transactions", "unknown_location"), 30, "{vl:#}");
    assert_eq!(count(ut, "rental_transactions", "unknown_user"), 30, "{ut:#}");
}

/// A day whose export landed only in part (no users file): job 2 fails on each try with the
/// missing folder named in its log, job 1 still succeeds, the report does not run on half the
/// data, and the run fails; the transactions already landed are not overwritten by the
/// generator.
#[test]
fn a_day_with_missing_input_fails_the_job_that_needs_it_and_the_run() {
    let w = World::new();
    w.land(FIXTURE_DATE, &["vehicles", "locations", "rental_transactions"]);
    let log = File::create(w.root().join("daemon.log")).unwrap();
    let _daemon = Daemon(w.dagctl().arg("scheduler").stdout(Stdio::null()).stderr(log).spawn().unwrap());

    let o = w.dagctl().args(["trigger", "car_rental_local", "--date", FIXTURE_DATE, "--wait"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "the run must fail\n{}", explain(&o));
    let state = |task: &str| {
        let t = w.tasks(FIXTURE_DATE).into_iter().find(|t| t["task_id"] == task).unwrap();
        (t["state"].as_str().unwrap().to_string(), t["try_number"].as_i64().unwrap())
    };
    assert_eq!(state("prepare_input"), ("success".into(), 1));
    assert_eq!(state("vehicle_location_metrics"), ("success".into(), 1));
    assert_eq!(state("user_transaction_metrics"), ("failed".into(), 2), "retried once, then failed");
    assert_eq!(state("report").0, "upstream_failed");
    let job_log = w.ok(&["logs", "car_rental_local", "user_transaction_metrics", "--date", FIXTURE_DATE]);
    assert!(job_log.contains("missing input") && job_log.contains("users/2026-03-01"), "{job_log}");
    assert!(!w.root().join("data/raw/users").exists(), "the generator must not fill in a day that has landed");
    assert!(!w.root().join(format!("data/reports/car_rental_{FIXTURE_DATE}.md")).exists());
}

/// The count of one (dataset, reason) in a job's data-quality counts (`{dataset: {reason: rows}}`).
fn count(job: &Value, dataset: &str, reason: &str) -> i64 {
    job[dataset][reason].as_i64().unwrap_or_else(|| panic!("no {dataset}/{reason} in {job}"))
}
