//! `dagctl generate --out DIR --date D`: deterministic car-rental CSV data (sluice-datagen).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use sluice_datagen::{generate, parse_kind_share, parse_share, Config, DirtyKind, Shares, Summary};

use crate::exit;

/// Write car-rental CSV data: OUT/DATASET/DATE/DATASET.csv for vehicles, users, locations and
/// rental_transactions, one folder per date. Same arguments, same bytes.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("dates").required(true).args(["date", "from"])))]
pub struct Args {
    /// Output folder (created when missing).
    #[arg(long)]
    out: PathBuf,
    /// The date to generate (YYYY-MM-DD).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    date: Option<String>,
    /// First date of a range (with --to).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// Last date of a range, inclusive (with --from).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Transactions per day, dirty rows included.
    #[arg(long, default_value_t = sluice_datagen::DEFAULT_TRANSACTIONS)]
    transactions: u32,
    /// Vehicles (the same every day).
    #[arg(long, default_value_t = sluice_datagen::DEFAULT_VEHICLES)]
    vehicles: u32,
    /// Users (the same every day).
    #[arg(long, default_value_t = sluice_datagen::DEFAULT_USERS)]
    users: u32,
    /// Rental locations (the same every day).
    #[arg(long, default_value_t = sluice_datagen::DEFAULT_LOCATIONS)]
    locations: u32,
    /// Random seed.
    #[arg(long, default_value_t = sluice_datagen::DEFAULT_SEED)]
    seed: u64,
    /// Share of the transactions for EACH of the 10 kinds of special rows (0.01 = 1% of each,
    /// 10% in all); a number in 0..1 or a percentage [default: 0, all clean].
    #[arg(long, value_name = "SHARE")]
    dirty: Option<String>,
    /// Share for one kind, over --dirty (repeatable): missing_value, bad_timestamp, bad_amount,
    /// negative_amount, end_before_start, duplicate_id, unknown_vehicle, unknown_location,
    /// unknown_user, alt_timestamp_format.
    #[arg(long, value_name = "KIND=SHARE")]
    dirty_kind: Vec<String>,
    /// Skip a date whose rental_transactions/DATE/ folder already holds a .csv.
    #[arg(long)]
    if_missing: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let date = |flag: &str, s: &str| -> Result<NaiveDate> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| format!("--{flag} `{s}` is not a date (YYYY-MM-DD)"))
    };
    let (from, to) = match (&args.date, &args.from, &args.to) {
        (Some(d), _, _) => (date("date", d)?, date("date", d)?),
        (None, Some(f), Some(t)) => (date("from", f)?, date("to", t)?),
        _ => anyhow::bail!("give --date, or --from and --to"),
    };
    if to < from {
        anyhow::bail!("--to {to} is before --from {from}");
    }
    let mut shares = match &args.dirty {
        Some(s) => Shares::all(parse_share(s).context("--dirty")?),
        None => Shares::default(),
    };
    for ks in &args.dirty_kind {
        let (kind, share) = parse_kind_share(ks).context("--dirty-kind")?;
        shares.set(kind, share);
    }
    let config = Config {
        from,
        to,
        transactions: args.transactions,
        vehicles: args.vehicles,
        users: args.users,
        locations: args.locations,
        seed: args.seed,
        shares,
        if_missing: args.if_missing,
    };
    let started = Instant::now();
    let summary = match generate(&config, &args.out) {
        Err(e @ sluice_datagen::Error::SharesTooLarge { .. }) if args.dirty.is_some() => {
            return Err(anyhow::Error::new(e).context(format!(
                "--dirty {} is the share of EACH of the {} kinds of rows",
                args.dirty.as_deref().unwrap_or_default(),
                DirtyKind::ALL.len()
            )))
        }
        r => r?,
    };
    if args.json {
        crate::output::json(&summary)?;
    } else {
        print(&summary, started.elapsed().as_secs_f64());
    }
    Ok(exit::OK)
}

fn print(summary: &Summary, secs: f64) {
    let rows: Vec<Vec<String>> = summary
        .days
        .iter()
        .map(|d| {
            if d.skipped {
                let dash = || "-".to_string();
                vec![d.date.to_string(), "skipped".into(), dash(), dash(), dash(), dash(), dash(), dash()]
            } else {
                vec![
                    d.date.to_string(),
                    "written".into(),
                    d.rows.vehicles.to_string(),
                    d.rows.users.to_string(),
                    d.rows.locations.to_string(),
                    d.rows.rental_transactions.to_string(),
                    d.invalid().to_string(),
                    mib(d.bytes),
                ]
            }
        })
        .collect();
    crate::output::table(
        &["DATE", "STATUS", "VEHICLES", "USERS", "LOCATIONS", "TRANSACTIONS", "INVALID", "SIZE"],
        &rows,
    );
    for d in summary.days.iter().filter(|d| d.skipped) {
        println!("{}: skipped, rental_transactions/{}/ already holds a .csv (--if-missing)", d.date, d.date);
    }
    if let Some(d) = summary.days.iter().find(|d| !d.skipped) {
        let kinds: Vec<String> =
            DirtyKind::ALL.iter().filter(|k| d.dirty[k] > 0).map(|k| format!("{k} {}", d.dirty[k])).collect();
        if !kinds.is_empty() {
            println!("special rows per day: {}", kinds.join(", "));
        }
    }
    let files = summary.files().count();
    let bytes: u64 = summary.days.iter().map(|d| d.bytes).sum();
    println!(
        "wrote {files} file{} ({}) under {} in {secs:.2}s",
        if files == 1 { "" } else { "s" },
        mib(bytes),
        summary.out_dir.display()
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
