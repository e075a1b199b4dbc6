//! The operators' own keys, as typed configuration.
//!
//! Each operator is one struct with `deny_unknown_fields`; the `///` doc on every field is the
//! reference that `docs/operators.md` follows. The structs hold the keys *as written*: string
//! values may carry `{{ templates }}`, which are rendered at the start of each try and then
//! deserialized again into the same struct (see [`crate::template`]). Keys whose value is a
//! number, a boolean, a duration or a fixed choice take literals only.
//!
//! The DAG model only parses and validates these; the scheduler and the AWS operators crates
//! give them behaviour.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// Every operator Sluice knows, by the name written in `operator = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    CreateEmrCluster,
    AddSteps,
    Sensor,
    Crawler,
    Athena,
    Terminate,
    EmrServerless,
    GlueJob,
    Lambda,
    Command,
    Wait,
    Noop,
}

impl OperatorKind {
    pub const ALL: [OperatorKind; 12] = [
        OperatorKind::CreateEmrCluster,
        OperatorKind::AddSteps,
        OperatorKind::Sensor,
        OperatorKind::Crawler,
        OperatorKind::Athena,
        OperatorKind::Terminate,
        OperatorKind::EmrServerless,
        OperatorKind::GlueJob,
        OperatorKind::Lambda,
        OperatorKind::Command,
        OperatorKind::Wait,
        OperatorKind::Noop,
    ];

    /// Everything the model knows of an operator besides its keys, in one place: adding an
    /// operator is one arm here (and its struct, and its variant of [`Operator`]).
    const fn facts(self) -> Facts {
        use crate::TriggerRule::{AllDone, AllSuccess};
        use OutputShape::{List, Text};
        type Outputs = &'static [(&'static str, OutputShape)];
        let (name, outputs, resumable, default_trigger_rule): (_, Outputs, _, _) = match self {
            OperatorKind::CreateEmrCluster => ("create_emr_cluster", &[("cluster_id", Text)], false, AllSuccess),
            OperatorKind::AddSteps => ("add_steps", &[("step_ids", List)], false, AllSuccess),
            OperatorKind::Sensor => ("sensor", &[], true, AllSuccess),
            OperatorKind::Crawler => ("crawler", &[], false, AllSuccess),
            OperatorKind::Athena => {
                ("athena", &[("query_execution_id", Text), ("output_location", Text)], false, AllSuccess)
            }
            // Cost safety: a cluster is torn down whatever happened upstream.
            OperatorKind::Terminate => ("terminate", &[], false, AllDone),
            OperatorKind::EmrServerless => ("emr_serverless", &[("job_run_id", Text)], false, AllSuccess),
            OperatorKind::GlueJob => ("glue_job", &[("job_run_id", Text)], false, AllSuccess),
            // `payload` is the function's whole response (any JSON): `tasks.ID.payload.FIELD`.
            OperatorKind::Lambda => ("lambda", &[("payload", Text)], false, AllSuccess),
            OperatorKind::Command => ("command", &[("output", Text)], false, AllSuccess),
            OperatorKind::Wait => ("wait", &[], true, AllSuccess),
            OperatorKind::Noop => ("noop", &[], false, AllSuccess),
        };
        Facts { name, outputs, resumable, default_trigger_rule }
    }

    /// The name written in `operator = "..."`.
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    pub fn from_name(name: &str) -> Option<OperatorKind> {
        OperatorKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The fields this operator publishes for downstream templates as `tasks.<id>.<field>`,
    /// with the shape of each value: templates and previews (`dagctl render`) need to know a
    /// list from a string before any try has produced one.
    pub fn outputs(self) -> &'static [(&'static str, OutputShape)] {
        self.facts().outputs
    }

    /// Whether a try can be cut off at a stop and resumed as the same try on the next start
    /// (sensors and `wait` hold no work a stop could lose), so a stop does not wait for it.
    pub fn resumable(self) -> bool {
        self.facts().resumable
    }

    /// Whether this operator publishes the output `field`.
    pub fn has_output(self, field: &str) -> bool {
        self.outputs().iter().any(|(name, _)| *name == field)
    }

    /// The trigger rule a task of this operator has when it sets none.
    pub fn default_trigger_rule(self) -> crate::TriggerRule {
        self.facts().default_trigger_rule
    }
}

/// See [`OperatorKind::facts`].
struct Facts {
    name: &'static str,
    outputs: &'static [(&'static str, OutputShape)],
    resumable: bool,
    default_trigger_rule: crate::TriggerRule,
}

impl std::fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an operator's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputShape {
    /// One string (an id, a location, a command's last line).
    Text,
    /// A list of strings (the ids of several steps).
    List,
}

impl OutputShape {
    /// A value of this shape standing for an output not produced yet: `text` itself, or a
    /// list holding it.
    pub fn placeholder(self, text: String) -> serde_json::Value {
        match self {
            OutputShape::Text => text.into(),
            OutputShape::List => serde_json::Value::Array(vec![text.into()]),
        }
    }
}

/// A task's operator with its keys. The four large AWS variants are boxed: a daemon holds every
/// task of every DAG (10,000 tasks in the benchmark's `many_dags`), and an inline enum is as
/// large as its largest variant (448 bytes for `create_emr_cluster`, against 72 for `command`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operator", rename_all = "snake_case")]
pub enum Operator {
    CreateEmrCluster(Box<CreateEmrCluster>),
    AddSteps(AddSteps),
    Sensor(Sensor),
    Crawler(Box<Crawler>),
    Athena(Box<Athena>),
    Terminate(Terminate),
    EmrServerless(Box<EmrServerless>),
    GlueJob(Box<GlueJob>),
    Lambda(Box<Lambda>),
    Command(Command),
    Wait(Wait),
    Noop(Noop),
}

impl Operator {
    pub fn kind(&self) -> OperatorKind {
        match self {
            Operator::CreateEmrCluster(_) => OperatorKind::CreateEmrCluster,
            Operator::AddSteps(_) => OperatorKind::AddSteps,
            Operator::Sensor(_) => OperatorKind::Sensor,
            Operator::Crawler(_) => OperatorKind::Crawler,
            Operator::Athena(_) => OperatorKind::Athena,
            Operator::Terminate(_) => OperatorKind::Terminate,
            Operator::EmrServerless(_) => OperatorKind::EmrServerless,
            Operator::GlueJob(_) => OperatorKind::GlueJob,
            Operator::Lambda(_) => OperatorKind::Lambda,
            Operator::Command(_) => OperatorKind::Command,
            Operator::Wait(_) => OperatorKind::Wait,
            Operator::Noop(_) => OperatorKind::Noop,
        }
    }

    /// The time between two status checks, for operators that wait on remote work.
    pub fn poke_interval_mut(&mut self) -> Option<&mut Duration> {
        match self {
            Operator::CreateEmrCluster(c) => Some(&mut c.poke_interval),
            Operator::AddSteps(c) => Some(&mut c.poke_interval),
            Operator::Sensor(c) => Some(&mut c.poke_interval),
            Operator::Crawler(c) => Some(&mut c.poke_interval),
            Operator::Athena(c) => Some(&mut c.poke_interval),
            Operator::Terminate(c) => Some(&mut c.poke_interval),
            Operator::EmrServerless(c) => Some(&mut c.poke_interval),
            Operator::GlueJob(c) => Some(&mut c.poke_interval),
            Operator::Lambda(_) | Operator::Command(_) | Operator::Wait(_) | Operator::Noop(_) => None,
        }
    }

    /// Checks that serde cannot express (one of two keys, non-empty lists). Each problem is
    /// returned with the key it concerns.
    pub fn check(&self) -> Vec<(Option<&'static str>, String)> {
        let mut problems = Vec::new();
        match self {
            Operator::CreateEmrCluster(c) => c.check(&mut problems),
            Operator::AddSteps(a) => {
                if a.steps.is_empty() {
                    problems.push((Some("steps"), "`steps` must list at least one step".into()));
                }
                for s in &a.steps {
                    if s.args.is_empty() && s.main_class.is_none() {
                        problems.push((
                            Some("steps"),
                            format!("step {} has no `args`", crate::diagnostic::quoted(&s.name)),
                        ));
                    }
                }
            }
            Operator::Crawler(c) => {
                let given = [c.role.is_some(), c.database.is_some(), !c.s3_targets.is_empty()];
                if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
                    problems.push((
                        None,
                        "to create or update the crawler give all of `role`, `database` and \
                         `s3_targets` (or none of them to start an existing crawler)"
                            .into(),
                    ));
                }
            }
            Operator::Athena(a) => match (&a.query, &a.query_file) {
                (Some(_), Some(_)) => {
                    problems.push((Some("query_file"), "give either `query` or `query_file`, not both".into()))
                }
                (None, None) => problems.push((None, "missing key `query` (or `query_file`)".into())),
                _ => {}
            },
            Operator::Sensor(s) => {
                if let SensorKind::EmrCluster(EmrClusterSensor { target_states, .. }) = &s.kind {
                    if target_states.is_empty() {
                        problems.push((Some("target_states"), "`target_states` must name at least one state".into()));
                    }
                }
            }
            Operator::GlueJob(g) => {
                if g.number_of_workers == Some(0) {
                    problems.push((Some("number_of_workers"), "`number_of_workers` must be at least 1".into()));
                }
            }
            Operator::Terminate(_)
            | Operator::EmrServerless(_)
            | Operator::Lambda(_)
            | Operator::Command(_)
            | Operator::Wait(_)
            | Operator::Noop(_) => {}
        }
        problems
    }
}

fn default_poke_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_sensor_poke_interval() -> Duration {
    Duration::from_secs(60)
}

fn yes() -> bool {
    true
}

/// `create_emr_cluster`: RunJobFlow, then wait until the cluster is WAITING or RUNNING.
/// Output: `cluster_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEmrCluster {
    /// Cluster name shown in the EMR console, e.g. `"car-rental-{{ ds }}"`.
    pub name: String,
    /// EMR release, e.g. `"emr-7.2.0"`.
    pub release_label: String,
    /// Applications to install, e.g. `["Spark"]`.
    pub applications: Vec<String>,
    /// Instance type of every node in the simple form (with `instance_count`).
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Number of nodes in the simple form: one primary and `instance_count - 1` core nodes.
    #[serde(default)]
    pub instance_count: Option<u32>,
    /// Instance groups (uniform instance groups), instead of the simple form.
    #[serde(default)]
    pub instance_groups: Option<Vec<InstanceGroup>>,
    /// Instance fleets, instead of the simple form or instance groups.
    #[serde(default)]
    pub instance_fleets: Option<Vec<InstanceFleet>>,
    /// S3 prefix for the cluster's logs.
    #[serde(default)]
    pub log_uri: Option<String>,
    /// The EMR service role.
    #[serde(default = "default_service_role")]
    pub service_role: String,
    /// The EC2 instance profile of the nodes.
    #[serde(default = "default_job_flow_role")]
    pub job_flow_role: String,
    /// Extra tags. Sluice always adds `sluice:dag`, `sluice:run` and `sluice:task`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Application configurations (classification + properties), e.g. `spark-defaults`.
    #[serde(default)]
    pub configurations: Vec<EmrConfiguration>,
    /// Bootstrap actions run on every node before applications start.
    #[serde(default)]
    pub bootstrap_actions: Vec<BootstrapAction>,
    /// Name of an EMR security configuration.
    #[serde(default)]
    pub security_configuration: Option<String>,
    /// Auto-termination policy: terminate the cluster after this much idle time.
    #[serde(default)]
    pub auto_termination_idle_timeout: Option<Duration>,
    /// VPC subnet to launch into.
    #[serde(default)]
    pub ec2_subnet_id: Option<String>,
    /// EC2 key pair for SSH to the nodes.
    #[serde(default)]
    pub ec2_key_name: Option<String>,
    /// Keep the cluster alive when it has no steps (needed to add steps later).
    #[serde(default = "yes")]
    pub keep_alive: bool,
    /// Whether the cluster is visible to every IAM user of the account.
    #[serde(default = "yes")]
    pub visible_to_all_users: bool,
    /// How many steps may run at once on the cluster.
    #[serde(default)]
    pub step_concurrency_level: Option<u32>,
    /// Size in GiB of each node's EBS root volume.
    #[serde(default)]
    pub ebs_root_volume_size: Option<u32>,
    /// A custom AMI for the nodes.
    #[serde(default)]
    pub custom_ami_id: Option<String>,
    /// Time between two status checks while waiting.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

fn default_service_role() -> String {
    "EMR_DefaultRole".into()
}

fn default_job_flow_role() -> String {
    "EMR_EC2_DefaultRole".into()
}

impl CreateEmrCluster {
    fn check(&self, problems: &mut Vec<(Option<&'static str>, String)>) {
        let simple = self.instance_type.is_some() || self.instance_count.is_some();
        let forms = [simple, self.instance_groups.is_some(), self.instance_fleets.is_some()];
        match forms.iter().filter(|f| **f).count() {
            0 => problems.push((
                None,
                "missing key `instance_type` + `instance_count` (or `instance_groups`, or \
                 `instance_fleets`)"
                    .into(),
            )),
            1 => {}
            _ => problems.push((
                None,
                "give only one of `instance_type` + `instance_count`, `instance_groups` and \
                 `instance_fleets`"
                    .into(),
            )),
        }
        if simple {
            if self.instance_type.is_none() {
                problems.push((Some("instance_count"), "`instance_count` needs `instance_type`".into()));
            }
            match self.instance_count {
                None => problems.push((Some("instance_type"), "`instance_type` needs `instance_count`".into())),
                Some(0) => problems.push((Some("instance_count"), "`instance_count` must be at least 1".into())),
                Some(_) => {}
            }
        }
        if self.applications.is_empty() {
            problems.push((Some("applications"), "`applications` must name at least one application".into()));
        }
        if let Some(groups) = &self.instance_groups {
            let primaries = groups.iter().filter(|g| g.role == InstanceRole::Master).count();
            if primaries != 1 {
                problems.push((
                    Some("instance_groups"),
                    format!("`instance_groups` needs exactly one group with role = \"MASTER\", found {primaries}"),
                ));
            }
        }
        if let Some(fleets) = &self.instance_fleets {
            let primaries = fleets.iter().filter(|g| g.role == InstanceRole::Master).count();
            if primaries != 1 {
                problems.push((
                    Some("instance_fleets"),
                    format!("`instance_fleets` needs exactly one fleet with role = \"MASTER\", found {primaries}"),
                ));
            }
        }
    }
}

/// The role of an instance group or fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InstanceRole {
    #[serde(alias = "master", alias = "primary", alias = "PRIMARY")]
    Master,
    #[serde(alias = "core")]
    Core,
    #[serde(alias = "task")]
    Task,
}

/// How instances are bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Market {
    #[default]
    #[serde(alias = "on_demand")]
    OnDemand,
    #[serde(alias = "spot")]
    Spot,
}

/// One uniform instance group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceGroup {
    /// Display name of the group.
    #[serde(default)]
    pub name: Option<String>,
    /// `MASTER`, `CORE` or `TASK`.
    pub role: InstanceRole,
    /// EC2 instance type, e.g. `"m5.xlarge"`.
    pub instance_type: String,
    /// Number of instances.
    pub instance_count: u32,
    /// `ON_DEMAND` (default) or `SPOT`.
    #[serde(default)]
    pub market: Market,
    /// Maximum spot price in USD, for `SPOT`.
    #[serde(default)]
    pub bid_price: Option<String>,
    /// Size in GiB of one gp3 EBS data volume per instance.
    #[serde(default)]
    pub ebs_size_gb: Option<u32>,
}

/// One instance fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceFleet {
    /// Display name of the fleet.
    #[serde(default)]
    pub name: Option<String>,
    /// `MASTER`, `CORE` or `TASK`.
    pub role: InstanceRole,
    /// On-demand capacity units.
    #[serde(default)]
    pub target_on_demand_capacity: Option<u32>,
    /// Spot capacity units.
    #[serde(default)]
    pub target_spot_capacity: Option<u32>,
    /// The instance types the fleet may use.
    pub instance_types: Vec<FleetInstanceType>,
}

/// An instance type allowed in a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetInstanceType {
    /// EC2 instance type.
    pub instance_type: String,
    /// Capacity units one instance counts for.
    #[serde(default)]
    pub weighted_capacity: Option<u32>,
    /// Spot bid as a percentage of the on-demand price.
    #[serde(default)]
    pub bid_price_as_percentage_of_on_demand_price: Option<f64>,
}

/// An EMR application configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmrConfiguration {
    /// Classification, e.g. `"spark-defaults"`.
    pub classification: String,
    /// Properties of the classification.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Nested configurations.
    #[serde(default)]
    pub configurations: Vec<EmrConfiguration>,
}

/// A bootstrap action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapAction {
    /// Name of the action.
    pub name: String,
    /// S3 path of the script.
    pub path: String,
    /// Arguments of the script.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `add_steps`: AddJobFlowSteps, then wait until every step is COMPLETED. Output: `step_ids`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSteps {
    /// The cluster, usually `"{{ tasks.<create task>.cluster_id }}"`.
    pub cluster_id: String,
    /// The steps, submitted together in this order.
    pub steps: Vec<EmrStep>,
    /// Wait for the steps to finish (default); `false` returns as soon as they are submitted.
    #[serde(default = "yes")]
    pub wait_for_completion: bool,
    /// Time between two status checks while waiting.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

/// One EMR step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmrStep {
    /// Step name. Sluice appends the run and try so a step is never submitted twice.
    pub name: String,
    /// Arguments, e.g. `["spark-submit", "s3://bucket/job.py", "--date", "{{ ds }}"]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// The JAR that runs the step.
    #[serde(default = "default_jar")]
    pub jar: String,
    /// Main class, when the JAR has no manifest.
    #[serde(default)]
    pub main_class: Option<String>,
    /// `CONTINUE` (default), `CANCEL_AND_WAIT` or `TERMINATE_CLUSTER`.
    #[serde(default)]
    pub action_on_failure: ActionOnFailure,
    /// Java properties for the step.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_jar() -> String {
    "command-runner.jar".into()
}

/// What EMR does with the cluster when a step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionOnFailure {
    #[default]
    Continue,
    CancelAndWait,
    TerminateCluster,
}

/// `sensor`: wait until a condition holds. The generic `timeout` bounds the wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    /// What to wait for, with its own keys.
    #[serde(flatten)]
    pub kind: SensorKind,
    /// Time between two checks.
    #[serde(default = "default_sensor_poke_interval")]
    pub poke_interval: Duration,
    /// On timeout, end as `skipped` instead of `failed`.
    #[serde(default)]
    pub soft_fail: bool,
}

/// The keys every sensor has besides its kind's own.
pub const SENSOR_COMMON_KEYS: &[&str] = &["kind", "poke_interval", "soft_fail"];

/// What a sensor waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SensorKind {
    /// An S3 object exists. `key` may hold `*` and `?` wildcards.
    S3Key(S3KeySensor),
    /// An EMR step reached COMPLETED.
    EmrStep(EmrStepSensor),
    /// An EMR cluster reached one of `target_states`.
    EmrCluster(EmrClusterSensor),
    /// A Glue crawler is READY after a successful crawl.
    GlueCrawler(GlueCrawlerSensor),
    /// An Athena query SUCCEEDED.
    AthenaQuery(AthenaQuerySensor),
    /// An EMR Serverless job run SUCCESS.
    EmrServerlessJob(EmrServerlessJobSensor),
    /// A wall-clock time of day in the DAG's time zone, on the day the run fires.
    Time(TimeSensor),
}

impl SensorKind {
    pub const NAMES: [&'static str; 7] =
        ["s3_key", "emr_step", "emr_cluster", "glue_crawler", "athena_query", "emr_serverless_job", "time"];
}

/// Keys of `kind = "s3_key"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3KeySensor {
    /// The bucket.
    pub bucket: String,
    /// The key, or a pattern with `*` and `?` matched over a listing of its prefix.
    pub key: String,
}

/// Keys of `kind = "emr_step"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmrStepSensor {
    /// The cluster.
    pub cluster_id: String,
    /// The step.
    pub step_id: String,
}

/// Keys of `kind = "emr_cluster"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmrClusterSensor {
    /// The cluster.
    pub cluster_id: String,
    /// States that end the wait successfully.
    #[serde(default = "default_cluster_target_states")]
    pub target_states: Vec<String>,
    /// States that fail the task at once.
    #[serde(default = "default_cluster_failed_states")]
    pub failed_states: Vec<String>,
}

fn default_cluster_target_states() -> Vec<String> {
    vec!["TERMINATED".into()]
}

fn default_cluster_failed_states() -> Vec<String> {
    vec!["TERMINATED_WITH_ERRORS".into()]
}

/// Keys of `kind = "glue_crawler"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueCrawlerSensor {
    /// The crawler's name.
    pub name: String,
}

/// Keys of `kind = "athena_query"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AthenaQuerySensor {
    /// The query execution.
    pub query_execution_id: String,
}

/// Keys of `kind = "emr_serverless_job"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmrServerlessJobSensor {
    /// The EMR Serverless application.
    pub application_id: String,
    /// The job run.
    pub job_run_id: String,
}

/// Keys of `kind = "time"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSensor {
    /// Time of day, `"HH:MM"` or `"HH:MM:SS"`, in the DAG's time zone.
    pub at: crate::schedule::TimeOfDay,
}

/// `crawler`: StartCrawler and wait for READY; fails unless the crawl succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crawler {
    /// The crawler's name.
    pub name: String,
    /// IAM role of the crawler; with `database` and `s3_targets`, creates or updates it first.
    #[serde(default)]
    pub role: Option<String>,
    /// Glue database the crawler writes tables to.
    #[serde(default)]
    pub database: Option<String>,
    /// S3 paths to crawl; each folder beneath becomes a table.
    #[serde(default)]
    pub s3_targets: Vec<String>,
    /// Prefix added to the names of the tables created.
    #[serde(default)]
    pub table_prefix: Option<String>,
    /// Description of the crawler.
    #[serde(default)]
    pub description: Option<String>,
    /// Time between two status checks while waiting.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

/// `athena`: StartQueryExecution and wait for it. Outputs: `query_execution_id`,
/// `output_location` (the S3 URI of the result file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Athena {
    /// The SQL, inline.
    #[serde(default)]
    pub query: Option<String>,
    /// The SQL, from a file; a relative path is taken from the DAG file's folder. A regular
    /// file of at most 1 MiB.
    #[serde(default)]
    pub query_file: Option<String>,
    /// The database the query runs in.
    pub database: String,
    /// S3 prefix where Athena writes the results.
    pub output_location: String,
    /// The data catalog.
    #[serde(default = "default_catalog")]
    pub catalog: String,
    /// The Athena workgroup.
    #[serde(default = "default_workgroup")]
    pub workgroup: String,
    /// Time between two status checks while waiting.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

fn default_catalog() -> String {
    "AwsDataCatalog".into()
}

fn default_workgroup() -> String {
    "primary".into()
}

/// `terminate`: TerminateJobFlows and wait for TERMINATED. Trigger rule defaults to `all_done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    /// The cluster, usually `"{{ tasks.<create task>.cluster_id }}"`.
    pub cluster_id: String,
    /// Time between two status checks while waiting.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

/// `emr_serverless`: StartJobRun on an application and wait for it. Output: `job_run_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmrServerless {
    /// The EMR Serverless application.
    pub application_id: String,
    /// IAM role the job runs as.
    pub execution_role_arn: String,
    /// The script or JAR, e.g. `"s3://bucket/scripts/job.py"`.
    pub entry_point: String,
    /// Arguments passed to the entry point.
    #[serde(default)]
    pub entry_point_args: Vec<String>,
    /// spark-submit parameters, e.g. `"--conf spark.executor.cores=2"`.
    #[serde(default)]
    pub spark_submit_parameters: Option<String>,
    /// Job run name.
    #[serde(default)]
    pub name: Option<String>,
    /// S3 prefix for the job's logs.
    #[serde(default)]
    pub log_uri: Option<String>,
    /// Maximum run time, enforced by EMR Serverless.
    #[serde(default)]
    pub execution_timeout: Option<Duration>,
    /// Tags of the job run.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Time between two status checks while waiting.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

/// `glue_job`: StartJobRun of an existing Glue job and wait for it. Output: `job_run_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueJob {
    /// The Glue job (it must exist; Sluice does not create jobs).
    pub job_name: String,
    /// Arguments of this run, e.g. `{ "--day" = "{{ ds }}" }`; they override the job's default
    /// arguments of the same name.
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// Worker type of this run (`G.1X`, `G.2X`, ...). Default: the job's.
    #[serde(default)]
    pub worker_type: Option<String>,
    /// Number of workers of this run (at least 1). Default: the job's.
    #[serde(default)]
    pub number_of_workers: Option<u32>,
    /// Maximum run time, enforced by Glue (rounded up to whole minutes). Default: the job's.
    #[serde(default)]
    pub execution_timeout: Option<Duration>,
    /// Time between two status checks while waiting.
    #[serde(default = "default_poke_interval")]
    pub poke_interval: Duration,
}

/// `lambda`: Invoke a function (RequestResponse) with a JSON payload and wait for its answer.
/// Output: `payload`, the function's response (parsed JSON; text when it is not JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lambda {
    /// The function: its name, its ARN or a partial ARN.
    pub function_name: String,
    /// The event sent, as JSON (a TOML table or array); its strings are templates.
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// A version or alias of the function.
    #[serde(default)]
    pub qualifier: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// `command`: run a local command through `sh -c`. Output: `output`, its last stdout line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The shell command.
    pub command: String,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; a relative path is taken from the DAG file's folder.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// `wait`: sleep for a fixed time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// How long, e.g. `"5m"`.
    pub duration: Duration,
}

/// `noop`: do nothing (a join point, or a placeholder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Noop {}

#[cfg(test)]
mod size_tests {
    /// Boxing keeps every task small; a new large operator struct must be boxed too.
    #[test]
    fn operator_stays_small() {
        assert!(std::mem::size_of::<super::Operator>() <= 96, "{}", std::mem::size_of::<super::Operator>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_output_stands_in_as_a_list() {
        let steps = OperatorKind::AddSteps.outputs();
        assert_eq!(steps, &[("step_ids", OutputShape::List)]);
        assert_eq!(steps[0].1.placeholder("<s>".into()), serde_json::json!(["<s>"]));
        assert_eq!(OutputShape::Text.placeholder("<c>".into()), serde_json::json!("<c>"));
        assert!(OperatorKind::Athena.has_output("output_location") && !OperatorKind::Noop.has_output("output"));
    }
}

#[cfg(test)]
mod facts_tests {
    use super::OperatorKind;

    /// The names are what DAG files say and what serde reads: each one finds its kind again.
    #[test]
    fn every_kind_is_found_by_its_name_and_its_serde_name() {
        for k in OperatorKind::ALL {
            assert_eq!(OperatorKind::from_name(k.name()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::Value::String(k.name().into()));
        }
    }

    #[test]
    fn only_sensors_and_wait_are_resumed_after_a_stop() {
        let resumable: Vec<&str> = OperatorKind::ALL.into_iter().filter(|k| k.resumable()).map(|k| k.name()).collect();
        assert_eq!(resumable, ["sensor", "wait"]);
    }
}
