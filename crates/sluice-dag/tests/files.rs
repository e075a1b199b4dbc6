//! The files a DAG names or is: only regular files, and only up to a size, are read.

use std::path::Path;

use chrono::{NaiveDate, NaiveTime};
use sluice_dag::schedule::resolve_local;
use sluice_dag::{parse_dag, parse_dag_file, Dag, Diagnostic};

fn athena(query_file: &str) -> String {
    format!(
        "[tasks.q]\noperator = \"athena\"\nquery_file = \"{query_file}\"\ndatabase = \"db\"\noutput_location = \"s3://b/r/\"\n"
    )
}

fn errors(path: &Path, src: &str) -> Vec<Diagnostic> {
    let outcome = parse_dag(path, src);
    assert!(outcome.dag.is_none(), "accepted:\n{src}");
    outcome.diagnostics
}

fn render(dag: &Dag) -> Result<String, String> {
    let logical = resolve_local(dag.timezone, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap().and_time(NaiveTime::MIN));
    let dates = dag.run_dates(logical);
    let task = &dag.tasks[0];
    let ctx = dag.template_context(&task.id, "manual__x", &dates, None);
    dag.render_task(task, &ctx)
        .map(|(keys, _)| keys["query"].as_str().unwrap_or_default().to_string())
        .map_err(|e| e.to_string())
}

#[test]
fn a_query_file_that_is_dev_zero_is_refused_with_its_line_instead_of_read_until_memory_runs_out() {
    let errs = errors(Path::new("dags/zero.toml"), &athena("/dev/zero"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(3));
    assert!(errs[0].message.contains("key `query_file`: cannot read /dev/zero: not a regular file"), "{}", errs[0]);
}

#[test]
fn a_query_file_that_is_a_directory_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sql")).unwrap();
    let errs = errors(&dir.path().join("d.toml"), &athena("sql"));
    assert_eq!(errs[0].line, Some(3));
    assert!(errs[0].message.contains("is a directory"), "{}", errs[0]);
}

#[test]
fn a_query_file_over_one_mebibyte_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.sql"), "-- x\n".repeat(300_000)).unwrap();
    std::fs::write(dir.path().join("fits.sql"), "-".repeat(1024 * 1024)).unwrap();
    let errs = errors(&dir.path().join("d.toml"), &athena("big.sql"));
    assert_eq!(errs[0].line, Some(3));
    assert!(errs[0].message.contains("1500000 bytes, over the limit of 1 MiB for a query file"), "{}", errs[0]);
    assert!(parse_dag(&dir.path().join("d.toml"), &athena("fits.sql")).dag.is_some());
}

#[test]
fn rendering_refuses_a_query_file_that_is_no_longer_a_small_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("q.sql");
    std::fs::write(&sql, "SELECT '{{ ds }}'").unwrap();
    let dag = parse_dag(&dir.path().join("d.toml"), &athena("q.sql")).dag.expect("valid");
    assert_eq!(render(&dag).unwrap(), "SELECT '2026-03-01'");

    std::fs::write(&sql, "-".repeat(1024 * 1024 + 1)).unwrap();
    let err = render(&dag).unwrap_err();
    assert!(err.contains("over the limit of 1 MiB for a query file"), "{err}");

    std::fs::remove_file(&sql).unwrap();
    std::fs::create_dir(&sql).unwrap();
    let err = render(&dag).unwrap_err();
    assert!(err.contains("is a directory"), "{err}");

    // `query_file` is a template too: validation reads the file its text names (here one
    // made to exist), a try reads the one it renders to.
    let literal = dir.path().join("{{ '/dev/' }}zero");
    std::fs::create_dir_all(literal.parent().unwrap()).unwrap();
    std::fs::write(&literal, "SELECT 1").unwrap();
    let zero = parse_dag(&dir.path().join("z.toml"), &athena("{{ '/dev/' }}zero")).dag.expect("valid");
    let err = render(&zero).unwrap_err();
    assert!(err.contains("cannot read /dev/zero: not a regular file"), "{err}");
}

#[test]
fn a_dag_file_that_is_not_a_regular_file_is_refused_without_reading_it() {
    let outcome = parse_dag_file(Path::new("/dev/zero"));
    assert!(outcome.dag.is_none());
    assert_eq!(outcome.diagnostics.len(), 1);
    let d = &outcome.diagnostics[0];
    assert_eq!(d.file, Path::new("/dev/zero"));
    assert_eq!(d.to_string(), "/dev/zero: error: cannot read the file: not a regular file");

    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("folder.toml");
    std::fs::create_dir(&fake).unwrap();
    let outcome = parse_dag_file(&fake);
    assert!(outcome.diagnostics[0].message.contains("is a directory"), "{}", outcome.diagnostics[0]);
}

#[test]
fn a_dag_file_over_16_mebibytes_is_refused_without_parsing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    let mut src = String::from("[tasks.a]\noperator = \"noop\"\n");
    src.push_str(&"# padding\n".repeat(1_700_000));
    std::fs::write(&path, &src).unwrap();
    let outcome = parse_dag_file(&path);
    assert!(outcome.dag.is_none());
    assert_eq!(outcome.diagnostics.len(), 1, "{:?}", outcome.diagnostics);
    let message = &outcome.diagnostics[0].message;
    assert!(message.contains("17000028 bytes, over the limit of 16 MiB for a DAG file"), "{message}");
    // The same text handed over directly is refused the same way.
    let outcome = parse_dag(&path, &src);
    assert!(outcome.diagnostics[0].message.contains("over the limit of 16 MiB"), "{:?}", outcome.diagnostics);
}

#[test]
fn a_fifo_named_as_a_dag_file_or_query_file_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    if !made {
        eprintln!("no mkfifo here: skipped");
        return;
    }
    let outcome = parse_dag_file(&fifo);
    assert!(outcome.diagnostics[0].message.contains("not a regular file"), "{:?}", outcome.diagnostics);
    let errs = errors(&dir.path().join("d.toml"), &athena("pipe.toml"));
    assert!(errs[0].message.contains("not a regular file"), "{}", errs[0]);
}
