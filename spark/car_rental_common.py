"""Shared reading, parsing and cleaning for the car-rental Spark jobs.

One implementation of the data contract of spark/README.md, used by
vehicle_location_metrics.py, user_transaction_metrics.py and star_schema_etl.py. On EMR and
EMR Serverless this file is shipped with `--py-files`; locally the jobs import it from their
own folder.

DataFrame API only (no Python UDFs, no RDD lambdas): no Python worker processes are started.
"""

import argparse
import datetime
import functools
import sys

from pyspark.sql import Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

# Columns of each raw dataset, in the order of the CSV header.
DATASETS = {
    "vehicles": ["vehicle_id", "vehicle_type", "make", "model", "year", "daily_rate"],
    "users": ["user_id", "first_name", "last_name", "email", "signup_date", "city"],
    "locations": ["location_id", "city", "state", "country", "zip_code"],
    "rental_transactions": [
        "transaction_id",
        "user_id",
        "vehicle_id",
        "pickup_location_id",
        "dropoff_location_id",
        "start_time",
        "end_time",
        "total_amount",
    ],
}
TRANSACTIONS = "rental_transactions"

# Key of each dimension, and the columns a dimension row cannot do without.
DIMENSION_KEYS = {"vehicles": "vehicle_id", "users": "user_id", "locations": "location_id"}
DIMENSION_REQUIRED = {
    "vehicles": ["vehicle_id", "vehicle_type"],
    "users": ["user_id"],
    "locations": ["location_id"],
}

# The three accepted timestamp formats (Spark datetime patterns). Anything else is a
# bad_timestamp. Timestamps carry no zone: they are read as UTC (spark.sql.session.timeZone).
TIMESTAMP_FORMATS = ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss", "MM/dd/yyyy HH:mm"]
# Dates of the dimension files (users.signup_date): a bad one becomes NULL, the row stays.
DATE_FORMATS = ["yyyy-MM-dd", "MM/dd/yyyy"]

# Reasons a transaction is dropped, checked in this order; the first that applies counts.
TRANSACTION_CHECKS = [
    "missing_value",
    "bad_timestamp",
    "bad_amount",
    "negative_amount",
    "end_before_start",
    "wrong_date",
    "duplicate_id",
]
# Reference checks: dimension -> (reason, transaction column, dimension key). A job lists the
# dimensions it checks, in the order it checks them.
REFERENCE_CHECKS = {
    "users": ("unknown_user", "user_id", "user_id"),
    "vehicles": ("unknown_vehicle", "vehicle_id", "vehicle_id"),
    "locations": ("unknown_location", "pickup_location_id", "location_id"),
}
DIMENSION_CHECKS = ["missing_value", "duplicate_id"]
KEPT = "kept"

# Money: the amount is parsed as DECIMAL(18,2) (an amount with more decimals is rounded half up
# to the cent); sums stay exact, averages are rounded half up to 2 decimals.
MONEY = T.DecimalType(18, 2)
# Hours: each transaction's rental_hours is (end - start) in seconds / 3600, rounded half up to
# 2 decimals; totals and averages of hours are computed over those per-row values.
HOURS = T.DecimalType(18, 2)

WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class InputError(Exception):
    """A fatal problem with the job's input (missing folder, wrong header, bad --date)."""


# --- Session and command line ------------------------------------------------------------------


def configure(spark):
    """The session settings every job relies on (also applied to a session given by a test)."""
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    # Overwriting a table rewrites only the partitions being written (the run's ds).
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    # No _SUCCESS marker at the root of each table folder: the Glue crawler and DuckDB only
    # need the Parquet files.
    spark.conf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")


def build_session(app_name):
    return (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .getOrCreate()
    )


def parse_args(job_name, description, argv=None):
    parser = argparse.ArgumentParser(prog=job_name, description=description)
    parser.add_argument("--input", required=True, help="raw root: {input}/{dataset}/{date}/*.csv")
    parser.add_argument("--output", required=True, help="output root: {output}/{table}/ds={date}/")
    parser.add_argument("--date", required=True, help="the day to process, YYYY-MM-DD")
    return parser.parse_args(argv)


def check_date(date):
    try:
        parsed = datetime.datetime.strptime(date, "%Y-%m-%d").date()
    except ValueError:
        parsed = None
    if parsed is None or parsed.isoformat() != date:
        raise InputError(f"--date must be a day as YYYY-MM-DD, got {date!r}")
    return parsed


def job_main(job_name, description, run, argv=None):
    """Command-line entry point shared by the jobs: exit status 0, or 1 on an InputError."""
    args = parse_args(job_name, description, argv)
    owned = SparkSession.getActiveSession() is None
    spark = build_session(job_name)
    if owned:
        spark.sparkContext.setLogLevel("WARN")
    try:
        run(spark, args.input, args.output, args.date)
    except InputError as err:
        sys.stdout.flush()
        print(f"{job_name}: error: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        if owned:
            spark.stop()
    return 0


# --- Reading -----------------------------------------------------------------------------------


def dataset_path(input_root, dataset, date):
    return f"{input_root.rstrip('/')}/{dataset}/{date}"


def check_inputs(spark, input_root, date, datasets):
    """Fail with InputError unless every dataset has at least one CSV file for the date."""
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    for dataset in datasets:
        folder = dataset_path(input_root, dataset, date)
        pattern = jvm.org.apache.hadoop.fs.Path(f"{folder}/*.csv")
        found = pattern.getFileSystem(hadoop_conf).globStatus(pattern)
        if found is None or len(found) == 0:
            raise InputError(f"missing input for {date}: no CSV file in {folder}/")


def read_dataset(spark, input_root, date, dataset):
    """Read one dataset's CSV files for the date, every column as a trimmed string.

    Empty (or blank) values become NULL. Two technical columns are added: _file (the file the
    row came from) and _row (increasing in file order within a file), which together give the
    "file order" used to pick the first of several rows with the same id.
    """
    folder = dataset_path(input_root, dataset, date)
    raw = (
        spark.read.option("header", True)
        .option("mode", "PERMISSIVE")
        .option("pathGlobFilter", "*.csv")
        .csv(folder)
    )
    # The header, tolerating spaces and a UTF-8 byte order mark.
    by_name = {c.strip().lstrip("\ufeff").strip(): c for c in raw.columns}
    missing = [c for c in DATASETS[dataset] if c not in by_name]
    if missing:
        raise InputError(
            f"{folder}/: the CSV header lacks column(s) {', '.join(missing)} "
            f"(expected {', '.join(DATASETS[dataset])})"
        )

    def cleaned(name):
        value = F.trim(F.col(f"`{by_name[name]}`"))
        return F.when(value == "", F.lit(None)).otherwise(value).alias(name)

    return raw.select(
        *[cleaned(name) for name in DATASETS[dataset]],
        F.col("_metadata.file_path").alias("_file"),
        F.monotonically_increasing_id().alias("_row"),
    )


# --- Cleaning ----------------------------------------------------------------------------------


def _any_null(columns):
    return functools.reduce(lambda a, b: a | b, [F.col(c).isNull() for c in columns])


def _first_wins(df, key):
    """Mark duplicate_id on rows that passed every earlier check but repeat an earlier key."""
    order = Window.partitionBy(key, F.col("reason").isNull()).orderBy("_file", "_row")
    return df.withColumn(
        "reason",
        F.when(
            F.col("reason").isNull() & (F.row_number().over(order) > 1), F.lit("duplicate_id")
        ).otherwise(F.col("reason")),
    )


def classify_dimension(df, dataset):
    """Add `reason` (NULL for a kept row): missing_value, then duplicate_id (first one wins)."""
    df = df.withColumn(
        "reason",
        F.when(_any_null(DIMENSION_REQUIRED[dataset]), F.lit("missing_value")).otherwise(
            F.lit(None).cast("string")
        ),
    )
    return _first_wins(df, DIMENSION_KEYS[dataset])


def _parse_timestamp(column):
    return F.coalesce(*[F.try_to_timestamp(F.col(column), F.lit(f)) for f in TIMESTAMP_FORMATS])


def rental_hours(start, end):
    seconds = F.unix_seconds(end) - F.unix_seconds(start)
    return F.round(seconds.cast(T.DecimalType(20, 0)) / F.lit(3600), 2).cast(HOURS)


def classify_transactions(df, date, references):
    """Add parsed columns and `reason` (NULL for a kept row).

    references: list of (reason, transaction column, kept keys DataFrame with one column
    `_key`), checked in order after the row checks.
    """
    df = (
        df.withColumn("start_ts", _parse_timestamp("start_time"))
        .withColumn("end_ts", _parse_timestamp("end_time"))
        .withColumn("amount", F.col("total_amount").try_cast(MONEY))
    )
    reason = (
        F.when(_any_null(DATASETS[TRANSACTIONS]), F.lit("missing_value"))
        .when(F.col("start_ts").isNull() | F.col("end_ts").isNull(), F.lit("bad_timestamp"))
        .when(F.col("amount").isNull(), F.lit("bad_amount"))
        .when(F.col("amount") < 0, F.lit("negative_amount"))
        .when(F.col("end_ts") < F.col("start_ts"), F.lit("end_before_start"))
        .when(F.to_date("start_ts") != F.lit(date).cast("date"), F.lit("wrong_date"))
        .otherwise(F.lit(None).cast("string"))
    )
    df = _first_wins(df.withColumn("reason", reason), "transaction_id")
    for name, column, keys in references:
        known = keys.select(F.col("_key"), F.lit(True).alias("_known"))
        df = df.join(known, df[column] == known["_key"], "left")
        df = df.withColumn(
            "reason",
            F.when(F.col("reason").isNull() & F.col("_known").isNull(), F.lit(name)).otherwise(
                F.col("reason")
            ),
        ).drop("_key", "_known")
    return df.withColumn("rental_hours", rental_hours(F.col("start_ts"), F.col("end_ts")))


def reason_counts(classified, dataset):
    """The rows of `classified` per reason (NULL: kept), tagged with the dataset: a small
    aggregate, so that every dataset's counts come back in one action (see prepare)."""
    return classified.groupBy(F.lit(dataset).alias("dataset"), "reason").agg(
        F.count(F.lit(1)).alias("rows")
    )


def dq_counts(found, reasons):
    """{reason: rows} for every reason (0 when none), then `kept`, from {reason: rows}."""
    counts = {reason: int(found.get(reason, 0)) for reason in reasons}
    counts[KEPT] = int(found.get(None, 0))
    unexpected = set(found) - set(reasons) - {None}
    assert not unexpected, f"unlisted reasons {unexpected}"
    return counts


class Prepared:
    """One day's input, cleaned: kept rows of each dataset and the data-quality counts."""

    def __init__(self, transactions, dimensions, dq):
        self.transactions = transactions  # kept transactions, parsed columns added
        self.dimensions = dimensions  # dataset -> kept rows (CSV columns, strings)
        self.dq = dq  # dataset -> {reason: rows, ..., kept: rows}
        self._persisted = []

    def unpersist(self):
        for df in self._persisted:
            df.unpersist()


def prepare(spark, input_root, date, dimensions):
    """Read and clean the day's transactions and the listed dimensions.

    `dimensions` lists the dimensions the job uses, in the order of its reference checks.
    """
    configure(spark)
    check_date(date)
    check_inputs(spark, input_root, date, [TRANSACTIONS] + list(dimensions))

    # Everything is classified lazily, then one action counts every dataset's rows by reason
    # and fills the caches: the dimensions are scanned once for their counts and for the
    # reference checks, and the transactions once for everything the job computes.
    persisted, kept_dims, counted = [], {}, []
    for dataset in dimensions:
        classified = classify_dimension(read_dataset(spark, input_root, date, dataset), dataset)
        classified = classified.persist()
        persisted.append(classified)
        counted.append(reason_counts(classified, dataset))
        kept_dims[dataset] = classified.filter(F.col("reason").isNull()).select(*DATASETS[dataset])

    references = []
    for dataset in dimensions:
        reason, column, key = REFERENCE_CHECKS[dataset]
        references.append((reason, column, kept_dims[dataset].select(F.col(key).alias("_key"))))
    transactions = classify_transactions(
        read_dataset(spark, input_root, date, TRANSACTIONS), date, references
    ).persist()
    persisted.append(transactions)
    counted.insert(0, reason_counts(transactions, TRANSACTIONS))

    found = {}
    for row in functools.reduce(lambda a, b: a.unionByName(b), counted).collect():
        found.setdefault(row["dataset"], {})[row["reason"]] = row["rows"]
    reasons = TRANSACTION_CHECKS + [REFERENCE_CHECKS[d][0] for d in dimensions]
    dq = {TRANSACTIONS: dq_counts(found.get(TRANSACTIONS, {}), reasons)}
    for dataset in dimensions:
        dq[dataset] = dq_counts(found.get(dataset, {}), DIMENSION_CHECKS)

    kept = transactions.filter(F.col("reason").isNull()).select(
        *DATASETS[TRANSACTIONS], "start_ts", "end_ts", "amount", "rental_hours"
    )
    prepared = Prepared(kept, kept_dims, dq)
    prepared._persisted = persisted
    return prepared


# --- Writing -----------------------------------------------------------------------------------


def write_table(df, output_root, table, date, single_file=True):
    """Replace the table's ds=<date> partition with df; other partitions are left untouched.

    Written with mode overwrite + partitionBy("ds") + dynamic partition overwrite. An empty df
    leaves an old partition in place that way, so when the write saw no row (counted while
    writing, not by a separate action that would compute df twice), one empty Parquet file
    (schema only) is written straight into ds=<date>/, replacing whatever was there.
    """
    path = f"{output_root.rstrip('/')}/{table}"
    if single_file:
        df = df.coalesce(1)
    written = Observation()
    observed = df.observe(written, F.count(F.lit(1)).alias("rows"))
    observed.withColumn("ds", F.lit(date)).write.mode("overwrite").partitionBy("ds").parquet(path)
    if written.get["rows"] == 0:
        df.write.mode("overwrite").parquet(f"{path}/ds={date}")


def literal_table(spark, rows, schema):
    """A DataFrame of a few rows known to the driver, built from literals in the query plan.

    spark.createDataFrame(rows) would ship them pickled and start a Python worker to read
    them; this does not.
    """
    if not rows:
        return spark.range(0).select(
            *[F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields]
        )
    structs = [
        F.struct(*[F.lit(v).cast(f.dataType).alias(f.name) for v, f in zip(row, schema.fields)])
        for row in rows
    ]
    return spark.range(1).select(F.inline(F.array(*structs)))


DQ_SCHEMA = T.StructType(
    [
        T.StructField("dataset", T.StringType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("rows", T.LongType(), False),
    ]
)


def dq_rows(dq):
    return [(dataset, reason, rows) for dataset, counts in dq.items() for reason, rows in counts.items()]


def write_dq(spark, output_root, job_name, date, dq):
    df = literal_table(spark, dq_rows(dq), DQ_SCHEMA)
    write_table(df, output_root, f"dq_{job_name}", date)


def format_dq(job_name, date, dq):
    rows = dq_rows(dq)
    width = max(len("dataset"), *(len(r[0]) for r in rows))
    rwidth = max(len("reason"), *(len(r[1]) for r in rows))
    lines = [f"data quality of {job_name} for {date}:"]
    lines.append(f"  {'dataset':<{width}}  {'reason':<{rwidth}}  {'rows':>8}")
    for dataset, reason, count in rows:
        lines.append(f"  {dataset:<{width}}  {reason:<{rwidth}}  {count:>8}")
    return "\n".join(lines)


def finish(spark, output_root, job_name, date, tables, prepared):
    """Write the job's tables and its dq table, print the counts, return them."""
    for table, (df, single_file) in tables.items():
        write_table(df, output_root, table, date, single_file)
        print(f"{job_name}: wrote {output_root.rstrip('/')}/{table}/ds={date}/", flush=True)
    write_dq(spark, output_root, job_name, date, prepared.dq)
    print(format_dq(job_name, date, prepared.dq), flush=True)
    prepared.unpersist()
    return prepared.dq


# --- Small helpers for the jobs ----------------------------------------------------------------


def amount_stats(total_name):
    """The aggregations both KPI jobs take over a group's amounts: the total (named
    `total_name`), transaction_count, avg_amount, max_amount and min_amount, unrounded."""
    return [
        F.sum("amount").alias(total_name),
        F.count(F.lit(1)).alias("transaction_count"),
        F.avg("amount").alias("avg_amount"),
        F.max("amount").alias("max_amount"),
        F.min("amount").alias("min_amount"),
    ]


def money(column):
    return F.round(column, 2).cast(MONEY)


def hours(column):
    return F.round(column, 2).cast(HOURS)


def day_of_week(column):
    """1 = Monday ... 7 = Sunday (ISO), whatever the locale."""
    return ((F.dayofweek(column) + 5) % 7 + 1).cast("int")
