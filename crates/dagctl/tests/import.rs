//! `dagctl import asl` as a user runs it: the real binary on state machine files, its exit
//! codes, what it writes (and that it writes nothing on a rejection), and that what it writes
//! passes `dagctl validate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sluice-asl/tests/golden").join(format!("{name}.asl.json"))
}

fn dagctl(dags: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dagctl"))
        .arg("--dags")
        .arg(dags)
        .args(args)
        .env_remove("SLUICE_DAGS")
        .env_remove("SLUICE_CONFIG")
        .current_dir(dags)
        .output()
        .expect("dagctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_pipeline_imports_into_the_dag_folder_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let machine = golden("pipeline-emr");
    let o = dagctl(dir.path(), &["import", "asl", machine.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("mapped $.States.CreateCluster: -> task `create_cluster` (operator `create_emr_cluster`)"),
        "{out}"
    );
    assert!(out.contains("0 approximated, 0 rejected"), "{out}");
    let written = dir.path().join("pipeline-emr.toml");
    assert!(out.contains(&format!("wrote {}", written.display())), "{out}");
    let toml = std::fs::read_to_string(&written).unwrap();
    assert!(toml.contains("# From state `CreateCluster` ($.States.CreateCluster)"), "{toml}");
    // The id comes from the file name, so the file does not repeat it.
    assert!(!toml.contains("\nid = "), "{toml}");
    let v = dagctl(dir.path(), &["validate"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(text(&v).contains("1 file checked: 1 valid, 0 invalid (0 errors, 0 warnings)"), "{}", text(&v));
    // A second import does not replace the file unless asked to.
    let again = dagctl(dir.path(), &["import", "asl", machine.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("exists (--force replaces it)"), "{}", text(&again));
    let forced = dagctl(dir.path(), &["import", "asl", machine.to_str().unwrap(), "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
}

#[test]
fn out_id_and_schedule_are_written_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/nightly.toml");
    let o = dagctl(
        dir.path(),
        &[
            "import",
            "asl",
            golden("pipeline-serverless").to_str().unwrap(),
            "--id",
            "car_rental_serverless",
            "--schedule",
            "0 5 * * *",
            "--timezone",
            "Europe/London",
            "--start-date",
            "2026-01-01",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let toml = std::fs::read_to_string(&out).unwrap();
    for line in [
        "id = \"car_rental_serverless\"",
        "schedule = \"0 5 * * *\"",
        "timezone = \"Europe/London\"",
        "start_date = \"2026-01-01\"",
    ] {
        assert!(toml.contains(line), "{line} in {toml}");
    }
    let v = dagctl(dir.path(), &["validate", out.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let list = dagctl(&dir.path().join("sub"), &["next", "car_rental_serverless", "--count", "1"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
}

#[test]
fn a_rejection_exits_one_and_writes_nothing_unless_allow_partial() {
    let dir = tempfile::tempdir().unwrap();
    let machine = golden("reject-choice-not-polling-loop.several-problems");
    let o = dagctl(dir.path(), &["import", "asl", machine.to_str().unwrap(), "--id", "partial"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    // Every problem, in one pass.
    for code in
        ["[no-operator-yet]", "[map-state]", "[choice-not-polling-loop]", "[dynamic-path]", "[intrinsic-function]"]
    {
        assert!(out.contains(code), "{code} in {out}");
    }
    assert!(out.contains("nothing written: something was rejected"), "{out}");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    let partial =
        dagctl(dir.path(), &["import", "asl", machine.to_str().unwrap(), "--id", "partial", "--allow-partial"]);
    assert_eq!(partial.status.code(), Some(1), "{}", text(&partial));
    let toml = std::fs::read_to_string(dir.path().join("partial.toml")).unwrap();
    assert!(toml.contains("INCOMPLETE"), "{toml}");
    assert!(toml.contains("REJECTED: a Map state"), "{toml}");
}

#[test]
fn strict_refuses_an_approximation_and_without_it_the_dag_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let machine = golden("approx-retry-several");
    let o = dagctl(dir.path(), &["import", "asl", machine.to_str().unwrap(), "--strict"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("approximated [retry-several] $.States.S.Retry"), "{}", text(&o));
    assert!(text(&o).contains("nothing written: --strict"), "{}", text(&o));
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    let o = dagctl(dir.path(), &["import", "asl", machine.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(files(dir.path()), vec!["approx-retry-several.toml".to_string()]);
}

#[test]
fn bad_input_exits_one_with_a_message_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let o = dagctl(dir.path(), &["import", "asl", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("cannot read"), "{}", text(&o));
    let not_json = dir.path().join("machine.json");
    std::fs::write(&not_json, "{ not json").unwrap();
    let o = dagctl(dir.path(), &["import", "asl", not_json.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("rejected [invalid-machine] $: not JSON"), "{}", text(&o));
    assert_eq!(files(dir.path()), vec!["machine.json".to_string()]);
    // Usage errors are clap's exit code 2.
    let o = dagctl(dir.path(), &["import", "asl", not_json.to_str().unwrap(), "--schedule", "@daily"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
