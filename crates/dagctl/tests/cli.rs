//! `dagctl` as a user runs it: real binary, real files, exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dagctl(dags: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dagctl"))
        .arg("--dags")
        .arg(dags)
        .args(args)
        .env_remove("SLUICE_DAGS")
        .output()
        .expect("dagctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp folder with the given DAG files.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, src) in files {
        std::fs::write(dir.path().join(name), src).unwrap();
    }
    dir
}

const GOOD: &str = "schedule = \"0 5 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-01-01\"\ndeadline = \"07:00\"\n\
[params]\nbucket = \"b\"\n[tasks.extract]\noperator = \"command\"\ncommand = \"echo {{ ds }}\"\n\
[tasks.load]\noperator = \"command\"\ndepends_on = [\"extract\"]\ncommand = \"load s3://{{ params.bucket }}/{{ ds }} {{ tasks.extract.output }}\"\n";

const BROKEN: &str = "[tasks.a]\noperator = \"noop\"\ndepend_on = [\"b\"]\n";

#[test]
fn validate_the_shipped_dags_exits_zero() {
    let o = dagctl(&repo().join("dags"), &["validate"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 invalid (0 errors, 0 warnings)"), "{}", stdout(&o));
}

#[test]
fn validate_names_file_line_task_and_suggestion_and_exits_one() {
    let dir = folder(&[("good.toml", GOOD), ("broken.toml", BROKEN)]);
    let o = dagctl(dir.path(), &["validate"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let expected = format!(
        "{}:3: error: task `a`: unknown key `depend_on` in a `noop` task (did you mean `depends_on`?)",
        dir.path().join("broken.toml").display()
    );
    assert!(out.contains(&expected), "{out}");
    assert!(out.contains("2 files checked: 1 valid, 1 invalid (1 error, 0 warnings)"), "{out}");
}

#[test]
fn validate_json_lists_every_file() {
    let dir = folder(&[("good.toml", GOOD), ("broken.toml", BROKEN)]);
    let o = dagctl(dir.path(), &["validate", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let broken = files.iter().find(|f| f["dag_id"] == "broken").unwrap();
    assert_eq!(broken["diagnostics"][0]["line"], 3);
    assert_eq!(broken["diagnostics"][0]["task"], "a");
}

#[test]
fn validate_a_single_file_path() {
    let dir = folder(&[("good.toml", GOOD)]);
    let o = dagctl(Path::new("/nonexistent"), &["validate", dir.path().join("good.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn list_shows_good_dags_and_the_broken_file_with_its_error() {
    let dir = folder(&[("good.toml", GOOD), ("broken.toml", BROKEN)]);
    let o = dagctl(dir.path(), &["list", "--json"]);
    assert_eq!(o.status.code(), Some(1), "a broken file makes list exit 1");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dags"][0]["id"], "good");
    assert_eq!(v["dags"][0]["schedule"], "0 5 * * *");
    assert_eq!(v["dags"][0]["timezone"], "Europe/London");
    assert_eq!(v["dags"][0]["tasks"], 2);
    assert!(v["dags"][0]["next_fire_time"].as_str().unwrap().contains("T05:00:00"));
    assert_eq!(v["failed_files"][0]["dag_id"], "broken");
    assert!(v["failed_files"][0]["errors"][0]["message"].as_str().unwrap().contains("depend_on"));

    let text = stdout(&dagctl(dir.path(), &["list"]));
    assert!(text.lines().next().unwrap().starts_with("DAG"), "{text}");
    assert!(text.contains("1 file failed to load:"), "{text}");
}

#[test]
fn show_prints_topological_order_dot_and_json() {
    let dir = folder(&[("good.toml", GOOD)]);
    let text = stdout(&dagctl(dir.path(), &["show", "good"]));
    let extract = text.find("extract").unwrap();
    let load = text.find("\nload").unwrap();
    assert!(extract < load, "{text}");
    let dot = stdout(&dagctl(dir.path(), &["show", "good", "--dot"]));
    assert!(dot.starts_with("digraph \"good\" {"), "{dot}");
    assert!(dot.contains("\"extract\" -> \"load\";"), "{dot}");
    let json: serde_json::Value =
        serde_json::from_slice(&dagctl(dir.path(), &["show", "good", "--json"]).stdout).unwrap();
    assert_eq!(json["tasks"][1]["depends_on"][0], "extract");
    assert_eq!(json["tasks"][0]["downstream"][0], "load");
}

#[test]
fn show_an_unknown_dag_suggests_and_exits_one() {
    let dir = folder(&[("good.toml", GOOD)]);
    let o = dagctl(dir.path(), &["show", "goood"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no DAG `goood` in the folder (did you mean `good`?)"), "{}", stderr(&o));
}

#[test]
fn show_a_broken_dag_prints_why() {
    let dir = folder(&[("broken.toml", BROKEN)]);
    let o = dagctl(dir.path(), &["show", "broken"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("DAG `broken` does not load"), "{}", stderr(&o));
}

#[test]
fn next_crosses_the_spring_forward_change_without_skipping_a_day() {
    let dir = folder(&[("good.toml", GOOD)]);
    let o = dagctl(dir.path(), &["next", "good", "--after", "2026-03-27T12:00", "--count", "3", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["fire_time"].as_str().unwrap().into(),
                r["ds"].as_str().unwrap().into(),
                r["deadline"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2026-03-28T05:00:00+00:00".into(), "2026-03-27".into(), "2026-03-28T07:00:00+00:00".into()),
            ("2026-03-29T05:00:00+01:00".into(), "2026-03-28".into(), "2026-03-29T07:00:00+01:00".into()),
            ("2026-03-30T05:00:00+01:00".into(), "2026-03-29".into(), "2026-03-30T07:00:00+01:00".into()),
        ]
    );
}

#[test]
fn render_fills_templates_and_shows_upstream_outputs_as_placeholders() {
    let dir = folder(&[("good.toml", GOOD)]);
    let o = dagctl(
        dir.path(),
        &["render", "good", "load", "--date", "2026-03-01", "--conf", r#"{"bucket":"other"}"#, "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["command"], "load s3://other/2026-03-01 <tasks.extract.output>");
}

#[test]
fn render_rejects_a_date_without_a_tick_and_bad_conf() {
    let weekly = GOOD.replace("0 5 * * *", "0 5 * * 1");
    let dir = folder(&[("good.toml", &weekly)]);
    let o = dagctl(dir.path(), &["render", "good", "load", "--date", "2026-03-04"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no tick on 2026-03-04"), "{}", stderr(&o));
    let o = dagctl(dir.path(), &["render", "good", "load", "--date", "2026-03-02", "--conf", "[1]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--conf must be a JSON object"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_two() {
    let o = dagctl(Path::new("dags"), &["show"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_dag_folder_comes_from_the_environment() {
    let dir = folder(&[("good.toml", GOOD)]);
    let o = Command::new(env!("CARGO_BIN_EXE_dagctl"))
        .args(["list", "--json"])
        .env("SLUICE_DAGS", dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dags"][0]["id"], "good");
}

/// `dagctl next hello --count 5000 | head -1` panicked on the closed pipe (exit 101).
#[test]
fn a_listing_piped_into_head_ends_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = folder(&[("good.toml", GOOD)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_dagctl"))
        .arg("--dags")
        .arg(dir.path())
        .args(["next", "good", "--count", "5000"])
        .env_remove("SLUICE_DAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `head -1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let n = stdout.read(&mut first).unwrap();
    assert!(n > 0);
    drop(stdout);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.code() == Some(0) || status.signal() == Some(13), // SIGPIPE
        "ends by SIGPIPE or exit 0, not a panic: {status:?}"
    );
}

/// `trigger --from 2026-03-05 --to 2026-03-01` exited 0 ("no schedule tick in that range").
#[test]
fn a_backfill_whose_from_is_after_its_to_exits_one() {
    let dir = folder(&[("good.toml", GOOD)]);
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let o = dagctl(dir.path(), &["--db", &db, "trigger", "good", "--from", "2026-03-05", "--to", "2026-03-01"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("--from 2026-03-05 is after --to 2026-03-01"), "{}", stderr(&o));
    let runs = dagctl(dir.path(), &["--db", &db, "runs", "--json"]);
    assert_eq!(stdout(&runs).trim(), "[]", "nothing was created");
}

/// `dagctl logs DAG nosuchtask` said "has not run".
#[test]
fn logs_of_a_task_that_does_not_exist_say_so_with_a_suggestion() {
    let dir = folder(&[("good.toml", GOOD)]);
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let o = dagctl(dir.path(), &["--db", &db, "logs", "good", "extrct", "--date", "2026-03-01"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("DAG `good` has no task `extrct` (did you mean `extract`?)"), "{err}");
    assert!(!err.contains("has not run"), "{err}");
}

/// `dagctl trigger --from/--to --dry-run` lists the runs a backfill would create and creates
/// none; after the real backfill it lists them as there.
#[test]
fn a_backfill_dry_run_lists_the_runs_and_creates_none() {
    let dir = folder(&[("good.toml", GOOD)]);
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let backfill = |extra: &[&str]| {
        let mut args = vec!["--db", &db, "trigger", "good", "--from", "2026-03-01", "--to", "2026-03-02"];
        args.extend_from_slice(extra);
        let o = dagctl(dir.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let runs = || {
        serde_json::from_slice::<serde_json::Value>(&dagctl(dir.path(), &["--db", &db, "runs", "--json"]).stdout)
            .unwrap()
    };
    let plan = backfill(&["--dry-run"]);
    assert!(plan.contains("backfill__2026-03-01T05:00:00+00:00  ds 2026-03-01  would be created"), "{plan}");
    assert!(plan.contains("backfill__2026-03-02T05:00:00+00:00  ds 2026-03-02  would be created"), "{plan}");
    assert!(plan.contains("dry run: nothing was created"), "{plan}");
    assert_eq!(runs(), serde_json::json!([]), "nothing was created");

    let done = backfill(&[]);
    assert!(done.contains("ds 2026-03-01  created"), "{done}");
    assert_eq!(runs().as_array().unwrap().len(), 2);
    let again = backfill(&["--dry-run", "--rerun", "all"]);
    assert!(again.contains("ds 2026-03-02  exists (queued), would clear 2 task(s)"), "{again}");
    let o = dagctl(dir.path(), &["--db", &db, "trigger", "good", "--date", "2026-03-01", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "--dry-run is a backfill's: {}", stderr(&o));
}

/// `dagctl mark --dry-run` and `dagctl clear --dry-run` say what they would change and change
/// nothing; without it they do.
#[test]
fn mark_and_clear_dry_runs_change_nothing() {
    let dir = folder(&[("good.toml", GOOD)]);
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let ok = |args: &[&str]| {
        let o = dagctl(dir.path(), &[&["--db", db.as_str()], args].concat());
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let tasks = || -> serde_json::Value {
        serde_json::from_str(&ok(&["tasks", "good", "--date", "2026-03-01", "--json"])).unwrap()
    };
    let states = || -> Vec<String> {
        tasks()["tasks"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap().to_string()).collect()
    };
    assert!(ok(&["trigger", "good", "--date", "2026-03-01"]).contains("created run manual__2026-03-01T05:00:00+00:00"));
    let run = "manual__2026-03-01T05:00:00+00:00";

    assert_eq!(
        ok(&["mark", "good", "failed", "--date", "2026-03-01", "--dry-run"]).trim(),
        "would mark failed: extract, load (dry run)"
    );
    assert_eq!(states(), vec!["none", "none"]);
    assert_eq!(tasks()["run"]["state"], "queued");
    assert_eq!(ok(&["mark", "good", "failed", "--run", run]).trim(), "marked failed: extract, load");
    assert_eq!(states(), vec!["failed", "failed"]);
    assert_eq!(tasks()["run"]["state"], "failed");

    let plan = ok(&["clear", "good", "--date", "2026-03-01", "--task", "extract", "--downstream", "--dry-run"]);
    assert_eq!(plan.trim(), format!("would clear 2 task(s) of {run}: extract, load (dry run)"));
    assert_eq!(states(), vec!["failed", "failed"]);
    assert_eq!(
        ok(&["clear", "good", "--date", "2026-03-01", "--task", "load"]).trim(),
        format!("cleared 1 task(s) of {run}: load")
    );
    assert_eq!(states(), vec!["failed", "none"]);
}

/// An output its operator declares a list (`step_ids`) stands in as a list, so that
/// `step_ids[0]` renders the placeholder and not its first character.
#[test]
fn render_shows_a_list_output_as_a_list() {
    let steps = "[tasks.submit]\noperator = \"add_steps\"\ncluster_id = \"j-1\"\nwait_for_completion = false\n\
steps = [{ name = \"s\", args = [\"spark-submit\", \"x.py\"] }]\n\
[tasks.wait]\noperator = \"sensor\"\nkind = \"emr_step\"\ndepends_on = [\"submit\"]\ncluster_id = \"j-1\"\n\
step_id = \"{{ tasks.submit.step_ids[0] }}\"\n";
    let dir = folder(&[("steps.toml", steps)]);
    let o = dagctl(dir.path(), &["render", "steps", "wait", "--date", "2026-03-01", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["step_id"], "<tasks.submit.step_ids>");
}

/// A `lambda`'s `payload` is JSON read further down: `payload.day` renders its own placeholder.
#[test]
fn render_shows_a_read_inside_a_json_output_as_its_own_placeholder() {
    let src = "[tasks.enrich]\noperator = \"lambda\"\nfunction_name = \"f\"\npayload = { day = \"{{ ds }}\" }\n\
[tasks.report]\noperator = \"command\"\ndepends_on = [\"enrich\"]\n\
command = \"echo {{ tasks.enrich.payload.day }} {{ tasks.enrich.payload.stats.rows }} {{ tasks.enrich.payload.stats.bytes }}\"\n";
    let dir = folder(&[("fn.toml", src)]);
    let o = dagctl(dir.path(), &["render", "fn", "report", "--date", "2026-03-01", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["command"],
        "echo <tasks.enrich.payload.day> <tasks.enrich.payload.stats.rows> <tasks.enrich.payload.stats.bytes>"
    );
    let o = dagctl(dir.path(), &["render", "fn", "enrich", "--date", "2026-03-01", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["payload"], serde_json::json!({"day": "2026-03-01"}));
}
