//! The engine: one event loop that owns the active runs.
//!
//! The store is the truth; the engine keeps the active runs (queued or running) in memory and
//! writes every change through the store before acting on it. Nothing polls tables in a
//! loop: a finished try wakes its downstream tasks at once (only they are re-evaluated), timers
//! wake the loop for retries, deadlines and schedule ticks, and a once-a-second check of the
//! store's change counter notices what another process (the CLI) wrote.
//!
//! Waiting and acting are apart: [`Engine::next_event`] waits for one [`EngineEvent`] and
//! [`Engine::handle`] acts on it, then takes the turn's housekeeping (fire schedules, start
//! runs, promote retries, apply trigger rules, record deadlines, finish runs, start tasks).
//! [`Engine::run`] is the two in a loop; a test drives them itself ([`Engine::step`],
//! [`Engine::is_idle`], [`Engine::next_timer`]) on a simulated clock. Every "now" and every
//! timer comes from the engine's [`Clock`].

mod in_flight;
mod slots;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sluice_dag::{after_try, evaluate, run_verdict, Dag, Decision, EndedTry, Folder, RunState, TaskState, TryResult};
use sluice_store::{
    DagSync, EventKind, Finish, FinishTry, Limits, NewEvent, Run, RunFilter, RunKind, Start, Store, TaskLimits,
    TryOutcome,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use self::in_flight::{Ended, InFlight};
use self::slots::{Slots, Want};

use crate::actions::{self, ActionError};
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::commands::{Command, CommandError, Commands, Envelope, Reply};
use crate::config::Config;
pub use crate::job::{log_path, run_dates};
use crate::job::{render, Job, TryDone};
use crate::operators::{kill_orphan, OperatorProvider, Outcome, TaskError};
use crate::stats::EngineStats;
use crate::SchedulerError;

type Result<T> = std::result::Result<T, SchedulerError>;

/// How often the loop asks the store whether another process wrote to it.
const EXTERNAL_CHECK: StdDuration = StdDuration::from_secs(1);

/// What the engine runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The daemon: fires schedules, runs every run that is not a `test` run, until shutdown.
    Daemon,
    /// `dagctl test`: runs one run to its end, then returns.
    SingleRun(i64),
}

/// A DAG with its task adjacency, shared by the runs that use this version of it.
#[derive(Clone)]
struct DagEntry {
    dag: Arc<Dag>,
    ups: Arc<Vec<Vec<usize>>>,
    downs: Arc<Vec<Vec<usize>>>,
}

impl DagEntry {
    fn new(dag: Dag) -> DagEntry {
        let (ups, downs) = dag.adjacency();
        DagEntry { dag: Arc::new(dag), ups: Arc::new(ups), downs: Arc::new(downs) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ti {
    state: TaskState,
    try_number: u32,
    max_tries: u32,
}

struct ActiveRun {
    run: Run,
    entry: DagEntry,
    tis: Vec<Ti>,
    /// Tasks whose upstreams changed since they were last evaluated.
    dirty: BTreeSet<usize>,
}

/// A change to the set of DAGs, from the folder watcher.
pub enum Reload {
    Folder(LoadedDags),
}

/// What wakes the engine. Each event is handled by one turn ([`Engine::handle`]). An input
/// the engine gains (a command channel) is one more variant here, one more branch in
/// [`Engine::next_event`] and one more arm in [`Engine::handle`], acted on in the same turn.
pub enum EngineEvent {
    /// The engine has taken no turn yet: the first looks at everything it was given.
    Started,
    /// Tries ended: every one that had ended when the first was noticed, recorded together.
    TriesEnded(TriesEnded),
    /// A timer is due (a retry, a deadline, a schedule tick, the end of the grace period), or
    /// the system clock's hourly wake-up.
    Timer,
    /// Time to ask the store whether another process wrote to it.
    ExternalCheck,
    /// The DAG folder was reloaded.
    Reload(Reload),
    /// A stop was asked for (or whoever could ask went away).
    Shutdown,
    /// A caller asked for an action through [`Engine::commands`].
    Command(Envelope),
    /// The scheduler's lease on a shared database could not be renewed in time (see
    /// [`Engine::fenced_by`]): other schedulers may own its tries already.
    LeaseLost(String),
}

/// The tries of an [`EngineEvent::TriesEnded`], as they ended: in their tokio tasks, or at
/// once (a `noop`, which needs no task).
pub struct TriesEnded(Vec<Ended>);

/// Whether the engine goes on after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The mode's end: the stop is complete (daemon) or the run finished (test).
    Done,
}

/// Where the engine's events come from besides its own tries and timers; [`Engine::run`]
/// connects them.
struct Inputs {
    shutdown: Option<watch::Receiver<bool>>,
    reloads: Option<mpsc::Receiver<Reload>>,
    /// Commands, once [`Engine::commands`] handed out a sender.
    commands: Option<(Commands, mpsc::Receiver<Envelope>)>,
    /// When the store is next asked whether another process wrote to it.
    next_external: tokio::time::Instant,
    /// Says why once the lease is lost ([`Engine::fenced_by`]).
    lease_lost: Option<watch::Receiver<Option<String>>>,
}

/// A loaded folder made ready for the engine: each DAG with its adjacency and a hash of its
/// source. Built by [`LoadedDags::prepare`] off the engine's thread (parsing and preparing a
/// huge file never stalls the loop); [`Engine::set_dags`] only swaps it in.
pub struct LoadedDags {
    dags: Vec<(DagEntry, String, u64)>,
    files: Vec<sluice_dag::LoadedFile>,
}

impl LoadedDags {
    pub fn prepare(folder: Folder) -> LoadedDags {
        let Folder { dags, files } = folder;
        let dags = dags
            .into_iter()
            .map(|mut dag| {
                // The store keeps the source (the CLI's fallback while the file is broken);
                // the engine never reads it again.
                let source = std::mem::take(&mut dag.source);
                let hash = hash_of(&(&source, dag.file.as_os_str()));
                // The parser collects tasks into a vector grown by doubling: with a thousand
                // DAGs loaded, the spare capacity alone is megabytes.
                dag.tasks.shrink_to_fit();
                (DagEntry::new(dag), source, hash)
            })
            .collect();
        LoadedDags { dags, files }
    }
}

fn hash_of(v: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(v)
}

pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Config,
    /// Environment every try's local processes get on top of the daemon's: `PATH` with this
    /// binary's folder first (a task can call `dagctl`), and where the state is.
    task_env: Arc<Vec<(String, String)>>,
    providers: Arc<Vec<Arc<dyn OperatorProvider>>>,
    mode: Mode,
    dags: HashMap<String, DagEntry>,
    paused: HashSet<String>,
    runs: HashMap<i64, ActiveRun>,
    ready: Vec<(i64, usize)>,
    tries: InFlight,
    /// The slot of every try in flight, by (run, task index).
    slots: Slots<(i64, usize)>,
    retries: BTreeSet<(DateTime<Utc>, i64, usize)>,
    /// Task states the turn decided (per run), written with the turn's try starts in one
    /// transaction; empty between turns.
    pending_states: Vec<(i64, Vec<(String, TaskState)>)>,
    /// When each scheduled DAG next needs its schedule looked at (its next fire time).
    next_check: HashMap<String, DateTime<Utc>>,
    /// The hash of each DAG's source (or of its file's errors) as last written to the store:
    /// a reload writes only what changed.
    synced: HashMap<String, u64>,
    /// Set by a stop: when the grace period ends.
    stopping: Option<DateTime<Utc>>,
    shutdown_recorded: bool,
    inputs: Inputs,
    started: bool,
    stats: Arc<EngineStats>,
    /// Where each loaded folder is published, once someone asked ([`Engine::catalog`]).
    catalog: Option<watch::Sender<Arc<Catalog>>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, config: Config, providers: Vec<Arc<dyn OperatorProvider>>, mode: Mode) -> Engine {
        let task_env = Arc::new(task_env(&config));
        let slots = Slots::new(config.parallelism);
        let telemetry = providers.iter().filter_map(|p| p.telemetry()).collect();
        let stats = Arc::new(EngineStats::new(&config.pools, telemetry));
        Engine {
            store,
            clock: Arc::new(SystemClock),
            config,
            task_env,
            providers: Arc::new(providers),
            mode,
            dags: HashMap::new(),
            paused: HashSet::new(),
            runs: HashMap::new(),
            ready: Vec::new(),
            tries: InFlight::new(),
            slots,
            retries: BTreeSet::new(),
            pending_states: Vec::new(),
            next_check: HashMap::new(),
            synced: HashMap::new(),
            stopping: None,
            shutdown_recorded: false,
            inputs: Inputs {
                shutdown: None,
                reloads: None,
                commands: None,
                next_external: tokio::time::Instant::now(),
                lease_lost: None,
            },
            started: false,
            stats,
            catalog: None,
        }
    }

    /// Takes "now" and timers from `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        self
    }

    /// Stops the engine, its tries cut off, as soon as `lost` says why the scheduler's lease
    /// is lost ([`crate::lease`]): from then on other schedulers may hold its tries, and it
    /// must do nothing more for them.
    pub fn fenced_by(mut self, lost: watch::Receiver<Option<String>>) -> Engine {
        self.inputs.lease_lost = Some(lost);
        self
    }

    fn is_daemon(&self) -> bool {
        self.mode == Mode::Daemon
    }

    /// Takes the DAGs of a freshly loaded folder. A file that fails to load keeps its last good
    /// version (found by DAG id, or by file path when the id cannot be read); its error is
    /// recorded for `dagctl list`. Runs already active keep the version they started with.
    /// Only what changed since the last load is written to the store, in one transaction.
    pub async fn set_dags(&mut self, loaded: LoadedDags) -> Result<()> {
        let LoadedDags { dags, files } = loaded;
        let mut next: HashMap<String, DagEntry> = HashMap::with_capacity(dags.len());
        let mut syncs = Vec::new();
        let mut synced = HashMap::with_capacity(dags.len());
        for (entry, source, hash) in dags {
            let dag = &entry.dag;
            if self.synced.get(&dag.id) != Some(&hash) {
                syncs.push(DagSync {
                    dag_id: dag.id.clone(),
                    file: dag.file.display().to_string(),
                    source: Some(source),
                    parse_error: None,
                    paused_at_creation: dag.paused_at_creation,
                });
            }
            synced.insert(dag.id.clone(), hash);
            next.insert(dag.id.clone(), entry);
        }
        for f in files.iter().filter(|f| f.has_errors()) {
            let error: Vec<String> = f.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
            let id = f
                .dag_id
                .clone()
                .or_else(|| self.dags.iter().find(|(_, e)| e.dag.file == f.path).map(|(id, _)| id.clone()));
            let Some(id) = id else {
                warn!(file = %f.path.display(), "DAG file does not load and has no earlier version");
                continue;
            };
            if next.contains_key(&id) {
                continue; // a duplicate id: the first file keeps it
            }
            let error = error.join("\n");
            let hash = hash_of(&(&error, f.path.as_os_str()));
            if self.synced.get(&id) != Some(&hash) {
                if self.dags.contains_key(&id) {
                    warn!(dag = %id, file = %f.path.display(), "DAG file does not load; keeping its last good version");
                } else {
                    warn!(dag = %id, file = %f.path.display(), "DAG file does not load");
                }
                syncs.push(DagSync {
                    dag_id: id.clone(),
                    file: f.path.display().to_string(),
                    source: None,
                    parse_error: Some(error),
                    paused_at_creation: false,
                });
            }
            synced.insert(id.clone(), hash);
            if let Some(old) = self.dags.get(&id) {
                next.insert(id, old.clone());
            }
        }
        self.store.sync_dags(&syncs).await?;
        if let Some(tx) = &self.catalog {
            let dags = next.iter().map(|(id, e)| (id.clone(), e.dag.clone())).collect();
            let failed_files = crate::catalog::failed_files(&files);
            tx.send_replace(Arc::new(Catalog { dags, failed_files, loaded_at: Some(self.clock.now()) }));
        }
        let wrote = !syncs.is_empty();
        drop(syncs);
        self.synced = synced;
        let old = std::mem::replace(&mut self.dags, next);
        self.next_check.clear();
        self.refresh_paused().await?;
        if wrote {
            // Syncing the DAGs' sources filled the database's page cache; it is not read again.
            self.store.release_memory().await?;
        }
        let free = move || {
            drop(old);
            drop(files);
            release_freed_memory();
        };
        if self.runs.is_empty() && self.tries.is_empty() {
            free();
        } else {
            // Freeing the replaced versions of a big folder (and handing the memory back)
            // takes time: not on the loop while work is in flight.
            tokio::task::spawn_blocking(free);
        }
        Ok(())
    }

    async fn refresh_paused(&mut self) -> Result<()> {
        let paused: HashSet<String> =
            self.store.dags().await?.into_iter().filter(|d| d.paused).map(|d| d.dag_id).collect();
        if paused != self.paused {
            self.next_check.clear();
            self.paused = paused;
        }
        Ok(())
    }

    /// Adds one DAG (for `dagctl test`).
    pub fn add_dag(&mut self, dag: Dag) {
        self.dags.insert(dag.id.clone(), DagEntry::new(dag));
    }

    /// Loads the active runs from the store and merges them into memory: new runs are added,
    /// task states another process changed (clear, mark) are taken over, runs another process
    /// finished are dropped.
    pub async fn load_active_runs(&mut self) -> Result<()> {
        let filter = RunFilter { states: vec![RunState::Queued, RunState::Running], ..Default::default() };
        let mut active: Vec<Run> = self.store.runs(&filter).await?;
        active.retain(|r| match self.mode {
            Mode::Daemon => r.kind != RunKind::Test,
            Mode::SingleRun(id) => r.id == id,
        });
        let ids: HashSet<i64> = active.iter().map(|r| r.id).collect();
        // Runs another process finished (marked): dropped, or, while tries of theirs still
        // run, kept only to record those tries; nothing new starts in them.
        let gone: Vec<i64> = self.runs.keys().copied().filter(|id| !ids.contains(id)).collect();
        for id in gone {
            self.ready.retain(|(r, _)| *r != id);
            if self.slots.any(|(r, _)| r == id) {
                if let (Some(stored), Some(ar)) = (self.store.run(id).await?, self.runs.get_mut(&id)) {
                    ar.run.state = stored.state;
                }
            } else {
                self.runs.remove(&id);
            }
        }
        for run in active {
            let tis = self.store.task_instances(run.id).await?;
            if let Some(ar) = self.runs.get_mut(&run.id) {
                ar.run.state = run.state;
                for ti in tis {
                    let Some(i) = ar.entry.dag.task_index(&ti.task_id) else { continue };
                    if self.slots.contains((run.id, i)) {
                        continue;
                    }
                    let mine = &mut ar.tis[i];
                    if mine.state != ti.state || mine.max_tries != ti.max_tries {
                        *mine = Ti { state: ti.state, try_number: ti.try_number, max_tries: ti.max_tries };
                        ar.dirty.insert(i);
                        ar.dirty.extend(ar.entry.downs[i].iter().copied());
                        if ti.state == TaskState::Scheduled {
                            self.ready.push((run.id, i));
                        }
                    }
                }
                continue;
            }
            let Some(entry) = self.dags.get(&run.dag_id).cloned() else {
                warn!(dag = %run.dag_id, run = %run.run_id, "run of a DAG that is not loaded; left as it is");
                continue;
            };
            let mut states: Vec<Ti> =
                vec![Ti { state: TaskState::Removed, try_number: 0, max_tries: 1 }; entry.dag.tasks.len()];
            let mut removed = Vec::new();
            let mut retry_at: HashMap<usize, DateTime<Utc>> = HashMap::new();
            for ti in tis {
                match entry.dag.task_index(&ti.task_id) {
                    Some(i) => {
                        states[i] = Ti { state: ti.state, try_number: ti.try_number, max_tries: ti.max_tries };
                        if let Some(at) = ti.next_try_at {
                            retry_at.insert(i, at);
                        }
                    }
                    None if !ti.state.is_finished() => removed.push((ti.task_id.clone(), TaskState::Removed)),
                    None => {}
                }
            }
            if !removed.is_empty() {
                self.store.set_task_states(run.id, &removed, self.clock.now()).await?;
            }
            for (i, ti) in states.iter().enumerate() {
                match ti.state {
                    TaskState::Scheduled | TaskState::Queued => self.ready.push((run.id, i)),
                    TaskState::UpForRetry => {
                        let at = retry_at.get(&i).copied().unwrap_or_else(|| self.clock.now());
                        self.retries.insert((at, run.id, i));
                    }
                    _ => {}
                }
            }
            let dirty = (0..states.len()).collect();
            self.runs.insert(run.id, ActiveRun { run, entry, tis: states, dirty });
        }
        Ok(())
    }

    /// After a crash or a stop: every try still marked running is resumed when its operator
    /// can pick it up from its recorded ids, or else counted as failed (its orphaned process
    /// killed first) and left to its retry policy. A finished task is never run again.
    ///
    /// On a database several schedulers share, the same happens to the tries of a scheduler
    /// that died (its lease ran out), which this one takes over: called at start and at every
    /// change check (a leased scheduler only: with an exclusive claim every running try is
    /// this engine's own after the start).
    pub async fn recover(&mut self) -> Result<()> {
        let orphans = self.store.take_over_tries().await?;
        if orphans.iter().any(|(run, _)| !self.runs.contains_key(&run.id)) {
            // A run this engine has not seen yet (another scheduler created it).
            self.load_active_runs().await?;
        }
        // Never a test run's: those are their `dagctl test` process's own.
        for (run, t) in orphans {
            let Some(ar) = self.runs.get(&run.id) else {
                warn!(dag = %run.dag_id, run = %run.run_id, task = %t.task_id, "interrupted try of a DAG that is not loaded; left as it is");
                continue;
            };
            let Some(i) = ar.entry.dag.task_index(&t.task_id) else { continue };
            let task = &ar.entry.dag.tasks[i];
            let rendered = render(&self.store, &ar.entry.dag, &run, i).await;
            let op =
                rendered.ok().and_then(|op| sluice_operator::build(&self.providers, &op, &ar.entry.dag, task).ok());
            // Processes of the interrupted try are killed first, whatever happens next.
            let killed = kill_orphan(run.id, &t.task_id, t.try_number);
            if killed > 0 {
                info!(task = %t.task_id, killed, "killed the orphaned processes of an interrupted try");
            }
            if killed == 0 && op.is_some_and(|op| op.can_resume(&t.external_ids)) {
                info!(dag = %run.dag_id, run = %run.run_id, task = %t.task_id, r#try = t.try_number, "resuming interrupted try");
                self.event(&run, Some(&t.task_id), EventKind::TryResumed { try_number: t.try_number }).await?;
                self.spawn_try(run.id, i, t.try_number, t.external_ids.clone());
                continue;
            }
            let error = "interrupted: the scheduler stopped while this try was running".to_string();
            let now = self.clock.now();
            let ended = EndedTry {
                dag_id: &run.dag_id,
                run_id: &run.run_id,
                task_id: &t.task_id,
                try_number: t.try_number,
                max_tries: ar.tis[i].max_tries,
                at: now,
            };
            let after = after_try(&ended, TryResult::Failed { retryable: true }, &task.retry);
            let (state, retry_at) = (after.state(), after.retry_at());
            warn!(dag = %run.dag_id, run = %run.run_id, task = %t.task_id, r#try = t.try_number, retry = retry_at.is_some(), "recovered interrupted try");
            self.store
                .finish_try(
                    run.id,
                    &t.task_id,
                    t.try_number,
                    &TryOutcome::Failed { error: error.clone(), retry_at },
                    now,
                )
                .await?;
            self.event(&run, Some(&t.task_id), EventKind::TryInterrupted { try_number: t.try_number, error }).await?;
            if let Some(ar) = self.runs.get_mut(&run.id) {
                ar.tis[i].state = state;
                ar.dirty.extend(ar.entry.downs[i].iter().copied());
            }
            if let Some(at) = retry_at {
                self.retries.insert((at, run.id, i));
            }
        }
        Ok(())
    }

    async fn event(&self, run: &Run, task: Option<&str>, kind: EventKind) -> Result<()> {
        self.store
            .add_event(&NewEvent {
                dag_id: Some(run.dag_id.clone()),
                run_id: Some(run.run_id.clone()),
                task_id: task.map(str::to_string),
                kind,
            })
            .await?;
        Ok(())
    }

    /// Runs the loop until the mode's end: a stop (daemon), or the run finishing (test).
    pub async fn run(&mut self, shutdown: watch::Receiver<bool>, reloads: mpsc::Receiver<Reload>) -> Result<()> {
        self.inputs.shutdown = Some(shutdown);
        self.inputs.reloads = Some(reloads);
        while self.step().await? == Flow::Continue {}
        Ok(())
    }

    /// One turn: waits for the next event and handles it.
    pub async fn step(&mut self) -> Result<Flow> {
        let event = self.next_event().await;
        // How long the turn took, for `/metrics` only: the monotonic clock is read here and
        // never decides anything (the engine's "now" comes from its `Clock`).
        let started = std::time::Instant::now();
        let flow = self.handle(event).await;
        self.stats.turn_took(started.elapsed());
        flow
    }

    /// Waits for what the engine acts on next: tries that ended, a timer (on the engine's
    /// clock), the external-change check, a folder reload or a stop (the last two once
    /// [`Engine::run`] has connected them).
    pub async fn next_event(&mut self) -> EngineEvent {
        if !self.started {
            return EngineEvent::Started;
        }
        loop {
            let clock = self.clock.clone();
            let wake = self.next_timer().unwrap_or(DateTime::<Utc>::MAX_UTC);
            let stopping = self.stopping.is_some();
            let inputs = &mut self.inputs;
            tokio::select! {
                Some(batch) = self.tries.next_batch(), if !self.tries.is_empty() => {
                    return EngineEvent::TriesEnded(TriesEnded(batch));
                }
                _ = clock.sleep_until(wake) => return EngineEvent::Timer,
                _ = tokio::time::sleep_until(inputs.next_external) => {
                    inputs.next_external = tokio::time::Instant::now() + EXTERNAL_CHECK;
                    return EngineEvent::ExternalCheck;
                }
                stop = wait_for_stop(inputs.shutdown.as_mut()), if !stopping => {
                    if stop {
                        return EngineEvent::Shutdown;
                    }
                }
                Some(reload) = recv(inputs.reloads.as_mut()) => return EngineEvent::Reload(reload),
                Some(command) = recv(inputs.commands.as_mut().map(|(_, rx)| rx)) => return EngineEvent::Command(command),
                Some(why) = lost(inputs.lease_lost.as_mut()) => return EngineEvent::LeaseLost(why),
            }
        }
    }

    /// Acts on `event`, then takes the turn's housekeeping; says whether the engine goes on.
    pub async fn handle(&mut self, event: EngineEvent) -> Result<Flow> {
        match event {
            EngineEvent::Started => self.started = true,
            EngineEvent::TriesEnded(TriesEnded(batch)) => self.handle_done(batch).await?,
            EngineEvent::Timer => {}
            EngineEvent::ExternalCheck => {
                if self.store.changed_elsewhere().await? {
                    self.refresh_paused().await?;
                    self.load_active_runs().await?;
                }
                if self.stopping.is_none() && self.inputs.lease_lost.is_some() {
                    // Tries of schedulers that died, on a shared database (a scheduler there
                    // holds a lease).
                    self.recover().await?;
                }
            }
            EngineEvent::LeaseLost(why) => {
                let running = self.slots.len();
                self.tries.abort_all().await;
                error!(running, "{why}: every try of this scheduler was cut off; it stops");
                return Err(SchedulerError::LeaseLost(why));
            }
            EngineEvent::Reload(Reload::Folder(folder)) => self.set_dags(folder).await?,
            EngineEvent::Command(envelope) => self.handle_command(envelope).await?,
            EngineEvent::Shutdown => {
                let grace = self.config.grace_period.as_std();
                if self.is_daemon() {
                    let running = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                    let kind = EventKind::DaemonStopping { running };
                    self.store.add_event(&NewEvent { dag_id: None, run_id: None, task_id: None, kind }).await?;
                }
                self.cut_off_resumable().await?;
                info!(running = self.slots.len(), grace = %humantime::format_duration(grace), "stopping: no new tasks start; waiting for running ones");
                let end = chrono::Duration::from_std(grace).ok().and_then(|g| self.clock.now().checked_add_signed(g));
                self.stopping = Some(end.unwrap_or(DateTime::<Utc>::MAX_UTC));
            }
        }
        self.housekeeping().await
    }

    /// The engine's own figures (when its loop last turned, what is in flight), updated every
    /// turn.
    pub fn stats(&self) -> Arc<EngineStats> {
        self.stats.clone()
    }

    /// The DAGs the engine runs, as of its last folder load, and every load after: what the
    /// API lists. Holds the engine's own `Arc<Dag>`s; costs nothing until asked for.
    pub fn catalog(&mut self) -> watch::Receiver<Arc<Catalog>> {
        match &self.catalog {
            Some(tx) => tx.subscribe(),
            None => {
                let dags = self.dags.iter().map(|(id, e)| (id.clone(), e.dag.clone())).collect();
                let (tx, rx) = watch::channel(Arc::new(Catalog { dags, failed_files: Vec::new(), loaded_at: None }));
                self.catalog = Some(tx);
                rx
            }
        }
    }

    /// A handle to send this engine [`Command`]s; each is carried out in the engine's loop (by
    /// the same [`actions`] the CLI calls) and acted on in the same turn.
    pub fn commands(&mut self) -> Commands {
        self.inputs.commands.get_or_insert_with(Commands::channel).0.clone()
    }

    /// Carries out a command, answers it, and takes over what it changed, so the turn that
    /// follows acts on it: a new run starts, cleared tasks run again, a pause holds.
    async fn handle_command(&mut self, envelope: Envelope) -> Result<()> {
        let Envelope { command, reply } = envelope;
        let result = self.carry_out(&command).await;
        if result.is_ok() && !command.is_dry_run() {
            match command {
                Command::SetPaused { .. } => self.refresh_paused().await?,
                _ => self.load_active_runs().await?,
            }
        }
        // A caller that stopped waiting does not need the answer.
        let _ = reply.send(result.map_err(CommandError::from));
        Ok(())
    }

    async fn carry_out(&self, command: &Command) -> std::result::Result<Reply, ActionError> {
        let dag = match self.dags.get(command.dag_id()) {
            Some(entry) => entry.dag.clone(),
            None => {
                let id = command.dag_id();
                return Err(ActionError::NotFound(format!("the scheduler has no DAG `{id}` loaded")));
            }
        };
        let (store, now) = (self.store.as_ref(), self.clock.now());
        Ok(match command {
            Command::Trigger { request, .. } => Reply::Triggered(actions::trigger(store, &dag, request, now).await?),
            Command::Backfill { request, .. } => Reply::Backfilled(actions::backfill(store, &dag, request, now).await?),
            Command::Clear { request, .. } => Reply::Cleared(actions::clear(store, &dag, request, now).await?),
            Command::Mark { request, .. } => Reply::Marked(actions::mark(store, &dag, request, now).await?),
            Command::SetPaused { paused, .. } => Reply::Paused(actions::set_paused(store, &dag.id, *paused).await?),
        })
    }

    /// Whether the engine has nothing to do until a timer: no try in flight, no first turn
    /// pending, no timer due. A test on a simulated clock moves the clock to
    /// [`Engine::next_timer`] then.
    pub fn is_idle(&self) -> bool {
        self.started && self.tries.is_empty() && self.next_timer().is_none_or(|t| t > self.clock.now())
    }

    /// The earliest timer: the next retry, deadline or schedule check, or the end of the grace
    /// period; `None` when there is none.
    pub fn next_timer(&self) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = self.retries.first().map(|(at, _, _)| *at);
        let mut consider = |t: DateTime<Utc>| next = Some(next.map_or(t, |n| n.min(t)));
        for r in self.runs.values() {
            if let (Some(d), false) = (r.run.deadline, r.run.deadline_missed) {
                consider(d);
            }
        }
        if self.is_daemon() && self.stopping.is_none() {
            for t in self.next_check.values() {
                consider(*t);
            }
        }
        if let Some(grace_end) = self.stopping {
            consider(grace_end);
        }
        next
    }

    /// The turn's work after its event, then the mode's end conditions.
    async fn housekeeping(&mut self) -> Result<Flow> {
        let now = self.clock.now();
        if self.is_daemon() && self.stopping.is_none() {
            self.fire_schedules(now).await?;
        }
        self.activate_runs().await?;
        self.promote_retries(now).await?;
        self.evaluate().await?;
        self.check_deadlines(now).await?;
        if self.finish_runs().await? {
            // A finished run frees a place under its DAG's `max_active_runs`: a queued run
            // starts in this turn, not at whatever event comes next.
            self.activate_runs().await?;
            self.evaluate().await?;
        }
        if self.stopping.is_none() {
            self.start_ready().await?;
        }
        self.flush_states().await?;
        let slots = &self.slots;
        self.stats.turned(self.clock.now(), self.tries.len(), self.runs.len(), |pool| slots.in_pool(pool));
        if let Mode::SingleRun(id) = self.mode {
            if !self.runs.contains_key(&id) && self.tries.is_empty() {
                return Ok(Flow::Done);
            }
        }
        if let Some(grace_end) = self.stopping {
            if self.tries.is_empty() {
                return Ok(Flow::Done);
            }
            if self.clock.now() >= grace_end {
                self.abandon_running().await?;
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::Continue)
    }

    async fn handle_done(&mut self, batch: Vec<Ended>) -> Result<()> {
        let mut done = Vec::with_capacity(batch.len());
        for d in batch {
            match d {
                Ok(d) => done.push(d),
                // Cut off on purpose (a stop): left running in the store for the next start.
                Err(e) if e.is_cancelled() => {}
                // An operator that panicked fails its try; the daemon and the other tries go on.
                Err(e) => {
                    let Some(((run, task), try_number)) = self.slots.find_task(e.id()) else { continue };
                    let why = panic_message(e.into_panic());
                    let message = format!("internal error: the operator panicked: {why}");
                    done.push(TryDone { run, task, try_number, result: Err(TaskError::fatal(message)) });
                }
            }
        }
        self.on_tries_done(done).await
    }

    /// At the start of a stop: sensors and `wait`s hold no work that a stop could lose (the
    /// next start resumes them as the same try), so they are cut off now instead of being
    /// waited for; their tries stay `running` in the store.
    async fn cut_off_resumable(&mut self) -> Result<()> {
        for (run, i) in self.slots.cut_off_resumable() {
            if let Some(ar) = self.runs.get(&run) {
                let (r, task, try_number) = (ar.run.clone(), ar.entry.dag.tasks[i].id.clone(), ar.tis[i].try_number);
                info!(dag = %r.dag_id, run = %r.run_id, task = %task, "stopping: sensor cut off; it resumes on the next start");
                self.event(&r, Some(&task), EventKind::TryCutOff { try_number }).await?;
            }
        }
        Ok(())
    }

    /// Cron: creates the runs that are due. `catchup = false` creates only the latest missed
    /// run after downtime; `catchup = true` every missed run, oldest first.
    async fn fire_schedules(&mut self, now: DateTime<Utc>) -> Result<()> {
        let due: Vec<Arc<Dag>> = self
            .dags
            .values()
            .filter(|e| e.dag.schedule.is_some() && !self.paused.contains(&e.dag.id))
            .filter(|e| self.next_check.get(&e.dag.id).is_none_or(|t| *t <= now))
            .map(|e| e.dag.clone())
            .collect();
        let mut created_any = false;
        for dag in due {
            // Each DAG's schedule is worked out in a task of its own: whatever a DAG's dates do,
            // a panic stays with that DAG, which stops being scheduled (`dagctl list` says
            // why) while the others go on.
            let (store, d) = (self.store.clone(), dag.clone());
            let check = tokio::spawn(async move {
                let mut created = Vec::new();
                for dates in crate::runs::due_runs(store.as_ref(), &d, now).await? {
                    let run = crate::runs::create_run(store.as_ref(), &d, &dates, RunKind::Scheduled, None).await?;
                    if let sluice_store::Created::New(run) = run {
                        created.push((run.run_id, dates.ds()));
                    }
                }
                let next = d.runs_firing_after(now.with_timezone(&d.timezone)).next();
                let next = next.map_or(DateTime::<Utc>::MAX_UTC, |r| r.fire_time().with_timezone(&Utc));
                Ok::<_, SchedulerError>((created, next))
            });
            match check.await {
                Ok(Ok((created, next))) => {
                    for (run, ds) in created {
                        info!(dag = %dag.id, run = %run, ds = %ds, "scheduled run created");
                        created_any = true;
                    }
                    self.next_check.insert(dag.id.clone(), next);
                }
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    let why = if e.is_panic() { panic_message(e.into_panic()) } else { e.to_string() };
                    let error = format!("the schedule cannot be computed (internal error: {why}); the DAG is not scheduled until its file changes");
                    warn!(dag = %dag.id, error = %error, "DAG not scheduled");
                    self.store.set_schedule_error(&dag.id, Some(&error)).await?;
                    self.next_check.insert(dag.id.clone(), DateTime::<Utc>::MAX_UTC);
                }
            }
        }
        // One reload for every run created (catchup may create many at once).
        if created_any {
            self.load_active_runs().await?;
        }
        Ok(())
    }

    /// Starts queued runs while their DAG is under `max_active_runs` (oldest logical date
    /// first). A paused DAG starts no queued run; its running runs finish.
    async fn activate_runs(&mut self) -> Result<()> {
        let mut queued: Vec<(DateTime<Utc>, i64)> = self
            .runs
            .values()
            .filter(|r| r.run.state == RunState::Queued)
            .map(|r| (r.run.logical_date, r.run.id))
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        queued.sort();
        for (_, id) in queued {
            let (dag_id, max) = {
                let ar = &self.runs[&id];
                (ar.run.dag_id.clone(), ar.entry.dag.max_active_runs as usize)
            };
            let single = self.mode == Mode::SingleRun(id);
            if !single && self.paused.contains(&dag_id) {
                continue;
            }
            let running =
                self.runs.values().filter(|r| r.run.dag_id == dag_id && r.run.state == RunState::Running).count();
            if single || running < max {
                let now = self.clock.now();
                if single {
                    self.store.set_run_state(id, RunState::Running, now).await?;
                } else if !self.store.start_run(id, max, now).await? {
                    // Another scheduler started it, or the DAG's limit is reached across
                    // schedulers: what it is now comes with the next change check.
                    continue;
                }
                let ar = self.runs.get_mut(&id).expect("active run");
                ar.run.state = RunState::Running;
                ar.dirty.extend(0..ar.tis.len());
                info!(dag = %dag_id, run = %ar.run.run_id, "run started");
            }
        }
        Ok(())
    }

    /// Retries whose delay has passed become scheduled again.
    async fn promote_retries(&mut self, now: DateTime<Utc>) -> Result<()> {
        while let Some(&(at, run, i)) = self.retries.first() {
            if at > now {
                break;
            }
            self.retries.pop_first();
            let Some(ar) = self.runs.get_mut(&run) else { continue };
            if ar.tis[i].state != TaskState::UpForRetry {
                continue;
            }
            let task_id = ar.entry.dag.tasks[i].id.clone();
            self.store.set_task_states(run, &[(task_id, TaskState::Scheduled)], now).await?;
            ar.tis[i].state = TaskState::Scheduled;
            self.ready.push((run, i));
        }
        Ok(())
    }

    /// Applies trigger rules to the tasks whose upstreams changed.
    async fn evaluate(&mut self) -> Result<()> {
        let ids: Vec<i64> = self
            .runs
            .iter()
            .filter(|(_, r)| r.run.state == RunState::Running && !r.dirty.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let mut changes = Vec::new();
            let mut past_checks = Vec::new();
            {
                let ar = self.runs.get_mut(&id).expect("active run");
                // Decisions can cascade (a skip makes downstream skippable): loop until stable.
                while let Some(i) = ar.dirty.pop_first() {
                    if ar.tis[i].state != TaskState::None {
                        continue;
                    }
                    let task = &ar.entry.dag.tasks[i];
                    let ups: Vec<TaskState> = ar.entry.ups[i].iter().map(|u| ar.tis[*u].state).collect();
                    match evaluate(task.trigger_rule, &ups) {
                        Decision::Wait => {}
                        Decision::Run if task.depends_on_past => past_checks.push(i),
                        Decision::Run => {
                            ar.tis[i].state = TaskState::Scheduled;
                            changes.push((task.id.clone(), TaskState::Scheduled));
                            self.ready.push((id, i));
                        }
                        d @ (Decision::Skip | Decision::UpstreamFailed) => {
                            let state =
                                if d == Decision::Skip { TaskState::Skipped } else { TaskState::UpstreamFailed };
                            ar.tis[i].state = state;
                            changes.push((task.id.clone(), state));
                            ar.dirty.extend(ar.entry.downs[i].iter().copied());
                        }
                    }
                }
            }
            if !past_checks.is_empty() {
                // The past is read from the store: what this turn decided for other runs first.
                self.flush_states().await?;
            }
            for i in past_checks {
                if self.past_allows(id, i).await? {
                    let ar = self.runs.get_mut(&id).expect("active run");
                    ar.tis[i].state = TaskState::Scheduled;
                    changes.push((ar.entry.dag.tasks[i].id.clone(), TaskState::Scheduled));
                    self.ready.push((id, i));
                }
            }
            if !changes.is_empty() {
                self.pending_states.push((id, changes));
            }
        }
        Ok(())
    }

    /// Writes the task states this turn decided and no try start has taken along.
    async fn flush_states(&mut self) -> Result<()> {
        let now = self.clock.now();
        for (run, states) in std::mem::take(&mut self.pending_states) {
            self.store.set_task_states(run, &states, now).await?;
        }
        Ok(())
    }

    /// `depends_on_past`: the same task in the previous run (by logical date) must have
    /// succeeded or been skipped. The first run of a DAG has no past.
    async fn past_allows(&self, run: i64, i: usize) -> Result<bool> {
        let ar = &self.runs[&run];
        let task_id = &ar.entry.dag.tasks[i].id;
        let filter = RunFilter { dag_id: Some(ar.run.dag_id.clone()), ..Default::default() };
        let previous = self
            .store
            .runs(&filter)
            .await?
            .into_iter()
            .filter(|r| r.logical_date < ar.run.logical_date && r.kind != RunKind::Test)
            .max_by_key(|r| r.logical_date);
        let Some(prev) = previous else { return Ok(true) };
        let state =
            self.store.task_instances(prev.id).await?.into_iter().find(|t| &t.task_id == task_id).map(|t| t.state);
        Ok(matches!(state, None | Some(TaskState::Success | TaskState::Skipped)))
    }

    async fn check_deadlines(&mut self, now: DateTime<Utc>) -> Result<()> {
        let due: Vec<i64> = self
            .runs
            .values()
            .filter(|r| !r.run.deadline_missed && r.run.deadline.is_some_and(|d| d <= now))
            .map(|r| r.run.id)
            .collect();
        for id in due {
            let ar = self.runs.get_mut(&id).expect("active run");
            if self.store.mark_deadline_missed(id, now).await? {
                warn!(dag = %ar.run.dag_id, run = %ar.run.run_id, deadline = %ar.run.deadline.expect("deadline"), "deadline missed: the run is not finished");
            }
            ar.run.deadline_missed = true;
        }
        Ok(())
    }

    /// Ends runs whose tasks are all finished, by the run verdict ([`run_verdict`]). Whether
    /// any ended.
    async fn finish_runs(&mut self) -> Result<bool> {
        let done: Vec<(i64, RunState)> = self
            .runs
            .values()
            .filter(|r| r.run.state == RunState::Running)
            .filter_map(|r| run_verdict(&r.entry.dag, &r.entry.downs, |i| r.tis[i].state).map(|v| (r.run.id, v)))
            .collect();
        let mut ended_any = false;
        for (id, state) in done {
            if self.slots.any(|(r, _)| r == id) {
                continue;
            }
            if !ended_any {
                // A run ends after the task states that end it.
                self.flush_states().await?;
            }
            ended_any = true;
            let ar = self.runs.remove(&id).expect("active run");
            let failed = state == RunState::Failed;
            self.store.set_run_state(id, state, self.clock.now()).await?;
            // Cost safety: what the run left behind (an EMR cluster nobody terminated) is
            // cleaned up in the background, so the loop goes on.
            let mut ended = ar.run.clone();
            ended.state = state;
            for p in self.providers.iter() {
                let (p, store, dag, ended) = (p.clone(), self.store.clone(), ar.entry.dag.clone(), ended.clone());
                tokio::spawn(async move { p.run_finished(&dag, &ended, store.as_ref()).await });
            }
            if failed {
                warn!(dag = %ar.run.dag_id, run = %ar.run.run_id, "run failed");
            } else {
                info!(dag = %ar.run.dag_id, run = %ar.run.run_id, "run succeeded");
            }
            // Later runs with depends_on_past may now go ahead.
            for other in self.runs.values_mut().filter(|r| r.run.dag_id == ar.run.dag_id) {
                let waiting =
                    other.entry.dag.tasks.iter().enumerate().filter(|(_, t)| t.depends_on_past).map(|(i, _)| i);
                other.dirty.extend(waiting.collect::<Vec<_>>());
            }
        }
        Ok(ended_any)
    }

    /// Starts scheduled tasks while slots last: global `parallelism`, the DAG's
    /// `max_active_tasks`, the task's pool. Higher `priority` first, then older runs, then
    /// topological order.
    async fn start_ready(&mut self) -> Result<()> {
        if self.ready.is_empty() {
            return self.flush_states().await;
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.retain(|(r, i)| {
            self.runs
                .get(r)
                .is_some_and(|ar| ar.run.state == RunState::Running && ar.tis[*i].state == TaskState::Scheduled)
        });
        ready.sort_by_key(|(r, i)| {
            let ar = &self.runs[r];
            (std::cmp::Reverse(ar.entry.dag.tasks[*i].priority), ar.run.logical_date, *r, *i)
        });
        ready.dedup();
        let mut waiting = Vec::new();
        let mut starting: Vec<(i64, usize, String)> = Vec::new();
        for (run, i) in ready {
            let ar = &self.runs[&run];
            if let Some(pool) = ar.entry.dag.tasks[i].pool.as_deref().filter(|p| !self.config.pools.contains_key(*p)) {
                let pool = pool.to_string();
                self.flush_states().await?;
                self.fail_undeclared_pool(run, i, &pool).await?;
                continue;
            }
            // The slots are taken now; the tries start below, all in one transaction.
            match self.slots.reserve((run, i), &want(ar, i, &self.config.pools)) {
                Ok(()) => starting.push((run, i, ar.entry.dag.tasks[i].id.clone())),
                Err(_) => waiting.push((run, i)),
            }
        }
        self.ready = waiting;
        if starting.is_empty() {
            return self.flush_states().await;
        }
        let keys: Vec<(i64, String)> = starting.iter().map(|(r, _, t)| (*r, t.clone())).collect();
        // What the slots checked for this engine's tries, for a store that counts every
        // scheduler's (PostgreSQL).
        let limits = Limits {
            parallelism: self.config.parallelism,
            tasks: starting
                .iter()
                .map(|(r, i, _)| {
                    let w = want(&self.runs[r], *i, &self.config.pools);
                    TaskLimits { max_active_tasks: w.max_dag, pool: w.pool.map(|(p, n)| (p.to_string(), n)) }
                })
                .collect(),
        };
        // The turn's decisions and its starts, in one transaction.
        let states = std::mem::take(&mut self.pending_states);
        let numbers = match self.store.set_states_and_start_within(&states, &keys, &limits, self.clock.now()).await {
            Ok(n) => n,
            Err(e) => {
                for (run, i, _) in &starting {
                    self.slots.release((*run, *i));
                }
                return Err(e.into());
            }
        };
        for ((run, i, _), start) in starting.into_iter().zip(numbers) {
            let try_number = match start {
                Start::Started(n) => n,
                // Other schedulers' tries fill a shared limit: it waits, as for a local slot.
                Start::NoRoom => {
                    self.slots.release((run, i));
                    self.ready.push((run, i));
                    continue;
                }
                // Lost to another writer (another scheduler started it, or it was changed
                // meanwhile): its slot goes back, and the task takes the state it has.
                Start::NotStartable(now) => {
                    self.slots.release((run, i));
                    let ar = self.runs.get_mut(&run).expect("active run");
                    if ar.tis[i].state != now {
                        ar.tis[i].state = now;
                        if now.is_finished() {
                            ar.dirty.extend(ar.entry.downs[i].iter().copied());
                        }
                    }
                    continue;
                }
            };
            {
                let ar = self.runs.get_mut(&run).expect("active run");
                ar.tis[i].state = TaskState::Running;
                ar.tis[i].try_number = try_number;
            }
            self.launch_try(run, i, try_number, Map::new());
        }
        Ok(())
    }

    /// A task in a pool `sluice.toml` does not declare gets a try that fails saying so.
    async fn fail_undeclared_pool(&mut self, run: i64, i: usize, pool: &str) -> Result<()> {
        let ar = &self.runs[&run];
        let (dag_id, task_id) = (ar.run.dag_id.clone(), ar.entry.dag.tasks[i].id.clone());
        let now = self.clock.now();
        // Lost to another writer (the task was changed meanwhile): nothing to fail.
        let Start::Started(n) = self.store.start_try(run, &task_id, now).await? else { return Ok(()) };
        let error = format!("pool `{pool}` is not declared in the [pools] of sluice.toml");
        self.store
            .finish_try(run, &task_id, n, &TryOutcome::Failed { error: error.clone(), retry_at: None }, now)
            .await?;
        let ar = self.runs.get_mut(&run).expect("active run");
        ar.tis[i].state = TaskState::Failed;
        ar.tis[i].try_number = n;
        ar.dirty.extend(ar.entry.downs[i].iter().copied());
        warn!(dag = %dag_id, task = %task_id, "{error}");
        Ok(())
    }

    /// Starts a try resumed after a restart: it takes its slot whatever the limits say (it was
    /// running already).
    fn spawn_try(&mut self, run: i64, i: usize, try_number: u32, resumed: Map<String, Value>) {
        self.slots.hold((run, i), &want(&self.runs[&run], i, &self.config.pools));
        self.launch_try(run, i, try_number, resumed);
    }

    /// Starts a try whose slot is reserved.
    fn launch_try(&mut self, run: i64, i: usize, try_number: u32, resumed: Map<String, Value>) {
        let ar = &self.runs[&run];
        let task = &ar.entry.dag.tasks[i];
        if matches!(task.operator, sluice_dag::Operator::Noop(_)) {
            // A `noop` succeeds as it starts (Airflow's scheduler treats its EmptyOperator the
            // same way): no task of its own, no log, no thread woken. Its try is recorded like
            // any other, started in this turn's transaction and ended in the next turn's.
            debug!(dag = %ar.run.dag_id, run = %ar.run.run_id, task = %task.id, r#try = try_number, "noop try");
            self.tries.ended(TryDone { run, task: i, try_number, result: Ok(Outcome::Success(Map::new())) });
            return;
        }
        let job = Job {
            store: self.store.clone(),
            providers: self.providers.clone(),
            dag: ar.entry.dag.clone(),
            run: ar.run.clone(),
            task: i,
            try_number,
            resumed,
            log_path: log_path(&self.config.logs, &ar.run.dag_id, &ar.run.run_id, &task.id, try_number),
            max_poke_interval: self.config.max_poke_interval,
            task_env: self.task_env.clone(),
        };
        // Per task at debug: the event stream (`dagctl events`) records every start and end.
        debug!(dag = %ar.run.dag_id, run = %ar.run.run_id, task = %task.id, r#try = try_number, "task started");
        let abort = self.tries.spawn(job.execute());
        self.slots.set_abort((run, i), abort, try_number);
    }

    /// Records tries that ended, all in one transaction, then wakes their downstream tasks.
    async fn on_tries_done(&mut self, batch: Vec<TryDone>) -> Result<()> {
        let mut finished: Vec<FinishTry> = Vec::with_capacity(batch.len());
        let mut meta: Vec<(i64, usize, TaskState)> = Vec::with_capacity(batch.len());
        // One time for the batch: the tries are recorded together.
        let now = self.clock.now();
        for done in batch {
            self.slots.release((done.run, done.task));
            let Some(ar) = self.runs.get_mut(&done.run) else { continue };
            let task = &ar.entry.dag.tasks[done.task];
            let result = match &done.result {
                Ok(Outcome::Success(_)) => TryResult::Success,
                Ok(Outcome::Skipped(_)) => TryResult::Skipped,
                Err(e) => TryResult::Failed { retryable: e.is_retryable() },
            };
            let ended = EndedTry {
                dag_id: &ar.run.dag_id,
                run_id: &ar.run.run_id,
                task_id: &task.id,
                try_number: done.try_number,
                max_tries: ar.tis[done.task].max_tries,
                at: now,
            };
            let after = after_try(&ended, result, &task.retry);
            let (state, retry_at) = (after.state(), after.retry_at());
            let outcome = match done.result {
                Ok(Outcome::Success(outputs)) => TryOutcome::Success { outputs },
                Ok(Outcome::Skipped(reason)) => TryOutcome::Skipped { reason },
                Err(e) => {
                    warn!(dag = %ar.run.dag_id, run = %ar.run.run_id, task = %task.id, r#try = done.try_number, error = %e.message, retry_at = ?retry_at, "task try failed");
                    if let Some(at) = retry_at {
                        self.retries.insert((at, done.run, done.task));
                    }
                    TryOutcome::Failed { error: e.message, retry_at }
                }
            };
            finished.push(FinishTry {
                run: done.run,
                task_id: task.id.clone(),
                try_number: done.try_number,
                outcome,
                at: now,
            });
            meta.push((done.run, done.task, state));
        }
        if finished.is_empty() {
            return Ok(());
        }
        // The store has the last word: a task cleared or marked while its try ran keeps what
        // was decided meanwhile.
        let finishes = self.store.finish_tries(&finished).await?;
        let mut changed_meanwhile = false;
        for ((run, i, state), (finish, f)) in meta.into_iter().zip(finishes.into_iter().zip(&finished)) {
            let applied = finish.task_state();
            let Some(ar) = self.runs.get_mut(&run) else { continue };
            let task = &ar.entry.dag.tasks[i];
            if let Finish::TakenOver(_) = finish {
                warn!(dag = %ar.run.dag_id, run = %ar.run.run_id, task = %task.id, r#try = f.try_number, "another scheduler took this try over; its outcome here is dropped");
                changed_meanwhile = true;
            } else if applied != state {
                info!(dag = %ar.run.dag_id, run = %ar.run.run_id, task = %task.id, r#try = f.try_number, outcome = %state, now = %applied, "the task was changed while its try ran; keeping that");
                changed_meanwhile = true;
            } else if state != TaskState::UpForRetry {
                debug!(dag = %ar.run.dag_id, run = %ar.run.run_id, task = %task.id, r#try = f.try_number, state = %state, "task finished");
            }
            ar.tis[i].state = applied;
            if applied.is_finished() {
                ar.dirty.extend(ar.entry.downs[i].iter().copied());
            }
            if applied == TaskState::None {
                ar.dirty.insert(i);
            }
            if ar.run.state.is_finished() && !self.slots.any(|(r, _)| r == run) {
                self.runs.remove(&run);
            }
        }
        if changed_meanwhile {
            // Someone changed a run while a try ran: catch up with the rest of it now rather
            // than at the next change check.
            self.load_active_runs().await?;
        }
        Ok(())
    }

    /// The grace period is over: the tries still running are cut off (their process groups
    /// killed) and left marked running, so the next start recovers them by their retry policy
    /// or resumes them.
    async fn abandon_running(&mut self) -> Result<()> {
        if self.shutdown_recorded {
            return Ok(());
        }
        self.shutdown_recorded = true;
        // A try that ended as it started (a `noop`) is recorded, not left for the next start.
        let ended = self.tries.take_ended();
        if !ended.is_empty() {
            self.on_tries_done(ended).await?;
        }
        let mut cut = Vec::new();
        for (run, i) in self.slots.keys() {
            if let Some(ar) = self.runs.get(&run) {
                cut.push((ar.run.clone(), ar.entry.dag.tasks[i].id.clone(), ar.tis[i].try_number));
            }
        }
        self.tries.abort_all().await;
        for (run, task, try_number) in cut {
            warn!(dag = %run.dag_id, run = %run.run_id, task = %task, "still running at shutdown; recovered on next start");
            self.event(&run, Some(&task), EventKind::TryCutOff { try_number }).await?;
        }
        Ok(())
    }
}

/// What a try of task `i` of `ar` asks of the slots. An undeclared pool has no room.
fn want<'a>(ar: &'a ActiveRun, i: usize, pools: &std::collections::BTreeMap<String, usize>) -> Want<'a> {
    let task = &ar.entry.dag.tasks[i];
    Want {
        dag: &ar.run.dag_id,
        max_dag: ar.entry.dag.max_active_tasks as usize,
        pool: task.pool.as_deref().map(|p| (p, pools.get(p).copied().unwrap_or(0))),
        resumable: task.operator.kind().resumable(),
    }
}

/// Whether a stop is asked for, once `shutdown` changes (true, too, when its sender is gone);
/// never, without one.
async fn wait_for_stop(shutdown: Option<&mut watch::Receiver<bool>>) -> bool {
    match shutdown {
        Some(rx) => rx.changed().await.is_err() || *rx.borrow(),
        None => std::future::pending().await,
    }
}

/// The next message of a channel, if there is one (and it is open).
/// Why the lease was lost, once it is; never while it holds (or without a lease).
async fn lost(rx: Option<&mut watch::Receiver<Option<String>>>) -> Option<String> {
    let Some(rx) = rx else { return std::future::pending().await };
    match rx.wait_for(Option::is_some).await {
        Ok(why) => why.clone(),
        // The lease keeper is gone: nothing renews the lease any more.
        Err(_) => Some("the lease keeper stopped".to_string()),
    }
}

async fn recv<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What a panic said, for the try's error.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
    }
}

/// The environment of every try's processes, on top of the daemon's own: `PATH` with the folder
/// of the running `dagctl` first, so a task's `dagctl ...` is the daemon's own binary (an alias
/// or a PATH set only in the operator's shell does not reach task shells); and, for a task that
/// calls `dagctl`, where this scheduler's state is (`SLUICE_DB`, `SLUICE_DAGS`, `SLUICE_LOGS`,
/// as absolute paths, since a task may run in another folder).
fn task_env(config: &Config) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let cwd = std::env::current_dir().unwrap_or_default();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).filter(|p| *p != dir).collect();
        dirs.insert(0, dir);
        if let Ok(joined) = std::env::join_paths(dirs) {
            env.push(("PATH".to_string(), joined.to_string_lossy().into_owned()));
        }
    }
    // Only a SQLite file: a server URL may carry a password, which must not reach task
    // environments (and their logs).
    if let Some(url) = sluice_store::DbUrl::parse(&config.db).ok().and_then(|u| u.for_task(&cwd)) {
        env.push(("SLUICE_DB".into(), url));
    }
    env.push(("SLUICE_DAGS".into(), cwd.join(&config.dags).display().to_string()));
    env.push(("SLUICE_LOGS".into(), cwd.join(&config.logs).display().to_string()));
    env
}

/// Hands the heap pages freed since (the parse trees and diagnostics of a folder load, the
/// DAG versions it replaced) back to the OS. glibc keeps freed memory in its arenas, one per
/// thread that allocated, and only returns the top of each heap on its own.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
