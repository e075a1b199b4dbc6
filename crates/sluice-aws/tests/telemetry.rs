//! The AWS operators' counters against moto: every request counted per service by the SDK
//! interceptor, the throttles moto is told to answer counted as throttles and errors, and an
//! Athena query's scanned bytes read off GetQueryExecution once, for its DAG.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use chrono::Utc;
use sluice_aws::telemetry::ATHENA_SCANNED_BYTES;
use sluice_aws::{AwsOperators, Clients};
use sluice_dag::parse_dag;
use sluice_scheduler::config::Connection;
use sluice_scheduler::engine::{Engine, Mode};
use sluice_scheduler::operators::{LocalOperators, OperatorProvider};
use sluice_scheduler::{runs, Config};
use sluice_store::{RunKind, RunState, SqliteStore, Store};
use support::Moto;
use tokio::sync::{mpsc, watch};

#[tokio::test(flavor = "multi_thread")]
async fn requests_throttles_and_scanned_bytes_are_counted() {
    // Its own emulator: the injected faults would otherwise meet other tests' requests.
    let moto = Moto::start_with(&["--transition-seconds", "0.3"]);
    moto.inject_fault("athena", Some("GetQueryExecution"), 3, 400, "ThrottlingException");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("sluice.db").display().to_string()).await.unwrap());
    let connection = Connection {
        endpoint_url: Some(moto.endpoint.clone()),
        region: Some(support::REGION.into()),
        ..Default::default()
    };
    let connections = BTreeMap::from([("default".to_string(), connection)]);
    let credentials = SharedCredentialsProvider::new(Credentials::new(
        support::ACCESS_KEY_ID,
        support::SECRET_ACCESS_KEY,
        None,
        None,
        "tests",
    ));
    let clients = Arc::new(Clients::with_credentials(connections.clone(), credentials));
    let config =
        Config { logs: dir.path().join("logs"), dags: dir.path().join("dags"), connections, ..Config::default() };
    let src = "[tasks.q]\noperator = \"athena\"\nquery = \"SELECT 1\"\ndatabase = \"sales\"\n\
               output_location = \"s3://results/athena/\"\nworkgroup = \"primary\"\npoke_interval = \"200ms\"\ntimeout = \"2m\"\n";
    let dag = parse_dag(Path::new("counted.toml"), src).dag.expect("a valid DAG");
    let dates = runs::manual_dates(&dag, None, Utc::now());
    let run = runs::create_run(store.as_ref(), &dag, &dates, RunKind::Manual, None).await.unwrap().run().clone();

    let aws = Arc::new(AwsOperators::with_clients(clients.clone()));
    let telemetry = aws.telemetry().expect("the AWS operators count");
    assert!(Arc::ptr_eq(&telemetry, clients.telemetry()), "the provider hands out its clients' counters");
    let providers: Vec<Arc<dyn OperatorProvider>> = vec![Arc::new(LocalOperators), aws];
    let mut engine = Engine::new(store.clone(), config, providers, Mode::SingleRun(run.id));
    assert_eq!(engine.stats().telemetry().len(), 1, "the engine keeps its families' counters");
    engine.add_dag(dag.clone());
    engine.load_active_runs().await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let (_rtx, rrx) = mpsc::channel(1);
    tokio::time::timeout(Duration::from_secs(180), engine.run(rx, rrx)).await.expect("run finishes").unwrap();
    let run = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Success);
    assert_eq!(moto.faults_served(), 3);

    let services = telemetry.services();
    let athena = services.iter().find(|(s, _)| *s == "athena").map(|(_, c)| *c).expect("athena was called");
    assert_eq!(athena.throttles, 3, "{services:?}");
    assert_eq!(athena.errors, 3, "only the throttled requests failed: {services:?}");
    // StartQueryExecution, the 3 throttled polls, and at least the poll that saw it end.
    assert!(athena.calls >= 5, "{services:?}");
    // moto reports 0 bytes scanned; what counts is that the ended query was read, once.
    assert_eq!(telemetry.usage(), vec![(ATHENA_SCANNED_BYTES, "counted".to_string(), 0)]);
    assert!(!telemetry.add_usage(ATHENA_SCANNED_BYTES, query_id(&store, run.id).await.as_str(), "counted", 1));
}

async fn query_id(store: &Arc<dyn Store>, run: i64) -> String {
    let tries = store.tries(run, Some("q")).await.unwrap();
    tries[0].external_ids["query_execution_id"].as_str().unwrap().to_string()
}
