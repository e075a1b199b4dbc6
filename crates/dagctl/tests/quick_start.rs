//! The README's Quick start, followed literally on a copy of the repository's `dags/` with no
//! AWS account: every command works, no run fails, the daemon's log holds no warning flood,
//! and the hourly janitor (a task that runs `dagctl` itself) finds `dagctl` and succeeds.
//!
//! "Literally" means the user's shell: the commands run in the copy's root with the default
//! `./sluice.db` and `./logs`, no `SLUICE_*` variables, no AWS credentials (an empty `HOME`),
//! and a `PATH` without the folder of the `dagctl` under test (the README's `alias` does not
//! reach task shells).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DAGCTL: &str = env!("CARGO_BIN_EXE_dagctl");
/// A safety limit on waiting for something to happen, never a measure of speed.
const SAFETY_LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

struct Clone {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Clone {
    fn dagctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DAGCTL);
        c.args(args).current_dir(self.dir.path()).stdin(Stdio::null()).env_clear();
        c.env("PATH", "/usr/local/bin:/usr/bin:/bin").env("HOME", self.home.path()).env("LANG", "C.UTF-8");
        // Tests run side by side: the daemon's API on a port of its own, not the default 8080.
        c.env("SLUICE_API_BIND", "127.0.0.1:0");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.dagctl(args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "dagctl {args:?}\n{}", explain(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until<T>(what: &str, log: &Path, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SAFETY_LIMIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_readme_quick_start_works_as_written_without_an_aws_account() {
    let w = Clone { dir: tempfile::tempdir().unwrap(), home: tempfile::tempdir().unwrap() };
    copy_dir(&repo().join("dags"), &w.dir.path().join("dags"));

    w.ok(&["validate"]);
    let list = w.ok(&["list"]);
    assert!(list.contains("car_rental_emr"), "{list}");
    w.ok(&["show", "car_rental_emr"]);
    w.ok(&["next", "car_rental_emr", "--count", "3"]);
    w.ok(&["render", "car_rental_emr", "vehicle_location_metrics", "--date", "2026-03-01"]);

    std::fs::copy(repo().join("examples/dags/hello.toml"), w.dir.path().join("dags/hello.toml")).unwrap();
    let out = w.ok(&["test", "hello", "--date", "2026-03-01"]);
    assert!(out.contains("[greet] hello from hello"), "{out}");

    let log = w.dir.path().join("daemon.log");
    let child =
        w.dagctl(&["scheduler"]).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let mut daemon = Daemon(child);
    wait_until("the daemon to start", &log, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("scheduler running").then_some(())
    });
    let out = w.ok(&["trigger", "hello", "--date", "2026-03-01", "--wait"]);
    assert!(out.contains("success"), "{out}");
    w.ok(&["runs", "hello"]);
    w.ok(&["tasks", "hello", "--date", "2026-03-01"]);
    let greet = w.ok(&["logs", "hello", "greet", "--date", "2026-03-01"]);
    assert!(greet.contains("hello from hello"), "{greet}");

    // The AWS pipelines wait, paused, for an account; the janitor's hourly run (created at
    // start: catchup is off, so the latest missed hour) runs `dagctl` and succeeds.
    let list = w.json(&["list", "--json"]);
    for d in list["dags"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let aws = id.starts_with("car_rental_") && id != "car_rental_local";
        assert_eq!(d["paused"], aws, "{id}: {list:#}");
    }
    let janitor = wait_until("the janitor's run to finish", &log, || {
        let runs = w.json(&["runs", "emr_cluster_janitor", "--json"]);
        let run = runs.as_array()?.first()?.clone();
        matches!(run["state"].as_str(), Some("success" | "failed")).then_some(run)
    });
    let date = janitor["logical_date"].as_str().unwrap().to_string();
    let jlog = w.ok(&["logs", "emr_cluster_janitor", "terminate_finished_clusters", "--date", &date]);
    assert_eq!(janitor["state"], "success", "{janitor:#}\n{jlog}");
    assert!(!jlog.contains("not found"), "{jlog}");

    let runs = w.json(&["runs", "--json"]);
    for r in runs.as_array().unwrap() {
        assert_eq!(r["state"], "success", "no run fails: {runs:#}");
    }

    // SIGTERM with nothing running: a prompt, clean stop.
    let ok = Command::new("kill").arg("-TERM").arg(daemon.0.id().to_string()).status().unwrap();
    assert!(ok.success());
    let status = wait_until("the daemon to stop", &log, || daemon.0.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        assert!(!line.contains(" WARN ") && !line.contains(" ERROR "), "a warning in the daemon's log:\n{text}");
        assert!(line.chars().count() < 400, "a flood line in the daemon's log:\n{line}");
    }
}
