"""Job 2: users and transactions for one day of rentals.

    spark-submit spark/user_transaction_metrics.py --input RAW --output PROCESSED --date YYYY-MM-DD

Reads {input}/{rental_transactions,users}/{date}/*.csv and writes, as Parquet under
{output}/{table}/ds={date}/ (see spark/README.md):

  daily_revenue            rental_date, total_revenue, transaction_count (always one row)
  user_spending            user_id, first_name, last_name, total_spent, transaction_count,
                           total_rental_hours, avg_amount, max_amount, min_amount
  top_spending_users       spending_rank, user_id, first_name, last_name, total_spent
                           (top 10 by total_spent desc, then user_id)
  transactions_by_hour     hour_of_day (0..23, all 24 rows), transaction_count
  transactions_by_weekday  day_of_week (1 = Monday .. 7), day_name, transaction_count (7 rows)
  dq_user_transaction_metrics  dataset, reason, rows

Transactions are checked for the common reasons (car_rental_common.TRANSACTION_CHECKS), then
unknown_user.
"""

import sys

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

import car_rental_common as common

JOB = "user_transaction_metrics"
TOP_USERS = 10


def run(spark, input, output, date):
    """Run the job for one day; returns the data-quality counts {dataset: {reason: rows}}."""
    prepared = common.prepare(spark, input, date, ["users"])
    users = prepared.dimensions["users"]
    rentals = prepared.transactions

    # A global aggregate returns its row even when no transaction was kept.
    daily_revenue = rentals.agg(
        F.coalesce(F.sum("amount"), F.lit(0)).alias("total_revenue"),
        F.count(F.lit(1)).alias("transaction_count"),
    ).select(
        F.lit(date).cast("date").alias("rental_date"),
        common.money(F.col("total_revenue")).alias("total_revenue"),
        F.col("transaction_count").cast("long").alias("transaction_count"),
    )

    user_spending = (
        rentals.groupBy("user_id")
        .agg(
            *common.amount_stats("total_spent"),
            F.sum("rental_hours").alias("total_rental_hours"),
        )
        .join(users.select("user_id", "first_name", "last_name"), "user_id")
        .select(
            "user_id",
            "first_name",
            "last_name",
            common.money(F.col("total_spent")).alias("total_spent"),
            F.col("transaction_count").cast("long").alias("transaction_count"),
            common.hours(F.col("total_rental_hours")).alias("total_rental_hours"),
            common.money(F.col("avg_amount")).alias("avg_amount"),
            common.money(F.col("max_amount")).alias("max_amount"),
            common.money(F.col("min_amount")).alias("min_amount"),
        )
        .persist()
    )

    # The ten best first (a top-k, not a sort of every user), then ranked among themselves:
    # a window over one constant partition of ten rows.
    order = [F.col("total_spent").desc(), F.col("user_id").asc()]
    ranking = Window.partitionBy(F.lit(0)).orderBy(*order)
    top_spending_users = (
        user_spending.orderBy(*order)
        .limit(TOP_USERS)
        .select(
            F.row_number().over(ranking).cast("int").alias("spending_rank"),
            "user_id",
            "first_name",
            "last_name",
            "total_spent",
        )
    )

    hour_counts = rentals.groupBy(F.hour("start_ts").alias("hour_of_day")).agg(
        F.count(F.lit(1)).alias("n")
    )
    transactions_by_hour = (
        spark.range(24)
        .select(F.col("id").cast("int").alias("hour_of_day"))
        .join(hour_counts, "hour_of_day", "left")
        .select(
            "hour_of_day",
            F.coalesce(F.col("n"), F.lit(0)).cast("long").alias("transaction_count"),
        )
    )

    weekdays = common.literal_table(
        spark,
        [(i + 1, name) for i, name in enumerate(common.WEEKDAY_NAMES)],
        T.StructType(
            [
                T.StructField("day_of_week", T.IntegerType(), False),
                T.StructField("day_name", T.StringType(), False),
            ]
        ),
    )
    weekday_counts = rentals.groupBy(common.day_of_week(F.col("start_ts")).alias("day_of_week")).agg(
        F.count(F.lit(1)).alias("n")
    )
    transactions_by_weekday = weekdays.join(weekday_counts, "day_of_week", "left").select(
        "day_of_week",
        "day_name",
        F.coalesce(F.col("n"), F.lit(0)).cast("long").alias("transaction_count"),
    )

    tables = {
        "daily_revenue": (daily_revenue, True),
        "user_spending": (user_spending, True),
        "top_spending_users": (top_spending_users, True),
        "transactions_by_hour": (transactions_by_hour, True),
        "transactions_by_weekday": (transactions_by_weekday, True),
    }
    try:
        return common.finish(spark, output, JOB, date, tables, prepared)
    finally:
        user_spending.unpersist()


if __name__ == "__main__":
    sys.exit(common.job_main(JOB, __doc__.splitlines()[0], run))
