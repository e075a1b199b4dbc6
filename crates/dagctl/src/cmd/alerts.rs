//! `dagctl alerts`: the alerts the daemon queued and how their delivery went; a test message
//! to a channel.

use anyhow::{bail, Context, Result};
use sluice_alert::Notify;
use sluice_store::{AlertQuery, AlertState};

use crate::context::Ctx;
use crate::exit;

/// Alerts: recent ones and their delivery, or a test message to a channel.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AlertCommand,
}

#[derive(clap::Subcommand)]
enum AlertCommand {
    /// Recent alerts, newest first, with their delivery state.
    List {
        /// Only this DAG's.
        #[arg(long)]
        dag: Option<String>,
        /// Only these states (pending, delivered, failed; repeatable).
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Also each alert's delivery attempts.
        #[arg(long)]
        attempts: bool,
        #[arg(long)]
        json: bool,
    },
    /// Send a test message to a channel of sluice.toml (`slack:data-oncall`) and print what it
    /// answered; exit 1 when it fails.
    Test { channel: String },
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    match args.command {
        AlertCommand::List { dag, states, limit, attempts, json } => {
            let states = states
                .iter()
                .map(|s| s.parse::<AlertState>().map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            let store = ctx.store().await?;
            let alerts = store.alerts(&AlertQuery { dag_id: dag, states, limit: Some(limit) }).await?;
            if json {
                let mut out = Vec::with_capacity(alerts.len());
                for a in &alerts {
                    let mut v = serde_json::to_value(a)?;
                    if attempts {
                        v["attempts_made"] = serde_json::to_value(store.alert_attempts(a.id).await?)?;
                    }
                    out.push(v);
                }
                crate::output::json(&out)?;
                return Ok(exit::OK);
            }
            let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
            let mut rows = Vec::new();
            for a in &alerts {
                let title = a.message.get("title").and_then(|t| t.as_str()).unwrap_or("").to_string();
                let note = match a.state {
                    AlertState::Pending => {
                        a.next_attempt_at.map(|t| format!("next attempt {}", when(t))).unwrap_or_default()
                    }
                    AlertState::Delivered => a.delivered_at.map(|t| format!("at {}", when(t))).unwrap_or_default(),
                    AlertState::Failed => a.last_error.clone().unwrap_or_default(),
                };
                rows.push(vec![
                    a.id.to_string(),
                    when(a.created_at),
                    a.dag_id.clone(),
                    a.rule.clone(),
                    a.channel.clone(),
                    a.state.to_string(),
                    a.attempts.to_string(),
                    note,
                    title,
                ]);
                if attempts {
                    for t in store.alert_attempts(a.id).await? {
                        let verdict = if t.ok { "ok" } else { "failed" };
                        let blank = String::new;
                        rows.push(vec![
                            blank(),
                            when(t.at),
                            blank(),
                            blank(),
                            blank(),
                            format!("try {}", t.number),
                            verdict.into(),
                            blank(),
                            t.text,
                        ]);
                    }
                }
            }
            crate::output::table(
                &["ID", "CREATED", "DAG", "RULE", "CHANNEL", "STATE", "ATTEMPTS", "DELIVERY", "TITLE"],
                &rows,
            );
            Ok(exit::OK)
        }
        AlertCommand::Test { channel } => {
            let channel: sluice_dag::ChannelRef = channel.parse().map_err(anyhow::Error::msg)?;
            let notifier = crate::context::notifier(&ctx.config)?
                .context("sluice.toml declares no [channels]: there is nothing to test")?;
            if !notifier.declared().contains(&channel) {
                bail!("{channel} is not declared in sluice.toml (add {})", channel.table());
            }
            let message = sluice_alert::AlertMessage::test(&channel.to_string(), chrono::Utc::now());
            match notifier.send(&channel, &message).await {
                Ok(answer) => {
                    println!("{channel}: delivered ({answer})");
                    Ok(exit::OK)
                }
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!(
                        "{}",
                        if e.retryable { "(it may work later)" } else { "(it will not work as configured)" }
                    );
                    Ok(exit::FAILURE)
                }
            }
        }
    }
}
