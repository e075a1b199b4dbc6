//! Validation of very large files: correct, and linear in tasks plus edges (the unit tests in
//! `src/parse.rs` count the graph steps; `measure_validation_of_large_files` times it).

use std::path::Path;
use std::time::Instant;

use sluice_dag::{parse_dag, Dag};

const N: usize = 20_000;

/// `t0 -> t1 -> ... -> t(n-1)`.
fn chain(n: usize) -> String {
    let mut src = String::from("description = \"a long chain\"\n");
    for i in 0..n {
        src.push_str(&format!("[tasks.t{i}]\noperator = \"noop\"\n"));
        if i > 0 {
            src.push_str(&format!("depends_on = [\"t{}\"]\n", i - 1));
        }
    }
    src
}

/// `root` with `n` downstream tasks, all joined by `end`.
fn fan(n: usize) -> String {
    let mut src = String::from("[tasks.root]\noperator = \"command\"\ncommand = \"echo 1\"\n");
    for i in 0..n {
        src.push_str(&format!("[tasks.t{i}]\noperator = \"noop\"\ndepends_on = [\"root\"]\n"));
    }
    let all: Vec<String> = (0..n).map(|i| format!("\"t{i}\"")).collect();
    src.push_str(&format!(
        "[tasks.end]\noperator = \"command\"\ncommand = \"echo {{{{ tasks.root.output }}}}\"\ndepends_on = [{}]\n",
        all.join(", ")
    ));
    src
}

fn valid(name: &str, src: &str) -> Dag {
    let outcome = parse_dag(Path::new(name), src);
    assert!(outcome.diagnostics.is_empty(), "{:?}", &outcome.diagnostics[..outcome.diagnostics.len().min(3)]);
    outcome.dag.expect("valid")
}

#[test]
fn a_20000_task_chain_validates_in_order() {
    let dag = valid("chain.toml", &chain(N));
    assert_eq!(dag.tasks.len(), N);
    for (i, t) in dag.tasks.iter().enumerate() {
        assert_eq!(t.id, format!("t{i}"));
        assert_eq!(t.downstream, if i + 1 < N { vec![format!("t{}", i + 1)] } else { Vec::<String>::new() });
    }
    let (ups, downs) = dag.adjacency();
    assert_eq!(ups[N - 1], vec![N - 2]);
    assert_eq!(downs[0], vec![1]);
}

#[test]
fn a_20000_task_fan_validates_with_every_edge() {
    let dag = valid("fan.toml", &fan(N));
    assert_eq!(dag.tasks.len(), N + 2);
    assert_eq!(dag.tasks[0].id, "root");
    assert_eq!(dag.tasks[0].downstream.len(), N);
    let end = dag.task("end").unwrap();
    assert_eq!(end.depends_on.len(), N);
    assert!(end.reads_outputs);
    assert_eq!(dag.tasks.last().unwrap().id, "end");
    let (ups, downs) = dag.adjacency();
    assert_eq!(ups[N + 1].len(), N);
    assert_eq!(downs[0].len(), N);
    assert_eq!(dag.ancestors("end").len(), N + 1);
}

#[test]
fn suggestions_among_a_files_own_names_stop_after_the_first_twenty() {
    // 300 tasks that each depend on a misspelling of the one before.
    let mut src = String::new();
    for i in 0..300 {
        src.push_str(&format!("[tasks.task_{i}]\noperator = \"noop\"\n"));
        if i > 0 {
            src.push_str(&format!("depends_on = [\"tsak_{}\"]\n", i - 1));
        }
    }
    let outcome = parse_dag(Path::new("typos.toml"), &src);
    let errors: Vec<&str> = outcome.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.message.as_str()).collect();
    assert_eq!(errors.len(), 299);
    assert!(errors[0].contains("(did you mean `task_0`?)"), "{}", errors[0]);
    assert_eq!(errors.iter().filter(|m| m.contains("did you mean")).count(), 20);
    assert!(!errors[20].contains("did you mean"), "{}", errors[20]);
}

/// `cargo test --release -p sluice-dag --test scale -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run it in release"]
fn measure_validation_of_large_files() {
    for (name, src) in [("chain.toml", chain(N)), ("fan.toml", fan(N))] {
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                valid(name, &src);
                t.elapsed()
            })
            .min()
            .unwrap();
        println!("{name}: {N} tasks, {} bytes, validated in {best:?} (best of 5)", src.len());
    }
}

#[test]
fn a_file_with_thousands_of_problems_keeps_the_first_thousand_and_counts_the_rest() {
    let mut src = String::from("[tasks.a]\noperator = \"noop\"\n");
    for i in 0..5000 {
        src.push_str(&format!("unknown_{i} = 1\n"));
    }
    let outcome = parse_dag(Path::new("many.toml"), &src);
    assert!(outcome.dag.is_none());
    assert_eq!(outcome.diagnostics.len(), 1001);
    assert_eq!(outcome.diagnostics[0].line, Some(3), "{}", outcome.diagnostics[0]);
    let last = outcome.diagnostics.last().unwrap();
    assert!(last.is_error());
    assert_eq!(
        last.to_string(),
        "many.toml: error: 4000 more problems (4000 errors, 0 warnings) not shown: a file reports its first 1000"
    );

    // Warnings only: the DAG stays valid, and the count is a warning.
    let many: Vec<String> = (0..1500).map(|_| "\"a\"".to_string()).collect();
    let src =
        format!("[tasks.a]\noperator = \"noop\"\n[tasks.b]\noperator = \"noop\"\ndepends_on = [{}]\n", many.join(", "));
    let outcome = parse_dag(Path::new("dup.toml"), &src);
    assert!(outcome.dag.is_some());
    assert_eq!(outcome.diagnostics.len(), 1001);
    let last = outcome.diagnostics.last().unwrap();
    assert!(!last.is_error());
    assert!(last.message.starts_with("499 more problems (0 errors, 499 warnings)"), "{}", last.message);
}
