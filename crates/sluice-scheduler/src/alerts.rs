//! Alerts: what the DAGs' rules ask to be told about becomes alerts in the store, and a sender
//! delivers them.
//!
//! The **alerter** follows the event stream from a durable cursor (`alerts` in the store's
//! cursors). The alerts an event causes and the cursor past that event are written in one
//! transaction ([`Store::enqueue_alerts`]), and an alert is unique per channel and incident:
//! an event is turned into alerts once, whatever happens to the daemon (killed before that
//! transaction, the event is read again after the restart; after it, the alerts wait in the
//! store). Alerts therefore come from persisted state, whatever caused it: a try the daemon
//! lost, a state set by hand, a deadline passed while nobody watched. Freshness (no success
//! for `max_age`) and `sla` (a try running longer than its task's `max_duration`) are checked
//! from the store on timers set to the moment each would fire, so downtime hides neither.
//!
//! The **sender** delivers the pending alerts that are due, records every attempt, and tries a
//! failed delivery again with backoff (10 s doubling up to 10 min) for a day. It runs apart
//! from the engine's loop, each send bounded by a timeout: a channel that hangs slows nothing
//! else. An alert of a rule with `digest` waits that long, and the alerts of that rule, DAG
//! and channel due by then go out as one message.
//!
//! The channels themselves (Slack, webhooks, SNS, email) are behind `sluice_alert::Notify`,
//! which the binary provides (`sluice-alert` with its `send` feature), so the engine's crate
//! knows no HTTP, SMTP or AWS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use serde_json::Value;
use sluice_alert::{AlertMessage, Notify, SendError};
use sluice_dag::{AlertOn, AlertRule, ChannelRef, Dag};
use sluice_store::{
    AlertRow, Attempt, Event, EventKind, EventQuery, NewAlert, Order, RunState, Store, StoreError, TaskState, TryResult,
};
use tokio::sync::{watch, Notify as Wake};
use tracing::{info, warn};

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::follow::{latest_event_id, EventFollower, Live};

/// Set in a message's details when its rule has a `digest`: it goes out with the others.
const DIGEST: &str = "digest_rule";
/// The alerter's cursor in the store.
pub const CURSOR: &str = "alerts";
/// The longest a delivery is tried for.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// Lines of a failed try's log an alert carries.
const LOG_LINES: usize = 20;
/// The longest a timer sleeps before the alerter looks again (new runs, new rules).
const TIMER_CAP: chrono::Duration = chrono::Duration::seconds(60);
/// The longest the sender waits for one send: a bound over the channels' own timeouts, in
/// case one does not keep to it.
pub const SEND_LIMIT: StdDuration = StdDuration::from_secs(120);
/// Alerts one pass of the sender takes.
const SEND_BATCH: u32 = 100;

/// What the daemon's alerting needs besides the store.
pub struct Alerting {
    /// `[[alerts]]` of `sluice.toml`: every DAG's rules unless it sets `default_alerts = false`.
    pub defaults: Vec<AlertRule>,
    /// Links in messages point under it.
    pub base_url: Option<String>,
    pub notifier: Arc<dyn Notify>,
    /// The longest one send may take.
    pub send_timeout: StdDuration,
    pub logs: PathBuf,
}

/// Delay before attempt `n + 1` after `n` failed ones: 10 s doubling, at most 10 min.
pub fn backoff(failed: u32) -> chrono::Duration {
    let secs = 10u64.saturating_mul(1u64 << failed.saturating_sub(1).min(10));
    chrono::Duration::seconds(secs.min(600) as i64)
}

/// How much lower than the engine's the alerts' thread runs (as the API's does).
const NICENESS: i32 = 10;

/// [`run`] on a thread of its own, with a runtime of its own, at a lower priority than the
/// engine: building and sending a burst of messages (a backlog going out, a channel's
/// timeouts all ending at once) takes none of the engine's workers. The receiver is told when
/// it has stopped.
pub fn spawn_apart(
    store: Arc<dyn Store>,
    catalog: watch::Receiver<Arc<Catalog>>,
    clock: Arc<dyn Clock>,
    alerting: Arc<Alerting>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done, stopped) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("sluice-alerts".into()).spawn(move || {
        if !crate::daemon::lower_thread_priority(NICENESS) {
            warn!("cannot lower the alerts thread's priority; it runs at the scheduler's");
        }
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(run(store, catalog, clock, alerting, shutdown)),
            Err(e) => tracing::error!(error = %e, "cannot start the alerts' runtime: no alert is sent"),
        }
        let _ = done.send(());
    })?;
    Ok(stopped)
}

/// Sets the alerter's cursor to the newest event if it has none yet: alerts start with what
/// happens from now on, not with the history of a database that had no alerting. Called before
/// the engine starts, so nothing it commits is skipped.
pub async fn ensure_cursor(store: &dyn Store) -> Result<(), StoreError> {
    if store.cursor(CURSOR).await?.is_none() {
        let newest = latest_event_id(store).await?;
        store.set_cursor(CURSOR, newest).await?;
    }
    Ok(())
}

/// Runs the alerter and the sender until `shutdown` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    catalog: watch::Receiver<Arc<Catalog>>,
    clock: Arc<dyn Clock>,
    alerting: Arc<Alerting>,
    shutdown: watch::Receiver<bool>,
) {
    let wake = Arc::new(Wake::new());
    let alerter =
        Alerter { store: store.clone(), catalog, clock: clock.clone(), alerting: alerting.clone(), wake: wake.clone() };
    let sender = Sender { store, clock, alerting, wake };
    tokio::join!(alerter.run(shutdown.clone()), sender.run(shutdown));
}

struct Alerter {
    store: Arc<dyn Store>,
    catalog: watch::Receiver<Arc<Catalog>>,
    clock: Arc<dyn Clock>,
    alerting: Arc<Alerting>,
    wake: Arc<Wake>,
}

impl Alerter {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            match self.follow(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, "alerts: cannot read or write the store; trying again in 5 s");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(StdDuration::from_secs(5)) => {}
                    }
                }
            }
        }
    }

    async fn follow(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), StoreError> {
        let from = self.store.cursor(CURSOR).await?;
        let live = Live::Broadcast(self.store.subscribe());
        let mut events = EventFollower::new(self.store.clone(), live, Some(from.unwrap_or(0)), None, None).await?;
        // An event that caused no alert moves the cursor with the next write (or the next timer).
        let mut unsaved: Option<i64> = None;
        let mut next_check = self.clock.now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if let Some(id) = unsaved.take() {
                        self.store.set_cursor(CURSOR, id).await?;
                    }
                    return Ok(());
                }
                e = events.next() => {
                    let e = e?;
                    let alerts = self.alerts_for(&e).await?;
                    if alerts.is_empty() {
                        unsaved = Some(e.id);
                    } else {
                        self.enqueue(e.id, &alerts).await?;
                        unsaved = None;
                    }
                }
                _ = self.clock.sleep_until(next_check) => {
                    if self.clock.now() < next_check {
                        continue;
                    }
                    let (alerts, next) = self.timers().await?;
                    // Written only when it moved or there is something to queue: an idle
                    // daemon writes nothing.
                    let moved = unsaved.take();
                    if !alerts.is_empty() {
                        self.enqueue(moved.unwrap_or(events.position()), &alerts).await?;
                    } else if let Some(id) = moved {
                        self.store.set_cursor(CURSOR, id).await?;
                    }
                    next_check = next;
                }
            }
        }
    }

    async fn enqueue(&self, up_to: i64, alerts: &[NewAlert]) -> Result<(), StoreError> {
        let ids = self.store.enqueue_alerts(CURSOR, up_to, alerts, self.clock.now()).await?;
        if !ids.is_empty() {
            info!(alerts = ids.len(), "alerts queued");
            self.wake.notify_one();
        }
        Ok(())
    }

    /// A DAG's rules: its own, then the defaults unless it opted out.
    fn rules<'a>(&'a self, dag: &'a Dag, on: AlertOn) -> Vec<&'a AlertRule> {
        let defaults = self.alerting.defaults.iter().filter(|_| dag.default_alerts);
        dag.alerts.iter().chain(defaults).filter(|r| r.fires_on(on)).collect()
    }

    /// The alerts one event causes.
    async fn alerts_for(&self, e: &Event) -> Result<Vec<NewAlert>, StoreError> {
        let Some(dag_id) = &e.dag_id else { return Ok(Vec::new()) };
        let Some(dag) = self.catalog.borrow().dag(dag_id).cloned() else { return Ok(Vec::new()) };
        let on = match &e.kind {
            EventKind::RunFinished { state: RunState::Failed } => AlertOn::Failure,
            EventKind::RunFinished { state: RunState::Success } => AlertOn::Recovered,
            EventKind::TryFinished { outcome: TryResult::Failed, task_state: TaskState::Failed, .. } => {
                AlertOn::TaskFailed
            }
            EventKind::RetryScheduled { .. } => AlertOn::Retry,
            EventKind::DeadlineMissed { .. } => AlertOn::DeadlineMissed,
            // A try never sets these: a person marked the task.
            EventKind::TaskStateChanged { state: TaskState::Success | TaskState::Failed } => AlertOn::Marked,
            _ => return Ok(Vec::new()),
        };
        let rules = self.rules(&dag, on);
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let run = match &e.run_id {
            Some(r) => self.store.run_by_run_id(dag_id, r).await?,
            None => None,
        };
        if on == AlertOn::Recovered {
            let Some(run) = &run else { return Ok(Vec::new()) };
            let ended = run.ended_at.unwrap_or(e.at);
            let previous = self.store.previous_finished_run(dag_id, ended, run.id).await?;
            if !previous.is_some_and(|p| p.state == RunState::Failed || p.deadline_missed) {
                return Ok(Vec::new());
            }
        }
        let mut m = self.message(&dag, on, e.at, e.run_id.clone(), e.task_id.clone());
        m.logical_date =
            run.as_ref().map(|r| sluice_dag::schedule::rfc3339(r.logical_date.with_timezone(&dag.timezone)));
        let run_text = e.run_id.as_deref().unwrap_or("?");
        let task_text = e.task_id.as_deref().unwrap_or("?");
        match &e.kind {
            EventKind::RunFinished { state } => {
                m.state = Some(state.to_string());
                m.title = match on {
                    AlertOn::Recovered => format!("{dag_id}: run {run_text} succeeded after a failure"),
                    _ => format!("{dag_id}: run {run_text} failed"),
                };
                if on == AlertOn::Failure {
                    if let Some(run) = &run {
                        self.describe_failure(&dag, run.id, &mut m).await?;
                    }
                }
            }
            EventKind::TryFinished { try_number, error, task_state, .. } => {
                m.state = Some(task_state.to_string());
                m.error = error.clone();
                m.title = format!("{dag_id}: task {task_text} failed in run {run_text} (try {try_number})");
                m.log_tail = self.log_tail(dag_id, run_text, task_text, *try_number);
            }
            EventKind::RetryScheduled { try_number, at } => {
                m.title = format!("{dag_id}: task {task_text} failed in run {run_text}; try {try_number} at {at}");
                if let Some(run) = &run {
                    let tries = self.store.tries(run.id, e.task_id.as_deref()).await?;
                    if let Some(t) = tries.iter().rev().find(|t| t.state == TaskState::Failed) {
                        m.error = t.error.clone();
                        m.log_tail = self.log_tail(dag_id, run_text, task_text, t.try_number);
                    }
                }
            }
            EventKind::DeadlineMissed { deadline } => {
                let when = deadline.map(|d| d.with_timezone(&dag.timezone).to_string()).unwrap_or_default();
                // Started: a try of it has begun (a run waiting for slots is not under way).
                let started = match &run {
                    Some(r) => !self.store.tries(r.id, None).await?.is_empty(),
                    None => false,
                };
                m.state = run.as_ref().map(|r| r.state.to_string());
                m.title = if started {
                    format!("{dag_id}: run {run_text} is not finished by its deadline {when}")
                } else {
                    format!("{dag_id}: run {run_text} has not even started by its deadline {when}")
                };
            }
            EventKind::TaskStateChanged { state } => {
                m.state = Some(state.to_string());
                let tasks = self.marked_with(e, *state).await?;
                m.title = match tasks.as_slice() {
                    [_] | [] => format!("{dag_id}: task {task_text} of run {run_text} was marked {state}"),
                    many => {
                        m.task_id = None;
                        let shown: Vec<&str> = many.iter().take(10).map(String::as_str).collect();
                        let more =
                            if many.len() > 10 { format!(" and {} more", many.len() - 10) } else { String::new() };
                        format!(
                            "{dag_id}: {} tasks of run {run_text} were marked {state}: {}{more}",
                            many.len(),
                            shown.join(", ")
                        )
                    }
                };
                // One mark is one incident, however many tasks it set: the marks of one run
                // committed together share their time.
                let incident = format!("marked:{run_text}:{}:{state}", e.at.timestamp_micros());
                return Ok(expand(&rules, &incident, Some(e.id), &m, self.clock.now()));
            }
            _ => {}
        }
        Ok(expand(&rules, &format!("{}:{}", on.name(), e.id), Some(e.id), &m, self.clock.now()))
    }

    /// The tasks set to `state` by the mark `e` belongs to: the task events of its run
    /// committed with it (the same time, one after the other), `e`'s task first.
    async fn marked_with(&self, e: &Event, state: TaskState) -> Result<Vec<String>, StoreError> {
        let query = EventQuery {
            after: Some(e.id - 1),
            dag_id: e.dag_id.clone(),
            run_id: e.run_id.clone(),
            limit: 10_000,
            order: Order::Oldest,
        };
        let mut tasks = Vec::new();
        for other in self.store.events(&query).await? {
            if other.at != e.at {
                break;
            }
            match (&other.kind, &other.task_id) {
                (EventKind::TaskStateChanged { state: s }, Some(task)) if *s == state => tasks.push(task.clone()),
                _ => {}
            }
        }
        Ok(tasks)
    }

    fn message(
        &self,
        dag: &Dag,
        on: AlertOn,
        at: DateTime<Utc>,
        run_id: Option<String>,
        task_id: Option<String>,
    ) -> AlertMessage {
        let link = self.alerting.base_url.as_ref().map(|base| {
            let base = base.trim_end_matches('/');
            match &run_id {
                Some(r) => format!("{base}/api/v1/dags/{}/runs/{}", dag.id, encode(r)),
                None => format!("{base}/api/v1/dags/{}", dag.id),
            }
        });
        let mut m = AlertMessage::new(on.name(), String::new(), dag.id.clone(), at);
        m.run_id = run_id;
        m.task_id = task_id;
        m.link = link;
        m
    }

    /// The first task that failed in a run: its id, error and log tail on the message.
    async fn describe_failure(&self, dag: &Dag, run: i64, m: &mut AlertMessage) -> Result<(), StoreError> {
        let tries = self.store.tries(run, None).await?;
        if let Some(t) = tries.iter().find(|t| t.state == TaskState::Failed) {
            m.task_id = Some(t.task_id.clone());
            m.error = t.error.clone();
            let run_id = m.run_id.clone().unwrap_or_default();
            m.log_tail = self.log_tail(&dag.id, &run_id, &t.task_id, t.try_number);
        }
        Ok(())
    }

    fn log_tail(&self, dag: &str, run_id: &str, task: &str, try_number: u32) -> Option<String> {
        let path = crate::job::log_path(&self.alerting.logs, dag, run_id, task, try_number);
        let text = std::fs::read(&path).ok()?;
        // The end of the file only: a log may be gigabytes.
        let from = text.len().saturating_sub(64 * 1024);
        let text = String::from_utf8_lossy(&text[from..]);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
        (!tail.trim().is_empty()).then_some(tail)
    }

    /// Freshness and `sla`: the alerts due now, and when to look again.
    async fn timers(&self) -> Result<(Vec<NewAlert>, DateTime<Utc>), StoreError> {
        let now = self.clock.now();
        let mut next = now + TIMER_CAP;
        let mut alerts = Vec::new();
        let catalog = self.catalog.borrow().clone();
        let fresh: Vec<&Arc<Dag>> = catalog.dags.values().filter(|d| d.freshness.is_some()).collect();
        if !fresh.is_empty() {
            let last: BTreeMap<String, DateTime<Utc>> = self.store.last_successes().await?.into_iter().collect();
            for dag in fresh {
                let Some(f) = &dag.freshness else { continue };
                let max_age = chrono::Duration::from_std(f.max_age.as_std()).unwrap_or(chrono::Duration::MAX);
                // Never succeeded: counted from the start date (a DAG with none has no baseline).
                let (since, key) = match last.get(&dag.id) {
                    Some(t) => (*t, t.timestamp_micros().to_string()),
                    None => match dag.start_date {
                        Some(s) => (s.with_timezone(&Utc), "never".to_string()),
                        None => continue,
                    },
                };
                let due = since.checked_add_signed(max_age).unwrap_or(DateTime::<Utc>::MAX_UTC);
                if due > now {
                    next = next.min(due);
                    continue;
                }
                let rules = self.rules(dag, AlertOn::Freshness);
                if rules.is_empty() {
                    continue;
                }
                let mut m = self.message(dag, AlertOn::Freshness, now, None, None);
                m.title = match key.as_str() {
                    "never" => format!("{}: no run has succeeded since {} (max_age {})", dag.id, since, f.max_age),
                    _ => format!(
                        "{}: no run has succeeded for {} (since {since}; max_age {})",
                        dag.id,
                        human(now - since),
                        f.max_age
                    ),
                };
                alerts.extend(expand(&rules, &format!("freshness:{key}"), None, &m, now));
            }
        }
        let sla_dags: Vec<&Arc<Dag>> =
            catalog.dags.values().filter(|d| d.tasks.iter().any(|t| t.max_duration.is_some())).collect();
        if !sla_dags.is_empty() {
            for (run, t) in self.store.running_tries().await? {
                let Some(dag) = catalog.dag(&run.dag_id) else { continue };
                let Some(max) = dag.task(&t.task_id).and_then(|task| task.max_duration) else { continue };
                let max_d = chrono::Duration::from_std(max.as_std()).unwrap_or(chrono::Duration::MAX);
                let due = t.started_at.checked_add_signed(max_d).unwrap_or(DateTime::<Utc>::MAX_UTC);
                if due > now {
                    next = next.min(due);
                    continue;
                }
                let rules = self.rules(dag, AlertOn::Sla);
                if rules.is_empty() {
                    continue;
                }
                let mut m = self.message(dag, AlertOn::Sla, now, Some(run.run_id.clone()), Some(t.task_id.clone()));
                m.state = Some(TaskState::Running.to_string());
                m.title = format!(
                    "{}: task {} of run {} has run for {} (max_duration {max})",
                    dag.id,
                    t.task_id,
                    run.run_id,
                    human(now - t.started_at)
                );
                let key = format!("sla:{}:{}:{}", run.id, t.task_id, t.try_number);
                alerts.extend(expand(&rules, &key, None, &m, now));
            }
        }
        Ok((alerts, next))
    }
}

/// One alert per channel of the rules (a channel named by two rules gets one).
fn expand(
    rules: &[&AlertRule],
    incident: &str,
    event_id: Option<i64>,
    m: &AlertMessage,
    now: DateTime<Utc>,
) -> Vec<NewAlert> {
    let mut out: Vec<NewAlert> = Vec::new();
    for rule in rules {
        let digest = rule.digest.map(|d| chrono::Duration::from_std(d.as_std()).unwrap_or(chrono::Duration::zero()));
        let mut message = m.clone();
        if digest.is_some() {
            message.details.insert(DIGEST.into(), Value::Bool(true));
        }
        let map = match serde_json::to_value(&message) {
            Ok(Value::Object(map)) => map,
            _ => Default::default(),
        };
        for channel in &rule.to {
            let channel = channel.to_string();
            if out.iter().any(|a| a.channel == channel) {
                continue;
            }
            out.push(NewAlert {
                channel,
                incident: incident.to_string(),
                rule: m.rule.clone(),
                dag_id: m.dag_id.clone(),
                run_id: m.run_id.clone(),
                task_id: m.task_id.clone(),
                event_id,
                message: map.clone(),
                due_at: digest.map_or(now, |d| now + d),
            });
        }
    }
    out
}

fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A run id in a URL path: `+` and `:` as they are (RFC 3986 allows them), the rest encoded.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'+' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

struct Sender {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    alerting: Arc<Alerting>,
    wake: Arc<Wake>,
}

impl Sender {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let next = match self.deliver_due().await {
                Ok(next) => next,
                Err(e) => {
                    warn!(error = %e, "alerts: cannot read or write the store; trying again in 5 s");
                    Some(self.clock.now() + chrono::Duration::seconds(5))
                }
            };
            let until = next.unwrap_or_else(|| self.clock.now() + chrono::Duration::hours(1));
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = self.clock.sleep_until(until) => {}
            }
        }
    }

    /// Delivers what is due; answers when the next pending alert is due.
    async fn deliver_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        loop {
            let now = self.clock.now();
            let due = self.store.due_alerts(now, SEND_BATCH).await?;
            if due.is_empty() {
                return self.store.next_alert_due().await;
            }
            // Each send's attempts are recorded as soon as it ends, together with those of
            // every other send that ended meanwhile: sends that end at once (a channel's
            // timeouts, a backlog going out) are one transaction, not one per alert.
            let mut sends: FuturesUnordered<_> = group(due).into_iter().map(|g| self.send(g)).collect();
            while let Some(first) = sends.next().await {
                let mut ended = vec![first];
                while let Some(Some(more)) = sends.next().now_or_never() {
                    ended.push(more);
                }
                self.record(ended).await?;
            }
        }
    }

    /// Sends one message for `alerts` (several: a digest); the alerts with how it went.
    async fn send(&self, alerts: Vec<AlertRow>) -> (Vec<AlertRow>, Result<String, SendError>) {
        let Some(first) = alerts.first() else { return (alerts, Ok(String::new())) };
        let channel = ChannelRef::from_str(&first.channel);
        let messages: Result<Vec<AlertMessage>, _> =
            alerts.iter().map(|a| serde_json::from_value::<AlertMessage>(Value::Object(a.message.clone()))).collect();
        let outcome = match (channel, messages) {
            (Err(e), _) => {
                Err(SendError { message: format!("bad channel `{}`: {e}", first.channel), retryable: false })
            }
            (_, Err(e)) => Err(SendError { message: format!("unreadable alert message: {e}"), retryable: false }),
            (Ok(channel), Ok(messages)) => {
                let m = AlertMessage::digest(&messages);
                let send = self.alerting.notifier.send(&channel, &m);
                match tokio::time::timeout(self.alerting.send_timeout, send).await {
                    Ok(r) => r,
                    Err(_) => Err(SendError::retryable(
                        &channel,
                        format!("no answer within {:?}", self.alerting.send_timeout),
                    )),
                }
            }
        };
        (alerts, outcome)
    }

    /// Records the attempts of sends that ended, in one transaction.
    async fn record(&self, ended: Vec<(Vec<AlertRow>, Result<String, SendError>)>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut attempts = Vec::new();
        for (alerts, outcome) in &ended {
            for a in alerts {
                let attempt = match outcome {
                    Ok(answer) => Attempt::Delivered { answer: answer.clone() },
                    Err(f) => {
                        let retry = now + backoff(a.attempts + 1);
                        let retry_at = (f.retryable && retry - a.created_at < GIVE_UP_AFTER).then_some(retry);
                        Attempt::Failed { error: f.message.clone(), retry_at }
                    }
                };
                match (outcome, &attempt) {
                    (Ok(_), _) => {
                        info!(alert = a.id, channel = %a.channel, dag = %a.dag_id, rule = %a.rule, "alert delivered")
                    }
                    (Err(f), Attempt::Failed { retry_at: Some(at), .. }) => {
                        warn!(alert = a.id, channel = %a.channel, error = %f.message, retry_at = %at, "alert not delivered; will try again")
                    }
                    (Err(f), _) => {
                        warn!(alert = a.id, channel = %a.channel, error = %f.message, "alert not delivered; giving up")
                    }
                }
                attempts.push((a.id, attempt));
            }
        }
        for answer in self.store.record_attempts(now, &attempts).await? {
            match answer {
                // Another sender (a second daemon) recorded it first.
                Err(StoreError::Conflict(_)) => {}
                r => {
                    r?;
                }
            }
        }
        Ok(())
    }
}

/// Due alerts as sends: a digest alert goes with the other digest alerts of its rule, DAG and
/// channel; every other alert alone.
fn group(due: Vec<AlertRow>) -> Vec<Vec<AlertRow>> {
    let mut singles = Vec::new();
    let mut digests: BTreeMap<(String, String, String), Vec<AlertRow>> = BTreeMap::new();
    for a in due {
        if a.message.get("details").and_then(|d| d.get(DIGEST)).and_then(Value::as_bool) == Some(true) {
            digests.entry((a.channel.clone(), a.dag_id.clone(), a.rule.clone())).or_default().push(a);
        } else {
            singles.push(vec![a]);
        }
    }
    singles.extend(digests.into_values());
    singles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_minutes() {
        let s: Vec<i64> = (1..=9).map(|n| backoff(n).num_seconds()).collect();
        assert_eq!(s, [10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(backoff(0).num_seconds(), 10);
        assert_eq!(backoff(u32::MAX).num_seconds(), 600);
    }

    #[test]
    fn run_ids_in_links() {
        assert_eq!(encode("manual__2026-03-01T05:00:00+00:00"), "manual__2026-03-01T05:00:00+00:00");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
