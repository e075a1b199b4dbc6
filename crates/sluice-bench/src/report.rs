//! The report: figures per scenario, compared with their targets; a table or JSON.

use serde::Serialize;

use crate::measure::median;
use crate::{DaemonKind, Options};

/// Everything one `dagctl bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `process` (the `dagctl scheduler` binary) or `in-process`.
    pub daemon: String,
    pub parallelism: usize,
    pub repeat: u32,
    pub cores: usize,
    pub results: Vec<ScenarioResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub description: String,
    /// Tasks per run (for `latency`: tasks measured; for `many_dags`: tasks loaded).
    pub tasks: usize,
    pub metrics: Vec<Metric>,
}

/// One figure: the median of its samples, with their range.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Whether the median meets the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_least: Option<f64>,
}

impl Target {
    pub fn at_most(v: f64) -> Target {
        Target { at_most: Some(v), at_least: None }
    }

    pub fn at_least(v: f64) -> Target {
        Target { at_most: None, at_least: Some(v) }
    }

    pub fn met(&self, v: f64) -> bool {
        self.at_most.is_none_or(|m| v <= m) && self.at_least.is_none_or(|m| v >= m)
    }

    fn text(&self) -> String {
        match (self.at_most, self.at_least) {
            (Some(m), _) => format!("<= {}", num(m)),
            (_, Some(m)) => format!(">= {}", num(m)),
            _ => String::new(),
        }
    }
}

impl Metric {
    /// From samples (the median is reported).
    pub fn of(name: &str, unit: &str, samples: &[f64], target: Option<Target>) -> Metric {
        let m = median(samples);
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Metric {
            name: name.into(),
            unit: unit.into(),
            median: m,
            min: if samples.is_empty() { 0.0 } else { min },
            max: if samples.is_empty() { 0.0 } else { max },
            samples: samples.len(),
            target,
            met: target.map(|t| t.met(m)),
        }
    }

    /// One figure computed from `samples` underlying values (a percentile, a rate).
    pub fn single(name: &str, unit: &str, value: f64, samples: usize, target: Option<Target>) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            median: value,
            min: value,
            max: value,
            samples,
            target,
            met: target.map(|t| t.met(value)),
        }
    }

    /// "met, 38% of the limit" / "MISSED, 2.1x the limit".
    fn verdict(&self) -> String {
        let Some(t) = self.target else { return String::new() };
        let ok = if t.met(self.median) { "met" } else { "MISSED" };
        match (t.at_most, t.at_least) {
            (Some(m), _) if m > 0.0 => format!("{ok} ({:.0}% of limit)", self.median / m * 100.0),
            (_, Some(m)) if m > 0.0 => format!("{ok} ({:.1}x target)", self.median / m),
            _ => ok.to_string(),
        }
    }
}

/// A number with 3 significant digits or so, no exponent.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

impl Report {
    pub(crate) fn new(o: &Options) -> Report {
        Report {
            daemon: match o.daemon {
                DaemonKind::Binary(_) => "process".into(),
                DaemonKind::InProcess => "in-process".into(),
            },
            parallelism: o.parallelism,
            repeat: o.repeat,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            results: Vec::new(),
        }
    }

    /// Whether every figure with a target meets it.
    pub fn all_met(&self) -> bool {
        self.results.iter().flat_map(|r| &r.metrics).all(|m| m.met != Some(false))
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// A Markdown table: one row per figure.
    pub fn table(&self) -> String {
        let header = ["scenario", "figure", "median", "min", "max", "unit", "target", "verdict"];
        let mut rows: Vec<[String; 8]> = Vec::new();
        for r in &self.results {
            for (k, m) in r.metrics.iter().enumerate() {
                let ranged = m.samples > 1 && m.min != m.max;
                rows.push([
                    if k == 0 { format!("`{}`", r.scenario) } else { String::new() },
                    m.name.clone(),
                    num(m.median),
                    if ranged { num(m.min) } else { String::new() },
                    if ranged { num(m.max) } else { String::new() },
                    m.unit.clone(),
                    m.target.map(|t| t.text()).unwrap_or_default(),
                    m.verdict(),
                ]);
            }
        }
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&header.map(String::from));
        out.push_str(&line(&widths.map(|w| "-".repeat(w))));
        for row in &rows {
            out.push_str(&line(row));
        }
        out.push_str(&format!(
            "\n{} cores; daemon: {}; parallelism {}; medians of {} repetition(s).\n",
            self.cores, self.daemon, self.parallelism, self.repeat
        ));
        out
    }
}
