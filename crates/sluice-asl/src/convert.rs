//! The conversion itself, in passes over the whole machine so that every problem is found in
//! one go: read the states, resolve their transitions, fold polling loops into the task that
//! starts the work, find the other cycles, then walk each scope in dependency order, carrying
//! the data flow (what each JSONPath reads) and building one task per state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use crate::codes;
use crate::emit::{self, TVal};
use crate::paths::{self, Arg, Seg, Sym};
use crate::report::Report;
use crate::services::{self, Op, Pattern, Resource};
use crate::{default_dag_id, Conversion, Options};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Task,
    Pass,
    Wait,
    Succeed,
    Fail,
    Choice,
    Parallel,
    Map,
    Other,
}

impl Ty {
    fn from(name: Option<&str>) -> Ty {
        match name {
            Some("Task") => Ty::Task,
            Some("Pass") => Ty::Pass,
            Some("Wait") => Ty::Wait,
            Some("Succeed") => Ty::Succeed,
            Some("Fail") => Ty::Fail,
            Some("Choice") => Ty::Choice,
            Some("Parallel") => Ty::Parallel,
            Some("Map") => Ty::Map,
            _ => Ty::Other,
        }
    }
}

/// One state of the machine (of any scope: the top level or a Parallel branch).
struct St {
    name: String,
    path: String,
    scope: usize,
    obj: Map<String, Value>,
    ty: Ty,
    branches: Vec<usize>,
}

/// The states of the top level or of one Parallel branch.
#[derive(Default)]
struct Scope {
    start: Option<usize>,
    names: HashMap<String, usize>,
    states: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Next,
    /// Catch number `.0` of the state the edge leaves.
    Catch(usize),
    Choice,
}

/// A polling loop folded into the task that starts the work.
struct Poll {
    seconds: i64,
    get: usize,
}

/// One task of the DAG being written.
struct Task {
    id: String,
    comment: Vec<String>,
    operator: &'static str,
    deps: Vec<String>,
    rule: Option<&'static str>,
    keys: Vec<(String, TVal)>,
    generic: Vec<(String, TVal)>,
    doc: Option<String>,
}

/// What a scope's first state inherits from the state that entered it (a Parallel).
struct Entry {
    next: Vec<String>,
    catch: Vec<String>,
    input: Sym,
}

struct Cx {
    states: Vec<St>,
    scopes: Vec<Scope>,
    report: Report,
    succ: Vec<Vec<(usize, Edge)>>,
    folded: Vec<bool>,
    polls: HashMap<usize, Poll>,
    back: BTreeSet<(usize, usize)>,
    ids: Vec<Option<String>>,
    used_ids: BTreeSet<String>,
    ops: HashMap<String, Op>,
    exits: Vec<Vec<String>>,
    guard: Vec<Vec<String>>,
    guard_join: Vec<bool>,
    inputs: Vec<Sym>,
    outputs: Vec<Sym>,
    preds: Vec<Vec<(usize, Edge)>>,
    params: BTreeSet<Vec<String>>,
    tasks: Vec<Task>,
}

/// The most states one import reads (all scopes together).
pub const MAX_STATES: usize = 10_000;

pub fn run(src: &str, opts: &Options) -> Conversion {
    let dag_id = opts.dag_id.clone().unwrap_or_else(|| default_dag_id(&opts.source));
    let mut cx = Cx {
        states: Vec::new(),
        scopes: Vec::new(),
        report: Report::default(),
        succ: Vec::new(),
        folded: Vec::new(),
        polls: HashMap::new(),
        back: BTreeSet::new(),
        ids: Vec::new(),
        used_ids: BTreeSet::new(),
        ops: HashMap::new(),
        exits: Vec::new(),
        guard: Vec::new(),
        guard_join: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        preds: Vec::new(),
        params: BTreeSet::new(),
        tasks: Vec::new(),
    };
    if !crate::valid_id(&dag_id) {
        cx.report.rejected(
            codes::INVALID_MACHINE,
            "$",
            format!("`{dag_id}` is not a valid DAG id"),
            "give --id with letters, digits, `_` and `-` only",
        );
    }
    let root = match serde_json::from_str::<Value>(src) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            cx.report.rejected(codes::INVALID_MACHINE, "$", "the state machine is not a JSON object", "");
            return cx.finish(&dag_id, opts, None);
        }
        Err(e) => {
            cx.report.rejected(
                codes::INVALID_MACHINE,
                "$",
                format!("not JSON: {e}"),
                "give the state machine's definition (the JSON of `aws stepfunctions describe-state-machine`'s `definition`)",
            );
            return cx.finish(&dag_id, opts, None);
        }
    };
    if root.get("QueryLanguage").and_then(Value::as_str) == Some("JSONata") {
        cx.report.rejected(
            codes::JSONATA,
            "$.QueryLanguage",
            "the machine uses JSONata",
            "write it with JSONPath (the default QueryLanguage); Sluice resolves static JSONPaths into templates",
        );
    }
    if root.contains_key("TimeoutSeconds") {
        cx.report.approximated(
            codes::MACHINE_TIMEOUT,
            "$.TimeoutSeconds",
            "the machine's timeout is not carried: a Sluice run has no overall time limit",
            "give each task a `timeout`, and the DAG a `deadline` to be alerted when a run is late",
        );
    }
    cx.load_scope(&root, "$");
    let n = cx.states.len();
    if n > MAX_STATES {
        cx.report.rejected(
            codes::INVALID_MACHINE,
            "$.States",
            format!("{n} states, over the limit of {MAX_STATES} for one import"),
            "split the machine into several DAGs",
        );
        cx.states.clear();
        cx.scopes.clear();
        return cx.finish(&dag_id, opts, None);
    }
    cx.succ = vec![Vec::new(); n];
    cx.folded = vec![false; n];
    cx.ids = vec![None; n];
    cx.exits = vec![Vec::new(); n];
    cx.guard = vec![Vec::new(); n];
    cx.guard_join = vec![false; n];
    cx.inputs = vec![Sym::Unknown("the state is not reached".into()); n];
    cx.outputs = vec![Sym::Unknown("the state is not reached".into()); n];
    cx.edges();
    cx.polling_loops();
    for sid in 0..cx.scopes.len() {
        cx.cycles(sid);
    }
    cx.preds = cx.all_preds();
    if !cx.scopes.is_empty() {
        let entry = Entry { next: Vec::new(), catch: Vec::new(), input: Sym::Input(Vec::new()) };
        cx.process_scope(0, entry);
    }
    let description = root.get("Comment").and_then(Value::as_str).map(str::to_string);
    cx.finish(&dag_id, opts, description)
}

/// `name` as a JSONPath step.
fn key_path(name: &str) -> String {
    let simple = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        format!(".{name}")
    } else {
        format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A task id from a state name: snake case, letters, digits and `_` only.
fn task_id_of(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let out = out.trim_matches('_').to_string();
    if out.is_empty() {
        "state".into()
    } else {
        out
    }
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

impl Cx {
    // ---- reading -------------------------------------------------------------------------

    fn load_scope(&mut self, obj: &Map<String, Value>, prefix: &str) -> usize {
        let sid = self.scopes.len();
        self.scopes.push(Scope::default());
        match obj.get("States") {
            Some(Value::Object(states)) => {
                for (name, v) in states {
                    let path = format!("{prefix}.States{}", key_path(name));
                    let Value::Object(o) = v else {
                        self.report.rejected(codes::INVALID_MACHINE, path, "a state must be a JSON object", "");
                        continue;
                    };
                    let ty = Ty::from(o.get("Type").and_then(Value::as_str));
                    let idx = self.states.len();
                    self.states.push(St {
                        name: name.clone(),
                        path: path.clone(),
                        scope: sid,
                        obj: o.clone(),
                        ty,
                        branches: Vec::new(),
                    });
                    self.scopes[sid].names.insert(name.clone(), idx);
                    self.scopes[sid].states.push(idx);
                    if ty == Ty::Parallel {
                        let mut branches = Vec::new();
                        match o.get("Branches") {
                            Some(Value::Array(bs)) if !bs.is_empty() => {
                                for (i, b) in bs.iter().enumerate() {
                                    match b {
                                        Value::Object(bo) => {
                                            branches.push(self.load_scope(bo, &format!("{path}.Branches[{i}]")))
                                        }
                                        _ => self.report.rejected(
                                            codes::INVALID_MACHINE,
                                            format!("{path}.Branches[{i}]"),
                                            "a branch must be a JSON object with States and StartAt",
                                            "",
                                        ),
                                    }
                                }
                            }
                            _ => self.report.rejected(
                                codes::INVALID_MACHINE,
                                format!("{path}.Branches"),
                                "a Parallel state needs a non-empty list of Branches",
                                "",
                            ),
                        }
                        self.states[idx].branches = branches;
                    }
                }
            }
            _ => self.report.rejected(
                codes::INVALID_MACHINE,
                format!("{prefix}.States"),
                "no States object",
                "give the state machine's definition, with States and StartAt",
            ),
        }
        match obj.get("StartAt").and_then(Value::as_str) {
            Some(name) => match self.scopes[sid].names.get(name) {
                Some(&i) => self.scopes[sid].start = Some(i),
                None => self.report.rejected(
                    codes::INVALID_MACHINE,
                    format!("{prefix}.StartAt"),
                    format!("StartAt names `{name}`, which is not a state here"),
                    "name one of the States",
                ),
            },
            None => self.report.rejected(
                codes::INVALID_MACHINE,
                format!("{prefix}.StartAt"),
                "no StartAt",
                "name the first state in StartAt",
            ),
        }
        sid
    }

    fn target(&mut self, s: usize, v: Option<&Value>, field: &str) -> Option<usize> {
        let path = format!("{}.{field}", self.states[s].path);
        let Some(name) = v.and_then(Value::as_str) else {
            self.report.rejected(codes::INVALID_MACHINE, path, "expected the name of a state", "");
            return None;
        };
        match self.scopes[self.states[s].scope].names.get(name) {
            Some(&t) => Some(t),
            None => {
                self.report.rejected(
                    codes::INVALID_MACHINE,
                    path,
                    format!("names `{name}`, which is not a state of this scope"),
                    "name one of the States beside it",
                );
                None
            }
        }
    }

    fn edges(&mut self) {
        for s in 0..self.states.len() {
            let ty = self.states[s].ty;
            let obj = self.states[s].obj.clone();
            let path = self.states[s].path.clone();
            match ty {
                Ty::Task | Ty::Pass | Ty::Wait | Ty::Parallel | Ty::Map => {
                    if obj.contains_key("Next") {
                        if let Some(t) = self.target(s, obj.get("Next"), "Next") {
                            self.succ[s].push((t, Edge::Next));
                        }
                    } else if obj.get("End") != Some(&Value::Bool(true)) {
                        self.report.rejected(
                            codes::INVALID_MACHINE,
                            path.clone(),
                            "the state has neither Next nor `End: true`",
                            "",
                        );
                    }
                    if matches!(ty, Ty::Task | Ty::Parallel | Ty::Map) {
                        if let Some(Value::Array(cs)) = obj.get("Catch") {
                            for (i, c) in cs.iter().enumerate() {
                                if let Some(t) = self.target(s, c.get("Next"), &format!("Catch[{i}].Next")) {
                                    self.succ[s].push((t, Edge::Catch(i)));
                                }
                            }
                        }
                    }
                }
                Ty::Choice => {
                    if let Some(Value::Array(cs)) = obj.get("Choices") {
                        for (i, c) in cs.iter().enumerate() {
                            if let Some(t) = self.target(s, c.get("Next"), &format!("Choices[{i}].Next")) {
                                self.succ[s].push((t, Edge::Choice));
                            }
                        }
                    } else {
                        self.report.rejected(codes::INVALID_MACHINE, path.clone(), "a Choice needs Choices", "");
                    }
                    if obj.contains_key("Default") {
                        if let Some(t) = self.target(s, obj.get("Default"), "Default") {
                            self.succ[s].push((t, Edge::Choice));
                        }
                    }
                }
                Ty::Succeed | Ty::Fail => {}
                Ty::Other => {
                    let t = obj.get("Type").map(Value::to_string).unwrap_or_else(|| "none".into());
                    self.report.rejected(
                        codes::INVALID_MACHINE,
                        path.clone(),
                        format!("unknown Type {t}"),
                        "use Task, Pass, Wait, Choice, Parallel, Map, Succeed or Fail",
                    );
                }
            }
        }
    }

    fn resource(&self, s: usize) -> Option<Resource> {
        if self.states[s].ty != Ty::Task {
            return None;
        }
        self.states[s].obj.get("Resource").and_then(Value::as_str).map(services::classify)
    }

    fn next_of(&self, s: usize) -> Option<usize> {
        self.succ[s].iter().find(|(_, e)| *e == Edge::Next).map(|(t, _)| *t)
    }

    /// The edges into each state, back edges left out (once the graph is final).
    fn all_preds(&self) -> Vec<Vec<(usize, Edge)>> {
        let mut out = vec![Vec::new(); self.states.len()];
        for (s, succ) in self.succ.iter().enumerate() {
            for &(x, e) in succ {
                if !self.back.contains(&(s, x)) {
                    out[x].push((s, e));
                }
            }
        }
        out
    }

    // ---- polling loops --------------------------------------------------------------------

    /// Start task -> Wait -> status Task -> Choice looping back: folded into the start task,
    /// whose operator waits by itself, every Wait's seconds.
    fn polling_loops(&mut self) {
        for c in 0..self.states.len() {
            if self.states[c].ty != Ty::Choice {
                continue;
            }
            let targets: Vec<usize> = {
                let mut t: Vec<usize> = self.succ[c].iter().map(|(t, _)| *t).collect();
                t.dedup();
                t
            };
            let mut found = None;
            for &t in &targets {
                let mut chain = Vec::new();
                let mut cur = t;
                let closes = loop {
                    if cur == c {
                        break true;
                    }
                    if chain.contains(&cur) || chain.len() > 8 {
                        break false;
                    }
                    if !matches!(self.states[cur].ty, Ty::Wait | Ty::Task | Ty::Pass) {
                        break false;
                    }
                    chain.push(cur);
                    match self.next_of(cur) {
                        Some(n) => cur = n,
                        None => break false,
                    }
                };
                if closes && !chain.is_empty() {
                    if found.is_some() {
                        found = None;
                        break;
                    }
                    found = Some((t, chain));
                }
            }
            let Some((loop_target, chain)) = found else { continue };
            let waits: Vec<usize> = chain.iter().copied().filter(|&x| self.states[x].ty == Ty::Wait).collect();
            let seconds = match waits.as_slice() {
                [w] => self.states[*w].obj.get("Seconds").and_then(Value::as_i64),
                _ => None,
            };
            let Some(seconds) = seconds else { continue };
            let gets: Vec<(usize, String)> = chain
                .iter()
                .filter_map(|&x| match self.resource(x) {
                    Some(Resource::Poll { service, .. }) => Some((x, service)),
                    _ => None,
                })
                .collect();
            let Some((get, get_service)) = gets.last().cloned() else { continue };
            if chain.iter().any(|&x| self.states[x].ty == Ty::Task && !gets.iter().any(|(g, _)| *g == x)) {
                continue;
            }
            let mut members = chain.clone();
            members.push(c);
            let entries: Vec<usize> = (0..self.states.len())
                .filter(|s| !members.contains(s))
                .filter(|&s| self.succ[s].iter().any(|(t, e)| *e == Edge::Next && members.contains(t)))
                .collect();
            let [start] = entries.as_slice() else { continue };
            let start = *start;
            match self.resource(start) {
                Some(Resource::Native { op, pattern, .. })
                    if pattern != Pattern::Token && services::service(op) == get_service => {}
                _ => continue,
            }
            let others: Vec<usize> = targets.iter().copied().filter(|&t| t != loop_target).collect();
            let (fails, oks): (Vec<usize>, Vec<usize>) =
                others.into_iter().partition(|&t| self.states[t].ty == Ty::Fail);
            let [success] = oks.as_slice() else { continue };
            let success = *success;
            // Fold: the start task goes straight on to the success state.
            let start_name = self.states[start].name.clone();
            for &m in &members {
                self.folded[m] = true;
                let what = match self.states[m].ty {
                    Ty::Wait => format!("the wait of the polling loop: `{start_name}`'s operator checks every {seconds} s"),
                    Ty::Choice => format!(
                        "the polling loop's Choice: `{start_name}`'s operator waits until the work is done and fails the task if the work failed"
                    ),
                    _ => format!("the polling loop's status call: `{start_name}`'s operator makes it itself"),
                };
                self.report.mapped(self.states[m].path.clone(), format!("folded into `{start_name}`: {what}"));
            }
            for f in fails {
                let only_from_choice = (0..self.states.len())
                    .filter(|s| !members.contains(s))
                    .all(|s| !self.succ[s].iter().any(|(t, _)| *t == f));
                if only_from_choice {
                    self.folded[f] = true;
                    self.report.mapped(
                        self.states[f].path.clone(),
                        format!("folded into `{start_name}`: its operator fails the task when the work fails"),
                    );
                }
            }
            for &m in &members {
                self.succ[m].clear();
            }
            for e in self.succ[start].iter_mut() {
                if e.1 == Edge::Next {
                    e.0 = success;
                }
            }
            self.polls.insert(start, Poll { seconds, get });
        }
        // Fail states only a folded loop led to.
        for s in 0..self.states.len() {
            if self.folded[s] {
                self.succ[s].clear();
            }
        }
    }

    // ---- cycles -------------------------------------------------------------------------

    fn cycles(&mut self, sid: usize) {
        let Some(start) = self.scopes[sid].start else { return };
        // 0: not seen, 1: on the stack, 2: done.
        let mut color: HashMap<usize, u8> = HashMap::new();
        let mut found: Vec<Vec<usize>> = Vec::new();
        self.dfs(start, &mut color, &mut found);
        for cycle in found {
            let names: Vec<String> = cycle.iter().map(|&s| self.states[s].name.clone()).collect();
            self.report.rejected(
                codes::CYCLE,
                self.states[cycle[0]].path.clone(),
                format!("the states form a cycle: {}", names.join(" -> ")),
                "a DAG has no cycles: retry a failing state with Retry, wait for work with the integration's .sync form, and run a loop as one run per iteration",
            );
        }
        // Unreachable states of this scope.
        for &s in &self.scopes[sid].states.clone() {
            if !color.contains_key(&s) && !self.folded[s] {
                self.report.rejected(
                    codes::INVALID_MACHINE,
                    self.states[s].path.clone(),
                    "no path from StartAt reaches this state",
                    "remove it, or make a state go to it",
                );
            }
        }
    }

    /// Depth-first from `start` without recursion (a machine may be a long chain): marks
    /// back edges and collects the cycle each one closes.
    fn dfs(&mut self, start: usize, color: &mut HashMap<usize, u8>, found: &mut Vec<Vec<usize>>) {
        // The path from `start`, each state with the index of its next edge to follow.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color.insert(start, 1);
        while let Some(&mut (s, ref mut next)) = stack.last_mut() {
            let Some(&(t, _)) = self.succ[s].get(*next) else {
                color.insert(s, 2);
                stack.pop();
                continue;
            };
            *next += 1;
            match color.get(&t).copied().unwrap_or(0) {
                0 => {
                    color.insert(t, 1);
                    stack.push((t, 0));
                }
                1 => {
                    self.back.insert((s, t));
                    if let Some(pos) = stack.iter().position(|&(x, _)| x == t) {
                        let mut cycle: Vec<usize> = stack[pos..].iter().map(|&(x, _)| x).collect();
                        cycle.push(t);
                        found.push(cycle);
                    }
                }
                _ => {}
            }
        }
    }

    /// The states of scope `sid` reachable from its start, in dependency order.
    fn order(&self, sid: usize) -> Vec<usize> {
        let Some(start) = self.scopes[sid].start else { return Vec::new() };
        let mut reach = vec![start];
        let mut seen = std::collections::HashSet::from([start]);
        let mut i = 0;
        while i < reach.len() {
            for &(t, _) in &self.succ[reach[i]] {
                if seen.insert(t) {
                    reach.push(t);
                }
            }
            i += 1;
        }
        let mut indeg: HashMap<usize, usize> = reach.iter().map(|&s| (s, 0)).collect();
        for &s in &reach {
            for &(t, _) in &self.succ[s] {
                if !self.back.contains(&(s, t)) {
                    *indeg.entry(t).or_default() += 1;
                }
            }
        }
        let mut queue = std::collections::VecDeque::from([start]);
        let mut queued = std::collections::HashSet::from([start]);
        let mut out = Vec::new();
        while let Some(s) = queue.pop_front() {
            out.push(s);
            for &(t, _) in &self.succ[s] {
                if self.back.contains(&(s, t)) {
                    continue;
                }
                if let Some(d) = indeg.get_mut(&t) {
                    *d = d.saturating_sub(1);
                    if *d == 0 && queued.insert(t) {
                        queue.push_back(t);
                    }
                }
            }
        }
        out
    }

    fn new_id(&mut self, s: usize) -> String {
        let base = task_id_of(&self.states[s].name);
        let mut id = base.clone();
        let mut n = 2;
        while self.used_ids.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        self.used_ids.insert(id.clone());
        self.ids[s] = Some(id.clone());
        id
    }

    // ---- walking a scope ------------------------------------------------------------------

    /// Builds the tasks of scope `sid`; returns the tasks its terminal states end on and
    /// the output of those states.
    fn process_scope(&mut self, sid: usize, entry: Entry) -> (Vec<String>, Sym) {
        let order = self.order(sid);
        let start = self.scopes[sid].start;
        let mut entry = Some(entry);
        let mut terminal_exits = Vec::new();
        let mut terminal_out: Option<Sym> = None;
        for s in order {
            let mut next = Vec::new();
            let mut catch = Vec::new();
            let mut input: Option<Sym> = None;
            let mut join_note = false;
            if Some(s) == start {
                if let Some(e) = entry.take() {
                    next.extend(e.next);
                    catch.extend(e.catch);
                    input = Some(e.input);
                }
            }
            for (p, e) in self.preds[s].clone() {
                let from = match e {
                    Edge::Next | Edge::Choice => {
                        next.extend(self.exits[p].clone());
                        next.extend(self.guard[p].clone());
                        join_note |= self.guard_join[p];
                        self.outputs[p].clone()
                    }
                    Edge::Catch(i) => {
                        catch.extend(self.exits[p].clone());
                        self.caught_output(p, i)
                    }
                };
                input = Some(match input {
                    Some(i) => i.merge(&from),
                    None => from,
                });
            }
            dedup(&mut next);
            dedup(&mut catch);
            let input = input.unwrap_or_else(|| Sym::Unknown("the state has no input".into()));
            self.inputs[s] = input.clone();
            if join_note {
                self.report.approximated(
                    codes::JOIN_AFTER_CATCH,
                    self.states[s].path.clone(),
                    "follows a teardown that both the normal path and a Catch reach: it runs only after the normal path succeeded",
                    "give the failure path its own states after the teardown",
                );
            }
            self.state(s, next, catch, input);
            let st = &self.states[s];
            let ends = st.ty == Ty::Succeed || st.ty == Ty::Fail || st.obj.get("End") == Some(&Value::Bool(true));
            if ends && !self.folded[s] {
                terminal_exits.extend(self.exits[s].clone());
                let out = self.outputs[s].clone();
                terminal_out = Some(match terminal_out {
                    Some(o) => o.merge(&out),
                    None => out,
                });
            }
        }
        dedup(&mut terminal_exits);
        (terminal_exits, terminal_out.unwrap_or_else(|| Sym::Unknown("the branch has no end".into())))
    }

    /// The input a Catch handler gets: the failed state's input with the error at the
    /// catcher's ResultPath.
    fn caught_output(&mut self, p: usize, i: usize) -> Sym {
        let err = Sym::Unknown("the error a Catch caught (its Error and Cause) is not known before the run".into());
        let rp = self.states[p].obj.get("Catch").and_then(|c| c.get(i)).and_then(|c| c.get("ResultPath")).cloned();
        let path = format!("{}.Catch[{i}].ResultPath", self.states[p].path);
        let input = self.inputs[p].clone();
        self.apply_result_path(&input, rp.as_ref(), err, &path)
    }

    fn apply_result_path(&mut self, input: &Sym, rp: Option<&Value>, result: Sym, path: &str) -> Sym {
        match rp {
            None => result,
            Some(Value::Null) => input.clone(),
            Some(Value::String(p)) => match paths::parse_path(p, "$") {
                Some(segs) => input.set(&segs, result),
                None => {
                    self.report.rejected(
                        codes::UNRESOLVED_PATH,
                        path,
                        format!("ResultPath `{p}` is not a static path of fields"),
                        "use a path such as `$.result`",
                    );
                    Sym::Unknown(format!("ResultPath `{p}`"))
                }
            },
            Some(_) => {
                self.report.rejected(codes::INVALID_MACHINE, path, "ResultPath must be a string or null", "");
                Sym::Unknown("ResultPath".into())
            }
        }
    }

    fn select(&mut self, input: &Sym, field: &str, s: usize) -> Sym {
        let path = format!("{}.{field}", self.states[s].path);
        match self.states[s].obj.get(field).cloned() {
            None => input.clone(),
            Some(Value::Null) => Sym::Const(Value::Object(Map::new())),
            Some(Value::String(p)) => match paths::parse_path(&p, "$") {
                Some(segs) => input.resolve(&segs),
                None => {
                    self.report.rejected(
                        codes::UNRESOLVED_PATH,
                        path,
                        format!("`{p}` is not a static JSONPath"),
                        "use a path of fields and indexes, such as `$.result`",
                    );
                    Sym::Unknown(format!("{field} `{p}`"))
                }
            },
            Some(_) => {
                self.report.rejected(codes::INVALID_MACHINE, path, format!("{field} must be a string or null"), "");
                Sym::Unknown(field.into())
            }
        }
    }

    /// The state's output from its effective input and its result.
    fn output(&mut self, s: usize, input: &Sym, result: Sym) -> Sym {
        let path = format!("{}.ResultPath", self.states[s].path);
        let rp = self.states[s].obj.get("ResultPath").cloned();
        let out = self.apply_result_path(input, rp.as_ref(), result, &path);
        self.select(&out, "OutputPath", s)
    }

    /// Fields a state of this type may have, besides the common ones.
    fn check_fields(&mut self, s: usize) {
        let ty = self.states[s].ty;
        let allowed: &[&str] = match ty {
            Ty::Task => &[
                "Resource",
                "Parameters",
                "ResultPath",
                "ResultSelector",
                "Next",
                "End",
                "Retry",
                "Catch",
                "TimeoutSeconds",
                "TimeoutSecondsPath",
                "HeartbeatSeconds",
                "HeartbeatSecondsPath",
            ],
            Ty::Pass => &["Result", "ResultPath", "Parameters", "Next", "End"],
            Ty::Wait => &["Seconds", "Timestamp", "SecondsPath", "TimestampPath", "Next", "End"],
            Ty::Fail => &["Error", "Cause", "ErrorPath", "CausePath"],
            Ty::Choice => &["Choices", "Default"],
            Ty::Parallel => &[
                "Branches",
                "ResultPath",
                "ResultSelector",
                "Parameters",
                "Next",
                "End",
                "Retry",
                "Catch",
                "TimeoutSeconds",
            ],
            Ty::Succeed => &[],
            Ty::Map | Ty::Other => return,
        };
        let keys: Vec<String> = self.states[s].obj.keys().cloned().collect();
        for k in keys {
            if ["Type", "Comment", "InputPath", "OutputPath"].contains(&k.as_str()) || allowed.contains(&k.as_str()) {
                continue;
            }
            let path = format!("{}.{k}", self.states[s].path);
            if k == "QueryLanguage" {
                if self.states[s].obj.get("QueryLanguage").and_then(Value::as_str) == Some("JSONata") {
                    self.report.rejected(codes::JSONATA, path, "the state uses JSONata", "write it with JSONPath");
                }
            } else if k == "Arguments" || k == "Output" {
                self.report.rejected(
                    codes::JSONATA,
                    path,
                    format!("`{k}` is a JSONata field"),
                    "write the state with JSONPath (Parameters, ResultPath, OutputPath)",
                );
            } else {
                self.report.rejected(
                    codes::UNSUPPORTED_FIELD,
                    path,
                    format!("Sluice has nothing for `{k}` in a {ty:?} state"),
                    "remove it; see the migration guide for what each field maps to",
                );
            }
        }
    }

    // ---- one state ------------------------------------------------------------------------

    fn state(&mut self, s: usize, next: Vec<String>, catch: Vec<String>, input: Sym) {
        if self.folded[s] {
            self.exits[s] = next.into_iter().chain(catch).collect();
            self.outputs[s] = input;
            return;
        }
        self.check_fields(s);
        let ty = self.states[s].ty;
        let eff = self.select(&input, "InputPath", s);
        let path = self.states[s].path.clone();
        let name = self.states[s].name.clone();
        if ty == Ty::Succeed {
            self.exits[s] = next.into_iter().chain(catch).collect();
            self.outputs[s] = self.select(&eff, "OutputPath", s);
            self.report.mapped(path, "a Succeed state: nothing to run, the path ends here");
            return;
        }
        if ty == Ty::Parallel {
            self.parallel(s, next, catch, eff);
            return;
        }
        let id = self.new_id(s);
        let mut deps = next.clone();
        deps.extend(catch.clone());
        dedup(&mut deps);
        let mut task = Task {
            id: id.clone(),
            comment: vec![format!(
                "From state `{}` ({}), a {ty:?} state.",
                crate::report::one_line(&name),
                crate::report::one_line(&path)
            )],
            operator: "noop",
            deps,
            rule: None,
            keys: Vec::new(),
            generic: Vec::new(),
            doc: self.states[s].obj.get("Comment").and_then(Value::as_str).map(str::to_string),
        };
        let mut is_terminate = false;
        let result = match ty {
            Ty::Task => {
                let r = self.task(s, &mut task, &eff);
                is_terminate = task.operator == "terminate";
                r
            }
            Ty::Pass => self.pass(s, &mut task, &eff),
            Ty::Wait => {
                self.wait(s, &mut task);
                eff.clone()
            }
            Ty::Fail => {
                self.fail(s, &mut task);
                eff.clone()
            }
            Ty::Choice => {
                self.placeholder(&mut task, "a Choice that is not a polling loop");
                self.report.rejected(
                    codes::CHOICE,
                    path.clone(),
                    "a Choice state that is not a recognised polling loop: Sluice cannot branch on data yet",
                    "run the branch's condition in a `command` task that fails or succeeds, put the condition in the tasks themselves, or split the machine into one DAG per branch",
                );
                eff.clone()
            }
            Ty::Map => {
                self.placeholder(&mut task, "a Map state");
                self.report.rejected(
                    codes::MAP,
                    path.clone(),
                    "a Map state: Sluice cannot map over a list yet",
                    "write one task per item when the items are known, or run the loop inside one task (a Spark job, a `command`)",
                );
                eff.clone()
            }
            Ty::Succeed | Ty::Parallel | Ty::Other => eff.clone(),
        };
        // Trigger rule, from how the state is reached.
        if catch.is_empty() {
            if is_terminate {
                self.guard[s] = next.clone();
            }
        } else if next.is_empty() {
            task.rule = Some("one_failed");
        } else if is_terminate {
            self.guard[s] = next.clone();
            self.guard_join[s] = true;
        } else {
            // Step Functions starts the state on whichever arrives; Sluice's nearest rule is
            // none_skipped: once everything before it is done, unless a path into it was not
            // taken at all. A Fail state ends the run failed either way.
            task.rule = Some("none_skipped");
            if ty != Ty::Fail {
                self.report.approximated(
                    codes::JOIN_AFTER_CATCH,
                    path.clone(),
                    "reached both normally and from a Catch: it runs once all of those are done and none was skipped (trigger_rule none_skipped), so also after a failure no Catch handled",
                    "give the failure path its own states",
                );
            }
        }
        if ty == Ty::Task || ty == Ty::Parallel {
            self.catchers(s, &format!("`{id}`"));
        }
        self.exits[s] = vec![id.clone()];
        let out = self.output(s, &eff, result);
        self.outputs[s] = match self.polls.get(&s).map(|p| p.get) {
            Some(get) => {
                let rp = self.states[get].obj.get("ResultPath").cloned();
                let gp = format!("{}.ResultPath", self.states[get].path);
                let unknown = Sym::Unknown("the result of a polling loop's status call".into());
                self.apply_result_path(&out, rp.as_ref(), unknown, &gp)
            }
            None => out,
        };
        self.tasks.push(task);
    }

    fn placeholder(&mut self, task: &mut Task, what: &str) {
        task.operator = "noop";
        task.comment.push(format!("REJECTED: {what}; a noop stands in for it (see the import report)."));
    }

    /// `who` names the catching task(s) in messages.
    fn catchers(&mut self, s: usize, who: &str) {
        let Some(Value::Array(cs)) = self.states[s].obj.get("Catch").cloned() else { return };
        let path = self.states[s].path.clone();
        let mut handlers = BTreeSet::new();
        for (i, c) in cs.iter().enumerate() {
            let errors: Vec<&str> = c
                .get("ErrorEquals")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let handler = c.get("Next").and_then(Value::as_str).unwrap_or_default().to_string();
            handlers.insert(handler.clone());
            if !errors.contains(&"States.ALL") {
                self.report.approximated(
                    codes::CATCH_ERRORS,
                    format!("{path}.Catch[{i}]"),
                    format!("catches {} only: in Sluice `{handler}` runs whatever made {who} fail", errors.join(", ")),
                    "catch States.ALL, or handle the error kinds inside the handler",
                );
            }
            if let Some(h) = self.scopes[self.states[s].scope].names.get(&handler).copied() {
                let has_next = self.next_of(s).is_some() || self.states[s].scope != 0;
                if has_next && self.can_end_ok(h) {
                    self.report.approximated(
                        codes::CAUGHT_FAILS_RUN,
                        format!("{path}.Catch[{i}]"),
                        format!(
                            "`{handler}` runs when {who} fails and its path ends in success; Step Functions would end the execution succeeded, a Sluice run with a failed task ends failed"
                        ),
                        "end the handler's path in a Fail state, or make the task itself tolerate the error",
                    );
                }
            }
            self.report.mapped(
                format!("{path}.Catch[{i}]"),
                format!("the handler `{handler}` depends on {who} and runs when it fails"),
            );
        }
        if handlers.len() > 1 {
            self.report.approximated(
                codes::CATCH_SEVERAL,
                format!("{path}.Catch"),
                format!("{} catchers with different handlers: each runs on any failure of {who}", handlers.len()),
                "keep one catcher (States.ALL) and tell the errors apart in the handler",
            );
        }
    }

    /// Whether some path from `s` (through Next and Choice) ends in anything but Fail.
    fn can_end_ok(&self, s: usize) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = vec![s];
        while let Some(s) = todo.pop() {
            if !seen.insert(s) || self.states[s].ty == Ty::Fail {
                continue;
            }
            let before = todo.len();
            todo.extend(self.succ[s].iter().filter(|(_, e)| !matches!(e, Edge::Catch(_))).map(|(t, _)| *t));
            if todo.len() == before {
                return true;
            }
        }
        false
    }

    fn parallel(&mut self, s: usize, next: Vec<String>, catch: Vec<String>, eff: Sym) {
        let path = self.states[s].path.clone();
        let name = self.states[s].name.clone();
        let input = match self.states[s].obj.get("Parameters").cloned() {
            Some(p) => self.eval(&p, &eff, &format!("{path}.Parameters")),
            None => eff.clone(),
        };
        for field in ["Retry", "TimeoutSeconds"] {
            if self.states[s].obj.contains_key(field) {
                self.report.approximated(
                    codes::PARALLEL_FIELD,
                    format!("{path}.{field}"),
                    format!(
                        "{field} on a Parallel state is not carried: Sluice retries and times out tasks, not groups"
                    ),
                    "give the branches' tasks their own Retry and TimeoutSeconds",
                );
            }
        }
        let mut exits = Vec::new();
        let mut outs = Vec::new();
        let branches = self.states[s].branches.clone();
        for b in &branches {
            let entry = Entry { next: next.clone(), catch: catch.clone(), input: input.clone() };
            let (e, o) = self.process_scope(*b, entry);
            exits.extend(e);
            outs.push(o);
        }
        dedup(&mut exits);
        self.report.mapped(
            path.clone(),
            format!(
                "a Parallel state of {} branches: each branch's tasks start together, and what follows `{name}` depends on every branch's last task ({})",
                branches.len(),
                exits.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
            ),
        );
        // The Parallel's Catch: its handlers depend on the branches' last tasks.
        let who = format!(
            "the branches' last tasks ({})",
            exits.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
        );
        if self.states[s].obj.contains_key("Catch") {
            self.catchers(s, &who);
        }
        self.exits[s] = exits;
        let mut result = Sym::Arr(outs);
        if let Some(rs) = self.states[s].obj.get("ResultSelector").cloned() {
            result = self.eval(&rs, &result, &format!("{path}.ResultSelector"));
        }
        self.outputs[s] = self.output(s, &eff, result);
    }

    fn retry(&mut self, s: usize, task: &mut Task) {
        let path = self.states[s].path.clone();
        let Some(Value::Array(rs)) = self.states[s].obj.get("Retry").cloned() else { return };
        if rs.is_empty() {
            return;
        }
        struct R {
            errors: Vec<String>,
            attempts: i64,
            interval: i64,
            rate: f64,
            max_delay: Option<i64>,
            jitter: Option<String>,
        }
        let mut parsed: Vec<R> = Vec::new();
        for (i, r) in rs.iter().enumerate() {
            let rp = format!("{path}.Retry[{i}]");
            let mut bad = |field: &str, what: &str| {
                self.report.rejected(
                    codes::INVALID_MACHINE,
                    format!("{rp}.{field}"),
                    format!("{field} must be {what}"),
                    "",
                );
            };
            let int = |field: &str, default: i64, min: i64| match r.get(field) {
                None => Some(default),
                Some(v) => v.as_i64().filter(|n| *n >= min),
            };
            let errors: Vec<String> = match r.get("ErrorEquals").and_then(Value::as_array) {
                Some(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
                    a.iter().filter_map(Value::as_str).map(str::to_string).collect()
                }
                _ => {
                    bad("ErrorEquals", "a non-empty list of error names");
                    Vec::new()
                }
            };
            let attempts = int("MaxAttempts", 3, 0).unwrap_or_else(|| {
                bad("MaxAttempts", "a whole number, 0 or more");
                0
            });
            let interval = int("IntervalSeconds", 1, 1).unwrap_or_else(|| {
                bad("IntervalSeconds", "a whole number of seconds, 1 or more");
                1
            });
            let rate = match r.get("BackoffRate") {
                None => 2.0,
                Some(v) => v.as_f64().filter(|x| *x >= 1.0).unwrap_or_else(|| {
                    bad("BackoffRate", "a number, 1.0 or more");
                    1.0
                }),
            };
            let max_delay = match r.get("MaxDelaySeconds") {
                None => None,
                Some(v) => v.as_i64().filter(|n| *n >= 1).or_else(|| {
                    bad("MaxDelaySeconds", "a whole number of seconds, 1 or more");
                    None
                }),
            };
            let jitter = match r.get("JitterStrategy") {
                None => None,
                Some(v) => match v.as_str() {
                    Some(j @ ("FULL" | "NONE")) => Some(j.to_string()),
                    _ => {
                        bad("JitterStrategy", "FULL or NONE");
                        None
                    }
                },
            };
            if attempts > 1000 {
                self.report.approximated(
                    codes::RETRY_LIMIT,
                    format!("{rp}.MaxAttempts"),
                    format!("{attempts} attempts: a Sluice task retries at most 1000 times; carried as 1000"),
                    "retry less, and for longer between tries",
                );
            }
            parsed.push(R { errors, attempts: attempts.min(1000), interval, rate, max_delay, jitter });
        }
        let mut pick = 0;
        for (i, r) in parsed.iter().enumerate() {
            if r.attempts > parsed[pick].attempts {
                pick = i;
            }
        }
        let r = &parsed[pick];
        let rpath = format!("{path}.Retry[{pick}]");
        if parsed.len() > 1 {
            self.report.approximated(
                codes::RETRY_SEVERAL,
                format!("{path}.Retry"),
                format!(
                    "{} retriers for different errors; a Sluice task has one retry policy, for every failure: Retry[{pick}] (the most attempts) is carried",
                    parsed.len()
                ),
                "keep one retrier, or split the work so that each task has one",
            );
        } else if !r.errors.iter().any(|e| e == "States.ALL" || e == "States.TaskFailed") {
            self.report.approximated(
                codes::RETRY_ERRORS,
                rpath.clone(),
                format!("retries {} only; Sluice retries every failure of the task", r.errors.join(", ")),
                "retry States.ALL, or make the task fail without retrying on the errors it should not retry",
            );
        }
        let exponential = if r.rate == 1.0 {
            false
        } else if r.rate == 2.0 {
            true
        } else {
            let exp = r.rate >= 1.5;
            self.report.approximated(
                codes::RETRY_BACKOFF,
                format!("{rpath}.BackoffRate"),
                format!(
                    "BackoffRate {}: Sluice's delays are fixed or double each time; carried as {}",
                    r.rate,
                    if exp { "exponential (2)" } else { "fixed (1)" }
                ),
                "use BackoffRate 1 or 2",
            );
            exp
        };
        if r.jitter.as_deref() == Some("FULL") {
            self.report.approximated(
                codes::RETRY_JITTER,
                format!("{rpath}.JitterStrategy"),
                "full jitter: Sluice brings each retry forward by up to a fifth of its delay, not by up to all of it",
                "nothing to do unless many executions retry at once",
            );
        }
        task.generic.push(("retries".into(), TVal::Int(r.attempts)));
        if r.attempts == 0 {
            self.report.mapped(rpath, "MaxAttempts 0: retries = 0, no retry");
            return;
        }
        task.generic.push(("retry_delay".into(), TVal::Int(r.interval)));
        if exponential {
            task.generic.push(("retry_backoff".into(), TVal::Str("exponential".into())));
        }
        if let Some(m) = r.max_delay {
            task.generic.push(("max_retry_delay".into(), TVal::Int(m.max(0))));
        }
        self.report.mapped(
            rpath,
            format!(
                "retries = {}, retry_delay = {} s, {} backoff{}",
                r.attempts,
                r.interval,
                if exponential { "exponential" } else { "fixed" },
                r.max_delay.map(|m| format!(", max_retry_delay = {m} s")).unwrap_or_default()
            ),
        );
    }

    fn timeouts(&mut self, s: usize, task: &mut Task) {
        let path = self.states[s].path.clone();
        let obj = self.states[s].obj.clone();
        if let Some(t) = obj.get("TimeoutSeconds") {
            match t.as_i64() {
                Some(t) if t > 0 => {
                    task.generic.push(("timeout".into(), TVal::Int(t)));
                    self.report.mapped(format!("{path}.TimeoutSeconds"), format!("timeout = {t} s"));
                }
                _ => self.report.rejected(
                    codes::INVALID_MACHINE,
                    format!("{path}.TimeoutSeconds"),
                    "TimeoutSeconds must be a positive whole number",
                    "",
                ),
            }
        }
        for field in ["TimeoutSecondsPath", "HeartbeatSecondsPath"] {
            if obj.contains_key(field) {
                self.report.rejected(
                    codes::DYNAMIC_PATH,
                    format!("{path}.{field}"),
                    format!("{field} is read from the input at run time; Sluice's durations are literal"),
                    format!("write {} instead", field.trim_end_matches("Path")),
                );
            }
        }
        if obj.contains_key("HeartbeatSeconds") {
            self.report.approximated(
                codes::HEARTBEAT,
                format!("{path}.HeartbeatSeconds"),
                "not carried: Sluice's operators poll the work's status, there is no heartbeat to miss",
                "rely on the task's timeout",
            );
        }
    }

    fn task(&mut self, s: usize, task: &mut Task, eff: &Sym) -> Sym {
        let path = self.states[s].path.clone();
        let resource = self.states[s].obj.get("Resource").and_then(Value::as_str).map(str::to_string);
        let Some(arn) = resource else {
            self.report.rejected(codes::INVALID_MACHINE, format!("{path}.Resource"), "a Task needs a Resource", "");
            self.placeholder(task, "a Task without a Resource");
            return Sym::Unknown("no resource".into());
        };
        task.comment[0] = format!("{} Resource: {arn}", task.comment[0]);
        self.retry(s, task);
        self.timeouts(s, task);
        let rpath = format!("{path}.Resource");
        let (op, pattern) = match services::classify(&arn) {
            Resource::Native { pattern: Pattern::Token, .. } => {
                self.report.rejected(
                    codes::TASK_TOKEN,
                    rpath,
                    ".waitForTaskToken waits for a callback with a task token, which Sluice has no endpoint for",
                    "use the integration's .sync form, or a `sensor` task that waits for what the callback signals",
                );
                self.placeholder(task, "a .waitForTaskToken integration");
                return Sym::Unknown("a rejected task".into());
            }
            Resource::Native { op, pattern, .. } => (op, pattern),
            Resource::Activity => {
                self.report.rejected(
                    codes::ACTIVITY,
                    rpath,
                    "an activity: a worker polling Step Functions for work, which Sluice has no equivalent of",
                    "run the worker's code as a `command` task",
                );
                self.placeholder(task, "an activity");
                return Sym::Unknown("a rejected task".into());
            }
            Resource::Poll { api, .. } => {
                self.report.rejected(
                    codes::UNSUPPORTED_RESOURCE,
                    rpath,
                    format!("`{api}` outside a polling loop"),
                    "Sluice's operators wait for their own work; to wait for work started elsewhere use a `sensor` (emr_step, emr_cluster, glue_crawler, athena_query, emr_serverless_job)",
                );
                self.placeholder(task, "an unsupported resource");
                return Sym::Unknown("a rejected task".into());
            }
            Resource::Unsupported { api } => {
                self.report.rejected(
                    codes::UNSUPPORTED_RESOURCE,
                    rpath,
                    format!("`{api}` has no Sluice operator"),
                    "Sluice maps EMR (createCluster, addStep, terminateCluster), EMR Serverless startJobRun, Glue startCrawler and startJobRun, Athena startQueryExecution and Lambda invoke (or a function ARN); run anything else from a `command` task",
                );
                self.placeholder(task, "an unsupported resource");
                return Sym::Unknown("a rejected task".into());
            }
        };
        task.operator = op.operator();
        self.ops.insert(task.id.clone(), op);
        let ppath = format!("{path}.Parameters");
        let params = match self.states[s].obj.get("Parameters").cloned() {
            None => Map::new(),
            Some(p @ Value::Object(_)) => {
                let sym = self.eval(&p, eff, &ppath);
                match self.json_of(&sym, &ppath) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                }
            }
            Some(_) => {
                self.report.rejected(codes::INVALID_MACHINE, ppath.clone(), "Parameters must be an object", "");
                Map::new()
            }
        };
        let params = if op == Op::LambdaFunction {
            // A function ARN's event is its Parameters, or else the state's input.
            let payload = if self.states[s].obj.contains_key("Parameters") {
                Value::Object(params)
            } else {
                self.json_of(eff, &format!("{path}.InputPath"))
            };
            Map::from_iter([("FunctionName".to_string(), Value::String(arn.clone())), ("Payload".to_string(), payload)])
        } else {
            params
        };
        let poll = self.polls.get(&s).map(|p| p.seconds);
        let effective = if poll.is_some() { Pattern::Sync } else { pattern };
        let built = services::build(op, params, effective);
        for p in built.problems {
            let at = if p.key.is_empty() { ppath.clone() } else { format!("{ppath}.{}", p.key) };
            if p.rejected {
                self.report.rejected(p.code, at, p.message, p.instead);
            } else {
                self.report.approximated(p.code, at, p.message, p.instead);
            }
        }
        if !built.dropped.is_empty() {
            self.report.approximated(
                codes::PARAMETER_DROPPED,
                ppath.clone(),
                format!(
                    "not carried (the `{}` operator has no key for them): {}",
                    op.operator(),
                    built.dropped.join(", ")
                ),
                "see docs/operators.md for the keys it has; set what is missing on the resource itself",
            );
        }
        for note in built.notes {
            self.report.mapped(ppath.clone(), note);
        }
        task.keys = built.keys;
        if let Some(secs) = poll {
            task.keys.push(("poke_interval".into(), TVal::Int(secs.max(1))));
        }
        let what = format!("-> task `{}` (operator `{}`)", task.id, op.operator());
        match (effective, op) {
            (Pattern::Request, Op::AddStep) => self
                .report
                .mapped(path.clone(), format!("{what}, wait_for_completion = false as the request-response form")),
            (Pattern::Request, Op::Crawler) => self.report.mapped(
                path.clone(),
                format!("{what}: the crawler operator starts the crawl and waits until it has finished"),
            ),
            (Pattern::Request, Op::Lambda | Op::LambdaFunction) => self.report.mapped(
                path.clone(),
                format!("{what}: invoked with RequestResponse, its answer awaited as Step Functions does"),
            ),
            (Pattern::Request, _) => {
                self.report.mapped(path.clone(), what);
                self.report.approximated(
                    codes::NO_WAIT,
                    format!("{path}.Resource"),
                    format!(
                        "the request-response form moves on once the request is accepted; `{}` waits until the work has finished",
                        op.operator()
                    ),
                    "use the .sync form, which means the same as Sluice's operator",
                );
            }
            _ => self.report.mapped(
                path.clone(),
                match poll {
                    Some(secs) => format!("{what}, with its polling loop folded in (poke_interval = {secs} s)"),
                    None => what,
                },
            ),
        }
        let mut result = Sym::Output { task: task.id.clone(), path: Vec::new() };
        if let Some(rs) = self.states[s].obj.get("ResultSelector").cloned() {
            result = self.eval(&rs, &result, &format!("{path}.ResultSelector"));
        }
        result
    }

    fn pass(&mut self, s: usize, task: &mut Task, eff: &Sym) -> Sym {
        let path = self.states[s].path.clone();
        let obj = self.states[s].obj.clone();
        let result = if let Some(r) = obj.get("Result") {
            Sym::Const(r.clone())
        } else if let Some(p) = obj.get("Parameters") {
            self.eval(p, eff, &format!("{path}.Parameters"))
        } else {
            eff.clone()
        };
        if obj.contains_key("Result") || obj.contains_key("Parameters") {
            task.comment.push("A noop: the values it passes on are written into the tasks that read them.".into());
            self.report.mapped(
                path,
                format!("-> task `{}` (noop); what it passes on is inlined where later states read it", task.id),
            );
        } else {
            self.report.mapped(path, format!("-> task `{}` (noop)", task.id));
        }
        result
    }

    fn wait(&mut self, s: usize, task: &mut Task) {
        let path = self.states[s].path.clone();
        let obj = self.states[s].obj.clone();
        for field in ["SecondsPath", "TimestampPath"] {
            if obj.contains_key(field) {
                self.report.rejected(
                    codes::DYNAMIC_PATH,
                    format!("{path}.{field}"),
                    format!("{field} is read from the input at run time; Sluice's waits are literal"),
                    "write Seconds (a `wait` task), or wait for the event itself with a `sensor`",
                );
                self.placeholder(task, &format!("a Wait with {field}"));
                return;
            }
        }
        if let Some(secs) = obj.get("Seconds") {
            match secs.as_i64() {
                Some(n) if n >= 0 => {
                    task.operator = "wait";
                    task.keys.push(("duration".into(), TVal::Int(n)));
                    self.report.mapped(path, format!("-> task `{}` (wait {n} s)", task.id));
                }
                _ => {
                    self.report.rejected(
                        codes::INVALID_MACHINE,
                        format!("{path}.Seconds"),
                        "Seconds must be a whole number",
                        "",
                    );
                    self.placeholder(task, "a Wait with bad Seconds");
                }
            }
        } else if let Some(ts) = obj.get("Timestamp") {
            match ts.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
                Some(at) => {
                    let epoch = at.timestamp();
                    task.operator = "command";
                    task.keys.push((
                        "command".into(),
                        TVal::Str(format!("until [ \"$(date -u +%s)\" -ge {epoch} ]; do sleep 5; done")),
                    ));
                    self.report.mapped(
                        path,
                        format!("-> task `{}` (a command that waits until {})", task.id, at.to_rfc3339()),
                    );
                }
                None => {
                    self.report.rejected(
                        codes::INVALID_MACHINE,
                        format!("{path}.Timestamp"),
                        "Timestamp must be an RFC 3339 date and time",
                        "",
                    );
                    self.placeholder(task, "a Wait with a bad Timestamp");
                }
            }
        } else {
            self.report.rejected(codes::INVALID_MACHINE, path, "a Wait needs Seconds or Timestamp", "");
            self.placeholder(task, "a Wait without Seconds");
        }
    }

    fn fail(&mut self, s: usize, task: &mut Task) {
        let path = self.states[s].path.clone();
        let obj = self.states[s].obj.clone();
        for field in ["ErrorPath", "CausePath"] {
            if obj.contains_key(field) {
                self.report.rejected(
                    codes::DYNAMIC_PATH,
                    format!("{path}.{field}"),
                    format!("{field} is read from the input at run time"),
                    format!("write {} as text", field.trim_end_matches("Path")),
                );
            }
        }
        let error = obj.get("Error").and_then(Value::as_str).unwrap_or("States.Fail");
        let cause = obj.get("Cause").and_then(Value::as_str).unwrap_or("");
        let mut cmd = format!("echo {} >&2", emit::shell_quote(&format!("Error: {error}")));
        if !cause.is_empty() {
            let _ = write!(cmd, "; echo {} >&2", emit::shell_quote(&format!("Cause: {cause}")));
        }
        cmd.push_str("; exit 1");
        task.operator = "command";
        task.keys.push(("command".into(), TVal::Str(emit::jinja_literal(&cmd))));
        task.comment.push("Fails the run with the state's Error and Cause (in the task's log).".into());
        self.report.mapped(path, format!("-> task `{}` (a command that fails with the Error and Cause)", task.id));
    }

    // ---- data flow ------------------------------------------------------------------------

    /// A `Parameters`-like template evaluated against `ctx`.
    fn eval(&mut self, v: &Value, ctx: &Sym, path: &str) -> Sym {
        match v {
            Value::Object(m) => {
                let mut fields = BTreeMap::new();
                for (k, v) in m {
                    let kp = format!("{path}{}", key_path(k));
                    if let Some(name) = k.strip_suffix(".$") {
                        let sym = match v.as_str() {
                            Some(expr) => self.expr(expr, ctx, &kp),
                            None => {
                                self.report.rejected(
                                    codes::INVALID_MACHINE,
                                    kp,
                                    "a key ending in `.$` needs a JSONPath or an intrinsic function as its value",
                                    "",
                                );
                                Sym::Unknown("reported".into())
                            }
                        };
                        fields.insert(name.to_string(), sym);
                    } else {
                        fields.insert(k.clone(), self.eval(v, ctx, &kp));
                    }
                }
                Sym::Obj { fields, base: None }
            }
            Value::Array(a) => {
                Sym::Arr(a.iter().enumerate().map(|(i, x)| self.eval(x, ctx, &format!("{path}[{i}]"))).collect())
            }
            other => Sym::Const(other.clone()),
        }
    }

    /// The value of `expr` (a JSONPath, a context path or an intrinsic function).
    fn expr(&mut self, expr: &str, ctx: &Sym, kp: &str) -> Sym {
        let expr = expr.trim();
        if expr.starts_with("$$") {
            return self.context(expr, kp);
        }
        if expr.starts_with('$') {
            return match paths::parse_path(expr, "$") {
                Some(segs) => ctx.resolve(&segs),
                None => {
                    self.report.rejected(
                        codes::UNRESOLVED_PATH,
                        kp,
                        format!("`{expr}` is not a static JSONPath"),
                        "use a path of fields and indexes (`$.a.b`, `$.list[0]`); Sluice resolves those into templates",
                    );
                    Sym::Unknown("reported".into())
                }
            };
        }
        if paths::is_call(expr) {
            return match paths::parse_call(expr) {
                Ok(call) => self.call(&call, ctx, kp),
                Err(e) => {
                    self.report.rejected(codes::INVALID_MACHINE, kp, format!("`{expr}`: {e}"), "");
                    Sym::Unknown("reported".into())
                }
            };
        }
        self.report.rejected(
            codes::INVALID_MACHINE,
            kp,
            format!("`{expr}` is neither a JSONPath nor an intrinsic function"),
            "start it with `$` or `States.`, or drop the `.$` from the key",
        );
        Sym::Unknown("reported".into())
    }

    fn context(&mut self, expr: &str, kp: &str) -> Sym {
        let segs = paths::parse_path(expr, "$$").unwrap_or_default();
        let names: Vec<&str> = segs
            .iter()
            .map(|s| match s {
                Seg::Field(f) => f.as_str(),
                Seg::Index(_) => "[]",
            })
            .collect();
        match names.as_slice() {
            ["Execution", "Id"] | ["Execution", "Name"] => Sym::Tpl("{{ run_id }}".into()),
            ["StateMachine", "Id"] | ["StateMachine", "Name"] => Sym::Tpl("{{ dag_id }}".into()),
            ["State", "Name"] => Sym::Tpl("{{ task_id }}".into()),
            ["Execution", "StartTime"] => {
                self.report.approximated(
                    codes::CONTEXT_OBJECT,
                    kp,
                    "$$.Execution.StartTime becomes `{{ ts }}`, the run's logical date, not the moment it started",
                    "use `{{ ts }}` or `{{ data_interval_end }}` as the date the run is about",
                );
                Sym::Tpl("{{ ts }}".into())
            }
            ["Execution", "Input", ..] => Sym::Input(segs[2..].to_vec()),
            _ => {
                self.report.rejected(
                    codes::UNRESOLVED_PATH,
                    kp,
                    format!("`{expr}`: Sluice has no equivalent of this context object field"),
                    "use $$.Execution.Id or $$.Execution.Name (the run id), $$.StateMachine.Name (the DAG id), $$.State.Name (the task id) or $$.Execution.Input",
                );
                Sym::Unknown("reported".into())
            }
        }
    }

    fn call(&mut self, call: &paths::Call, ctx: &Sym, kp: &str) -> Sym {
        if call.name != "States.Format" {
            self.report.rejected(
                codes::INTRINSIC,
                kp,
                format!("`{}` is evaluated at run time; Sluice maps only States.Format (into a template)", call.name),
                "compute the value in the task that needs it, or pass it in the execution input",
            );
            return Sym::Unknown("reported".into());
        }
        let Some(Arg::Str(template)) = call.args.first() else {
            self.report.rejected(
                codes::INVALID_MACHINE,
                kp,
                "States.Format needs a string template as its first argument",
                "",
            );
            return Sym::Unknown("reported".into());
        };
        let pieces = paths::format_pieces(template);
        let mut args = call.args[1..].iter();
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Some(lit) => out.push_str(&emit::jinja_literal(&lit)),
                None => {
                    let Some(arg) = args.next() else {
                        self.report.rejected(
                            codes::INVALID_MACHINE,
                            kp,
                            "States.Format has more `{}` than arguments",
                            "",
                        );
                        return Sym::Unknown("reported".into());
                    };
                    let sym = match arg {
                        Arg::Str(s) => Sym::Const(Value::String(paths::unescape(s))),
                        Arg::Num(n) => Sym::Tpl(n.clone()),
                        Arg::Bool(b) => Sym::Tpl(b.to_string()),
                        Arg::Null => Sym::Tpl("null".into()),
                        Arg::Path(p) => self.expr(p, ctx, kp),
                        Arg::Call(c) => self.call(c, ctx, kp),
                    };
                    match self.json_of(&sym, kp) {
                        Value::String(s) => out.push_str(&s),
                        Value::Number(n) => out.push_str(&n.to_string()),
                        Value::Bool(b) => out.push_str(&b.to_string()),
                        Value::Null => out.push_str("null"),
                        _ => self.report.rejected(
                            codes::UNRESOLVED_PATH,
                            kp,
                            "States.Format of an object or a list",
                            "format a field of it",
                        ),
                    }
                }
            }
        }
        if args.next().is_some() {
            self.report.rejected(codes::INVALID_MACHINE, kp, "States.Format has more arguments than `{}`", "");
        }
        Sym::Tpl(out)
    }

    /// `sym` as a JSON value whose strings are Sluice templates.
    fn json_of(&mut self, sym: &Sym, kp: &str) -> Value {
        match sym {
            Sym::Const(v) => escape_strings(v),
            Sym::Tpl(t) => Value::String(t.clone()),
            Sym::Arr(items) => {
                Value::Array(items.iter().enumerate().map(|(i, x)| self.json_of(x, &format!("{kp}[{i}]"))).collect())
            }
            Sym::Obj { fields, base: None } => {
                let mut m = Map::new();
                for (k, v) in fields {
                    let v = self.json_of(v, &format!("{kp}{}", key_path(k)));
                    m.insert(k.clone(), v);
                }
                Value::Object(m)
            }
            Sym::Obj { base: Some(_), .. } => {
                self.unresolved(kp, "it reads a whole state document, which Sluice does not pass between tasks")
            }
            Sym::Input(path) => {
                let mut names = Vec::new();
                for seg in path {
                    match seg {
                        Seg::Field(f)
                            if f.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                                && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                        {
                            names.push(f.clone())
                        }
                        _ => {
                            return self.unresolved(
                                kp,
                                &format!(
                                    "`{}` of the execution input is not a name a param can have",
                                    paths::render(path)
                                ),
                            )
                        }
                    }
                }
                if names.is_empty() {
                    return self.unresolved(kp, "it reads the whole execution input");
                }
                self.params.insert(names.clone());
                Value::String(format!("{{{{ params.{} }}}}", names.join(".")))
            }
            Sym::Output { task, path } => {
                let op = self.ops.get(task).copied();
                let names: Vec<String> = path
                    .iter()
                    .map(|s| match s {
                        Seg::Field(f) => f.clone(),
                        Seg::Index(i) => i.to_string(),
                    })
                    .collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                match op.and_then(|op| services::output_field(op, &refs)) {
                    Some(field) => Value::String(format!("{{{{ tasks.{task}.{field} }}}}")),
                    None => self.unresolved(
                        kp,
                        &format!(
                            "`{}` of the result of `{task}` is not an output Sluice keeps (see the outputs in docs/operators.md)",
                            paths::render(path)
                        ),
                    ),
                }
            }
            Sym::Unknown(why) if why == "reported" => Value::String(String::new()),
            Sym::Unknown(why) => self.unresolved(kp, why),
        }
    }

    fn unresolved(&mut self, kp: &str, why: &str) -> Value {
        self.report.rejected(
            codes::UNRESOLVED_PATH,
            kp,
            format!("cannot be resolved statically: {why}"),
            "read the execution input ($.field), a previous task's id output (through its ResultPath), or the context object ($$.Execution.Id)",
        );
        Value::String(String::new())
    }

    // ---- writing --------------------------------------------------------------------------

    fn finish(mut self, dag_id: &str, opts: &Options, description: Option<String>) -> Conversion {
        let mut out = String::new();
        let source = if opts.source.is_empty() { "a state machine" } else { &opts.source };
        emit::comment(
            &mut out,
            &format!("Imported from the Step Functions state machine {source} by `dagctl import asl`."),
        );
        emit::comment(&mut out, "Each task says which state it comes from and where that state is in the JSON.");
        if self.report.has_rejections() {
            emit::comment(
                &mut out,
                "INCOMPLETE: some states were rejected (see the import report); noops stand in for them.",
            );
        }
        out.push('\n');
        if opts.write_id {
            let _ = writeln!(out, "id = {}", emit::string(dag_id));
        }
        let description =
            description.unwrap_or_else(|| format!("Imported from the Step Functions state machine {source}"));
        let _ = writeln!(out, "description = {}", emit::string(&crate::report::one_line(&description)));
        for (k, v) in [("schedule", &opts.schedule), ("timezone", &opts.timezone), ("start_date", &opts.start_date)] {
            if let Some(v) = v {
                let _ = writeln!(out, "{k} = {}", emit::string(v));
            }
        }
        if !self.params.is_empty() {
            out.push_str(
                "\n# The execution input's fields: give them in the run's conf, or set defaults here.\n[params]\n",
            );
            for (k, v) in params_tree(&self.params) {
                let _ = writeln!(out, "{} = {}", emit::key(&k), emit::value(&v));
            }
            self.report.mapped(
                "$",
                format!(
                    "the execution input's fields become [params] (empty by default; give them in the run's conf): {}",
                    self.params.iter().map(|p| p.join(".")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if self.tasks.is_empty() {
            self.tasks.push(Task {
                id: "start".into(),
                comment: vec!["The machine has no state that runs anything.".into()],
                operator: "noop",
                deps: Vec::new(),
                rule: None,
                keys: Vec::new(),
                generic: Vec::new(),
                doc: None,
            });
        }
        for t in &self.tasks {
            out.push('\n');
            for c in &t.comment {
                emit::comment(&mut out, c);
            }
            let _ = writeln!(out, "[tasks.{}]", emit::key(&t.id));
            let _ = writeln!(out, "operator = {}", emit::string(t.operator));
            if !t.deps.is_empty() {
                let deps: Vec<TVal> = t.deps.iter().map(|d| TVal::Str(d.clone())).collect();
                let _ = writeln!(out, "depends_on = {}", emit::value(&TVal::Arr(deps)));
            }
            if let Some(r) = t.rule {
                let _ = writeln!(out, "trigger_rule = {}", emit::string(r));
            }
            for (k, v) in t.keys.iter().chain(&t.generic) {
                let _ = writeln!(out, "{} = {}", emit::key(k), emit::value(v));
            }
            if let Some(doc) = &t.doc {
                let _ = writeln!(out, "doc = {}", emit::string(doc));
            }
        }
        // Validate by construction: the same parser as `dagctl validate`.
        let file = format!("{dag_id}.toml");
        let parsed = sluice_dag::parse_dag(Path::new(&file), &out);
        for d in parsed.diagnostics {
            let msg = match (&d.task, d.line) {
                (Some(t), _) => format!("task `{t}`: {}", d.message),
                (None, Some(l)) => format!("line {l}: {}", d.message),
                _ => d.message.clone(),
            };
            if d.is_error() {
                self.report.rejected(
                    codes::INVALID_DAG,
                    "$",
                    format!("the written DAG does not validate: {msg}"),
                    if self.report.has_rejections() {
                        "fix the rejections above first"
                    } else {
                        "change the value it names in the state machine (it is over one of Sluice's limits), or report a bug of the importer"
                    },
                );
            } else {
                self.report.mapped("$", format!("dagctl validate warns: {msg}"));
            }
        }
        Conversion { dag_id: dag_id.to_string(), toml: out, report: self.report }
    }
}

/// Literal strings of the state machine, made safe inside templates.
fn escape_strings(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(emit::jinja_literal(s)),
        Value::Array(a) => Value::Array(a.iter().map(escape_strings).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), escape_strings(v))).collect()),
        other => other.clone(),
    }
}

/// The params read, as TOML: `a = ""`, and `a = { b = "" }` for `params.a.b`.
fn params_tree(paths: &BTreeSet<Vec<String>>) -> Vec<(String, TVal)> {
    #[derive(Default)]
    struct Node(BTreeMap<String, Node>);
    let mut root = Node::default();
    for p in paths {
        let mut n = &mut root;
        for seg in p {
            n = n.0.entry(seg.clone()).or_default();
        }
    }
    fn to_val(n: &Node) -> TVal {
        if n.0.is_empty() {
            TVal::Str(String::new())
        } else {
            TVal::Tbl(n.0.iter().map(|(k, v)| (k.clone(), to_val(v))).collect())
        }
    }
    root.0.iter().map(|(k, v)| (k.clone(), to_val(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_snake_case_and_valid() {
        assert_eq!(task_id_of("CreateCluster"), "create_cluster");
        assert_eq!(task_id_of("Run ETL step #1"), "run_etl_step_1");
        assert_eq!(task_id_of("RunETL"), "run_etl");
        assert_eq!(task_id_of("???"), "state");
        assert_eq!(task_id_of("Ünïcode"), "n_code");
        assert_eq!(key_path("A b"), "['A b']");
        assert_eq!(key_path("Ab"), ".Ab");
    }
}
