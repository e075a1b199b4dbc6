//! A picture of the task graph, laid out left to right: what the web UI's graph view draws.
//!
//! A plain layered layout (the Sugiyama scheme without its crossing-free extras): each task's
//! layer is the length of the longest path to it from a task with no upstream, so every edge
//! points right; within a layer, tasks are ordered by the barycentre of their neighbours'
//! positions, sweeping right then left a few times, which removes most crossings; then each
//! layer is centred on the tallest one. It is pure arithmetic over the task indices and costs
//! `O(sweeps * edges + tasks log tasks)`: a 200-task DAG is laid out in well under a
//! millisecond.

use serde::Serialize;

use crate::Dag;

/// A node's width and height, and the gaps between layers and between nodes of one layer, in
/// the layout's units (CSS pixels in the UI).
pub const NODE_WIDTH: u32 = 190;
pub const NODE_HEIGHT: u32 = 34;
pub const LAYER_GAP: u32 = 70;
pub const NODE_GAP: u32 = 14;
/// How many barycentre sweeps (each one right, then left).
const SWEEPS: usize = 6;

/// One task's box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NodeBox {
    pub task: String,
    /// The column: 0 for tasks with no upstream.
    pub layer: u32,
    /// The position within the column, from the top.
    pub order: u32,
    /// The box's top left corner.
    pub x: u32,
    pub y: u32,
}

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Layout {
    /// In the DAG's task order (topological).
    pub nodes: Vec<NodeBox>,
    /// `[upstream, downstream]` as indices into `nodes`.
    pub edges: Vec<[u32; 2]>,
    pub node_width: u32,
    pub node_height: u32,
    pub width: u32,
    pub height: u32,
}

/// The layers and in-layer positions of a graph of `ups.len()` nodes, where `ups[i]` are the
/// upstreams of node `i` and `topo` is a topological order of all nodes. Returns, per node,
/// `(layer, order)`.
pub fn layered(ups: &[Vec<usize>], topo: &[usize]) -> Vec<(usize, usize)> {
    let n = ups.len();
    let mut layer = vec![0usize; n];
    for &i in topo {
        layer[i] = ups[i].iter().filter(|&&u| u < n).map(|&u| layer[u] + 1).max().unwrap_or(0);
    }
    let mut downs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, us) in ups.iter().enumerate() {
        for &u in us.iter().filter(|&&u| u < n) {
            downs[u].push(i);
        }
    }
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
    // Columns start in topological order, which keeps a chain's tasks at one height.
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for &i in topo {
        columns[layer[i]].push(i);
    }
    let mut pos = vec![0usize; n];
    let place = |columns: &[Vec<usize>], pos: &mut [usize]| {
        for column in columns {
            for (p, &i) in column.iter().enumerate() {
                pos[i] = p;
            }
        }
    };
    place(&columns, &mut pos);
    for _ in 0..SWEEPS {
        for column in columns.iter_mut().skip(1) {
            reorder(column, ups, &mut pos);
        }
        for l in (0..layers.saturating_sub(1)).rev() {
            reorder(&mut columns[l], &downs, &mut pos);
        }
    }
    place(&columns, &mut pos);
    (0..n).map(|i| (layer[i], pos[i])).collect()
}

/// Sorts one column by the mean position of each node's neighbours in `by` (a node without
/// any keeps its place), and writes the new positions.
fn reorder(column: &mut [usize], by: &[Vec<usize>], pos: &mut [usize]) {
    let mut keyed: Vec<(f64, usize, usize)> = column
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            let near = &by[i];
            let key = if near.is_empty() {
                p as f64
            } else {
                near.iter().map(|&j| pos[j] as f64).sum::<f64>() / near.len() as f64
            };
            (key, p, i)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (p, (_, _, i)) in keyed.into_iter().enumerate() {
        column[p] = i;
        pos[i] = p;
    }
}

/// The layout of a DAG's tasks.
pub fn dag_layout(dag: &Dag) -> Layout {
    let (ups, _) = dag.adjacency();
    // A loaded DAG's tasks are in topological order.
    let topo: Vec<usize> = (0..dag.tasks.len()).collect();
    let places = layered(&ups, &topo);
    let tallest = {
        let mut counts: Vec<u32> = Vec::new();
        for &(l, _) in &places {
            if counts.len() <= l {
                counts.resize(l + 1, 0);
            }
            counts[l] += 1;
        }
        counts
    };
    let max_rows = tallest.iter().copied().max().unwrap_or(0);
    let row = NODE_HEIGHT + NODE_GAP;
    let nodes: Vec<NodeBox> = dag
        .tasks
        .iter()
        .zip(&places)
        .map(|(t, &(l, o))| {
            // Centre each column on the tallest one.
            let offset = (max_rows - tallest[l]) * row / 2;
            NodeBox {
                task: t.id.clone(),
                layer: l as u32,
                order: o as u32,
                x: l as u32 * (NODE_WIDTH + LAYER_GAP),
                y: offset + o as u32 * row,
            }
        })
        .collect();
    let edges = ups.iter().enumerate().flat_map(|(i, us)| us.iter().map(move |&u| [u as u32, i as u32])).collect();
    let columns = tallest.len() as u32;
    Layout {
        nodes,
        edges,
        node_width: NODE_WIDTH,
        node_height: NODE_HEIGHT,
        width: (columns * (NODE_WIDTH + LAYER_GAP)).saturating_sub(LAYER_GAP),
        height: (max_rows * row).saturating_sub(NODE_GAP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_the_longest_path_and_edges_point_right() {
        // 0 -> 1 -> 3, 0 -> 3, 2 -> 3
        let ups = vec![vec![], vec![0], vec![], vec![1, 0, 2]];
        let places = layered(&ups, &[0, 1, 2, 3]);
        assert_eq!(places[0].0, 0);
        assert_eq!(places[1].0, 1);
        assert_eq!(places[2].0, 0);
        assert_eq!(places[3].0, 2);
        for (i, us) in ups.iter().enumerate() {
            for &u in us {
                assert!(places[u].0 < places[i].0);
            }
        }
    }

    #[test]
    fn barycentre_ordering_uncrosses_two_chains() {
        // Column 0 is [a0, b0]; column 1 starts as [b1, a1] (topological order given so):
        // a0 -> a1 and b0 -> b1 cross until the sweep puts a1 first.
        let ups = vec![vec![], vec![], vec![1], vec![0]];
        let places = layered(&ups, &[0, 1, 2, 3]);
        assert_eq!(places[0], (0, 0));
        assert_eq!(places[1], (0, 1));
        assert_eq!(places[3], (1, 0), "{places:?}");
        assert_eq!(places[2], (1, 1), "{places:?}");
    }

    #[test]
    fn positions_in_a_column_are_distinct() {
        // A fan-out of 50 and a fan-in back: every node of the middle column has its own row.
        let mut ups = vec![vec![]];
        for _ in 0..50 {
            ups.push(vec![0]);
        }
        ups.push((1..=50).collect());
        let topo: Vec<usize> = (0..ups.len()).collect();
        let places = layered(&ups, &topo);
        let mut rows: Vec<usize> = places[1..=50].iter().map(|p| p.1).collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..50).collect::<Vec<_>>());
        assert_eq!(places[51].0, 2);
    }
}
