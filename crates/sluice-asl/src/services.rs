//! Task resources: which service integration a `Resource` ARN names, and how its
//! `Parameters` (an AWS API request) become the keys of a Sluice operator.

use serde_json::{Map, Value};

use crate::codes;
use crate::emit::TVal;

/// How a Task waits for its work, from the resource's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Request-response: Step Functions moves on once the request is accepted.
    Request,
    /// `.sync`: Step Functions waits for the work to finish.
    Sync,
    /// `.waitForTaskToken`: waits for a callback.
    Token,
}

/// A Sluice operator a resource maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateCluster,
    AddStep,
    Terminate,
    Serverless,
    Crawler,
    Athena,
    GlueJob,
    /// `lambda:invoke`: the result is Invoke's answer (`Payload`, `StatusCode`, ...).
    Lambda,
    /// A plain function ARN as the Resource: the result is the function's payload itself.
    LambdaFunction,
}

impl Op {
    pub fn operator(self) -> &'static str {
        match self {
            Op::CreateCluster => "create_emr_cluster",
            Op::AddStep => "add_steps",
            Op::Terminate => "terminate",
            Op::Serverless => "emr_serverless",
            Op::Crawler => "crawler",
            Op::Athena => "athena",
            Op::GlueJob => "glue_job",
            Op::Lambda | Op::LambdaFunction => "lambda",
        }
    }
}

/// What a Task's `Resource` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// An integration Sluice has an operator for.
    Native { op: Op, pattern: Pattern, api: String },
    /// A status call (`getQueryExecution`, `describeCluster`, ...) of a polling loop.
    Poll { service: String, api: String },
    /// An activity.
    Activity,
    /// Anything else.
    Unsupported { api: String },
}

/// Reads a `Resource` ARN.
pub fn classify(arn: &str) -> Resource {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() < 6 || parts[0] != "arn" {
        return Resource::Unsupported { api: arn.to_string() };
    }
    let (service, rest) = (parts[2], parts[5]);
    if service == "lambda" {
        return match rest.strip_prefix("function:") {
            Some(f) if !f.is_empty() => {
                Resource::Native { op: Op::LambdaFunction, pattern: Pattern::Request, api: "lambda:invoke".into() }
            }
            _ => Resource::Unsupported { api: arn.to_string() },
        };
    }
    if service != "states" {
        return Resource::Unsupported { api: arn.to_string() };
    }
    if rest.starts_with("activity:") {
        return Resource::Activity;
    }
    let (rest, pattern) = if let Some(r) = rest.strip_suffix(".sync:2").or_else(|| rest.strip_suffix(".sync")) {
        (r, Pattern::Sync)
    } else if let Some(r) = rest.strip_suffix(".waitForTaskToken") {
        (r, Pattern::Token)
    } else {
        (rest, Pattern::Request)
    };
    let (svc, api) = match rest.strip_prefix("aws-sdk:") {
        Some(sdk) => match sdk.split_once(':') {
            Some(x) => x,
            None => return Resource::Unsupported { api: rest.to_string() },
        },
        None => match rest.split_once(':') {
            Some(x) => x,
            None => return Resource::Unsupported { api: rest.to_string() },
        },
    };
    let svc = match svc {
        "elasticmapreduce" | "emr" => "emr",
        "emr-serverless" | "emrserverless" => "emrserverless",
        s => s,
    };
    let full = format!("{svc}:{api}");
    let op = match (svc, api) {
        ("emr", "createCluster" | "runJobFlow") => Some(Op::CreateCluster),
        ("emr", "addStep") => Some(Op::AddStep),
        ("emr", "terminateCluster" | "terminateJobFlows") => Some(Op::Terminate),
        ("emrserverless", "startJobRun") => Some(Op::Serverless),
        ("glue", "startCrawler") => Some(Op::Crawler),
        ("athena", "startQueryExecution") => Some(Op::Athena),
        ("glue", "startJobRun") => Some(Op::GlueJob),
        ("lambda", "invoke") => Some(Op::Lambda),
        _ => None,
    };
    if let Some(op) = op {
        return Resource::Native { op, pattern, api: full };
    }
    match (svc, api) {
        (_, a) if a.starts_with("get") || a.starts_with("describe") || a.starts_with("list") => {
            Resource::Poll { service: svc.to_string(), api: full }
        }
        _ => Resource::Unsupported { api: full },
    }
}

/// The service of a native operator, to match a polling loop's status call with it.
pub fn service(op: Op) -> &'static str {
    match op {
        Op::CreateCluster | Op::AddStep | Op::Terminate => "emr",
        Op::Serverless => "emrserverless",
        Op::Crawler | Op::GlueJob => "glue",
        Op::Athena => "athena",
        Op::Lambda | Op::LambdaFunction => "lambda",
    }
}

/// The Sluice output (`tasks.ID.<this>`) that a path inside the task's result stands for.
/// A Lambda's result reaches into the function's payload (`tasks.ID.payload.FIELD`).
pub fn output_field(op: Op, path: &[&str]) -> Option<String> {
    let fixed = match (op, path) {
        (Op::CreateCluster, ["ClusterId"] | ["Cluster", "Id"]) => "cluster_id",
        (Op::AddStep, ["StepId"] | ["Step", "Id"] | ["StepIds", "0"]) => "step_ids[0]",
        (Op::Athena, ["QueryExecutionId"] | ["QueryExecution", "QueryExecutionId"]) => "query_execution_id",
        (Op::Athena, ["QueryExecution", "ResultConfiguration", "OutputLocation"]) => "output_location",
        (Op::Serverless, ["JobRunId"] | ["JobRun", "JobRunId"]) => "job_run_id",
        // StartJobRun answers JobRunId; the .sync form answers the job run (its `Id`).
        (Op::GlueJob, ["JobRunId"] | ["Id"] | ["JobRun", "Id"]) => "job_run_id",
        (Op::Lambda, ["Payload", rest @ ..]) => return payload_field(rest),
        (Op::LambdaFunction, rest) => return payload_field(rest),
        _ => return None,
    };
    Some(fixed.to_string())
}

/// `payload` and the path below it, when every step is a name a template can write.
fn payload_field(rest: &[&str]) -> Option<String> {
    let mut out = String::from("payload");
    for seg in rest {
        if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else if seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push('.');
            out.push_str(seg);
        } else {
            return None;
        }
    }
    Some(out)
}

/// A problem found while building an operator's keys: its code, the key's path below
/// `Parameters`, the message and what to do instead.
pub struct Problem {
    pub rejected: bool,
    pub code: &'static str,
    pub key: String,
    pub message: String,
    pub instead: String,
}

/// The operator keys built from `Parameters`, what could not be carried, and the request
/// keys that were left out.
#[derive(Default)]
pub struct Built {
    pub keys: Vec<(String, TVal)>,
    pub problems: Vec<Problem>,
    pub dropped: Vec<String>,
    pub notes: Vec<String>,
}

/// Reads keys out of one object of the request, tracking its path and what is left.
struct Obj {
    path: String,
    map: Map<String, Value>,
}

impl Built {
    fn reject(&mut self, code: &'static str, key: &str, message: impl Into<String>, instead: impl Into<String>) {
        self.problems.push(Problem {
            rejected: true,
            code,
            key: key.to_string(),
            message: message.into(),
            instead: instead.into(),
        });
    }

    fn put(&mut self, key: &str, v: TVal) {
        self.keys.push((key.to_string(), v));
    }

    /// Every key of `o` not taken: reported as dropped.
    fn rest(&mut self, o: Obj) {
        for k in o.map.keys() {
            self.dropped.push(join(&o.path, k));
        }
    }

    fn string(&mut self, o: &mut Obj, key: &str) -> Option<String> {
        let v = o.map.remove(key)?;
        match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.reject(codes::INVALID_PARAMETER, &join(&o.path, key), "expected a string", "give a string");
                None
            }
        }
    }

    fn int(&mut self, o: &mut Obj, key: &str) -> Option<i64> {
        let v = o.map.remove(key)?;
        let k = join(&o.path, key);
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    self.reject(codes::INVALID_PARAMETER, &k, "expected a whole number", "give a whole number");
                    None
                }
            },
            Value::String(s) if s.contains("{{") => {
                self.reject(
                    codes::DYNAMIC_VALUE,
                    &k,
                    "a number read from the state's input: Sluice reads this key literally, it is not a template",
                    "write the number in the state machine",
                );
                None
            }
            _ => {
                self.reject(codes::INVALID_PARAMETER, &k, "expected a number", "give a number");
                None
            }
        }
    }

    fn boolean(&mut self, o: &mut Obj, key: &str) -> Option<bool> {
        let v = o.map.remove(key)?;
        let k = join(&o.path, key);
        match v {
            Value::Bool(b) => Some(b),
            Value::String(s) if s.contains("{{") => {
                self.reject(
                    codes::DYNAMIC_VALUE,
                    &k,
                    "a boolean read from the state's input: Sluice reads this key literally",
                    "write true or false in the state machine",
                );
                None
            }
            _ => {
                self.reject(codes::INVALID_PARAMETER, &k, "expected true or false", "give a boolean");
                None
            }
        }
    }

    fn choice(&mut self, o: &mut Obj, key: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(o, key)?;
        let k = join(&o.path, key);
        if s.contains("{{") {
            self.reject(
                codes::DYNAMIC_VALUE,
                &k,
                "a fixed choice read from the state's input: Sluice reads this key literally",
                format!("write one of {} in the state machine", allowed.join(", ")),
            );
            return None;
        }
        if !allowed.contains(&s.as_str()) {
            self.reject(
                codes::INVALID_PARAMETER,
                &k,
                format!("`{s}` is not one of {}", allowed.join(", ")),
                "use one of those",
            );
            return None;
        }
        Some(s)
    }

    fn object(&mut self, o: &mut Obj, key: &str) -> Option<Obj> {
        let v = o.map.remove(key)?;
        let path = join(&o.path, key);
        match v {
            Value::Object(map) => Some(Obj { path, map }),
            _ => {
                self.reject(codes::INVALID_PARAMETER, &path, "expected an object", "give an object");
                None
            }
        }
    }

    fn objects(&mut self, o: &mut Obj, key: &str) -> Vec<Obj> {
        let Some(v) = o.map.remove(key) else { return Vec::new() };
        let path = join(&o.path, key);
        match v {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::Object(map) => out.push(Obj { path: format!("{path}[{i}]"), map }),
                        _ => self.reject(codes::INVALID_PARAMETER, &format!("{path}[{i}]"), "expected an object", ""),
                    }
                }
                out
            }
            _ => {
                self.reject(codes::INVALID_PARAMETER, &path, "expected a list", "give a list");
                Vec::new()
            }
        }
    }

    fn strings(&mut self, o: &mut Obj, key: &str) -> Option<Vec<String>> {
        let v = o.map.remove(key)?;
        let path = join(&o.path, key);
        match v {
            Value::Array(items) => Some(
                items
                    .into_iter()
                    .map(|i| match i {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            Value::String(s) if s.contains("{{") => {
                self.reject(
                    codes::DYNAMIC_VALUE,
                    &path,
                    "a whole list read from the state's input: Sluice templates the strings of a list, not the list",
                    "write the list in the state machine, with a path for each item that varies",
                );
                None
            }
            _ => {
                self.reject(codes::INVALID_PARAMETER, &path, "expected a list of strings", "");
                None
            }
        }
    }

    fn put_str(&mut self, o: &mut Obj, key: &str, to: &str) {
        if let Some(s) = self.string(o, key) {
            self.put(to, TVal::Str(s));
        }
    }

    fn required(&mut self, o: &Obj, key: &str, op: &str) {
        if !self.keys.iter().any(|(k, _)| k == key) {
            let what = o.path.clone();
            self.reject(
                codes::MISSING_PARAMETER,
                &what,
                format!("no value for `{key}`, which Sluice's `{op}` operator requires"),
                "give it in Parameters",
            );
        }
    }

    /// `[{Key, Value}]` (EMR tags, step properties) as a table of strings.
    fn key_values(&mut self, o: &mut Obj, key: &str) -> Option<TVal> {
        let items = self.objects(o, key);
        if items.is_empty() {
            return None;
        }
        let mut entries = Vec::new();
        for mut item in items {
            let k = self.string(&mut item, "Key");
            let v = self.string(&mut item, "Value").unwrap_or_default();
            if let Some(k) = k {
                entries.push((k, TVal::Str(v)));
            }
            self.rest(item);
        }
        Some(TVal::Tbl(entries))
    }

    /// A JSON object of strings (EMR Serverless tags, configuration properties).
    fn string_map(&mut self, o: &mut Obj, key: &str) -> Option<TVal> {
        let mut m = self.object(o, key)?;
        let entries = std::mem::take(&mut m.map)
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, TVal::Str(s))
            })
            .collect();
        Some(TVal::Tbl(entries))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Builds the keys of `op` from `params` (the request, strings already templates).
pub fn build(op: Op, params: Map<String, Value>, pattern: Pattern) -> Built {
    let mut b = Built::default();
    let mut o = Obj { path: String::new(), map: params };
    match op {
        Op::CreateCluster => create_cluster(&mut b, &mut o),
        Op::AddStep => add_step(&mut b, &mut o, pattern),
        Op::Terminate => {
            b.put_str(&mut o, "ClusterId", "cluster_id");
            b.required(&o, "cluster_id", op.operator());
        }
        Op::Serverless => serverless(&mut b, &mut o),
        Op::Crawler => {
            b.put_str(&mut o, "Name", "name");
            b.required(&o, "name", op.operator());
        }
        Op::Athena => athena(&mut b, &mut o),
        Op::GlueJob => glue_job(&mut b, &mut o),
        Op::Lambda | Op::LambdaFunction => lambda(&mut b, &mut o),
    }
    b.rest(o);
    b
}

fn create_cluster(b: &mut Built, o: &mut Obj) {
    b.put_str(o, "Name", "name");
    b.put_str(o, "ReleaseLabel", "release_label");
    let apps = b.objects(o, "Applications");
    if !apps.is_empty() {
        let mut names = Vec::new();
        for mut a in apps {
            if let Some(n) = b.string(&mut a, "Name") {
                names.push(TVal::Str(n));
            }
            b.rest(a);
        }
        b.put("applications", TVal::Arr(names));
    }
    if let Some(mut inst) = b.object(o, "Instances") {
        instances(b, &mut inst);
        b.rest(inst);
    }
    b.put_str(o, "LogUri", "log_uri");
    b.put_str(o, "ServiceRole", "service_role");
    b.put_str(o, "JobFlowRole", "job_flow_role");
    if let Some(t) = b.key_values(o, "Tags") {
        b.put("tags", t);
    }
    let confs = b.objects(o, "Configurations");
    if !confs.is_empty() {
        let v = configurations(b, confs);
        b.put("configurations", v);
    }
    let actions = b.objects(o, "BootstrapActions");
    if !actions.is_empty() {
        let mut out = Vec::new();
        for mut a in actions {
            let mut t = Vec::new();
            if let Some(n) = b.string(&mut a, "Name") {
                t.push(("name".to_string(), TVal::Str(n)));
            }
            if let Some(mut s) = b.object(&mut a, "ScriptBootstrapAction") {
                if let Some(p) = b.string(&mut s, "Path") {
                    t.push(("path".into(), TVal::Str(p)));
                }
                if let Some(args) = b.strings(&mut s, "Args") {
                    t.push(("args".into(), TVal::Arr(args.into_iter().map(TVal::Str).collect())));
                }
                b.rest(s);
            }
            b.rest(a);
            out.push(TVal::Tbl(t));
        }
        b.put("bootstrap_actions", TVal::Arr(out));
    }
    b.put_str(o, "SecurityConfiguration", "security_configuration");
    if let Some(mut p) = b.object(o, "AutoTerminationPolicy") {
        if let Some(s) = b.int(&mut p, "IdleTimeout") {
            b.put("auto_termination_idle_timeout", TVal::Int(s));
        }
        b.rest(p);
    }
    if let Some(v) = b.boolean(o, "VisibleToAllUsers") {
        b.put("visible_to_all_users", TVal::Bool(v));
    }
    if let Some(v) = b.int(o, "StepConcurrencyLevel") {
        b.put("step_concurrency_level", TVal::Int(v));
    }
    if let Some(v) = b.int(o, "EbsRootVolumeSize") {
        b.put("ebs_root_volume_size", TVal::Int(v));
    }
    b.put_str(o, "CustomAmiId", "custom_ami_id");
    for key in ["name", "release_label", "applications"] {
        b.required(o, key, Op::CreateCluster.operator());
    }
    if !b.keys.iter().any(|(k, _)| k == "instance_type" || k == "instance_groups" || k == "instance_fleets") {
        b.reject(
            codes::MISSING_PARAMETER,
            "Instances",
            "no nodes: give Instances with InstanceGroups, InstanceFleets, or MasterInstanceType and InstanceCount",
            "add them to Parameters",
        );
    }
}

fn instances(b: &mut Built, inst: &mut Obj) {
    let groups = b.objects(inst, "InstanceGroups");
    if !groups.is_empty() {
        let mut out = Vec::new();
        for mut g in groups {
            let mut t = Vec::new();
            if let Some(r) = b.choice(&mut g, "InstanceRole", &["MASTER", "CORE", "TASK"]) {
                t.push(("role".to_string(), TVal::Str(r)));
            }
            if let Some(s) = b.string(&mut g, "InstanceType") {
                t.push(("instance_type".into(), TVal::Str(s)));
            }
            if let Some(n) = b.int(&mut g, "InstanceCount") {
                t.push(("instance_count".into(), TVal::Int(n)));
            }
            if let Some(s) = b.string(&mut g, "Name") {
                t.push(("name".into(), TVal::Str(s)));
            }
            if let Some(s) = b.choice(&mut g, "Market", &["ON_DEMAND", "SPOT"]) {
                t.push(("market".into(), TVal::Str(s)));
            }
            if let Some(s) = b.string(&mut g, "BidPrice") {
                t.push(("bid_price".into(), TVal::Str(s)));
            }
            if let Some(mut ebs) = b.object(&mut g, "EbsConfiguration") {
                let devices = b.objects(&mut ebs, "EbsBlockDeviceConfigs");
                let n = devices.len();
                for (i, mut d) in devices.into_iter().enumerate() {
                    if let Some(mut spec) = b.object(&mut d, "VolumeSpecification") {
                        if let Some(size) = b.int(&mut spec, "SizeInGB") {
                            if i == 0 {
                                t.push(("ebs_size_gb".into(), TVal::Int(size)));
                            }
                        }
                        if let Some(kind) = b.string(&mut spec, "VolumeType") {
                            if kind != "gp3" {
                                b.notes.push(format!(
                                    "{}: EBS volume type `{kind}` becomes gp3 (Sluice's `ebs_size_gb` is one gp3 volume)",
                                    spec.path
                                ));
                            }
                        }
                        b.rest(spec);
                    }
                    let _ = b.int(&mut d, "VolumesPerInstance");
                    b.rest(d);
                    if i > 0 || n > 1 {
                        b.dropped.push(format!("{}.EbsBlockDeviceConfigs[{i}] (one volume is carried)", ebs.path));
                    }
                }
                b.rest(ebs);
            }
            b.rest(g);
            out.push(TVal::Tbl(t));
        }
        b.put("instance_groups", TVal::Arr(out));
    }
    let fleets = b.objects(inst, "InstanceFleets");
    if !fleets.is_empty() {
        let mut out = Vec::new();
        for mut f in fleets {
            let mut t = Vec::new();
            if let Some(r) = b.choice(&mut f, "InstanceFleetType", &["MASTER", "CORE", "TASK"]) {
                t.push(("role".to_string(), TVal::Str(r)));
            }
            if let Some(s) = b.string(&mut f, "Name") {
                t.push(("name".into(), TVal::Str(s)));
            }
            if let Some(n) = b.int(&mut f, "TargetOnDemandCapacity") {
                t.push(("target_on_demand_capacity".into(), TVal::Int(n)));
            }
            if let Some(n) = b.int(&mut f, "TargetSpotCapacity") {
                t.push(("target_spot_capacity".into(), TVal::Int(n)));
            }
            let mut types = Vec::new();
            for mut c in b.objects(&mut f, "InstanceTypeConfigs") {
                let mut ct = Vec::new();
                if let Some(s) = b.string(&mut c, "InstanceType") {
                    ct.push(("instance_type".to_string(), TVal::Str(s)));
                }
                if let Some(n) = b.int(&mut c, "WeightedCapacity") {
                    ct.push(("weighted_capacity".into(), TVal::Int(n)));
                }
                if let Some(v) = c.map.remove("BidPriceAsPercentageOfOnDemandPrice") {
                    match v.as_f64() {
                        Some(x) => ct.push(("bid_price_as_percentage_of_on_demand_price".into(), TVal::Float(x))),
                        None => b.reject(
                            codes::INVALID_PARAMETER,
                            &join(&c.path, "BidPriceAsPercentageOfOnDemandPrice"),
                            "expected a number",
                            "",
                        ),
                    }
                }
                b.rest(c);
                types.push(TVal::Tbl(ct));
            }
            t.push(("instance_types".into(), TVal::Arr(types)));
            b.rest(f);
            out.push(TVal::Tbl(t));
        }
        b.put("instance_fleets", TVal::Arr(out));
    }
    let master = b.string(inst, "MasterInstanceType");
    let slave = b.string(inst, "SlaveInstanceType");
    let count = b.int(inst, "InstanceCount");
    match (master, slave, count) {
        (None, None, None) => {}
        (Some(m), s, c) if s.is_none() || s.as_ref() == Some(&m) || c == Some(1) => {
            b.put("instance_type", TVal::Str(m));
            b.put("instance_count", TVal::Int(c.unwrap_or(1)));
        }
        (Some(m), Some(s), Some(c)) => {
            let group = |role: &str, ty: String, n: i64| {
                TVal::Tbl(vec![
                    ("role".into(), TVal::Str(role.into())),
                    ("instance_type".into(), TVal::Str(ty)),
                    ("instance_count".into(), TVal::Int(n)),
                ])
            };
            b.put("instance_groups", TVal::Arr(vec![group("MASTER", m, 1), group("CORE", s, c - 1)]));
        }
        _ => b.reject(
            codes::MISSING_PARAMETER,
            &join(&inst.path, "MasterInstanceType"),
            "MasterInstanceType, SlaveInstanceType and InstanceCount do not give the nodes",
            "give MasterInstanceType and InstanceCount (and SlaveInstanceType), or InstanceGroups",
        ),
    }
    if let Some(k) = b.boolean(inst, "KeepJobFlowAliveWhenNoSteps") {
        if !k {
            b.notes.push(
                "Instances.KeepJobFlowAliveWhenNoSteps is false: the cluster ends when it has no steps, \
                 so `add_steps` tasks after it may find it gone"
                    .into(),
            );
        }
        b.put("keep_alive", TVal::Bool(k));
    }
    b.put_str(inst, "Ec2SubnetId", "ec2_subnet_id");
    b.put_str(inst, "Ec2KeyName", "ec2_key_name");
}

fn configurations(b: &mut Built, confs: Vec<Obj>) -> TVal {
    let mut out = Vec::new();
    for mut c in confs {
        let mut t = Vec::new();
        if let Some(s) = b.string(&mut c, "Classification") {
            t.push(("classification".to_string(), TVal::Str(s)));
        }
        if let Some(p) = b.string_map(&mut c, "Properties") {
            t.push(("properties".into(), p));
        }
        let nested = b.objects(&mut c, "Configurations");
        if !nested.is_empty() {
            t.push(("configurations".into(), configurations(b, nested)));
        }
        b.rest(c);
        out.push(TVal::Tbl(t));
    }
    TVal::Arr(out)
}

fn add_step(b: &mut Built, o: &mut Obj, pattern: Pattern) {
    b.put_str(o, "ClusterId", "cluster_id");
    let mut step = Vec::new();
    if let Some(mut s) = b.object(o, "Step") {
        if let Some(n) = b.string(&mut s, "Name") {
            step.push(("name".to_string(), TVal::Str(n)));
        }
        if let Some(mut h) = b.object(&mut s, "HadoopJarStep") {
            if let Some(jar) = b.string(&mut h, "Jar") {
                if jar != "command-runner.jar" {
                    step.push(("jar".into(), TVal::Str(jar)));
                }
            }
            if let Some(m) = b.string(&mut h, "MainClass") {
                step.push(("main_class".into(), TVal::Str(m)));
            }
            if let Some(args) = b.strings(&mut h, "Args") {
                step.push(("args".into(), TVal::Arr(args.into_iter().map(TVal::Str).collect())));
            }
            if let Some(p) = b.key_values(&mut h, "Properties") {
                step.push(("properties".into(), p));
            }
            b.rest(h);
        }
        let allowed = ["CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"];
        if let Some(a) = b.choice(&mut s, "ActionOnFailure", &allowed) {
            let a = if a == "TERMINATE_JOB_FLOW" { "TERMINATE_CLUSTER".to_string() } else { a };
            step.push(("action_on_failure".into(), TVal::Str(a)));
        }
        b.rest(s);
    }
    if !step.iter().any(|(k, _)| k == "name") {
        b.reject(codes::MISSING_PARAMETER, "Step.Name", "the step has no Name", "give Step.Name");
    }
    if !step.iter().any(|(k, _)| k == "args" || k == "main_class") {
        b.reject(
            codes::MISSING_PARAMETER,
            "Step.HadoopJarStep.Args",
            "the step has no Args (nor MainClass)",
            "give Step.HadoopJarStep.Args",
        );
    }
    b.put("steps", TVal::Arr(vec![TVal::Tbl(step)]));
    if pattern == Pattern::Request {
        b.put("wait_for_completion", TVal::Bool(false));
    }
    b.required(o, "cluster_id", Op::AddStep.operator());
}

fn serverless(b: &mut Built, o: &mut Obj) {
    b.put_str(o, "ApplicationId", "application_id");
    b.put_str(o, "ExecutionRoleArn", "execution_role_arn");
    b.put_str(o, "Name", "name");
    if let Some(mut d) = b.object(o, "JobDriver") {
        if let Some(mut s) = b.object(&mut d, "SparkSubmit") {
            b.put_str(&mut s, "EntryPoint", "entry_point");
            if let Some(args) = b.strings(&mut s, "EntryPointArguments") {
                b.put("entry_point_args", TVal::Arr(args.into_iter().map(TVal::Str).collect()));
            }
            b.put_str(&mut s, "SparkSubmitParameters", "spark_submit_parameters");
            b.rest(s);
        }
        b.rest(d);
    }
    if let Some(mut c) = b.object(o, "ConfigurationOverrides") {
        if let Some(mut m) = b.object(&mut c, "MonitoringConfiguration") {
            if let Some(mut s3) = b.object(&mut m, "S3MonitoringConfiguration") {
                b.put_str(&mut s3, "LogUri", "log_uri");
                b.rest(s3);
            }
            b.rest(m);
        }
        b.rest(c);
    }
    if let Some(m) = b.int(o, "ExecutionTimeoutMinutes") {
        b.put("execution_timeout", TVal::Int(m.saturating_mul(60)));
    }
    if let Some(t) = b.string_map(o, "Tags") {
        b.put("tags", t);
    }
    if o.map.remove("ClientToken").is_some() {
        b.notes.push("ClientToken: Sluice makes its own idempotency token from the run, the task and the try".into());
    }
    for key in ["application_id", "execution_role_arn", "entry_point"] {
        b.required(o, key, Op::Serverless.operator());
    }
}

fn athena(b: &mut Built, o: &mut Obj) {
    b.put_str(o, "QueryString", "query");
    if let Some(mut c) = b.object(o, "QueryExecutionContext") {
        b.put_str(&mut c, "Database", "database");
        b.put_str(&mut c, "Catalog", "catalog");
        b.rest(c);
    }
    if let Some(mut r) = b.object(o, "ResultConfiguration") {
        b.put_str(&mut r, "OutputLocation", "output_location");
        b.rest(r);
    }
    b.put_str(o, "WorkGroup", "workgroup");
    if o.map.remove("ClientRequestToken").is_some() {
        b.notes.push(
            "ClientRequestToken: Sluice makes its own idempotency token from the run, the task and the try".into(),
        );
    }
    for key in ["query", "database", "output_location"] {
        b.required(o, key, Op::Athena.operator());
    }
}

fn glue_job(b: &mut Built, o: &mut Obj) {
    b.put_str(o, "JobName", "job_name");
    if let Some(a) = b.string_map(o, "Arguments") {
        b.put("arguments", a);
    }
    b.put_str(o, "WorkerType", "worker_type");
    if let Some(n) = b.int(o, "NumberOfWorkers") {
        if n < 1 {
            b.reject(codes::INVALID_PARAMETER, "NumberOfWorkers", "must be at least 1", "give 1 or more workers");
        } else {
            b.put("number_of_workers", TVal::Int(n));
        }
    }
    if let Some(m) = b.int(o, "Timeout") {
        b.put("execution_timeout", TVal::Int(m.saturating_mul(60)));
    }
    b.required(o, "job_name", Op::GlueJob.operator());
}

/// `lambda:invoke`'s request (a plain function ARN's Task comes here as `FunctionName` and
/// `Payload`, see `convert`).
fn lambda(b: &mut Built, o: &mut Obj) {
    b.put_str(o, "FunctionName", "function_name");
    match o.map.remove("Payload") {
        Some(Value::String(t)) if t.contains("{{") => b.reject(
            codes::DYNAMIC_VALUE,
            "Payload",
            "the whole Payload read from the state's input: Sluice templates the strings inside a payload, not the payload",
            "write the payload's object in the state machine, with a path for each field that varies",
        ),
        Some(p) => b.put("payload", json_value(&p)),
        None => {}
    }
    b.put_str(o, "Qualifier", "qualifier");
    match o.map.remove("InvocationType") {
        None => {}
        Some(Value::String(t)) if t == "RequestResponse" => {}
        Some(other) => {
            let t = other.as_str().map_or_else(|| other.to_string(), str::to_string);
            b.reject(
                codes::INVALID_PARAMETER,
                "InvocationType",
                format!("InvocationType `{t}`: Sluice's `lambda` operator invokes with RequestResponse and waits for the answer"),
                "drop InvocationType (an `Event` invocation can be sent from a `command` task with `aws lambda invoke`)",
            );
        }
    }
    b.required(o, "function_name", "lambda");
}

/// A JSON value as TOML: `null` (which TOML has not) as an empty string.
fn json_value(v: &Value) -> TVal {
    match v {
        Value::Null => TVal::Str(String::new()),
        Value::Bool(x) => TVal::Bool(*x),
        Value::Number(n) => match n.as_i64() {
            Some(i) => TVal::Int(i),
            None => TVal::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => TVal::Str(s.clone()),
        Value::Array(items) => TVal::Arr(items.iter().map(json_value).collect()),
        Value::Object(m) => TVal::Tbl(m.iter().map(|(k, v)| (k.clone(), json_value(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_classified() {
        let native = |arn: &str| match classify(arn) {
            Resource::Native { op, pattern, .. } => Some((op, pattern)),
            _ => None,
        };
        assert_eq!(
            native("arn:aws:states:::elasticmapreduce:createCluster.sync"),
            Some((Op::CreateCluster, Pattern::Sync))
        );
        assert_eq!(native("arn:aws:states:::aws-sdk:glue:startCrawler"), Some((Op::Crawler, Pattern::Request)));
        assert_eq!(native("arn:aws:states:::glue:startCrawler.sync"), Some((Op::Crawler, Pattern::Sync)));
        assert_eq!(
            native("arn:aws-cn:states:::emr-serverless:startJobRun.sync"),
            Some((Op::Serverless, Pattern::Sync))
        );
        assert_eq!(
            native("arn:aws:states:::athena:startQueryExecution.waitForTaskToken").map(|x| x.1),
            Some(Pattern::Token)
        );
        assert_eq!(native("arn:aws:states:::lambda:invoke"), Some((Op::Lambda, Pattern::Request)));
        assert_eq!(
            native("arn:aws:lambda:eu-west-1:123456789012:function:f"),
            Some((Op::LambdaFunction, Pattern::Request))
        );
        assert_eq!(
            native("arn:aws:lambda:eu-west-1:123456789012:function:f:live").map(|x| x.0),
            Some(Op::LambdaFunction)
        );
        assert!(matches!(classify("arn:aws:lambda:eu-west-1:123456789012:layer:l"), Resource::Unsupported { .. }));
        assert_eq!(native("arn:aws:states:::glue:startJobRun.sync"), Some((Op::GlueJob, Pattern::Sync)));
        assert_eq!(native("arn:aws:states:::aws-sdk:glue:startJobRun"), Some((Op::GlueJob, Pattern::Request)));
        assert!(matches!(classify("arn:aws:states:eu-west-1:123456789012:activity:a"), Resource::Activity));
        assert!(matches!(classify("arn:aws:states:::athena:getQueryExecution"), Resource::Poll { .. }));
        assert!(matches!(classify("arn:aws:states:::sns:publish"), Resource::Unsupported { .. }));
        assert!(matches!(classify("not an arn"), Resource::Unsupported { .. }));
    }

    #[test]
    fn result_paths_become_outputs() {
        assert_eq!(output_field(Op::GlueJob, &["JobRunId"]).as_deref(), Some("job_run_id"));
        assert_eq!(output_field(Op::GlueJob, &["Id"]).as_deref(), Some("job_run_id"));
        assert_eq!(output_field(Op::Lambda, &["Payload"]).as_deref(), Some("payload"));
        assert_eq!(output_field(Op::Lambda, &["Payload", "rows", "0"]).as_deref(), Some("payload.rows[0]"));
        assert_eq!(output_field(Op::Lambda, &["StatusCode"]), None);
        assert_eq!(output_field(Op::LambdaFunction, &["table"]).as_deref(), Some("payload.table"));
        assert_eq!(output_field(Op::LambdaFunction, &["a-b"]), None);
    }
}
