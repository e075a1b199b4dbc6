//! The S3, Glue, Athena and EMR Serverless operators against moto (`support::Moto`), each
//! driven through the real engine (`Mode::SingleRun`) with a real SQLite store: sensors that
//! find what appears during their wait, sensor timeouts, a crawler created and run, queries
//! and job runs that succeed and fail with their reason, throttling waited out, re-attaching
//! to a query after a retry and after a restart, sensors resumed after a stop, tries cut off
//! with their remote work stopped, and tries without usable credentials failing at once.
//!
//! The tests share one process: none changes its environment. Credentials reach the SDK through
//! [`Clients::with_credentials`]; the test that needs an environment without any runs its body
//! in a child process.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use chrono::Utc;
use serde_json::json;
use sluice_aws::{AwsOperators, Clients};
use sluice_dag::{parse_dag, Dag, TaskState};
use sluice_scheduler::config::Connection;
use sluice_scheduler::engine::{Engine, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider, TaskOperator, TryContext, TryLog};
use sluice_scheduler::{runs, Config};
use sluice_store::{EventKind, EventQuery, Run, RunKind, RunState, SqliteStore, Start, Store, Try, TryOutcome};
use support::Moto;
use tokio::sync::{mpsc, watch};

/// One emulator for the tests that do not count requests or inject faults; every test uses
/// its own buckets, crawlers, workgroups and applications. Queries and crawls advance one state
/// every 0.3 s.
fn shared_moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start_with(&["--transition-seconds", "0.3"]))
}

/// What the tests sign with (moto accepts any key unless it checks credentials).
fn test_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        support::ACCESS_KEY_ID,
        support::SECRET_ACCESS_KEY,
        None,
        None,
        "tests",
    ))
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    config: Config,
    clients: Arc<Clients>,
}

async fn setup(moto: &Moto) -> Env {
    setup_at(&moto.endpoint, Some(test_credentials())).await
}

/// A store, a log folder and clients for the emulator at `endpoint`, signing with
/// `credentials` (`None`: the process's default chain, as in the scheduler).
async fn setup_at(endpoint: &str, credentials: Option<SharedCredentialsProvider>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("sluice.db").display().to_string()).await.unwrap());
    let connection = Connection {
        endpoint_url: Some(endpoint.to_string()),
        region: Some(support::REGION.into()),
        ..Default::default()
    };
    // Also a connection with a profile no config file defines, and one that assumes a role.
    let profile_gone = Connection { profile: Some("sluice-no-such-profile".into()), ..connection.clone() };
    let role =
        Connection { role_arn: Some(format!("arn:aws:iam::{}:role/etl", support::ACCOUNT_ID)), ..connection.clone() };
    let connections = BTreeMap::from([
        ("default".to_string(), connection),
        ("profile_gone".to_string(), profile_gone),
        ("role".to_string(), role),
    ]);
    let config = Config {
        logs: dir.path().join("logs"),
        dags: dir.path().join("dags"),
        connections: connections.clone(),
        ..Config::default()
    };
    let clients = match credentials {
        Some(c) => Clients::with_credentials(connections, c),
        None => Clients::new(connections),
    };
    Env { _dir: dir, store, config, clients: Arc::new(clients) }
}

fn dag(id: &str, src: &str) -> Dag {
    let outcome = parse_dag(Path::new(&format!("{id}.toml")), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

async fn create_run(env: &Env, dag: &Dag) -> Run {
    let dates = runs::manual_dates(dag, None, Utc::now());
    runs::create_run(env.store.as_ref(), dag, &dates, RunKind::Manual, None).await.unwrap().run().clone()
}

/// The providers of the engine, the AWS operators over the test's clients.
fn providers(env: &Env) -> Vec<Arc<dyn OperatorProvider>> {
    vec![Arc::new(LocalOperators), Arc::new(AwsOperators::with_clients(env.clients.clone()))]
}

/// Runs `run` to its end in-process (after resuming its interrupted tries, if any). The limit
/// is a safety net for a run that never ends, far above what any run here takes.
async fn drive(env: &Env, dag: &Dag, run: &Run) -> Run {
    let providers = providers(env);
    let mut engine = Engine::new(env.store.clone(), env.config.clone(), providers, Mode::SingleRun(run.id));
    engine.add_dag(dag.clone());
    engine.load_active_runs().await.unwrap();
    engine.recover().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    tokio::time::timeout(Duration::from_secs(180), engine.run(rx, rrx)).await.expect("run finishes").unwrap();
    env.store.run(run.id).await.unwrap().unwrap()
}

async fn run_dag(env: &Env, dag: &Dag) -> Run {
    let run = create_run(env, dag).await;
    drive(env, dag, &run).await
}

async fn state(env: &Env, run: &Run, task: &str) -> TaskState {
    env.store.task_instances(run.id).await.unwrap().into_iter().find(|t| t.task_id == task).unwrap().state
}

async fn tries(env: &Env, run: &Run, task: &str) -> Vec<Try> {
    env.store.tries(run.id, Some(task)).await.unwrap()
}

fn log(env: &Env, run: &Run, task: &str, try_number: u32) -> String {
    log_at(&env.config.logs, run, task, try_number)
}

fn log_at(logs: &Path, run: &Run, task: &str, try_number: u32) -> String {
    let path = sluice_scheduler::engine::log_path(logs, &run.dag_id, &run.run_id, task, try_number);
    std::fs::read_to_string(&path).unwrap_or_default()
}

/// Waits until the log of a task's first try says `text` (with a safety limit of 2 minutes).
async fn log_says(logs: &Path, run: &Run, task: &str, text: &str) {
    for _ in 0..1200 {
        if log_at(logs, run, task, 1).contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the log of {task} never said {text:?}:\n{}", log_at(logs, run, task, 1));
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    s3.put_object().bucket(bucket).key(key).body(b"x".to_vec().into()).send().await.unwrap();
}

async fn bucket(s3: &aws_sdk_s3::Client, name: &str) {
    s3.create_bucket().bucket(name).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_sensors_find_keys_and_patterns_written_during_their_wait() {
    let env = setup(shared_moto()).await;
    let s3 = env.clients.s3(None).await.unwrap();
    bucket(&s3, "landing-plain").await;
    let d = dag(
        "s3_found",
        "[tasks.plain]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"landing-plain\"\nkey = \"incoming/data.csv\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n\
         [tasks.pattern]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"landing-late\"\nkey = \"exports/*/part-?.csv\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n",
    );
    let run = create_run(&env, &d).await;
    let writer = {
        let (logs, run, s3) = (env.config.logs.clone(), run.clone(), s3.clone());
        tokio::spawn(async move {
            // Both sensors have poked and seen nothing (a missing key; a missing bucket).
            log_says(&logs, &run, "plain", "does not exist yet").await;
            log_says(&logs, &run, "pattern", "bucket landing-late does not exist yet").await;
            put(&s3, "landing-plain", "incoming/data.csv").await;
            bucket(&s3, "landing-late").await;
            // Near misses: two characters for `?`, another extension.
            put(&s3, "landing-late", "exports/2024/part-12.csv").await;
            put(&s3, "landing-late", "exports/2024/part-1.json").await;
            log_says(&logs, &run, "pattern", "no key matches").await;
            put(&s3, "landing-late", "exports/2024/03/part-7.csv").await;
        })
    };
    let run = drive(&env, &d, &run).await;
    writer.await.unwrap();
    assert_eq!(run.state, RunState::Success);
    assert!(log(&env, &run, "plain", 1).contains("found s3://landing-plain/incoming/data.csv"));
    // `*` crosses `/`; the near misses did not match.
    assert!(log(&env, &run, "pattern", 1).contains("found s3://landing-late/exports/2024/03/part-7.csv"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensor_that_times_out_fails_without_retry_or_is_skipped_with_soft_fail() {
    let env = setup(shared_moto()).await;
    let s3 = env.clients.s3(None).await.unwrap();
    bucket(&s3, "landing-empty").await;
    let d = dag(
        "s3_timeout",
        "[tasks.strict]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"landing-empty\"\nkey = \"never/there.csv\"\npoke_interval = \"200ms\"\ntimeout = \"1500ms\"\nretries = 2\nretry_delay = \"100ms\"\n\
         [tasks.soft]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"no-such-bucket\"\nkey = \"never/*.csv\"\npoke_interval = \"200ms\"\ntimeout = \"1500ms\"\nsoft_fail = true\n",
    );
    let run = run_dag(&env, &d).await;
    assert_eq!(state(&env, &run, "strict").await, TaskState::Failed);
    let strict = tries(&env, &run, "strict").await;
    assert_eq!(strict.len(), 1, "a sensor's timeout is not retried");
    assert!(strict[0].error.as_deref().unwrap_or_default().contains("timed out"), "{:?}", strict[0].error);
    // A missing bucket is waited for like a missing key (it would fail the task otherwise, and
    // `soft_fail` skips only a timeout). Whether a poke fit in the 1.5 s is the machine's
    // business, so no log line is asked for.
    assert_eq!(state(&env, &run, "soft").await, TaskState::Skipped);
    let soft = tries(&env, &run, "soft").await;
    assert_eq!(soft[0].error.as_deref(), Some("sensor timed out after 1s 500ms (soft_fail)"));
    assert_eq!(run.state, RunState::Failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crawler_is_created_run_and_awaited_and_a_failed_crawl_fails_the_task() {
    let env = setup(shared_moto()).await;
    let crawler = |id: &str, name: &str| {
        format!(
            "[tasks.{id}]\noperator = \"crawler\"\nname = \"{name}\"\nrole = \"arn:aws:iam::123456789012:role/glue\"\n\
             database = \"sales\"\ns3_targets = [\"s3://lake/sales/\", \"s3://lake/returns/\"]\ntable_prefix = \"raw_\"\n\
             description = \"the sales lake\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n"
        )
    };
    let src = format!(
        "{}{}\
         [tasks.crawled]\noperator = \"sensor\"\nkind = \"glue_crawler\"\nname = \"sales_crawler\"\ndepends_on = [\"crawl\"]\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n\
         [tasks.recrawl]\noperator = \"crawler\"\nname = \"sales_crawler\"\ndepends_on = [\"crawled\"]\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n",
        crawler("crawl", "sales_crawler"),
        crawler("broken", "broken_SLUICE_FAIL"),
    );
    let d = dag("crawl", &src);
    let run = run_dag(&env, &d).await;
    assert_eq!(state(&env, &run, "crawl").await, TaskState::Success);
    assert_eq!(state(&env, &run, "crawled").await, TaskState::Success);
    assert_eq!(state(&env, &run, "recrawl").await, TaskState::Success);
    assert!(log(&env, &run, "crawl", 1).contains("created crawler sales_crawler"));
    // The existing crawler is started again, and its *new* crawl awaited.
    assert!(log(&env, &run, "recrawl", 1).contains("started crawler sales_crawler"));
    let recorded = &tries(&env, &run, "recrawl").await[0].external_ids;
    assert_eq!(recorded["crawler"], "sales_crawler");
    assert!(recorded["previous_crawl_start"].is_string(), "{recorded:?}");

    let glue = env.clients.glue(None).await.unwrap();
    let c = glue.get_crawler().name("sales_crawler").send().await.unwrap().crawler.unwrap();
    assert_eq!(c.database_name(), Some("sales"));
    assert_eq!(c.table_prefix(), Some("raw_"));
    assert_eq!(c.description(), Some("the sales lake"));
    let paths: Vec<_> = c.targets().unwrap().s3_targets().iter().filter_map(|t| t.path()).collect();
    assert_eq!(paths, ["s3://lake/sales/", "s3://lake/returns/"]);
    assert_eq!(c.state().map(|s| s.as_str()), Some("READY"));
    assert_eq!(c.last_crawl().and_then(|l| l.status()).map(|s| s.as_str()), Some("SUCCEEDED"));

    assert_eq!(state(&env, &run, "broken").await, TaskState::Failed);
    let error = tries(&env, &run, "broken").await[0].error.clone().unwrap_or_default();
    assert!(error.contains("last crawl FAILED") && error.contains("SLUICE_FAIL"), "{error}");

    // Another DAG with the same crawler: it exists as configured, so it is only started.
    let again = dag("crawl_again", &crawler("crawl", "sales_crawler"));
    let run = run_dag(&env, &again).await;
    assert_eq!(run.state, RunState::Success, "{}", log(&env, &run, "crawl", 1));
    let log = log(&env, &run, "crawl", 1);
    assert!(log.contains("crawler sales_crawler is up to date") && log.contains("started crawler"), "{log}");
}

const QUERY: &str = "SELECT count(*) FROM sales WHERE ds = '{{ ds }}'";

fn athena_task(id: &str, query: &str, workgroup: &str) -> String {
    format!(
        "[tasks.{id}]\noperator = \"athena\"\nquery = \"{query}\"\ndatabase = \"sales\"\n\
         output_location = \"s3://results/athena/\"\nworkgroup = \"{workgroup}\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_athena_query_succeeds_with_its_outputs_and_a_failed_one_fails_with_its_reason() {
    let env = setup(shared_moto()).await;
    let src = format!(
        "{}{}\
         [tasks.check]\noperator = \"sensor\"\nkind = \"athena_query\"\nquery_execution_id = \"{{{{ tasks.q.query_execution_id }}}}\"\ndepends_on = [\"q\"]\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n\
         [tasks.report]\noperator = \"command\"\ncommand = \"echo {{{{ tasks.q.output_location }}}}\"\ndepends_on = [\"q\"]\n",
        athena_task("q", QUERY, "primary"),
        athena_task("bad", "SELECT 'SLUICE_FAIL'", "primary"),
    );
    let d = dag("athena", &src);
    let run = run_dag(&env, &d).await;
    assert_eq!(state(&env, &run, "q").await, TaskState::Success);
    assert_eq!(state(&env, &run, "check").await, TaskState::Success);
    let outputs = env.store.outputs(run.id).await.unwrap();
    let id = outputs["q"]["query_execution_id"].as_str().unwrap().to_string();
    assert_eq!(outputs["q"]["output_location"], json!(format!("s3://results/athena/{id}.csv")));
    assert_eq!(outputs["report"]["output"], json!(format!("s3://results/athena/{id}.csv")));
    assert_eq!(tries(&env, &run, "q").await[0].external_ids["query_execution_id"], json!(id));

    let athena = env.clients.athena(None).await.unwrap();
    let q = athena.get_query_execution().query_execution_id(&id).send().await.unwrap().query_execution.unwrap();
    assert_eq!(
        q.query(),
        Some(format!("SELECT count(*) FROM sales WHERE ds = '{}'", run.logical_date.format("%Y-%m-%d")).as_str())
    );
    assert_eq!(q.query_execution_context().and_then(|c| c.database()), Some("sales"));

    assert_eq!(state(&env, &run, "bad").await, TaskState::Failed);
    let error = tries(&env, &run, "bad").await[0].error.clone().unwrap_or_default();
    assert!(error.contains("FAILED") && error.contains("SLUICE_FAIL marker"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emr_serverless_job_run_succeeds_and_a_failed_one_fails_with_its_details() {
    let env = setup(shared_moto()).await;
    let client = env.clients.emr_serverless(None).await.unwrap();
    let app = client
        .create_application()
        .name("spark-app")
        .release_label("emr-7.2.0")
        .r#type("SPARK")
        .send()
        .await
        .unwrap()
        .application_id
        .clone();
    let job = |id: &str, args: &str| {
        format!(
            "[tasks.{id}]\noperator = \"emr_serverless\"\napplication_id = \"{app}\"\n\
             execution_role_arn = \"arn:aws:iam::{}:role/job\"\nentry_point = \"s3://code/job.py\"\n\
             entry_point_args = {args}\nspark_submit_parameters = \"--conf spark.executor.cores=2\"\n\
             name = \"nightly {id}\"\nlog_uri = \"s3://logs/serverless/\"\nexecution_timeout = \"10m\"\n\
             tags = {{ team = \"data\" }}\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n",
            support::ACCOUNT_ID
        )
    };
    let src = format!(
        "{}{}\
         [tasks.done]\noperator = \"sensor\"\nkind = \"emr_serverless_job\"\napplication_id = \"{app}\"\njob_run_id = \"{{{{ tasks.job.job_run_id }}}}\"\ndepends_on = [\"job\"]\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n",
        job("job", "[\"--date\", \"{{ ds }}\"]"),
        job("bad", "[\"--fail\", \"SLUICE_FAIL\"]"),
    );
    let d = dag("serverless", &src);
    let run = run_dag(&env, &d).await;
    assert_eq!(state(&env, &run, "job").await, TaskState::Success);
    assert_eq!(state(&env, &run, "done").await, TaskState::Success);
    let outputs = env.store.outputs(run.id).await.unwrap();
    let id = outputs["job"]["job_run_id"].as_str().unwrap().to_string();
    let recorded = &tries(&env, &run, "job").await[0].external_ids;
    assert_eq!(recorded["job_run_id"], json!(id));
    assert_eq!(recorded["application_id"], json!(app));

    let r = client.get_job_run().application_id(&app).job_run_id(&id).send().await.unwrap().job_run.unwrap();
    let tags = r.tags().unwrap();
    assert_eq!(tags["team"], "data");
    assert_eq!(tags["sluice:dag"], "serverless");
    assert_eq!(tags["sluice:run"], run.run_id);
    assert_eq!(tags["sluice:task"], "job");
    assert_eq!(r.execution_timeout_minutes(), Some(10));
    let log_uri = r
        .configuration_overrides()
        .and_then(|c| c.monitoring_configuration())
        .and_then(|m| m.s3_monitoring_configuration())
        .and_then(|s| s.log_uri());
    assert_eq!(log_uri, Some("s3://logs/serverless/"));
    let Some(aws_sdk_emrserverless::types::JobDriver::SparkSubmit(spark)) = r.job_driver() else { panic!("{r:?}") };
    assert_eq!(spark.entry_point(), "s3://code/job.py");
    assert_eq!(spark.entry_point_arguments(), ["--date".to_string(), run.logical_date.format("%Y-%m-%d").to_string()]);
    assert_eq!(spark.spark_submit_parameters(), Some("--conf spark.executor.cores=2"));

    assert_eq!(state(&env, &run, "bad").await, TaskState::Failed);
    let error = tries(&env, &run, "bad").await[0].error.clone().unwrap_or_default();
    assert!(error.contains("FAILED") && error.contains("SLUICE_FAIL marker"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_status_checks_are_waited_out() {
    // Its own emulator: the injected faults would otherwise meet other tests' requests.
    let moto = Moto::start_with(&["--transition-seconds", "0.3"]);
    let env = setup(&moto).await;
    moto.inject_fault("athena", Some("GetQueryExecution"), 3, 400, "ThrottlingException");
    let d = dag("throttled", &athena_task("q", "SELECT 1", "primary"));
    let run = run_dag(&env, &d).await;
    assert_eq!(run.state, RunState::Success, "{}", log(&env, &run, "q", 1));
    assert_eq!(moto.faults_served(), 3);
    assert_eq!(tries(&env, &run, "q").await.len(), 1, "throttling is not a failed try");
    assert!(log(&env, &run, "q", 1).contains("ThrottlingException"), "{}", log(&env, &run, "q", 1));
}

/// Waits until a query is in `state` (with a safety limit of 2 minutes).
async fn query_reaches(env: &Env, id: &str, state: &str) {
    let athena = env.clients.athena(None).await.unwrap();
    let mut seen = String::new();
    for _ in 0..1200 {
        let q = athena.get_query_execution().query_execution_id(id).send().await.unwrap();
        seen = q.query_execution().and_then(|q| q.status()).and_then(|s| s.state()).map_or("", |s| s.as_str()).into();
        if seen == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("query {id} never became {state} (last seen {seen})");
}

/// The query ids started in a workgroup.
async fn executions(env: &Env, workgroup: &str) -> Vec<String> {
    let athena = env.clients.athena(None).await.unwrap();
    athena.list_query_executions().work_group(workgroup).send().await.unwrap().query_execution_ids().to_vec()
}

async fn workgroup_with_one_query(env: &Env, workgroup: &str, sql: &str) -> String {
    let athena = env.clients.athena(None).await.unwrap();
    athena.create_work_group().name(workgroup).send().await.unwrap();
    let out = athena
        .start_query_execution()
        .query_string(sql)
        .work_group(workgroup)
        .query_execution_context(aws_sdk_athena::types::QueryExecutionContext::builder().database("sales").build())
        .result_configuration(
            aws_sdk_athena::types::ResultConfiguration::builder().output_location("s3://results/athena/").build(),
        )
        .send()
        .await
        .unwrap();
    out.query_execution_id().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_re_attaches_to_the_query_an_earlier_try_started() {
    let env = setup(shared_moto()).await;
    let d = dag(
        "reattach",
        &format!("{}retries = 1\nretry_delay = \"100ms\"\n", athena_task("q", "SELECT 42", "reattach")),
    );
    let run = create_run(&env, &d).await;
    // Try 1 started a query, which succeeded, but the try failed before it could finish (as
    // after a crash, recovered as "interrupted").
    let first = workgroup_with_one_query(&env, "reattach", "SELECT 42").await;
    query_reaches(&env, &first, "SUCCEEDED").await;
    let store = env.store.as_ref();
    store.set_task_states(run.id, &[("q".into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    assert_eq!(store.start_try(run.id, "q", Utc::now()).await.unwrap(), Start::Started(1));
    store.record_external_id(run.id, "q", 1, "query_execution_id", &json!(first)).await.unwrap();
    let retry_at = Some(Utc::now());
    store
        .finish_try(run.id, "q", 1, &TryOutcome::Failed { error: "interrupted".into(), retry_at }, Utc::now())
        .await
        .unwrap();

    let run = drive(&env, &d, &run).await;
    assert_eq!(run.state, RunState::Success);
    let t = tries(&env, &run, "q").await;
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].external_ids["query_execution_id"], json!(first));
    assert_eq!(env.store.outputs(run.id).await.unwrap()["q"]["query_execution_id"], json!(first));
    assert_eq!(executions(&env, "reattach").await, std::slice::from_ref(&first), "no second execution");
    assert!(log(&env, &run, "q", 2).contains(&format!("try 1's query {first} is SUCCEEDED; re-attaching")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_try_interrupted_by_a_restart_resumes_waiting_for_its_query() {
    let env = setup(shared_moto()).await;
    let d = dag("resume", &athena_task("q", "SELECT 7", "resume"));
    let run = create_run(&env, &d).await;
    // The scheduler stopped while try 1 waited for its query: the try is still `running`.
    let first = workgroup_with_one_query(&env, "resume", "SELECT 7").await;
    let store = env.store.as_ref();
    store.set_task_states(run.id, &[("q".into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    assert_eq!(store.start_try(run.id, "q", Utc::now()).await.unwrap(), Start::Started(1));
    store.record_external_id(run.id, "q", 1, "query_execution_id", &json!(first)).await.unwrap();

    let run = drive(&env, &d, &run).await;
    assert_eq!(run.state, RunState::Success);
    let t = tries(&env, &run, "q").await;
    assert_eq!(t.len(), 1, "the same try went on");
    assert_eq!(env.store.outputs(run.id).await.unwrap()["q"]["query_execution_id"], json!(first));
    assert_eq!(executions(&env, "resume").await, std::slice::from_ref(&first), "no second execution");
    assert!(log(&env, &run, "q", 1).contains(&format!("re-attaching to query {first}")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_submits_again_when_the_earlier_query_was_cancelled() {
    let env = setup(shared_moto()).await;
    let d =
        dag("resubmit", &format!("{}retries = 1\nretry_delay = \"100ms\"\n", athena_task("q", "SELECT 9", "resubmit")));
    let run = create_run(&env, &d).await;
    let first = workgroup_with_one_query(&env, "resubmit", "SELECT 9").await;
    let athena = env.clients.athena(None).await.unwrap();
    athena.stop_query_execution().query_execution_id(&first).send().await.unwrap();
    let store = env.store.as_ref();
    store.set_task_states(run.id, &[("q".into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    assert_eq!(store.start_try(run.id, "q", Utc::now()).await.unwrap(), Start::Started(1));
    store.record_external_id(run.id, "q", 1, "query_execution_id", &json!(first)).await.unwrap();
    let retry_at = Some(Utc::now());
    store
        .finish_try(run.id, "q", 1, &TryOutcome::Failed { error: "timed out".into(), retry_at }, Utc::now())
        .await
        .unwrap();

    let run = drive(&env, &d, &run).await;
    assert_eq!(run.state, RunState::Success);
    let second = env.store.outputs(run.id).await.unwrap()["q"]["query_execution_id"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let mut all = executions(&env, "resubmit").await;
    all.sort();
    let mut expected = vec![first.clone(), second];
    expected.sort();
    assert_eq!(all, expected);
    assert!(log(&env, &run, "q", 2).contains(&format!("try 1's query {first} is CANCELLED; submitting anew")));
}

/// The operator the engine would run for `task` (whose keys have no templates to render).
fn operator(env: &Env, dag: &Dag, task: &str) -> Box<dyn TaskOperator> {
    let t = &dag.tasks[dag.task_index(task).unwrap()];
    AwsOperators::with_clients(env.clients.clone()).build(&t.operator, dag, t).expect("an AWS operator")
}

/// Starts the next try of `task` in the store, as the engine does, and returns its context.
async fn start_try(env: &Env, dag: &Dag, run: &Run, task: &str) -> TryContext {
    let store = env.store.as_ref();
    store.set_task_states(run.id, &[(task.into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    let Start::Started(try_number) = store.start_try(run.id, task, Utc::now()).await.unwrap() else {
        panic!("{task} did not start")
    };
    let path = sluice_scheduler::engine::log_path(&env.config.logs, &run.dag_id, &run.run_id, task, try_number);
    TryContext {
        store: env.store.clone(),
        run: run.id,
        dag_id: dag.id.clone(),
        run_id: run.run_id.clone(),
        task_id: task.into(),
        try_number,
        dag_file: dag.file.clone(),
        dates: sluice_scheduler::engine::run_dates(dag, run),
        resumed: Default::default(),
        log: TryLog::new(path),
        env: Vec::new(),
    }
}

/// Waits until a try has recorded `key` and returns it (with a safety limit of 2 minutes).
async fn recorded(env: &Env, ctx: &TryContext, key: &str) -> serde_json::Value {
    for _ in 0..1200 {
        let tries = env.store.tries(ctx.run, Some(&ctx.task_id)).await.unwrap();
        if let Some(v) = tries.iter().find(|t| t.try_number == ctx.try_number).and_then(|t| t.external_ids.get(key)) {
            return v.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never recorded {key}", ctx.task_id);
}

/// Runs a try until it has recorded `key` (its remote work exists), then cuts it off exactly as
/// the engine does on a timeout: the run future is dropped, then the operator's `cancel` runs.
async fn cut_off_once_recorded(env: &Env, op: &dyn TaskOperator, ctx: &TryContext, key: &str) -> String {
    let id = tokio::select! {
        r = op.run(ctx) => panic!("{} ended before it was cut off: {r:?}", ctx.task_id),
        id = recorded(env, ctx, key) => id,
    };
    op.cancel(ctx).await;
    id.as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_try_cut_off_stops_the_query_the_crawl_and_the_job_run_it_started() {
    // Its own emulator, with its clock frozen: the work each try starts stays QUEUED, RUNNING or
    // SUBMITTED until cancelled, however slow the machine.
    let moto = Moto::start_with(&["--emr-serverless-run-seconds", "60"]);
    moto.freeze_clock();
    let env = setup(&moto).await;
    let client = env.clients.emr_serverless(None).await.unwrap();
    let app = client.create_application().name("slow").release_label("emr-7.2.0").r#type("SPARK").send().await.unwrap();
    let app = app.application_id;
    let src = format!(
        "{}\
         [tasks.crawl]\noperator = \"crawler\"\nname = \"slow_crawler\"\nrole = \"arn:aws:iam::123456789012:role/glue\"\n\
         database = \"sales\"\ns3_targets = [\"s3://lake/sales/\"]\npoke_interval = \"200ms\"\n\
         [tasks.job]\noperator = \"emr_serverless\"\napplication_id = \"{app}\"\nexecution_role_arn = \"arn:aws:iam::{}:role/job\"\n\
         entry_point = \"s3://code/job.py\"\npoke_interval = \"200ms\"\n",
        athena_task("q", "SELECT 1", "primary"),
        support::ACCOUNT_ID,
    );
    let d = dag("cut_off", &src);
    let run = create_run(&env, &d).await;

    let ctx = start_try(&env, &d, &run, "q").await;
    let query = cut_off_once_recorded(&env, operator(&env, &d, "q").as_ref(), &ctx, "query_execution_id").await;
    let athena = env.clients.athena(None).await.unwrap();
    let q = athena.get_query_execution().query_execution_id(&query).send().await.unwrap().query_execution.unwrap();
    assert_eq!(q.status().and_then(|s| s.state()).map(|s| s.as_str()), Some("CANCELLED"));
    assert!(log(&env, &run, "q", 1).contains(&format!("stopping query {query}: requested")));

    let ctx = start_try(&env, &d, &run, "crawl").await;
    let glue = env.clients.glue(None).await.unwrap();
    let op = operator(&env, &d, "crawl");
    // `crawler` is recorded once StartCrawler has answered: the crawl runs from then on.
    let name = tokio::select! {
        r = op.run(&ctx) => panic!("crawl ended before it was cut off: {r:?}"),
        name = recorded(&env, &ctx, "crawler") => name,
    };
    assert_eq!(name, "slow_crawler");
    let c = glue.get_crawler().name("slow_crawler").send().await.unwrap().crawler.unwrap();
    assert_eq!(c.state().map(|s| s.as_str()), Some("RUNNING"), "{c:?}");
    op.cancel(&ctx).await;
    let c = glue.get_crawler().name("slow_crawler").send().await.unwrap().crawler.unwrap();
    assert_eq!(c.state().map(|s| s.as_str()), Some("STOPPING"), "{c:?}");
    assert!(log(&env, &run, "crawl", 1).contains("stopping crawler slow_crawler: requested"));

    let ctx = start_try(&env, &d, &run, "job").await;
    let job_run = cut_off_once_recorded(&env, operator(&env, &d, "job").as_ref(), &ctx, "job_run_id").await;
    let r = client.get_job_run().application_id(&app).job_run_id(&job_run).send().await.unwrap().job_run.unwrap();
    assert_eq!(r.state().as_str(), "CANCELLED");
    assert!(log(&env, &run, "job", 1).contains(&format!("cancelling job run {job_run}: requested")));
}

/// A try cut off while its start request was in flight (sent, its answer not yet recorded)
/// used to leave that work running: `cancel` knew no id. It finds the work by what the try
/// recorded just before the request (the idempotency token, the crawler's last crawl) and
/// stops it.
#[tokio::test(flavor = "multi_thread")]
async fn a_try_cut_off_while_its_start_request_was_in_flight_leaves_nothing_running() {
    let moto = Moto::start();
    moto.freeze_clock();
    let env = setup(&moto).await;
    let serverless = env.clients.emr_serverless(None).await.unwrap();
    let app = serverless
        .create_application()
        .name("inflight")
        .release_label("emr-7.2.0")
        .r#type("SPARK")
        .send()
        .await
        .unwrap();
    let app = app.application_id;
    let role = format!("arn:aws:iam::{}:role/job", support::ACCOUNT_ID);
    let src = format!(
        "{}\
         [tasks.crawl]\noperator = \"crawler\"\nname = \"inflight_crawler\"\npoke_interval = \"200ms\"\n\
         [tasks.job]\noperator = \"emr_serverless\"\napplication_id = \"{app}\"\nexecution_role_arn = \"{role}\"\n\
         entry_point = \"s3://code/job.py\"\npoke_interval = \"200ms\"\n",
        athena_task("q", "SELECT 7", "primary"),
    );
    let d = dag("in_flight", &src);
    let run = create_run(&env, &d).await;
    let record = |task: &'static str, n: u32, key: &'static str, v: serde_json::Value| {
        let (store, id) = (env.store.clone(), run.id);
        async move { store.record_external_id(id, task, n, key, &v).await.unwrap() }
    };

    // Athena: the try recorded its token and sent StartQueryExecution, which reached Athena.
    let ctx = start_try(&env, &d, &run, "q").await;
    let token = sluice_aws::athena::idempotency_token(&d.id, &run.run_id, "q", ctx.try_number);
    record("q", ctx.try_number, "query_token", json!(token)).await;
    let athena = env.clients.athena(None).await.unwrap();
    let sent = athena
        .start_query_execution()
        .query_string("SELECT 7")
        .client_request_token(&token)
        .query_execution_context(aws_sdk_athena::types::QueryExecutionContext::builder().database("sales").build())
        .result_configuration(
            aws_sdk_athena::types::ResultConfiguration::builder().output_location("s3://results/athena/").build(),
        )
        .work_group("primary")
        .send()
        .await
        .unwrap()
        .query_execution_id
        .unwrap();
    operator(&env, &d, "q").cancel(&ctx).await;
    let q = athena.get_query_execution().query_execution_id(&sent).send().await.unwrap().query_execution.unwrap();
    assert_eq!(q.status().and_then(|s| s.state()).map(|s| s.as_str()), Some("CANCELLED"), "{q:?}");
    let log_q = log(&env, &run, "q", 1);
    assert!(log_q.contains(&format!("cut off while submitting: query {sent} is the one submitted")), "{log_q}");
    assert_eq!(tries(&env, &run, "q").await[0].external_ids["query_execution_id"], sent.as_str());

    // EMR Serverless: the same, with StartJobRun's client token.
    let ctx = start_try(&env, &d, &run, "job").await;
    let token = sluice_aws::athena::idempotency_token(&d.id, &run.run_id, "job", ctx.try_number);
    record("job", ctx.try_number, "client_token", json!(token)).await;
    let sent = serverless
        .start_job_run()
        .application_id(&app)
        .client_token(&token)
        .execution_role_arn(&role)
        .job_driver(aws_sdk_emrserverless::types::JobDriver::SparkSubmit(
            aws_sdk_emrserverless::types::SparkSubmit::builder().entry_point("s3://code/job.py").build().unwrap(),
        ))
        .send()
        .await
        .unwrap()
        .job_run_id;
    operator(&env, &d, "job").cancel(&ctx).await;
    let r = serverless.get_job_run().application_id(&app).job_run_id(&sent).send().await.unwrap().job_run.unwrap();
    assert_eq!(r.state().as_str(), "CANCELLED", "{r:?}");
    assert!(log(&env, &run, "job", 1).contains(&format!("cut off while submitting: job run {sent}")));

    // Glue: the try recorded the last crawl's start, then StartCrawler went through.
    let glue = env.clients.glue(None).await.unwrap();
    glue.create_crawler()
        .name("inflight_crawler")
        .role("arn:aws:iam::123456789012:role/glue")
        .database_name("sales")
        .targets(
            aws_sdk_glue::types::CrawlerTargets::builder()
                .s3_targets(aws_sdk_glue::types::S3Target::builder().path("s3://lake/x/").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ctx = start_try(&env, &d, &run, "crawl").await;
    record("crawl", ctx.try_number, "previous_crawl_start", serde_json::Value::Null).await;
    glue.start_crawler().name("inflight_crawler").send().await.unwrap();
    operator(&env, &d, "crawl").cancel(&ctx).await;
    let c = glue.get_crawler().name("inflight_crawler").send().await.unwrap().crawler.unwrap();
    assert_eq!(c.state().map(|s| s.as_str()), Some("STOPPING"), "{c:?}");
    assert!(log(&env, &run, "crawl", 1).contains("cut off while starting crawler inflight_crawler: it runs"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_makes_the_engine_cancel_the_query_of_the_try() {
    // The query exists before the try starts (the try resumes it after a restart) and the
    // frozen clock holds it QUEUED: the 1 s timeout can only find it running, whenever it fires.
    let moto = Moto::start();
    moto.freeze_clock();
    let env = setup(&moto).await;
    let d = dag("timeout", &athena_task("q", "SELECT 3", "timeout").replace("timeout = \"2m\"", "timeout = \"1s\""));
    let run = create_run(&env, &d).await;
    let first = workgroup_with_one_query(&env, "timeout", "SELECT 3").await;
    let store = env.store.as_ref();
    store.set_task_states(run.id, &[("q".into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    assert_eq!(store.start_try(run.id, "q", Utc::now()).await.unwrap(), Start::Started(1));
    store.record_external_id(run.id, "q", 1, "query_execution_id", &json!(first)).await.unwrap();

    let run = drive(&env, &d, &run).await;
    assert_eq!(run.state, RunState::Failed);
    let t = tries(&env, &run, "q").await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].error.as_deref(), Some("timed out after 1s"));
    let athena = env.clients.athena(None).await.unwrap();
    let q = athena.get_query_execution().query_execution_id(&first).send().await.unwrap().query_execution.unwrap();
    assert_eq!(q.status().and_then(|s| s.state()).map(|s| s.as_str()), Some("CANCELLED"));
    let log = log(&env, &run, "q", 1);
    assert!(log.contains("timed out after 1s") && log.contains(&format!("stopping query {first}: requested")), "{log}");
    assert_eq!(executions(&env, "timeout").await, std::slice::from_ref(&first), "nothing submitted");
}

#[tokio::test(flavor = "multi_thread")]
async fn sensor_tries_cut_off_by_a_stop_are_resumed_and_end_when_the_key_and_the_query_are_there() {
    // The query is held QUEUED by the frozen clock until the test lets it go.
    let moto = Moto::start();
    moto.freeze_clock();
    let env = setup(&moto).await;
    let s3 = env.clients.s3(None).await.unwrap();
    bucket(&s3, "resume-landing").await;
    let query = workgroup_with_one_query(&env, "resume_sensor", "SELECT 1").await;
    let d = dag(
        "resume_sensors",
        &format!(
            "[tasks.key]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"resume-landing\"\nkey = \"in/data.csv\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n\
             [tasks.query]\noperator = \"sensor\"\nkind = \"athena_query\"\nquery_execution_id = \"{query}\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n"
        ),
    );
    for task in ["key", "query"] {
        let t = &d.tasks[d.task_index(task).unwrap()];
        let op = AwsOperators::with_clients(env.clients.clone()).build(&t.operator, &d, t).unwrap();
        assert!(op.can_resume(&Default::default()), "a sensor is a stateless poke: {task} resumes");
    }
    let run = create_run(&env, &d).await;
    let logs = env.config.logs.clone();
    // Both sensors poke and wait; then the scheduler stops: the engine and its tries are dropped
    // where they are, their rows still `running`.
    tokio::select! {
        r = drive(&env, &d, &run) => panic!("the run ended before the stop: {r:?}"),
        _ = async {
            log_says(&logs, &run, "key", "does not exist yet").await;
            log_says(&logs, &run, "query", "QUEUED").await;
        } => {}
    }
    let running: Vec<_> = env.store.running_tries().await.unwrap().into_iter().map(|(_, t)| t.task_id).collect();
    assert_eq!(running.len(), 2, "{running:?}");

    put(&s3, "resume-landing", "in/data.csv").await;
    moto.run_clock();
    let run = drive(&env, &d, &run).await;
    assert_eq!(run.state, RunState::Success);
    for task in ["key", "query"] {
        let t = tries(&env, &run, task).await;
        assert_eq!(t.len(), 1, "{task}: the same try went on");
        assert_eq!(t[0].state, TaskState::Success);
        assert!(log(&env, &run, task, 1).contains("[sluice] success"), "{}", log(&env, &run, task, 1));
    }
    let query =
        EventQuery { dag_id: Some("resume_sensors".into()), run_id: Some(run.run_id.clone()), ..EventQuery::default() };
    let events = env.store.events(&query).await.unwrap();
    for task in ["key", "query"] {
        assert!(
            events.iter().any(|e| matches!(e.kind, EventKind::TryResumed { .. }) && e.task_id.as_deref() == Some(task)),
            "{task} was resumed: {events:?}"
        );
    }
    assert!(log(&env, &run, "key", 1).contains("found s3://resume-landing/in/data.csv"));
}

/// The child process of the next test reads the emulator's endpoint from this variable.
const NO_CREDENTIALS_ENDPOINT: &str = "SLUICE_TEST_NO_CREDENTIALS_ENDPOINT";

#[tokio::test(flavor = "multi_thread")]
async fn without_credentials_a_sensor_and_an_operator_fail_at_once_with_one_line() {
    // The default chain reads the process's environment and home directory, and the tests share
    // a process whose environment they must not change: the body runs in a child process with
    // an environment of its own (no AWS variables, an empty home).
    if let Ok(endpoint) = std::env::var(NO_CREDENTIALS_ENDPOINT) {
        return no_credentials(&endpoint).await;
    }
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "without_credentials_a_sensor_and_an_operator_fail_at_once_with_one_line", "--nocapture"])
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(NO_CREDENTIALS_ENDPOINT, &shared_moto().endpoint)
        .output()
        .unwrap();
    let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.contains("1 passed"), "the child process failed:\n{report}");
}

async fn no_credentials(endpoint: &str) {
    let env = setup_at(endpoint, None).await;
    // An hour of timeout and two retries each: only failing at once, for good, ends this run.
    let sensor = |id: &str, connection: &str| {
        format!(
            "[tasks.{id}]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"landing\"\nkey = \"in/*.csv\"\n\
             connection = \"{connection}\"\npoke_interval = \"200ms\"\ntimeout = \"1h\"\nretries = 2\nretry_delay = \"100ms\"\n"
        )
    };
    let src = format!(
        "{}{}{}{}retries = 2\nretry_delay = \"100ms\"\n",
        sensor("wait", "default"),
        sensor("named", "profile_gone"),
        sensor("assumed", "role"),
        athena_task("q", "SELECT 1", "primary").replace("timeout = \"2m\"", "timeout = \"1h\""),
    );
    let d = dag("no_credentials", &src);
    let run = run_dag(&env, &d).await;
    assert_eq!(run.state, RunState::Failed);
    let chain = "environment, shared config and credentials files, SSO, web identity, container and instance metadata";
    let named = "no AWS credentials for connection `profile_gone` from profile `sluice-no-such-profile` (its \
                 `profile`): it is not in the shared config and credentials files: define it, with credentials, in \
                 ~/.aws/config or ~/.aws/credentials (or AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), or name \
                 another profile";
    let assumed = format!(
        "cannot assume role arn:aws:iam::{}:role/etl for connection `role`: no credentials to assume it with \
         (looked in: {chain}): check the credentials it is assumed with (AWS_PROFILE, \
         AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the connection's `profile`) and that the role's trust policy \
         lets them call sts:AssumeRole",
        support::ACCOUNT_ID
    );
    for (task, line) in [("named", named), ("assumed", assumed.as_str())] {
        let t = tries(&env, &run, task).await;
        assert_eq!(t.len(), 1, "{task}: not retried although it has retries: {t:?}");
        assert_eq!(t[0].error.as_deref(), Some(line), "{task}");
    }
    let line =
        "no AWS credentials for connection `default`: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                or give [connections.default] a profile or role_arn in sluice.toml (looked in: environment, shared \
                config and credentials files, SSO, web identity, container and instance metadata)";
    for task in ["wait", "q"] {
        assert_eq!(state(&env, &run, task).await, TaskState::Failed);
        let t = tries(&env, &run, task).await;
        assert_eq!(t.len(), 1, "{task}: not retried although it has retries: {t:?}");
        assert_eq!(t[0].error.as_deref(), Some(line), "{task}");
        assert!(log(&env, &run, task, 1).contains(&format!("[sluice] failed: {line}")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_fail_the_try_at_once_with_one_line() {
    // This emulator checks credentials from the first request on: only keys made through its
    // IAM are valid, so these are not.
    let moto = Moto::start_with(&["--initial-no-auth-action-count", "0"]);
    let bad = SharedCredentialsProvider::new(Credentials::new(
        "AKIAIOSFODNN7BADKEY1",
        "not-the-secret-of-any-key",
        None,
        None,
        "tests",
    ));
    let env = setup_at(&moto.endpoint, Some(bad)).await;
    let sensor = |id: &str, key: &str| {
        format!(
            "[tasks.{id}]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"landing\"\nkey = \"{key}\"\n\
             poke_interval = \"200ms\"\ntimeout = \"1h\"\nretries = 2\nretry_delay = \"100ms\"\n"
        )
    };
    let src = format!(
        "{}{}{}connection = \"role\"\n{}retries = 2\nretry_delay = \"100ms\"\n",
        sensor("plain", "in/data.csv"),
        sensor("pattern", "in/*.csv"),
        sensor("assumed", "in/data.csv"),
        athena_task("q", "SELECT 1", "primary").replace("timeout = \"2m\"", "timeout = \"1h\""),
    );
    let d = dag("rejected", &src);
    let run = run_dag(&env, &d).await;
    assert_eq!(run.state, RunState::Failed);
    let rejected = |call: &str, code: &str| {
        format!(
            "AWS rejected the credentials of connection `default` ({call}: {code}): set valid ones \
             (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the keys of the profile in use), or fix the profile or \
             role_arn of [connections.default] in sluice.toml"
        )
    };
    let expected = [
        // S3 answers a HEAD request with a bare 403: it cannot say which.
        (
            "plain",
            "AWS answered HeadObject with 403 Forbidden for connection `default` (S3 gives no reason for HEAD \
             requests): its credentials are invalid, or may not read the object (s3:GetObject) or list its bucket \
             (s3:ListBucket)"
                .to_string(),
        ),
        (
            "pattern",
            rejected(
                "ListObjectsV2",
                "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.",
            ),
        ),
        (
            "q",
            rejected(
                "StartQueryExecution",
                "UnrecognizedClientException: The security token included in the request is invalid.",
            ),
        ),
        // STS refuses the key the role is to be assumed with.
        (
            "assumed",
            format!(
                "cannot assume role arn:aws:iam::{}:role/etl for connection `role`: InvalidClientTokenId: The \
                 security token included in the request is invalid: check the credentials it is assumed with \
                 (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the connection's `profile`) and that the \
                 role's trust policy lets them call sts:AssumeRole",
                support::ACCOUNT_ID
            ),
        ),
    ];
    for (task, line) in expected {
        assert_eq!(state(&env, &run, task).await, TaskState::Failed);
        let t = tries(&env, &run, task).await;
        assert_eq!(t.len(), 1, "{task}: not retried although it has retries: {t:?}");
        assert_eq!(t[0].error.as_deref(), Some(line.as_str()), "{task}");
        assert!(!log(&env, &run, task, 1).contains("not-the-secret"), "no secret in the log");
    }
}

/// One task of every AWS operator and sensor kind.
const EVERY_KIND: &str = r#"
[tasks.glue_job]
operator = "glue_job"
job_name = "j"

[tasks.create]
operator = "create_emr_cluster"
name = "c"
release_label = "emr-7.2.0"
applications = ["Spark"]
instance_type = "m5.xlarge"
instance_count = 1

[tasks.steps]
operator = "add_steps"
cluster_id = "j-1"
steps = [{ name = "s", args = ["spark-submit", "s3://b/job.py"] }]

[tasks.stop]
operator = "terminate"
cluster_id = "j-1"

[tasks.crawl]
operator = "crawler"
name = "c"

[tasks.q]
operator = "athena"
query = "SELECT 1"
database = "d"
output_location = "s3://b/r/"

[tasks.job]
operator = "emr_serverless"
application_id = "a"
execution_role_arn = "arn:aws:iam::123456789012:role/job"
entry_point = "s3://b/job.py"

[tasks.key]
operator = "sensor"
kind = "s3_key"
bucket = "b"
key = "k"

[tasks.step]
operator = "sensor"
kind = "emr_step"
cluster_id = "j-1"
step_id = "s-1"

[tasks.cluster]
operator = "sensor"
kind = "emr_cluster"
cluster_id = "j-1"

[tasks.crawled]
operator = "sensor"
kind = "glue_crawler"
name = "c"

[tasks.query]
operator = "sensor"
kind = "athena_query"
query_execution_id = "q-1"

[tasks.job_run]
operator = "sensor"
kind = "emr_serverless_job"
application_id = "a"
job_run_id = "r-1"
"#;

#[test]
fn every_aws_operator_and_sensor_resumes_its_try_after_a_stop() {
    // Sensors are stateless pokes; each operator re-attaches by what it recorded, else by what
    // identifies its work (tags, step names with the try, crawl start times, idempotency tokens
    // of the try), so picking the same try up again never submits twice. Whatever was recorded.
    let d = dag("every_kind", EVERY_KIND);
    let provider = AwsOperators::new(BTreeMap::new());
    let recorded = [
        serde_json::Map::new(),
        json!({"cluster_id": "j-1", "step_ids": ["s-1"], "query_execution_id": "q-1", "job_run_id": "r-1",
               "application_id": "a", "crawler": "c", "previous_crawl_start": null, "job_name": "j",
               "submitted_at": "2026-03-01T05:00:00Z"})
        .as_object()
        .unwrap()
        .clone(),
    ];
    assert_eq!(d.tasks.len(), 13);
    for t in &d.tasks {
        let op = provider.build(&t.operator, &d, t).unwrap_or_else(|| panic!("{} is an AWS operator", t.id));
        for r in &recorded {
            assert!(op.can_resume(r), "{} resumes with {r:?}", t.id);
        }
    }
}

/// Creates a Glue job (moto does not run its script: its runs follow `glue::job_run`).
async fn create_glue_job(env: &Env, name: &str) {
    let glue = env.clients.glue(None).await.unwrap();
    let command =
        aws_sdk_glue::types::JobCommand::builder().name("glueetl").script_location("s3://code/load.py").build();
    let role = format!("arn:aws:iam::{}:role/glue", support::ACCOUNT_ID);
    glue.create_job().name(name).role(role).command(command).send().await.unwrap();
}

/// A `glue_job` task; `extra` is more TOML lines (templates written as they are in a DAG file).
fn glue_task(id: &str, job: &str, extra: &str) -> String {
    format!(
        "[tasks.{id}]\noperator = \"glue_job\"\njob_name = \"{job}\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n{extra}"
    )
}

/// The ids of a Glue job's runs.
async fn glue_job_runs(env: &Env, job: &str) -> Vec<String> {
    let glue = env.clients.glue(None).await.unwrap();
    let out = glue.get_job_runs().job_name(job).send().await.unwrap();
    out.job_runs().iter().filter_map(|r| r.id().map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glue_job_run_succeeds_and_a_failed_one_fails_with_its_error_message() {
    let env = setup(shared_moto()).await;
    create_glue_job(&env, "nightly_load").await;
    create_glue_job(&env, "broken_load").await;
    let src = [
        glue_task(
            "load",
            "nightly_load",
            "arguments = { \"--day\" = \"{{ ds }}\", \"--table\" = \"sales\" }\nworker_type = \"G.1X\"\n\
             number_of_workers = 2\nexecution_timeout = \"10m\"\n",
        ),
        "[tasks.report]\noperator = \"command\"\ncommand = \"echo {{ tasks.load.job_run_id }}\"\ndepends_on = [\"load\"]\n"
            .to_string(),
        glue_task("bad", "broken_load", "arguments = { \"--mode\" = \"SLUICE_FAIL\" }\n"),
        glue_task("missing", "no_such_job", "retries = 2\nretry_delay = \"100ms\"\n"),
    ]
    .concat();
    let d = dag("glue_jobs", &src);
    let run = run_dag(&env, &d).await;
    assert_eq!(state(&env, &run, "load").await, TaskState::Success, "{}", log(&env, &run, "load", 1));
    let outputs = env.store.outputs(run.id).await.unwrap();
    let id = outputs["load"]["job_run_id"].as_str().unwrap().to_string();
    assert_eq!(outputs["report"]["output"], json!(id));
    let recorded = &tries(&env, &run, "load").await[0].external_ids;
    assert_eq!(recorded["job_run_id"], json!(id));
    assert_eq!(recorded["job_name"], "nightly_load");
    // The UI's console links read the region (issue 14).
    assert_eq!(recorded["region"], support::REGION);
    assert_eq!(glue_job_runs(&env, "nightly_load").await, std::slice::from_ref(&id), "one run");

    let glue = env.clients.glue(None).await.unwrap();
    let r = glue.get_job_run().job_name("nightly_load").run_id(&id).send().await.unwrap().job_run.unwrap();
    assert_eq!(r.job_run_state().map(|s| s.as_str()), Some("SUCCEEDED"));
    let args = r.arguments().unwrap();
    assert_eq!(args["--day"], run.logical_date.format("%Y-%m-%d").to_string());
    assert_eq!(args["--table"], "sales");
    assert_eq!(r.worker_type().map(|w| w.as_str()), Some("G.1X"));
    assert_eq!(r.number_of_workers(), Some(2));
    assert_eq!(r.timeout(), Some(10));

    assert_eq!(state(&env, &run, "bad").await, TaskState::Failed);
    let error = tries(&env, &run, "bad").await[0].error.clone().unwrap_or_default();
    assert!(error.contains("Glue job broken_load run") && error.contains("FAILED"), "{error}");
    assert!(error.contains("SLUICE_FAIL marker"), "the job run's ErrorMessage: {error}");

    // A job that does not exist is not retried: a retry cannot create it.
    assert_eq!(state(&env, &run, "missing").await, TaskState::Failed);
    let t = tries(&env, &run, "missing").await;
    assert_eq!(t.len(), 1, "{t:?}");
    let error = t[0].error.clone().unwrap_or_default();
    assert!(error.contains("Glue job no_such_job does not exist") && error.contains("job_name"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glue_job_try_re_attaches_to_its_run_after_a_restart_and_a_retry_to_the_earlier_tries_run() {
    let env = setup(shared_moto()).await;
    create_glue_job(&env, "resumed_job").await;
    create_glue_job(&env, "retried_job").await;
    create_glue_job(&env, "failed_job").await;
    create_glue_job(&env, "inflight_job").await;
    let src = [
        glue_task("resumed", "resumed_job", ""),
        glue_task("inflight", "inflight_job", "arguments = { \"--day\" = \"{{ ds }}\" }\n"),
        glue_task("retried", "retried_job", "retries = 1\nretry_delay = \"100ms\"\n"),
        glue_task("again", "failed_job", "retries = 1\nretry_delay = \"100ms\"\n"),
    ]
    .concat();
    let d = dag("glue_reattach", &src);
    let run = create_run(&env, &d).await;
    let glue = env.clients.glue(None).await.unwrap();
    let start = |job: &'static str, args: Option<(&str, &str)>| {
        let glue = glue.clone();
        let args = args.map(|(k, v)| std::collections::HashMap::from([(k.to_string(), v.to_string())]));
        async move { glue.start_job_run().job_name(job).set_arguments(args).send().await.unwrap().job_run_id.unwrap() }
    };
    let resumed = start("resumed_job", None).await;
    let retried = start("retried_job", None).await;
    let failed = start("failed_job", Some(("--mode", "SLUICE_FAIL"))).await;
    let store = env.store.as_ref();
    // `inflight`: the scheduler stopped while try 1's StartJobRun was in flight: it recorded
    // `submitted_at`, and the run reached Glue (another run of the job, with other arguments
    // and started before, is not it).
    let day = run.logical_date.format("%Y-%m-%d").to_string();
    let other = start("inflight_job", Some(("--day", "1999-01-01"))).await;
    store.set_task_states(run.id, &[("inflight".into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    assert_eq!(store.start_try(run.id, "inflight", Utc::now()).await.unwrap(), Start::Started(1));
    let submitted_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    store.record_external_id(run.id, "inflight", 1, "submitted_at", &json!(submitted_at)).await.unwrap();
    let _ = glue.batch_stop_job_run().job_name("inflight_job").job_run_ids(&other).send().await.unwrap();
    let inflight = start("inflight_job", Some(("--day", day.as_str()))).await;
    // `resumed`: the scheduler stopped while try 1 waited for its run (the try is still running).
    // `retried`, `again`: try 1 was interrupted; its run goes on (`retried`) or failed (`again`).
    for (task, id) in [("resumed", &resumed), ("retried", &retried), ("again", &failed)] {
        store.set_task_states(run.id, &[(task.into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
        assert_eq!(store.start_try(run.id, task, Utc::now()).await.unwrap(), Start::Started(1));
        store.record_external_id(run.id, task, 1, "job_run_id", &json!(id)).await.unwrap();
        if task != "resumed" {
            let outcome = TryOutcome::Failed { error: "interrupted".into(), retry_at: Some(Utc::now()) };
            store.finish_try(run.id, task, 1, &outcome, Utc::now()).await.unwrap();
        }
    }
    // The failed run must have ended before the retry looks at it.
    for _ in 0..1200 {
        let r = glue.get_job_run().job_name("failed_job").run_id(&failed).send().await.unwrap().job_run.unwrap();
        if r.job_run_state().map(|s| s.as_str()) == Some("FAILED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let run = drive(&env, &d, &run).await;
    assert_eq!(run.state, RunState::Success);
    let outputs = env.store.outputs(run.id).await.unwrap();

    assert_eq!(tries(&env, &run, "resumed").await.len(), 1, "the same try went on");
    assert_eq!(outputs["resumed"]["job_run_id"], json!(resumed));
    assert_eq!(glue_job_runs(&env, "resumed_job").await, std::slice::from_ref(&resumed), "no second run");
    assert!(log(&env, &run, "resumed", 1).contains(&format!("re-attaching to Glue job resumed_job run {resumed}")));

    assert_eq!(tries(&env, &run, "inflight").await.len(), 1, "the same try went on");
    assert_eq!(outputs["inflight"]["job_run_id"], json!(inflight));
    assert_eq!(glue_job_runs(&env, "inflight_job").await.len(), 2, "no third run");
    let l = log(&env, &run, "inflight", 1);
    assert!(
        l.contains(&format!("cut off while submitting: Glue job inflight_job run {inflight} is the one submitted")),
        "{l}"
    );

    let t = tries(&env, &run, "retried").await;
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].external_ids["job_run_id"], json!(retried));
    assert_eq!(outputs["retried"]["job_run_id"], json!(retried));
    assert_eq!(glue_job_runs(&env, "retried_job").await, std::slice::from_ref(&retried), "no second run");
    assert!(log(&env, &run, "retried", 2).contains(&format!("try 1's Glue job run {retried} is")));
    assert!(log(&env, &run, "retried", 2).contains("re-attaching"));

    // The earlier run failed: the retry starts a new one.
    let second = outputs["again"]["job_run_id"].as_str().unwrap().to_string();
    assert_ne!(second, failed);
    assert_eq!(glue_job_runs(&env, "failed_job").await.len(), 2);
    assert!(log(&env, &run, "again", 2).contains(&format!("try 1's Glue job run {failed} is FAILED; starting anew")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glue_job_try_cut_off_stops_its_job_run() {
    // Its own emulator, with its clock frozen: the run stays STARTING until stopped.
    let moto = Moto::start();
    moto.freeze_clock();
    let env = setup(&moto).await;
    create_glue_job(&env, "slow_job").await;
    let d = dag("glue_cut_off", &glue_task("job", "slow_job", ""));
    let run = create_run(&env, &d).await;
    let ctx = start_try(&env, &d, &run, "job").await;
    let id = cut_off_once_recorded(&env, operator(&env, &d, "job").as_ref(), &ctx, "job_run_id").await;
    let glue = env.clients.glue(None).await.unwrap();
    let r = glue.get_job_run().job_name("slow_job").run_id(&id).send().await.unwrap().job_run.unwrap();
    assert_eq!(r.job_run_state().map(|s| s.as_str()), Some("STOPPING"), "{r:?}");
    assert!(log(&env, &run, "job", 1).contains(&format!("stopping Glue job slow_job run {id}: requested")));

    // Cut off while StartJobRun was in flight (`submitted_at` recorded, the run started): the
    // run is found and stopped; try 1's run, stopped already, is not taken for it.
    let ctx = start_try(&env, &d, &run, "job").await;
    let submitted_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    env.store.record_external_id(run.id, "job", ctx.try_number, "submitted_at", &json!(submitted_at)).await.unwrap();
    let sent = glue.start_job_run().job_name("slow_job").send().await.unwrap().job_run_id.unwrap();
    operator(&env, &d, "job").cancel(&ctx).await;
    let r = glue.get_job_run().job_name("slow_job").run_id(&sent).send().await.unwrap().job_run.unwrap();
    assert_eq!(r.job_run_state().map(|s| s.as_str()), Some("STOPPING"), "{r:?}");
    let l = log(&env, &run, "job", ctx.try_number);
    assert!(l.contains(&format!("cut off while submitting: Glue job slow_job run {sent} is the one submitted")), "{l}");
    assert_eq!(tries(&env, &run, "job").await[1].external_ids["job_run_id"], sent.as_str());
    moto.run_clock();
}

/// Creates a Lambda function on moto (its docker-free backend answers with the payload sent,
/// or a queued result).
async fn create_function(env: &Env, moto: &Moto, name: &str) {
    let role = moto.iam_role(&format!("{name}-role"));
    let lambda = env.clients.lambda(None).await.unwrap();
    lambda
        .create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(role)
        .handler("handler.main")
        .code(aws_sdk_lambda::types::FunctionCode::builder().zip_file(b"not run".to_vec().into()).build())
        .send()
        .await
        .unwrap();
}

fn lambda_task(id: &str, function: &str, extra: &str) -> String {
    format!("[tasks.{id}]\noperator = \"lambda\"\nfunction_name = \"{function}\"\ntimeout = \"2m\"\n{extra}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lambda_answers_its_payload_as_output_and_a_function_error_fails_with_the_functions_error() {
    let moto = shared_moto();
    let env = setup(moto).await;
    create_function(&env, moto, "enrich").await;
    let src = [
        lambda_task(
            "enrich",
            "enrich",
            "qualifier = \"$LATEST\"\npayload = { day = \"{{ ds }}\", rows = 3, tags = [\"a\", \"{{ dag_id }}\"] }\n",
        ),
        "[tasks.report]\noperator = \"command\"\ncommand = \"echo {{ tasks.enrich.payload.day }}\"\ndepends_on = [\"enrich\"]\n"
            .to_string(),
        lambda_task(
            "bad",
            "arn:aws:lambda:us-east-1:123456789012:function:enrich",
            "payload = { mode = \"SLUICE_FAIL\" }\nretries = 1\nretry_delay = \"100ms\"\n",
        ),
        lambda_task("gone", "no_such_function", ""),
    ]
    .concat();
    let d = dag("lambdas", &src);
    let run = run_dag(&env, &d).await;
    let ds = run.logical_date.format("%Y-%m-%d").to_string();
    assert_eq!(state(&env, &run, "enrich").await, TaskState::Success, "{}", log(&env, &run, "enrich", 1));
    let outputs = env.store.outputs(run.id).await.unwrap();
    // moto's simple Lambda answers with the event it was sent: the rendered payload, as JSON.
    assert_eq!(outputs["enrich"]["payload"], json!({"day": ds, "rows": 3, "tags": ["a", "lambdas"]}));
    assert_eq!(outputs["report"]["output"], json!(ds));
    let recorded = &tries(&env, &run, "enrich").await[0].external_ids;
    assert_eq!(recorded["function_name"], "enrich");
    assert_eq!(recorded["qualifier"], "$LATEST");
    assert_eq!(recorded["region"], support::REGION);
    assert!(recorded["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{recorded:?}");

    // The function's error fails each try, and the retry policy applies (it is the function's).
    assert_eq!(state(&env, &run, "bad").await, TaskState::Failed);
    let t = tries(&env, &run, "bad").await;
    assert_eq!(t.len(), 2, "{t:?}");
    let error = t[1].error.clone().unwrap_or_default();
    assert!(
        error.starts_with(
            "function arn:aws:lambda:us-east-1:123456789012:function:enrich failed (Unhandled): SluiceInjectedError: "
        ) && error.contains("SLUICE_FAIL marker"),
        "{error}"
    );
    assert_eq!(t[1].external_ids["function_error"], json!(error));

    assert_eq!(state(&env, &run, "gone").await, TaskState::Failed);
    let error = tries(&env, &run, "gone").await[0].error.clone().unwrap_or_default();
    assert!(error.contains("Invoke: ResourceNotFoundException"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lambda_try_resumes_with_its_recorded_answer_and_one_cut_off_mid_invocation_is_retried() {
    let moto = shared_moto();
    let env = setup(moto).await;
    create_function(&env, moto, "reinvoked").await;
    let src = [
        // Never invoked: the try resumes with the answer it recorded (the function does not exist).
        lambda_task("answered", "never_invoked", ""),
        lambda_task("failed", "never_invoked", ""),
        lambda_task("cut", "reinvoked", "payload = { n = 1 }\nretries = 1\nretry_delay = \"100ms\"\n"),
    ]
    .concat();
    let d = dag("lambda_restart", &src);
    let run = create_run(&env, &d).await;
    let store = env.store.as_ref();
    let recorded = [
        ("answered", vec![("function_name", json!("never_invoked")), ("payload", json!({"rows": 7}))]),
        (
            "failed",
            vec![
                ("function_name", json!("never_invoked")),
                ("function_error", json!("function x failed (Unhandled): E: m")),
            ],
        ),
        ("cut", vec![("function_name", json!("reinvoked"))]),
    ];
    let provider = AwsOperators::with_clients(env.clients.clone());
    for (task, ids) in &recorded {
        store.set_task_states(run.id, &[(task.to_string(), TaskState::Scheduled)], Utc::now()).await.unwrap();
        assert_eq!(store.start_try(run.id, task, Utc::now()).await.unwrap(), Start::Started(1));
        for (k, v) in ids {
            store.record_external_id(run.id, task, 1, k, v).await.unwrap();
        }
        let t = &d.tasks[d.task_index(task).unwrap()];
        let map: serde_json::Map<String, serde_json::Value> =
            ids.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let op = provider.build(&t.operator, &d, t).unwrap();
        assert_eq!(op.can_resume(&map), *task != "cut", "{task} resumes only with its answer");
    }

    let run = drive(&env, &d, &run).await;
    let outputs = env.store.outputs(run.id).await.unwrap();
    assert_eq!(state(&env, &run, "answered").await, TaskState::Success);
    assert_eq!(tries(&env, &run, "answered").await.len(), 1, "the same try, not invoked again");
    assert_eq!(outputs["answered"]["payload"], json!({"rows": 7}));
    assert!(log(&env, &run, "answered", 1).contains("answered before the restart"));

    assert_eq!(state(&env, &run, "failed").await, TaskState::Failed);
    let t = tries(&env, &run, "failed").await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].error.as_deref(), Some("function x failed (Unhandled): E: m"));

    // Cut off during its invocation: counted as interrupted, and the retry invokes again.
    assert_eq!(state(&env, &run, "cut").await, TaskState::Success);
    let t = tries(&env, &run, "cut").await;
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[0].error.as_deref().is_some_and(|e| e.contains("interrupted")), "{:?}", t[0].error);
    assert_eq!(outputs["cut"]["payload"], json!({"n": 1}));
}
