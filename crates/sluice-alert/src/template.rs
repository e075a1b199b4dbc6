//! Webhook body templates: minijinja, the message's fields as variables ([`FIELDS`]), strict
//! about undefined names, and `secret('VAR')` for the value of an environment variable (a
//! routing key, a token), read at each render.
//!
//! A template is checked when the configuration loads ([`check`]: it compiles, and names only
//! the message's fields). An error never quotes the rendered body, which may hold secrets.

use std::cell::RefCell;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::message::FIELDS;
use crate::secret::SecretSource;

thread_local! {
    /// The secrets read by the render in progress on this thread (rendering is synchronous).
    static READ: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_function("secret", |name: String| -> Result<String, minijinja::Error> {
        let value = SecretSource::Env(name)
            .read()
            .map_err(|m| minijinja::Error::new(ErrorKind::InvalidOperation, format!("secret(): {m}")))?;
        let value = value.expose().to_string();
        READ.with(|r| r.borrow_mut().push(value.clone()));
        Ok(value)
    });
    env
}

/// The one line for a template error: its kind, detail and line, never the source's text.
fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line} of the template)"));
    }
    s
}

/// Whether a body template compiles and uses only the message's fields (and `secret`).
pub fn check(source: &str) -> Result<(), String> {
    let env = environment();
    let template =
        env.template_from_str(source).map_err(|e| format!("the template does not compile: {}", describe(&e)))?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !FIELDS.contains(&v.as_str()) && v != "secret")
        .collect();
    unknown.sort();
    if let Some(v) = unknown.first() {
        let hint = sluice_dag::diagnostic::suggest(v, FIELDS.iter().copied())
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_default();
        return Err(format!(
            "the template uses `{v}`, which is not a field of the message ({}){hint}",
            FIELDS.join(", ")
        ));
    }
    Ok(())
}

/// Renders `source` with `vars`; also returns the secrets it read (to keep them out of any
/// error text).
pub fn render(source: &str, vars: &Map<String, Value>) -> Result<(String, Vec<String>), String> {
    READ.with(|r| r.borrow_mut().clear());
    let env = environment();
    let out = env
        .template_from_str(source)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(vars))))
        .map_err(|e| format!("the body template failed: {}", describe(&e)));
    let read = READ.with(|r| std::mem::take(&mut *r.borrow_mut()));
    out.map(|body| (body, read))
}
