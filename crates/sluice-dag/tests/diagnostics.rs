//! A diagnostic is one line that starts with its file, whatever the names in the file hold.

use std::path::{Path, PathBuf};

use sluice_dag::diagnostic::one_line;
use sluice_dag::{load_folder, parse_dag, Diagnostic, Severity};

/// Every diagnostic of `src`, displayed; each must be one line starting with the file.
fn displayed(file: &str, src: &str) -> Vec<String> {
    let outcome = parse_dag(Path::new(file), src);
    let lines: Vec<String> = outcome.diagnostics.iter().map(Diagnostic::to_string).collect();
    for (d, line) in outcome.diagnostics.iter().zip(&lines) {
        assert_one_line(line, file);
        assert!(!d.message.chars().any(char::is_control), "control character in message {:?}", d.message);
    }
    lines
}

fn assert_one_line(line: &str, file: &str) {
    assert!(!line.contains(['\n', '\r', '\u{2028}', '\u{2029}', '\u{85}']), "not one line: {line:?}");
    let file = one_line(file);
    assert!(line.starts_with(&format!("{file}:")), "does not start with {file}: {line:?}");
}

fn has(lines: &[String], text: &str) {
    assert!(lines.iter().any(|l| l.contains(text)), "no diagnostic contains {text:?}:\n{}", lines.join("\n"));
}

#[test]
fn a_task_id_holding_a_newline_keeps_its_diagnostic_on_one_line() {
    let lines = displayed("x.toml", "[tasks.\"a\\nb\"]\noperator = \"noop\"\n");
    has(&lines, "x.toml:1: error: task `a\\nb`: invalid task id: `a\\nb` holds '\\n'");
}

#[test]
fn names_with_control_characters_are_escaped_in_every_message() {
    let src = r#"
id = "d\u0007g"
"x\ty" = 1
[params]
"p\nq" = 1
[defaults]
"r\u0000" = 1
[tasks.a]
operator = "nope\nx"
[tasks.b]
operator = "sensor"
kind = "s3\nkey"
[tasks.c]
operator = "noop"
depends_on = ["q\nz", "a", "a"]
trigger_rule = "all\rsuccess"
retry_backoff = "linear\u2028x"
"k\n" = 1
[tasks."e\u0085"]
operator = "command"
command = "{{ tasks.c\u2029.output }}"
env = { "v\nw" = "{{ dss }}" }
[tasks.f]
operator = "add_steps"
cluster_id = "j"
steps = [{ name = "s\nt" }]
schedule_interval = 1
"#;
    let lines = displayed("x.toml", src);
    for text in [
        "key `id`: `d\\u{7}g` holds '\\u{7}'",
        "unknown key `x\\ty` in the DAG",
        "unknown key `r\\0` in [defaults]",
        "unknown operator `nope\\nx`",
        "unknown sensor kind `s3\\nkey`",
        "`depends_on` names `q\\nz`, which is not a task",
        "`depends_on` names `a` twice",
        "unknown trigger rule `all\\rsuccess`",
        "unknown retry_backoff `linear\\u{2028}x`",
        "unknown key `k\\n` in a `noop` task",
        "task `e\\u{85}`: invalid task id",
        "key `env.v\\nw`: unknown template variable `dss`",
        "step `s\\nt` has no `args`",
    ] {
        has(&lines, text);
    }
}

#[test]
fn a_file_name_holding_a_newline_keeps_its_diagnostics_on_one_line() {
    let lines = displayed("we\nird.toml", "[tasks.a]\noperator = \"noop\"\nfoo = 1\n");
    assert!(lines.iter().all(|l| l.starts_with("we\\nird.toml:")), "{lines:?}");
    has(&lines, "the file name gives the DAG id `we\\nird`");
}

#[test]
fn a_diagnostic_displays_on_one_line_whatever_its_fields_hold() {
    let d = Diagnostic {
        severity: Severity::Error,
        file: PathBuf::from("dir\r\n/x.toml"),
        line: Some(3),
        column: Some(2),
        task: Some("t\n`u`".into()),
        message: "first\nsecond\u{2028}third\u{1b}[31m".into(),
    };
    assert_eq!(
        d.to_string(),
        "dir\\r\\n/x.toml:3:2: error: task `t\\n\\`u\\``: first\\nsecond\\u{2028}third\\u{1b}[31m"
    );
}

#[test]
fn toml_syntax_errors_stay_on_one_line() {
    for src in ["[tasks.\"a\nb\"]\noperator = \"noop\"\n", "a = \"x\ny\"\n", "a = [1,\n", "= 1\n", "a = 'x\u{0}y'\n"] {
        let lines = displayed("s.toml", src);
        assert!(lines.iter().any(|l| l.contains("TOML syntax")), "{lines:?}");
    }
}

#[test]
fn a_duplicate_dag_id_from_a_path_holding_a_newline_is_reported_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // The first file, in path order, keeps the id; the second's message names the first.
    let sub = dir.path().join("a\ndir");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("a.toml"), "id = \"same\"\n[tasks.a]\noperator = \"noop\"\n").unwrap();
    std::fs::write(dir.path().join("b.toml"), "id = \"same\"\n[tasks.a]\noperator = \"noop\"\n").unwrap();
    let folder = load_folder(dir.path()).unwrap();
    let all: Vec<String> = folder.diagnostics().map(Diagnostic::to_string).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(!all[0].contains('\n') && all[0].contains("a\\ndir"), "{all:?}");
    let b = folder.files.iter().find(|f| f.path.ends_with("b.toml")).unwrap();
    assert!(!b.diagnostics[0].message.contains('\n'), "{:?}", b.diagnostics[0].message);
}
