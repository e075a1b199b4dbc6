//! Deterministic car-rental CSV data for the Sluice pipelines and their Spark jobs.
//!
//! # The data contract
//!
//! [`generate`] writes, for every date `D` (`yyyy-MM-dd`) of a range,
//! `{out}/{dataset}/{D}/{dataset}.csv` for the four datasets below: each day is a full snapshot
//! of the three dimensions plus that day's transactions. Every file has a header row, fields
//! are separated by `,`, lines end with `\n`, and no field is quoted except a `bad_amount` with
//! a decimal comma (`"12,50"`).
//!
//! | dataset | columns |
//! |---|---|
//! | `vehicles` | vehicle_id, vehicle_type, make, model, year, daily_rate |
//! | `users` | user_id, first_name, last_name, email, signup_date, city |
//! | `locations` | location_id, city, state, country, zip_code |
//! | `rental_transactions` | transaction_id, user_id, vehicle_id, pickup_location_id, dropoff_location_id, start_time, end_time, total_amount |
//!
//! - Ids: vehicles `V00001`, users `U000001`, locations `L0001` (numbered from 1, more digits
//!   past the width), transactions `T{yyyyMMdd}-{n:07}` (`T20260301-0000001`), unique across
//!   dates. Vehicle types are `economy`, `compact`, `midsize`, `suv`, `luxury`, `van`;
//!   `daily_rate` has two decimals; `signup_date` is `yyyy-MM-dd`; zip codes are five digits
//!   (leading zeros kept, read them as strings); emails are at `example.*` domains.
//! - The dimensions are always clean, and depend only on the seed and their size: they are
//!   byte-identical for every date of a run, and vehicle `n` is the same whatever the number of
//!   vehicles.
//! - A clean transaction has known user, vehicle and location ids, a `start_time` on its date
//!   and an `end_time` a few hours to seven days later, both `yyyy-MM-dd HH:mm:ss`, and a
//!   `total_amount` > 0 with two decimals equal to the vehicle's `daily_rate` x the rental's
//!   started days (`ceil(hours / 24)`, at least 1).
//! - A configurable share of each day's transactions is of each [`DirtyKind`], at most one kind
//!   per row, all other fields of the row clean: `missing_value` (one of the 8 fields empty),
//!   `bad_timestamp` (`start_time` or `end_time` unparseable: `2026-13-45 99:00`, `yesterday`,
//!   ...), `bad_amount` (`"12,50"`, `$12.50`, `N/A`, `unknown`), `negative_amount`,
//!   `end_before_start`, `duplicate_id` (an exact copy of an earlier clean row of the same day,
//!   transaction_id included), `unknown_vehicle`, `unknown_location` (the pickup only),
//!   `unknown_user`; plus `alt_timestamp_format`, valid rows the jobs must keep, whose two
//!   timestamps are `yyyy-MM-dd'T'HH:mm:ss` or `MM/dd/yyyy HH:mm` (then on a whole minute).
//!   The number of rows of a kind is exact: `round(share x transactions)` (half away from
//!   zero), the same every day, and reported in the [`Summary`]. Shares default to 0.
//! - Deterministic: the same [`Config`] gives byte-identical files. A date's files depend only
//!   on the seed, the sizes, the shares and that date, not on the rest of the range: the
//!   transactions' random stream (ChaCha8) is keyed by the seed and the date.
//! - Files are written to a temporary name in their folder and renamed into place, the day's
//!   `rental_transactions.csv` last: a killed generator leaves no partial `.csv`. With
//!   [`Config::if_missing`], a date whose `rental_transactions/{D}/` already holds a `.csv`
//!   (its input landed by someone else) is skipped and nothing of it is written.
//!
//! ```no_run
//! use chrono::NaiveDate;
//! use sluice_datagen::{generate, Config, DirtyKind, Shares};
//!
//! let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
//! let config = Config {
//!     transactions: 100_000,
//!     shares: Shares::all(0.01).with(DirtyKind::DuplicateId, 0.05),
//!     ..Config::for_dates(day, day)
//! };
//! let summary = generate(&config, "/tmp/raw".as_ref())?;
//! assert_eq!(summary.days[0].dirty[&DirtyKind::DuplicateId], 5_000);
//! # Ok::<(), sluice_datagen::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use serde::Serialize;

mod dims;
mod fmt;
mod kinds;
mod rng;
mod txns;

#[cfg(test)]
mod tests;

pub use kinds::{parse_kind_share, parse_share, DirtyKind, Shares};

/// The four datasets, in the order they are written (transactions last).
pub const DATASETS: [&str; 4] = ["vehicles", "users", "locations", "rental_transactions"];

pub const DEFAULT_TRANSACTIONS: u32 = 10_000;
pub const DEFAULT_VEHICLES: u32 = 500;
pub const DEFAULT_USERS: u32 = 5_000;
pub const DEFAULT_LOCATIONS: u32 = 50;
pub const DEFAULT_SEED: u64 = 42;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// First date.
    pub from: NaiveDate,
    /// Last date (inclusive).
    pub to: NaiveDate,
    /// Transactions per day (dirty rows included).
    pub transactions: u32,
    pub vehicles: u32,
    pub users: u32,
    pub locations: u32,
    pub seed: u64,
    /// The share of each day's transactions of each kind.
    pub shares: Shares,
    /// Skip a date whose `rental_transactions/{date}/` already holds a `.csv`.
    pub if_missing: bool,
}

impl Config {
    /// The defaults (10,000 clean transactions a day, 500 vehicles, 5,000 users, 50
    /// locations, seed 42) for `from..=to`.
    pub fn for_dates(from: NaiveDate, to: NaiveDate) -> Config {
        Config {
            from,
            to,
            transactions: DEFAULT_TRANSACTIONS,
            vehicles: DEFAULT_VEHICLES,
            users: DEFAULT_USERS,
            locations: DEFAULT_LOCATIONS,
            seed: DEFAULT_SEED,
            shares: Shares::default(),
            if_missing: false,
        }
    }

    /// Checks the config; returns the exact number of rows of each kind per day
    /// (`DirtyKind::ALL` order).
    pub fn validate(&self) -> Result<[u64; DirtyKind::ALL.len()], Error> {
        if self.to < self.from {
            return Err(Error::DatesReversed { from: self.from, to: self.to });
        }
        for (what, n) in [("vehicles", self.vehicles), ("users", self.users), ("locations", self.locations)] {
            if n == 0 {
                return Err(Error::ZeroSize(what));
            }
        }
        self.shares.validate()?;
        let counts = self.shares.counts(self.transactions);
        let total: u64 = counts.iter().sum();
        if total > u64::from(self.transactions) {
            return Err(Error::RoundedCountsTooLarge { rows: total, transactions: self.transactions });
        }
        if counts[DirtyKind::DuplicateId.index()] > 0 && total == u64::from(self.transactions) {
            return Err(Error::NoCleanRowToDuplicate);
        }
        Ok(counts)
    }

    /// The dates, in order.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| *d <= self.to)
    }
}

impl Default for Config {
    /// The defaults for one day, 2026-03-01.
    fn default() -> Config {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).expect("valid date");
        Config::for_dates(day, day)
    }
}

/// Why generation did not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the last date {to} is before the first date {from}")]
    DatesReversed { from: NaiveDate, to: NaiveDate },
    #[error("the number of {0} must be at least 1")]
    ZeroSize(&'static str),
    #[error("the share of `{kind}` rows is {share}: a share is between 0 and 1")]
    ShareOutOfRange { kind: DirtyKind, share: f64 },
    #[error("`{0}` is not a share: give a number between 0 and 1 (0.05) or a percentage (5%)")]
    BadShare(String),
    #[error("`{0}` is not KIND=SHARE (for example bad_amount=0.02)")]
    BadKindShare(String),
    #[error(
        "unknown kind of dirty row `{name}`{}; the kinds are: {}",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
        DirtyKind::ALL.map(DirtyKind::name).join(", ")
    )]
    UnknownKind { name: String, suggestion: Option<String> },
    #[error("the shares of the 10 kinds of rows add up to {total:.4}, more than 1 (a share set for all kinds is given to each of them)")]
    SharesTooLarge { total: f64 },
    #[error("the shares make {rows} special rows out of {transactions} transactions once rounded to whole rows: lower a share")]
    RoundedCountsTooLarge { rows: u64, transactions: u32 },
    #[error("duplicate_id rows copy an earlier clean row, but the shares leave no row clean")]
    NoCleanRowToDuplicate,
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// What [`generate`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub out_dir: PathBuf,
    pub seed: u64,
    pub days: Vec<DaySummary>,
}

impl Summary {
    /// Every file written, in order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.days.iter().flat_map(|d| d.files.iter().map(PathBuf::as_path))
    }
}

/// What was done for one date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySummary {
    pub date: NaiveDate,
    /// True when `if_missing` found the day's transactions already there: nothing written.
    pub skipped: bool,
    /// Data rows written per dataset (headers not counted; all 0 when skipped).
    pub rows: Rows,
    /// Transactions of no kind: clean, in the standard timestamp format.
    pub clean: u64,
    /// Transactions of each kind, every kind listed (`alt_timestamp_format` rows are valid).
    pub dirty: BTreeMap<DirtyKind, u64>,
    /// Files written, in order.
    pub files: Vec<PathBuf>,
    /// Bytes written.
    pub bytes: u64,
}

impl DaySummary {
    /// Transactions the jobs must keep after dropping the invalid ones and the duplicates:
    /// clean plus `alt_timestamp_format` rows.
    pub fn valid(&self) -> u64 {
        self.clean + self.dirty.get(&DirtyKind::AltTimestampFormat).copied().unwrap_or(0)
    }

    /// Transactions of a kind that makes them invalid (every kind but `alt_timestamp_format`).
    pub fn invalid(&self) -> u64 {
        self.dirty.iter().filter(|(k, _)| k.is_invalid()).map(|(_, n)| n).sum()
    }
}

/// Data rows per dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rows {
    pub vehicles: u64,
    pub users: u64,
    pub locations: u64,
    pub rental_transactions: u64,
}

/// `{out}/{dataset}/{date}/{dataset}.csv`.
pub fn dataset_path(out_dir: &Path, dataset: &str, date: NaiveDate) -> PathBuf {
    out_dir.join(dataset).join(date.to_string()).join(format!("{dataset}.csv"))
}

/// Writes the files of every date of `config` under `out_dir` (created when missing).
pub fn generate(config: &Config, out_dir: &Path) -> Result<Summary, Error> {
    let counts = config.validate()?;
    let dims = dims::Dimensions::generate(config.seed, config.vehicles, config.users, config.locations);
    let mut days = Vec::new();
    for date in config.dates() {
        let mut day = DaySummary {
            date,
            skipped: false,
            rows: Rows::default(),
            clean: 0,
            dirty: DirtyKind::ALL.iter().map(|k| (*k, 0)).collect(),
            files: Vec::new(),
            bytes: 0,
        };
        if config.if_missing && has_csv(&out_dir.join("rental_transactions").join(date.to_string()))? {
            day.skipped = true;
            days.push(day);
            continue;
        }
        for (dataset, data) in
            [("vehicles", &dims.vehicles_csv), ("users", &dims.users_csv), ("locations", &dims.locations_csv)]
        {
            let path = dataset_path(out_dir, dataset, date);
            day.bytes += write_atomic(&path, |w| w.write_all(data))?;
            day.files.push(path);
        }
        let path = dataset_path(out_dir, "rental_transactions", date);
        day.bytes +=
            write_atomic(&path, |w| txns::write_day(w, &dims, config.seed, date, config.transactions, &counts))?;
        day.files.push(path);
        day.rows = Rows {
            vehicles: config.vehicles.into(),
            users: config.users.into(),
            locations: config.locations.into(),
            rental_transactions: config.transactions.into(),
        };
        day.dirty = DirtyKind::ALL.iter().map(|k| (*k, counts[k.index()])).collect();
        day.clean = u64::from(config.transactions) - counts.iter().sum::<u64>();
        days.push(day);
    }
    Ok(Summary { out_dir: out_dir.to_path_buf(), seed: config.seed, days })
}

/// Whether the folder exists and holds a `.csv` (a landed day).
fn has_csv(dir: &Path) -> Result<bool, Error> {
    let io_err = |source| Error::Io { path: dir.to_path_buf(), source };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err)?;
        let is_dir = entry.file_type().map_err(io_err)?.is_dir();
        if !is_dir && entry.file_name().to_string_lossy().ends_with(".csv") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes a file through a temporary name in its folder (`.NAME.PID-N.tmp`, which is not a
/// `.csv`), then renames it into place; returns its size. On error the temporary file is
/// removed and the destination is untouched.
fn write_atomic(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> Result<u64, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("dataset paths have a folder");
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path.file_name().expect("dataset paths have a name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        let len = file.metadata()?.len();
        drop(file);
        fs::rename(&tmp, path)?;
        Ok(len)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path)(e)
    })
}
