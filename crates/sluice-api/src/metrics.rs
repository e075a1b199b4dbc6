//! `/metrics`: Prometheus text. (Being written: the full set of the issue.)

use std::sync::Arc;

use sluice_scheduler::stats::EngineStats;
use sluice_store::Store;

pub struct Metrics {
    #[allow(dead_code)]
    store: Arc<dyn Store>,
    engine: Option<Arc<EngineStats>>,
}

impl Metrics {
    pub fn new(store: Arc<dyn Store>, engine: Option<Arc<EngineStats>>) -> Metrics {
        Metrics { store, engine }
    }

    pub async fn render(&self) -> String {
        let mut out = String::new();
        if let Some(e) = &self.engine {
            out.push_str(&format!(
                "# TYPE sluice_scheduler_turns counter\nsluice_scheduler_turns_total {}\n",
                e.turns()
            ));
        }
        out.push_str("# EOF\n");
        out
    }
}
