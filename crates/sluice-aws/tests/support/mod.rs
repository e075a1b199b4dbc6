//! Test support: a real AWS API emulator (moto, server mode) on a loopback port, one per test
//! that asks for it, with Sluice's additions (`tests/tooling/moto_launcher.py`): EMR steps that
//! finish on a clock, failure injection by the `SLUICE_FAIL` marker, and injected throttling.
//! `tests/tooling/README.md` says what is real moto and what is ours.
//!
//! ```ignore
//! mod support;
//! let moto = support::Moto::start();
//! // point the SDK at moto.endpoint with support::{ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION}
//! // (S3: force_path_style(true))
//! moto.inject_fault("elasticmapreduce", Some("DescribeStep"), 2, 400, "ThrottlingException");
//! // ... the operator retries ...
//! assert_eq!(moto.faults_served(), 2);
//! ```
//!
//! Tests never depend on how fast the machine is: what must stay in a state for a while (a step
//! RUNNING, a query QUEUED) is held by freezing the emulator's clock (`freeze_clock`) and let go
//! by the test (`advance_clock`, `run_clock`), and waits are for events (an id recorded, a
//! line logged), with limits only as a safety net.
//!
//! The server needs the project's Python venv (`.venv` at the workspace root, made by
//! `bash .ci/run` or by hand as `tests/tooling/README.md` says). Each `Moto` is its own process
//! with its own empty state; it is killed when the `Moto` is dropped, and it also exits by
//! itself when the test process dies (it watches its stdin, a pipe from this process).
//!
//! The control calls below are blocking HTTP/1.1 over `std::net::TcpStream` (loopback, a few
//! milliseconds); calling them from an async test is fine.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Credentials moto accepts (any value works; these are the conventional ones).
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";
/// The region the tests use; moto keeps separate state per region.
pub const REGION: &str = "us-east-1";
/// moto's account: IAM role ARNs given to EMR Serverless must be in it.
pub const ACCOUNT_ID: &str = "123456789012";
/// Put this in an EMR step (name or args), an Athena query, an EMR Serverless job run (name or
/// job driver), a Glue crawler's name or a Glue job run (job name or arguments) to make it fail.
pub const FAIL_MARKER: &str = "SLUICE_FAIL";

/// How long `start` waits for the launcher's `READY` line (moto imports take a few seconds).
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Moto {
    /// `http://127.0.0.1:PORT`: the endpoint URL for every AWS client of the test.
    pub endpoint: String,
    pub port: u16,
    child: Child,
    /// Held open so that the launcher (`--exit-on-stdin-eof`) dies with this process.
    _stdin: Option<ChildStdin>,
}

/// The workspace root: `crates/sluice-aws/../..`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The venv's python (with moto, PySpark and DuckDB): `tests/tooling/venv.sh` creates or
/// updates `.venv` on first use, so `cargo test` works on a fresh machine with python3 and PyPI;
/// `.ci/run` runs the same script ahead of time. The script is a no-op when the venv is up to
/// date, and parallel callers take turns on its file lock. Run once per test process.
pub fn ensure_venv(root: &Path) -> PathBuf {
    static SETUP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let setup = SETUP.get_or_init(|| {
        match Command::new("bash").arg(root.join("tests/tooling/venv.sh")).current_dir(root).status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("tests/tooling/venv.sh exited with {s}")),
            Err(e) => Err(format!("cannot run tests/tooling/venv.sh: {e}")),
        }
    });
    if let Err(e) = setup {
        panic!(
            "the tests need the project's Python venv and it could not be set up: {e} (see tests/tooling/README.md)"
        );
    }
    root.join(".venv/bin/python")
}

impl Moto {
    /// Starts a server with the launcher's defaults (EMR steps: 1 s PENDING, 2 s RUNNING;
    /// Glue crawls and job runs, Athena queries: one state per second).
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts a server with extra launcher flags, e.g.
    /// `&["--emr-step-seconds", "0.5", "--emr-cluster-seconds", "1"]` (see the README).
    pub fn start_with(args: &[&str]) -> Moto {
        let root = workspace_root();
        let python = ensure_venv(&root);
        let launcher = root.join("tests/tooling/moto_launcher.py");
        let mut child = Command::new(&python)
            .arg(&launcher)
            .args(["--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"])
            .args(args)
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", launcher.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("launcher stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(read.map(|_| line));
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                panic!("reading the moto launcher's output: {e}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the moto launcher printed no READY line within {START_TIMEOUT:?}");
            }
        };
        let port = line.trim().strip_prefix("READY ").and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "the moto launcher did not start (first line {line:?}, exit {status:?}); its \
                 error is above in stderr"
            );
        };
        Moto { endpoint: format!("http://127.0.0.1:{port}"), port, child, _stdin: stdin }
    }

    /// Environment for a child process (e.g. `dagctl`) that should talk to this server through
    /// the default credential chain and the SDK's `AWS_ENDPOINT_URL`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// Makes the next `count` requests to `service` (the SigV4 signing name: `elasticmapreduce`,
    /// `emr-serverless`, `glue`, `athena`, `s3`), and to operation `action` when given (e.g.
    /// `DescribeStep`, `GetJobRun`, `HeadObject`), fail with HTTP `status` and error `code`
    /// (`ThrottlingException` 400; for S3 `SlowDown` 503; or e.g. `InternalServerException` 500),
    /// in the service's own error format.
    pub fn inject_fault(&self, service: &str, action: Option<&str>, count: u32, status: u16, code: &str) {
        let body = serde_json::json!({
            "service": service, "action": action, "count": count, "status": status, "code": code,
        });
        let (st, text) = self.request("POST", "/_sluice/faults", Some(&body));
        assert_eq!(st, 201, "POST /_sluice/faults {body}: {text}");
    }

    /// `GET /_sluice/faults`: `{"faults": [ ...pending, with "remaining" ], "served": N}`.
    pub fn faults(&self) -> serde_json::Value {
        let (st, text) = self.request("GET", "/_sluice/faults", None);
        assert_eq!(st, 200, "GET /_sluice/faults: {text}");
        serde_json::from_str(&text).expect("faults JSON")
    }

    /// How many injected errors the server has answered so far (since start or `clear_faults`).
    pub fn faults_served(&self) -> u64 {
        self.faults()["served"].as_u64().expect("served")
    }

    /// Drops the pending faults and resets the served count.
    pub fn clear_faults(&self) {
        let (st, text) = self.request("DELETE", "/_sluice/faults", None);
        assert_eq!(st, 200, "DELETE /_sluice/faults: {text}");
    }

    /// moto's state manager: how `model` (`glue::crawl`, `glue::job_run`, `athena::execution`,
    /// ...) advances, e.g. `json!({"progression": "time", "seconds": 2})`,
    /// `json!({"progression": "manual", "times": 3})` or `json!({"progression": "immediate"})`.
    pub fn set_transition(&self, model: &str, transition: serde_json::Value) {
        let body = serde_json::json!({ "model_name": model, "transition": transition });
        let (st, text) = self.request("POST", "/moto-api/state-manager/set-transition", Some(&body));
        assert_eq!(st, 201, "set-transition {body}: {text}");
    }

    /// Freezes the emulator's clock (`POST /_sluice/clock`): every state that moves with time
    /// (EMR steps and clusters, EMR Serverless job runs, Glue crawls and job runs, Athena
    /// queries) holds, however long the test takes and however often it is read, until the
    /// clock is moved on ([`Moto::advance_clock`]) or let run again ([`Moto::run_clock`]).
    pub fn freeze_clock(&self) {
        self.clock(serde_json::json!({ "freeze": true }));
    }

    /// Moves the emulator's clock `seconds` forward.
    pub fn advance_clock(&self, seconds: f64) {
        self.clock(serde_json::json!({ "advance": seconds }));
    }

    /// Lets the emulator's clock run again, on from where it stood.
    pub fn run_clock(&self) {
        self.clock(serde_json::json!({ "freeze": false }));
    }

    fn clock(&self, body: serde_json::Value) {
        let (st, text) = self.request("POST", "/_sluice/clock", Some(&body));
        assert_eq!(st, 200, "POST /_sluice/clock {body}: {text}");
    }

    /// Queues Athena result sets: each later query takes the next one when its results are
    /// first read (`GetQueryResults`), and moto also writes it as CSV to the query's S3 output
    /// location. `results` is a list of `{"rows": [{"Data": [{"VarCharValue": "1"}]}],
    /// "column_info": [{"Name": "n", "Type": "integer"}]}` (first row = header, as in Athena).
    pub fn seed_athena_results(&self, results: serde_json::Value) {
        let body = serde_json::json!({ "region": REGION, "results": results });
        let (st, text) = self.request("POST", "/moto-api/static/athena/query-results", Some(&body));
        assert_eq!(st, 201, "athena query-results: {text}");
    }

    /// Empties every moto backend (faults and transitions stay as they are).
    pub fn reset(&self) {
        let (st, text) = self.request("POST", "/moto-api/reset", None);
        assert_eq!(st, 200, "moto reset: {text}");
    }

    /// Creates an IAM role in moto's IAM (Lambda's CreateFunction wants one that exists) and
    /// returns its ARN. moto does not check signatures unless told to, so the request only names
    /// IAM in its credential scope, which is how the server picks the service.
    pub fn iam_role(&self, name: &str) -> String {
        let body = format!("Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument=%7B%7D");
        let headers = format!(
            "Content-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential={ACCESS_KEY_ID}/20260101/{REGION}/iam/aws4_request, SignedHeaders=host, Signature=0\r\n"
        );
        let (st, text) = self.raw_request("POST", "/", &headers, &body);
        assert_eq!(st, 200, "IAM CreateRole {name}: {text}");
        format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
    }

    /// Queues what moto's docker-free Lambda answers to the next invocations, in order (else it
    /// answers each with the request's own payload).
    pub fn queue_lambda_results(&self, results: &[&str]) {
        let body = serde_json::json!({ "region": REGION, "results": results });
        let (st, text) = self.request("POST", "/moto-api/static/lambda-simple/response", Some(&body));
        assert_eq!(st, 201, "lambda-simple response: {text}");
    }

    /// One plain HTTP/1.1 request to the server; returns the status and the body.
    pub fn request(&self, method: &str, path: &str, json: Option<&serde_json::Value>) -> (u16, String) {
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        self.raw_request(method, path, "Content-Type: application/json\r\n", &body)
    }

    /// One plain HTTP/1.1 request with extra header lines (each ending in CRLF).
    fn raw_request(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes())).expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read response");
        parse_response(&raw).unwrap_or_else(|| {
            panic!("unreadable HTTP response to {method} {path}: {:?}", String::from_utf8_lossy(&raw))
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of an HTTP/1.1 response read to the end (`Connection: close`); handles
/// `Transfer-Encoding: chunked`.
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            let start = eol + 2;
            out.extend_from_slice(rest.get(start..start + size)?);
            rest = rest.get(start + size + 2..)?;
        }
        body = out;
    }
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A real SMTP server on loopback: aiosmtpd from the project's venv, its Maildir handler writing
/// each message it accepts to a folder of its own; killed when dropped.
pub struct Smtpd {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// How long the server may take to accept connections (Python's start), as a safety net only.
const SMTPD_START_LIMIT: Duration = Duration::from_secs(60);

impl Smtpd {
    pub fn start() -> Smtpd {
        let root = workspace_root();
        let python = ensure_venv(&root);
        let dir = tempfile::tempdir().unwrap();
        // Maildir creates its folders only when the path does not exist yet.
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd from the venv");
        let mut smtpd = Smtpd { port, maildir, child, _dir: dir };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = smtpd.child.try_wait() {
                panic!("aiosmtpd exited with {status}; its error is above in stderr");
            }
            assert!(started.elapsed() < SMTPD_START_LIMIT, "aiosmtpd did not listen within {SMTPD_START_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        smtpd
    }

    /// The messages received, as their raw text.
    pub fn messages(&self) -> Vec<String> {
        let new = self.maildir.join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&new) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files.iter().map(|f: &PathBuf| std::fs::read_to_string(Path::new(f)).unwrap()).collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
