"""Job 1: vehicle and location performance for one day of rentals.

    spark-submit spark/vehicle_location_metrics.py --input RAW --output PROCESSED --date YYYY-MM-DD

Reads {input}/{rental_transactions,vehicles,locations}/{date}/*.csv and writes, as Parquet
under {output}/{table}/ds={date}/ (see spark/README.md):

  location_performance      pickup_location_id, city, state, total_revenue, transaction_count,
                            avg_amount, max_amount, min_amount, distinct_vehicles
  vehicle_type_performance  vehicle_type, total_revenue, transaction_count, avg_rental_hours,
                            total_rental_hours
  dq_vehicle_location_metrics  dataset, reason, rows

Transactions are checked for the common reasons (car_rental_common.TRANSACTION_CHECKS), then
unknown_vehicle and unknown_location (pickup location).
"""

import sys

from pyspark.sql import functions as F

import car_rental_common as common

JOB = "vehicle_location_metrics"


def run(spark, input, output, date):
    """Run the job for one day; returns the data-quality counts {dataset: {reason: rows}}."""
    prepared = common.prepare(spark, input, date, ["vehicles", "locations"])
    vehicles = prepared.dimensions["vehicles"]
    locations = prepared.dimensions["locations"]
    rentals = prepared.transactions.join(
        vehicles.select("vehicle_id", "vehicle_type"), "vehicle_id"
    )

    location_performance = (
        rentals.groupBy("pickup_location_id")
        .agg(
            *common.amount_stats("total_revenue"),
            F.countDistinct("vehicle_id").alias("distinct_vehicles"),
        )
        .join(
            locations.select(
                F.col("location_id").alias("pickup_location_id"), "city", "state"
            ),
            "pickup_location_id",
        )
        .select(
            "pickup_location_id",
            "city",
            "state",
            common.money(F.col("total_revenue")).alias("total_revenue"),
            F.col("transaction_count").cast("long").alias("transaction_count"),
            common.money(F.col("avg_amount")).alias("avg_amount"),
            common.money(F.col("max_amount")).alias("max_amount"),
            common.money(F.col("min_amount")).alias("min_amount"),
            F.col("distinct_vehicles").cast("long").alias("distinct_vehicles"),
        )
    )

    vehicle_type_performance = rentals.groupBy("vehicle_type").agg(
        common.money(F.sum("amount")).alias("total_revenue"),
        F.count(F.lit(1)).cast("long").alias("transaction_count"),
        common.hours(F.avg("rental_hours")).alias("avg_rental_hours"),
        common.hours(F.sum("rental_hours")).alias("total_rental_hours"),
    )

    tables = {
        "location_performance": (location_performance, True),
        "vehicle_type_performance": (vehicle_type_performance, True),
    }
    return common.finish(spark, output, JOB, date, tables, prepared)


if __name__ == "__main__":
    sys.exit(common.job_main(JOB, __doc__.splitlines()[0], run))
