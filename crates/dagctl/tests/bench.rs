//! `dagctl bench --small --scenario api`, `--scenario alerts` and `--scenario ui`: the API
//! scenario end to end at a small size (a few hundred runs stored, one second per endpoint),
//! through this binary's daemon and its hidden `bench-load` generator in a second process, the
//! alerts scenario's two daemons, and the web UI's views (with headless Chromium when
//! chromedriver is installed). For correctness (every request answered, every chain run
//! checked, every grid cell drawn), not for time: nothing here compares a figure with a bound.

use serde_json::Value;

const DAGCTL: &str = env!("CARGO_BIN_EXE_dagctl");

/// `dagctl bench --small --scenario NAME --json` in a folder of its own; the scenario's result.
fn small_scenario(name: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(DAGCTL);
    c.args(["bench", "--small", "--scenario", name, "--json"]).current_dir(dir.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("SLUICE_") {
            c.env_remove(k);
        }
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let result = report["results"][0].clone();
    assert_eq!(result["scenario"], name);
    result
}

/// The metric `name` of a scenario's result.
fn metric(result: &Value, name: &str) -> Value {
    result["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name}: {result}"))
        .clone()
}

#[test]
fn the_api_scenario_loads_every_endpoint_and_checks_the_chain_runs() {
    let api = small_scenario("api");
    let metric = |name: &str| metric(&api, name);
    for endpoint in ["run list", "one run", "grid", "/metrics"] {
        let p99 = metric(&format!("{endpoint} p99"));
        assert!(p99["samples"].as_u64().unwrap() > 0, "{endpoint} answered nothing: {p99}");
        assert!(metric(&format!("{endpoint} throughput"))["median"].as_f64().unwrap() > 0.0);
        assert!(p99.get("target").is_none(), "no targets at the small size");
    }
    // Every chain task measured, before and under load (20 tasks a run, at least one run each).
    for name in ["task latency p99, no load", "task latency p99, API under load"] {
        let n = metric(name)["samples"].as_u64().unwrap();
        assert!(n >= 20 && n % 20 == 0, "{name}: {n} samples");
    }
}

#[test]
fn the_alerts_scenario_queues_alerts_to_a_channel_that_never_answers_and_measures_both_daemons() {
    let result = small_scenario("alerts");
    let metric = |name: &str| metric(&result, name);
    for name in
        ["task latency p99, failures alert nobody", "task latency p99, failures alert a channel that never answers"]
    {
        let n = metric(name)["samples"].as_u64().unwrap();
        assert!(n >= 20 && n % 20 == 0, "{name}: {n} samples");
    }
    // The scenario checked that every failure queued its two alerts and all stayed pending.
    let pending = metric("alerts pending")["median"].as_f64().unwrap();
    assert!(pending >= 2.0 && pending % 2.0 == 0.0, "{pending}");
    assert!(metric("connections to the channel")["median"].as_f64().unwrap() >= 1.0);
}

#[test]
fn the_ui_scenario_measures_every_view_and_the_grid_in_chromium() {
    let ui = small_scenario("ui");
    let metric = |name: &str| metric(&ui, name);
    for view in [
        "DAG list",
        "DAG page, grid 25",
        "DAG page, grid 365",
        "graph",
        "calendar",
        "durations",
        "runs",
        "source",
        "run page",
        "try page with log",
    ] {
        let p99 = metric(&format!("{view} p99"));
        assert_eq!(p99["samples"], 5, "{view}: {p99}");
        assert!(p99["median"].as_f64().unwrap() > 0.0, "{view}: {p99}");
        assert!(p99.get("target").is_none(), "no targets at the small size");
    }
    let description = ui["description"].as_str().unwrap();
    let has_driver =
        std::process::Command::new("chromedriver").arg("--version").output().is_ok_and(|o| o.status.success());
    if has_driver {
        // One load of the 400-run DAG's page: its 365 runs by 20 tasks were all drawn.
        let drawn = metric("DAG page, grid 365 drawn in Chromium");
        assert_eq!(drawn["samples"], 1, "{drawn}");
        assert!(drawn["median"].as_f64().unwrap() > 0.0, "{drawn}");
        assert!(description.contains("7300 cells drawn in headless Chromium"), "{description}");
    } else {
        assert!(description.contains("chromedriver not found"), "{description}");
    }
}

#[test]
fn bench_load_refuses_what_it_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let urls = dir.path().join("urls.txt");
    std::fs::write(&urls, "\n").unwrap();
    let o = std::process::Command::new(DAGCTL)
        .args(["bench-load", "--urls"])
        .arg(&urls)
        .args(["--seconds", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to load"));
    let o = std::process::Command::new(DAGCTL)
        .args(["bench-load", "--urls"])
        .arg(&urls)
        .args(["--seconds", "0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--seconds must be a positive number"));
}
