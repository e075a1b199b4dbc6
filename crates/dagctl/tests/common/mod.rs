//! What the end-to-end tests of `dagctl` share: a temp folder with a DAG folder, a SQLite
//! state file and logs ([`Env`]), the `dagctl` commands run on it, and daemons started from it
//! ([`Daemon`], killed when dropped). Waiting is for the event itself with a generous safety
//! limit; nothing is timed.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const DAGCTL: &str = env!("CARGO_BIN_EXE_dagctl");

/// How long a test waits for something before it gives up: only a hung test reaches it.
pub const SAFETY_LIMIT: Duration = Duration::from_secs(120);

/// One test's world: `dags/`, `sluice.db`, `logs/` and the daemons' own logs in a temp folder.
pub struct Env {
    dir: tempfile::TempDir,
    /// Variables set (`Some`) or removed (`None`) for every `dagctl` of this test.
    vars: Vec<(String, Option<String>)>,
    /// How many daemons were spawned, for each one's log file name.
    spawned: AtomicUsize,
}

/// A spawned `dagctl` daemon (`scheduler` or `server`), its stderr in `log`; killed when
/// dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    /// The API's address (`http://127.0.0.1:PORT`), or empty when it was not waited for.
    pub base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// What the daemon has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `path` on the daemon's API.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Env {
    /// An empty temp folder with `dags/` and `logs/`.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dags")).unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        Env { dir, vars: Vec::new(), spawned: AtomicUsize::new(0) }
    }

    /// Sets the variable `key` for every `dagctl` of this test.
    pub fn env(mut self, key: &str, value: &str) -> Env {
        self.vars.push((key.to_string(), Some(value.to_string())));
        self
    }

    /// Removes the variable `key` for every `dagctl` of this test.
    pub fn env_remove(mut self, key: &str) -> Env {
        self.vars.push((key.to_string(), None));
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the temp folder, as a string for DAG commands.
    pub fn file(&self, name: &str) -> String {
        self.root().join(name).display().to_string()
    }

    pub fn write_dag(&self, name: &str, src: &str) {
        std::fs::write(self.root().join("dags").join(name), src).unwrap();
    }

    /// `dagctl` with this test's DAG folder, database and logs, in the temp folder, without
    /// the machine's `SLUICE_*` variables.
    pub fn command(&self) -> Command {
        let mut c = Command::new(DAGCTL);
        c.arg("--dags")
            .arg(self.root().join("dags"))
            .arg("--db")
            .arg(format!("sqlite:{}", self.root().join("sluice.db").display()))
            .arg("--logs")
            .arg(self.root().join("logs"))
            .current_dir(self.root())
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("SLUICE_") {
                c.env_remove(k);
            }
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs `dagctl`, asserts it exits 0, returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "dagctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Spawns `dagctl SUB ARGS...`, its stderr to a log of its own in the temp folder, and
    /// does not wait for it to be ready (`base` is empty).
    pub fn spawn(&self, sub: &str, args: &[&str]) -> Daemon {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed) + 1;
        let log = self.root().join(format!("{sub}-{n}.log"));
        let child = self
            .command()
            .arg(sub)
            .args(args)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log, base: String::new() }
    }

    /// Starts `dagctl scheduler` (or `server`) with the API on a free port of `host`, and
    /// waits until the API listens (and a scheduler says it is running).
    pub fn start(&self, sub: &str, host: &str, extra: &[&str]) -> Daemon {
        let bind = format!("{host}:0");
        let args: Vec<&str> = ["--api-bind", bind.as_str()].into_iter().chain(extra.iter().copied()).collect();
        let mut d = self.spawn(sub, &args);
        let deadline = Instant::now() + SAFETY_LIMIT;
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("dagctl {sub} exited at start ({status}):\n{}", d.logs());
            }
            let logs = d.logs();
            let ready = sub != "scheduler" || logs.contains("scheduler running");
            if let (Some(at), true) = (logs.find("address=http://"), ready) {
                let addr = logs[at + "address=".len()..].split_whitespace().next().unwrap().to_string();
                d.base = addr.replace("0.0.0.0", "127.0.0.1");
                return d;
            }
            assert!(Instant::now() < deadline, "the API did not start:\n{}", d.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `dagctl scheduler` with the API (and so the UI) on a free loopback port.
    pub fn daemon(&self) -> Daemon {
        self.start("scheduler", "127.0.0.1", &[])
    }
}

/// A loopback port nobody listens on (at the moment it is asked for).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `s` percent-encoded for a URL's path segment (every byte but the unreserved ones).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}
