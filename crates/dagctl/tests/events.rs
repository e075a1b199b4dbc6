//! `dagctl events` with the real binary on a real database: listing in id order, resuming with
//! `--after`, `--follow` printing what commits after it started, `--json` lines.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const DAG: &str = "schedule = \"0 5 * * *\"\nstart_date = \"2026-01-01\"\n[tasks.a]\noperator = \"noop\"\n";

/// Generous: only a hung test reaches it.
const SAFETY: Duration = Duration::from_secs(120);

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dags")).unwrap();
        std::fs::write(dir.path().join("dags/d.toml"), DAG).unwrap();
        Env { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("sluice.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dagctl"));
        c.current_dir(self.dir.path())
            .arg("--dags")
            .arg(self.dir.path().join("dags"))
            .arg("--db")
            .arg(format!("sqlite:{}", self.db().display()))
            .args(args)
            .env_remove("SLUICE_DAGS")
            .env_remove("SLUICE_DB")
            .env_remove("SLUICE_CONFIG")
            // Tests run side by side: each daemon's API on a port of its own.
            .env("SLUICE_API_BIND", "127.0.0.1:0");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o: Output = self.command(args).output().expect("dagctl runs");
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "dagctl {args:?}: {out}{err}");
        out.into_owned()
    }

    /// `dagctl events --json ...`, parsed.
    fn events(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["events", "--json"];
        args.extend_from_slice(extra);
        self.ok(&args).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }
}

fn ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"]["type"].as_str().unwrap()).collect()
}

/// Some events: two manual runs created, a pause and an unpause.
fn write_events(env: &Env) {
    env.ok(&["trigger", "d", "--date", "2026-03-01"]);
    env.ok(&["pause", "d"]);
    env.ok(&["trigger", "d", "--date", "2026-03-02"]);
    env.ok(&["unpause", "d"]);
}

#[test]
fn events_are_listed_in_id_order_and_after_resumes_without_loss_or_repeat() {
    let env = Env::new();
    write_events(&env);
    let all = env.events(&[]);
    assert_eq!(types(&all), ["run_created", "dag_paused", "run_created", "dag_paused"]);
    assert!(ids(&all).windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert_eq!(all[0]["dag_id"], "d");
    assert_eq!(all[0]["kind"]["run_kind"], "manual");
    assert_eq!(all[3]["kind"]["paused"], false);

    // Reading two at a time from each last id seen gives every event once.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = env.events(&["--after", &after.to_string(), "--limit", "2"]);
        let Some(last) = page.last() else { break };
        after = last["id"].as_i64().unwrap();
        seen.extend(page);
    }
    assert_eq!(seen, all);
    // Without --after, the last N.
    assert_eq!(env.events(&["--limit", "1"]), all[3..]);
    // Filters.
    let runs = env.events(&["--run", all[0]["run_id"].as_str().unwrap()]);
    assert_eq!(runs, all[..1]);
    assert!(env.events(&["--dag", "other"]).is_empty());

    // The human form: one line per event, with its id and what happened.
    let text = env.ok(&["events"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].starts_with(&format!("#{} ", all[1]["id"])), "{text}");
    assert!(lines[1].ends_with("d: DAG paused"), "{text}");
    assert!(lines[0].contains("manual run created for 2026-03-01"), "{text}");
}

/// Spawns `dagctl events --follow --json`, with its lines arriving on a channel.
fn follow(env: &Env, extra: &[&str]) -> (Child, mpsc::Receiver<Value>) {
    let mut args = vec!["events", "--follow", "--json"];
    args.extend_from_slice(extra);
    let mut child = env.command(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    });
    (child, rx)
}

#[test]
fn follow_prints_events_committed_after_it_started_and_exits_zero_on_sigint() {
    let env = Env::new();
    write_events(&env);
    let before = env.events(&[]);
    let (mut child, rx) = follow(&env, &["--limit", "1"]);
    // First the last event, then what commits while it follows.
    let first = rx.recv_timeout(SAFETY).expect("the last event");
    assert_eq!(first, before[3]);
    env.ok(&["pause", "d"]);
    let next = rx.recv_timeout(SAFETY).expect("the new event");
    assert_eq!((next["kind"]["type"].as_str(), next["kind"]["paused"].as_bool()), (Some("dag_paused"), Some(true)));
    assert!(next["id"].as_i64() > first["id"].as_i64());
    env.ok(&["trigger", "d", "--date", "2026-03-03"]);
    let created = rx.recv_timeout(SAFETY).expect("the run created");
    assert_eq!(created["kind"]["type"], "run_created");
    // Each event once: what followed is what the store holds after the first one.
    let all = env.events(&["--limit", "100"]);
    assert_eq!(all[3..], [first, next, created]);

    sigint(child.id());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn follow_after_an_id_starts_there() {
    let env = Env::new();
    write_events(&env);
    let all = env.events(&[]);
    let (mut child, rx) = follow(&env, &["--after", &all[1]["id"].to_string()]);
    let got: Vec<Value> = (0..2).map(|_| rx.recv_timeout(SAFETY).expect("an event")).collect();
    assert_eq!(got, all[2..]);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn sigint(pid: u32) {
    let status = Command::new("kill").arg("-INT").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

/// Waits for the next followed event that `pick` accepts; returns it with every event received
/// meanwhile appended to `seen`.
fn next_where(rx: &mpsc::Receiver<Value>, seen: &mut Vec<Value>, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    loop {
        let e = rx.recv_timeout(SAFETY).unwrap_or_else(|_| panic!("no {what} event; seen: {seen:#?}"));
        seen.push(e.clone());
        if pick(&e) {
            return e;
        }
    }
}

fn is(e: &Value, kind: &str, task: Option<&str>) -> bool {
    e["kind"]["type"] == kind && task.is_none_or(|t| e["task_id"] == t)
}

/// Starts `dagctl scheduler` and waits until it says it is running.
fn daemon(env: &Env, n: u32) -> Child {
    let log = env.dir.path().join(format!("daemon-{n}.log"));
    let mut child =
        env.command(&["scheduler"]).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let limit = std::time::Instant::now() + SAFETY;
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("scheduler running") {
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited: {}", std::fs::read_to_string(&log).unwrap());
        assert!(std::time::Instant::now() < limit, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A live run followed as it commits, across a `kill -9` of the daemon mid-try and a restart:
/// the follower sees each daemon start, the try cut short by the kill recorded as interrupted
/// by the next daemon, the retry, and the run's end; read back from the store afterwards (and
/// resumed from an id in the middle), exactly the same events: none lost, none twice.
#[test]
fn follow_shows_a_live_run_across_a_daemon_restart_and_the_store_has_the_same_events() {
    let env = Env::new();
    let gate = env.dir.path().join("gate");
    let dag = format!(
        "[tasks.a]\noperator = \"command\"\ncommand = \"while [ ! -e '{}' ]; do sleep 0.05; done\"\nretries = 1\n\
         retry_delay = \"1s\"\n[tasks.b]\noperator = \"noop\"\ndepends_on = [\"a\"]\n",
        gate.display()
    );
    std::fs::write(env.dir.path().join("dags/live.toml"), dag).unwrap();
    // The database exists before the follower starts (it reads it, it does not create it).
    env.ok(&["pause", "d"]);
    // Both followers start after that event, however long they take to start.
    let after = env.events(&["--limit", "1"])[0]["id"].to_string();
    let (mut follower, rx) = follow(&env, &["--dag", "live", "--after", &after]);
    let (mut all_follower, all_rx) = follow(&env, &["--after", &after]);
    let mut seen = Vec::new();

    let mut first = daemon(&env, 1);
    env.ok(&["trigger", "live"]);
    next_where(&rx, &mut seen, "try_started of a", |e| is(e, "try_started", Some("a")));
    // `kill -9` while `a` runs: the daemon records nothing more.
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = daemon(&env, 2);
    let interrupted = next_where(&rx, &mut seen, "try_interrupted", |e| is(e, "try_interrupted", Some("a")));
    assert_eq!(interrupted["kind"]["try_number"], 1);
    next_where(&rx, &mut seen, "a retry of a", |e| is(e, "try_started", Some("a")) && e["kind"]["try_number"] == 2);
    std::fs::write(&gate, "").unwrap();
    let end = next_where(&rx, &mut seen, "run_finished", |e| is(e, "run_finished", None));
    assert_eq!(end["kind"]["state"], "success");
    sigint(follower.id());
    assert_eq!(follower.wait().unwrap().code(), Some(0));

    // The store holds exactly what was followed, in the same order.
    let stored = env.events(&["--dag", "live", "--limit", "1000"]);
    assert_eq!(stored, seen);
    assert!(ids(&stored).windows(2).all(|w| w[0] < w[1]));
    let kinds = types(&stored);
    for kind in ["run_created", "run_started", "try_started", "try_interrupted", "retry_scheduled", "try_finished"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    // Resuming after the interruption gives the rest, and only the rest.
    let at = stored.iter().position(|e| e == &interrupted).unwrap();
    let rest = env.events(&["--dag", "live", "--after", &interrupted["id"].to_string(), "--limit", "1000"]);
    assert_eq!(rest, stored[at + 1..]);

    // The unfiltered follower saw both daemons start, the first before the second.
    let mut everything = Vec::new();
    next_where(&all_rx, &mut everything, "the run's end", |e| is(e, "run_finished", None));
    let starts: Vec<&Value> = everything.iter().filter(|e| is(e, "daemon_started", None)).collect();
    assert_eq!(starts.len(), 2, "{everything:#?}");
    assert_ne!(starts[0]["kind"]["pid"], starts[1]["kind"]["pid"]);
    all_follower.kill().unwrap();
    all_follower.wait().unwrap();
    sigint(second.id());
    assert!(second.wait().unwrap().success());
    let last = env.events(&["--limit", "1"]);
    assert_eq!(types(&last), ["daemon_stopping"]);
}
