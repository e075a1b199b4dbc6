//! What the engine tells the world about itself while it runs, without being asked: when its
//! loop last turned (what `/readyz` judges it by) and how much is in flight. Plain atomics,
//! written once per turn by the engine and read by anyone holding the `Arc`: a reader never
//! waits for the loop and the loop never waits for a reader.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};

/// The engine's own figures, shared from [`crate::Engine::stats`].
#[derive(Debug, Default)]
pub struct EngineStats {
    /// When the last turn ended, on the engine's clock, in milliseconds since the epoch (0:
    /// no turn yet).
    last_turn_ms: AtomicI64,
    turns: AtomicU64,
    running_tries: AtomicUsize,
    active_runs: AtomicUsize,
}

impl EngineStats {
    /// Records the end of a turn at `at` (the engine's "now"), with what is in flight after it.
    pub(crate) fn turned(&self, at: DateTime<Utc>, running_tries: usize, active_runs: usize) {
        self.last_turn_ms.store(at.timestamp_millis(), Ordering::Relaxed);
        self.turns.fetch_add(1, Ordering::Relaxed);
        self.running_tries.store(running_tries, Ordering::Relaxed);
        self.active_runs.store(active_runs, Ordering::Relaxed);
    }

    /// When the loop last finished a turn, on the engine's clock; `None` before the first.
    pub fn last_turn_at(&self) -> Option<DateTime<Utc>> {
        match self.last_turn_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Turns taken since the engine started.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }

    /// Tries in flight after the last turn.
    pub fn running_tries(&self) -> usize {
        self.running_tries.load(Ordering::Relaxed)
    }

    /// Runs the engine holds as active (queued or running) after the last turn.
    pub fn active_runs(&self) -> usize {
        self.active_runs.load(Ordering::Relaxed)
    }
}
