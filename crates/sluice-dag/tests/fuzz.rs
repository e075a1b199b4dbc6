//! A seeded mutation fuzz of the parser and validator, under `cargo test`.
//!
//! The corpus is every `.toml` file beneath `dags/`, `examples/dags/` and `tests/fixtures/`.
//! Each iteration mutates one of them (byte flips, deletions, duplicated, swapped and spliced
//! lines, hostile tokens and values) and checks that:
//!
//! - `parse_dag` does not panic;
//! - every diagnostic displays as exactly one line that starts with the file's path;
//! - for a mutant that is a valid DAG, the run-date questions (`runs_firing_after`,
//!   deadlines, `runs_between`, `logical_date_on`, `run_dates`, `first_logical_date`) and
//!   `render_task` of every task and the check of its alert channels do not panic, and
//!   render errors and channel errors are one line.
//!
//! `SLUICE_FUZZ_ITERATIONS` sets the number of mutants (default [`DEFAULT_ITERATIONS`]),
//! `SLUICE_FUZZ_SEED` the seed (decimal or `0x` hex). Iteration `i` draws from its own ChaCha
//! stream (`i`), so the same seed gives the same mutants on any number of threads; a failing
//! mutant is written to `fuzz-failures/` under the target directory's `tmp`, and the failure
//! message names the seed and the iteration. A long run:
//!
//! ```text
//! SLUICE_FUZZ_ITERATIONS=200000 cargo test --release -p sluice-dag --test fuzz -- --nocapture
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use sluice_dag::diagnostic::one_line;
use sluice_dag::operators::{Sensor, SensorKind};
use sluice_dag::{check_channels, parse_dag, run_id, ChannelRef, Dag, Operator, RunDates};

/// About 10 to 17 s in a debug build on two (busy) cores.
const DEFAULT_ITERATIONS: u64 = 6_000;
const DEFAULT_SEED: u64 = 20_260_301;

/// Values that have broken something, or could.
const HOSTILE_VALUES: &[&str] = &[
    "100000000000000000",
    "\"100000000000000000s\"",
    "\"3653d\"",
    "\"10y\"",
    "\"1ns\"",
    "-1",
    "\"-1\"",
    "0",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967295",
    "\"a\\nb\"",
    "\"a\\tb\"",
    "\"a\\u0000b\"",
    "\"\\u2028\\u0085\\r\"",
    "\"é🦀\u{200b}\"",
    "\"{{\"",
    "\"{% %}\"",
    "\"{{ ds }\"",
    "\"{% if %}\"",
    "\"{{ tasks.a.output }}\"",
    "\"{{ tasks }}\"",
    "\"{{ params.nope }}\"",
    "\"{{ ds_add(ds, 99999999999) }}\"",
    "\"{{ ds_add(ds, -9223372036854775808) }}\"",
    "\"{{ ds_format(ds, '%Y-%m-%d', '%Q') }}\"",
    "\"{{ ds_format(ds, '%H', '%Y') }}\"",
    "\"{{ ds[:7] ~ ts_nodash }}\"",
    "\"{% for i in range(5) %}{{ i }}{% endfor %}\"",
    "\"0 25 * * *\"",
    "\"*/0 * * * *\"",
    "\"0 0 30 2 *\"",
    "\"60 24 32 13 8\"",
    "\"0 0 L * 5#6\"",
    "\"@fortnightly\"",
    "\"* * * * * *\"",
    "0000-01-01",
    "\"0000-01-01\"",
    "\"262143-12-31\"",
    "\"+262143-12-31\"",
    "\"9999-12-31T23:59\"",
    "9999-12-31T23:59:59",
    "1969-12-31",
    "\"2026-03-29T01:30\"",
    "\"9999-12-31T23:00:00-05:00\"",
    "07:00:00",
    "\"23:59:59\"",
    "\"23:59:60\"",
    "\"0s\"",
    "\"1y 1ns\"",
    "\"24:00\"",
    "\"/dev/zero\"",
    "\"/dev/stdin\"",
    "\".\"",
    "\"/etc\"",
    "\"Pacific/Kiritimati\"",
    "\"America/St_Johns\"",
    "\"Etc/GMT+12\"",
    "true",
    "[]",
    "{}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "{ a = { a = { a = { a = { a = { a = { a = { a = 1 } } } } } } } }",
];

/// Keys worth giving hostile values.
const KEYS: &[&str] = &[
    "id",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "deadline",
    "max_active_runs",
    "catchup",
    "operator",
    "depends_on",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_retry_delay",
    "timeout",
    "priority",
    "poke_interval",
    "duration",
    "command",
    "kind",
    "at",
    "query",
    "query_file",
    "cluster_id",
    "instance_count",
    "steps",
    "env",
    "execution_timeout",
    "auto_termination_idle_timeout",
    "max_duration",
    "max_age",
    "digest",
    "default_alerts",
    "on",
    "to",
    "alerts",
    "freshness",
];

/// Lines that open or name things.
const HOSTILE_LINES: &[&str] = &[
    "[tasks.\"a\\nb\"]",
    "[tasks.\"\\u0000\"]",
    "[tasks.x]\noperator = \"noop\"",
    "[tasks.w]\noperator = \"wait\"\nduration = \"100000000000000000s\"",
    "[tasks.t]\noperator = \"sensor\"\nkind = \"time\"\nat = \"23:59\"",
    "[tasks.q]\noperator = \"athena\"\nquery_file = \"/dev/zero\"\ndatabase = \"d\"\noutput_location = \"s3://b/\"",
    "[tasks.r]\noperator = \"command\"\ncommand = \"{{ tasks.x.output }}\"\ndepends_on = [\"x\"]",
    "[defaults]",
    "[params]",
    "[[tasks.a.steps]]",
    "[tasks]",
    "\"a\\nb\" = 1",
    "deadline = \"100000000000000000s\"",
    "schedule = \"* * * * *\"\nstart_date = \"9999-12-31T23:59\"",
    "schedule = \"@yearly\"\nstart_date = \"1970-01-01\"\nend_date = \"9999-12-31\"",
    "schedule = \"0 0 29 2 *\"\ntimezone = \"Pacific/Apia\"\nstart_date = \"2011-12-29\"",
    "schedule = \"30 1 * * *\"\ntimezone = \"Europe/London\"\ndeadline = \"01:30\"",
    "[[alerts]]\non = [\"failure\", \"sla\"]\nto = [\"slack:data-oncall\", \"webhook:pager.duty\"]\ndigest = \"10m\"",
    "[[alerts]]\non = [\"failur\"]\nto = [\"slak:\\n\", \"sns\", \":\", \"email:a:b\"]",
    "[[alerts]]",
    "alerts = [{ on = [], to = [] }, 1, \"x\"]",
    "[freshness]\nmax_age = \"26h\"",
    "[freshness]",
    "default_alerts = false",
];

struct Rng(ChaCha8Rng);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for dir in ["dags", "examples/dags", "tests/fixtures"] {
        let mut stack = vec![workspace().join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// The largest char boundary at or before `i`.
fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(rng: &mut Rng, src: &str, corpus: &[(PathBuf, String)]) -> String {
    let mut text = src.to_string();
    // Mostly one or two mutations, so that many mutants stay valid DAGs and reach the
    // run-date computations and rendering.
    let rounds = if rng.below(3) == 0 { 2 + rng.below(3) } else { 1 };
    for _ in 0..rounds {
        text = match rng.below(10) {
            0 => {
                // Flip a bit of one byte (lossily back to text).
                let mut bytes = text.into_bytes();
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            1 => {
                // Delete a few bytes.
                let start = boundary(&text, rng.below(text.len() + 1));
                let end = boundary(&text, start + 1 + rng.below(16));
                format!("{}{}", &text[..start], &text[end..])
            }
            2 | 3 => {
                // Duplicate, swap or delete lines, or splice one from another file.
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                let n = lines.len();
                match rng.below(4) {
                    0 if n > 0 => {
                        let l = lines[rng.below(n)].clone();
                        lines.insert(rng.below(n + 1), l);
                    }
                    1 if n > 1 => {
                        let (a, b) = (rng.below(n), rng.below(n));
                        lines.swap(a, b);
                    }
                    2 if n > 0 => {
                        lines.remove(rng.below(n));
                    }
                    _ => {
                        let (_, other) = rng.pick(corpus);
                        let other: Vec<&str> = other.lines().collect();
                        if !other.is_empty() {
                            let l = rng.pick(&other).to_string();
                            lines.insert(rng.below(n + 1), l);
                        }
                    }
                }
                lines.join("\n") + "\n"
            }
            4 | 5 => {
                // Give an existing `key = value` line a hostile value.
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                let keyed: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].contains(" = ")).collect();
                if !keyed.is_empty() {
                    let i = *rng.pick(&keyed);
                    let key = lines[i].split(" = ").next().unwrap_or_default().to_string();
                    lines[i] = format!("{key} = {}", rng.pick(HOSTILE_VALUES));
                }
                lines.join("\n") + "\n"
            }
            6 => {
                // Add a known key with a hostile value, somewhere.
                let line = format!("{} = {}", rng.pick(KEYS), rng.pick(HOSTILE_VALUES));
                insert_line(rng, &text, &line)
            }
            7 => {
                let line = rng.pick(HOSTILE_LINES).to_string();
                insert_line(rng, &text, &line)
            }
            8 => {
                // A hostile token anywhere, or a very long or very wide one.
                let token = match rng.below(4) {
                    0 => "x".repeat(1 + rng.below(100_000)),
                    1 => format!("[{}]", "1,".repeat(rng.below(20_000))),
                    2 => format!(
                        "[{}]",
                        (0..rng.below(3_000)).map(|i| format!("\"t{i}\"")).collect::<Vec<_>>().join(",")
                    ),
                    _ => rng.pick(HOSTILE_VALUES).to_string(),
                };
                let at = boundary(&text, rng.below(text.len() + 1));
                format!("{}{token}{}", &text[..at], &text[at..])
            }
            _ => {
                // Many tasks at once.
                let mut more = String::new();
                for i in 0..rng.below(300) {
                    more.push_str(&format!("[tasks.f{i}]\noperator = \"noop\"\ndepends_on = [\"f{}\"]\n", i / 2));
                }
                format!("{text}\n{more}")
            }
        };
    }
    text
}

fn insert_line(rng: &mut Rng, text: &str, line: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let at = rng.below(lines.len() + 1);
    lines.insert(at, line);
    lines.join("\n") + "\n"
}

/// How many mutants were valid DAGs, and how many tasks were rendered.
static VALID: AtomicU64 = AtomicU64::new(0);
static RENDERED: AtomicU64 = AtomicU64::new(0);

/// What went wrong with one mutant, if anything (a panic is caught by the caller).
fn check(path: &Path, src: &str) -> Result<(), String> {
    let outcome = parse_dag(path, src);
    let prefix = format!("{}:", one_line(&path.display().to_string()));
    for d in &outcome.diagnostics {
        let line = d.to_string();
        if line.contains(['\n', '\r']) || !line.starts_with(&prefix) {
            return Err(format!("diagnostic not one line starting with the path: {line:?}"));
        }
    }
    match outcome.dag {
        Some(dag) => {
            VALID.fetch_add(1, Ordering::Relaxed);
            exercise(&dag)
        }
        None => Ok(()),
    }
}

/// The questions a scheduler and `dagctl` ask of a valid DAG.
fn exercise(dag: &Dag) -> Result<(), String> {
    let tz = dag.timezone;
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap().with_timezone(&tz);
    let mut samples: Vec<RunDates> = Vec::new();
    let mut starts = vec![now];
    starts.extend(dag.start_date.and_then(|s| s.checked_sub_signed(ChronoDuration::days(1))));
    starts.extend(dag.end_date);
    for after in starts {
        for run in dag.runs_firing_after(after).take(3) {
            if let Some(deadline) = dag.deadline {
                let _ = deadline.for_fire_time(run.fire_time());
            }
            // What the time sensor waits for.
            for task in &dag.tasks {
                if let Operator::Sensor(Sensor { kind: SensorKind::Time(t), .. }) = &task.operator {
                    let _ = t.at.next_at_or_after(run.fire_time());
                }
            }
            let _ = (run.ds(), run.ts(), run.ts_nodash());
            samples.push(run);
        }
    }
    let first = dag.first_logical_date();
    let from = first.unwrap_or(now);
    if let Some(to) = from.checked_add_signed(ChronoDuration::days(1)) {
        samples.extend(dag.runs_between(from, to).into_iter().take(3));
    }
    for date in [
        now.date_naive(),
        from.date_naive(),
        NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
        NaiveDate::MAX,
        NaiveDate::MIN,
    ] {
        if let Ok(logical) = dag.logical_date_on(date) {
            samples.push(dag.run_dates(logical));
        }
    }
    samples.push(dag.run_dates(now));
    let _ = dag.adjacency();

    // Its alert channels, against a folder that declares one of them (or none).
    let declared: Vec<ChannelRef> = dag.alerts.iter().flat_map(|r| r.to.first().cloned()).take(1).collect();
    for d in check_channels(dag, &declared) {
        let line = d.to_string();
        if line.contains(['\n', '\r']) || d.line.is_none_or(|l| l == 0) {
            return Err(format!("channel diagnostic not one line with a line number: {line:?}"));
        }
    }

    // Render every task for a couple of runs, with every output an upstream could publish.
    let outputs: Vec<(String, Map<String, Value>)> = dag
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.operator.kind().outputs().iter().map(|(o, _)| (o.to_string(), json!("x"))).collect()))
        .collect();
    for dates in samples.iter().take(2) {
        for task in &dag.tasks {
            let mut ctx = dag.template_context(&task.id, &run_id("scheduled", dates), dates, None);
            ctx.tasks.extend(outputs.iter().cloned());
            RENDERED.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = dag.render_task(task, &ctx).map_err(|e| e.to_string()) {
                if e.contains(['\n', '\r']) {
                    return Err(format!("render error of task {:?} not one line: {e:?}", task.id));
                }
            }
        }
    }
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[test]
fn mutants_of_the_corpus_neither_panic_nor_break_a_diagnostic_across_lines() {
    let iterations = env_u64("SLUICE_FUZZ_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS);
    let seed = env_u64("SLUICE_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let corpus = corpus();
    assert!(corpus.len() >= 30, "only {} corpus files", corpus.len());
    let valid: Vec<(PathBuf, String)> =
        corpus.iter().filter(|(path, src)| parse_dag(path, src).dag.is_some()).cloned().collect();
    assert!(valid.len() >= 5, "only {} valid corpus files", valid.len());
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");

    // A panic is reported below with its mutant; the default hook prints where it happened.
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) as u64;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (corpus, valid, failures, out_dir) = (&corpus, &valid, &failures, &out_dir);
            scope.spawn(move || {
                for i in (t..iterations).step_by(threads as usize) {
                    if failures.lock().unwrap().len() >= 10 {
                        return;
                    }
                    let mut stream = ChaCha8Rng::seed_from_u64(seed);
                    stream.set_stream(i);
                    let mut rng = Rng(stream);
                    // Half the time a valid file, whose mutants are more often valid too.
                    let (path, src) = if rng.below(2) == 0 { rng.pick(valid) } else { rng.pick(corpus) };
                    let mutant = mutate(&mut rng, src, corpus);
                    let problem = match catch_unwind(AssertUnwindSafe(|| check(path, &mutant))) {
                        Ok(Ok(())) => continue,
                        Ok(Err(problem)) => problem,
                        Err(panic) => {
                            let msg = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            format!("panicked: {msg}")
                        }
                    };
                    let _ = std::fs::create_dir_all(out_dir);
                    let file = out_dir.join(format!("seed-{seed:#x}-iteration-{i}.toml"));
                    let _ = std::fs::write(&file, &mutant);
                    failures.lock().unwrap().push(format!(
                        "iteration {i} (mutant of {}, written to {}): {problem}",
                        path.display(),
                        file.display()
                    ));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "{iterations} mutants (seed {seed:#x}) of {} files: {} valid DAGs, {} tasks rendered",
        corpus.len(),
        VALID.load(Ordering::Relaxed),
        RENDERED.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "SLUICE_FUZZ_SEED={seed:#x} SLUICE_FUZZ_ITERATIONS={iterations}: {} failures\n{}",
        failures.len(),
        failures.join("\n")
    );
}
