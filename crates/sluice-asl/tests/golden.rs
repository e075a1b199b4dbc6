//! Golden tests: every `tests/golden/<name>.asl.json` is converted and compared with
//! `<name>.toml` (the DAG) and `<name>.report.txt` (the report). `SLUICE_BLESS=1` rewrites
//! them; review each change by eye.
//!
//! Names say what a file must show: `reject-<code>` has a rejection with that code,
//! `approx-<code>` an approximation with that code and no rejection; every other file is
//! carried over without a rejection. Every DAG without a rejection is parsed and validated
//! with `sluice_dag::parse_dag`, the parser of `dagctl validate`.

use std::path::{Path, PathBuf};

use sluice_asl::{codes, convert, Level, Options};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn machines() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(golden_dir())
        .expect("the golden folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_suffix(".asl.json").map(|n| (n.to_string(), e.path()))
        })
        .collect();
    out.sort();
    out
}

fn compare(path: &Path, actual: &str, bless: bool, failures: &mut Vec<String>) {
    if bless {
        std::fs::write(path, actual).expect("write the golden file");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs (SLUICE_BLESS=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => failures.push(format!("{} is missing (SLUICE_BLESS=1 writes it)", path.display())),
    }
}

#[test]
fn every_golden_machine_converts_to_its_dag_and_report() {
    let bless = std::env::var("SLUICE_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let all = machines();
    assert!(all.len() >= 20, "the golden machines are there");
    for (name, path) in &all {
        let src = std::fs::read_to_string(path).expect("read the machine");
        let opts = Options { source: format!("{name}.asl.json"), ..Options::default() };
        let conv = convert(&src, &opts);
        let report = conv.report.to_string();
        compare(&golden_dir().join(format!("{name}.toml")), &conv.toml, bless, &mut failures);
        compare(&golden_dir().join(format!("{name}.report.txt")), &report, bless, &mut failures);
        let rejected: Vec<&str> =
            conv.report.items.iter().filter(|i| i.level == Level::Rejected).map(|i| i.code).collect();
        let approximated: Vec<&str> =
            conv.report.items.iter().filter(|i| i.level == Level::Approximated).map(|i| i.code).collect();
        if let Some(code) = name.strip_prefix("reject-") {
            let code = code.split('.').next().unwrap_or(code);
            if !rejected.contains(&code) {
                failures.push(format!("{name}: no `{code}` rejection in\n{report}"));
            }
            continue;
        }
        if !rejected.is_empty() {
            failures.push(format!("{name}: unexpected rejections in\n{report}"));
        }
        if let Some(code) = name.strip_prefix("approx-") {
            let code = code.split('.').next().unwrap_or(code);
            if !approximated.contains(&code) {
                failures.push(format!("{name}: no `{code}` approximation in\n{report}"));
            }
        }
        // Validate by construction: what `dagctl validate` would say of the written file.
        let parsed = sluice_dag::parse_dag(Path::new(&format!("{}.toml", conv.dag_id)), &conv.toml);
        let errors: Vec<String> = parsed.diagnostics.iter().filter(|d| d.is_error()).map(ToString::to_string).collect();
        if !errors.is_empty() || parsed.dag.is_none() {
            failures.push(format!("{name}: the DAG does not validate: {errors:?}\n{}", conv.toml));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_code_has_a_golden_machine() {
    let names: Vec<String> = machines().into_iter().map(|(n, _)| n).collect();
    for (code, rejection, _) in codes::ALL {
        let prefix = if *rejection { "reject-" } else { "approx-" };
        let wanted = format!("{prefix}{code}");
        assert!(
            names.iter().any(|n| n == &wanted || n.starts_with(&format!("{wanted}."))),
            "no golden machine {wanted}.asl.json"
        );
    }
}

#[test]
fn every_code_is_documented_in_the_migration_guide() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/migrating-from-step-functions.md");
    let guide = std::fs::read_to_string(guide).expect("the migration guide");
    for (code, rejection, _) in codes::ALL {
        let kind = if *rejection { "rejected" } else { "approximated" };
        assert!(guide.contains(&format!("| `{code}` | {kind} |")), "`{code}` ({kind}) in the guide's table of codes");
    }
}
