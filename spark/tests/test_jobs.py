"""Tests of the car-rental Spark jobs and the local report, on the hand-checked fixture.

Run from the repository root:

    PATH=$PWD/.venv/bin:$PATH python3 -m unittest discover -s spark/tests -v

The expected values come from tests/fixtures/car_rental/expected.json, computed by hand (see
the README.md beside it). One local SparkSession is shared by every test; each job runs once
on the fixture and the tests read what it wrote. One test runs a job through spark-submit as
a separate process; it is started when the module loads and runs alongside the other tests.
"""

import contextlib
import decimal
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SPARK_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(SPARK_DIR)
FIXTURE = os.path.join(REPO, "tests", "fixtures", "car_rental")
RAW = os.path.join(FIXTURE, "raw")
SQL_DIR = os.path.join(REPO, "dags", "sql")
DATE = "2026-03-01"
sys.path.insert(0, SPARK_DIR)

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

import car_rental_common as common  # noqa: E402
import car_rental_report  # noqa: E402
import star_schema_etl  # noqa: E402
import user_transaction_metrics  # noqa: E402
import vehicle_location_metrics  # noqa: E402

with open(os.path.join(FIXTURE, "expected.json"), encoding="utf-8") as f:
    EXPECTED = json.load(f)

spark = None
TMP = None
PROCESSED = None  # job 1 and job 2 outputs, as the local pipeline lays them out
WAREHOUSE = None  # star schema output
RESULTS = {}  # job name -> dq counts returned by run()
SUBMIT = {}  # the spark-submit process started at module load


def venv_env():
    env = dict(os.environ)
    venv_bin = os.path.join(REPO, ".venv", "bin")
    if os.path.isdir(venv_bin):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def start_spark_submit():
    out = os.path.join(TMP, "submit_out")
    log = open(os.path.join(TMP, "submit.log"), "w+")
    # The settings of the local DAG (dags/car_rental_local.toml): its master and spark/local.conf.
    cmd = [
        "spark-submit",
        "--master", "local[1]",
        "--properties-file", os.path.join(SPARK_DIR, "local.conf"),
        os.path.join(SPARK_DIR, "vehicle_location_metrics.py"),
        "--input", RAW,
        "--output", out,
        "--date", DATE,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=venv_env(), stdout=subprocess.PIPE, stderr=log, text=True
    )
    SUBMIT.update(proc=proc, out=out, log=log)


def setUpModule():
    try:
        set_up()
    except BaseException:
        tearDownModule()  # not called by unittest when setUpModule fails
        raise


def set_up():
    global spark, TMP, PROCESSED, WAREHOUSE
    # py4j leaves sockets to the garbage collector; unittest would print each one.
    warnings.simplefilter("ignore", ResourceWarning)
    TMP = tempfile.mkdtemp(prefix="car_rental_tests_")
    start_spark_submit()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("car_rental_tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    PROCESSED = os.path.join(TMP, "processed")
    WAREHOUSE = os.path.join(TMP, "warehouse")
    with contextlib.redirect_stdout(io.StringIO()):
        RESULTS["vehicle_location_metrics"] = vehicle_location_metrics.run(
            spark, RAW, PROCESSED, DATE
        )
        RESULTS["user_transaction_metrics"] = user_transaction_metrics.run(
            spark, RAW, PROCESSED, DATE
        )
        RESULTS["star_schema_etl"] = star_schema_etl.run(spark, RAW, WAREHOUSE, DATE)


def tearDownModule():
    proc = SUBMIT.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    if SUBMIT.get("log"):
        SUBMIT["log"].close()
    if spark is not None:
        spark.stop()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


# --- helpers -----------------------------------------------------------------------------------


def read_partition(root, table, date=DATE):
    """Rows of one ds partition as dicts; timestamps formatted in the session zone (UTC)."""
    df = spark.read.parquet(os.path.join(root, table, f"ds={date}"))
    cols = [
        F.date_format(c, "yyyy-MM-dd HH:mm:ss").alias(c) if t == "timestamp" else F.col(c)
        for c, t in df.dtypes
    ]
    return [r.asDict() for r in df.select(*cols).collect()], df


def same_value(actual, expected):
    if isinstance(actual, decimal.Decimal):
        return actual == decimal.Decimal(str(expected))
    if isinstance(actual, float):
        return abs(actual - expected) < 0.005
    if hasattr(actual, "isoformat"):
        return actual.isoformat() == expected
    return actual == expected and type(actual) is type(expected)


def partitions(root, table):
    return sorted(p for p in os.listdir(os.path.join(root, table)) if p.startswith("ds="))


def partition_snapshot(root, table, date):
    folder = os.path.join(root, table, f"ds={date}")
    snapshot = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            snapshot[name] = f.read()
    return snapshot


def shifted_copy(src_raw, dst_raw, date_from, date_to):
    """Copy the fixture's day to another day, every timestamp moved by one day.

    Replacements go from the latest date to the earliest, so no date is shifted twice.
    """
    assert (date_from, date_to) == ("2026-03-01", "2026-03-02")
    replacements = [
        ("2026-03-02", "2026-03-03"),
        ("03/02/2026", "03/03/2026"),
        ("2026-03-01", "2026-03-02"),
        ("03/01/2026", "03/02/2026"),
        ("2026-02-28", "2026-03-01"),
    ]
    for dataset in common.DATASETS:
        src = os.path.join(src_raw, dataset, date_from)
        dst = os.path.join(dst_raw, dataset, date_to)
        os.makedirs(dst, exist_ok=True)
        for name in os.listdir(src):
            with open(os.path.join(src, name), encoding="utf-8") as f:
                text = f.read()
            if dataset == common.TRANSACTIONS:
                lines = text.splitlines(keepends=True)
                for i in range(1, len(lines)):
                    for old, new in replacements:
                        if old in lines[i]:
                            lines[i] = lines[i].replace(old, new)
                text = "".join(lines)
            with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
                f.write(text)


class FixtureTestCase(unittest.TestCase):
    maxDiff = None

    def assert_table(self, root, table, spec):
        rows, df = read_partition(root, table)
        key = spec["key"]
        expected_rows = spec["rows"]
        self.assertEqual(
            sorted(df.columns),
            sorted(expected_rows[0]),
            f"{table}: columns",
        )
        self.assertEqual(len(rows), len(expected_rows), f"{table}: row count")
        by_key = {tuple(str(r[k]) for k in key): r for r in rows}
        self.assertEqual(len(by_key), len(rows), f"{table}: duplicate keys {key}")
        for exp in expected_rows:
            k = tuple(str(exp[c]) for c in key)
            self.assertIn(k, by_key, f"{table}: no row for {key}={k}")
            act = by_key[k]
            for col, value in exp.items():
                self.assertTrue(
                    same_value(act[col], value),
                    f"{table} {key}={k} {col}: got {act[col]!r}, expected {value!r}",
                )

    def assert_dq(self, root, job):
        expected = EXPECTED[job]["dq"]
        self.assertEqual(RESULTS[job], expected, f"{job}: dq counts returned by run()")
        rows, _ = read_partition(root, f"dq_{job}")
        stored = {}
        for r in rows:
            stored.setdefault(r["dataset"], {})[r["reason"]] = r["rows"]
        self.assertEqual(stored, expected, f"dq_{job} table")
        for dataset, counts in expected.items():
            total = sum(counts.values())
            with open(
                os.path.join(RAW, dataset, DATE, f"{dataset}.csv"), encoding="utf-8"
            ) as f:
                lines = len(f.read().splitlines()) - 1
            self.assertEqual(total, lines, f"{job} {dataset}: reasons + kept = rows read")


# --- the jobs on the fixture ---------------------------------------------------------------------


class VehicleLocationMetricsTest(FixtureTestCase):
    job = "vehicle_location_metrics"

    def test_every_kpi_matches_expected(self):
        for table, spec in EXPECTED[self.job]["tables"].items():
            with self.subTest(table=table):
                self.assert_table(PROCESSED, table, spec)

    def test_data_quality_counts(self):
        self.assert_dq(PROCESSED, self.job)


class UserTransactionMetricsTest(FixtureTestCase):
    job = "user_transaction_metrics"

    def test_every_kpi_matches_expected(self):
        for table, spec in EXPECTED[self.job]["tables"].items():
            with self.subTest(table=table):
                self.assert_table(PROCESSED, table, spec)

    def test_top_spending_users_order(self):
        rows, _ = read_partition(PROCESSED, "top_spending_users")
        ranked = [r["user_id"] for r in sorted(rows, key=lambda r: r["spending_rank"])]
        expected = [r["user_id"] for r in EXPECTED[self.job]["tables"]["top_spending_users"]["rows"]]
        self.assertEqual(ranked, expected)

    def test_data_quality_counts(self):
        self.assert_dq(PROCESSED, self.job)


class StarSchemaTest(FixtureTestCase):
    job = "star_schema_etl"

    def test_row_counts(self):
        for table, count in EXPECTED[self.job]["row_counts"].items():
            with self.subTest(table=table):
                rows, _ = read_partition(WAREHOUSE, table)
                self.assertEqual(len(rows), count)

    def test_fact_rows(self):
        rows, df = read_partition(WAREHOUSE, "fact_rentals")
        self.assertEqual(
            sorted(r["transaction_id"] for r in rows),
            EXPECTED[self.job]["fact_transaction_ids"],
        )
        types = dict(df.dtypes)
        self.assertEqual(types["date_key"], "int")
        self.assertEqual(types["start_time"], "timestamp")
        self.assertEqual(types["total_amount"], "decimal(18,2)")
        by_id = {r["transaction_id"]: r for r in rows}
        for sample in EXPECTED[self.job]["fact_samples"]:
            actual = by_id[sample["transaction_id"]]
            for col, value in sample.items():
                self.assertTrue(
                    same_value(actual[col], value),
                    f"fact {sample['transaction_id']} {col}: got {actual[col]!r}, expected {value!r}",
                )
        self.assertEqual(sorted(df.columns), sorted(EXPECTED[self.job]["fact_samples"][0]))

    def test_dimension_rows(self):
        for table, sample in EXPECTED[self.job]["dim_samples"].items():
            with self.subTest(table=table):
                rows, df = read_partition(WAREHOUSE, table)
                self.assertEqual(sorted(df.columns), sorted(sample))
                key = next(iter(sample))
                matching = [r for r in rows if r[key] == sample[key]]
                self.assertEqual(len(matching), 1, f"{table}: one row for {sample[key]}")
                for col, value in sample.items():
                    self.assertTrue(
                        same_value(matching[0][col], value),
                        f"{table} {col}: got {matching[0][col]!r}, expected {value!r}",
                    )

    def test_data_quality_counts(self):
        self.assert_dq(WAREHOUSE, self.job)


# --- partitions, re-runs, missing input ------------------------------------------------------------


class RerunTest(unittest.TestCase):
    def test_rerun_replaces_only_its_own_partition(self):
        raw = os.path.join(TMP, "rerun_raw")
        out = os.path.join(TMP, "rerun_out")
        shutil.copytree(RAW, raw)
        shifted_copy(RAW, raw, DATE, "2026-03-02")
        tables = ["location_performance", "vehicle_type_performance", "dq_vehicle_location_metrics"]
        quiet = contextlib.redirect_stdout(io.StringIO())
        with quiet:
            other = vehicle_location_metrics.run(spark, raw, out, "2026-03-02")
            vehicle_location_metrics.run(spark, raw, out, DATE)
        # The shifted day is the same day of data: same counts.
        self.assertEqual(other, EXPECTED["vehicle_location_metrics"]["dq"])
        before = {t: partition_snapshot(out, t, "2026-03-02") for t in tables}
        first = {t: len(read_partition(out, t)[0]) for t in tables}

        with contextlib.redirect_stdout(io.StringIO()):
            vehicle_location_metrics.run(spark, raw, out, DATE)
        for table in tables:
            with self.subTest(table=table):
                self.assertEqual(partitions(out, table), ["ds=2026-03-01", "ds=2026-03-02"])
                parquet = [
                    n for n in os.listdir(os.path.join(out, table, f"ds={DATE}"))
                    if n.endswith(".parquet")
                ]  # fmt: skip
                self.assertEqual(len(parquet), 1, f"{table}: one file in the re-run partition")
                self.assertEqual(len(read_partition(out, table)[0]), first[table])
                self.assertEqual(
                    partition_snapshot(out, table, "2026-03-02"),
                    before[table],
                    f"{table}: the other date's partition was touched",
                )
        self.assertFalse(os.path.exists(os.path.join(out, "location_performance", "_SUCCESS")))

        # The day re-delivered with no valid transaction: its partition is emptied, not kept.
        txn = os.path.join(raw, common.TRANSACTIONS, DATE, f"{common.TRANSACTIONS}.csv")
        with open(txn, "w", encoding="utf-8") as f:
            f.write(",".join(common.DATASETS[common.TRANSACTIONS]) + "\n")
        with contextlib.redirect_stdout(io.StringIO()):
            dq = vehicle_location_metrics.run(spark, raw, out, DATE)
        self.assertEqual(dq[common.TRANSACTIONS]["kept"], 0)
        rows, df = read_partition(out, "location_performance")
        self.assertEqual(rows, [])
        self.assertIn("total_revenue", df.columns)
        self.assertEqual(partitions(out, "location_performance"), ["ds=2026-03-01", "ds=2026-03-02"])
        self.assertEqual(
            partition_snapshot(out, "location_performance", "2026-03-02"),
            before["location_performance"],
        )


class MissingInputTest(unittest.TestCase):
    def test_run_raises_naming_the_folder(self):
        out = os.path.join(TMP, "missing_out")
        for job in (vehicle_location_metrics, user_transaction_metrics, star_schema_etl):
            with self.subTest(job=job.JOB):
                with self.assertRaises(common.InputError) as ctx:
                    job.run(spark, RAW, out, "2026-03-05")
                self.assertIn(os.path.join(RAW, "rental_transactions", "2026-03-05"), str(ctx.exception))
        self.assertFalse(os.path.exists(out))

    def test_command_line_exits_1_with_one_line(self):
        err = io.StringIO()
        argv = ["--input", RAW, "--output", os.path.join(TMP, "x"), "--date", "2026-03-05"]
        with contextlib.redirect_stderr(err):
            code = user_transaction_metrics.common.job_main(
                user_transaction_metrics.JOB, "test", user_transaction_metrics.run, argv
            )
        self.assertEqual(code, 1)
        lines = err.getvalue().strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("missing input for 2026-03-05", lines[0])
        self.assertIn(os.path.join(RAW, "rental_transactions", "2026-03-05"), lines[0])

    def test_bad_date_is_refused(self):
        with self.assertRaises(common.InputError):
            vehicle_location_metrics.run(spark, RAW, os.path.join(TMP, "y"), "2026-3-1")


# --- needless work: repeated actions, Python workers ---------------------------------------------


class CountingCalls:
    """Counts calls of DataFrame actions, Parquet writes and createDataFrame while active."""

    ACTIONS = ["collect", "count", "isEmpty", "first", "head", "take", "tail", "toPandas",
               "toLocalIterator", "show", "foreach", "foreachPartition"]  # fmt: skip

    def __init__(self):
        df = spark.range(1)
        self.targets = [(type(df), name) for name in self.ACTIONS if hasattr(type(df), name)]
        self.targets += [(type(df.write), "parquet"), (type(spark), "createDataFrame")]
        self.calls = {}
        self.saved = []

    def __enter__(self):
        for cls, name in self.targets:
            original = getattr(cls, name)
            self.saved.append((cls, name, original))

            def counting(*args, _name=name, _original=original, **kwargs):
                self.calls[_name] = self.calls.get(_name, 0) + 1
                return _original(*args, **kwargs)

            setattr(cls, name, counting)
        return self

    def __exit__(self, *exc):
        for cls, name, original in reversed(self.saved):
            setattr(cls, name, original)


class RepeatedActionsTest(unittest.TestCase):
    """The local run was slow, partly from needless work: each table was computed twice (an
    isEmpty() action before its write), the data-quality counts took one action per dataset,
    and small tables were built with createDataFrame, which starts a Python worker. Now a job
    makes one action for all its counts and one write per table, and ships no Python rows."""

    def test_one_action_for_the_counts_and_one_write_per_table(self):
        writes = {
            vehicle_location_metrics: 3,  # 2 tables + dq
            user_transaction_metrics: 6,  # 5 tables + dq
            star_schema_etl: 6,  # fact, 4 dimensions + dq
        }
        for job, tables in writes.items():
            with self.subTest(job=job.JOB):
                out = os.path.join(TMP, "actions_out", job.JOB)
                with CountingCalls() as counting, contextlib.redirect_stdout(io.StringIO()):
                    dq = job.run(spark, RAW, out, DATE)
                self.assertEqual(dq, EXPECTED[job.JOB]["dq"])
                self.assertEqual(counting.calls, {"collect": 1, "parquet": tables})


# --- the report ------------------------------------------------------------------------------------


class ReportTest(unittest.TestCase):
    maxDiff = None

    def run_report(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = car_rental_report.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_report_answers(self):
        md = os.path.join(TMP, "reports", f"car_rental_{DATE}.md")
        code, out, err = self.run_report(
            "--processed", PROCESSED, "--sql", SQL_DIR, "--date", DATE, "--out", md
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip().splitlines()[-1], md)
        with open(md[: -len(".md")] + ".json", encoding="utf-8") as f:
            answers = json.load(f)
        self.assertEqual(answers["date"], DATE)
        expected = EXPECTED["report"]
        self.assertEqual(sorted(answers["queries"]), sorted(expected))
        for name, rows in expected.items():
            got = answers["queries"][name]
            self.assertEqual(len(got), len(rows), name)
            for i, (g, e) in enumerate(zip(got, rows)):
                self.assertEqual(list(g), list(e), f"{name} row {i}: columns")
                for col, value in e.items():
                    self.assertTrue(
                        same_value(g[col], value),
                        f"{name} row {i} {col}: got {g[col]!r}, expected {value!r}",
                    )
        self.assertEqual(
            answers["data_quality"],
            {
                "vehicle_location_metrics": EXPECTED["vehicle_location_metrics"]["dq"],
                "user_transaction_metrics": EXPECTED["user_transaction_metrics"]["dq"],
            },
        )
        with open(md, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(f"# Car-rental report for {DATE}", text)
        for needle in ("| L1 | Boston | MA | 442.50 |", "| 1 | Sedan | 7 |", "| U1 | Alice | Smith | 403.00 |",
                       "| total_revenue | 1619.00 |", "| rental_transactions | unknown_user | 2 |"):  # fmt: skip
            self.assertIn(needle, text)

    def test_missing_partition_fails(self):
        code, out, err = self.run_report(
            "--processed", PROCESSED, "--sql", SQL_DIR, "--date", "2026-03-05",
            "--out", os.path.join(TMP, "reports", "missing.md"),
        )  # fmt: skip
        self.assertEqual(code, 1)
        self.assertIn("ds=2026-03-05", err)
        self.assertFalse(os.path.exists(os.path.join(TMP, "reports", "missing.md")))

    def test_unknown_template_fails(self):
        sql = os.path.join(TMP, "sql_with_param")
        shutil.copytree(SQL_DIR, sql)
        path = os.path.join(sql, "top_spending_users.sql")
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n-- {{ params.bucket }}\n")
        code, out, err = self.run_report(
            "--processed", PROCESSED, "--sql", sql, "--date", DATE,
            "--out", os.path.join(TMP, "reports", "param.md"),
        )  # fmt: skip
        self.assertEqual(code, 1)
        self.assertIn("params.bucket", err)


# --- spark-submit, end to end ----------------------------------------------------------------------


class SparkSubmitTest(FixtureTestCase):
    def test_spark_submit_end_to_end(self):
        proc = SUBMIT["proc"]
        try:
            stdout, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, _ = proc.communicate()
        log = SUBMIT["log"]
        log.seek(0)
        stderr_tail = "\n".join(log.read().splitlines()[-30:])
        self.assertEqual(proc.returncode, 0, f"spark-submit failed:\n{stdout}\n{stderr_tail}")
        self.assertIn("data quality of vehicle_location_metrics for 2026-03-01", stdout)
        self.assertRegex(stdout, r"rental_transactions\s+kept\s+17")
        job = EXPECTED["vehicle_location_metrics"]["tables"]
        self.assert_table(SUBMIT["out"], "location_performance", job["location_performance"])
        self.assert_table(SUBMIT["out"], "vehicle_type_performance", job["vehicle_type_performance"])


if __name__ == "__main__":
    unittest.main()
