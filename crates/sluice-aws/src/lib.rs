//! Sluice's AWS operators, over the official aws-sdk-rust crates.
//!
//! - [`clients`]; one SDK configuration per connection (`[connections.NAME]` in
//!   `sluice.toml`, or the default chain).
//! - [`wait`]; the one waiting mechanism (poll, delay, success and failure states) with
//!   backoff on throttling and server errors.
//! - [`emr`]; create cluster, add steps, terminate, EMR sensors, leftover clean-up.
//! - [`s3`]; the `s3_key` sensor, with `*` and `?` wildcards over a prefix listing.
//! - [`glue`]; the `crawler` operator (create or update, start, wait) and its sensor, and the
//!   `glue_job` operator (StartJobRun, wait).
//! - [`lambda`]; the `lambda` operator (Invoke, RequestResponse).
//! - [`athena`]; the `athena` operator (idempotency token per try) and its sensor.
//! - [`serverless`]; the `emr_serverless` operator (client token per try) and its sensor.
//! - [`sns`]; publishing to a topic, for the SNS alert channels.
//! - [`telemetry`]; requests, throttles and errors per service, Athena bytes scanned and EMR
//!   instance hours per DAG, for `/metrics` (through `OperatorProvider::telemetry`).
//!
//! Every operator records each external id (cluster, steps, query, job run) the moment AWS
//! returns it, and re-attaches to that work after a crash or on a retry instead of submitting
//! it again; the window between request and record is closed by tags, names or idempotency
//! tokens. The scheduler reaches these operators through [`AwsOperators`], an
//! `OperatorProvider`.
//!
//! A try whose connection has no usable credentials (none found, or refused by AWS) fails at
//! once and is not retried, with one line saying what was tried and what to set ([`clients`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_dag::operators::{OperatorKind, SensorKind};
use sluice_dag::{Dag, Operator, Task};
use sluice_operator::Connection;
use sluice_operator::{OperatorProvider, Outcome, TaskError, TaskOperator, Telemetry, TryContext};
use sluice_store::{Run, Store};

pub mod athena;
pub mod clients;
pub mod emr;
pub mod glue;
pub mod lambda;
pub mod s3;
pub mod serverless;
pub mod sns;
pub mod telemetry;
pub mod wait;

pub use clients::Clients;

/// The AWS operators, as the scheduler sees them.
pub struct AwsOperators {
    clients: Arc<Clients>,
}

impl AwsOperators {
    pub fn new(connections: BTreeMap<String, Connection>) -> AwsOperators {
        AwsOperators { clients: Arc::new(Clients::new(connections)) }
    }

    /// The operators over given clients (e.g. [`Clients::with_credentials`]).
    pub fn with_clients(clients: Arc<Clients>) -> AwsOperators {
        AwsOperators { clients }
    }

    pub fn clients(&self) -> Arc<Clients> {
        self.clients.clone()
    }
}

#[async_trait::async_trait]
impl OperatorProvider for AwsOperators {
    fn build(&self, op: &Operator, _dag: &Dag, task: &Task) -> Option<Box<dyn TaskOperator>> {
        let clients = self.clients.clone();
        let connection = task.connection.clone();
        let op_kind = op.kind();
        let op: Box<dyn TaskOperator> = match op {
            Operator::CreateEmrCluster(cfg) => {
                Box::new(emr::CreateCluster { cfg: (**cfg).clone(), clients, connection })
            }
            Operator::AddSteps(cfg) => Box::new(emr::AddSteps { cfg: cfg.clone(), clients, connection }),
            Operator::Terminate(cfg) => Box::new(emr::TerminateCluster { cfg: cfg.clone(), clients, connection }),
            Operator::Crawler(cfg) => Box::new(glue::CrawlerOperator { cfg: (**cfg).clone(), clients, connection }),
            Operator::Athena(cfg) => Box::new(athena::AthenaQuery { cfg: (**cfg).clone(), clients, connection }),
            Operator::EmrServerless(cfg) => Box::new(serverless::JobRun { cfg: (**cfg).clone(), clients, connection }),
            Operator::GlueJob(cfg) => Box::new(glue::GlueJobRun { cfg: (**cfg).clone(), clients, connection }),
            Operator::Lambda(cfg) => Box::new(lambda::Invoke { cfg: (**cfg).clone(), clients, connection }),
            Operator::Sensor(s) => {
                let poke_interval = s.poke_interval.as_std();
                match &s.kind {
                    SensorKind::EmrStep(k) => Box::new(emr::StepSensor {
                        cluster_id: k.cluster_id.clone(),
                        step_id: k.step_id.clone(),
                        poke_interval,
                        clients,
                        connection,
                    }),
                    SensorKind::EmrCluster(k) => {
                        Box::new(emr::ClusterSensor { cfg: k.clone(), poke_interval, clients, connection })
                    }
                    SensorKind::S3Key(k) => Box::new(s3::KeySensor {
                        bucket: k.bucket.clone(),
                        key: k.key.clone(),
                        poke_interval,
                        clients,
                        connection,
                    }),
                    SensorKind::GlueCrawler(k) => {
                        Box::new(glue::CrawlerSensor { name: k.name.clone(), poke_interval, clients, connection })
                    }
                    SensorKind::AthenaQuery(k) => Box::new(athena::QuerySensor {
                        query_execution_id: k.query_execution_id.clone(),
                        poke_interval,
                        clients,
                        connection,
                    }),
                    SensorKind::EmrServerlessJob(k) => {
                        Box::new(serverless::JobRunSensor { cfg: k.clone(), poke_interval, clients, connection })
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        let region = !matches!(op_kind, OperatorKind::Sensor);
        Some(Box::new(OnConnection { op, clients: self.clients.clone(), connection: task.connection.clone(), region }))
    }

    async fn run_finished(&self, dag: &Dag, run: &Run, store: &dyn Store) {
        emr::terminate_run_clusters(&self.clients, dag, run, store).await;
    }

    fn telemetry(&self) -> Option<Arc<Telemetry>> {
        Some(self.clients.telemetry().clone())
    }
}

/// An operator as one user of its connection ([`clients::scoped`]): credential errors name the
/// connection, and credentials AWS rejected are looked up afresh. An operator's (not a
/// sensor's) try first records the connection's `region` ([`clients::record_region`]).
struct OnConnection {
    op: Box<dyn TaskOperator>,
    clients: Arc<Clients>,
    connection: Option<String>,
    region: bool,
}

#[async_trait::async_trait]
impl TaskOperator for OnConnection {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let connection = self.connection.as_deref();
        clients::scoped(&self.clients, connection, async {
            if self.region {
                clients::record_region(&self.clients, connection, ctx).await?;
            }
            self.op.run(ctx).await
        })
        .await
    }

    fn can_resume(&self, recorded: &Map<String, Value>) -> bool {
        self.op.can_resume(recorded)
    }

    async fn cancel(&self, ctx: &TryContext) {
        clients::scoped(&self.clients, self.connection.as_deref(), self.op.cancel(ctx)).await
    }
}
