"""Pipeline 4: one day of raw car-rental CSV into a star schema.

    spark-submit spark/star_schema_etl.py --input RAW --output WAREHOUSE --date YYYY-MM-DD

Reads {input}/{rental_transactions,users,vehicles,locations}/{date}/*.csv and writes, as
Parquet under {output}/{table}/ds={date}/ (see spark/README.md):

  fact_rentals   transaction_id, user_id, vehicle_id, pickup_location_id, dropoff_location_id,
                 date_key (int yyyymmdd), start_time, end_time, rental_hours, total_amount
  dim_vehicle    vehicle_id, vehicle_type, make, model, year, daily_rate     (daily snapshot)
  dim_user       user_id, first_name, last_name, email, signup_date, city    (daily snapshot)
  dim_location   location_id, city, state, country, zip_code                (daily snapshot)
  dim_date       date_key, date, year, quarter, month, day, day_of_week, day_name, is_weekend
  dq_star_schema_etl  dataset, reason, rows

The dimensions are keyed by their natural ids (vehicle_id, user_id, location_id), which is
what fact_rentals carries; dim_date by date_key. Transactions are checked for the common
reasons, then unknown_user, unknown_vehicle and unknown_location (pickup location).
"""

import sys

from pyspark.sql import functions as F
from pyspark.sql import types as T

import car_rental_common as common

JOB = "star_schema_etl"

DIM_DATE_SCHEMA = T.StructType(
    [
        T.StructField("date_key", T.IntegerType(), False),
        T.StructField("date", T.DateType(), False),
        T.StructField("year", T.IntegerType(), False),
        T.StructField("quarter", T.IntegerType(), False),
        T.StructField("month", T.IntegerType(), False),
        T.StructField("day", T.IntegerType(), False),
        T.StructField("day_of_week", T.IntegerType(), False),
        T.StructField("day_name", T.StringType(), False),
        T.StructField("is_weekend", T.BooleanType(), False),
    ]
)


def dim_date_row(day):
    return (
        int(day.strftime("%Y%m%d")),
        day,
        day.year,
        (day.month - 1) // 3 + 1,
        day.month,
        day.day,
        day.isoweekday(),
        common.WEEKDAY_NAMES[day.isoweekday() - 1],
        day.isoweekday() >= 6,
    )


def _parse_date(column):
    parsed = [F.try_to_timestamp(F.col(column), F.lit(f)) for f in common.DATE_FORMATS]
    return F.to_date(F.coalesce(*parsed))


def run(spark, input, output, date):
    """Run the job for one day; returns the data-quality counts {dataset: {reason: rows}}."""
    prepared = common.prepare(spark, input, date, ["users", "vehicles", "locations"])
    dims = prepared.dimensions

    fact_rentals = prepared.transactions.select(
        "transaction_id",
        "user_id",
        "vehicle_id",
        "pickup_location_id",
        "dropoff_location_id",
        F.date_format("start_ts", "yyyyMMdd").cast("int").alias("date_key"),
        F.col("start_ts").alias("start_time"),
        F.col("end_ts").alias("end_time"),
        F.col("rental_hours"),
        F.col("amount").alias("total_amount"),
    )

    # The cleaned CSV columns, typed; a value that does not parse becomes NULL (the row stays).
    dim_vehicle = dims["vehicles"].select(
        "vehicle_id",
        "vehicle_type",
        "make",
        "model",
        F.col("year").try_cast(T.IntegerType()).alias("year"),
        F.col("daily_rate").try_cast(common.MONEY).alias("daily_rate"),
    )
    dim_user = dims["users"].select(
        "user_id",
        "first_name",
        "last_name",
        "email",
        _parse_date("signup_date").alias("signup_date"),
        "city",
    )
    dim_location = dims["locations"].select(
        "location_id", "city", "state", "country", "zip_code"
    )
    dim_date = common.literal_table(
        spark, [dim_date_row(common.check_date(date))], DIM_DATE_SCHEMA
    )

    tables = {
        # The fact table grows with the data: written in parallel, not as one file.
        "fact_rentals": (fact_rentals, False),
        "dim_vehicle": (dim_vehicle, True),
        "dim_user": (dim_user, True),
        "dim_location": (dim_location, True),
        "dim_date": (dim_date, True),
    }
    return common.finish(spark, output, JOB, date, tables, prepared)


if __name__ == "__main__":
    sys.exit(common.job_main(JOB, __doc__.splitlines()[0], run))
