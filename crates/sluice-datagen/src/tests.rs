//! Tests of the written files against the contract: they read the CSVs back and classify every
//! transaction by its content alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};

use crate::dims::{LOCATIONS_HEADER, USERS_HEADER, VEHICLES_HEADER};
use crate::txns::TRANSACTIONS_HEADER;
use crate::*;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn config(from: &str, to: &str) -> Config {
    Config { transactions: 2_000, vehicles: 60, users: 300, locations: 12, ..Config::for_dates(d(from), d(to)) }
}

/// Splits a CSV line; a field in double quotes may hold commas (no escaped quotes here).
fn split(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn read(out: &Path, dataset: &str, date: NaiveDate) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(dataset_path(out, dataset, date)).unwrap();
    assert!(text.ends_with('\n'));
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines.map(split).collect();
    (header, rows)
}

/// Reads every file of a folder tree: relative path -> bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn ts(s: &str, fmt: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, fmt).ok()
}

/// A timestamp in one of the three accepted formats, with whether it was the standard one.
fn parse_any(s: &str) -> Option<(NaiveDateTime, bool)> {
    if let Some(t) = ts(s, "%Y-%m-%d %H:%M:%S") {
        return Some((t, true));
    }
    ts(s, "%Y-%m-%dT%H:%M:%S").or_else(|| ts(s, "%m/%d/%Y %H:%M")).map(|t| (t, false))
}

/// `^-?\d+\.\d\d$`
fn amount(s: &str) -> Option<f64> {
    let (int, dec) = s.strip_prefix('-').unwrap_or(s).split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    (digits(int) && dec.len() == 2 && digits(dec)).then(|| s.parse().unwrap())
}

struct Dims {
    rates: HashMap<String, f64>,
    users: HashSet<String>,
    locations: HashSet<String>,
}

fn dims(out: &Path, date: NaiveDate, c: &Config) -> Dims {
    let (h, vehicles) = read(out, "vehicles", date);
    assert_eq!(format!("{h}\n"), VEHICLES_HEADER);
    assert_eq!(vehicles.len(), c.vehicles as usize);
    let types = ["economy", "compact", "midsize", "suv", "luxury", "van"];
    for (i, v) in vehicles.iter().enumerate() {
        assert_eq!(v.len(), 6, "{v:?}");
        assert_eq!(v[0], format!("V{:05}", i + 1));
        assert!(types.contains(&v[1].as_str()), "{v:?}");
        assert!(!v[2].is_empty() && !v[3].is_empty());
        assert!((2016..=2025).contains(&v[4].parse::<i32>().unwrap()));
        assert!(amount(&v[5]).unwrap() >= 30.0, "{v:?}");
    }
    let (h, users) = read(out, "users", date);
    assert_eq!(format!("{h}\n"), USERS_HEADER);
    assert_eq!(users.len(), c.users as usize);
    let mut emails = HashSet::new();
    for (i, u) in users.iter().enumerate() {
        assert_eq!(u.len(), 6, "{u:?}");
        assert_eq!(u[0], format!("U{:06}", i + 1));
        assert!(u[3].contains('@') && emails.insert(u[3].clone()), "{u:?}");
        NaiveDate::parse_from_str(&u[4], "%Y-%m-%d").unwrap();
        assert!(u.iter().all(|f| !f.is_empty()));
    }
    let (h, locations) = read(out, "locations", date);
    assert_eq!(format!("{h}\n"), LOCATIONS_HEADER);
    assert_eq!(locations.len(), c.locations as usize);
    for (i, l) in locations.iter().enumerate() {
        assert_eq!(l.len(), 5, "{l:?}");
        assert_eq!(l[0], format!("L{:04}", i + 1));
        assert_eq!(l[3], "US");
        assert!(l[4].len() == 5 && l[4].bytes().all(|b| b.is_ascii_digit()), "{l:?}");
    }
    Dims {
        rates: vehicles.iter().map(|v| (v[0].clone(), amount(&v[5]).unwrap())).collect(),
        users: users.into_iter().map(|u| u[0].clone()).collect(),
        locations: locations.into_iter().map(|l| l[0].clone()).collect(),
    }
}

/// Classifies each transaction of a day by its content, checking along the way that a clean
/// row is valid in every way and that a dirty row is wrong in exactly one way. Returns the
/// count per kind (`None`: clean).
fn classify(out: &Path, date: NaiveDate, c: &Config) -> BTreeMap<Option<DirtyKind>, u64> {
    use DirtyKind::*;
    let dims = dims(out, date, c);
    let (h, rows) = read(out, "rental_transactions", date);
    assert_eq!(format!("{h}\n"), TRANSACTIONS_HEADER);
    assert_eq!(rows.len(), c.transactions as usize);
    let prefix = format!("T{}-", date.format("%Y%m%d"));
    let mut counts = BTreeMap::new();
    // Clean rows by id, and every id seen.
    let mut clean: HashMap<String, Vec<String>> = HashMap::new();
    let mut ids = HashSet::new();
    for row in &rows {
        assert_eq!(row.len(), 8, "{row:?}");
        let kind = (|| {
            if row.iter().any(String::is_empty) {
                assert_eq!(row.iter().filter(|f| f.is_empty()).count(), 1, "{row:?}");
                return Some(MissingValue);
            }
            if !ids.insert(row[0].clone()) {
                assert_eq!(clean.get(&row[0]), Some(row), "a duplicate copies an earlier clean row exactly");
                return Some(DuplicateId);
            }
            let (start, end) = match (parse_any(&row[5]), parse_any(&row[6])) {
                (Some(s), Some(e)) => (s, e),
                (s, e) => {
                    assert!(s.is_some() || e.is_some(), "only one timestamp is bad: {row:?}");
                    return Some(BadTimestamp);
                }
            };
            let Some(amt) = amount(&row[7]) else {
                assert!(row[7].parse::<f64>().is_err(), "not a number for Spark either: {row:?}");
                return Some(BadAmount);
            };
            if amt < 0.0 {
                return Some(NegativeAmount);
            }
            if end.0 < start.0 {
                return Some(EndBeforeStart);
            }
            if !dims.rates.contains_key(&row[2]) {
                return Some(UnknownVehicle);
            }
            if !dims.locations.contains(&row[3]) {
                return Some(UnknownLocation);
            }
            if !dims.users.contains(&row[1]) {
                return Some(UnknownUser);
            }
            assert_eq!(start.1, end.1, "both timestamps in the same format: {row:?}");
            (!start.1).then_some(AltTimestampFormat)
        })();
        // Whatever the kind, the rest of the row is clean.
        if kind != Some(MissingValue) {
            assert!(row[0].starts_with(&prefix) && row[0].len() == prefix.len() + 7, "{row:?}");
            assert!(dims.locations.contains(&row[4]), "the dropoff is always known: {row:?}");
            if kind != Some(UnknownUser) {
                assert!(dims.users.contains(&row[1]), "{row:?}");
            }
            if kind != Some(UnknownVehicle) {
                assert!(dims.rates.contains_key(&row[2]), "{row:?}");
            }
            if kind != Some(UnknownLocation) {
                assert!(dims.locations.contains(&row[3]), "{row:?}");
            }
            if kind != Some(BadAmount) {
                let amt = amount(&row[7]).unwrap().abs();
                assert!(amt > 0.0);
                if kind != Some(UnknownVehicle) {
                    let rate = dims.rates[&row[2]];
                    let days = (amt / rate).round();
                    assert!((days * rate - amt).abs() < 0.005 && (1.0..=7.0).contains(&days), "{row:?}");
                }
            }
            if kind != Some(BadTimestamp) {
                let (s, e) = (parse_any(&row[5]).unwrap().0, parse_any(&row[6]).unwrap().0);
                assert_eq!(s.date(), date, "{row:?}");
                let hours = (e - s).num_minutes().abs() as f64 / 60.0;
                assert!((2.0..=7.0 * 24.0).contains(&hours), "{row:?}");
                if kind != Some(EndBeforeStart) {
                    assert!(e > s, "{row:?}");
                }
                if kind != Some(BadAmount) && kind != Some(UnknownVehicle) {
                    let days = ((e - s).num_minutes().abs() as f64 / 1440.0).ceil().max(1.0);
                    let amt = amount(&row[7]).unwrap().abs();
                    assert!((dims.rates[&row[2]] * days - amt).abs() < 0.005, "amount = rate x days: {row:?}");
                }
            }
        }
        if kind.is_none() {
            clean.insert(row[0].clone(), row.clone());
        }
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

#[test]
fn clean_by_default_and_every_row_valid() {
    let dir = tempfile::tempdir().unwrap();
    let c = config("2026-03-01", "2026-03-02");
    let s = generate(&c, dir.path()).unwrap();
    assert_eq!(s.days.len(), 2);
    for day in &s.days {
        assert!(!day.skipped);
        assert_eq!(day.files.len(), 4);
        assert_eq!(day.clean, 2_000);
        assert!(day.dirty.values().all(|n| *n == 0) && day.dirty.len() == 10);
        assert_eq!(day.rows, Rows { vehicles: 60, users: 300, locations: 12, rental_transactions: 2_000 });
        let counts = classify(dir.path(), day.date, &c);
        assert_eq!(counts, BTreeMap::from([(None, 2_000)]));
        let size: u64 = day.files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
        assert_eq!(size, day.bytes);
    }
    // The ids of different days differ; the dimensions are the same.
    let ids = |date| read(dir.path(), "rental_transactions", d(date)).1.into_iter().map(|r| r[0].clone());
    let a: HashSet<_> = ids("2026-03-01").collect();
    assert!(ids("2026-03-02").all(|id| !a.contains(&id)));
    let files = tree(dir.path());
    for ds in ["vehicles", "users", "locations"] {
        assert_eq!(files[&format!("{ds}/2026-03-01/{ds}.csv")], files[&format!("{ds}/2026-03-02/{ds}.csv")]);
    }
    assert_eq!(files.len(), 8, "no temporary file left: {:?}", files.keys());
}

#[test]
fn exact_counts_per_kind_and_every_dirty_row_dirty_its_way() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config {
        shares: Shares::all(0.03).with(DirtyKind::DuplicateId, 0.05).with(DirtyKind::BadAmount, 0.0125),
        ..config("2026-02-28", "2026-03-01")
    };
    let s = generate(&c, dir.path()).unwrap();
    for day in &s.days {
        let expected: BTreeMap<DirtyKind, u64> = DirtyKind::ALL
            .iter()
            .map(|k| {
                (
                    *k,
                    match k {
                        DirtyKind::DuplicateId => 100,
                        DirtyKind::BadAmount => 25,
                        _ => 60,
                    },
                )
            })
            .collect();
        assert_eq!(day.dirty, expected);
        assert_eq!(day.clean, 2_000 - 8 * 60 - 100 - 25);
        assert_eq!(day.valid(), day.clean + 60);
        assert_eq!(day.invalid(), 7 * 60 + 100 + 25);
        let mut found = classify(dir.path(), day.date, &c);
        assert_eq!(found.remove(&None), Some(day.clean));
        let found: BTreeMap<DirtyKind, u64> = found.into_iter().map(|(k, n)| (k.unwrap(), n)).collect();
        assert_eq!(found, expected, "{}", day.date);
    }
}

#[test]
fn every_variant_of_a_dirty_kind_shows_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config { shares: Shares::all(0.09), ..config("2026-03-01", "2026-03-01") };
    let s = generate(&c, dir.path()).unwrap();
    assert_eq!(s.days[0].clean, 200);
    assert_eq!(s.days[0].valid(), 200 + 180);
    let text = std::fs::read_to_string(&s.days[0].files[3]).unwrap();
    for needle in [
        ",2026-13-45 99:00,",
        ",yesterday,",
        ",0000-00-00 00:00:00,",
        ",12/45/2026 10:00,",
        ",not a date,",
        ",N/A\n",
        ",unknown\n",
        ",$",
        ",\"",
        ",-",
        ",2026-03-01T",
        ",03/01/2026 ",
        ",,",
    ] {
        assert!(text.contains(needle), "no {needle:?}");
    }
    let found = classify(dir.path(), d("2026-03-01"), &c);
    assert_eq!(found[&None], 200);
    assert!(found.iter().filter(|(k, _)| k.is_some()).all(|(_, n)| *n == 180), "{found:?}");
    // A duplicate copies an earlier clean row: shares that leave none are refused.
    assert!(matches!(Config { shares: Shares::all(0.1), ..c }.validate(), Err(Error::NoCleanRowToDuplicate)));
}

#[test]
fn deterministic_and_a_day_alone_equals_the_day_in_a_range() {
    let c = Config { shares: Shares::all(0.02), ..config("2026-03-01", "2026-03-03") };
    let (a, b, one) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(&c, a.path()).unwrap();
    generate(&c, b.path()).unwrap();
    let ta = tree(a.path());
    assert_eq!(ta.len(), 12);
    assert_eq!(ta, tree(b.path()), "same config, same bytes");
    generate(&Config { from: d("2026-03-02"), to: d("2026-03-02"), ..c.clone() }, one.path()).unwrap();
    let t1 = tree(one.path());
    assert_eq!(t1.len(), 4);
    for (path, bytes) in &t1 {
        assert_eq!(&ta[path], bytes, "{path}");
    }
    // A different seed, a different day: different transactions.
    let other = tempfile::tempdir().unwrap();
    generate(&Config { seed: 7, ..c.clone() }, other.path()).unwrap();
    let to = tree(other.path());
    let tx = "rental_transactions/2026-03-01/rental_transactions.csv";
    assert_ne!(ta[tx], to[tx]);
    assert_ne!(ta[tx], ta["rental_transactions/2026-03-02/rental_transactions.csv"]);
}

#[test]
fn dimensions_depend_on_seed_and_size_only_and_grow_by_extension() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = Config { transactions: 10, ..config("2026-03-01", "2026-03-01") };
    let big = Config { vehicles: 90, users: 400, transactions: 50, shares: Shares::all(0.05), ..small.clone() };
    generate(&small, a.path()).unwrap();
    generate(&Config { from: d("2027-01-01"), to: d("2027-01-01"), ..big }, b.path()).unwrap();
    let small_v = std::fs::read_to_string(dataset_path(a.path(), "vehicles", d("2026-03-01"))).unwrap();
    let big_v = std::fs::read_to_string(dataset_path(b.path(), "vehicles", d("2027-01-01"))).unwrap();
    assert!(big_v.starts_with(&small_v));
    let small_l = std::fs::read(dataset_path(a.path(), "locations", d("2026-03-01"))).unwrap();
    let big_l = std::fs::read(dataset_path(b.path(), "locations", d("2027-01-01"))).unwrap();
    assert_eq!(small_l, big_l);
}

#[test]
fn if_missing_skips_landed_days_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config { if_missing: true, ..config("2026-03-01", "2026-03-03") };
    // 03-02 was landed by someone else (any .csv name); 03-03 has only a stray non-CSV file.
    let landed = dir.path().join("rental_transactions/2026-03-02/part-00000.csv");
    std::fs::create_dir_all(landed.parent().unwrap()).unwrap();
    std::fs::write(&landed, "theirs\n").unwrap();
    let stray = dir.path().join("rental_transactions/2026-03-03/.rental_transactions.csv.123-0.tmp");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, "half").unwrap();
    let s = generate(&c, dir.path()).unwrap();
    let skipped: Vec<_> = s.days.iter().map(|d| d.skipped).collect();
    assert_eq!(skipped, [false, true, false]);
    assert_eq!(s.days[1].files, Vec::<std::path::PathBuf>::new());
    assert_eq!(s.days[1].rows, Rows::default());
    assert_eq!(std::fs::read_to_string(&landed).unwrap(), "theirs\n");
    assert!(!dataset_path(dir.path(), "vehicles", d("2026-03-02")).exists(), "nothing of a skipped day");
    assert_eq!(s.files().count(), 8);

    // A second run skips everything and changes nothing.
    let before = tree(dir.path());
    let again = generate(&c, dir.path()).unwrap();
    assert!(again.days.iter().all(|d| d.skipped));
    assert_eq!(tree(dir.path()), before);

    // Without if_missing, our own files are rewritten (same bytes) and theirs left alone.
    generate(&Config { if_missing: false, ..c }, dir.path()).unwrap();
    let after = tree(dir.path());
    assert_eq!(after.len(), before.len() + 4, "the four files of 03-02");
    assert_eq!(std::fs::read_to_string(&landed).unwrap(), "theirs\n");
}

#[test]
fn a_failed_write_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x/y.csv");
    let err = write_atomic(&path, |w| {
        w.write_all(b"half a file")?;
        Err(io::Error::other("killed"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("y.csv") && err.to_string().contains("killed"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path().join("x")).unwrap().count(), 0);
}

#[test]
fn bad_configs_are_refused() {
    let c = config("2026-03-02", "2026-03-01");
    assert!(matches!(c.validate(), Err(Error::DatesReversed { .. })));
    let c = Config { users: 0, ..config("2026-03-01", "2026-03-01") };
    assert_eq!(c.validate().unwrap_err().to_string(), "the number of users must be at least 1");
    let c = Config { shares: Shares::all(0.2), ..config("2026-03-01", "2026-03-01") };
    assert!(matches!(c.validate(), Err(Error::SharesTooLarge { .. })));
    let c = Config {
        transactions: 3,
        shares: Shares::default().with(DirtyKind::BadAmount, 0.5).with(DirtyKind::UnknownUser, 0.5),
        ..config("2026-03-01", "2026-03-01")
    };
    assert!(matches!(c.validate(), Err(Error::RoundedCountsTooLarge { rows: 4, transactions: 3 })));
    let dir = tempfile::tempdir().unwrap();
    assert!(generate(&c, dir.path()).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written on a bad config");
}

#[test]
fn zero_transactions_and_tiny_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config { transactions: 0, vehicles: 1, users: 1, locations: 1, ..Config::default() };
    let s = generate(&c, dir.path()).unwrap();
    assert_eq!(s.days[0].date, d("2026-03-01"));
    let (_, rows) = read(dir.path(), "rental_transactions", d("2026-03-01"));
    assert!(rows.is_empty());
    let c = Config { transactions: 50, vehicles: 1, users: 1, locations: 1, shares: Shares::all(0.05), ..c };
    generate(&c, dir.path()).unwrap();
    classify(dir.path(), d("2026-03-01"), &c);
}

#[test]
fn summary_serializes_with_kind_names() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config { transactions: 100, shares: Shares::all(0.01), ..Config::default() };
    let s = generate(&c, dir.path()).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["days"][0]["date"], "2026-03-01");
    assert_eq!(v["days"][0]["dirty"]["alt_timestamp_format"], 1);
    assert_eq!(v["days"][0]["rows"]["rental_transactions"], 100);
    assert_eq!(v["days"][0]["skipped"], false);
}

/// Pinned output: if this fails, every generated file changed. That must be on purpose (and
/// said in the change), never a side effect: the Spark jobs' tests rely on these files.
#[test]
fn output_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config { transactions: 40, shares: Shares::all(0.05), ..Config::default() };
    generate(&c, dir.path()).unwrap();
    let line = |ds, n| {
        std::fs::read_to_string(dataset_path(dir.path(), ds, d("2026-03-01")))
            .unwrap()
            .lines()
            .nth(n)
            .unwrap()
            .to_string()
    };
    assert_eq!(line("vehicles", 1), "V00001,economy,Toyota,Yaris,2019,37.50");
    assert_eq!(line("users", 1), "U000001,Barbara,Rodriguez,barbara.rodriguez1@example.com,2019-03-22,San Diego");
    assert_eq!(line("locations", 1), "L0001,New York,NY,US,10038");
    assert_eq!(
        line("rental_transactions", 1),
        "T20260301-0000001,U001911,V00430,L0006,L0006,2026-03-01 00:09:56,2026-03-07 23:26:56,384.93"
    );
    assert_eq!(
        line("rental_transactions", 6),
        "T20260301-0000006,U000045,V00320,L0007,L0007,03/01/2026 10:29,03/05/2026 04:32,578.00"
    );
}
