//! The scheduler daemon as an operator runs it: the real `dagctl` binary, a real SQLite file,
//! real processes, `kill -9`, SIGTERM, and DAG files edited while it runs.
//!
//! Each test has its own temp folder (DAGs, database, logs, daemon logs) and runs every process
//! with that folder as its working directory and without `SLUICE_*` variables, so nothing of
//! the machine's own setup leaks in. Assertions are on the state recorded in the database, read
//! back with `--json`; waiting is done by polling with deadlines.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

const DAGCTL: &str = env!("CARGO_BIN_EXE_dagctl");

/// The least time a test waits for something before it gives up (see `Env::wait_until`).
const SAFETY_LIMIT: Duration = Duration::from_secs(90);

/// Every variable `dagctl` reads its settings from; removed so the tests see only their flags.
const SLUICE_VARS: [&str; 7] = [
    "SLUICE_DAGS",
    "SLUICE_DB",
    "SLUICE_LOGS",
    "SLUICE_CONFIG",
    "SLUICE_PARALLELISM",
    "SLUICE_GRACE_PERIOD",
    "SLUICE_LOG",
];

/// One test's world: `dags/`, `sluice.db`, `logs/` and the daemons' own logs in a temp folder.
struct Env {
    dir: tempfile::TempDir,
    /// The database's URL: `sluice.db` in the folder, or a schema of its own on PostgreSQL
    /// (`SLUICE_TEST_DB`, see `sluice_store::testing`).
    db: String,
    daemons: Cell<u32>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("dags")).unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let db = rt.block_on(sluice_store::testing::url_in(dir.path()));
        Env { dir, db, daemons: Cell::new(0) }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn dags(&self) -> PathBuf {
        self.root().join("dags")
    }

    /// A path in the temp folder, as a string for DAG commands.
    fn file(&self, name: &str) -> String {
        self.root().join(name).display().to_string()
    }

    fn write_dag(&self, name: &str, src: &str) {
        std::fs::write(self.dags().join(name), src).unwrap();
    }

    /// `dagctl` with this test's DAG folder, database and logs.
    fn command(&self, dags: &Path) -> Command {
        self.command_on(dags, &self.db)
    }

    /// `command`, reaching the database at `db` (the same database by another way).
    fn command_on(&self, dags: &Path, db: &str) -> Command {
        let mut c = Command::new(DAGCTL);
        c.arg("--dags")
            .arg(dags)
            .arg("--db")
            .arg(db)
            .arg("--logs")
            .arg(self.root().join("logs"))
            .current_dir(self.root())
            .stdin(Stdio::null());
        for v in SLUICE_VARS {
            c.env_remove(v);
        }
        // Tests run side by side: each daemon's API on a port of its own.
        c.env("SLUICE_API_BIND", "127.0.0.1:0");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(&self.dags()).args(args).output().expect("dagctl runs")
    }

    /// Runs `dagctl`, asserts it exits 0, returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(&self.dags(), args)
    }

    /// Like `ok`, with another DAG folder (same database and logs).
    fn ok_in(&self, dags: &Path, args: &[&str]) -> String {
        let o = self.command(dags).args(args).output().expect("dagctl runs");
        assert_eq!(o.status.code(), Some(0), "dagctl {args:?}\n{}", self.explain(&o));
        text(&o.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("dagctl {args:?}: not JSON ({e}):\n{out}"))
    }

    /// `dagctl tasks DAG --date D --json`: `{run, tasks: [...]}`.
    fn tasks(&self, dag: &str, date: &str) -> Value {
        self.json(&["tasks", dag, "--date", date, "--json"])
    }

    /// `dagctl runs DAG --json`.
    fn runs(&self, dag: &str) -> Vec<Value> {
        self.json(&["runs", dag, "--json"]).as_array().expect("a JSON array").clone()
    }

    /// Starts `dagctl scheduler` and waits until it says it is running.
    fn daemon(&self, extra: &[&str]) -> Daemon {
        self.daemon_on(&self.db, extra)
    }

    /// `daemon`, reaching the database at `db`.
    fn daemon_on(&self, db: &str, extra: &[&str]) -> Daemon {
        let n = self.daemons.get() + 1;
        self.daemons.set(n);
        let log = self.root().join(format!("daemon-{n}.log"));
        let child = self
            .command_on(&self.dags(), db)
            .arg("scheduler")
            .args(extra)
            .stdout(File::create(self.root().join(format!("daemon-{n}.out"))).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        let mut d = Daemon { child, log };
        self.wait_until("the daemon to start", Duration::from_secs(15), || {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("the daemon exited at start ({status}):\n{}", self.daemon_logs());
            }
            d.logs().contains("scheduler running").then_some(())
        });
        d
    }

    /// Polls `probe` every 100 ms until it returns something; panics (with the daemons' logs)
    /// at the deadline.
    ///
    /// `timeout` is a safety limit for a test that would otherwise hang, never a measure of
    /// speed: it is at least [`SAFETY_LIMIT`], so a loaded CI machine never fails a test by
    /// being slow.
    fn wait_until<T>(&self, what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let timeout = timeout.max(SAFETY_LIMIT);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.daemon_logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a run to end; returns its `tasks --json`.
    fn wait_run_finished(&self, dag: &str, date: &str, timeout: Duration) -> Value {
        self.wait_until(&format!("the run of {dag} on {date} to finish"), timeout, || {
            let v = self.tasks(dag, date);
            matches!(v["run"]["state"].as_str(), Some("success" | "failed")).then_some(v)
        })
    }

    /// Every daemon log of this test, for failure messages.
    fn daemon_logs(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.daemons.get() {
            let log = std::fs::read_to_string(self.root().join(format!("daemon-{n}.log"))).unwrap_or_default();
            out.push_str(&format!("--- daemon {n} ---\n{log}"));
        }
        out
    }

    fn explain(&self, o: &Output) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
            o.status.code(),
            text(&o.stdout),
            text(&o.stderr),
            self.daemon_logs()
        )
    }
}

/// A running `dagctl scheduler`; killed (SIGKILL) when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: the daemon gets no chance to record anything.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reap the daemon");
    }

    fn sigterm(&self) {
        let ok = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().expect("kill runs");
        assert!(ok.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the daemon to exit on its own.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout.max(SAFETY_LIMIT);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The entry of one task in a `tasks --json` answer.
fn task<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .expect("tasks array")
        .iter()
        .find(|t| t["task_id"] == id)
        .unwrap_or_else(|| panic!("no task `{id}` in {v:#}"))
}

/// A task's tries, by try number.
fn tries(t: &Value) -> Vec<Value> {
    let mut v = t["tries"].as_array().expect("tries array").clone();
    v.sort_by_key(|t| t["try_number"].as_u64());
    v
}

fn state(t: &Value) -> &str {
    t["state"].as_str().unwrap_or("?")
}

/// Lines in a file (0 when it does not exist).
fn lines(path: &str) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn time(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

/// A shell command that waits until the file `gate` exists: a task held in `running` until
/// the test lets it go, so no test depends on how long a `sleep` lasts on a loaded machine.
fn wait_for(gate: &str) -> String {
    format!("while [ ! -e '{gate}' ]; do sleep 0.05; done")
}

fn open_gate(gate: &str) {
    std::fs::write(gate, "").unwrap();
}

/// A process as `/proc/PID/stat` shows it.
#[derive(Debug)]
struct Proc {
    comm: String,
    state: char,
}

/// Every process whose process group is `pgid` (zombies included).
fn process_group(pgid: i32) -> Vec<Proc> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(st), Some(pgrp)) = (rest.first(), rest.get(2)) else { continue };
        if pgrp.parse::<i32>().ok() == Some(pgid) {
            out.push(Proc { comm, state: st.chars().next().unwrap_or('?') });
        }
    }
    out
}

/// The members of a process group that are still alive (not zombies).
fn alive(pgid: i32) -> Vec<Proc> {
    process_group(pgid).into_iter().filter(|p| p.state != 'Z').collect()
}

/// A crashed daemon loses no finished work and repeats none: the finished task is not run
/// again, the interrupted command is counted as one failed try (its orphaned process group
/// killed) and retried, the interrupted `wait` is resumed as the same try.
#[test]
fn kill_dash_nine_mid_run_loses_nothing_and_repeats_nothing() {
    let env = Env::new();
    env.write_dag(
        "crash.toml",
        &format!(
            r#"
[tasks.first]
operator = "command"
command = "echo once >> '{first}'"

[tasks.long]
operator = "command"
depends_on = ["first"]
retries = 1
retry_delay = "1s"
# `long.done` is written only by a try that got through the gate: an orphan left alive after
# the crash would write it too once the gate opens.
command = "echo started >> '{long}'; {gate}; echo finished >> '{done}'; echo ok"

[tasks.pause]
operator = "wait"
# Far longer than the moment between seeing it run and the kill.
duration = "10s"

[tasks.after]
operator = "command"
depends_on = ["long"]
command = "echo once >> '{after}'"
"#,
            first = env.file("first.count"),
            long = env.file("long.count"),
            done = env.file("long.done"),
            after = env.file("after.count"),
            gate = wait_for(&env.file("long.gate")),
        ),
    );
    let date = "2026-01-01";
    let mut first_daemon = env.daemon(&[]);
    env.ok(&["trigger", "crash", "--date", date]);

    // Both `long` and `pause` running, each with its external id recorded.
    let (pid, until) = env.wait_until("`long` and `pause` to be running", Duration::from_secs(20), || {
        let v = env.tasks("crash", date);
        let (long, pause) = (task(&v, "long"), task(&v, "pause"));
        if state(long) != "running" || state(pause) != "running" {
            return None;
        }
        let pid = tries(long).first()?["external_ids"]["pid"].as_i64()?;
        let until = tries(pause).first()?["external_ids"]["until"].as_str()?.to_string();
        Some((i32::try_from(pid).unwrap(), until))
    });
    // The command's shell leads its own process group and is past its first line.
    env.wait_until("long's command to run", Duration::from_secs(30), || {
        (lines(&env.file("long.count")) == 1 && !alive(pid).is_empty()).then_some(())
    });

    first_daemon.kill9();

    // What the crash left: both tries still recorded as running, `first` done once.
    let v = env.tasks("crash", date);
    assert_eq!(state(task(&v, "first")), "success", "{v:#}");
    assert_eq!(state(task(&v, "long")), "running", "the crash came too late: {v:#}");
    assert_eq!(state(task(&v, "pause")), "running", "the crash came too late: {v:#}");
    assert!(!alive(pid).is_empty(), "the orphaned process group of long's try 1 should outlive the daemon");

    let _second_daemon = env.daemon(&[]);

    // The orphan is killed on restart (had it been left to end its `sleep 4` on its own,
    // `long.done` below would have two lines).
    env.wait_until("the orphaned process group of long's try 1 to be killed", Duration::from_secs(30), || {
        alive(pid).is_empty().then_some(())
    });
    // Only now may `long` finish: the retry passes the gate, an orphan could not.
    open_gate(&env.file("long.gate"));
    let v = env.wait_run_finished("crash", date, Duration::from_secs(60));
    let logs = env.daemon_logs();

    assert_eq!(v["run"]["state"], "success", "{v:#}\n{logs}");
    assert_eq!(lines(&env.file("first.count")), 1, "`first` finished before the crash and must not run again");
    assert_eq!(lines(&env.file("after.count")), 1, "`after` runs exactly once");
    assert_eq!(lines(&env.file("long.count")), 2, "`long` starts twice: the interrupted try and its retry");
    assert_eq!(lines(&env.file("long.done")), 1, "only the retry of `long` may finish: the orphan must be killed");

    let first = task(&v, "first");
    assert_eq!(tries(first).len(), 1, "{first:#}");

    let long = task(&v, "long");
    let long_tries = tries(long);
    assert_eq!(state(long), "success", "{long:#}");
    assert_eq!(long["try_number"], 2, "{long:#}");
    assert_eq!(long_tries.len(), 2, "{long:#}");
    assert_eq!(long_tries[0]["state"], "failed", "{long:#}");
    let error = long_tries[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("interrupted"), "try 1 should say it was interrupted: {long:#}");
    assert_eq!(long_tries[0]["external_ids"]["pid"], pid, "{long:#}");
    assert_eq!(long_tries[1]["state"], "success", "{long:#}");
    assert_ne!(long_tries[1]["external_ids"]["pid"], pid, "the retry is a new process: {long:#}");

    let pause = task(&v, "pause");
    let pause_tries = tries(pause);
    assert_eq!(state(pause), "success", "{pause:#}");
    assert_eq!(pause["try_number"], 1, "the wait is resumed, not restarted: {pause:#}");
    assert_eq!(pause_tries.len(), 1, "{pause:#}");
    assert_eq!(pause_tries[0]["state"], "success", "{pause:#}");
    assert_eq!(pause_tries[0]["external_ids"]["until"], until.as_str(), "the resumed wait keeps its end: {pause:#}");
    let pause_log = env.ok(&["logs", "crash", "pause", "--date", date]);
    assert!(pause_log.contains("resuming: waiting until"), "{pause_log}");

    let after = task(&v, "after");
    assert_eq!(state(after), "success", "{after:#}");
    assert_eq!(tries(after).len(), 1, "{after:#}");
}

const GOOD_V1: &str = "[tasks.hello]\noperator = \"command\"\ncommand = \"echo good-v1\"\n";
/// An unknown top-level key (with a changed command the daemon must not pick up).
const GOOD_BROKEN: &str = "nope = 1\n[tasks.hello]\noperator = \"command\"\ncommand = \"echo good-v2\"\n";
/// Not even TOML.
const BAD: &str = "[tasks.x\noperator = \"noop\"\n";

/// A file that stops loading neither disturbs the other DAGs nor its own DAG: the daemon keeps
/// the last good version and says which files fail and why.
#[test]
fn broken_dag_file_does_not_disturb_other_dags() {
    let env = Env::new();
    env.write_dag("good.toml", GOOD_V1);
    let mut daemon = env.daemon(&[]);

    env.write_dag("bad.toml", BAD);
    env.wait_until("the daemon to reload the folder with bad.toml", Duration::from_secs(10), || {
        daemon.logs().contains("DAG folder changed; reloaded").then_some(())
    });
    let out = env.ok(&["trigger", "good", "--date", "2026-01-01", "--wait"]);
    assert!(out.contains("success"), "{out}");
    assert!(env.ok(&["logs", "good", "hello", "--date", "2026-01-01"]).contains("good-v1"));

    env.write_dag("good.toml", GOOD_BROKEN);
    env.wait_until("the daemon to keep good's last good version", Duration::from_secs(10), || {
        daemon.logs().contains("keeping its last good version").then_some(())
    });
    // The CLI reads a DAG from the folder it is given, and good.toml no longer loads there (see
    // `cli_commands_work_while_the_dag_file_is_broken`): talk to the daemon's database from
    // another checkout of the folder that still has the good version, as a deploy machine
    // would. The daemon must run the new run with the version it kept.
    let checkout = env.root().join("checkout");
    std::fs::create_dir(&checkout).unwrap();
    std::fs::write(checkout.join("good.toml"), GOOD_V1).unwrap();
    let out = env.ok_in(&checkout, &["trigger", "good", "--date", "2026-01-02", "--wait"]);
    assert!(out.contains("success"), "{out}");
    let v: Value =
        serde_json::from_str(&env.ok_in(&checkout, &["tasks", "good", "--date", "2026-01-02", "--json"])).unwrap();
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    let log = env.ok_in(&checkout, &["logs", "good", "hello", "--date", "2026-01-02"]);
    assert!(log.contains("good-v1") && !log.contains("good-v2"), "the last good version runs:\n{log}");

    let o = env.run(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(1), "broken files make `list` exit 1\n{}", env.explain(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let failed = list["failed_files"].as_array().expect("failed_files");
    assert_eq!(failed.len(), 2, "{list:#}");
    let message = |file: &str| -> String {
        let f = failed
            .iter()
            .find(|f| f["file"].as_str().is_some_and(|p| p.ends_with(file)))
            .unwrap_or_else(|| panic!("{file} is not in failed_files: {list:#}"));
        f["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(message("good.toml").contains("unknown key `nope`"), "{list:#}");
    assert!(!message("bad.toml").trim().is_empty(), "{list:#}");
    assert!(daemon.is_running(), "the daemon survives broken files\n{}", env.daemon_logs());
}

/// What `broken_dag_file_does_not_disturb_other_dags` would do with the folder the daemon
/// watches: look at and trigger a DAG whose file broke after the daemon loaded it.
#[test]
fn cli_commands_work_while_the_dag_file_is_broken() {
    let env = Env::new();
    env.write_dag("good.toml", GOOD_V1);
    let daemon = env.daemon(&[]);
    env.ok(&["trigger", "good", "--date", "2026-01-01", "--wait"]);
    env.write_dag("good.toml", GOOD_BROKEN);
    env.wait_until("the daemon to keep good's last good version", Duration::from_secs(10), || {
        daemon.logs().contains("keeping its last good version").then_some(())
    });
    // The runs of the DAG can still be looked at...
    assert_eq!(env.tasks("good", "2026-01-01")["run"]["state"], "success");
    assert!(env.ok(&["logs", "good", "hello", "--date", "2026-01-01"]).contains("good-v1"));
    // ... and a new run goes to the daemon, which runs the last good version.
    let out = env.ok(&["trigger", "good", "--date", "2026-01-02", "--wait"]);
    assert!(out.contains("success"), "{out}");
    assert!(env.ok(&["logs", "good", "hello", "--date", "2026-01-02"]).contains("good-v1"));
}

/// SIGTERM: no new task starts, the running one finishes within the grace period and is
/// recorded, the daemon exits 0; the next daemon carries on with the run.
#[test]
fn sigterm_lets_running_tasks_finish_within_grace() {
    let env = Env::new();
    let gate = env.file("work.gate");
    env.write_dag(
        "slow.toml",
        &format!(
            "[tasks.work]\noperator = \"command\"\ncommand = \"{}; echo done\"\n\
             [tasks.next]\noperator = \"command\"\ndepends_on = [\"work\"]\ncommand = \"echo next\"\n",
            wait_for(&gate)
        ),
    );
    let date = "2026-01-01";
    let mut daemon = env.daemon(&["--grace-period", "10m"]);
    env.ok(&["trigger", "slow", "--date", date]);
    env.wait_until("`work` to run", Duration::from_secs(15), || {
        let v = env.tasks("slow", date);
        let work = task(&v, "work");
        (state(work) == "running" && tries(work).first()?["external_ids"]["pid"].is_i64()).then_some(())
    });

    daemon.sigterm();
    env.wait_until("the daemon to start stopping", Duration::from_secs(30), || {
        daemon.logs().contains("stopping: no new tasks start").then_some(())
    });
    assert!(daemon.is_running(), "the daemon waits for the running task\n{}", env.daemon_logs());
    open_gate(&gate);
    let status = daemon.wait_exit(Duration::from_secs(60));
    let logs = env.daemon_logs();
    let status = status.unwrap_or_else(|| panic!("the daemon did not exit after SIGTERM\n{logs}"));
    assert_eq!(status.code(), Some(0), "{logs}");

    let v = env.tasks("slow", date);
    let work = task(&v, "work");
    assert_eq!(state(work), "success", "the running task finishes within the grace period: {v:#}\n{logs}");
    assert_eq!(tries(work).len(), 1, "{v:#}");
    assert_eq!(tries(work)[0]["state"], "success", "{v:#}");
    let next = task(&v, "next");
    assert!(tries(next).is_empty(), "no task starts after SIGTERM: {v:#}\n{logs}");
    assert_eq!(v["run"]["state"], "running", "{v:#}");

    // The next daemon finishes the run without running `work` again.
    let _daemon = env.daemon(&[]);
    let v = env.wait_run_finished("slow", date, Duration::from_secs(15));
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    assert_eq!(tries(task(&v, "work")).len(), 1, "{v:#}");
    assert_eq!(tries(task(&v, "next")).len(), 1, "{v:#}");
}

/// A backfill across the spring-forward change creates one run per schedule tick, each with
/// its own `ds`; running it again creates nothing.
#[test]
fn backfill_creates_one_run_per_tick_with_its_ds() {
    let env = Env::new();
    // `end_date` only keeps the daemon from creating today's scheduled run (catchup is off,
    // so without it the latest tick before now would run too).
    env.write_dag(
        "london.toml",
        "schedule = \"0 5 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-01-01\"\nend_date = \"2026-04-30\"\n\
         [tasks.report]\noperator = \"command\"\ncommand = \"echo {{ ds }}\"\n",
    );
    let _daemon = env.daemon(&[]);
    let days = ["2026-03-27", "2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"];

    let out = env.ok(&["trigger", "london", "--from", "2026-03-27", "--to", "2026-03-31", "--wait"]);
    assert_eq!(out.matches(" created").count(), 5, "{out}");
    for day in days {
        assert!(out.contains(&format!("ds {day}  created")), "{out}");
    }

    let mut runs = env.runs("london");
    runs.sort_by_key(|r| time(&r["logical_date"]));
    assert_eq!(runs.len(), 5, "{runs:#?}");
    // 05:00 London: GMT before 29 March, BST from then on.
    let expected = [
        ("2026-03-27T05:00:00Z", "backfill__2026-03-27T05:00:00+00:00"),
        ("2026-03-28T05:00:00Z", "backfill__2026-03-28T05:00:00+00:00"),
        ("2026-03-29T04:00:00Z", "backfill__2026-03-29T05:00:00+01:00"),
        ("2026-03-30T04:00:00Z", "backfill__2026-03-30T05:00:00+01:00"),
        ("2026-03-31T04:00:00Z", "backfill__2026-03-31T05:00:00+01:00"),
    ];
    for (run, (logical, run_id)) in runs.iter().zip(expected) {
        assert_eq!(time(&run["logical_date"]), logical.parse::<DateTime<Utc>>().unwrap(), "{run:#}");
        assert_eq!(run["run_id"], run_id, "{run:#}");
        assert_eq!(run["kind"], "backfill", "{run:#}");
        assert_eq!(run["state"], "success", "{run:#}");
    }
    for day in days {
        let log = env.ok(&["logs", "london", "report", "--date", day]);
        assert!(log.lines().any(|l| l.trim() == day), "the log of {day} prints its ds:\n{log}");
        for other in days.iter().filter(|d| **d != day) {
            assert!(!log.contains(other), "the log of {day} mentions {other}:\n{log}");
        }
    }

    let again = env.ok(&["trigger", "london", "--from", "2026-03-27", "--to", "2026-03-31", "--wait"]);
    assert_eq!(again.matches("left alone").count(), 5, "{again}");
    assert!(!again.contains("created"), "{again}");
    assert_eq!(env.runs("london").len(), 5);
}

/// `max_active_runs = 1`: the runs of a backfill run one after the other.
#[test]
fn max_active_runs_is_never_exceeded() {
    let env = Env::new();
    env.write_dag(
        "serial.toml",
        "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\nend_date = \"2026-01-31\"\nmax_active_runs = 1\n\
         [tasks.nap]\noperator = \"command\"\ncommand = \"sleep 0.5\"\n",
    );
    let _daemon = env.daemon(&[]);
    env.ok(&["trigger", "serial", "--from", "2026-01-01", "--to", "2026-01-03", "--wait"]);

    let mut runs = env.runs("serial");
    assert_eq!(runs.len(), 3, "{runs:#?}");
    for r in &runs {
        assert_eq!(r["state"], "success", "{r:#}");
    }
    runs.sort_by_key(|r| time(&r["started_at"]));
    for pair in runs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            time(&a["ended_at"]) <= time(&b["started_at"]),
            "{} (until {}) overlaps {} (from {})",
            a["run_id"],
            a["ended_at"],
            b["run_id"],
            b["started_at"]
        );
    }
    // Oldest logical date first.
    let order: Vec<DateTime<Utc>> = runs.iter().map(|r| time(&r["logical_date"])).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{runs:#?}");
}

/// `clear --task b --downstream` runs a failed task and what follows it again, and nothing
/// else; `mark` changes a task's state by hand.
#[test]
fn clear_and_mark() {
    let env = Env::new();
    let flag = env.file("fixed.flag");
    env.write_dag(
        "flaky.toml",
        &format!(
            "[tasks.a]\noperator = \"command\"\ncommand = \"echo a >> '{a}'\"\n\
             [tasks.b]\noperator = \"command\"\ndepends_on = [\"a\"]\ncommand = \"test -f '{flag}'\"\n\
             [tasks.c]\noperator = \"command\"\ndepends_on = [\"b\"]\ncommand = \"echo c\"\n",
            a = env.file("a.count"),
        ),
    );
    let date = "2026-01-01";
    let _daemon = env.daemon(&[]);

    let o = env.run(&["trigger", "flaky", "--date", date, "--wait"]);
    assert_eq!(o.status.code(), Some(1), "a failed run exits 1\n{}", env.explain(&o));
    let v = env.tasks("flaky", date);
    assert_eq!(v["run"]["state"], "failed", "{v:#}");
    assert_eq!(state(task(&v, "a")), "success", "{v:#}");
    assert_eq!(state(task(&v, "b")), "failed", "{v:#}");
    assert_eq!(state(task(&v, "c")), "upstream_failed", "{v:#}");

    std::fs::write(&flag, "").unwrap();
    let out = env.ok(&["clear", "flaky", "--date", date, "--task", "b", "--downstream"]);
    assert!(out.contains("cleared 2 task(s)") && out.contains("b, c"), "{out}");
    let v = env.wait_run_finished("flaky", date, Duration::from_secs(20));
    assert_eq!(v["run"]["state"], "success", "{v:#}");

    let a = task(&v, "a");
    assert_eq!(state(a), "success", "{v:#}");
    assert_eq!(tries(a).len(), 1, "`a` was not cleared: {v:#}");
    assert_eq!(lines(&env.file("a.count")), 1);
    let b = task(&v, "b");
    let b_tries = tries(b);
    assert_eq!(state(b), "success", "{v:#}");
    assert_eq!(b["try_number"], 2, "{v:#}");
    assert_eq!(b_tries.len(), 2, "{v:#}");
    assert_eq!(b_tries[0]["state"], "failed", "{v:#}");
    assert_eq!(b_tries[1]["state"], "success", "{v:#}");
    let c = task(&v, "c");
    assert_eq!(state(c), "success", "{v:#}");
    assert_eq!(tries(c).len(), 1, "{v:#}");

    let out = env.ok(&["mark", "flaky", "failed", "--date", date, "--task", "a"]);
    assert!(out.contains("a"), "{out}");
    let v = env.tasks("flaky", date);
    assert_eq!(state(task(&v, "a")), "failed", "{v:#}");
    assert_eq!(state(task(&v, "b")), "success", "only `a` is marked: {v:#}");
    assert_eq!(tries(task(&v, "a")).len(), 1, "marking runs nothing: {v:#}");
}

/// A paused DAG starts no run; unpaused, its queued run goes ahead.
#[test]
fn pause_stops_new_runs() {
    let env = Env::new();
    env.write_dag("held.toml", "[tasks.hi]\noperator = \"command\"\ncommand = \"echo hi\"\n");
    let date = "2026-01-01";
    let _daemon = env.daemon(&[]);
    assert!(env.ok(&["pause", "held"]).contains("held paused"));
    env.ok(&["trigger", "held", "--date", date]);

    // The daemon looks at the database every second: for two seconds the run must stay queued.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let v = env.tasks("held", date);
        assert_eq!(v["run"]["state"], "queued", "a paused DAG's run started: {v:#}\n{}", env.daemon_logs());
        assert!(tries(task(&v, "hi")).is_empty(), "{v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = env.json(&["list", "--json"]);
    assert_eq!(list["dags"][0]["paused"], true, "{list:#}");

    assert!(env.ok(&["unpause", "held"]).contains("held unpaused"));
    let v = env.wait_run_finished("held", date, Duration::from_secs(15));
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    assert_eq!(tries(task(&v, "hi")).len(), 1, "{v:#}");
}

/// `mark DAG failed --date D` on a run in progress: the run and its unfinished tasks are
/// failed, and stay so: the try that was running when the mark came does not bring the run
/// back to life, and nothing downstream starts.
#[test]
fn marking_a_running_run_failed_stops_it() {
    let env = Env::new();
    env.write_dag(
        "stop.toml",
        &format!(
            "[tasks.a]\noperator = \"command\"\ncommand = \"{gate}\"\n\
             [tasks.b]\noperator = \"command\"\ndepends_on = [\"a\"]\ncommand = \"echo b >> '{b}'\"\n",
            b = env.file("b.count"),
            gate = wait_for(&env.file("a.gate")),
        ),
    );
    let date = "2026-01-01";
    let _daemon = env.daemon(&[]);
    env.ok(&["trigger", "stop", "--date", date]);
    env.wait_until("`a` to run", Duration::from_secs(15), || {
        (state(task(&env.tasks("stop", date), "a")) == "running").then_some(())
    });
    let out = env.ok(&["mark", "stop", "failed", "--date", date]);
    assert!(out.contains("a, b"), "{out}");
    open_gate(&env.file("a.gate"));

    // The try of `a` that was running ends (the mark does not kill it)...
    env.wait_until("a's try to end", Duration::from_secs(15), || {
        let v = env.tasks("stop", date);
        (tries(task(&v, "a"))[0]["state"] != "running").then_some(())
    });
    // ... and for two seconds after, what was marked stays marked.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let v = env.tasks("stop", date);
        let logs = env.daemon_logs();
        assert_eq!(v["run"]["state"], "failed", "the run marked failed came back: {v:#}\n{logs}");
        assert_eq!(state(task(&v, "a")), "failed", "{v:#}\n{logs}");
        assert_eq!(state(task(&v, "b")), "failed", "{v:#}\n{logs}");
        assert!(tries(task(&v, "b")).is_empty(), "`b` ran after its run was marked failed: {v:#}\n{logs}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lines(&env.file("b.count")), 0);
}

/// `clear --task a` while `a` runs: `a` runs again (a new try) after the current try ends,
/// as the store keeps the cleared state over the late result of the old try.
#[test]
fn clearing_a_running_task_runs_it_again() {
    let env = Env::new();
    env.write_dag(
        "again.toml",
        &format!(
            "[tasks.a]\noperator = \"command\"\ncommand = \"echo a >> '{a}'; {gate}\"\n\
             [tasks.b]\noperator = \"command\"\ndepends_on = [\"a\"]\ncommand = \"echo b\"\n",
            a = env.file("a.count"),
            gate = wait_for(&env.file("a.gate")),
        ),
    );
    let date = "2026-01-01";
    let _daemon = env.daemon(&[]);
    env.ok(&["trigger", "again", "--date", date]);
    env.wait_until("`a` to run", Duration::from_secs(15), || {
        (state(task(&env.tasks("again", date), "a")) == "running" && lines(&env.file("a.count")) == 1).then_some(())
    });
    let out = env.ok(&["clear", "again", "--date", date, "--task", "a"]);
    assert!(out.contains("cleared 1 task(s)"), "{out}");
    open_gate(&env.file("a.gate"));

    let v = env.wait_run_finished("again", date, Duration::from_secs(20));
    let logs = env.daemon_logs();
    let a = task(&v, "a");
    assert_eq!(v["run"]["state"], "success", "{v:#}\n{logs}");
    assert_eq!(state(a), "success", "a run cannot succeed with a task that never finished: {v:#}\n{logs}");
    assert_eq!(tries(a).len(), 2, "the cleared task runs again: {v:#}\n{logs}");
    assert_eq!(lines(&env.file("a.count")), 2);
}

/// SIGTERM with a task that outlasts the grace period: the daemon exits 0 at the end of the
/// grace, the task's process group is stopped with it, and the next start counts the cut-off
/// try as interrupted.
#[test]
fn sigterm_past_the_grace_period_cuts_the_task_off() {
    let env = Env::new();
    env.write_dag("endless.toml", "[tasks.forever]\noperator = \"command\"\ncommand = \"sleep 30; echo never\"\n");
    let date = "2026-01-01";
    let mut daemon = env.daemon(&["--grace-period", "1s"]);
    env.ok(&["trigger", "endless", "--date", date]);
    let pid = env.wait_until("`forever` to run", Duration::from_secs(15), || {
        let v = env.tasks("endless", date);
        let t = task(&v, "forever");
        let pid = tries(t).first()?["external_ids"]["pid"].as_i64()?;
        let pid = i32::try_from(pid).unwrap();
        alive(pid).iter().any(|p| p.comm == "sleep").then_some(pid)
    });

    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(10));
    let logs = env.daemon_logs();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "the daemon exits 0 at the end of the grace\n{logs}");
    env.wait_until("the cut-off task's process group to stop", Duration::from_secs(10), || {
        alive(pid).is_empty().then_some(())
    });
    let v = env.tasks("endless", date);
    assert_eq!(tries(task(&v, "forever"))[0]["state"], "running", "left for the next start to recover: {v:#}");

    let _daemon = env.daemon(&[]);
    let v = env.wait_run_finished("endless", date, Duration::from_secs(15));
    let t = task(&v, "forever");
    assert_eq!(v["run"]["state"], "failed", "{v:#}");
    assert_eq!(state(t), "failed", "{v:#}");
    assert_eq!(tries(t).len(), 1, "{v:#}");
    assert!(tries(t)[0]["error"].as_str().unwrap_or_default().contains("interrupted"), "{v:#}");
}

/// A second daemon on the same database used to treat the first one's live tries as orphans,
/// kill them and run them again (a task ended with 3 tries of a maximum of 2). It must refuse to
/// start at once, exit 1 naming the holder, and touch nothing; a `kill -9`ed daemon must not
/// block the next start.
#[test]
fn a_second_daemon_on_the_same_database_refuses_to_start_and_touches_nothing() {
    if on_shared_database() {
        // Several schedulers share a PostgreSQL database (see the tests at the end).
        return;
    }
    let env = Env::new();
    let gate = env.file("gate");
    env.write_dag(
        "once.toml",
        &format!(
            "[tasks.a]\noperator = \"command\"\nretries = 1\nretry_delay = \"1s\"\ncommand = \"echo a >> '{a}'; {wait}\"\n\
             [tasks.b]\noperator = \"command\"\ndepends_on = [\"a\"]\ncommand = \"echo b >> '{b}'\"\n",
            a = env.file("a.count"),
            b = env.file("b.count"),
            wait = wait_for(&gate),
        ),
    );
    let date = "2026-01-01";
    let mut first = env.daemon(&[]);
    env.ok(&["trigger", "once", "--date", date]);
    // Running, its pid recorded: the first daemon has nothing to write until the gate opens.
    env.wait_until("`a` to run", Duration::from_secs(30), || {
        let v = env.tasks("once", date);
        (lines(&env.file("a.count")) == 1 && tries(task(&v, "a")).first()?["external_ids"]["pid"].is_i64())
            .then_some(())
    });
    let files = || -> Vec<Vec<u8>> {
        ["sluice.db", "sluice.db-wal"].iter().map(|f| std::fs::read(env.root().join(f)).unwrap_or_default()).collect()
    };
    let before = files();

    let second = env.command(&env.dags()).arg("scheduler").output().expect("dagctl runs");
    let err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "the second daemon must refuse to start:\n{err}");
    assert!(err.contains("another scheduler is already running on this database"), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "the holder is named: {err}");
    assert!(err.contains("on host ") && err.contains("since "), "{err}");
    assert!(!err.contains("scheduler running") && !err.contains("recovered"), "it did nothing: {err}");
    assert!(first.is_running());
    // The CLI works beside the running daemon, and the second daemon wrote nothing.
    assert_eq!(env.tasks("once", date)["run"]["state"], "running");
    let v = env.tasks("once", date);
    assert_eq!(tries(task(&v, "a")).len(), 1, "{v:#}");
    assert!(files() == before, "the second daemon touched the database");

    open_gate(&gate);
    let v = env.wait_run_finished("once", date, Duration::from_secs(60));
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    assert_eq!(tries(task(&v, "a")).len(), 1, "every task ran exactly once: {v:#}");
    assert_eq!(tries(task(&v, "b")).len(), 1, "{v:#}");
    assert_eq!((lines(&env.file("a.count")), lines(&env.file("b.count"))), (1, 1));

    // A killed holder leaves the lock file behind, but not the lock.
    first.kill9();
    let mut third = env.daemon(&[]);
    assert!(third.is_running());
}

/// `dagctl schedulers` names the running scheduler with the tries it holds, and nobody once it
/// was killed.
#[test]
fn schedulers_lists_the_running_daemon_and_nobody_after_it_died() {
    let env = Env::new();
    let gate = env.file("gate");
    env.write_dag(
        "held.toml",
        &format!("[tasks.a]\noperator = \"command\"\ncommand = \"{wait}\"\n", wait = wait_for(&gate)),
    );
    assert_eq!(env.json(&["schedulers", "--json"]), serde_json::json!([]), "none before the daemon");
    let mut daemon = env.daemon(&[]);
    env.ok(&["trigger", "held", "--date", "2026-01-01"]);
    let listed = env.wait_until("the daemon to hold its try", Duration::from_secs(30), || {
        let v = env.json(&["schedulers", "--json"]);
        (v[0]["tries_held"] == 1).then_some(v)
    });
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed:#}");
    assert_eq!(rows[0]["pid"], daemon.pid(), "{listed:#}");
    assert!(rows[0]["host"].as_str().is_some_and(|h| !h.is_empty()), "{listed:#}");
    // A lock needs no renewal; a lease does.
    assert_eq!(rows[0]["renewed_at"].is_null(), !on_shared_database(), "{listed:#}");
    let table = env.ok(&["schedulers"]);
    assert!(table.contains(&daemon.pid().to_string()) && table.contains("TRIES HELD"), "{table}");

    daemon.kill9();
    env.wait_until("the dead daemon to be gone from the list", Duration::from_secs(30), || {
        (env.json(&["schedulers", "--json"]) == serde_json::json!([])).then_some(())
    });
    assert!(env.ok(&["schedulers"]).contains("no scheduler is running"));
    open_gate(&gate);
}

/// The janitor's `dagctl clusters terminate-finished` failed with `sh: dagctl: not found`:
/// the README's alias does not reach task shells. A task finds the daemon's own `dagctl` on its
/// PATH, and the daemon's state through SLUICE_DB.
#[test]
fn a_task_finds_the_daemons_dagctl_and_database() {
    if sluice_store::testing::Backend::current() == sluice_store::testing::Backend::Postgres {
        // A server URL may carry a password: tasks are never given it (`DbUrl::for_task`).
        return;
    }
    let env = Env::new();
    let out = env.file("seen.json");
    env.write_dag(
        "nested.toml",
        &format!(
            "[tasks.ask]\noperator = \"command\"\ncwd = \"/\"\ncommand = \"dagctl runs nested --json > '{out}'\"\n"
        ),
    );
    // A PATH without the folder of the dagctl under test.
    let n = env.daemons.get() + 1;
    env.daemons.set(n);
    let log = env.root().join(format!("daemon-{n}.log"));
    let child = env
        .command(&env.dags())
        .arg("scheduler")
        .env("PATH", "/usr/bin:/bin")
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _daemon = Daemon { child, log };
    env.wait_until("the daemon to start", Duration::from_secs(30), || {
        std::fs::read_to_string(env.root().join(format!("daemon-{n}.log")))
            .unwrap_or_default()
            .contains("scheduler running")
            .then_some(())
    });
    let date = "2026-01-01";
    env.ok(&["trigger", "nested", "--date", date]);
    let v = env.wait_run_finished("nested", date, Duration::from_secs(60));
    assert_eq!(v["run"]["state"], "success", "{v:#}\n{}", env.ok(&["logs", "nested", "ask", "--date", date]));
    let seen: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(seen[0]["dag_id"], "nested", "the nested dagctl read the daemon's database: {seen:#}");
}

/// A DAG with `paused_at_creation` starts paused when the daemon first sees it (the shipped
/// AWS pipelines, which a machine without an AWS account must not run); unpaused, it runs.
#[test]
fn a_dag_paused_at_creation_runs_only_once_unpaused() {
    let env = Env::new();
    env.write_dag(
        "later.toml",
        "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\npaused_at_creation = true\n\
         [tasks.t]\noperator = \"command\"\ncommand = \"echo ran\"\n",
    );
    let daemon = env.daemon(&[]);
    let list = env.json(&["list", "--json"]);
    assert_eq!(list["dags"][0]["paused"], true, "{list:#}");
    assert!(env.runs("later").is_empty(), "a paused DAG gets no run");
    env.ok(&["unpause", "later"]);
    let runs = env.wait_until("the unpaused DAG's run", Duration::from_secs(60), || {
        let runs = env.runs("later");
        (runs.len() == 1 && runs[0]["state"] == "success").then_some(runs)
    });
    assert_eq!(runs[0]["kind"], "scheduled");
    // A reload keeps what the user chose.
    std::fs::write(
        env.dags().join("later.toml"),
        std::fs::read_to_string(env.dags().join("later.toml")).unwrap() + "# edited\n",
    )
    .unwrap();
    env.wait_until("the reload", Duration::from_secs(30), || {
        daemon.logs().contains("DAG folder changed; reloaded").then_some(())
    });
    assert_eq!(env.json(&["list", "--json"])["dags"][0]["paused"], false);
}

/// `dagctl trigger --wait` printed a line only when a task ended: the main job was silent for
/// six minutes. Without a terminal it prints what runs and the last line of its log.
#[test]
fn trigger_wait_shows_what_runs_and_its_last_log_line() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let gate = env.file("gate");
    env.write_dag(
        "chatty.toml",
        &format!(
            "[tasks.spark]\noperator = \"command\"\ncommand = \"echo 'Stage 3: 40% done'; {}\"\n",
            wait_for(&gate)
        ),
    );
    let _daemon = env.daemon(&[]);
    let mut child = env
        .command(&env.dags())
        .args(["trigger", "chatty", "--date", "2026-01-01", "--wait"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        seen.push(line.trim_end().to_string());
        if line.contains("spark") && line.contains("running") && line.contains("Stage 3: 40% done") {
            // Seen while the task is held running: let it go.
            open_gate(&gate);
        }
        line.clear();
    }
    assert!(child.wait().unwrap().success(), "{seen:#?}");
    let all = seen.join("\n");
    assert!(all.contains("spark") && all.contains("started (try 1)"), "{all}");
    assert!(std::path::Path::new(&gate).exists(), "the running status with the log's last line was printed:\n{all}");
    assert!(all.contains("success"), "{all}");
}

/// `dagctl test` shows each task's output as it comes, as `airflow dags test` does.
#[test]
fn dagctl_test_prints_each_tasks_output() {
    let env = Env::new();
    env.write_dag(
        "shown.toml",
        "[tasks.one]\noperator = \"command\"\ncommand = \"echo first line; echo second line\"\n\
         [tasks.two]\noperator = \"command\"\ndepends_on = [\"one\"]\ncommand = \"echo from two >&2\"\n",
    );
    let out = env.ok(&["test", "shown", "--date", "2026-01-01"]);
    assert!(out.contains("[one] first line") && out.contains("[one] second line"), "{out}");
    assert!(out.contains("[two] from two"), "stderr of a task is output too: {out}");
    assert!(out.contains("run ") && out.contains("success"), "{out}");
}

/// A try's log file is created by its first line: a `noop` writes none, and `dagctl logs`
/// says so in one line and exits 0; a try that failed has its reason in its log.
#[test]
fn logs_of_a_try_that_wrote_nothing_say_so_and_a_failed_try_has_its_reason() {
    let env = Env::new();
    env.write_dag(
        "quiet.toml",
        "[tasks.nothing]\noperator = \"noop\"\n\
         [tasks.fails]\noperator = \"command\"\ndepends_on = [\"nothing\"]\ncommand = \"exit 4\"\n",
    );
    let _daemon = env.daemon(&[]);
    let o = env.run(&["trigger", "quiet", "--date", "2026-01-01", "--wait"]);
    assert_eq!(o.status.code(), Some(1), "the run fails\n{}", env.explain(&o));
    let out = env.ok(&["logs", "quiet", "nothing", "--date", "2026-01-01"]);
    assert_eq!(out, "try 1 of task nothing in manual__2026-01-01T00:00:00+00:00 wrote no log\n");
    let out = env.ok(&["logs", "quiet", "fails", "--date", "2026-01-01"]);
    assert!(
        out.contains("try 1 of task fails") && out.ends_with("[sluice] failed: command exited with status 4\n"),
        "{out}"
    );
}

/// `deadline = "100000000000000000s"` passed `dagctl validate`, then `dagctl next` and the
/// daemon panicked (`DateTime + TimeDelta overflowed`) on every restart, taking every other DAG
/// down with it. Validation rejects it, with file and line; the daemon runs the other DAGs.
#[test]
fn a_deadline_too_far_away_is_rejected_and_the_daemon_runs_the_other_dags() {
    let env = Env::new();
    env.write_dag(
        "far.toml",
        "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\ndeadline = \"100000000000000000s\"\n\
         [tasks.t]\noperator = \"noop\"\n",
    );
    env.write_dag("near.toml", "[tasks.t]\noperator = \"command\"\ncommand = \"echo near\"\n");
    let o = env.run(&["validate"]);
    assert_eq!(o.status.code(), Some(1), "{}", env.explain(&o));
    let out = text(&o.stdout);
    let far = env.dags().join("far.toml").display().to_string();
    assert!(out.lines().any(|l| l.starts_with(&format!("{far}:3: error:")) && l.contains("deadline")), "{out}");
    let next = env.run(&["next", "far"]);
    assert_eq!(next.status.code(), Some(1), "{}", env.explain(&next));
    assert!(!text(&next.stderr).contains("panicked"), "{}", env.explain(&next));

    let mut daemon = env.daemon(&[]);
    let v = {
        env.ok(&["trigger", "near", "--date", "2026-01-01"]);
        env.wait_run_finished("near", "2026-01-01", Duration::from_secs(60))
    };
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    assert!(daemon.is_running(), "{}", env.daemon_logs());
    let list = env.run(&["list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(list["failed_files"][0]["file"].as_str().unwrap().ends_with("far.toml"), "{list:#}");
}

/// Before any scheduler saw it, `dagctl list` said a `paused_at_creation` DAG was not paused,
/// and the main job's script paused and then unpaused it, leaving it running.
#[test]
fn list_shows_a_dag_paused_at_creation_as_paused_before_any_scheduler_saw_it() {
    let env = Env::new();
    env.write_dag(
        "later.toml",
        "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\npaused_at_creation = true\n[tasks.t]\noperator = \"noop\"\n",
    );
    env.write_dag("now.toml", "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\n[tasks.t]\noperator = \"noop\"\n");
    let list = env.json(&["list", "--json"]);
    let paused = |id: &str| list["dags"].as_array().unwrap().iter().find(|d| d["id"] == id).unwrap()["paused"].clone();
    assert_eq!((paused("later"), paused("now")), (Value::Bool(true), Value::Bool(false)), "{list:#}");
    // Once the store knows it, the store's flag rules.
    env.ok(&["unpause", "later"]);
    let list = env.json(&["list", "--json"]);
    assert_eq!(list["dags"].as_array().unwrap().iter().find(|d| d["id"] == "later").unwrap()["paused"], false);
}

// --- Several schedulers on one PostgreSQL database (these run in the `on_postgres` pass) ---

fn on_shared_database() -> bool {
    sluice_store::testing::Backend::current() == sluice_store::testing::Backend::Postgres
}

/// `dagctl events --json` of one DAG, parsed.
fn events_of(env: &Env, dag: &str) -> Vec<Value> {
    env.ok(&["events", "--dag", dag, "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Four schedulers on one database race for the same ready tasks: every task ran exactly
/// once, and the store holds one try per task. (`SLUICE_CLAIM_RACE_TASKS` sets how many; the
/// default keeps the suite's time.)
#[test]
fn four_schedulers_racing_for_the_same_tasks_run_each_exactly_once() {
    if !on_shared_database() {
        return;
    }
    let n: usize = std::env::var("SLUICE_CLAIM_RACE_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let env = Env::new();
    let out = env.file("ran.txt");
    let mut dag = String::new();
    for i in 0..n {
        // The shell's parent is the scheduler that ran the task.
        dag.push_str(&format!("[tasks.t{i}]\noperator = \"command\"\ncommand = \"echo t{i} $PPID >> '{out}'\"\n"));
    }
    env.write_dag("race.toml", &dag);
    let daemons: Vec<Daemon> = (0..4).map(|_| env.daemon(&[])).collect();
    assert_eq!(env.json(&["schedulers", "--json"]).as_array().map(Vec::len), Some(4), "four schedulers listed");
    let started = Instant::now();
    env.ok(&["trigger", "race", "--date", "2026-01-01"]);
    let v = env.wait_run_finished("race", "2026-01-01", Duration::from_secs(600));
    let took = started.elapsed();
    assert_eq!(v["run"]["state"], "success", "{}", env.daemon_logs());
    let ran = std::fs::read_to_string(&out).unwrap();
    let mut ids: Vec<&str> = ran.lines().filter_map(|l| l.split(' ').next()).collect();
    ids.sort_unstable();
    let mut expected: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>(), "every task ran exactly once");
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(tries(t).len(), 1, "one try per task: {t:#}");
    }
    let mut per_scheduler: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in ran.lines() {
        *per_scheduler.entry(l.split(' ').nth(1).unwrap_or("?")).or_default() += 1;
    }
    let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect();
    println!("{n} tasks on 4 schedulers {pids:?} in {took:.1?}; tasks per scheduler pid: {per_scheduler:?}");
}

/// `kill -9` of the scheduler running a command, with a second one running: the second takes
/// the try over once the first's lease runs out, fails it as interrupted (its process died with
/// its scheduler), and the retry finishes the run. The failover time is printed.
#[test]
fn kill_dash_nine_of_one_scheduler_hands_its_try_to_another() {
    if !on_shared_database() {
        return;
    }
    let env = Env::new();
    let gate = env.file("gate");
    let owners = env.file("owners.txt");
    env.write_dag(
        "failover.toml",
        &format!(
            "[tasks.a]\noperator = \"command\"\nretries = 1\nretry_delay = \"0s\"\n\
             command = \"echo $PPID >> '{owners}'; {wait}\"\n",
            wait = wait_for(&gate)
        ),
    );
    let mut daemons = [env.daemon(&[]), env.daemon(&[])];
    env.ok(&["trigger", "failover", "--date", "2026-01-01"]);
    let owner: u32 = env.wait_until("a scheduler to run `a`", Duration::from_secs(30), || {
        std::fs::read_to_string(&owners).ok()?.lines().next()?.trim().parse().ok()
    });
    let k = daemons.iter().position(|d| d.pid() == owner).expect("the task's parent is one of the schedulers");
    let killed_at = Utc::now();
    daemons[k].kill9();
    let survivor = daemons[1 - k].pid();
    let v = env.wait_until("the other scheduler to start the retry", Duration::from_secs(60), || {
        let v = env.tasks("failover", "2026-01-01");
        (tries(task(&v, "a")).len() == 2).then_some(v)
    });
    let first = &tries(task(&v, "a"))[0];
    assert_eq!(first["state"], "failed", "{v:#}");
    assert!(first["error"].as_str().unwrap_or_default().contains("interrupted"), "{v:#}");
    let interrupted = events_of(&env, "failover")
        .into_iter()
        .find(|e| e["kind"]["type"] == "try_interrupted")
        .expect("a try_interrupted event");
    println!(
        "failover (kill -9 to the try taken over, default lease): {:.1} s",
        (time(&interrupted["at"]) - killed_at).num_milliseconds() as f64 / 1000.0
    );
    open_gate(&gate);
    let v = env.wait_run_finished("failover", "2026-01-01", Duration::from_secs(60));
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    let ran: Vec<u32> =
        std::fs::read_to_string(&owners).unwrap().lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(ran, [owner, survivor], "the retry ran on the survivor");
    assert_eq!(env.json(&["schedulers", "--json"]).as_array().map(Vec::len), Some(1), "only the survivor is listed");
}

/// Four schedulers see the same due cron ticks at once (a paused DAG with five days to catch
/// up, unpaused while they all run): each tick makes one run, and each task runs once.
#[test]
fn a_cron_tick_seen_by_four_schedulers_creates_one_run() {
    if !on_shared_database() {
        return;
    }
    let env = Env::new();
    let out = env.file("ticks.txt");
    env.write_dag(
        "ticks.toml",
        &format!(
            "schedule = \"0 5 * * *\"\nstart_date = \"2026-01-01\"\nend_date = \"2026-01-06\"\ncatchup = true\n\
             max_active_runs = 5\npaused_at_creation = true\n[tasks.t]\noperator = \"command\"\ncommand = \"echo {{{{ ds }}}} >> '{out}'\"\n"
        ),
    );
    let _daemons: Vec<Daemon> = (0..4).map(|_| env.daemon(&[])).collect();
    // All four are up before any tick is due: they see the unpause at their next change check.
    env.ok(&["unpause", "ticks"]);
    let runs = env.wait_until("the five runs to finish", Duration::from_secs(120), || {
        let runs = env.runs("ticks");
        (runs.len() >= 5 && runs.iter().all(|r| r["state"] == "success")).then_some(runs)
    });
    assert_eq!(runs.len(), 5, "one run per tick: {runs:#?}");
    let mut ds: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(str::to_string).collect();
    ds.sort();
    assert_eq!(ds, ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"], "each task once");
}

/// `max_active_runs = 1` holds across schedulers: two of them racing to start the next of
/// four queued runs never have two running at once. The events, in commit order, show every
/// start and end.
#[test]
fn max_active_runs_holds_across_two_schedulers() {
    if !on_shared_database() {
        return;
    }
    let env = Env::new();
    let gate = env.file("gate");
    env.write_dag(
        "one.toml",
        &format!("max_active_runs = 1\n[tasks.t]\noperator = \"command\"\ncommand = \"{}\"\n", wait_for(&gate)),
    );
    let _daemons = [env.daemon(&[]), env.daemon(&[])];
    for date in ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"] {
        env.ok(&["trigger", "one", "--date", date]);
    }
    env.wait_until("a run to start", Duration::from_secs(30), || {
        env.runs("one").iter().any(|r| r["state"] == "running").then_some(())
    });
    open_gate(&gate);
    env.wait_until("the four runs to finish", Duration::from_secs(120), || {
        let runs = env.runs("one");
        (runs.len() == 4 && runs.iter().all(|r| r["state"] == "success")).then_some(())
    });
    let (mut running, mut most) = (0i32, 0i32);
    for e in events_of(&env, "one") {
        match e["kind"]["type"].as_str() {
            Some("run_started") => running += 1,
            Some("run_finished") => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!((most, running), (1, 0), "at most one run at a time:\n{:#?}", events_of(&env, "one"));
}

/// A pool of one slot holds across two schedulers: of six tasks in it, ready at once, no two
/// ever run at the same time (the events, in commit order, show every start and end).
#[test]
fn a_pool_holds_across_two_schedulers() {
    if !on_shared_database() {
        return;
    }
    let env = Env::new();
    let config = env.file("sluice.toml");
    std::fs::write(&config, "[pools]\nsolo = 1\n").unwrap();
    let mut dag = String::new();
    for i in 0..6 {
        dag.push_str(&format!("[tasks.t{i}]\noperator = \"command\"\npool = \"solo\"\ncommand = \"echo t{i}\"\n"));
    }
    env.write_dag("pooled.toml", &dag);
    let _daemons = [env.daemon(&["--config", &config]), env.daemon(&["--config", &config])];
    env.ok(&["trigger", "pooled", "--date", "2026-01-01"]);
    let v = env.wait_run_finished("pooled", "2026-01-01", Duration::from_secs(120));
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    let (mut running, mut most) = (0i32, 0i32);
    for e in events_of(&env, "pooled") {
        match e["kind"]["type"].as_str() {
            Some("try_started") => running += 1,
            Some("try_finished") => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!((most, running), (1, 0), "one try at a time:\n{:#?}", events_of(&env, "pooled"));
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(tries(t).len(), 1, "{t:#}");
    }
}

/// A TCP proxy on loopback in front of the database that, once armed, lets the next `COMMIT`
/// through to the server and then cuts the network: every connection is closed before the
/// server's answer comes back, and new ones are refused. The client cannot know whether that
/// commit happened.
struct CutProxy {
    addr: std::net::SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CutProxy {
    fn start(upstream: std::net::SocketAddr) -> CutProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let clients: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (a, c, listed) = (armed.clone(), cut.clone(), clients.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client); // the network is down
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(upstream) else { continue };
                listed.lock().unwrap().push(client.try_clone().unwrap());
                let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut from_server, mut to_client) = (server, client);
                let (a, c, all, c2) = (a.clone(), c.clone(), listed.clone(), c.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 || c.load(Ordering::SeqCst) || to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let commit = buf[..n].windows(6).any(|w| w == b"COMMIT");
                        if commit && a.load(Ordering::SeqCst) {
                            // The COMMIT is on its way to the server; no answer comes back.
                            c.store(true, Ordering::SeqCst);
                            for s in all.lock().unwrap().iter() {
                                let _ = s.shutdown(std::net::Shutdown::Both);
                            }
                            break;
                        }
                    }
                    // The server side stays open until it has dealt with what it got.
                    let mut rest = [0u8; 4096];
                    while matches!(to_server.read(&mut rest), Ok(n) if n > 0) {}
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from_server.read(&mut buf) {
                        if n == 0 || c2.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        CutProxy { addr, armed, cut, clients }
    }

    /// A proxy in front of the database at `url`, and the URL that goes through it.
    fn in_front_of(url: &str) -> (CutProxy, String) {
        let upstream = url.split('@').nth(1).and_then(|r| r.split('/').next()).expect("host:port in the URL");
        let proxy = CutProxy::start(upstream.parse().expect("an address"));
        let via_proxy = url.replacen(upstream, &proxy.addr.to_string(), 1);
        (proxy, via_proxy)
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cuts the network now, as a dropped link does: nothing passes any more either way (the
    /// connections stay open, silent), and new connections are refused.
    fn cut_now(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes the network now, as a server that went away does: every connection is closed
    /// under its client, and new ones are closed as they come (accepted, then dropped).
    fn close_now(&self) {
        self.cut_now();
        for s in self.clients.lock().unwrap().iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn has_cut(&self) -> bool {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The network between a scheduler and the database is cut right after it sent the commit
/// that records its try's success (a proxy drops the answer): the scheduler cannot know
/// whether it committed, and stops. What it committed is read back, not redone: the task ran
/// once, its one try is a success, and the other scheduler finishes the run.
#[test]
fn a_network_cut_during_a_commit_is_read_back_not_redone() {
    if !on_shared_database() {
        return;
    }
    let env = Env::new();
    let (proxy, via_proxy) = CutProxy::in_front_of(&env.db);
    let gate = env.file("gate");
    let ran = env.file("ran.txt");
    env.write_dag(
        "cut.toml",
        &format!("[tasks.a]\noperator = \"command\"\ncommand = \"echo ran >> '{ran}'; {}\"\n", wait_for(&gate)),
    );
    let mut cut_off = env.daemon_on(&via_proxy, &[]);
    env.ok(&["trigger", "cut", "--date", "2026-01-01"]);
    // Running, its pid recorded: the scheduler commits nothing more until the try ends.
    env.wait_until("`a` to run", Duration::from_secs(30), || {
        let v = env.tasks("cut", "2026-01-01");
        (lines(&ran) == 1 && tries(task(&v, "a")).first()?["external_ids"]["pid"].is_i64()).then_some(())
    });
    let _other = env.daemon(&[]);
    proxy.arm();
    open_gate(&gate);
    let status = cut_off.wait_exit(Duration::from_secs(60)).expect("the cut-off scheduler stops");
    assert!(proxy.has_cut(), "the cut came at a commit");
    assert!(!status.success(), "it stops with an error: {}", env.daemon_logs());
    let v = env.wait_run_finished("cut", "2026-01-01", Duration::from_secs(60));
    assert_eq!(v["run"]["state"], "success", "{v:#}\n{}", env.daemon_logs());
    let t = tries(task(&v, "a"));
    assert_eq!(t.len(), 1, "the committed try was read back, not redone: {v:#}");
    assert_eq!(t[0]["state"], "success", "{v:#}");
    assert_eq!(lines(&ran), 1, "the command ran once");
}

/// A scheduler cut off from the database (its network gone) stops its own work: it exits and
/// its command's process group is killed, so when the other scheduler takes the try over (after
/// the lease) and retries it, the command never runs twice at once.
#[test]
fn a_scheduler_cut_off_from_the_database_stops_its_work_before_it_is_taken_over() {
    if !on_shared_database() {
        return;
    }
    let logs = cut_off_scheduler_stops_its_work(CutProxy::cut_now);
    assert!(logs.contains("lease could not be renewed"), "{logs}");
}

/// As above, with the database gone instead of silent: every connection is closed under the
/// scheduler and new ones are closed as they come, so its next call fails. It stops with the
/// error, its command stopped with it, and the other scheduler takes the try over after the
/// lease.
#[test]
fn a_scheduler_whose_database_closes_every_connection_stops_its_work_before_it_is_taken_over() {
    if !on_shared_database() {
        return;
    }
    let logs = cut_off_scheduler_stops_its_work(CutProxy::close_now);
    // Its next call's error, or (were the machine to stall it past ¾ of the lease first) its
    // lease keeper: either way it stopped for the lost database, before the takeover.
    let why = ["error communicating with database", "lease could not be renewed"];
    assert!(why.iter().any(|w| logs.contains(w)), "{logs}");
}

/// A command task runs on a scheduler whose database connection goes through a proxy; a second
/// scheduler starts, then `cut` cuts the first one off. Returns the daemons' logs.
fn cut_off_scheduler_stops_its_work(cut: fn(&CutProxy)) -> String {
    let env = Env::new();
    let (proxy, via_proxy) = CutProxy::in_front_of(&env.db);
    let gate = env.file("gate");
    let ran = env.file("ran.txt");
    env.write_dag(
        "partition.toml",
        &format!(
            "[tasks.a]\noperator = \"command\"\nretries = 1\nretry_delay = \"0s\"\n\
             command = \"echo ran >> '{ran}'; {}\"\n",
            wait_for(&gate)
        ),
    );
    let mut cut_off = env.daemon_on(&via_proxy, &[]);
    env.ok(&["trigger", "partition", "--date", "2026-01-01"]);
    let pid = env.wait_until("`a` to run", Duration::from_secs(30), || {
        let v = env.tasks("partition", "2026-01-01");
        let pid = tries(task(&v, "a")).first()?["external_ids"]["pid"].as_i64()?;
        (lines(&ran) == 1).then_some(pid)
    });
    let pgid = i32::try_from(pid).unwrap();
    let _other = env.daemon(&[]);
    cut(&proxy);
    let status = cut_off.wait_exit(Duration::from_secs(60)).expect("the cut-off scheduler stops");
    assert!(!status.success(), "it stops with an error: {}", env.daemon_logs());
    env.wait_until("its command to be killed", Duration::from_secs(30), || alive(pgid).is_empty().then_some(()));
    // Taken over after the lease: try 1 failed as interrupted, try 2 on the other scheduler.
    let v = env.wait_until("the retry", Duration::from_secs(60), || {
        let v = env.tasks("partition", "2026-01-01");
        (tries(task(&v, "a")).len() == 2).then_some(v)
    });
    let first = &tries(task(&v, "a"))[0];
    assert!(first["error"].as_str().unwrap_or_default().contains("interrupted"), "{v:#}");
    open_gate(&gate);
    let v = env.wait_run_finished("partition", "2026-01-01", Duration::from_secs(60));
    assert_eq!(v["run"]["state"], "success", "{v:#}");
    assert_eq!(lines(&ran), 2, "one run of the command per try");
    env.daemon_logs()
}

/// Every test of this file again with the daemons on PostgreSQL: a backend matrix, not a copy.
#[test]
fn on_postgres() {
    sluice_store::testing::rerun_on_postgres("on_postgres");
}
