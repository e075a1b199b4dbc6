//! Work counters, for the tests that hold validation linear in the size of a file without
//! timing it.

use std::cell::Cell;
use std::thread::LocalKey;

thread_local! {
    /// Nodes visited by graph searches.
    pub(crate) static GRAPH_STEPS: Cell<u64> = const { Cell::new(0) };
    /// Templates parsed.
    pub(crate) static TEMPLATE_PARSES: Cell<u64> = const { Cell::new(0) };
    /// Searches of croner for a schedule's next tick.
    pub(crate) static CRON_SEARCHES: Cell<u64> = const { Cell::new(0) };
}

pub(crate) fn count(counter: &'static LocalKey<Cell<u64>>) {
    counter.with(|c| c.set(c.get() + 1));
}

/// How much of `counter` running `f` took.
pub(crate) fn measure(counter: &'static LocalKey<Cell<u64>>, f: impl FnOnce()) -> u64 {
    let before = counter.with(Cell::get);
    f();
    counter.with(Cell::get) - before
}
