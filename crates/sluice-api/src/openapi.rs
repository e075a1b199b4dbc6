//! `/api/v1/openapi.json`: the API's OpenAPI 3.1 document, generated from the Rust types.
//!
//! Every schema comes from the type a handler takes or returns (`schemars::JsonSchema`,
//! derived next to `serde`'s derives, so a field added to a view is in the document with its
//! `///` doc): responses are described as they serialize, request bodies and query strings as
//! they deserialize. The operations are listed once, in [`operations`]: method, path,
//! operationId, summary, the query struct (each of its fields becomes an `in: query`
//! parameter), the headers read, the body type, and the responses by status. Which role an
//! operation needs is asked of [`Role::needed`], the function the gate itself calls.
//!
//! The document is built once, on first use, and served as it was built. `tests/openapi.rs`
//! holds it to the router (every route documented, nothing documented that is not served,
//! every `$ref` resolving), and `tests/schemathesis.rs` fuzzes the running API against it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};
use sluice_scheduler::actions::{BackfillRequest, Backfilled, Cleared, Marked, Paused, TriggerRequest, Triggered};
use sluice_scheduler::views::{RunView, TaskInstanceView, TryView};
use sluice_store::{Event, TokenRow};

use crate::auth::{CreatedToken, Role};
use crate::error::Problem;
use crate::routes::{dags, events, health, runs, tasks, tokens};

/// `GET /api/v1/openapi.json`.
pub(crate) async fn serve() -> Response {
    static BYTES: OnceLock<Bytes> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| Bytes::from(serde_json::to_vec(document()).unwrap_or_default()));
    let mut response = bytes.clone().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The OpenAPI 3.1 document, built on first use.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

const PROBLEM_JSON: &str = "application/problem+json";
const JSON: &str = "application/json";

/// The two schema generators: responses as they serialize, requests as they deserialize (a
/// field with a default is optional in a request, present in a response). Both put their
/// definitions under `#/components/schemas`.
struct Schemas {
    responses: SchemaGenerator,
    requests: SchemaGenerator,
}

impl Schemas {
    fn new() -> Schemas {
        let settings = |contract: Contract| {
            SchemaSettings::draft2020_12().with(|s| {
                s.definitions_path = "/components/schemas".into();
                s.meta_schema = None;
                s.contract = contract;
            })
        };
        Schemas {
            responses: settings(Contract::Serialize).into_generator(),
            requests: settings(Contract::Deserialize).into_generator(),
        }
    }

    /// The schema of a response body of type `T` (a `$ref` for a named type).
    fn response<T: JsonSchema>(&mut self) -> Value {
        self.responses.subschema_for::<T>().to_value()
    }

    /// The schema of a request body of type `T`.
    fn request<T: JsonSchema>(&mut self) -> Value {
        self.requests.subschema_for::<T>().to_value()
    }

    /// The query parameters of a query struct: one `in: query` parameter per field, with the
    /// field's doc as its description. The struct itself is not a component.
    fn query<T: JsonSchema>(&mut self) -> Vec<Value> {
        let reference = self.requests.subschema_for::<T>().to_value();
        let name = reference["$ref"].as_str().and_then(|r| r.rsplit('/').next()).unwrap_or_default().to_string();
        let schema = self.requests.definitions_mut().remove(&name).unwrap_or_else(|| reference.clone());
        let required: Vec<&str> =
            schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let Some(properties) = schema["properties"].as_object() else { return Vec::new() };
        properties
            .iter()
            .map(|(field, property)| {
                let mut property = property.clone();
                let description = property.as_object_mut().and_then(|p| p.remove("description"));
                let mut parameter = json!({
                    "name": field,
                    "in": "query",
                    "required": required.contains(&field.as_str()),
                    "schema": without_null(property),
                });
                if let Some(d) = description {
                    parameter["description"] = d;
                }
                parameter
            })
            .collect()
    }

    /// Every definition, checked to mean one thing: a type both read and written (an enum of
    /// states) must have one schema in both directions.
    fn components(mut self) -> Map<String, Value> {
        let mut out = self.responses.take_definitions(true);
        for (name, schema) in self.requests.take_definitions(true) {
            if let Some(existing) = out.get(&name) {
                assert_eq!(existing, &schema, "`{name}` has another schema as a request than as a response");
            }
            out.insert(name, schema);
        }
        out
    }
}

/// A query string cannot say `null`: an absent parameter is the `None`.
fn without_null(mut schema: Value) -> Value {
    if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            schema["type"] = types[0].clone();
        }
    }
    schema
}

/// One operation of the document.
struct Op {
    method: Method,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    /// Open to anyone (the health checks): no token is ever asked for.
    open: bool,
    parameters: Vec<Value>,
    body: Option<(Value, bool)>,
    responses: BTreeMap<u16, Value>,
}

impl Op {
    fn new(method: Method, path: &'static str, id: &'static str, tag: &'static str, summary: &'static str) -> Op {
        let parameters = path_parameters(path);
        Op {
            method,
            path,
            id,
            tag,
            summary,
            description: None,
            open: false,
            parameters,
            body: None,
            responses: BTreeMap::new(),
        }
    }

    fn describe(mut self, text: &'static str) -> Op {
        self.description = Some(text);
        self
    }

    fn open(mut self) -> Op {
        self.open = true;
        self
    }

    fn query(mut self, parameters: Vec<Value>) -> Op {
        self.parameters.extend(parameters);
        self
    }

    fn header(mut self, name: &str, description: &str, schema: Value) -> Op {
        self.parameters.push(
            json!({"name": name, "in": "header", "required": false, "description": description, "schema": schema}),
        );
        self
    }

    /// A JSON body; `required` false when an empty body means `{}`.
    fn body(mut self, schema: Value, required: bool) -> Op {
        self.body = Some((schema, required));
        self
    }

    /// A response with a body of `media` type.
    fn answer(mut self, status: u16, description: &str, media: &str, schema: Value) -> Op {
        self.responses.insert(status, json!({"description": description, "content": {media: {"schema": schema}}}));
        self
    }

    fn json(self, status: u16, description: &str, schema: Value) -> Op {
        self.answer(status, description, JSON, schema)
    }

    /// Problem answers, from `components/responses`.
    fn problems(mut self, statuses: &[u16]) -> Op {
        for status in statuses {
            self.responses
                .insert(*status, json!({"$ref": format!("#/components/responses/{}", problem_name(*status))}));
        }
        self
    }

    fn into_json(self) -> Value {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(self.id));
        op.insert("tags".into(), json!([self.tag]));
        op.insert("summary".into(), json!(self.summary));
        let mut responses = self.responses;
        let role = (!self.open).then(|| Role::needed(&self.method, self.path));
        let who = match role {
            None => "Open to anyone: no token is needed.".to_string(),
            Some(role) => {
                responses.insert(401, json!({"$ref": "#/components/responses/Unauthorized"}));
                responses.insert(403, json!({"$ref": "#/components/responses/Forbidden"}));
                format!("Needs the `{}` role.", role.name())
            }
        };
        let description = match self.description {
            Some(d) => format!("{d}\n\n{who}"),
            None => who,
        };
        op.insert("description".into(), json!(description));
        if self.open {
            op.insert("security".into(), json!([]));
        }
        if !self.parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(self.parameters));
        }
        if let Some((schema, required)) = self.body {
            op.insert("requestBody".into(), json!({"required": required, "content": {JSON: {"schema": schema}}}));
        }
        let responses: Map<String, Value> = responses.into_iter().map(|(s, r)| (s.to_string(), r)).collect();
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }
}

/// The parameters in a path template: strings, but a try's number.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let (description, schema) = match name {
                "dag_id" => ("The DAG's id.", json!({"type": "string", "minLength": 1})),
                "run_id" => {
                    ("The run id (`scheduled__2026-03-01T05:00:00+00:00`).", json!({"type": "string", "minLength": 1}))
                }
                "task_id" => ("The task's id.", json!({"type": "string", "minLength": 1})),
                "try_number" => (
                    "The try's number, 1 for the first.",
                    json!({"type": "integer", "format": "uint32", "minimum": 0, "maximum": u32::MAX}),
                ),
                "name" => ("The token's name.", json!({"type": "string", "minLength": 1})),
                _ => ("", json!({"type": "string", "minLength": 1})),
            };
            json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
        })
        .collect()
}

/// The problem answers every operation may give, by status.
const PROBLEMS: &[(u16, &str, &str)] = &[
    (400, "BadRequest", "The request is malformed: a parameter, the query or the body; the detail says which and why."),
    (401, "Unauthorized", "No valid token: send `Authorization: Bearer <token>`."),
    (403, "Forbidden", "The token's role may not do this."),
    (404, "NotFound", "No such DAG, run, task, try or token."),
    (409, "Conflict", "It exists already."),
    (413, "PayloadTooLarge", "The body is larger than 1 MiB."),
    (415, "UnsupportedMediaType", "The body is not `application/json`."),
    (422, "UnprocessableEntity", "The request is well-formed but cannot be carried out as written (a bad date or conf, an empty range, an idempotency key reused with another conf)."),
    (503, "ServiceUnavailable", "The state store failed, or the scheduler is stopping: try again."),
];

fn problem_name(status: u16) -> &'static str {
    PROBLEMS.iter().find(|p| p.0 == status).map_or("BadRequest", |p| p.1)
}

/// The error answers a handler of a path with parameters, a query or a body may give.
const READ: &[u16] = &[400, 404, 503];
const WRITE: &[u16] = &[400, 404, 413, 415, 422, 503];

/// Every operation the API serves.
fn operations(s: &mut Schemas) -> Vec<Op> {
    use Method as M;
    let event_stream = json!({
        "type": "object",
        "description": "One Server-Sent Event: `id` is the event's id (resume with `Last-Event-ID`), `event` its `type`, `data` the event as JSON.",
        "required": ["data", "event"],
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": JSON, "contentSchema": s.response::<Event>()},
        },
    });
    vec![
        Op::new(M::GET, "/healthz", "healthz", "health", "The process answers")
            .open()
            .json(200, "Always, while the process serves.", s.response::<health::Health>()),
        Op::new(M::GET, "/readyz", "readyz", "health", "Whether the scheduler loop turns and the store takes writes")
            .open()
            .json(200, "Ready: every check passed.", s.response::<health::Readiness>())
            .json(503, "Not ready: the failing checks say why.", s.response::<health::Readiness>()),
        Op::new(M::GET, "/metrics", "metrics", "health", "Prometheus metrics")
            .describe("The metrics in the OpenMetrics text format, which Prometheus scrapes.")
            .answer(200, "The metrics.", "application/openmetrics-text", json!({"type": "string"})),
        Op::new(M::GET, "/api/v1/openapi.json", "openapi", "meta", "This document")
            .json(200, "The OpenAPI 3.1 document.", json!({"type": "object"})),
        Op::new(M::GET, "/api/v1/dags", "listDags", "dags", "The DAGs, with their latest runs")
            .describe("Every loaded DAG with its next fire time (in its zone), paused flag, newest runs and parse error, and the files that do not load.")
            .query(s.query::<dags::ListQuery>())
            .json(200, "The DAGs.", s.response::<dags::DagList>())
            .problems(&[400, 503]),
        Op::new(M::GET, "/api/v1/dags/{dag_id}", "getDag", "dags", "One DAG: tasks, graph edges, schedule, source")
            .json(200, "The DAG.", s.response::<dags::DagDetail>())
            .problems(READ),
        Op::new(M::POST, "/api/v1/dags/{dag_id}/pause", "pauseDag", "dags", "Pause a DAG")
            .describe("No new runs start; runs in flight finish.")
            .json(200, "The DAG is paused.", s.response::<Paused>())
            .problems(READ),
        Op::new(M::POST, "/api/v1/dags/{dag_id}/unpause", "unpauseDag", "dags", "Unpause a DAG")
            .json(200, "The DAG is unpaused.", s.response::<Paused>())
            .problems(READ),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/grid", "getGrid", "dags", "The newest runs by every task, as columns")
            .query(s.query::<dags::GridQuery>())
            .json(200, "The grid.", s.response::<dags::Grid>())
            .problems(READ),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/graph", "getGraph", "dags", "The task graph, laid out left to right")
            .describe("Each task's box (layer by longest path from a task with no upstream, order within a layer by the barycentre of its neighbours) and the edges, as the web UI's graph view draws them.")
            .json(200, "The layout.", s.response::<dags::Graph>())
            .problems(READ),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/calendar", "getCalendar", "dags", "A year of runs by logical date")
            .describe("The runs whose logical date falls in the year, counted by day in the DAG's zone, with each day's state (failed if any run failed, running if any is unfinished, else success).")
            .query(s.query::<dags::CalendarQuery>())
            .json(200, "The calendar.", s.response::<sluice_scheduler::views::CalendarView>())
            .problems(READ),
        Op::new(M::POST, "/api/v1/dags/{dag_id}/backfill", "backfill", "runs", "Backfill a range of logical dates")
            .describe("One run per schedule tick in the range; runs already there are left alone or cleared as `rerun` says. With `dry_run`, lists what it would do and changes nothing.")
            .body(s.request::<BackfillRequest>(), true)
            .json(200, "What the backfill did (or would do).", s.response::<Backfilled>())
            .problems(WRITE),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/runs", "listDagRuns", "runs", "A DAG's runs, newest logical date first")
            .describe("Cursor pagination: pass `next_cursor` back as `cursor`.")
            .query(s.query::<runs::RunsQuery>())
            .json(200, "A page of runs.", s.response::<runs::RunPage>())
            .problems(READ),
        Op::new(M::POST, "/api/v1/dags/{dag_id}/runs", "triggerRun", "runs", "Trigger a run")
            .describe("A manual run for a logical date (default: now, with the last complete interval). With an `Idempotency-Key`, a retry of the same trigger gets the run the first one created (200) instead of a second run.")
            .header(
                "Idempotency-Key",
                "Makes the trigger idempotent: the same key on the same DAG gives the run the first request created.",
                json!({"type": "string", "minLength": 1, "maxLength": 255}),
            )
            .body(s.request::<TriggerRequest>(), false)
            .json(201, "A run was created.", s.response::<Triggered>())
            .json(200, "The run existed already (same logical date, or same idempotency key): it is left as it is.", s.response::<Triggered>())
            .problems(WRITE),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/runs/{run_id}", "getRun", "runs", "One run")
            .json(200, "The run.", s.response::<RunView>())
            .problems(READ),
        Op::new(M::POST, "/api/v1/dags/{dag_id}/runs/{run_id}/clear", "clearRun", "runs", "Clear a run's tasks to run again")
            .describe("With `dry_run`, lists what would be cleared and changes nothing.")
            .body(s.request::<runs::ClearBody>(), false)
            .json(200, "What was cleared (or would be).", s.response::<Cleared>())
            .problems(WRITE),
        Op::new(M::POST, "/api/v1/dags/{dag_id}/runs/{run_id}/mark", "markRun", "runs", "Mark a task, or a whole run, success or failed")
            .describe("With `dry_run`, lists what would be marked and changes nothing.")
            .body(s.request::<runs::MarkBody>(), true)
            .json(200, "What was marked (or would be).", s.response::<Marked>())
            .problems(WRITE),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/runs/{run_id}/wait", "waitRun", "runs", "Stream a run's events until it is final")
            .describe("Newline-delimited JSON, one `WaitLine` per line: the run as it is, then each of its events as it commits, then a `final` line once the run succeeded or failed (at once for a run already final).")
            .answer(200, "The stream; each line is one `WaitLine`.", "application/x-ndjson", s.response::<runs::WaitLine>())
            .problems(READ),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/runs/{run_id}/tasks", "listTaskInstances", "tasks", "A run's task instances, with their tries")
            .json(200, "The task instances, in the DAG's order.", s.response::<Vec<TaskInstanceView>>())
            .problems(READ),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/tries", "listTries", "tasks", "A task's tries, with their external ids")
            .json(200, "The tries, oldest first.", s.response::<Vec<TryView>>())
            .problems(READ),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/tries/{try_number}/log", "getLog", "tasks", "A try's log")
            .describe("From byte `offset` on. With `follow`, while the try runs, the response stays open and sends what the try writes until it ends.")
            .query(s.query::<tasks::LogQuery>())
            .answer(200, "The log's bytes (empty when the try wrote nothing). Without `follow`, the `X-Log-Size` header gives the file's size: the next `offset`.", "text/plain", json!({"type": "string"}))
            .problems(READ),
        Op::new(M::GET, "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/rendered", "getRenderedKeys", "tasks", "A task's keys as its templates render for the run")
            .describe("What `dagctl render` shows, for this run: its dates, its conf over the DAG's `[params]`, and the outputs its upstreams stored (an output not produced yet shows as `<tasks.ID.FIELD>`). Rendered with the DAG as loaded now. A template that does not render gives `error` instead of `keys`.")
            .json(200, "The rendered keys, or why they do not render.", s.response::<tasks::RenderedKeys>())
            .problems(READ),
        Op::new(M::GET, "/api/v1/runs", "listRuns", "runs", "Runs across DAGs, newest logical date first")
            .describe("Filters by DAG, state, kind and logical date range; cursor pagination (pass `next_cursor` back as `cursor`) with an optional bounded count.")
            .query(s.query::<runs::RunsQuery>())
            .json(200, "A page of runs.", s.response::<runs::RunPage>())
            .problems(&[400, 503]),
        Op::new(M::GET, "/api/v1/events", "listEvents", "events", "A page of events by id")
            .query(s.query::<events::EventsQuery>())
            .json(200, "The events, oldest first.", s.response::<events::EventPage>())
            .problems(&[400, 503]),
        Op::new(M::GET, "/api/v1/events/stream", "streamEvents", "events", "The live event stream (Server-Sent Events)")
            .describe("Each event as it commits, pushed from the store's broadcast; resumable with `Last-Event-ID` (or `after`). Without either, from now on.")
            .query(s.query::<events::StreamQuery>())
            .header("Last-Event-ID", "Resume after this event id.", json!({"type": "string", "pattern": "^\\s*-?[0-9]+\\s*$"}))
            .answer(200, "The stream; each event's `data` is an `Event`.", "text/event-stream", event_stream)
            .problems(&[400, 503]),
        Op::new(M::GET, "/api/v1/me", "me", "tokens", "Who the caller is, and its role")
            .describe("What the web UI asks first: a viewer token hides the actions.")
            .json(200, "The caller.", s.response::<tokens::Me>())
            .problems(&[503]),
        Op::new(M::GET, "/api/v1/tokens", "listTokens", "tokens", "The API tokens (never their secrets)")
            .json(200, "The tokens.", s.response::<Vec<TokenRow>>())
            .problems(&[503]),
        Op::new(M::POST, "/api/v1/tokens", "createToken", "tokens", "Create a token")
            .describe("The secret is in this answer only; the store keeps its hash.")
            .body(s.request::<tokens::NewTokenBody>(), true)
            .json(201, "The token, with its secret.", s.response::<CreatedToken>())
            .problems(&[400, 409, 413, 415, 503]),
        Op::new(M::DELETE, "/api/v1/tokens/{name}", "revokeToken", "tokens", "Revoke a token")
            .json(200, "The token as revoked.", s.response::<TokenRow>())
            .problems(READ),
    ]
}

fn build() -> Value {
    let mut schemas = Schemas::new();
    let problem = schemas.response::<Problem>();
    let ops = operations(&mut schemas);
    let mut paths: Map<String, Value> = Map::new();
    for op in ops {
        let method = op.method.as_str().to_ascii_lowercase();
        let entry = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        entry[method] = op.into_json();
    }
    let responses: Map<String, Value> = PROBLEMS
        .iter()
        .map(|(_, name, description)| {
            (
                name.to_string(),
                json!({"description": description, "content": {PROBLEM_JSON: {"schema": problem.clone()}}}),
            )
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sluice's HTTP API: DAGs, runs, task instances, tries and logs, events (a page by id and a live stream), tokens; and, outside `/api/v1`, health, readiness and Prometheus metrics. Errors are RFC 7807 problems (`application/problem+json`).",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "security": [{"bearer": []}],
        "tags": [
            {"name": "dags", "description": "DAGs: listing, detail, pause, the grid."},
            {"name": "runs", "description": "Runs: listing, trigger, backfill, clear, mark, wait."},
            {"name": "tasks", "description": "Task instances, tries, logs and rendered keys."},
            {"name": "events", "description": "The event stream."},
            {"name": "tokens", "description": "API tokens (admin)."},
            {"name": "health", "description": "Health, readiness, metrics."},
            {"name": "meta", "description": "This document."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "responses": responses,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`dagctl tokens create --name NAME --role viewer|operator|admin`), sent as `Authorization: Bearer slc_...`. Roles are ordered: a viewer reads, an operator also triggers, backfills, clears, marks and pauses, an admin also manages tokens. Served on loopback with no token configured, the API needs none.",
                },
            },
        },
    })
}
