//! `dagctl tokens`: API tokens (create prints the secret once; only its hash is stored).

use anyhow::{bail, Result};
use sluice_api::Role;

use crate::context::Ctx;
use crate::exit;

/// Manage the HTTP API's tokens.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once: only its hash is kept).
    Create {
        /// A name to know it by (unique among live tokens), e.g. `ci`.
        #[arg(long)]
        name: String,
        /// viewer (reads), operator (also trigger, backfill, clear, mark, pause), admin (also tokens).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// How long it is valid, e.g. `90d`; default: until revoked.
        #[arg(long)]
        expires: Option<sluice_dag::Duration>,
        /// Print JSON (with the token) instead of the token alone.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke the live token of that name.
    Revoke { name: String },
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let store = ctx.store().await?;
    let now = chrono::Utc::now();
    match args.command {
        TokenCommand::Create { name, role, expires, json } => {
            let role = Role::parse(&role).map_err(anyhow::Error::msg)?;
            let created =
                sluice_api::auth::create_token(store.as_ref(), &name, role, expires.map(|d| d.as_std()), now).await?;
            if json {
                crate::output::json(&created)?;
            } else {
                println!("{}", created.token);
                eprintln!(
                    "token `{}` ({}) created{}; it is shown only now",
                    created.row.name,
                    created.row.role,
                    created.row.expires_at.map(|e| format!(", expires {}", e.to_rfc3339())).unwrap_or_default()
                );
            }
        }
        TokenCommand::List { json } => {
            let tokens = store.tokens().await?;
            if json {
                crate::output::json(&tokens)?;
            } else {
                let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
                };
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        let state = if t.revoked_at.is_some() {
                            "revoked"
                        } else if t.expires_at.is_some_and(|e| e <= now) {
                            "expired"
                        } else {
                            "live"
                        };
                        vec![
                            t.name.clone(),
                            t.role.clone(),
                            state.into(),
                            when(Some(t.created_at)),
                            when(t.expires_at),
                            when(t.last_used_at),
                        ]
                    })
                    .collect();
                crate::output::table(&["NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST USED"], &rows);
            }
        }
        TokenCommand::Revoke { name } => match store.revoke_token(&name, now).await? {
            Some(t) => println!("token `{}` revoked", t.name),
            None => bail!("no live token is named `{name}` (dagctl tokens list)"),
        },
    }
    Ok(exit::OK)
}
