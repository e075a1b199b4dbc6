//! Every scenario at a small size, for correctness (every task succeeds, the counts are
//! right), not for time: the daemon runs in this process, on a SQLite file on disk.

use sluice_bench::{Options, Report, Scenario};

async fn run(scenario: Scenario) -> Report {
    let options = Options { scenarios: vec![scenario], ..Options::small() };
    sluice_bench::run(&options).await.unwrap_or_else(|e| panic!("{}: {e}", scenario.name()))
}

fn metric(report: &Report, scenario: &str, name: &str) -> f64 {
    let r = report.results.iter().find(|r| r.scenario == scenario).unwrap_or_else(|| panic!("no {scenario}"));
    r.metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name} in {scenario}")).median
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain() {
    let r = run(Scenario::Chain).await;
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].tasks, 5);
    assert!(metric(&r, "chain_50", "trigger to success") > 0.0);
    assert!(metric(&r, "chain_50", "latency max") >= metric(&r, "chain_50", "latency p50"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide() {
    let r = run(Scenario::Wide).await;
    assert_eq!(r.results[0].tasks, 20);
    assert!(metric(&r, "wide_200", "trigger to success") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan() {
    let r = run(Scenario::Fan).await;
    assert_eq!(r.results[0].tasks, 22);
    assert!(metric(&r, "fan_200", "trigger to success") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop() {
    let r = run(Scenario::Noop).await;
    assert_eq!(r.results[0].tasks, 100);
    assert!(metric(&r, "noop_10k", "tasks per second") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_runs_the_command_scenarios() {
    let r = run(Scenario::Latency).await;
    assert_eq!(r.results.len(), 1);
    // chain 5 + wide 20 + fan 22 tasks, each measured once.
    assert_eq!(r.results[0].tasks, 47);
    assert!(metric(&r, "latency", "latency p99") >= metric(&r, "latency", "latency p50"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_dags() {
    let r = run(Scenario::ManyDags).await;
    assert_eq!(r.results[0].tasks, 200);
    assert!(metric(&r, "many_dags", "load + validate folder") > 0.0);
    assert!(metric(&r, "many_dags", "daemon RSS after loading") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle() {
    let r = run(Scenario::Idle).await;
    assert!(metric(&r, "idle", "daemon CPU") >= 0.0);
    assert!(metric(&r, "idle", "daemon RSS") > 0.0);
}

#[test]
fn report_prints_as_table_and_json() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let options = Options { scenarios: vec![Scenario::Chain], targets: true, ..Options::small() };
    let r = rt.block_on(sluice_bench::run(&options)).unwrap();
    let table = r.table();
    assert!(table.contains("`chain_50`"), "{table}");
    assert!(table.contains("<= 0.250"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(json["results"][0]["scenario"], "chain_50");
    assert_eq!(json["results"][0]["metrics"][0]["target"]["at_most"], 0.25);
}

#[test]
fn unknown_scenario_names_the_known_ones() {
    let e = Scenario::from_name("chain").unwrap_err().to_string();
    assert!(e.contains("chain_50") && e.contains("idle"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_dag() {
    let r = run(Scenario::HugeDag).await;
    assert_eq!(r.results[0].tasks, 2_000);
    assert!(metric(&r, "huge_dag", "load + validate file") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_huge() {
    let r = run(Scenario::ReloadHuge).await;
    assert_eq!(r.results[0].tasks, 50);
    assert!(metric(&r, "reload_huge", "chain latency max") >= metric(&r, "reload_huge", "chain latency p50"));
}

/// `postgres` on the test server (`SLUICE_TEST_POSTGRES`, default the local one): each DAG
/// with 1 and 2 schedulers sharing a schema, every run checked as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_one_and_two_schedulers() {
    let mut options = Options { scenarios: vec![Scenario::Postgres], ..Options::small() };
    if let Ok(server) = std::env::var("SLUICE_TEST_POSTGRES") {
        options.postgres = server;
    }
    let r = sluice_bench::run(&options).await.unwrap_or_else(|e| panic!("postgres: {e}"));
    let names: Vec<&str> = r.results.iter().map(|x| x.scenario.as_str()).collect();
    assert_eq!(names, ["postgres wide_200 ×1", "postgres wide_200 ×2", "postgres noop_10k ×1", "postgres noop_10k ×2"]);
    for (name, k) in [("postgres wide_200 ×1", 1.0), ("postgres wide_200 ×2", 2.0), ("postgres noop_10k ×2", 2.0)] {
        let working = metric(&r, name, "schedulers that ran tries");
        assert!((1.0..=k).contains(&working), "{name}: {working} schedulers ran tries");
        assert!(metric(&r, name, "trigger to success") > 0.0);
    }
    assert_eq!(metric(&r, "postgres wide_200 ×1", "busiest scheduler's share of the tries"), 100.0);
    assert!(metric(&r, "postgres noop_10k ×1", "tasks per second") > 0.0);
}
