//! `dagctl generate` as a user runs it: the real binary, real files, exit codes and output.

use std::path::Path;
use std::process::{Command, Output};

fn dagctl(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dagctl"))
        .current_dir(cwd)
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_DAGS")
        .env_remove("SLUICE_DB")
        .output()
        .expect("dagctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn writes_the_layout_and_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raw");
    let o = dagctl(
        dir.path(),
        &["generate", "--out", "raw", "--from", "2026-03-01", "--to", "2026-03-02", "--transactions", "500"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for date in ["2026-03-01", "2026-03-02"] {
        for (ds, header, rows) in [
            ("vehicles", "vehicle_id,vehicle_type,make,model,year,daily_rate", 500),
            ("users", "user_id,first_name,last_name,email,signup_date,city", 5000),
            ("locations", "location_id,city,state,country,zip_code", 50),
            (
                "rental_transactions",
                "transaction_id,user_id,vehicle_id,pickup_location_id,dropoff_location_id,start_time,end_time,total_amount",
                500,
            ),
        ] {
            let l = lines(&out.join(ds).join(date).join(format!("{ds}.csv")));
            assert_eq!(l[0], header);
            assert_eq!(l.len(), rows + 1, "{ds} {date}");
        }
    }
    let text = stdout(&o);
    assert!(text.contains("DATE        STATUS   VEHICLES  USERS  LOCATIONS  TRANSACTIONS  INVALID"), "{text}");
    assert!(text.contains("2026-03-02  written  500       5000   50         500           0"), "{text}");
    assert!(text.contains("wrote 8 files"), "{text}");
    // No database, no DAG folder needed: nothing else was created.
    let mut entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    entries.sort();
    assert_eq!(entries, ["raw"]);
}

#[test]
fn json_summary_with_exact_counts_and_if_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = [
        "generate",
        "--out",
        out,
        "--date",
        "2026-03-01",
        "--transactions",
        "1000",
        "--dirty",
        "0.01",
        "--dirty-kind",
        "duplicate_id=0.05",
        "--dirty-kind",
        "bad_amount=2%",
        "--json",
    ];
    let o = dagctl(dir.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let day = &v["days"][0];
    assert_eq!(day["date"], "2026-03-01");
    assert_eq!(day["skipped"], false);
    assert_eq!(day["rows"]["rental_transactions"], 1000);
    assert_eq!(day["dirty"]["duplicate_id"], 50);
    assert_eq!(day["dirty"]["bad_amount"], 20);
    assert_eq!(day["dirty"]["missing_value"], 10);
    assert_eq!(day["dirty"]["alt_timestamp_format"], 10);
    assert_eq!(day["clean"], 1000 - 8 * 10 - 50 - 20);
    assert_eq!(day["files"].as_array().unwrap().len(), 4);
    let tx = Path::new(out).join("rental_transactions/2026-03-01/rental_transactions.csv");
    let first = std::fs::read(&tx).unwrap();

    // Again with --if-missing: skipped, said so, file untouched.
    let mut again = args.to_vec();
    again.push("--if-missing");
    let o = dagctl(dir.path(), &again);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["days"][0]["skipped"], true);
    assert_eq!(v["days"][0]["files"], serde_json::json!([]));
    again.pop();
    again.retain(|a| *a != "--json");
    again.push("--if-missing");
    let o = dagctl(dir.path(), &again);
    assert!(
        stdout(&o).contains("2026-03-01: skipped, rental_transactions/2026-03-01/ already holds a .csv"),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read(&tx).unwrap(), first);

    // Without it: rewritten, byte for byte the same.
    std::fs::remove_dir_all(Path::new(out).join("vehicles")).unwrap();
    let o = dagctl(dir.path(), &args);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(std::fs::read(&tx).unwrap(), first);
    assert!(Path::new(out).join("vehicles/2026-03-01/vehicles.csv").exists());
}

#[test]
fn bad_arguments_exit_one_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["generate", "--out", "o", "--date", "2026-03-01"];
    let cases: &[(&[&str], &str)] = &[
        (&["--dirty", "1.5"], "`1.5` is not a share"),
        (&["--dirty", "abc"], "`abc` is not a share"),
        (&["--dirty-kind", "bad_amout=0.1"], "unknown kind of dirty row `bad_amout` (did you mean `bad_amount`?)"),
        (&["--dirty-kind", "bad_amount"], "`bad_amount` is not KIND=SHARE"),
        (&["--dirty-kind", "bad_amount=-0.1"], "`-0.1` is not a share"),
        (&["--dirty", "0.2"], "add up to 2.0000, more than 1"),
        (&["--dirty-kind", "bad_amount=0.6", "--dirty-kind", "unknown_user=0.6"], "add up to 1.2000, more than 1"),
        (&["--users", "0"], "the number of users must be at least 1"),
    ];
    for (extra, message) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let o = dagctl(dir.path(), &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
    let o = dagctl(dir.path(), &["generate", "--out", "o", "--from", "2026-03-05", "--to", "2026-03-01"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--to 2026-03-01 is before --from 2026-03-05"), "{}", stderr(&o));
    let o = dagctl(dir.path(), &["generate", "--out", "o", "--date", "2026-02-30"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--date `2026-02-30` is not a date"), "{}", stderr(&o));
    assert!(!dir.path().join("o").exists(), "nothing written on bad input");

    // Usage errors (no date, --date with --from) are clap's: exit 2.
    assert_eq!(dagctl(dir.path(), &["generate", "--out", "o"]).status.code(), Some(2));
    let o = dagctl(dir.path(), &["generate", "--out", "o", "--date", "2026-03-01", "--from", "2026-03-01"]);
    assert_eq!(o.status.code(), Some(2));
}
