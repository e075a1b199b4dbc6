"""The Athena questions of the car-rental pipelines, answered locally with DuckDB.

    python3 spark/car_rental_report.py --processed DIR --sql DIR --date YYYY-MM-DD --out FILE.md

Creates DuckDB views named like the Glue tables (location_performance, user_spending, ...) over
the Parquet written by the two KPI jobs ({processed}/{table}/ds=<date>/*.parquet, ds typed
VARCHAR as the crawler catalogs it), runs the very SQL files of the Athena tasks (dags/sql/)
with {{ ds }} replaced by the date, and writes a Markdown report to --out and the same results
as JSON next to it (FILE.json). The last line printed is the report's path. Exit status 1, with
a one-line message, when the date's partitions are missing or a query cannot run.
"""

import argparse
import datetime
import decimal
import json
import os
import re
import sys

import duckdb

# Tables of the two KPI jobs, and the ones the report needs for the date.
TABLES = [
    "location_performance",
    "vehicle_type_performance",
    "daily_revenue",
    "user_spending",
    "top_spending_users",
    "transactions_by_hour",
    "transactions_by_weekday",
    "dq_vehicle_location_metrics",
    "dq_user_transaction_metrics",
]
REQUIRED = [
    "location_performance",
    "vehicle_type_performance",
    "daily_revenue",
    "user_spending",
    "dq_vehicle_location_metrics",
    "dq_user_transaction_metrics",
]
# The queries, in report order: (file stem, heading).
QUERIES = [
    ("daily_summary", "Daily summary"),
    ("top_revenue_locations", "Top revenue pickup locations"),
    ("most_rented_vehicle_type", "Most rented vehicle type"),
    ("top_spending_users", "Top spending users"),
]
DQ_JOBS = ["vehicle_location_metrics", "user_transaction_metrics"]
# Display order of the data-quality counts (the order the jobs check in).
DATASET_ORDER = ["rental_transactions", "users", "vehicles", "locations"]
REASON_ORDER = [
    "missing_value",
    "bad_timestamp",
    "bad_amount",
    "negative_amount",
    "end_before_start",
    "wrong_date",
    "duplicate_id",
    "unknown_user",
    "unknown_vehicle",
    "unknown_location",
]

TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)


class ReportError(Exception):
    pass


def render(sql, date, name):
    """Replace {{ ds }}; any other template expression is an error."""

    def substitute(match):
        expr = match.group(1).strip()
        if expr != "ds":
            raise ReportError(
                f"{name}: unsupported template expression {{{{ {expr} }}}} "
                "(only {{ ds }} can be rendered locally)"
            )
        return date

    rendered = TEMPLATE.sub(substitute, sql)
    if "{{" in rendered or "{%" in rendered:
        raise ReportError(f"{name}: unsupported template syntax left after rendering")
    return rendered


def partition_files(processed, table, date):
    folder = os.path.join(processed, table, f"ds={date}")
    if not os.path.isdir(folder):
        return folder, []
    return folder, [f for f in os.listdir(folder) if f.endswith(".parquet")]


def sql_string(value):
    return "'" + value.replace("'", "''") + "'"


def connect(processed, date):
    missing = []
    for table in REQUIRED:
        folder, files = partition_files(processed, table, date)
        if not files:
            missing.append(folder)
    if missing:
        raise ReportError(f"no data for {date}: missing partition(s) {', '.join(missing)}")
    con = duckdb.connect()
    for table in TABLES:
        if not os.path.isdir(os.path.join(processed, table)):
            continue
        glob = os.path.join(processed, table, "*", "*.parquet")
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_string(glob)}, "
            "hive_partitioning = true, hive_types = {'ds': VARCHAR})"
        )
    return con


def plain(value):
    """A DuckDB value as a JSON value."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def query(con, sql):
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, (plain(v) for v in row))) for row in cursor.fetchall()]


def data_quality(con, date):
    out = {}
    for job in DQ_JOBS:
        rows = query(
            con,
            f'SELECT dataset, reason, "rows" FROM dq_{job} WHERE ds = {sql_string(date)}',
        )

        def order(row):
            ds, reason = row["dataset"], row["reason"]
            return (
                DATASET_ORDER.index(ds) if ds in DATASET_ORDER else len(DATASET_ORDER),
                ds,
                reason == "kept",
                REASON_ORDER.index(reason) if reason in REASON_ORDER else len(REASON_ORDER),
                reason,
            )

        job_counts = {}
        for row in sorted(rows, key=order):
            job_counts.setdefault(row["dataset"], {})[row["reason"]] = row["rows"]
        out[job] = job_counts
    return out


def cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows):
    if not rows:
        return "(no rows)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def markdown(date, results, dq):
    parts = [f"# Car-rental report for {date}\n\n"]
    parts.append(
        "The questions of the Athena tasks (dags/sql/), answered by DuckDB over the Parquet "
        "tables of the two KPI jobs.\n"
    )
    summary = results["daily_summary"]
    parts.append("\n## Daily summary\n\n")
    if summary:
        parts.append("| metric | value |\n|---|---|\n")
        parts.append("".join(f"| {k} | {cell(v)} |\n" for k, v in summary[0].items()))
    else:
        parts.append("(no rows)\n")
    for name, heading in QUERIES[1:]:
        parts.append(f"\n## {heading}\n\n")
        parts.append(markdown_table(results[name]))
    parts.append("\n## Data quality\n")  # one table per job below
    for job, datasets in dq.items():
        parts.append(f"\n### {job}\n\n")
        rows = [
            {"dataset": ds, "reason": reason, "rows": n}
            for ds, counts in datasets.items()
            for reason, n in counts.items()
        ]
        parts.append(markdown_table(rows))
    return "".join(parts)


def report(processed, sql_dir, date, out):
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise ReportError(f"--date must be YYYY-MM-DD, got {date!r}") from None
    queries = {}
    for name, _ in QUERIES:
        path = os.path.join(sql_dir, f"{name}.sql")
        try:
            with open(path, encoding="utf-8") as f:
                queries[name] = render(f.read(), date, path)
        except OSError as err:
            raise ReportError(f"cannot read {path}: {err.strerror}") from None
    con = connect(processed, date)
    results = {}
    for name, _ in QUERIES:
        try:
            results[name] = query(con, queries[name])
        except duckdb.Error as err:
            first = str(err).splitlines()[0]
            raise ReportError(f"{name}.sql failed: {first}") from None
    dq = data_quality(con, date)

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(markdown(date, results, dq))
    json_path = json_path_for(out)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(
            {"date": date, "queries": {n: results[n] for n, _ in QUERIES}, "data_quality": dq},
            f,
            indent=2,
        )
        f.write("\n")
    return out, json_path


def json_path_for(out):
    root, ext = os.path.splitext(out)
    return (root if ext.lower() == ".md" else out) + ".json"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="car_rental_report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--processed", required=True, help="root of the job outputs")
    parser.add_argument("--sql", required=True, help="folder of the Athena SQL files (dags/sql)")
    parser.add_argument("--date", required=True, help="the day, YYYY-MM-DD")
    parser.add_argument("--out", required=True, help="the Markdown report to write")
    args = parser.parse_args(argv)
    try:
        out, json_path = report(args.processed, args.sql, args.date, args.out)
    except ReportError as err:
        print(f"car_rental_report: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {json_path}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
