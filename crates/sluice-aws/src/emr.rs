//! EMR: create a cluster, add steps, terminate, sense steps and clusters, clean up.
//!
//! Never the same cluster or step twice:
//! - a cluster is tagged with the DAG, run and task that create it (`sluice:dag`, `sluice:run`,
//!   `sluice:task`), and its id is recorded the moment RunJobFlow answers. A try that starts
//!   (fresh, retried or after a crash) first looks for a live cluster with those tags and
//!   re-attaches to it; only when there is none is a cluster created.
//! - a step's name carries the run and the try (`name [sluice <run_id> try <n>]`), and its id
//!   is recorded the moment AddJobFlowSteps answers. A try that starts first re-attaches to an
//!   earlier try's steps that are still running or completed, then looks on the cluster for
//!   steps carrying its own name (a crash between the request and the record); only steps
//!   that failed are submitted again.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_emr::types::{
    ActionOnFailure as SdkActionOnFailure, Application, AutoTerminationPolicy, BootstrapActionConfig, ClusterState,
    Configuration, EbsBlockDeviceConfig, EbsConfiguration, HadoopJarStepConfig, InstanceFleetConfig, InstanceFleetType,
    InstanceGroupConfig, InstanceRoleType, InstanceTypeConfig, JobFlowInstancesConfig, KeyValue, MarketType,
    ScriptBootstrapActionConfig, StepConfig, StepState, Tag, VolumeSpecification,
};
use serde_json::{json, Map, Value};
use sluice_dag::operators::{self as ops, ActionOnFailure, InstanceRole, Market};
use sluice_operator::{Outcome, TaskError, TaskOperator, Telemetry, TryContext};
use sluice_store::{EventKind, NewEvent, Run, RunFilter, Store};

use crate::clients::Clients;
use crate::telemetry::EMR_NORMALIZED_INSTANCE_HOURS;
use crate::wait::{aws_error, call, AwsError, Poll, Waiter};

pub const TAG_DAG: &str = "sluice:dag";
pub const TAG_RUN: &str = "sluice:run";
pub const TAG_TASK: &str = "sluice:task";

const LIVE: [ClusterState; 4] =
    [ClusterState::Starting, ClusterState::Bootstrapping, ClusterState::Running, ClusterState::Waiting];

/// `create_emr_cluster`.
pub struct CreateCluster {
    pub cfg: ops::CreateEmrCluster,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

impl CreateCluster {
    /// A live cluster this run's task created before (an earlier try, or a request whose
    /// answer was lost in a crash).
    async fn find_tagged(&self, emr: &aws_sdk_emr::Client, ctx: &TryContext) -> Result<Option<String>, AwsError> {
        let mut pages = emr.list_clusters().set_cluster_states(Some(LIVE.to_vec())).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ListClusters", e))?;
            for c in page.clusters() {
                if c.name() != Some(self.cfg.name.as_str()) {
                    continue;
                }
                let Some(id) = c.id() else { continue };
                let d =
                    emr.describe_cluster().cluster_id(id).send().await.map_err(|e| aws_error("DescribeCluster", e))?;
                let tags = d.cluster().map(|c| c.tags()).unwrap_or_default();
                let has = |k: &str, v: &str| tags.iter().any(|t| t.key() == Some(k) && t.value() == Some(v));
                if has(TAG_DAG, &ctx.dag_id) && has(TAG_RUN, &ctx.run_id) && has(TAG_TASK, &ctx.task_id) {
                    return Ok(Some(id.to_string()));
                }
            }
        }
        Ok(None)
    }

    fn request(
        &self,
        emr: &aws_sdk_emr::Client,
        ctx: &TryContext,
    ) -> Result<aws_sdk_emr::operation::run_job_flow::builders::RunJobFlowFluentBuilder, TaskError> {
        let c = &self.cfg;
        let mut instances = JobFlowInstancesConfig::builder().keep_job_flow_alive_when_no_steps(c.keep_alive);
        if let (Some(t), Some(n)) = (&c.instance_type, c.instance_count) {
            instances = instances.master_instance_type(t).slave_instance_type(t).instance_count(n as i32);
        }
        if let Some(groups) = &c.instance_groups {
            for g in groups {
                let mut b = InstanceGroupConfig::builder()
                    .instance_role(role(g.role))
                    .instance_type(&g.instance_type)
                    .instance_count(g.instance_count as i32)
                    .market(match g.market {
                        Market::OnDemand => MarketType::OnDemand,
                        Market::Spot => MarketType::Spot,
                    })
                    .set_name(g.name.clone())
                    .set_bid_price(g.bid_price.clone());
                if let Some(gb) = g.ebs_size_gb {
                    let vol = VolumeSpecification::builder().volume_type("gp3").size_in_gb(gb as i32).build();
                    b = b.ebs_configuration(
                        EbsConfiguration::builder()
                            .ebs_block_device_configs(EbsBlockDeviceConfig::builder().volume_specification(vol).build())
                            .build(),
                    );
                }
                instances = instances.instance_groups(b.build());
            }
        }
        if let Some(fleets) = &c.instance_fleets {
            for f in fleets {
                let mut b = InstanceFleetConfig::builder()
                    .instance_fleet_type(match f.role {
                        InstanceRole::Master => InstanceFleetType::Master,
                        InstanceRole::Core => InstanceFleetType::Core,
                        InstanceRole::Task => InstanceFleetType::Task,
                    })
                    .set_name(f.name.clone())
                    .set_target_on_demand_capacity(f.target_on_demand_capacity.map(|n| n as i32))
                    .set_target_spot_capacity(f.target_spot_capacity.map(|n| n as i32));
                for t in &f.instance_types {
                    b = b.instance_type_configs(
                        InstanceTypeConfig::builder()
                            .instance_type(&t.instance_type)
                            .set_weighted_capacity(t.weighted_capacity.map(|n| n as i32))
                            .set_bid_price_as_percentage_of_on_demand_price(
                                t.bid_price_as_percentage_of_on_demand_price,
                            )
                            .build(),
                    );
                }
                instances = instances.instance_fleets(b.build());
            }
        }
        instances = instances.set_ec2_subnet_id(c.ec2_subnet_id.clone()).set_ec2_key_name(c.ec2_key_name.clone());
        let mut tags: Vec<Tag> = c.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        for (k, v) in [(TAG_DAG, &ctx.dag_id), (TAG_RUN, &ctx.run_id), (TAG_TASK, &ctx.task_id)] {
            tags.push(Tag::builder().key(k).value(v.as_str()).build());
        }
        let mut req = emr
            .run_job_flow()
            .name(&c.name)
            .release_label(&c.release_label)
            .set_applications(Some(c.applications.iter().map(|a| Application::builder().name(a).build()).collect()))
            .instances(instances.build())
            .service_role(&c.service_role)
            .job_flow_role(&c.job_flow_role)
            .visible_to_all_users(c.visible_to_all_users)
            .set_log_uri(c.log_uri.clone())
            .set_tags(Some(tags))
            .set_security_configuration(c.security_configuration.clone())
            .set_step_concurrency_level(c.step_concurrency_level.map(|n| n as i32))
            .set_ebs_root_volume_size(c.ebs_root_volume_size.map(|n| n as i32))
            .set_custom_ami_id(c.custom_ami_id.clone());
        for conf in &c.configurations {
            req = req.configurations(configuration(conf));
        }
        for b in &c.bootstrap_actions {
            let script = ScriptBootstrapActionConfig::builder().path(&b.path).set_args(Some(b.args.clone())).build();
            req = req.bootstrap_actions(
                BootstrapActionConfig::builder().name(&b.name).script_bootstrap_action(script).build(),
            );
        }
        if let Some(idle) = c.auto_termination_idle_timeout {
            req = req.auto_termination_policy(
                AutoTerminationPolicy::builder().idle_timeout(idle.as_std().as_secs() as i64).build(),
            );
        }
        Ok(req)
    }
}

fn role(r: InstanceRole) -> InstanceRoleType {
    match r {
        InstanceRole::Master => InstanceRoleType::Master,
        InstanceRole::Core => InstanceRoleType::Core,
        InstanceRole::Task => InstanceRoleType::Task,
    }
}

fn configuration(c: &ops::EmrConfiguration) -> Configuration {
    Configuration::builder()
        .classification(&c.classification)
        .set_properties(Some(c.properties.clone().into_iter().collect()))
        .set_configurations(Some(c.configurations.iter().map(configuration).collect()))
        .build()
}

/// Counts a cluster's normalized instance hours for the DAG that created it (its `sluice:dag`
/// tag) once it is seen terminated; a cluster is counted once, a cluster Sluice did not create
/// never.
fn count_hours(telemetry: &Telemetry, cluster: Option<&aws_sdk_emr::types::Cluster>) {
    let Some(c) = cluster else { return };
    let state = c.status().and_then(|s| s.state());
    if !matches!(state, Some(ClusterState::Terminated | ClusterState::TerminatedWithErrors)) {
        return;
    }
    let dag = c.tags().iter().find(|t| t.key() == Some(TAG_DAG)).and_then(|t| t.value());
    if let (Some(id), Some(dag), Some(hours)) = (c.id(), dag, c.normalized_instance_hours()) {
        telemetry.add_usage(EMR_NORMALIZED_INSTANCE_HOURS, id, dag, u64::try_from(hours).unwrap_or(0));
    }
}

/// Waits until a cluster is up (WAITING or RUNNING); fails if it ends instead.
async fn wait_cluster_up(
    emr: &aws_sdk_emr::Client,
    ctx: &TryContext,
    id: &str,
    delay: Duration,
    telemetry: &Telemetry,
) -> Result<(), TaskError> {
    Waiter::new(format!("cluster {id} to be WAITING or RUNNING"), delay)
        .wait(ctx, || async {
            let d = emr.describe_cluster().cluster_id(id).send().await.map_err(|e| aws_error("DescribeCluster", e))?;
            count_hours(telemetry, d.cluster());
            let status = d.cluster().and_then(|c| c.status());
            let state = status.and_then(|s| s.state()).cloned().unwrap_or(ClusterState::Starting);
            Ok(match state {
                ClusterState::Waiting | ClusterState::Running => Poll::Ready(()),
                ClusterState::Terminating | ClusterState::Terminated | ClusterState::TerminatedWithErrors => {
                    let why = status
                        .and_then(|s| s.state_change_reason())
                        .and_then(|r| r.message())
                        .unwrap_or("no reason given");
                    Poll::Failed(format!("cluster {id} is {} before it came up: {why}", state.as_str()))
                }
                other => Poll::Pending(other.as_str().to_string()),
            })
        })
        .await
}

#[async_trait::async_trait]
impl TaskOperator for CreateCluster {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let emr = self.clients.emr(self.connection.as_deref()).await?;
        let id = match ctx.resumed("cluster_id").and_then(Value::as_str) {
            Some(id) => {
                ctx.log.line(&format!("[aws] re-attaching to cluster {id}"));
                id.to_string()
            }
            None => match call(ctx, || self.find_tagged(&emr, ctx)).await? {
                Some(id) => {
                    ctx.log.line(&format!("[aws] found cluster {id} this task created before; re-attaching"));
                    ctx.record("cluster_id", json!(id)).await?;
                    id
                }
                None => {
                    let req = self.request(&emr, ctx)?;
                    let out = req.send().await.map_err(|e| aws_error("RunJobFlow", e))?;
                    let id = out
                        .job_flow_id()
                        .ok_or_else(|| TaskError::retryable("RunJobFlow returned no cluster id"))?
                        .to_string();
                    ctx.record("cluster_id", json!(id)).await?;
                    ctx.log.line(&format!("[aws] created cluster {id}"));
                    id
                }
            },
        };
        wait_cluster_up(&emr, ctx, &id, self.cfg.poke_interval.as_std(), self.clients.telemetry()).await?;
        Ok(Outcome::Success(Map::from_iter([("cluster_id".to_string(), json!(id))])))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }

    /// Timed out while the cluster was coming up: it is terminated.
    async fn cancel(&self, ctx: &TryContext) {
        if let Some(id) = ctx.recorded().await.get("cluster_id").and_then(Value::as_str) {
            if let Ok(emr) = self.clients.emr(self.connection.as_deref()).await {
                let done = emr.terminate_job_flows().job_flow_ids(id).send().await;
                ctx.log.line(&format!(
                    "[aws] terminating cluster {id}: {}",
                    if done.is_ok() { "requested" } else { "failed" }
                ));
            }
        }
    }
}

/// `add_steps`.
pub struct AddSteps {
    pub cfg: ops::AddSteps,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

/// The name a step is submitted under in one try.
pub fn step_name(name: &str, run_id: &str, try_number: u32) -> String {
    format!("{name} [sluice {run_id} try {try_number}]")
}

/// The states of the given steps on a cluster, by id.
async fn step_states(
    emr: &aws_sdk_emr::Client,
    cluster: &str,
) -> Result<Vec<(String, String, StepState, Option<String>)>, AwsError> {
    let mut out = Vec::new();
    let mut pages = emr.list_steps().cluster_id(cluster).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ListSteps", e))?;
        for s in page.steps() {
            let status = s.status();
            let state = status.and_then(|st| st.state()).cloned().unwrap_or(StepState::Pending);
            let why = status
                .and_then(|st| st.failure_details())
                .map(|f| [f.reason(), f.message()].into_iter().flatten().collect::<Vec<_>>().join(": "));
            out.push((s.id().unwrap_or_default().to_string(), s.name().unwrap_or_default().to_string(), state, why));
        }
    }
    Ok(out)
}

fn ids_of(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn is_failed(s: &StepState) -> bool {
    matches!(s, StepState::Failed | StepState::Cancelled | StepState::Interrupted | StepState::CancelPending)
}

impl AddSteps {
    fn step_config(&self, s: &ops::EmrStep, name: String) -> Result<StepConfig, TaskError> {
        let jar = HadoopJarStepConfig::builder()
            .jar(&s.jar)
            .set_main_class(s.main_class.clone())
            .set_args(Some(s.args.clone()))
            .set_properties(Some(
                s.properties.iter().map(|(k, v)| KeyValue::builder().key(k).value(v).build()).collect(),
            ))
            .build();
        Ok(StepConfig::builder()
            .name(name)
            .action_on_failure(match s.action_on_failure {
                ActionOnFailure::Continue => SdkActionOnFailure::Continue,
                ActionOnFailure::CancelAndWait => SdkActionOnFailure::CancelAndWait,
                ActionOnFailure::TerminateCluster => SdkActionOnFailure::TerminateCluster,
            })
            .hadoop_jar_step(jar)
            .build())
    }

    /// Steps to wait for instead of submitting: this try's (recorded before a restart, or
    /// found by name), else an earlier try's if none of them failed.
    async fn existing(&self, emr: &aws_sdk_emr::Client, ctx: &TryContext) -> Result<Option<Vec<String>>, TaskError> {
        let recorded = ids_of(ctx.resumed("step_ids"));
        if !recorded.is_empty() {
            ctx.log.line("[aws] re-attaching to this try's steps");
            return Ok(Some(recorded));
        }
        let on_cluster = call(ctx, || step_states(emr, &self.cfg.cluster_id)).await?;
        let mine: Vec<String> = self
            .cfg
            .steps
            .iter()
            .filter_map(|s| {
                let name = step_name(&s.name, &ctx.run_id, ctx.try_number);
                on_cluster.iter().find(|(_, n, _, _)| *n == name).map(|(id, _, _, _)| id.clone())
            })
            .collect();
        if !mine.is_empty() {
            ctx.log.line("[aws] found this try's steps on the cluster; re-attaching");
            ctx.record("step_ids", json!(mine)).await?;
            return Ok(Some(mine));
        }
        for earlier in ctx.earlier_tries().await?.iter().rev() {
            // A try that ended well was followed by a clear: the task is meant to run again.
            if matches!(earlier.state, sluice_store::TaskState::Success | sluice_store::TaskState::Skipped) {
                break;
            }
            let ids = ids_of(earlier.external_ids.get("step_ids"));
            if ids.is_empty()
                || earlier.external_ids.get("cluster_id").and_then(Value::as_str) != Some(self.cfg.cluster_id.as_str())
            {
                continue;
            }
            let states: Vec<_> = on_cluster.iter().filter(|(id, ..)| ids.contains(id)).collect();
            if states.len() == ids.len() && !states.iter().any(|(_, _, s, _)| is_failed(s)) {
                ctx.log
                    .line(&format!("[aws] try {}'s steps are still running or done; re-attaching", earlier.try_number));
                ctx.record("step_ids", json!(ids)).await?;
                return Ok(Some(ids));
            }
            break;
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl TaskOperator for AddSteps {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let emr = self.clients.emr(self.connection.as_deref()).await?;
        ctx.record("cluster_id", json!(self.cfg.cluster_id)).await?;
        let ids = match self.existing(&emr, ctx).await? {
            Some(ids) => ids,
            None => {
                let steps = self
                    .cfg
                    .steps
                    .iter()
                    .map(|s| self.step_config(s, step_name(&s.name, &ctx.run_id, ctx.try_number)))
                    .collect::<Result<Vec<_>, _>>()?;
                let out = emr
                    .add_job_flow_steps()
                    .job_flow_id(&self.cfg.cluster_id)
                    .set_steps(Some(steps))
                    .send()
                    .await
                    .map_err(|e| aws_error("AddJobFlowSteps", e))?;
                let ids: Vec<String> = out.step_ids().to_vec();
                ctx.record("step_ids", json!(ids)).await?;
                ctx.log.line(&format!("[aws] submitted steps {}", ids.join(", ")));
                ids
            }
        };
        let outputs = Map::from_iter([("step_ids".to_string(), json!(ids))]);
        if !self.cfg.wait_for_completion {
            return Ok(Outcome::Success(outputs));
        }
        let cluster = self.cfg.cluster_id.clone();
        Waiter::new(format!("steps {} on {cluster}", ids.join(", ")), self.cfg.poke_interval.as_std())
            .wait(ctx, || async {
                let all = step_states(&emr, &cluster).await?;
                let mine: Vec<_> = all.iter().filter(|(id, ..)| ids.contains(id)).collect();
                if mine.len() < ids.len() {
                    return Ok(Poll::Failed(format!("steps {} are not on cluster {cluster}", ids.join(", "))));
                }
                if let Some((id, name, state, why)) = mine.iter().find(|(_, _, s, _)| is_failed(s)) {
                    return Ok(Poll::Failed(format!(
                        "step `{name}` ({id}) {}: {}",
                        state.as_str(),
                        why.as_deref().unwrap_or("no reason given")
                    )));
                }
                if mine.iter().all(|(_, _, s, _)| *s == StepState::Completed) {
                    return Ok(Poll::Ready(()));
                }
                let summary: Vec<String> = mine.iter().map(|(_, n, s, _)| format!("{n}: {}", s.as_str())).collect();
                Ok(Poll::Pending(summary.join(", ")))
            })
            .await?;
        Ok(Outcome::Success(outputs))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }

    /// Timed out: the steps still pending or running are cancelled.
    async fn cancel(&self, ctx: &TryContext) {
        let ids = ids_of(ctx.recorded().await.get("step_ids"));
        if ids.is_empty() {
            return;
        }
        if let Ok(emr) = self.clients.emr(self.connection.as_deref()).await {
            let r = emr.cancel_steps().cluster_id(&self.cfg.cluster_id).set_step_ids(Some(ids.clone())).send().await;
            ctx.log.line(&format!(
                "[aws] cancelling steps {}: {}",
                ids.join(", "),
                match r {
                    Ok(_) => "requested".to_string(),
                    Err(e) => aws_error("CancelSteps", e).message,
                }
            ));
        }
    }
}

/// `terminate`.
pub struct TerminateCluster {
    pub cfg: ops::Terminate,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

/// Requests termination (idempotent) and waits for TERMINATED.
async fn terminate(
    emr: &aws_sdk_emr::Client,
    ctx: &TryContext,
    id: &str,
    delay: Duration,
    telemetry: &Telemetry,
) -> Result<(), TaskError> {
    call(ctx, || async {
        emr.terminate_job_flows().job_flow_ids(id).send().await.map_err(|e| aws_error("TerminateJobFlows", e))
    })
    .await?;
    ctx.log.line(&format!("[aws] termination of {id} requested"));
    Waiter::new(format!("cluster {id} to be TERMINATED"), delay)
        .wait(ctx, || async {
            let d = emr.describe_cluster().cluster_id(id).send().await.map_err(|e| aws_error("DescribeCluster", e))?;
            count_hours(telemetry, d.cluster());
            let state = d.cluster().and_then(|c| c.status()).and_then(|s| s.state()).cloned();
            Ok(match state {
                Some(ClusterState::Terminated | ClusterState::TerminatedWithErrors) => Poll::Ready(()),
                Some(s) => Poll::Pending(s.as_str().to_string()),
                None => Poll::Pending("unknown".into()),
            })
        })
        .await
}

#[async_trait::async_trait]
impl TaskOperator for TerminateCluster {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let emr = self.clients.emr(self.connection.as_deref()).await?;
        terminate(&emr, ctx, &self.cfg.cluster_id, self.cfg.poke_interval.as_std(), self.clients.telemetry()).await?;
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}

/// `sensor` of kind `emr_step`: the step COMPLETED; FAILED, CANCELLED or INTERRUPTED fail.
pub struct StepSensor {
    pub cluster_id: String,
    pub step_id: String,
    pub poke_interval: Duration,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

#[async_trait::async_trait]
impl TaskOperator for StepSensor {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let emr = self.clients.emr(self.connection.as_deref()).await?;
        let (cluster, step) = (self.cluster_id.as_str(), self.step_id.as_str());
        Waiter::new(format!("step {step} on {cluster}"), self.poke_interval)
            .wait(ctx, || async {
                let all = step_states(&emr, cluster).await?;
                let Some((_, name, state, why)) = all.iter().find(|(id, ..)| id == step) else {
                    return Ok(Poll::Failed(format!("step {step} is not on cluster {cluster}")));
                };
                Ok(match state {
                    StepState::Completed => Poll::Ready(()),
                    s if is_failed(s) => Poll::Failed(format!(
                        "step `{name}` ({step}) {}: {}",
                        s.as_str(),
                        why.as_deref().unwrap_or("no reason given")
                    )),
                    s => Poll::Pending(s.as_str().to_string()),
                })
            })
            .await?;
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}

/// `sensor` of kind `emr_cluster`: the cluster reached one of `target_states`.
pub struct ClusterSensor {
    pub cfg: ops::EmrClusterSensor,
    pub poke_interval: Duration,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

#[async_trait::async_trait]
impl TaskOperator for ClusterSensor {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let emr = self.clients.emr(self.connection.as_deref()).await?;
        let id = self.cfg.cluster_id.as_str();
        Waiter::new(format!("cluster {id} to be {}", self.cfg.target_states.join(" or ")), self.poke_interval)
            .wait(ctx, || async {
                let d =
                    emr.describe_cluster().cluster_id(id).send().await.map_err(|e| aws_error("DescribeCluster", e))?;
                count_hours(self.clients.telemetry(), d.cluster());
                let state =
                    d.cluster().and_then(|c| c.status()).and_then(|s| s.state()).map(|s| s.as_str().to_string());
                let state = state.unwrap_or_default();
                Ok(if self.cfg.target_states.iter().any(|t| t.eq_ignore_ascii_case(&state)) {
                    Poll::Ready(())
                } else if self.cfg.failed_states.iter().any(|t| t.eq_ignore_ascii_case(&state)) {
                    Poll::Failed(format!("cluster {id} is {state}"))
                } else {
                    Poll::Pending(state)
                })
            })
            .await?;
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}

/// A cluster Sluice created, as its tags tell.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SluiceCluster {
    pub id: String,
    pub name: String,
    pub state: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
}

/// Every cluster Sluice created that EMR still lists (live ones, and with `all`, ended ones).
pub async fn list_clusters(emr: &aws_sdk_emr::Client, all: bool) -> Result<Vec<SluiceCluster>, AwsError> {
    let mut req = emr.list_clusters();
    if !all {
        req = req.set_cluster_states(Some(LIVE.to_vec()));
    }
    let mut out = Vec::new();
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ListClusters", e))?;
        for c in page.clusters() {
            let Some(id) = c.id() else { continue };
            let d = emr.describe_cluster().cluster_id(id).send().await.map_err(|e| aws_error("DescribeCluster", e))?;
            let Some(cluster) = d.cluster() else { continue };
            let tag = |k: &str| {
                cluster.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string)
            };
            let (Some(dag_id), Some(run_id), Some(task_id)) = (tag(TAG_DAG), tag(TAG_RUN), tag(TAG_TASK)) else {
                continue;
            };
            out.push(SluiceCluster {
                id: id.to_string(),
                name: c.name().unwrap_or_default().to_string(),
                state: c.status().and_then(|s| s.state()).map(|s| s.as_str().to_string()).unwrap_or_default(),
                dag_id,
                run_id,
                task_id,
            });
        }
    }
    Ok(out)
}

/// What [`terminate_finished`] did.
#[derive(Debug)]
pub enum Janitor {
    /// No run of this store ever asked for a cluster: AWS was not called.
    NothingRequested,
    /// The clusters it terminated (perhaps none).
    Terminated(Vec<SluiceCluster>),
}

/// Whether a run of this store ever asked EMR for a cluster. Sluice creates clusters only in
/// the tries of `create_emr_cluster` tasks, and a try's row exists before its request is sent:
/// so a store without such a try (of a task of `dags`, or of the last version of a DAG the
/// store recorded) and without a recorded `cluster_id` has no cluster to clean up after.
/// DAGs with `create_emr_cluster` tasks are looked at first, their newest runs first.
pub async fn clusters_requested(store: &dyn Store, dags: &[sluice_dag::Dag]) -> Result<bool, String> {
    let creates = |dag: &sluice_dag::Dag| -> Vec<String> {
        dag.tasks
            .iter()
            .filter(|t| matches!(t.operator, sluice_dag::Operator::CreateEmrCluster(_)))
            .map(|t| t.id.clone())
            .collect()
    };
    let mut tasks: std::collections::BTreeMap<String, Vec<String>> =
        dags.iter().map(|d| (d.id.clone(), creates(d))).collect();
    for row in store.dags().await.map_err(|e| e.to_string())? {
        let recorded = store.dag_source(&row.dag_id).await.map_err(|e| e.to_string())?;
        let dag = recorded.and_then(|(file, source)| sluice_dag::parse_dag(std::path::Path::new(&file), &source).dag);
        let entry = tasks.entry(row.dag_id).or_default();
        for id in dag.as_ref().map(creates).unwrap_or_default() {
            if !entry.contains(&id) {
                entry.push(id);
            }
        }
    }
    let mut order: Vec<(&String, &Vec<String>)> = tasks.iter().collect();
    order.sort_by_key(|(_, creates)| creates.is_empty());
    for (dag_id, creates) in order {
        let filter = RunFilter { dag_id: Some(dag_id.clone()), ..Default::default() };
        for run in store.runs(&filter).await.map_err(|e| e.to_string())? {
            let tries = store.tries(run.id, None).await.map_err(|e| e.to_string())?;
            if tries.iter().any(|t| creates.contains(&t.task_id) || t.external_ids.contains_key("cluster_id")) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Terminates the live clusters Sluice created whose run is finished (or unknown to this
/// store), through connection `connection`; when no run of this store ever asked for a cluster
/// ([`clusters_requested`]), does nothing and calls no AWS API (so it needs no credentials).
pub async fn terminate_finished(
    clients: &Arc<Clients>,
    connection: Option<&str>,
    store: &dyn Store,
    dags: &[sluice_dag::Dag],
) -> Result<Janitor, String> {
    if !clusters_requested(store, dags).await? {
        return Ok(Janitor::NothingRequested);
    }
    let emr = clients.emr(connection).await.map_err(|e| e.message)?;
    crate::clients::scoped(clients, connection, async {
        let mut done = Vec::new();
        for c in list_clusters(&emr, false).await.map_err(|e| e.message)? {
            let run = store.run_by_run_id(&c.dag_id, &c.run_id).await.map_err(|e| e.to_string())?;
            if run.as_ref().is_some_and(|r| !r.state.is_finished()) {
                continue;
            }
            emr.terminate_job_flows()
                .job_flow_ids(&c.id)
                .send()
                .await
                .map_err(|e| aws_error("TerminateJobFlows", e).message)?;
            let _ = store
                .add_event(&NewEvent {
                    dag_id: Some(c.dag_id.clone()),
                    run_id: Some(c.run_id.clone()),
                    task_id: Some(c.task_id.clone()),
                    kind: EventKind::ClusterTerminated {
                        cluster_id: c.id.clone(),
                        reason: "left running after its run ended".into(),
                    },
                })
                .await;
            done.push(c);
        }
        Ok(Janitor::Terminated(done))
    })
    .await
}

/// Cost safety at the end of a run: every cluster a task of the run created and nobody
/// terminated is terminated now.
pub async fn terminate_run_clusters(clients: &Clients, dag: &sluice_dag::Dag, run: &Run, store: &dyn Store) {
    let Ok(tries) = store.tries(run.id, None).await else { return };
    for task in dag.tasks.iter().filter(|t| matches!(t.operator, sluice_dag::Operator::CreateEmrCluster(_))) {
        let ids: Vec<String> = tries
            .iter()
            .filter(|t| t.task_id == task.id)
            .filter_map(|t| t.external_ids.get("cluster_id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let Ok(emr) = clients.emr(task.connection.as_deref()).await else { continue };
        for id in ids {
            let Ok(d) = emr.describe_cluster().cluster_id(&id).send().await else { continue };
            count_hours(clients.telemetry(), d.cluster());
            let state = d.cluster().and_then(|c| c.status()).and_then(|s| s.state()).cloned();
            if !state.as_ref().is_some_and(|s| LIVE.contains(s)) {
                continue;
            }
            if emr.terminate_job_flows().job_flow_ids(&id).send().await.is_ok() {
                tracing::warn!(dag = %run.dag_id, run = %run.run_id, cluster = %id, "run ended with its cluster still up; terminated it");
                let _ = store
                    .add_event(&NewEvent {
                        dag_id: Some(run.dag_id.clone()),
                        run_id: Some(run.run_id.clone()),
                        task_id: Some(task.id.clone()),
                        kind: EventKind::ClusterTerminated {
                            cluster_id: id.clone(),
                            reason: format!("still up when the run ended ({})", run.state),
                        },
                    })
                    .await;
            }
        }
    }
}
