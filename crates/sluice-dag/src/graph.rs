//! The task graph: topological order, cycles and ancestry, over petgraph.

use std::collections::HashSet;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

/// Edges point from an upstream task to its downstream task; nodes are task indices.
pub struct TaskGraph {
    graph: DiGraph<usize, ()>,
}

impl TaskGraph {
    /// A graph of `nodes` tasks; an edge given twice counts once.
    pub fn new(nodes: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> TaskGraph {
        // Deduplicated here, not with `update_edge`: that scans the upstream's edges on every
        // insertion, the square of the fan-out of a task with thousands of downstreams.
        let mut edges: Vec<(usize, usize)> = edges.into_iter().collect();
        edges.sort_unstable();
        edges.dedup();
        let mut graph = DiGraph::with_capacity(nodes, edges.len());
        for i in 0..nodes {
            graph.add_node(i);
        }
        for (up, down) in edges {
            graph.add_edge(NodeIndex::new(up), NodeIndex::new(down), ());
        }
        TaskGraph { graph }
    }

    /// Task indices in an order where every task comes after its upstreams, ties broken by
    /// index so the order is stable; `Err` holds every cycle found.
    pub fn topological_order(&self) -> Result<Vec<usize>, Vec<Vec<usize>>> {
        match toposort(&self.graph, None) {
            Ok(_) => Ok(self.stable_order()),
            Err(_) => Err(self.cycles()),
        }
    }

    /// Kahn's algorithm with a min-heap, so independent tasks keep their file order.
    fn stable_order(&self) -> Vec<usize> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let n = self.graph.node_count();
        let mut indegree: Vec<usize> =
            (0..n).map(|i| self.graph.neighbors_directed(NodeIndex::new(i), petgraph::Incoming).count()).collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|i| indegree[*i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for d in self.graph.neighbors_directed(NodeIndex::new(i), petgraph::Outgoing) {
                indegree[d.index()] -= 1;
                if indegree[d.index()] == 0 {
                    ready.push(Reverse(d.index()));
                }
            }
        }
        order
    }

    /// One cycle per strongly connected component that has one, as a path that starts and
    /// ends at the same task (`[a, b, c, a]`).
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        let mut cycles = Vec::new();
        for scc in tarjan_scc(&self.graph) {
            let start = *scc.iter().min_by_key(|n| n.index()).expect("non-empty scc");
            if scc.len() == 1 && !self.graph.contains_edge(start, start) {
                continue;
            }
            // Walk inside the component from `start` until we come back to it (BFS gives the
            // shortest cycle through `start`).
            let members: HashSet<_> = scc.iter().copied().collect();
            let mut prev = std::collections::HashMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut closing = None;
            'bfs: while let Some(n) = queue.pop_front() {
                let mut next: Vec<_> = self.graph.neighbors(n).filter(|m| members.contains(m)).collect();
                next.sort_by_key(|m| m.index());
                for m in next {
                    if m == start {
                        closing = Some(n);
                        break 'bfs;
                    }
                    if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                        e.insert(n);
                        queue.push_back(m);
                    }
                }
            }
            let mut path = vec![start.index()];
            let mut cur = closing.expect("a component with an edge has a cycle");
            let mut back = Vec::new();
            while cur != start {
                back.push(cur.index());
                cur = prev[&cur];
            }
            path.extend(back.into_iter().rev());
            path.push(start.index());
            cycles.push(path);
        }
        cycles.sort();
        cycles
    }

    /// Every task upstream of `task`, directly or transitively.
    pub fn ancestors(&self, task: usize) -> Vec<usize> {
        let reversed = Reversed(&self.graph);
        let mut dfs = Dfs::new(reversed, NodeIndex::new(task));
        let mut out = Vec::new();
        while let Some(n) = dfs.next(reversed) {
            #[cfg(test)]
            crate::work::count(&crate::work::GRAPH_STEPS);
            if n.index() != task {
                out.push(n.index());
            }
        }
        out.sort_unstable();
        out
    }

    /// The tasks downstream of `task`, directly or transitively, leaving out those whose
    /// position in a topological order (`pos`, by task) is past `limit`, and what only they
    /// lead to (which is past it too). Without positions (a graph with a cycle), every task
    /// downstream. The search costs the part of the graph it returns.
    pub fn descendants_within(&self, task: usize, pos: Option<&[usize]>, limit: usize) -> HashSet<usize> {
        let mut seen = HashSet::new();
        let mut stack = vec![NodeIndex::new(task)];
        while let Some(n) = stack.pop() {
            #[cfg(test)]
            crate::work::count(&crate::work::GRAPH_STEPS);
            for m in self.graph.neighbors(n) {
                if pos.is_none_or(|pos| pos[m.index()] <= limit) && seen.insert(m.index()) {
                    stack.push(m);
                }
            }
        }
        seen
    }

    /// Every task downstream of `task`, directly or transitively.
    pub fn descendants(&self, task: usize) -> Vec<usize> {
        let mut dfs = Dfs::new(&self.graph, NodeIndex::new(task));
        let mut out = Vec::new();
        while let Some(n) = dfs.next(&self.graph) {
            #[cfg(test)]
            crate::work::count(&crate::work::GRAPH_STEPS);
            if n.index() != task {
                out.push(n.index());
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_ancestry() {
        // 0 -> 2, 1 -> 2, 2 -> 3
        let g = TaskGraph::new(4, [(0, 2), (1, 2), (2, 3)]);
        assert_eq!(g.topological_order().unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(g.ancestors(3), vec![0, 1, 2]);
        assert_eq!(g.descendants(0), vec![2, 3]);
    }

    #[test]
    fn finds_the_cycle_path() {
        // 0 -> 1 -> 2 -> 0, and 3 -> 3
        let g = TaskGraph::new(4, [(0, 1), (1, 2), (2, 0), (3, 3)]);
        assert_eq!(g.topological_order().unwrap_err(), vec![vec![0, 1, 2, 0], vec![3, 3]]);
    }
}
