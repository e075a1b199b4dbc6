//! `command`: a local process through `sh -c`.
//!
//! The process gets its own process group, so a timeout or a cancel kills the whole tree (the
//! shell and everything it started): SIGTERM, then SIGKILL after a short grace. Every process
//! of a try carries a marker (`SLUICE_TRY_MARKER`) in its environment and the pid is recorded
//! the moment it starts; a scheduler restarting after a crash finds the orphans by the marker
//! and kills them before the task is retried. stdout and stderr go to the try's log; the last
//! non-empty stdout line is the output `output`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Outcome, TaskError, TaskOperator, TryContext};

/// Environment variable set on every local process: `<run>:<task>:<try>`. Recovery only kills
/// a recorded pid whose environment carries the marker of the interrupted try.
pub const TRY_MARKER_ENV: &str = "SLUICE_TRY_MARKER";

/// How long a process group has between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

pub struct CommandOperator {
    command: String,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl CommandOperator {
    pub fn new(c: &sluice_dag::operators::Command, dag_file: &Path) -> CommandOperator {
        CommandOperator {
            command: c.command.clone(),
            env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            cwd: c.cwd.as_deref().map(|p| sluice_dag::parse::relative_to(dag_file, p)),
        }
    }
}

pub fn marker(run: i64, task: &str, try_number: u32) -> String {
    format!("{run}:{task}:{try_number}")
}

/// Kills every process that carries the try's marker in its environment (the shell and all
/// it started, which inherit it), found by scanning `/proc`. Works whether or not the pid was
/// recorded before the scheduler died, and never touches a process that merely reuses a pid.
/// Returns how many processes it killed.
pub fn kill_orphan(run: i64, task: &str, try_number: u32) -> usize {
    let wanted = marker(run, task, try_number);
    marked_processes(
        |_, m| m == wanted.as_bytes(),
        |pid| {
            // SAFETY: sending a signal; a process that already exited yields ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        },
    )
}

/// Kills (SIGKILL) the process group of every try this process started that still runs: its
/// children carrying a try marker, each the leader of its try's group. For a scheduler that
/// must stop its work now, whatever its engine is doing. Returns how many groups it killed.
pub fn kill_own_tries() -> usize {
    let me = std::process::id().to_string();
    marked_processes(
        |dir, _| {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`: the command may hold spaces and parentheses.
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)) == Some(me.as_str())
        },
        |pid| signal_group(pid, libc::SIGKILL),
    )
}

/// Calls `act` on every process of this host whose environment carries a try marker for
/// which `pick` (given the process's `/proc` folder and the marker's value) says yes; how
/// many it acted on.
fn marked_processes(pick: impl Fn(&Path, &[u8]) -> bool, act: impl Fn(i32)) -> usize {
    let prefix = format!("{TRY_MARKER_ENV}=");
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut acted = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let found = environ.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(prefix.as_bytes()));
        if found.is_some_and(|m| pick(&entry.path(), m)) {
            act(pid);
            acted += 1;
        }
    }
    acted
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: killpg only sends a signal; a stale pgid yields ESRCH, which we ignore.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

/// Kills the process group when dropped: on timeout or cancel the try's future is dropped.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            signal_group(pgid, libc::SIGTERM);
            std::thread::spawn(move || {
                std::thread::sleep(KILL_GRACE);
                signal_group(pgid, libc::SIGKILL);
            });
        }
    }
}

#[async_trait::async_trait]
impl TaskOperator for CommandOperator {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        ctx.log.line(&format!("$ {}", self.command));
        // By absolute path: with the task's PATH changed, a bare `sh` makes the standard
        // library search that PATH itself, one failed execve per folder, in a forked copy of
        // the daemon instead of posix_spawn (a `true` task's try: 2.0 ms median, 1.7 ms so).
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&self.command)
            .envs(ctx.env.iter().cloned())
            .envs(self.env.iter().cloned())
            .env(TRY_MARKER_ENV, marker(ctx.run, &ctx.task_id, ctx.try_number))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| TaskError::retryable(format!("cannot start `sh -c`: {e}")))?;
        let pid = child.id().ok_or_else(|| TaskError::retryable("the process exited before it could be tracked"))?;
        let mut guard = GroupGuard(i32::try_from(pid).ok());
        ctx.record("pid", Value::from(pid)).await?;

        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = ctx.log.clone();
        let err_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.line(&line);
            }
        });
        let mut last = None;
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            ctx.log.line(&line);
            if !line.trim().is_empty() {
                last = Some(line);
            }
        }
        let status = child.wait().await.map_err(|e| TaskError::retryable(format!("waiting for the process: {e}")))?;
        let _ = err_task.await;
        guard.0 = None;
        if status.success() {
            let mut outputs = Map::new();
            outputs.insert("output".into(), Value::String(last.unwrap_or_default()));
            Ok(Outcome::Success(outputs))
        } else {
            let why = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(code), _) => format!("command exited with status {code}"),
                (None, Some(sig)) => format!("command killed by signal {sig}"),
                _ => "command failed".to_string(),
            };
            ctx.log.line(&why);
            Err(TaskError::retryable(why))
        }
    }

    /// A try that recorded no pid never started its process (any process it did start would
    /// carry its marker and be killed first by recovery): it can simply start now.
    fn can_resume(&self, recorded: &Map<String, Value>) -> bool {
        !recorded.contains_key("pid")
    }
}
