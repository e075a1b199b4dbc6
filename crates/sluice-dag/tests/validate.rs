//! Validation against the fixture files in `tests/fixtures/`.
//!
//! Each file in `tests/fixtures/invalid/` declares what it must produce in `# expect: LINE:
//! TEXT` comments (line 0: a problem of the whole file); the file must be rejected with every
//! one of them.

use std::path::{Path, PathBuf};

use sluice_dag::{load_folder, parse_dag_file, Severity};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn expectations(src: &str) -> Vec<(usize, String)> {
    src.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| {
            let (line, text) = e.split_once(": ").expect("`# expect: LINE: TEXT`");
            (line.parse().expect("a line number"), text.to_string())
        })
        .collect()
}

#[test]
fn every_invalid_fixture_is_rejected_with_its_message_and_line() {
    let dir = fixtures().join("invalid");
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        let expected = expectations(&src);
        assert!(!expected.is_empty(), "{} has no `# expect:` line", path.display());
        let outcome = parse_dag_file(&path);
        assert!(outcome.dag.is_none(), "{} was accepted", path.display());
        let got: Vec<String> = outcome.diagnostics.iter().map(|d| d.to_string()).collect();
        for (line, text) in expected {
            let found = outcome.diagnostics.iter().any(|d| {
                d.severity == Severity::Error
                    && d.line.unwrap_or(0) == line
                    && d.message.contains(&text)
                    && d.file == path
            });
            if !found {
                failures.push(format!(
                    "{}: expected an error on line {line} containing {text:?}, got:\n{}",
                    path.display(),
                    got.join("\n")
                ));
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 20, "only {checked} fixtures found");
}

#[test]
fn several_problems_in_one_file_are_all_reported() {
    let outcome = parse_dag_file(&fixtures().join("invalid/several_problems.toml"));
    assert_eq!(outcome.diagnostics.iter().filter(|d| d.is_error()).count(), 4, "{:#?}", outcome.diagnostics);
}

#[test]
fn the_cycle_is_printed_as_a_path() {
    let outcome = parse_dag_file(&fixtures().join("invalid/cycle.toml"));
    let messages: Vec<&str> = outcome.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, vec!["dependency cycle: a -> b -> c -> a"]);
}

#[test]
fn two_files_declaring_one_dag_id_fail_the_second() {
    let folder = load_folder(&fixtures().join("duplicate_ids")).unwrap();
    assert_eq!(folder.dags.len(), 1, "the first file keeps the id");
    assert_eq!(folder.dags[0].file.file_name().unwrap(), "a.toml");
    let b = folder.files.iter().find(|f| f.path.ends_with("b.toml")).unwrap();
    assert!(b.has_errors());
    assert!(b.diagnostics[0].message.contains("DAG id `a` is already declared by"), "{:?}", b.diagnostics);
}

#[test]
fn a_cluster_without_a_guaranteed_terminate_is_a_warning_not_an_error() {
    let outcome = parse_dag_file(&fixtures().join("valid/emr_without_terminate.toml"));
    assert!(outcome.dag.is_some(), "{:?}", outcome.diagnostics);
    assert_eq!(outcome.diagnostics.len(), 1);
    let w = &outcome.diagnostics[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.task.as_deref(), Some("create"));
    assert!(w.message.contains("no `terminate` task with trigger_rule `all_done` or `always`"), "{}", w.message);
}

#[test]
fn every_shipped_dag_is_valid() {
    let dags = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dags");
    let folder = load_folder(&dags).unwrap();
    let problems: Vec<String> = folder.diagnostics().map(|d| d.to_string()).collect();
    assert!(problems.is_empty(), "shipped DAGs have problems:\n{}", problems.join("\n"));
    assert!(folder.dags.len() >= 5, "expected the example DAGs, found {}", folder.dags.len());
    for dag in &folder.dags {
        assert!(dag.description.is_some(), "{} has no description", dag.id);
    }
}

#[test]
fn independent_tasks_keep_their_file_order() {
    let src = "[tasks.zeta]\noperator = \"noop\"\n[tasks.alpha]\noperator = \"noop\"\n[tasks.mid]\noperator = \"noop\"\ndepends_on = [\"zeta\", \"alpha\"]\n";
    let dag = sluice_dag::parse_dag(Path::new("order.toml"), src).dag.unwrap();
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["zeta", "alpha", "mid"]);
}
