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
    /// Per edge (in the order of `edges`), the points an edge that skips layers passes
    /// through, `[x, y]`: for each layer it crosses, where it enters and leaves the column,
    /// at the height of a gap between that column's boxes (just above the first or below the
    /// last one: `y` may then be a few units outside `0..height`). Empty for an edge between
    /// neighbouring layers. Drawn through these points, no edge passes under a box.
    pub bends: Vec<Vec<[i32; 2]>>,
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
    let edges: Vec<[u32; 2]> =
        ups.iter().enumerate().flat_map(|(i, us)| us.iter().map(move |&u| [u as u32, i as u32])).collect();
    let bends = edges.iter().map(|&[u, d]| bends(&nodes, &places, u as usize, d as usize)).collect();
    let columns = tallest.len() as u32;
    Layout {
        nodes,
        edges,
        bends,
        node_width: NODE_WIDTH,
        node_height: NODE_HEIGHT,
        width: (columns * (NODE_WIDTH + LAYER_GAP)).saturating_sub(LAYER_GAP),
        height: (max_rows * row).saturating_sub(NODE_GAP),
    }
}

/// Where the edge `u -> d` crosses each layer between theirs: in each column, the gap between
/// boxes nearest to the straight line between the two boxes' centres.
fn bends(nodes: &[NodeBox], places: &[(usize, usize)], u: usize, d: usize) -> Vec<[i32; 2]> {
    let (lu, ld) = (places[u].0, places[d].0);
    if ld <= lu + 1 {
        return Vec::new();
    }
    let half = (NODE_HEIGHT / 2) as f64;
    let (yu, yd) = (nodes[u].y as f64 + half, nodes[d].y as f64 + half);
    let mut points = Vec::with_capacity(2 * (ld - lu - 1));
    for l in lu + 1..ld {
        let mut tops: Vec<i32> = nodes.iter().filter(|n| n.layer as usize == l).map(|n| n.y as i32).collect();
        tops.sort_unstable();
        let gap = (NODE_GAP / 2) as i32;
        // Just above each box, and just below the last one.
        let mut lanes: Vec<i32> = tops.iter().map(|t| t - gap).collect();
        lanes.extend(tops.last().map(|t| t + NODE_HEIGHT as i32 + gap));
        let want = yu + (yd - yu) * (l - lu) as f64 / (ld - lu) as f64;
        let y = lanes.iter().copied().min_by(|a, b| (*a as f64 - want).abs().total_cmp(&(*b as f64 - want).abs()));
        let x = (l as u32 * (NODE_WIDTH + LAYER_GAP)) as i32;
        if let Some(y) = y {
            points.push([x, y]);
            points.push([x + NODE_WIDTH as i32, y]);
        }
    }
    points
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
    fn an_edge_that_skips_a_layer_goes_around_the_box_in_its_way() {
        // a -> b -> c and a -> c: a chain with a shortcut. The shortcut must not run under b.
        let out = crate::parse::parse_dag(
            std::path::Path::new("s.toml"),
            "id = \"s\"\n[tasks.a]\noperator = \"noop\"\n[tasks.b]\noperator = \"noop\"\ndepends_on = [\"a\"]\n[tasks.c]\noperator = \"noop\"\ndepends_on = [\"b\", \"a\"]\n",
        );
        let l = dag_layout(&out.dag.unwrap_or_else(|| panic!("{:?}", out.diagnostics)));
        let k = l.edges.iter().position(|e| *e == [0, 2]).expect("the edge a -> c");
        let b = &l.nodes[1];
        let x = (NODE_WIDTH + LAYER_GAP) as i32;
        let above = b.y as i32 - (NODE_GAP / 2) as i32;
        assert_eq!(l.bends[k], vec![[x, above], [x + NODE_WIDTH as i32, above]]);
        assert!(l.bends.iter().enumerate().all(|(j, p)| j == k || p.is_empty()));
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

    /// A 200-task DAG of the shape real pipelines have: 12 sources, then tasks that each
    /// depend on one to three earlier tasks (chosen by a fixed pseudo-random sequence, mostly
    /// recent ones), so layers are uneven and edges skip layers.
    fn big_dag() -> Dag {
        let mut src = String::from("id = \"big\"\nstart_date = 2026-01-01\n");
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        for i in 0..200 {
            src.push_str(&format!("[tasks.t{i:03}]\noperator = \"noop\"\n"));
            if i >= 12 {
                let mut deps: Vec<usize> = (0..1 + next(3)).map(|_| i - 1 - next(i.min(30))).collect();
                deps.sort_unstable();
                deps.dedup();
                let list: Vec<String> = deps.iter().map(|d| format!("\"t{d:03}\"")).collect();
                src.push_str(&format!("depends_on = [{}]\n", list.join(", ")));
            }
        }
        let out = crate::parse::parse_dag(std::path::Path::new("big.toml"), &src);
        out.dag.unwrap_or_else(|| panic!("{:?}", out.diagnostics))
    }

    /// Pairs of edges between the same two layers that cross, for per-node `(layer, order)`.
    fn crossings(ups: &[Vec<usize>], places: &[(usize, usize)]) -> usize {
        let edges: Vec<(usize, usize)> =
            ups.iter().enumerate().flat_map(|(i, us)| us.iter().map(move |&u| (u, i))).collect();
        let mut n = 0;
        for (k, &(a, b)) in edges.iter().enumerate() {
            for &(c, d) in &edges[k + 1..] {
                let same_layers = places[a].0 == places[c].0 && places[b].0 == places[d].0;
                let (oa, ob, oc, od) = (places[a].1, places[b].1, places[c].1, places[d].1);
                if same_layers && ((oa < oc && ob > od) || (oa > oc && ob < od)) {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn a_200_task_dag_is_laid_out_without_overlaps_left_to_right_and_within_its_bounds() {
        let dag = big_dag();
        assert_eq!(dag.tasks.len(), 200);
        let l = dag_layout(&dag);
        let (w, h) = (l.node_width, l.node_height);
        assert_eq!(l.nodes.len(), 200);
        assert!(l.edges.len() > 250, "a DAG with joins: {} edges", l.edges.len());
        // No two boxes overlap, and each keeps at least the gaps between them.
        for (i, a) in l.nodes.iter().enumerate() {
            for b in &l.nodes[i + 1..] {
                let apart_x = a.x + w + LAYER_GAP <= b.x || b.x + w + LAYER_GAP <= a.x;
                let apart_y = a.y + h + NODE_GAP <= b.y || b.y + h + NODE_GAP <= a.y;
                assert!(apart_x || apart_y, "{} and {} overlap: {a:?} {b:?}", a.task, b.task);
            }
        }
        // Every edge goes left to right.
        for &[u, d] in &l.edges {
            let (a, b) = (&l.nodes[u as usize], &l.nodes[d as usize]);
            assert!(a.layer < b.layer && a.x + w < b.x, "{} -> {} points left", a.task, b.task);
        }
        // An edge that skips layers goes through each column between boxes, never under one.
        assert_eq!(l.bends.len(), l.edges.len());
        let mut skipping = 0;
        for (k, &[u, d]) in l.edges.iter().enumerate() {
            let span = l.nodes[d as usize].layer - l.nodes[u as usize].layer;
            assert_eq!(l.bends[k].len(), 2 * (span as usize - 1), "edge {k}");
            skipping += usize::from(span > 1);
            for pair in l.bends[k].chunks(2) {
                let ([x0, y], [x1, y1]) = (pair[0], pair[1]);
                assert_eq!((y, x1 - x0), (y1, w as i32), "straight across the column");
                for n in l.nodes.iter().filter(|n| n.x as i32 == x0) {
                    let (top, bottom) = (n.y as i32, (n.y + h) as i32);
                    assert!(y < top || y > bottom, "edge {k} passes under {} at y {y}", n.task);
                }
                assert!(y > -(NODE_GAP as i32) && y < (l.height + NODE_GAP) as i32, "edge {k} strays: {y}");
            }
        }
        assert!(skipping > 20, "the test DAG has edges that skip layers: {skipping}");
        // The picture is as wide as its layers and as tall as its tallest one, no more, and
        // every box is inside it.
        let layers = l.nodes.iter().map(|n| n.layer).max().unwrap() + 1;
        let tallest = (0..layers).map(|c| l.nodes.iter().filter(|n| n.layer == c).count() as u32).max().unwrap();
        assert_eq!(l.width, layers * (w + LAYER_GAP) - LAYER_GAP);
        assert_eq!(l.height, tallest * (h + NODE_GAP) - NODE_GAP);
        for n in &l.nodes {
            assert!(n.x + w <= l.width && n.y + h <= l.height, "{n:?} outside {}x{}", l.width, l.height);
        }
        // Readable: the longest path sets the width (not one column per task), and no column
        // holds most of the tasks.
        assert!(layers < 60 && tallest < 40, "{layers} layers, {tallest} rows");
    }

    #[test]
    fn crossing_reduction_never_adds_crossings_and_gives_the_same_layout_each_time() {
        let dag = big_dag();
        let (ups, _) = dag.adjacency();
        let topo: Vec<usize> = (0..ups.len()).collect();
        let swept = layered(&ups, &topo);
        // Before any sweep: each column in topological order.
        let mut seen: Vec<usize> = Vec::new();
        let start: Vec<(usize, usize)> = swept
            .iter()
            .map(|&(layer, _)| {
                if seen.len() <= layer {
                    seen.resize(layer + 1, 0);
                }
                seen[layer] += 1;
                (layer, seen[layer] - 1)
            })
            .collect();
        let (before, after) = (crossings(&ups, &start), crossings(&ups, &swept));
        assert!(before > 0, "the test DAG must start with crossings");
        assert!(after < before, "{after} crossings after the sweeps, {before} before");
        assert_eq!(layered(&ups, &topo), swept, "the same graph gives the same places");
        assert_eq!(dag_layout(&dag), dag_layout(&dag));
    }
}
