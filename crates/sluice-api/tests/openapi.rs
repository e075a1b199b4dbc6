//! The OpenAPI document against the router: every route it serves is documented and nothing
//! else is, every `$ref` resolves, and the document served at `/api/v1/openapi.json` is the
//! one built from the types. (Whether the answers match it is `tests/schemathesis.rs`'s job.)

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use sluice_api::Api;
use sluice_scheduler::Catalog;

fn document() -> &'static Value {
    sluice_api::openapi_document()
}

/// `(method, path)` of every operation of the document.
fn documented() -> BTreeSet<(String, String)> {
    let paths = document()["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().expect("a path item").keys().map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

#[test]
fn it_is_openapi_3_1_with_the_bearer_scheme() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Sluice");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["type"], "http");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    // It is plain JSON: it survives a round trip through text.
    let text = serde_json::to_string_pretty(doc).unwrap();
    assert_eq!(&serde_json::from_str::<Value>(&text).unwrap(), doc);
    // `SLUICE_OPENAPI_OUT=FILE cargo test -p sluice-api --test openapi` writes it out.
    if let Ok(out) = std::env::var("SLUICE_OPENAPI_OUT") {
        std::fs::write(out, text + "\n").unwrap();
    }
}

#[test]
fn every_route_is_documented_and_every_operation_is_routed() {
    let routed: BTreeSet<(String, String)> = sluice_api::routes()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_string(), path.to_string()))
        .collect();
    assert_eq!(routed.len(), sluice_api::routes().len(), "a route is listed twice");
    let documented = documented();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
    assert!(unrouted.is_empty(), "documented operations the router does not serve: {unrouted:?}");
}

#[test]
fn every_operation_is_complete() {
    let mut ids = BTreeSet::new();
    for (method, path) in documented() {
        let op = &document()["paths"][&path][method.to_lowercase()];
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} documents no success");
        let open = op["security"] == serde_json::json!([]);
        if open {
            assert!(matches!(path.as_str(), "/healthz" | "/readyz"), "only the health checks are open: {path}");
        } else {
            assert!(responses.contains_key("401") && responses.contains_key("403"), "{method} {path}: 401 and 403");
            let description = op["description"].as_str().unwrap_or_default();
            assert!(description.contains("Needs the `"), "{method} {path} does not say which role it needs");
        }
        // Every `{param}` of the path is a path parameter, and no other.
        let in_path: BTreeSet<&str> = path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        let params: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(in_path, params, "{method} {path}: path parameters");
    }
}

#[test]
fn query_parameters_come_from_the_query_structs() {
    let op = &document()["paths"]["/api/v1/runs"]["get"];
    let names: Vec<&str> = op["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    for name in ["dag_id", "state", "kind", "from", "to", "limit", "cursor", "count"] {
        assert!(names.contains(&name), "`{name}` of RunsQuery is a parameter of GET /api/v1/runs: {names:?}");
    }
    let limit = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["required"], false);
    assert_eq!(limit["schema"]["type"], "integer", "no `null` in a query parameter: {limit}");
    assert_eq!(limit["schema"]["maximum"], 1000);
    assert!(limit["description"].as_str().unwrap().contains("1000"), "the field's doc is the description");
}

/// Calls `f` on every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves_inside_the_document() {
    let doc = document();
    let mut found = Vec::new();
    refs(doc, &mut found);
    assert!(found.len() > 20, "schemas are shared through components: {} refs", found.len());
    for r in found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("`{r}` points outside the document"));
        assert!(doc.pointer(pointer).is_some(), "`{r}` does not resolve");
    }
    for name in ["RunView", "TaskInstanceView", "TryView", "DagSummary", "Event", "EventKind", "Problem", "TokenRow"] {
        assert!(doc["components"]["schemas"][name].is_object(), "components/schemas/{name}");
    }
}

#[test]
fn schemas_describe_the_wire_form() {
    let schemas = &document()["components"]["schemas"];
    // `EventKind` is tagged by `type`.
    let kinds = schemas["EventKind"]["oneOf"].as_array().expect("EventKind is a oneOf");
    assert!(kinds.iter().any(|k| k["properties"]["type"]["const"] == "try_finished"), "{}", schemas["EventKind"]);
    // Dates are RFC 3339 strings; a try's number is an unsigned integer.
    assert_eq!(schemas["RunView"]["properties"]["logical_date"]["format"], "date-time");
    assert_eq!(schemas["TryView"]["properties"]["try_number"]["minimum"], 0);
    // A flattened `DagView` is in the list's summary.
    assert!(schemas["DagSummary"]["properties"]["next_fire_time"].is_object(), "{}", schemas["DagSummary"]);
    assert_eq!(schemas["Problem"]["properties"]["type"]["const"], "about:blank");
}

/// The router serves every documented path: a request to it reaches a handler (its answer is
/// not the fallback's "no such endpoint" nor "does not take that method"), and the document
/// it serves is this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_every_documented_operation() {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store::open(&format!("sqlite:{}", dir.path().join("sluice.db").display())).await.unwrap();
    let (_tx, catalog) = tokio::sync::watch::channel(Arc::new(Catalog::default()));
    let api = Api::builder(store, catalog, dir.path().join("logs")).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sluice_api::serve(listener, api, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(90)).build().unwrap();

    let served: Value = client.get(format!("{base}/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(&served, document());

    for (method, path) in documented() {
        let url = format!("{base}{}", path.replace("{try_number}", "1").replace('{', "x").replace('}', ""));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method.clone(), &url);
        if method == reqwest::Method::POST {
            request = request.header("content-type", "application/json").body("{}");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let streaming = response.headers().get("content-type").is_some_and(|v| v == "text/event-stream");
        if streaming {
            // The live stream answers at once and stays open: its status is enough.
            assert_eq!(status, 200, "{method} {path}");
            continue;
        }
        let body = response.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is not routed for its method: {body}");
        assert!(!body.contains("no such endpoint"), "{method} {path} is not routed: {body}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
