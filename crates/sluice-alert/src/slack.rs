//! The Slack message: an incoming webhook's JSON with `text` (the fallback notifications show)
//! and `blocks`: the title, the DAG, run, task, state and logical date, the error, the log's
//! last lines in a code block, and a link to the run. Within Slack's limits (3,000 characters a
//! text, 150 a header), cut from the front for logs (their end matters), from the back for the
//! rest.

use chrono::SecondsFormat;
use serde_json::{json, Value};

use crate::message::{cut_chars, cut_front, last_lines, AlertMessage, LOG_TAIL_LINES};

/// Slack's limit on a section's text, less room for the code fence and the heading.
const SECTION_TEXT: usize = 2900;
/// Slack's limit on a header's text.
const HEADER_TEXT: usize = 150;
/// The most digest items listed in the message.
const DIGEST_ITEMS: usize = 20;

/// `&`, `<` and `>` as Slack's mrkdwn wants them.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A code block holding `text` (its own fences defused).
fn code(text: &str) -> String {
    format!("```{}```", escape(&text.replace("```", "'''")))
}

/// The incoming-webhook payload for `msg`, with `link` to the run when known.
pub fn payload(msg: &AlertMessage, link: Option<&str>) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": cut_chars(&msg.title, HEADER_TEXT), "emoji": false },
    })];
    let mut fields = vec![field("DAG", &msg.dag_id)];
    for (name, v) in
        [("Run", &msg.run_id), ("Task", &msg.task_id), ("State", &msg.state), ("Logical date", &msg.logical_date)]
    {
        if let Some(v) = v {
            fields.push(field(name, v));
        }
    }
    blocks.push(json!({ "type": "section", "fields": fields }));
    if let Some(e) = &msg.error {
        blocks.push(section(&format!("*Error*\n{}", code(&cut_chars(e.trim_end(), SECTION_TEXT - 20)))));
    }
    if let Some(t) = &msg.log_tail {
        let tail = cut_front(&last_lines(t, LOG_TAIL_LINES), SECTION_TEXT - 40);
        blocks.push(section(&format!("*Last lines of the log*\n{}", code(&tail))));
    }
    let items = msg.digested();
    if !items.is_empty() {
        let mut list: Vec<String> =
            items.iter().rev().take(DIGEST_ITEMS).map(|m| format!("• {}", escape(&m.summary()))).collect();
        let count = msg.details.get("count").and_then(Value::as_u64).unwrap_or(items.len() as u64);
        if count > list.len() as u64 {
            list.push(format!("• and {} more", count - list.len() as u64));
        }
        blocks.push(section(&cut_chars(&list.join("\n"), SECTION_TEXT)));
    }
    if let Some(l) = link {
        blocks.push(section(&format!("<{}|Open the run>", l.replace('|', "%7C").replace('>', "%3E"))));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!(
            "Sluice · `{}` · {}", escape(&msg.rule), msg.at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ) }],
    }));
    json!({ "text": escape(&cut_chars(&fallback(msg), SECTION_TEXT)), "blocks": blocks })
}

/// The notification's one-line text.
fn fallback(msg: &AlertMessage) -> String {
    match (&msg.task_id, &msg.error) {
        (Some(t), Some(e)) => {
            format!("{} (task {t}: {})", msg.title, e.lines().next().unwrap_or_default())
        }
        _ => msg.title.clone(),
    }
}

fn field(name: &str, value: &str) -> Value {
    json!({ "type": "mrkdwn", "text": format!("*{name}*\n{}", escape(&cut_chars(value, 1900))) })
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}
