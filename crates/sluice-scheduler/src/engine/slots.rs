//! Slot accounting: the tries in flight and what each holds (a place under `parallelism`, one
//! under its DAG's `max_active_tasks`, one in its pool), kept in one type so that the counts
//! cannot drift apart: a slot is taken and given back as a whole.

use std::collections::HashMap;
use std::hash::Hash;

use tokio::task::{AbortHandle, Id};

/// Which limit refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Parallelism,
    Dag,
    Pool,
}

/// What a try asks for: its DAG and that DAG's `max_active_tasks`, its pool and the pool's
/// size.
pub(crate) struct Want<'a> {
    pub dag: &'a str,
    pub max_dag: usize,
    pub pool: Option<(&'a str, usize)>,
    /// A sensor or a `wait`: it can be cut off at a stop and resumed as the same try on the
    /// next start, so a stop does not wait for it.
    pub resumable: bool,
}

/// A slot held by a try in flight.
struct Held {
    dag: String,
    pool: Option<String>,
    /// The tokio task running the try (set once it is spawned), and the try's number.
    abort: Option<(AbortHandle, u32)>,
    resumable: bool,
}

pub(crate) struct Slots<K> {
    parallelism: usize,
    held: HashMap<K, Held>,
    per_dag: HashMap<String, usize>,
    per_pool: HashMap<String, usize>,
}

impl<K: Copy + Eq + Hash> Slots<K> {
    pub fn new(parallelism: usize) -> Slots<K> {
        Slots { parallelism, held: HashMap::new(), per_dag: HashMap::new(), per_pool: HashMap::new() }
    }

    /// Takes a slot for `key` if every limit has room.
    pub fn reserve(&mut self, key: K, want: &Want<'_>) -> Result<(), Full> {
        if self.held.len() >= self.parallelism {
            return Err(Full::Parallelism);
        }
        if self.per_dag.get(want.dag).copied().unwrap_or(0) >= want.max_dag {
            return Err(Full::Dag);
        }
        if let Some((pool, size)) = want.pool {
            if self.per_pool.get(pool).copied().unwrap_or(0) >= size {
                return Err(Full::Pool);
            }
        }
        self.hold(key, want);
        Ok(())
    }

    /// Takes a slot for `key` whatever the limits say: a try resumed after a restart was
    /// already running. Taking a slot `key` holds is harmless (it is held once).
    pub fn hold(&mut self, key: K, want: &Want<'_>) {
        if self.held.contains_key(&key) {
            return;
        }
        bump(&mut self.per_dag, want.dag);
        if let Some((pool, _)) = want.pool {
            bump(&mut self.per_pool, pool);
        }
        let held = Held {
            dag: want.dag.to_string(),
            pool: want.pool.map(|(p, _)| p.to_string()),
            abort: None,
            resumable: want.resumable,
        };
        self.held.insert(key, held);
    }

    /// Gives back `key`'s slot; a key that holds none is ignored. Whether it held one.
    pub fn release(&mut self, key: K) -> bool {
        let Some(held) = self.held.remove(&key) else { return false };
        drop_one(&mut self.per_dag, &held.dag);
        if let Some(pool) = &held.pool {
            drop_one(&mut self.per_pool, pool);
        }
        true
    }

    /// Records the tokio task running `key`'s try `try_number`, to cut it off or to find it
    /// when it panics.
    pub fn set_abort(&mut self, key: K, abort: AbortHandle, try_number: u32) {
        if let Some(held) = self.held.get_mut(&key) {
            held.abort = Some((abort, try_number));
        }
    }

    /// The slot whose try runs in the tokio task `id`, and the try's number.
    pub fn find_task(&self, id: Id) -> Option<(K, u32)> {
        self.held.iter().find_map(|(k, h)| h.abort.as_ref().filter(|(a, _)| a.id() == id).map(|(_, n)| (*k, *n)))
    }

    /// Cuts off the resumable tries (aborts their tokio tasks) and gives back their slots;
    /// returns their keys.
    pub fn cut_off_resumable(&mut self) -> Vec<K> {
        let cut: Vec<K> = self.held.iter().filter(|(_, h)| h.resumable && h.abort.is_some()).map(|(k, _)| *k).collect();
        for key in &cut {
            if let Some((abort, _)) = self.held.get_mut(key).and_then(|h| h.abort.take()) {
                abort.abort();
            }
            self.release(*key);
        }
        cut
    }

    pub fn contains(&self, key: K) -> bool {
        self.held.contains_key(&key)
    }

    /// Whether any slot's key matches.
    pub fn any(&self, f: impl Fn(K) -> bool) -> bool {
        self.held.keys().any(|k| f(*k))
    }

    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.held.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Slots of pool `pool` held now.
    pub fn in_pool(&self, pool: &str) -> usize {
        self.per_pool.get(pool).copied().unwrap_or(0)
    }

    #[cfg(test)]
    fn counts(&self, dag: &str, pool: &str) -> (usize, usize, usize) {
        let get = |m: &HashMap<String, usize>, k: &str| m.get(k).copied().unwrap_or(0);
        (self.held.len(), get(&self.per_dag, dag), get(&self.per_pool, pool))
    }
}

/// Counts one more under `key` (allocating the key only the first time).
fn bump(counts: &mut HashMap<String, usize>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

fn drop_one(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want<'a>(dag: &'a str, max_dag: usize, pool: Option<(&'a str, usize)>) -> Want<'a> {
        Want { dag, max_dag, pool, resumable: false }
    }

    #[test]
    fn every_limit_is_respected() {
        let mut s = Slots::new(3);
        assert_eq!(s.reserve(1, &want("a", 2, Some(("db", 1)))), Ok(()));
        assert_eq!(s.reserve(2, &want("a", 2, Some(("db", 1)))), Err(Full::Pool));
        assert_eq!(s.reserve(2, &want("a", 2, None)), Ok(()));
        assert_eq!(s.reserve(3, &want("a", 2, None)), Err(Full::Dag));
        assert_eq!(s.reserve(3, &want("b", 2, None)), Ok(()));
        assert_eq!(s.reserve(4, &want("c", 2, None)), Err(Full::Parallelism));
        assert_eq!(s.counts("a", "db"), (3, 2, 1));
        assert!(s.release(1));
        assert_eq!(s.counts("a", "db"), (2, 1, 0));
        assert_eq!(s.reserve(4, &want("a", 2, Some(("db", 1)))), Ok(()));
    }

    #[test]
    fn counts_never_go_negative_and_an_unknown_release_is_harmless() {
        let mut s = Slots::new(2);
        assert!(!s.release(7));
        s.reserve(1, &want("a", 5, Some(("db", 5)))).unwrap();
        assert!(s.release(1));
        assert!(!s.release(1), "released once");
        assert_eq!(s.counts("a", "db"), (0, 0, 0));
    }

    #[test]
    fn a_held_slot_ignores_the_limits_and_is_held_once() {
        let mut s = Slots::new(1);
        s.reserve(1, &want("a", 1, None)).unwrap();
        s.hold(2, &want("a", 1, None));
        s.hold(2, &want("a", 1, None));
        assert_eq!(s.counts("a", ""), (2, 2, 0));
        assert_eq!(s.reserve(3, &want("b", 1, None)), Err(Full::Parallelism));
        s.release(2);
        s.release(1);
        assert_eq!(s.reserve(3, &want("a", 1, None)), Ok(()));
    }

    #[tokio::test]
    async fn resumable_tries_are_cut_off_and_found_by_their_task() {
        let mut s = Slots::new(4);
        let mut set = tokio::task::JoinSet::new();
        for (key, resumable) in [(1, true), (2, false)] {
            s.reserve(key, &Want { resumable, ..want("a", 4, None) }).unwrap();
            let abort = set.spawn(std::future::pending::<()>());
            s.set_abort(key, abort, 3);
        }
        assert_eq!(s.cut_off_resumable(), vec![1]);
        assert!(!s.contains(1) && s.contains(2));
        let cut = set.join_next().await.unwrap().unwrap_err();
        assert!(cut.is_cancelled());
        assert_eq!(s.find_task(cut.id()), None, "its slot was given back");
        set.abort_all();
        let other = set.join_next().await.unwrap().unwrap_err();
        assert_eq!(s.find_task(other.id()), Some((2, 3)));
    }
}
