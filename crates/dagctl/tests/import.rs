//! `dagctl import asl` as a user runs it: the real binary on state machine files, its exit
//! codes, what it writes (and that it writes nothing on a rejection), and that what it writes
//! passes `dagctl validate`. Then the three pipeline-shaped machines imported and run to
//! success by the daemon against moto (the AWS API emulator), with the checks of the shipped
//! pipelines: one cluster, each step submitted once, the cluster terminated; and a fourth with
//! Lambda invocations and a Glue job.
//!
//! The end-to-end test needs the project venv with moto (see tests/tooling/README.md).

#[path = "../../sluice-aws/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_emr::types::{ClusterState, StepState};
use serde_json::Value;

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
        ["[unresolved-jsonpath]", "[map-state]", "[choice-not-polling-loop]", "[dynamic-path]", "[intrinsic-function]"]
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

/// The folder of a scheduler whose AWS calls all go to `endpoint`.
fn world(endpoint: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dags")).unwrap();
    let toml = format!(
        "db = \"sluice.db\"\ndags = \"dags\"\nlogs = \"logs\"\nmax_poke_interval = \"1s\"\ngrace_period = \"2s\"\n\
         [connections.default]\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n"
    );
    std::fs::write(dir.path().join("sluice.toml"), toml).unwrap();
    dir
}

/// `dagctl` in `dir`, with the emulator's credentials and nothing of the caller's AWS setup.
fn in_world(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dagctl"));
    c.args(args)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", support::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", support::SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SLUICE_API_BIND", "127.0.0.1:0");
    for v in
        ["SLUICE_DAGS", "SLUICE_DB", "SLUICE_LOGS", "SLUICE_CONFIG", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"]
    {
        c.env_remove(v);
    }
    c
}

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(support::REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            support::ACCESS_KEY_ID,
            support::SECRET_ACCESS_KEY,
            None,
            None,
            "tests",
        ))
        .load()
        .await
}

async fn create_crawler(glue: &aws_sdk_glue::Client, name: &str) {
    glue.create_crawler()
        .name(name)
        .role("AWSGlueServiceRole-car-rental")
        .database_name("car_rental")
        .targets(
            aws_sdk_glue::types::CrawlerTargets::builder()
                .s3_targets(aws_sdk_glue::types::S3Target::builder().path("s3://car-rentals-data/processed/").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// An emulator with the bucket and the crawlers the machines start (`startCrawler` takes only
/// the name of a crawler that exists).
async fn emulator(crawlers: &[&str]) -> (support::Moto, aws_config::SdkConfig) {
    let moto = support::Moto::start();
    let conf = sdk(&moto.endpoint).await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build());
    s3.create_bucket().bucket("car-rentals-data").send().await.unwrap();
    let glue = aws_sdk_glue::Client::new(&conf);
    for c in crawlers {
        create_crawler(&glue, c).await;
    }
    (moto, conf)
}

/// Imports `machine` (JSON text) as DAG `id`, runs it for 2026-03-01 with `run_conf` through
/// the daemon, and returns the run's tasks once it has ended, and the folder.
fn import_and_run(moto: &support::Moto, machine: &str, id: &str, run_conf: &str) -> (Value, tempfile::TempDir) {
    let dir = world(&moto.endpoint);
    let file = dir.path().join("machine.asl.json");
    std::fs::write(&file, machine).unwrap();
    let imported = in_world(dir.path(), &["import", "asl", file.to_str().unwrap(), "--id", id]).output().unwrap();
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = in_world(dir.path(), &["scheduler"]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let trigger = in_world(dir.path(), &["trigger", id, "--date", "2026-03-01", "--conf", run_conf]).output().unwrap();
    assert!(trigger.status.success(), "{}", text(&trigger));
    // Wait for the run's end: the event itself, with a generous safety limit.
    let limit = Instant::now() + Duration::from_secs(240);
    let tasks = loop {
        let out = in_world(dir.path(), &["tasks", id, "--date", "2026-03-01", "--json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v["run"]["state"] == "success" || v["run"]["state"] == "failed" {
            break v;
        }
        if Instant::now() > limit {
            let _ = daemon.kill();
            let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
            panic!("the run did not end: {v}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    (tasks, dir)
}

fn state_of(tasks: &Value, id: &str) -> String {
    tasks["tasks"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["task_id"] == id))
        .map(|t| t["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no task {id} in {tasks}"))
}

/// The checks of the shipped EMR pipelines: one cluster of the DAG, terminated, with each
/// job's step submitted once and completed; the crawl done; the query run once, for the day.
async fn check_emr_run(conf: &aws_config::SdkConfig, dag: &str, tasks: &Value) {
    for id in [
        "create_cluster",
        "vehicle_location_metrics",
        "user_transaction_metrics",
        "crawl_processed",
        "terminate_cluster",
        "top_revenue_locations",
    ] {
        assert_eq!(state_of(tasks, id), "success", "{id}: {tasks}");
    }
    // The failure path was not taken.
    assert_eq!(state_of(tasks, "terminate_cluster_on_failure"), "skipped", "{tasks}");
    assert_eq!(state_of(tasks, "pipeline_failed"), "skipped", "{tasks}");
    let emr = aws_sdk_emr::Client::new(conf);
    let mut ours = Vec::new();
    for c in emr.list_clusters().send().await.unwrap().clusters() {
        let id = c.id().unwrap().to_string();
        let d = emr.describe_cluster().cluster_id(&id).send().await.unwrap();
        let cluster = d.cluster().unwrap();
        if cluster.tags().iter().any(|t| t.key() == Some("sluice:dag") && t.value() == Some(dag)) {
            assert_eq!(cluster.name(), Some("car-rental-2026-03-01"), "the name templated from the input");
            let steps = emr.list_steps().cluster_id(&id).send().await.unwrap();
            let steps: Vec<(String, StepState)> = steps
                .steps()
                .iter()
                .map(|s| (s.name().unwrap().to_string(), s.status().unwrap().state().unwrap().clone()))
                .collect();
            ours.push((cluster.status().unwrap().state().unwrap().clone(), steps));
        }
    }
    assert_eq!(ours.len(), 1, "exactly one cluster: {ours:?}");
    let (state, steps) = &ours[0];
    assert_eq!(*state, ClusterState::Terminated);
    assert_eq!(steps.len(), 2, "each step submitted once: {steps:?}");
    assert!(steps.iter().all(|(_, s)| *s == StepState::Completed), "{steps:?}");
    for job in ["vehicle_location_metrics", "user_transaction_metrics"] {
        assert_eq!(steps.iter().filter(|(n, _)| n.starts_with(job)).count(), 1, "{job} once: {steps:?}");
    }
    let glue = aws_sdk_glue::Client::new(conf);
    let crawler = glue.get_crawler().name("car-rental-processed").send().await.unwrap();
    assert_eq!(crawler.crawler().unwrap().state().unwrap().as_str(), "READY");
    check_one_query(conf).await;
}

async fn check_one_query(conf: &aws_config::SdkConfig) {
    let athena = aws_sdk_athena::Client::new(conf);
    let queries = athena.list_query_executions().send().await.unwrap();
    assert_eq!(queries.query_execution_ids().len(), 1, "the query, once");
    let q = athena.get_query_execution().query_execution_id(&queries.query_execution_ids()[0]).send().await.unwrap();
    let q = q.query_execution().unwrap();
    assert!(q.query().unwrap_or_default().contains("ds = '2026-03-01'"), "{q:?}");
}

const EMR_CONF: &str = r#"{"bucket": "car-rentals-data", "date": "2026-03-01"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_imported_emr_pipeline_runs_to_success_through_the_daemon_on_the_emulator() {
    let (moto, conf) = emulator(&["car-rental-processed"]).await;
    let machine = std::fs::read_to_string(golden("pipeline-emr")).unwrap();
    let (tasks, _dir) = import_and_run(&moto, &machine, "car_rental_asl", EMR_CONF);
    assert_eq!(tasks["run"]["state"], "success", "{tasks}");
    check_emr_run(&conf, "car_rental_asl", &tasks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_imported_emr_pipeline_with_waits_runs_to_success_on_the_emulator() {
    let (moto, conf) = emulator(&["car-rental-processed"]).await;
    // The machine's pauses are minutes long; the same machine with one-second pauses.
    let machine = std::fs::read_to_string(golden("pipeline-emr-waits")).unwrap();
    let machine = machine.replace("\"Seconds\": 120", "\"Seconds\": 1").replace("\"Seconds\": 60", "\"Seconds\": 1");
    let (tasks, _dir) = import_and_run(&moto, &machine, "car_rental_asl_waits", EMR_CONF);
    assert_eq!(tasks["run"]["state"], "success", "{tasks}");
    for pause in ["pause_before_crawl", "pause_before_query"] {
        assert_eq!(state_of(&tasks, pause), "success", "{tasks}");
    }
    check_emr_run(&conf, "car_rental_asl_waits", &tasks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_imported_serverless_pipeline_runs_both_branches_then_the_summary_on_the_emulator() {
    let crawlers = ["car-rental-vehicle_location_metrics", "car-rental-user_transaction_metrics"];
    let (moto, conf) = emulator(&crawlers).await;
    let serverless = aws_sdk_emrserverless::Client::new(&conf);
    let app = serverless
        .create_application()
        .name("car-rental")
        .release_label("emr-7.2.0")
        .r#type("SPARK")
        .send()
        .await
        .unwrap();
    let run_conf = format!(
        r#"{{"bucket": "car-rentals-data", "date": "2026-03-01", "application_id": "{}", "execution_role_arn": "arn:aws:iam::123456789012:role/emr-serverless-job"}}"#,
        app.application_id()
    );
    let machine = std::fs::read_to_string(golden("pipeline-serverless")).unwrap();
    let (tasks, _dir) = import_and_run(&moto, &machine, "car_rental_asl_serverless", &run_conf);
    assert_eq!(tasks["run"]["state"], "success", "{tasks}");
    for id in [
        "run_vehicle_location_metrics",
        "crawl_vehicle_location_metrics",
        "run_user_transaction_metrics",
        "crawl_user_transaction_metrics",
        "daily_summary",
    ] {
        assert_eq!(state_of(&tasks, id), "success", "{id}: {tasks}");
    }
    let runs = serverless.list_job_runs().application_id(app.application_id()).send().await.unwrap();
    assert_eq!(runs.job_runs().len(), 2, "one job run per branch");
    assert!(runs.job_runs().iter().all(|r| r.state().as_str() == "SUCCESS"));
    let glue = aws_sdk_glue::Client::new(&conf);
    for c in crawlers {
        let crawler = glue.get_crawler().name(c).send().await.unwrap();
        assert_eq!(crawler.crawler().unwrap().state().unwrap().as_str(), "READY");
    }
    check_one_query(&conf).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_of_the_imported_pipeline_takes_the_catch_path_and_the_cluster_is_terminated() {
    let (moto, conf) = emulator(&["car-rental-processed"]).await;
    // The emulator fails a step whose arguments carry its failure marker.
    let machine = std::fs::read_to_string(golden("pipeline-emr")).unwrap();
    let machine =
        machine.replace("scripts/user_transaction_metrics.py", "scripts/user_transaction_metrics.py\", \"SLUICE_FAIL");
    let (tasks, dir) = import_and_run(&moto, &machine, "car_rental_asl_failing", EMR_CONF);
    assert_eq!(tasks["run"]["state"], "failed", "{tasks}");
    for (id, state) in [
        ("create_cluster", "success"),
        ("vehicle_location_metrics", "success"),
        ("user_transaction_metrics", "failed"),
        ("crawl_processed", "upstream_failed"),
        // Both teardowns: the normal path's (all_done) and the Catch handler.
        ("terminate_cluster", "success"),
        ("terminate_cluster_on_failure", "success"),
        ("top_revenue_locations", "upstream_failed"),
        // The Fail state, with its Error and Cause.
        ("pipeline_failed", "failed"),
    ] {
        assert_eq!(state_of(&tasks, id), state, "{id}: {tasks}");
    }
    let log = in_world(dir.path(), &["logs", "car_rental_asl_failing", "pipeline_failed", "--date", "2026-03-01"])
        .output()
        .unwrap();
    assert!(text(&log).contains("Error: PipelineFailed"), "{}", text(&log));
    assert!(text(&log).contains("Cause: A stage of the EMR pipeline failed"), "{}", text(&log));
    let emr = aws_sdk_emr::Client::new(&conf);
    let clusters = emr.list_clusters().send().await.unwrap();
    let mut ours = 0;
    for c in clusters.clusters() {
        let d = emr.describe_cluster().cluster_id(c.id().unwrap()).send().await.unwrap();
        let cluster = d.cluster().unwrap();
        if cluster.tags().iter().any(|t| t.value() == Some("car_rental_asl_failing")) {
            ours += 1;
            assert_eq!(cluster.status().unwrap().state(), Some(&ClusterState::Terminated));
        }
    }
    assert_eq!(ours, 1, "one cluster, terminated");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_imported_glue_and_lambda_pipeline_runs_to_success_through_the_daemon_on_the_emulator() {
    let (moto, conf) = emulator(&[]).await;
    let role = moto.iam_role("sales-functions");
    let lambda = aws_sdk_lambda::Client::new(&conf);
    for f in ["prepare-day", "report-sales"] {
        lambda
            .create_function()
            .function_name(f)
            .runtime(aws_sdk_lambda::types::Runtime::Python312)
            .role(&role)
            .handler("handler.main")
            .code(aws_sdk_lambda::types::FunctionCode::builder().zip_file(b"not run".to_vec().into()).build())
            .send()
            .await
            .unwrap();
    }
    let glue = aws_sdk_glue::Client::new(&conf);
    let command = aws_sdk_glue::types::JobCommand::builder()
        .name("glueetl")
        .script_location("s3://car-rentals-data/load.py")
        .build();
    glue.create_job().name("load-sales").role("AWSGlueServiceRole-car-rental").command(command).send().await.unwrap();

    let machine = std::fs::read_to_string(golden("pipeline-glue-lambda")).unwrap();
    let (tasks, _dir) = import_and_run(&moto, &machine, "daily_sales_asl", EMR_CONF);
    assert_eq!(tasks["run"]["state"], "success", "{tasks}");
    for id in ["prepare_day", "load_sales", "count_sales", "report"] {
        assert_eq!(state_of(&tasks, id), "success", "{id}: {tasks}");
    }
    assert_eq!(state_of(&tasks, "load_failed"), "skipped", "{tasks}");

    // The Glue job ran once, with the arguments the first Lambda answered (moto's Lambda
    // answers with the event it was sent).
    let runs = glue.get_job_runs().job_name("load-sales").send().await.unwrap();
    assert_eq!(runs.job_runs().len(), 1, "one job run");
    let run = &runs.job_runs()[0];
    assert_eq!(run.job_run_state().map(|s| s.as_str()), Some("SUCCEEDED"));
    let args = run.arguments().unwrap();
    assert_eq!(args["--day"], "2026-03-01");
    assert_eq!(args["--input"], "s3://car-rentals-data/raw/2026-03-01/");
    assert_eq!(run.worker_type().map(|w| w.as_str()), Some("G.1X"));
    check_one_query(&conf).await;

    // The report function got the job run id and the query id of this run (its answer, the
    // same event, is recorded with its try).
    let report = tasks["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == "report").unwrap();
    let payload = &report["tries"][0]["external_ids"]["payload"];
    assert_eq!(payload["day"], "2026-03-01", "{report}");
    assert_eq!(payload["job_run"], run.id().unwrap(), "{report}");
    assert!(payload["query"].as_str().is_some_and(|q| !q.is_empty()), "{report}");
}
