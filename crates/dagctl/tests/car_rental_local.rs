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

/// `dagctl` run in `root`, without the machine's `SLUICE_*` settings.
fn dagctl_in(root: &Path) -> Command {
    let mut c = Command::new(DAGCTL);
    c.current_dir(root).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("SLUICE_") {
            c.env_remove(k);
        }
    }
    // Tests run side by side: each daemon's API on a port of its own.
    c.env("SLUICE_API_BIND", "127.0.0.1:0");
    c
}

/// Runs `dagctl ARGS`, asserts it exits 0, returns its stdout.
fn ok(mut dagctl: Command, args: &[&str]) -> String {
    let o = dagctl.args(args).output().unwrap();
    assert!(o.status.success(), "dagctl {args:?}\n{}", explain(&o));
    text(&o.stdout)
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
        let mut c = dagctl_in(self.root());
        c.env("PATH", path_with_tools());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.dagctl(), args)
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

// --- Spark settings of the local DAG ----------------------------------------------------------

/// `dagctl show DAG --json` of a shipped DAG, run from the repository root.
fn shipped_dag(dag: &str) -> Value {
    let mut c = Command::new(DAGCTL);
    c.args(["show", dag, "--json", "--dags", "dags"]).current_dir(repo()).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("SLUICE_") {
            c.env_remove(k);
        }
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "dagctl show {dag}\n{}", explain(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The main job was slow: its two local Spark jobs ran with Spark's defaults (200 shuffle
/// partitions, the web UI, the optimizing JIT) and two cores each on a 2-core machine. The
/// local DAG now gives spark-submit `--master local[1]` and `spark/local.conf`; the settings in
/// there are for one machine only, so no cluster DAG may use them.
#[test]
fn slow_local_spark_the_local_dag_submits_with_local_settings_and_the_cluster_dags_do_not() {
    let local = shipped_dag("car_rental_local");
    assert_eq!(local["params"]["spark_master"], "local[1]", "one core per job: the two jobs run at once");
    for task in ["vehicle_location_metrics", "user_transaction_metrics"] {
        let t = local["tasks"].as_array().unwrap().iter().find(|t| t["id"] == task).unwrap();
        let command = t["operator"]["command"].as_str().unwrap();
        assert!(command.starts_with("spark-submit --master '{{ params.spark_master }}'"), "{task}: {command}");
        assert!(command.contains("--properties-file spark/local.conf"), "{task}: {command}");
    }

    let conf = std::fs::read_to_string(repo().join("spark/local.conf")).unwrap();
    let settings: std::collections::BTreeMap<&str, &str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once(char::is_whitespace).map_or((l, ""), |(k, v)| (k, v.trim())))
        .collect();
    assert_eq!(settings.get("spark.sql.shuffle.partitions"), Some(&"1"), "{conf}");
    assert_eq!(settings.get("spark.default.parallelism"), Some(&"1"), "{conf}");
    assert_eq!(settings.get("spark.ui.enabled"), Some(&"false"), "{conf}");
    assert_eq!(settings.get("spark.eventLog.enabled"), Some(&"false"), "{conf}");
    let jvm = settings.get("spark.driver.extraJavaOptions").copied().unwrap_or_default();
    assert!(jvm.contains("-XX:TieredStopAtLevel=1"), "{conf}");

    // The cluster DAGs: the cluster's settings, none of the local ones.
    for dag in ["car_rental_emr", "car_rental_emr_staged", "car_rental_serverless", "car_rental_star_schema"] {
        let json = shipped_dag(dag).to_string();
        for local_only in [
            "local.conf",
            "local[",
            "TieredStopAtLevel",
            "spark.ui.enabled",
            "spark.default.parallelism",
            "spark.driver.memory",
        ] {
            assert!(!json.contains(local_only), "{dag} has the local-only setting {local_only:?}");
        }
    }
}

// --- examples/car_rental_local.sh ---------------------------------------------------------------

/// A folder laid out like the repository for `examples/car_rental_local.sh`: the script, the
/// shipped DAGs, except that `car_rental_local` is a stand-in without Spark (one command that
/// records `dagctl list --json` as the run sees it and writes a report of 60 lines), plus
/// `local_hourly`, a scheduled DAG that does not use AWS. `tests/tooling/venv.sh` is a no-op
/// (the stand-in needs no venv) and `cargo` is a fake on the PATH that "builds" dagctl by
/// linking the binary under test into `$CARGO_TARGET_DIR/release/` and says so the way cargo
/// does. No AWS credentials: HOME is an empty folder and AWS_* are removed.
struct ScriptWorld {
    dir: tempfile::TempDir,
}

const REPORT_LAST_LINE: &str = "End of the stand-in report.";

impl ScriptWorld {
    /// `sleep`: seconds the stand-in run's task sleeps before writing the report.
    fn new(sleep: u32) -> ScriptWorld {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let repo = repo();
        let write = |path: &str, text: &str| {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "examples/car_rental_local.sh",
            &std::fs::read_to_string(repo.join("examples/car_rental_local.sh")).unwrap(),
        );
        write("tests/tooling/venv.sh", "exit 0\n");
        std::fs::create_dir_all(root.join("dags")).unwrap();
        for f in std::fs::read_dir(repo.join("dags")).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            if name.ends_with(".toml") && name != "car_rental_local.toml" {
                std::fs::copy(&f, root.join("dags").join(&name)).unwrap();
            }
        }
        std::os::unix::fs::symlink(repo.join("dags/sql"), root.join("dags/sql")).unwrap();
        write(
            "dags/car_rental_local.toml",
            &format!(
                r#"description = "Stands in for the main job's DAG in the tests of its script (no Spark)"
timezone = "Europe/London"

[tasks.report]
operator = "command"
command = """mkdir -p data/reports && dagctl list --json > data/list_during_run.json && touch data/started \
  && sleep {sleep} && cp report.md data/reports/car_rental_{{{{ ds }}}}.md"""
"#
            ),
        );
        write(
            "dags/local_hourly.toml",
            "description = \"Scheduled, no AWS: the script leaves it alone\"\nschedule = \"@hourly\"\n\
             start_date = \"2026-01-01\"\ncatchup = false\n\n[tasks.nothing]\noperator = \"noop\"\n",
        );
        // A table that runs past line 40, where the script used to cut the report.
        let mut report = String::from("# Stand-in report\n\n## A table\n\n| n | square |\n|---|---|\n");
        for n in 1..=50 {
            report.push_str(&format!("| {n} | {} |\n", n * n));
        }
        report.push_str(&format!("\n## The end\n\n{REPORT_LAST_LINE}\n"));
        write("report.md", &report);
        write(
            "bin/cargo",
            r#"#!/bin/sh
# Stands in for cargo: "builds" dagctl by linking the binary under test into
# $CARGO_TARGET_DIR/release/, and says where on stdout, as cargo build --message-format=json does.
echo "$@" >> "$(dirname "$0")/../cargo.args"
[ "$1" = build ] || { echo "fake cargo: only build" >&2; exit 2; }
mkdir -p "$CARGO_TARGET_DIR/release"
ln -sf "$FAKE_DAGCTL" "$CARGO_TARGET_DIR/release/dagctl"
printf '{"reason":"compiler-artifact","target":{"name":"dagctl","kind":["bin"]},"executable":"%s"}\n' "$CARGO_TARGET_DIR/release/dagctl"
printf '{"reason":"build-finished","success":true}\n'
echo "    Finished (fake cargo)" >&2
"#,
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("bin/cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        ScriptWorld { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Not ./target: where the fake cargo "builds".
    fn target_dir(&self) -> PathBuf {
        self.root().join("elsewhere/cargo-target")
    }

    fn script(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg("examples/car_rental_local.sh").args(args).current_dir(self.root()).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("SLUICE_") || k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("SLUICE_API_BIND", "127.0.0.1:0");
        c.env("HOME", self.root().join("home"))
            .env("CARGO_TARGET_DIR", self.target_dir())
            .env("FAKE_DAGCTL", DAGCTL)
            .env(
                "PATH",
                format!("{}:{}", self.root().join("bin").display(), std::env::var("PATH").unwrap_or_default()),
            );
        c
    }

    fn dagctl(&self) -> Command {
        dagctl_in(self.root())
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.dagctl(), args)
    }

    /// The paused DAGs, as `dagctl list --json` says now.
    fn paused(&self) -> std::collections::BTreeSet<String> {
        paused_in(&self.ok(&["list", "--json"]))
    }

    /// The paused DAGs while the run's task ran.
    fn paused_during_run(&self) -> std::collections::BTreeSet<String> {
        paused_in(&std::fs::read_to_string(self.root().join("data/list_during_run.json")).unwrap())
    }

    fn cargo_args(&self) -> String {
        std::fs::read_to_string(self.root().join("cargo.args")).unwrap_or_default()
    }
}

fn paused_in(list_json: &str) -> std::collections::BTreeSet<String> {
    let v: Value = serde_json::from_str(list_json).unwrap();
    v["dags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["paused"] == true)
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// The pid the script says it started its daemon with (`pid N` after "Starting the daemon").
fn started_daemon_pid(out: &str) -> Option<u32> {
    out.lines().find_map(|l| l.strip_prefix("pid ").and_then(|p| p.trim().parse().ok()))
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Bug: the script ran ./target/release/dagctl, so with CARGO_TARGET_DIR set (the binary
/// elsewhere) every dagctl call failed and `dagctl list --json` piped nothing into Python: a
/// traceback. It now runs the binary cargo says it built.
#[test]
fn script_hard_coded_target_release_it_runs_the_dagctl_cargo_built() {
    let w = ScriptWorld::new(0);
    let o = w.script(&["--date", FIXTURE_DATE]).output().unwrap();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{}", explain(&o));
    assert!(!out.contains("Traceback") && !err.contains("Traceback"), "{}", explain(&o));
    assert!(w.cargo_args().contains("build --release"), "cargo was asked: {}", w.cargo_args());
    let built = w.target_dir().join("release/dagctl");
    assert!(out.contains(&built.display().to_string()), "the script must say which dagctl it runs\n{out}");
    assert!(!w.root().join("target").exists());
    assert!(out.contains("run manual__2026-03-01"), "{out}");
    assert!(err.contains("Took "), "the script says how long it took (on stderr, with the cleanup's news)\n{err}");
}

/// Bug: the script paused every scheduled DAG, not only those that use AWS, and left them
/// paused. It now pauses the scheduled AWS DAGs that are not paused yet, and unpauses exactly
/// those at the end: a DAG paused beforehand stays paused, a DAG without AWS is never paused.
#[test]
fn script_paused_every_scheduled_dag_and_left_them_paused() {
    let w = ScriptWorld::new(0);
    // The AWS pipelines ship paused (`paused_at_creation`); someone with an account unpaused
    // one, and paused another by hand.
    w.ok(&["unpause", "car_rental_emr"]);
    w.ok(&["pause", "car_rental_star_schema"]);
    let before = w.paused();
    assert!(before.contains("car_rental_star_schema"), "{before:?}");
    assert!(before.contains("car_rental_serverless"), "paused at creation: {before:?}");
    assert!(!before.contains("car_rental_emr"), "{before:?}");

    let o = w.script(&["--date", FIXTURE_DATE]).output().unwrap();
    assert!(o.status.success(), "{}", explain(&o));
    let during = w.paused_during_run();
    for aws in ["car_rental_emr", "car_rental_star_schema", "emr_cluster_janitor"] {
        assert!(during.contains(aws), "{aws} (scheduled, AWS) must be paused during the run: {during:?}");
    }
    for local in ["local_hourly", "car_rental_local"] {
        assert!(!during.contains(local), "{local} uses no AWS: never paused, but {during:?}");
    }
    assert_eq!(w.paused(), before, "the script must leave the paused set as it found it\n{}", explain(&o));
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    let unpaused = err.lines().find(|l| l.contains("Unpausing")).unwrap_or_default().to_string();
    assert!(unpaused.contains("car_rental_emr") && unpaused.contains("emr_cluster_janitor"), "{err}");
    assert!(!unpaused.contains("car_rental_star_schema"), "paused before the script, not by it: {unpaused}");
    let pid = started_daemon_pid(&out).expect("the script says which daemon it started");
    assert!(!alive(pid), "the script's daemon (pid {pid}) must be stopped at the end");
    assert!(!w.root().join("logs/scheduler.pid").exists());
}

/// Bug (the same, on the way out): the paused DAGs and the daemon must be restored and stopped
/// however the script ends, Ctrl-C included.
#[test]
fn script_paused_every_scheduled_dag_and_left_them_paused_also_on_ctrl_c() {
    let w = ScriptWorld::new(600);
    let before = w.paused();
    let log = w.root().join("script.out");
    let mut child = w
        .script(&["--date", FIXTURE_DATE])
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(w.root().join("script.err")).unwrap())
        .spawn()
        .unwrap();
    let output = || {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(w.root().join("script.err")).unwrap_or_default()
        )
    };
    // A deadline only so that a broken script fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !w.root().join("data/started").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the script ended before the run started\n{}", output());
        assert!(Instant::now() < deadline, "the run's task never started\n{}", output());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!w.paused_during_run().is_empty(), "the AWS DAGs are paused during the run");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the script did not end after SIGINT\n{}", output());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130), "{}", output());
    assert_eq!(w.paused(), before, "Ctrl-C must unpause what the script paused\n{}", output());
    let pid = started_daemon_pid(&std::fs::read_to_string(&log).unwrap()).expect("the daemon's pid");
    assert!(!alive(pid), "Ctrl-C must stop the script's daemon (pid {pid})\n{}", output());
    assert!(!w.root().join(format!("data/reports/car_rental_{FIXTURE_DATE}.md")).exists());
}

/// Bug: the script printed the report's first 40 lines, cutting a table in half without saying
/// so. It now prints the whole report.
#[test]
fn script_cut_the_report_at_40_lines() {
    let w = ScriptWorld::new(0);
    let o = w.script(&["--date", FIXTURE_DATE]).output().unwrap();
    assert!(o.status.success(), "{}", explain(&o));
    let out = text(&o.stdout);
    let report = std::fs::read_to_string(w.root().join(format!("data/reports/car_rental_{FIXTURE_DATE}.md"))).unwrap();
    assert!(report.lines().count() > 40);
    assert!(out.contains(&report), "the whole report, as written\n{out}");
    assert!(out.contains(REPORT_LAST_LINE));
}

/// A process that holds `sluice.db.lock` the way the daemon does (an exclusive flock, its pid,
/// host and start time in the file); killed when dropped.
struct LockHolder(std::process::Child);

impl LockHolder {
    fn hold(root: &Path) -> LockHolder {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "exec 9>sluice.db.lock; flock -x 9; \
                 printf 'pid=%s\\nhost=%s\\nsince=2026-03-01T08:00:00Z\\n' \"$$\" \"$(hostname)\" >&9; \
                 echo locked; exec sleep 600",
            ])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh and flock (util-linux) run");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        LockHolder(child)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dagctl scheduler` in the world and waits until it runs.
fn start_daemon(w: &ScriptWorld) -> Daemon {
    std::fs::create_dir_all(w.root().join("logs")).unwrap();
    let log_path = w.root().join("daemon.log");
    // The stand-in run's task calls dagctl.
    let path =
        format!("{}:{}", Path::new(DAGCTL).parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let child = w
        .dagctl()
        .arg("scheduler")
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("scheduler running") {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// Whether something holds `sluice.db.lock` now (`flock -n` fails).
fn lock_held(root: &Path) -> bool {
    root.join("sluice.db.lock").exists()
        && !Command::new("flock").args(["-n", "sluice.db.lock", "true"]).current_dir(root).status().unwrap().success()
}

/// Bug: the script only knew a daemon it had started itself (its pidfile), and started a second
/// one beside any other daemon on ./sluice.db. It now sees the daemon that holds the database's
/// lock file, says which one it uses, leaves it running, and pauses nothing.
#[test]
fn script_saw_only_the_daemon_it_started_it_uses_the_one_holding_the_lock() {
    let w = ScriptWorld::new(0);
    let mut daemon = start_daemon(&w);
    // A daemon that takes the lock itself needs no stand-in holder.
    let _holder = if lock_held(w.root()) { None } else { Some(LockHolder::hold(w.root())) };
    let o = w.script(&["--date", FIXTURE_DATE]).output().unwrap();
    assert!(o.status.success(), "{}", explain(&o));
    let out = text(&o.stdout);
    assert!(out.contains("Using the daemon already running on sluice.db"), "{out}");
    assert!(
        out.contains(&format!("sluice.db.lock (pid {} on host ", daemon.0.id())),
        "it names the lock's holder\n{out}"
    );
    assert!(!out.contains("Starting the daemon") && !out.contains("pausing"), "{out}");
    assert!(daemon.0.try_wait().unwrap().is_none(), "a daemon the script did not start keeps running");
    assert!(!w.root().join("logs/scheduler.pid").exists());
}

/// The fallback of the same: the daemon named in logs/scheduler.pid (left by a run of the script
/// that was killed) is used, not doubled.
#[test]
fn script_saw_only_the_daemon_it_started_it_still_uses_the_one_in_its_pidfile() {
    let w = ScriptWorld::new(0);
    let mut daemon = start_daemon(&w);
    std::fs::write(w.root().join("logs/scheduler.pid"), format!("{}\n", daemon.0.id())).unwrap();
    let o = w.script(&["--date", FIXTURE_DATE]).output().unwrap();
    assert!(o.status.success(), "{}", explain(&o));
    let out = text(&o.stdout);
    assert!(out.contains("Using the daemon already running on sluice.db"), "{out}");
    assert!(!out.contains("Starting the daemon"), "{out}");
    assert!(daemon.0.try_wait().unwrap().is_none(), "a daemon the script did not start keeps running");
}

/// Without Java the script stops at once with what to install and how to check it.
#[test]
fn script_without_java_says_what_to_install() {
    let w = ScriptWorld::new(0);
    // Only the few tools the script needs before its Java check (and on its way out).
    let bin = w.root().join("nojava-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let find = |tool: &str| std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file());
    for tool in ["dirname", "date", "mkdir", "mktemp", "rm"] {
        std::os::unix::fs::symlink(find(tool).unwrap_or_else(|| panic!("{tool} on the PATH")), bin.join(tool)).unwrap();
    }
    let bash = find("bash").expect("bash on the PATH");
    let o = Command::new(bash)
        .args(["examples/car_rental_local.sh", "--date", FIXTURE_DATE])
        .current_dir(w.root())
        .env("PATH", &bin)
        .env("HOME", w.root().join("home"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    let err = text(&o.stderr);
    assert!(err.contains("java not found") && err.contains("java -version"), "{err}");
    assert!(!w.root().join("sluice.db").exists(), "nothing started");
}
