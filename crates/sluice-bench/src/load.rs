//! A closed-loop HTTP load generator: `concurrency` clients, each with its own keep-alive
//! connection, send GET requests one after the other for a while, and every request's latency
//! (send to the last byte of the body) is recorded. The `api` scenario runs it in a second
//! process (`dagctl bench-load`) so its CPU is not the daemon's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The URLs, requested in turn (client `k` starts at the `k`-th and steps by `concurrency`).
    pub urls: Vec<String>,
    pub concurrency: usize,
    pub duration: Duration,
}

/// What the load gave.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests answered 200 with their whole body.
    pub requests: u64,
    /// Requests that failed or answered anything but 200.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// How long the clients ran, seconds.
    pub seconds: f64,
    /// The latency of each answered request, ms.
    pub latencies_ms: Vec<f64>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Runs the load; an error only when no client can be built.
pub async fn generate(spec: &LoadSpec) -> Result<LoadResult, String> {
    if spec.urls.is_empty() || spec.concurrency == 0 {
        return Err("nothing to load: no URL or no client".into());
    }
    let urls = Arc::new(spec.urls.clone());
    let began = Instant::now();
    let until = began + spec.duration;
    let mut clients = Vec::with_capacity(spec.concurrency);
    for k in 0..spec.concurrency {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let (urls, step) = (urls.clone(), spec.concurrency);
        clients.push(tokio::spawn(async move {
            let mut out = LoadResult::default();
            let mut i = k;
            while Instant::now() < until {
                let url = &urls[i % urls.len()];
                i += step;
                let t = Instant::now();
                let answer = match client.get(url).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("{url}: {}", r.status())),
                    Err(e) => Err(format!("{url}: {e}")),
                };
                match answer {
                    Ok(()) => {
                        out.requests += 1;
                        out.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
            }
            out
        }));
    }
    let mut total = LoadResult::default();
    for c in clients {
        let part = c.await.map_err(|e| format!("a load client failed: {e}"))?;
        total.requests += part.requests;
        total.errors += part.errors;
        if total.first_error.is_none() {
            total.first_error = part.first_error;
        }
        total.latencies_ms.extend(part.latencies_ms);
    }
    total.seconds = began.elapsed().as_secs_f64();
    Ok(total)
}
