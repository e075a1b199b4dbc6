//! `dagctl show DAG`: the graph, as text, Graphviz DOT or JSON.

use std::path::Path;

use anyhow::Result;
use sluice_dag::Dag;

use crate::exit;

/// Show a DAG's tasks in topological order with their upstreams and operators.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// Print Graphviz DOT.
    #[arg(long, conflicts_with = "json")]
    dot: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(dags: &Path, args: Args) -> Result<u8> {
    let folder = crate::output::folder(dags)?;
    let dag = sluice_scheduler::lookup::dag_in_folder(&folder, &args.dag)?;
    if args.dot {
        print!("{}", dot(dag));
    } else if args.json {
        crate::output::json(dag)?;
    } else {
        text(dag);
    }
    Ok(exit::OK)
}

fn text(dag: &Dag) {
    println!("{}  ({})", dag.id, dag.file.display());
    if let Some(d) = &dag.description {
        println!("  {d}");
    }
    let schedule =
        dag.schedule.as_ref().map_or("manual runs only".to_string(), |s| format!("{} in {}", s.expr(), dag.timezone));
    println!("  schedule: {schedule}");
    if let Some(d) = dag.deadline {
        println!("  deadline: {d}");
    }
    println!();
    let rows: Vec<Vec<String>> = dag
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.operator.kind().to_string(),
                t.trigger_rule.to_string(),
                if t.depends_on.is_empty() { "-".into() } else { t.depends_on.join(", ") },
            ]
        })
        .collect();
    crate::output::table(&["TASK", "OPERATOR", "TRIGGER RULE", "UPSTREAM"], &rows);
}

/// Graphviz DOT, tasks labelled with their operator.
pub fn dot(dag: &Dag) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let q = |s: &str| format!("\"{}\"", esc(s));
    let mut out = format!("digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n", q(&dag.id));
    for t in &dag.tasks {
        out.push_str(&format!("  {} [label=\"{}\\n{}\"];\n", q(&t.id), esc(&t.id), t.operator.kind()));
    }
    for t in &dag.tasks {
        for up in &t.depends_on {
            out.push_str(&format!("  {} -> {};\n", q(up), q(&t.id)));
        }
    }
    out.push_str("}\n");
    out
}
