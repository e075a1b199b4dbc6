//! The converter on inputs the golden files do not cover: odd names, hostile values, and
//! every golden machine with its fields replaced by values of the wrong type. Nothing may
//! panic, every report line stays one line, and every DAG without a rejection validates.

use std::path::Path;

use serde_json::{json, Value};
use sluice_asl::{convert, Level, Options};

fn opts() -> Options {
    Options { source: "machine.asl.json".into(), ..Options::default() }
}

fn check(src: &str) -> sluice_asl::Conversion {
    let conv = convert(src, &opts());
    let report = conv.report.to_string();
    assert_eq!(report.lines().count(), conv.report.items.len() + 1, "one line per decision: {report}");
    if !conv.report.has_rejections() {
        let parsed = sluice_dag::parse_dag(Path::new("machine.toml"), &conv.toml);
        let errors: Vec<String> = parsed.diagnostics.iter().filter(|d| d.is_error()).map(ToString::to_string).collect();
        assert!(errors.is_empty(), "{errors:?}\n{}", conv.toml);
    }
    conv
}

#[test]
fn state_names_become_unique_valid_task_ids_named_in_the_comments() {
    let m = json!({"StartAt": "A b", "States": {
        "A b": {"Type": "Pass", "Next": "a_b"},
        "a_b": {"Type": "Pass", "Next": "A-b"},
        "A-b": {"Type": "Pass", "Next": "Line\nbreak \"quoted\" ]"},
        "Line\nbreak \"quoted\" ]": {"Type": "Wait", "Seconds": 1, "End": true}
    }});
    let conv = check(&m.to_string());
    for id in ["[tasks.a_b]", "[tasks.a_b_2]", "[tasks.a_b_3]", "[tasks.line_break_quoted]"] {
        assert!(conv.toml.contains(id), "{id} in {}", conv.toml);
    }
    assert!(conv.toml.contains("# From state `Line\\nbreak \"quoted\" ]` ($.States['Line\\nbreak"), "{}", conv.toml);
    assert!(!conv.report.has_rejections(), "{}", conv.report);
}

#[test]
fn hostile_values_are_reported_not_panicked_on() {
    let cases = [
        "",
        "null",
        "[]",
        "{}",
        "{\"StartAt\": 3, \"States\": []}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": null}}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": {\"Type\": \"Task\", \"Resource\": 1, \"End\": true}}}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": {\"Type\": \"Parallel\", \"Branches\": [1, {}], \"End\": true}}}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": {\"Type\": \"Task\", \"Resource\": \"arn:aws:states:::aws-sdk:glue:startCrawler\", \"Parameters\": {\"Name.$\": \"States.Format('{}{}', $.a\"}, \"End\": true}}}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": {\"Type\": \"Task\", \"Resource\": \"arn:aws:states:::aws-sdk:glue:startCrawler\", \"Parameters\": {\"Name.$\": \"States.Format('{}{}', $.a)\"}, \"End\": true}}}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": {\"Type\": \"Wait\", \"Seconds\": -1, \"End\": true}}}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": {\"Type\": \"Wait\", \"Timestamp\": \"soon\", \"End\": true}}}",
        "{\"StartAt\": \"S\", \"States\": {\"S\": {\"Type\": \"Task\", \"Resource\": \"arn:aws:states:::aws-sdk:glue:startCrawler\", \"Parameters\": {\"Name\": \"a\"}, \"Retry\": [{\"MaxAttempts\": 99999999, \"BackoffRate\": \"x\"}], \"End\": true}}}",
    ];
    for src in cases {
        let conv = check(src);
        assert!(conv.report.has_rejections(), "{src}: {}", conv.report);
    }
}

/// Every value of `v`, one at a time, replaced by `with`.
fn mutations(v: &Value, with: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                let mut replaced = m.clone();
                replaced.insert(k.clone(), with.clone());
                out.push(Value::Object(replaced));
                for mutated in mutations(inner, with) {
                    let mut deeper = m.clone();
                    deeper.insert(k.clone(), mutated);
                    out.push(Value::Object(deeper));
                }
            }
        }
        Value::Array(a) => {
            for (i, inner) in a.iter().enumerate() {
                for mutated in mutations(inner, with) {
                    let mut deeper = a.clone();
                    deeper[i] = mutated;
                    out.push(Value::Array(deeper));
                }
            }
        }
        _ => {}
    }
    out
}

#[test]
fn every_golden_machine_with_any_value_of_the_wrong_type_converts_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut tried = 0;
    for name in ["pipeline-emr", "pipeline-serverless", "polling-loop", "wait-pass-succeed-fail", "athena-query"] {
        let src = std::fs::read_to_string(dir.join(format!("{name}.asl.json"))).unwrap();
        let machine: Value = serde_json::from_str(&src).unwrap();
        for with in [json!(null), json!(-1), json!("$$.x"), json!([{}]), json!({"a.$": "$[0]"})] {
            for m in mutations(&machine, &with) {
                let conv = check(&m.to_string());
                tried += 1;
                // A mutated machine is either carried over or rejected with a code.
                for item in &conv.report.items {
                    assert!(item.level == Level::Mapped || !item.code.is_empty(), "{item:?}");
                }
            }
        }
    }
    assert!(tried > 1000, "{tried} machines tried");
}

#[test]
fn a_long_chain_converts_and_an_oversized_machine_is_refused() {
    let chain = |n: usize| {
        let mut states = serde_json::Map::new();
        for i in 0..n {
            let mut s = json!({"Type": "Pass", "Result": {"i": i}, "ResultPath": format!("$.r{}", i % 7)});
            if i + 1 < n {
                s["Next"] = json!(format!("S{}", i + 1));
            } else {
                s["End"] = json!(true);
            }
            states.insert(format!("S{i}"), s);
        }
        json!({"StartAt": "S0", "States": states}).to_string()
    };
    let conv = check(&chain(10_000));
    assert!(!conv.report.has_rejections(), "{}", conv.report.items.len());
    assert!(conv.toml.contains("[tasks.s9999]"));
    let conv = check(&chain(10_001));
    assert!(conv.report.to_string().contains("10001 states, over the limit of 10000"), "{}", conv.report);
}

/// The codes of a conversion's rejections.
fn rejected(conv: &sluice_asl::Conversion) -> Vec<(&'static str, String)> {
    conv.report.items.iter().filter(|i| i.level == Level::Rejected).map(|i| (i.code, i.path.clone())).collect()
}

#[test]
fn lambda_results_are_read_through_payload_and_what_cannot_be_carried_is_rejected() {
    // A function ARN without Parameters gets the state's input: here a Pass's constant.
    let m = json!({"StartAt": "Seed", "States": {
        "Seed": {"Type": "Pass", "Result": {"table": "orders", "limit": 5}, "Next": "Count"},
        "Count": {"Type": "Task", "Resource": "arn:aws:lambda:eu-west-1:123456789012:function:count", "Next": "Use"},
        "Use": {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun.sync",
                "Parameters": {"JobName": "load", "Arguments": {"--rows.$": "$.rows", "--first.$": "$.items[0]"}}, "End": true}
    }});
    let conv = check(&m.to_string());
    assert!(!conv.report.has_rejections(), "{}", conv.report);
    assert!(conv.toml.contains("payload = { limit = 5, table = \"orders\" }"), "{}", conv.toml);
    // The function's result is its payload: `$.rows` is `tasks.count.payload.rows`.
    assert!(conv.toml.contains("--rows = \"{{ tasks.count.payload.rows }}\""), "{}", conv.toml);
    assert!(conv.toml.contains("--first = \"{{ tasks.count.payload.items[0] }}\""), "{}", conv.toml);

    // lambda:invoke's result is Invoke's answer: only what is under Payload is kept.
    let m = json!({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": "f", "Payload": {}}, "ResultPath": "$.call", "Next": "Use"},
        "Use": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "g", "Payload": {"code.$": "$.call.StatusCode", "v.$": "$.call.Payload.v"}},
                "End": true}
    }});
    let conv = check(&m.to_string());
    assert_eq!(rejected(&conv), [("unresolved-jsonpath", "$.States.Use.Parameters.Payload.code".to_string())]);

    // A payload read whole from the input, and an invocation type Sluice does not make.
    let m = json!({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": "f", "Payload.$": "$.event", "InvocationType": "Event"}, "End": true}
    }});
    let conv = check(&m.to_string());
    let codes: Vec<&str> = rejected(&conv).iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, ["dynamic-value", "invalid-parameter"], "{}", conv.report);

    // Glue: no job name, and a number of workers read from the input.
    let m = json!({"StartAt": "Job", "States": {
        "Job": {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun.sync",
                "Parameters": {"NumberOfWorkers.$": "$.workers"}, "End": true}
    }});
    let conv = check(&m.to_string());
    let codes: Vec<&str> = rejected(&conv).iter().map(|(c, _)| *c).collect();
    assert!(codes.contains(&"dynamic-value") && codes.contains(&"missing-parameter"), "{}", conv.report);
}
