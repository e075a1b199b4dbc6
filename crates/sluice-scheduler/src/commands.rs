//! Commands: how an in-process caller (the HTTP API, a test) asks the engine to act.
//!
//! The CLI writes to the store and a daemon notices within a second, through the store's
//! change counter. That counter does not see writes made through the daemon's own store
//! handle, so a caller living inside the daemon goes through the engine instead: it sends a
//! [`Command`] on a [`Commands`] handle and awaits the [`Reply`]. The engine handles the
//! command in its loop with the same [`crate::actions`] functions the CLI calls, takes over
//! what they wrote (a new run, cleared or marked tasks, a pause) and acts on it in the same
//! turn: a triggered run's first tasks start before the engine waits again.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::actions::{
    ActionError, BackfillRequest, Backfilled, ClearRequest, Cleared, MarkRequest, Marked, Paused, TriggerRequest,
    Triggered,
};

/// What a caller asks the engine to do, to one DAG the engine has loaded.
#[derive(Debug, Clone)]
pub enum Command {
    Trigger { dag_id: String, request: TriggerRequest },
    Backfill { dag_id: String, request: BackfillRequest },
    Clear { dag_id: String, request: ClearRequest },
    Mark { dag_id: String, request: MarkRequest },
    SetPaused { dag_id: String, paused: bool },
}

impl Command {
    /// The DAG the command is about.
    pub fn dag_id(&self) -> &str {
        match self {
            Command::Trigger { dag_id, .. }
            | Command::Backfill { dag_id, .. }
            | Command::Clear { dag_id, .. }
            | Command::Mark { dag_id, .. }
            | Command::SetPaused { dag_id, .. } => dag_id,
        }
    }

    /// Whether carrying it out leaves the store as it was (a dry run).
    pub fn is_dry_run(&self) -> bool {
        match self {
            Command::Backfill { request, .. } => request.dry_run,
            Command::Clear { request, .. } => request.dry_run,
            Command::Mark { request, .. } => request.dry_run,
            Command::Trigger { .. } | Command::SetPaused { .. } => false,
        }
    }
}

/// What a command did: the result of the action it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Reply {
    Triggered(Triggered),
    Backfilled(Backfilled),
    Cleared(Cleared),
    Marked(Marked),
    Paused(Paused),
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The action refused or failed, exactly as it would for the CLI.
    #[error(transparent)]
    Action(#[from] ActionError),
    /// The engine has stopped (or stops before it got to the command).
    #[error("the scheduler is not running")]
    EngineGone,
}

/// A command on its way to the engine, with where its reply goes.
pub struct Envelope {
    pub(crate) command: Command,
    pub(crate) reply: oneshot::Sender<Result<Reply, CommandError>>,
}

/// How commands wait for the engine: a caller is held back (not refused) while this many are
/// queued.
const QUEUE: usize = 64;

/// A handle that sends commands to one engine; cheap to clone and share.
#[derive(Clone)]
pub struct Commands {
    tx: mpsc::Sender<Envelope>,
}

impl Commands {
    pub(crate) fn channel() -> (Commands, mpsc::Receiver<Envelope>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Commands { tx }, rx)
    }

    /// Sends `command` and waits until the engine has carried it out.
    pub async fn send(&self, command: Command) -> Result<Reply, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Envelope { command, reply }).await.map_err(|_| CommandError::EngineGone)?;
        answer.await.unwrap_or(Err(CommandError::EngineGone))
    }
}
