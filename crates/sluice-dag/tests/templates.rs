//! Rendering every template variable for a real DAG run.

use std::path::Path;

use serde_json::{json, Map, Value};
use sluice_dag::operators::Operator;
use sluice_dag::schedule::parse_instant;
use sluice_dag::{parse_dag, run_id, RenderError};

const SRC: &str = r#"
schedule = "0 5 * * *"
timezone = "Europe/London"
start_date = "2026-01-01"

[params]
bucket = "car-rentals-data"
env = "prod"

[tasks.probe]
operator = "command"
command = "echo 42"

[tasks.everything]
operator = "command"
depends_on = ["probe"]
command = """
ds={{ ds }}
ds_nodash={{ ds_nodash }}
ts={{ ts }}
ts_nodash={{ ts_nodash }}
logical_date={{ logical_date }}
data_interval_start={{ data_interval_start }}
data_interval_end={{ data_interval_end }}
run_id={{ run_id }}
dag_id={{ dag_id }}
task_id={{ task_id }}
bucket={{ params.bucket }}
env={{ params.env }}
upstream={{ tasks.probe.output }}
yesterday={{ ds_add(ds, -1) }}"""
env = { OUT = "s3://{{ params.bucket }}/processed/{{ ds }}/" }
"#;

fn rendered_command(
    conf: Option<Map<String, Value>>,
    upstream: Option<&str>,
) -> Result<(Value, Operator), RenderError> {
    let dag = parse_dag(Path::new("render_all.toml"), SRC).dag.expect("valid");
    // The run that fires on 2026-03-02 at 05:00 London time.
    let fire = parse_instant("2026-03-02T05:00", dag.timezone).unwrap();
    let dates = dag.runs_firing_after(fire - chrono::Duration::minutes(1)).next().unwrap();
    let task = dag.task("everything").unwrap();
    let mut ctx = dag.template_context(&task.id, &run_id("scheduled", &dates), &dates, conf.as_ref());
    if let Some(out) = upstream {
        ctx.tasks.insert("probe".into(), [("output".to_string(), json!(out))].into_iter().collect());
    }
    dag.render_task(task, &ctx)
}

#[test]
fn every_variable_renders_with_airflow_meaning() {
    let (keys, op) = rendered_command(None, Some("42")).unwrap();
    let Operator::Command(cmd) = op else { panic!("not a command") };
    let expected = "\
ds=2026-03-01
ds_nodash=20260301
ts=2026-03-01T05:00:00+00:00
ts_nodash=20260301T050000
logical_date=2026-03-01T05:00:00+00:00
data_interval_start=2026-03-01T05:00:00+00:00
data_interval_end=2026-03-02T05:00:00+00:00
run_id=scheduled__2026-03-01T05:00:00+00:00
dag_id=render_all
task_id=everything
bucket=car-rentals-data
env=prod
upstream=42
yesterday=2026-02-28";
    assert_eq!(cmd.command, expected);
    assert_eq!(keys["env"]["OUT"], "s3://car-rentals-data/processed/2026-03-01/");
}

#[test]
fn conf_overrides_params_for_one_run() {
    let conf = json!({"bucket": "backfill-bucket"}).as_object().cloned();
    let (_, op) = rendered_command(conf, Some("42")).unwrap();
    let Operator::Command(cmd) = op else { panic!("not a command") };
    assert!(cmd.command.contains("bucket=backfill-bucket"));
    assert!(cmd.command.contains("env=prod"));
}

#[test]
fn a_missing_upstream_output_is_an_error_not_an_empty_string() {
    let err = rendered_command(None, None).unwrap_err();
    assert!(matches!(err, RenderError::Undefined(_)), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("key `command`"), "{err}");
    assert!(err.contains("undefined"), "{err}");
}

/// Only a missing name is `Undefined` (the scheduler skips a task whose upstream produced no
/// outputs); a template that fails for another reason is a plain error, whatever its text says.
#[test]
fn a_template_that_fails_otherwise_is_not_taken_for_a_missing_name() {
    let src = "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\n[params]\nundefined = \"x\"\n[tasks.a]\noperator = \"command\"\ncommand = \"{{ ds_add(params.undefined, 1) }}\"\n";
    let dag = parse_dag(Path::new("fails.toml"), src).dag.expect("valid");
    let fire = parse_instant("2026-03-02T05:00", dag.timezone).unwrap();
    let dates = dag.runs_firing_after(fire).next().unwrap();
    let ctx = dag.template_context("a", &run_id("scheduled", &dates), &dates, None);
    let err = dag.render_task(&dag.tasks[0], &ctx).unwrap_err();
    assert!(matches!(err, RenderError::Other(_)), "{err:?}");
    assert!(err.to_string().contains("key `command`"), "{err}");
}

/// The parser records which tasks read upstream outputs, so the scheduler reads a run's
/// outputs only for those: a template naming `tasks.<id>.<field>`, in a key or in the SQL of a
/// `query_file`.
#[test]
fn tasks_that_read_upstream_outputs_are_marked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("q.sql"), "SELECT '{{ tasks.probe.output }}'").unwrap();
    let src = r#"
[tasks.probe]
operator = "command"
command = "echo 42 tasks"

[tasks.plain]
operator = "command"
depends_on = ["probe"]
command = "echo {{ ds }} tasks"

[tasks.reader]
operator = "command"
depends_on = ["probe"]
command = "echo {{ tasks.probe.output }}"

[tasks.query]
operator = "athena"
depends_on = ["probe"]
query_file = "q.sql"
database = "db"
output_location = "s3://bucket/results/"
"#;
    let dag = parse_dag(&dir.path().join("reads.toml"), src).dag.expect("valid");
    let reads: Vec<(&str, bool)> = dag.tasks.iter().map(|t| (t.id.as_str(), t.reads_outputs)).collect();
    assert!(reads.contains(&("probe", false)), "{reads:?}");
    assert!(reads.contains(&("plain", false)), "{reads:?}");
    assert!(reads.contains(&("reader", true)), "{reads:?}");
    assert!(reads.contains(&("query", true)), "{reads:?}");
}

/// A task without template syntax renders to its operator as parsed, so a try of it skips
/// building a template context; any template, in any key or nested value, or a `query_file`,
/// makes it rendered.
#[test]
fn a_task_without_templates_is_static_and_renders_to_its_parsed_operator() {
    let src = r#"
schedule = "0 5 * * *"
start_date = "2026-01-01"

[tasks.nothing]
operator = "noop"

[tasks.plain]
operator = "command"
command = "echo { not a template }"
env = { A = "1" }

[tasks.templated]
operator = "command"
command = "echo {{ ds }}"

[tasks.nested]
operator = "command"
command = "echo"
env = { DAY = "{{ ds }}" }

[tasks.commented]
operator = "command"
command = "echo {# a note #}"

[tasks.from_file]
operator = "athena"
query_file = "plain.sql"
database = "db"
output_location = "s3://b/r/"
"#;
    // The query file holds no template either: it is read (and rendered) at each try all the same.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain.sql"), "SELECT 1").unwrap();
    let dag = parse_dag(&dir.path().join("static.toml"), src).dag.expect("valid");
    let verdict: Vec<(&str, bool)> = dag.tasks.iter().map(|t| (t.id.as_str(), t.is_static())).collect();
    assert_eq!(
        verdict,
        [
            ("nothing", true),
            ("plain", true),
            ("templated", false),
            ("nested", false),
            ("commented", false),
            ("from_file", false)
        ]
    );
    let dates = dag.run_dates(parse_instant("2026-03-01", dag.timezone).unwrap());
    for task in dag.tasks.iter().filter(|t| t.is_static()) {
        let ctx = dag.template_context(&task.id, &run_id("manual", &dates), &dates, None);
        let (_, rendered) = dag.render_task(task, &ctx).unwrap();
        assert_eq!(rendered, task.operator, "{}", task.id);
    }
}
