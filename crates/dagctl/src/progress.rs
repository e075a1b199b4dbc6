//! Live progress of a run, for `dagctl trigger --wait` and `dagctl test`: which tasks run, for
//! how long, and the last line of each one's log (Spark's progress), redrawn in place on a
//! terminal (indicatif) and as plain lines otherwise; `dagctl test` also prints every line of
//! every task's output as it comes, as `airflow dags test` does.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_scheduler::tail::LogTail;
use sluice_store::{RunState, Store, TaskState};

/// How often the store is looked at.
const POLL: Duration = Duration::from_millis(250);
/// Without a terminal: how often a running task's last log line is printed (when it changed).
const PLAIN_STATUS_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Tracked {
    state: Option<TaskState>,
    try_number: u32,
    /// Tries up to this one have had their output read in full.
    drained: u32,
    tail: Option<LogTail>,
    bar: Option<ProgressBar>,
    last_status: Option<(Instant, String)>,
}

struct Out {
    multi: Option<MultiProgress>,
}

impl Out {
    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => println!("{text}"),
        }
    }
}

/// Follows run `run` until it is finished (true on success), or until `stop` turns true.
/// `show_output` prints each task's log lines as they are written.
pub async fn follow(
    store: &dyn Store,
    run: i64,
    logs: &Path,
    show_output: bool,
    mut stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<bool> {
    let terminal = std::io::stdout().is_terminal();
    let out = Out { multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout())) };
    let style = ProgressStyle::with_template("{spinner} {prefix} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ");
    let mut tasks: HashMap<String, Tracked> = HashMap::new();
    let mut width = 0;
    loop {
        let stopping = stop.as_ref().is_some_and(|s| *s.borrow());
        let Some(r) = store.run(run).await? else { bail!("the run disappeared") };
        let tis = store.task_instances(run).await?;
        width = width.max(tis.iter().map(|t| t.task_id.chars().count()).max().unwrap_or(0));
        for ti in &tis {
            let t = tasks.entry(ti.task_id.clone()).or_default();
            let log = |n: u32| sluice_scheduler::engine::log_path(logs, &r.dag_id, &r.run_id, &ti.task_id, n);
            let print = |lines: Vec<String>| {
                for line in lines.into_iter().filter(|_| show_output) {
                    out.line(&format!("[{}] {line}", ti.task_id));
                }
            };
            let running = ti.state == TaskState::Running;
            // The live tail belongs to a try that is over: the rest of its output, then let it go.
            if t.tail.is_some() && !(running && t.try_number == ti.try_number) {
                if let Some(mut tail) = t.tail.take().filter(|_| show_output) {
                    print(drain(&mut tail));
                }
                t.drained = t.drained.max(t.try_number);
            }
            if running && t.tail.is_none() {
                // Tries that started and ended between two looks: their whole output first.
                for n in (t.drained + 1..ti.try_number).filter(|_| show_output) {
                    print(drain(&mut LogTail::new(log(n))));
                }
                t.drained = ti.try_number - 1;
                t.tail = Some(LogTail::new(log(ti.try_number)));
                t.try_number = ti.try_number;
                if let Some(m) = &out.multi {
                    let bar = m.add(ProgressBar::new_spinner().with_style(style.clone()));
                    bar.set_prefix(format!("{:<width$}", ti.task_id));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    t.bar = Some(bar);
                } else {
                    out.line(&format!("  {:<width$}  started (try {})", ti.task_id, ti.try_number));
                }
            }
            if !running {
                for n in (t.drained + 1..=ti.try_number).filter(|_| show_output) {
                    print(drain(&mut LogTail::new(log(n))));
                }
                t.drained = t.drained.max(ti.try_number);
            }
            if let Some(tail) = &mut t.tail {
                print(tail.poll());
            }
            let changed = t.state != Some(ti.state);
            t.state = Some(ti.state);
            if ti.state == TaskState::Running {
                let elapsed =
                    ti.started_at.map(|s| crate::output::duration(Some(s), Some(Utc::now()))).unwrap_or_default();
                let last = t.tail.as_ref().and_then(|l| l.last_line()).unwrap_or("").to_string();
                match &t.bar {
                    Some(bar) => bar.set_message(format!("running {elapsed}  {last}")),
                    None => {
                        let due = t.last_status.as_ref().is_none_or(|(at, _)| at.elapsed() >= PLAIN_STATUS_EVERY);
                        let new = t.last_status.as_ref().is_none_or(|(_, l)| *l != last);
                        if due && new && !last.is_empty() {
                            out.line(&format!("  {:<width$}  running {elapsed}: {last}", ti.task_id));
                            t.last_status = Some((Instant::now(), last));
                        }
                    }
                }
            } else if changed && (ti.state.is_finished() || ti.state == TaskState::UpForRetry) {
                if let Some(bar) = t.bar.take() {
                    bar.finish_and_clear();
                    if let Some(m) = &out.multi {
                        m.remove(&bar);
                    }
                }
                t.last_status = None;
                let took = crate::output::duration(ti.started_at, ti.ended_at);
                let took = if took == "-" { String::new() } else { format!(" in {took}") };
                let mut line = format!("  {:<width$}  {}{took}", ti.task_id, ti.state);
                if ti.state.is_failure() || ti.state == TaskState::UpForRetry {
                    let tries = store.tries(run, Some(&ti.task_id)).await?;
                    if let Some(error) = tries.iter().max_by_key(|t| t.try_number).and_then(|t| t.error.as_deref()) {
                        line.push_str(&format!(": {error}"));
                    }
                }
                out.line(&line);
            }
        }
        if r.state.is_finished() || stopping {
            if let Some(m) = &out.multi {
                let _ = m.clear();
            }
            if r.state.is_finished() {
                let took = crate::output::duration(r.started_at, r.ended_at);
                println!("run {} {} in {took}", r.run_id, r.state);
            }
            return Ok(r.state == RunState::Success);
        }
        match &mut stop {
            Some(s) => {
                let _ = tokio::time::timeout(POLL, s.changed()).await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// Everything left in a log.
fn drain(tail: &mut LogTail) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let lines = tail.poll();
        if lines.is_empty() {
            all.extend(tail.finish());
            return all;
        }
        all.extend(lines);
    }
}
