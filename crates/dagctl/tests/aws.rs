//! The AWS pipelines end to end: the real `dagctl` binary runs the shipped DAGs against moto
//! (the AWS API emulator, started on loopback by `support::Moto`), and each test then looks at
//! the emulator with the AWS SDK to check what really happened there: how many clusters and
//! steps exist, in which state, which queries and job runs were submitted. Also `dagctl` and
//! its daemon without AWS credentials, and the janitor with nothing to do.
//!
//! No test depends on how fast the machine is: what a test must catch in a state (a step
//! RUNNING) is held there by the emulator's frozen clock until the test lets it go, and the
//! waits are for events, with generous limits only as a safety net.
//!
//! Needs the project venv with moto (`bash .ci/run` creates it; see tests/tooling/README.md).

#[path = "../../sluice-aws/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_emr::types::{ClusterState, StepState};
use serde_json::Value;
use support::Moto;

const BUCKET: &str = "car-rentals-data";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A temp folder with `sluice.toml` pointing every AWS call at the emulator.
struct World {
    dir: tempfile::TempDir,
    moto: Option<Moto>,
}

impl World {
    fn new(moto: Moto) -> World {
        let endpoint = moto.endpoint.clone();
        World::at(&endpoint, Some(moto))
    }

    /// A folder whose AWS endpoint is a port nothing listens on: any AWS call fails.
    fn offline() -> World {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        World::at(&format!("http://127.0.0.1:{port}"), None)
    }

    fn at(endpoint: &str, moto: Option<Moto>) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dags/sql")).unwrap();
        let toml = format!(
            "db = \"sluice.db\"\ndags = \"dags\"\nlogs = \"logs\"\nmax_poke_interval = \"1s\"\ngrace_period = \"2s\"\n\
             [connections.default]\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n"
        );
        std::fs::write(dir.path().join("sluice.toml"), toml).unwrap();
        for sql in std::fs::read_dir(repo().join("dags/sql")).unwrap() {
            let sql = sql.unwrap().path();
            std::fs::copy(&sql, dir.path().join("dags/sql").join(sql.file_name().unwrap())).unwrap();
        }
        World { dir, moto }
    }

    /// The folder with its state in a new PostgreSQL schema instead of `sluice.db`, and
    /// schedulers' leases of `lease`: for several schedulers on one database.
    async fn on_postgres(moto: Moto, lease: &str) -> World {
        let w = World::new(moto);
        let url = sluice_store::testing::new_schema().await;
        let toml = std::fs::read_to_string(w.dir.path().join("sluice.toml")).unwrap();
        let toml = toml.replace("db = \"sluice.db\"", &format!("db = \"{url}\"\nlease = \"{lease}\""));
        std::fs::write(w.dir.path().join("sluice.toml"), toml).unwrap();
        w
    }

    /// Copies a shipped DAG into the folder, through `edit`.
    fn ship(&self, name: &str, edit: impl Fn(String) -> String) {
        let src = std::fs::read_to_string(repo().join(format!("dags/{name}.toml"))).unwrap();
        std::fs::write(self.dir.path().join(format!("dags/{name}.toml")), edit(src)).unwrap();
    }

    fn write_dag(&self, name: &str, src: &str) {
        std::fs::write(self.dir.path().join(format!("dags/{name}.toml")), src).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_dagctl"));
        // The janitor DAG runs `dagctl` itself.
        let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
        let mut c = Command::new(bin);
        c.args(args)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SLUICE_LOG", "info");
        for v in [
            "SLUICE_DAGS",
            "SLUICE_DB",
            "SLUICE_LOGS",
            "SLUICE_CONFIG",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
        ] {
            c.env_remove(v);
        }
        // Tests run side by side: each daemon's API on a port of its own.
        c.env("SLUICE_API_BIND", "127.0.0.1:0");
        c
    }

    fn moto(&self) -> &Moto {
        self.moto.as_ref().expect("a World with an emulator")
    }

    /// `command` with no AWS variable at all and an empty home: the default chain finds no
    /// credentials (and does not wait for instance metadata).
    fn command_without_credentials(&self, args: &[&str]) -> Command {
        let mut c = self.command(args);
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("AWS_")) {
            c.env_remove(name);
        }
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            c.env_remove(name);
        }
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        c.env("HOME", home).env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    fn dagctl(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn daemon(&self) -> Child {
        self.spawn_daemon(self.command(&["scheduler"]))
    }

    fn spawn_daemon(&self, mut command: Command) -> Child {
        static DAEMONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = DAEMONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::fs::File::create(self.dir.path().join(format!("daemon-{n}.log"))).unwrap();
        command.stdout(Stdio::null()).stderr(log).spawn().unwrap()
    }

    /// Waits until the run of `dag` on `date` has ended (with a safety limit of 3 minutes).
    fn run_end(&self, dag: &str, date: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let t = self.tasks(dag, date);
            if t["run"]["state"] == "success" || t["run"]["state"] == "failed" {
                return t;
            }
            assert!(Instant::now() < deadline, "the run of {dag} did not end: {t}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The log of a try, as the daemon wrote it.
    fn try_log(&self, dag: &str, run_id: &str, task: &str, try_number: u32) -> String {
        let path = self.dir.path().join("logs").join(dag).join(run_id).join(task).join(format!("{try_number}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn tasks(&self, dag: &str, date: &str) -> Value {
        let out = self.dagctl(&["tasks", dag, "--date", date, "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.moto().endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await
    }

    async fn s3(&self) -> aws_sdk_s3::Client {
        let c = self.sdk().await;
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&c).force_path_style(true).build())
    }

    async fn emr(&self) -> aws_sdk_emr::Client {
        aws_sdk_emr::Client::new(&self.sdk().await)
    }

    /// The raw data the pipelines' S3 sensor waits for.
    async fn land_raw_data(&self, ds: &str) {
        let s3 = self.s3().await;
        let _ = s3.create_bucket().bucket(BUCKET).send().await;
        s3.put_object()
            .bucket(BUCKET)
            .key(format!("raw/rental_transactions/{ds}/part-0000.csv"))
            .body(b"transaction_id,user_id\n1,2\n".to_vec().into())
            .send()
            .await
            .unwrap();
    }

    /// The clusters Sluice created for `dag`, with their state and step names.
    async fn clusters(&self, dag: &str) -> Vec<(String, ClusterState, Vec<(String, StepState)>)> {
        let emr = self.emr().await;
        let mut out = Vec::new();
        let list = emr.list_clusters().send().await.unwrap();
        for c in list.clusters() {
            let id = c.id().unwrap().to_string();
            let d = emr.describe_cluster().cluster_id(&id).send().await.unwrap();
            let cluster = d.cluster().unwrap();
            if !cluster.tags().iter().any(|t| t.key() == Some("sluice:dag") && t.value() == Some(dag)) {
                continue;
            }
            let state = cluster.status().unwrap().state().unwrap().clone();
            let steps = emr.list_steps().cluster_id(&id).send().await.unwrap();
            let steps = steps
                .steps()
                .iter()
                .map(|s| (s.name().unwrap().to_string(), s.status().unwrap().state().unwrap().clone()))
                .collect();
            out.push((id, state, steps));
        }
        out
    }
}

fn ok(o: &Output) -> bool {
    if !o.status.success() {
        eprintln!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
    o.status.success()
}

fn task<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == id).unwrap_or_else(|| panic!("no task {id} in {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_1_emr_runs_to_success_and_leaves_one_terminated_cluster() {
    let w = World::new(Moto::start());
    w.land_raw_data("2026-03-01").await;
    w.ship("car_rental_emr", |s| s);
    let out = w.dagctl(&["test", "car_rental_emr", "--date", "2026-03-01"]);
    assert!(ok(&out));
    let clusters = w.clusters("car_rental_emr").await;
    assert_eq!(clusters.len(), 1, "exactly one cluster: {clusters:?}");
    let (_, state, steps) = &clusters[0];
    assert_eq!(*state, ClusterState::Terminated);
    assert_eq!(steps.len(), 2, "one step per job, each submitted once: {steps:?}");
    assert!(steps.iter().all(|(name, s)| *s == StepState::Completed && name.contains("[sluice test__")));
    let glue = aws_sdk_glue::Client::new(&w.sdk().await);
    let crawler = glue.get_crawler().name("car-rental-processed").send().await.unwrap();
    assert_eq!(crawler.crawler().unwrap().state().unwrap().as_str(), "READY");
    let athena = aws_sdk_athena::Client::new(&w.sdk().await);
    let queries = athena.list_query_executions().send().await.unwrap();
    assert_eq!(queries.query_execution_ids().len(), 3, "the three report queries, once each");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_2_staged_runs_to_success() {
    let w = World::new(Moto::start());
    w.land_raw_data("2026-03-01").await;
    // The shipped pauses are minutes long; the same DAG with second-long pauses.
    w.ship("car_rental_emr_staged", |s| {
        s.replace("duration = \"2m\"", "duration = \"1s\"").replace("duration = \"1m\"", "duration = \"1s\"")
    });
    let out = w.dagctl(&["test", "car_rental_emr_staged", "--date", "2026-03-01"]);
    assert!(ok(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("report_failure") && stdout.contains("skipped"), "nothing failed, so no report: {stdout}");
    let clusters = w.clusters("car_rental_emr_staged").await;
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].1, ClusterState::Terminated);
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_3_serverless_runs_both_branches_and_the_summary() {
    let w = World::new(Moto::start());
    let serverless = aws_sdk_emrserverless::Client::new(&w.sdk().await);
    let app = serverless
        .create_application()
        .name("car-rental")
        .release_label("emr-7.2.0")
        .r#type("SPARK")
        .send()
        .await
        .unwrap();
    let conf = format!("{{\"application_id\": \"{}\"}}", app.application_id());
    w.ship("car_rental_serverless", |s| s);
    let out = w.dagctl(&["test", "car_rental_serverless", "--date", "2026-03-01", "--conf", &conf]);
    assert!(ok(&out));
    let runs = serverless.list_job_runs().application_id(app.application_id()).send().await.unwrap();
    assert_eq!(runs.job_runs().len(), 2, "one job run per branch");
    assert!(runs.job_runs().iter().all(|r| r.state().as_str() == "SUCCESS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_4_star_schema_and_the_janitor() {
    let w = World::new(Moto::start());
    w.land_raw_data("2026-03-01").await;
    w.ship("car_rental_star_schema", |s| s);
    w.ship("emr_cluster_janitor", |s| s);
    assert!(ok(&w.dagctl(&["test", "car_rental_star_schema", "--date", "2026-03-01"])));
    let clusters = w.clusters("car_rental_star_schema").await;
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].1, ClusterState::Terminated);

    // `dagctl test` ran in a throwaway database; the janitor reads the real one, which has EMR
    // history once the daemon has run a pipeline with a cluster there (the janitor does nothing
    // for a database where no run ever asked for a cluster).
    w.write_dag("with_cluster", &FAILING_STEP.replace(", \"SLUICE_FAIL\"", ""));
    for paused in ["car_rental_star_schema", "emr_cluster_janitor"] {
        assert!(ok(&w.dagctl(&["pause", paused])));
    }
    let mut daemon = w.daemon();
    assert!(ok(&w.dagctl(&["trigger", "with_cluster", "--date", "2026-03-01"])));
    let run = w.run_end("with_cluster", "2026-03-01");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(run["run"]["state"], "success", "{run}");

    // A cluster left running by a run this database knows nothing of: the janitor ends it.
    let emr = w.emr().await;
    let tag = |k: &str, v: &str| aws_sdk_emr::types::Tag::builder().key(k).value(v).build();
    let left = emr
        .run_job_flow()
        .name("forgotten")
        .release_label("emr-7.2.0")
        .instances(
            aws_sdk_emr::types::JobFlowInstancesConfig::builder()
                .master_instance_type("m5.xlarge")
                .instance_count(1)
                .keep_job_flow_alive_when_no_steps(true)
                .build(),
        )
        .tags(tag("sluice:dag", "car_rental_emr"))
        .tags(tag("sluice:run", "scheduled__2026-02-01T05:00:00+00:00"))
        .tags(tag("sluice:task", "create_cluster"))
        .service_role("EMR_DefaultRole")
        .job_flow_role("EMR_EC2_DefaultRole")
        .send()
        .await
        .unwrap();
    let id = left.job_flow_id().unwrap().to_string();
    let listed = w.dagctl(&["clusters", "--json"]);
    assert!(ok(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    assert!(ok(&w.dagctl(&["test", "emr_cluster_janitor"])));
    let d = emr.describe_cluster().cluster_id(&id).send().await.unwrap();
    let state = d.cluster().unwrap().status().unwrap().state().unwrap().clone();
    assert!(matches!(state, ClusterState::Terminating | ClusterState::Terminated), "{state:?}");
}

const FAILING_STEP: &str = r#"
[tasks.create]
operator = "create_emr_cluster"
name = "failing-{{ ds }}"
release_label = "emr-7.2.0"
applications = ["Spark"]
instance_type = "m5.xlarge"
instance_count = 1

[tasks.job]
operator = "add_steps"
depends_on = ["create"]
cluster_id = "{{ tasks.create.cluster_id }}"
steps = [{ name = "broken_job", args = ["spark-submit", "s3://bucket/job.py", "SLUICE_FAIL"] }]

[tasks.stop]
operator = "terminate"
depends_on = ["job"]
cluster_id = "{{ tasks.create.cluster_id }}"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_fails_its_task_and_the_cluster_is_still_terminated() {
    let w = World::new(Moto::start());
    w.write_dag("failing", FAILING_STEP);
    let out = w.dagctl(&["test", "failing", "--date", "2026-03-01"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "the run fails: {stdout}");
    assert!(stdout.contains("step `broken_job") && stdout.contains("FAILED"), "the error names the step: {stdout}");
    let clusters = w.clusters("failing").await;
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].1, ClusterState::Terminated, "terminate (all_done) ran after the failure");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_athena_query_fails_with_its_reason() {
    let w = World::new(Moto::start());
    w.write_dag(
        "report",
        "[tasks.q]\noperator = \"athena\"\nquery = \"SELECT 'SLUICE_FAIL' FROM kpis\"\ndatabase = \"car_rental\"\noutput_location = \"s3://car-rentals-data/results/\"\n",
    );
    let out = w.dagctl(&["test", "report"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("q:") && stdout.contains("FAILED"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_s3_key_times_out_the_sensor_or_skips_it() {
    let w = World::new(Moto::start());
    let s3 = w.s3().await;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let sensor = |soft: bool| {
        format!(
            "[tasks.wait]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"{BUCKET}\"\nkey = \"raw/{{{{ ds }}}}/*.csv\"\n\
             poke_interval = \"1s\"\ntimeout = \"3s\"\nretries = 2\nsoft_fail = {soft}\n\
             [tasks.after]\noperator = \"noop\"\ndepends_on = [\"wait\"]\n"
        )
    };
    w.write_dag("hard", &sensor(false));
    w.write_dag("soft", &sensor(true));
    let hard = w.dagctl(&["test", "hard", "--date", "2026-03-01"]);
    assert_eq!(hard.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&hard.stdout);
    assert!(stdout.contains("sensor timed out after 3s"), "{stdout}");
    assert!(stdout.contains("1/3"), "a sensor timeout is not retried: {stdout}");
    let soft = w.dagctl(&["test", "soft", "--date", "2026-03-01"]);
    assert!(ok(&soft));
    let stdout = String::from_utf8_lossy(&soft.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("wait ") && l.contains("skipped")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried() {
    let w = World::new(Moto::start());
    w.write_dag("throttled", FAILING_STEP.replace(", \"SLUICE_FAIL\"", "").as_str());
    w.moto().inject_fault("elasticmapreduce", Some("DescribeCluster"), 4, 400, "ThrottlingException");
    w.moto().inject_fault("elasticmapreduce", Some("ListSteps"), 2, 503, "ServiceUnavailable");
    let out = w.dagctl(&["test", "throttled", "--date", "2026-03-01"]);
    assert!(ok(&out));
    assert!(w.moto().faults_served() >= 6, "every injected fault was met and survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_dash_nine_while_a_step_runs_never_submits_twice() {
    // The emulator's clock is frozen: the step stays PENDING, then RUNNING, for as long as the
    // test needs, and completes only when the test lets the clock run.
    let moto = Moto::start();
    moto.freeze_clock();
    let w = World::new(moto);
    w.write_dag(
        "crash",
        &FAILING_STEP
            .replace(", \"SLUICE_FAIL\"", "")
            .replace("[tasks.create]", "[tasks.create]\nretries = 1\nretry_delay = \"1s\""),
    );
    let mut daemon = w.daemon();
    assert!(ok(&w.dagctl(&["trigger", "crash", "--date", "2026-03-01"])));
    // Wait until the step is submitted (its id recorded) and on the emulator.
    let run_id = wait_step_submitted(&w);
    // Past its second PENDING: RUNNING, until the clock moves again.
    w.moto().advance_clock(1.5);
    let clusters = w.clusters("crash").await;
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].2.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(), [StepState::Running]);
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    let mut daemon = w.daemon();
    // The restarted daemon resumes the interrupted try of `job` and re-attaches to its step.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !w.try_log("crash", &run_id, "job", 1).contains("re-attaching to this try's steps") {
        assert!(Instant::now() < deadline, "the try was not resumed:\n{}", w.try_log("crash", &run_id, "job", 1));
        std::thread::sleep(Duration::from_millis(200));
    }
    w.moto().run_clock();
    let run = w.run_end("crash", "2026-03-01");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(run["run"]["state"], "success", "{run}");
    let clusters = w.clusters("crash").await;
    assert_eq!(clusters.len(), 1, "exactly one cluster for the run: {clusters:?}");
    assert_eq!(clusters[0].2.len(), 1, "exactly one step, submitted once: {:?}", clusters[0].2);
    assert_eq!(clusters[0].2[0].1, StepState::Completed);
    // The interrupted try of `job` was resumed (re-attached), not retried.
    assert_eq!(task(&run, "job")["tries"].as_array().unwrap().len(), 1, "{run}");
}

/// The one line a try without credentials fails with, for the `default` connection of
/// `World`'s sluice.toml.
const NO_CREDENTIALS: &str = "no AWS credentials for connection `default`: set AWS_PROFILE or \
                              AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or give [connections.default] a profile or \
                              role_arn in sluice.toml (looked in: environment, shared config and credentials files, \
                              SSO, web identity, container and instance metadata)";

#[tokio::test(flavor = "multi_thread")]
async fn without_credentials_the_janitor_succeeds_when_no_run_ever_asked_for_a_cluster() {
    // No credentials, and an endpoint nothing listens on: any AWS call would fail.
    let w = World::offline();
    w.ship("emr_cluster_janitor", |s| s);
    w.write_dag("emr", &FAILING_STEP.replace("[tasks.create]", "[tasks.create]\nretries = 2\nretry_delay = \"1s\""));
    let nothing = "nothing to terminate: no EMR cluster was ever requested by the runs in sluice.db";

    // No database yet.
    let out = w.command_without_credentials(&["clusters", "terminate-finished"]).output().unwrap();
    assert!(ok(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), nothing);
    assert!(!w.dir.path().join("sluice.db").exists(), "asking created no database");

    // The hourly janitor, run by the daemon: its own runs ask for no cluster either.
    let mut daemon = w.spawn_daemon(w.command_without_credentials(&["scheduler"]));
    assert!(ok(&w.dagctl(&["trigger", "emr_cluster_janitor", "--date", "2026-03-01"])));
    let janitor = w.run_end("emr_cluster_janitor", "2026-03-01");
    assert_eq!(janitor["run"]["state"], "success", "{janitor}");
    let run_id = janitor["run"]["run_id"].as_str().unwrap();
    let log = w.try_log("emr_cluster_janitor", run_id, "terminate_finished_clusters", 1);
    // The task's `dagctl` is given the daemon's database, as an absolute URL.
    let db = format!("sqlite:{}", w.dir.path().join("sluice.db").display());
    assert!(log.contains(&nothing.replace("sluice.db", &db)), "{log}");

    // A run that asks for a cluster, without credentials: its try fails at once, once although
    // it has retries, with the one line.
    assert!(ok(&w.dagctl(&["trigger", "emr", "--date", "2026-03-01"])));
    let emr = w.run_end("emr", "2026-03-01");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(emr["run"]["state"], "failed", "{emr}");
    let create = task(&emr, "create");
    let tries = create["tries"].as_array().unwrap();
    assert_eq!(tries.len(), 1, "not retried: {create}");
    assert_eq!(tries[0]["error"], NO_CREDENTIALS, "{create}");

    // Now a cluster may have been asked for: the janitor needs AWS, and says what is missing.
    let out = w.command_without_credentials(&["clusters", "terminate-finished"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(NO_CREDENTIALS), "{stderr}");
}

// --- Several schedulers on one PostgreSQL database, taken over mid-step ---

/// The `crash` DAG with its step submitted and RUNNING on the frozen emulator, under one
/// scheduler; a second one started beside it. Returns (the holder, the other, the run id).
async fn a_step_running_under_one_of_two_schedulers(w: &World) -> (Child, Child, String) {
    w.write_dag("crash", &FAILING_STEP.replace(", \"SLUICE_FAIL\"", ""));
    let holder = w.daemon();
    assert!(ok(&w.dagctl(&["trigger", "crash", "--date", "2026-03-01"])));
    let run_id = wait_step_submitted(w);
    w.moto().advance_clock(1.5);
    let other = w.daemon();
    // The second one is registered (and so could take over) before the test acts.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = w.dagctl(&["schedulers", "--json"]);
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if listed.as_array().is_some_and(|a| a.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "the second scheduler never registered: {listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
    (holder, other, run_id)
}

/// Waits until the step of `crash`'s `job` is submitted (its id recorded) and on the emulator;
/// returns the run id.
fn wait_step_submitted(w: &World) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let t = w.tasks("crash", "2026-03-01");
        let job = t.get("tasks").map(|_| task(&t, "job").clone());
        let submitted = job.as_ref().is_some_and(|j| {
            j["state"] == "running"
                && j["tries"].as_array().is_some_and(|tr| tr.iter().any(|x| x["external_ids"]["step_ids"].is_array()))
        });
        if submitted {
            return t["run"]["run_id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the step never started: {t}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for the event `kind` of DAG `dag`; returns it.
fn wait_event(w: &World, dag: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = w.dagctl(&["events", "--dag", dag, "--json"]);
        let found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["kind"]["type"] == kind);
        if let Some(e) = found {
            return e;
        }
        assert!(Instant::now() < deadline, "no {kind} event for {dag}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the resumed try of `job` says in its log that it re-attached to its step (it
/// polls the step at once).
fn wait_reattached(w: &World, run_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !w.try_log("crash", run_id, "job", 1).contains("re-attaching to this try's steps") {
        assert!(Instant::now() < deadline, "the try was not resumed:\n{}", w.try_log("crash", run_id, "job", 1));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").arg(sig).arg(child.id().to_string()).status().unwrap().success());
}

/// The EMR run's end as the emulator and the store see it: one cluster, one step submitted
/// once and completed, the step's task in one try (adopted, not retried).
async fn assert_one_cluster_one_step(w: &World, run: &Value) {
    assert_eq!(run["run"]["state"], "success", "{run}");
    let clusters = w.clusters("crash").await;
    assert_eq!(clusters.len(), 1, "exactly one cluster for the run: {clusters:?}");
    assert_eq!(clusters[0].2.len(), 1, "exactly one step, submitted once: {:?}", clusters[0].2);
    assert_eq!(clusters[0].2[0].1, StepState::Completed);
    assert_eq!(task(run, "job")["tries"].as_array().unwrap().len(), 1, "{run}");
}

/// A scheduler frozen (SIGSTOP) past its lease (the default, so that the healthy one never
/// risks its own on a loaded machine) while it polls an EMR step: the other takes the
/// try over and adopts the step; woken (SIGCONT), the frozen one finds its lease gone, writes
/// nothing more and stops. The emulator shows one cluster and one step.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_scheduler_taken_over_mid_step_does_nothing_more() {
    let moto = Moto::start();
    moto.freeze_clock();
    let w = World::on_postgres(moto, "10s").await;
    let (mut frozen, mut other, run_id) = a_step_running_under_one_of_two_schedulers(&w).await;
    signal(&frozen, "-STOP");
    wait_event(&w, "crash", "try_resumed");
    wait_reattached(&w, &run_id);
    signal(&frozen, "-CONT");
    let status = frozen.wait().unwrap();
    assert!(!status.success(), "a scheduler that lost its lease stops with an error");
    let logs: String = std::fs::read_dir(w.dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("daemon-")))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        logs.contains("lease") && logs.contains("every try of this scheduler was cut off"),
        "it says why it stopped:\n{logs}"
    );
    w.moto().run_clock();
    let run = w.run_end("crash", "2026-03-01");
    other.kill().unwrap();
    other.wait().unwrap();
    assert_one_cluster_one_step(&w, &run).await;
}

/// `kill -9` of the scheduler holding an EMR step, a second one running, default lease: the
/// second adopts the step (it is not submitted again) and the run finishes. The failover time,
/// kill to the adopted try's first poll, is printed.
#[tokio::test(flavor = "multi_thread")]
async fn kill_dash_nine_of_the_step_holder_lets_the_other_scheduler_adopt_the_step() {
    let moto = Moto::start();
    moto.freeze_clock();
    let w = World::on_postgres(moto, "10s").await;
    let (mut holder, mut other, run_id) = a_step_running_under_one_of_two_schedulers(&w).await;
    let killed_at = chrono::Utc::now();
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let resumed = wait_event(&w, "crash", "try_resumed");
    wait_reattached(&w, &run_id);
    let at: chrono::DateTime<chrono::Utc> = resumed["at"].as_str().unwrap().parse().unwrap();
    println!(
        "failover (kill -9 to the step adopted, lease 10s): {:.1} s",
        (at - killed_at).num_milliseconds() as f64 / 1000.0
    );
    w.moto().run_clock();
    let run = w.run_end("crash", "2026-03-01");
    other.kill().unwrap();
    other.wait().unwrap();
    assert_one_cluster_one_step(&w, &run).await;
}
