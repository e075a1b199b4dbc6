-- Top revenue pickup locations for one day.
--
-- Reads `location_performance`, written by spark/vehicle_location_metrics.py under
-- processed/location_performance/ds=<date>/ and cataloged by the Glue crawler. One row per
-- pickup location, already joined with locations.csv.
-- Rendered by Sluice before it is sent to Athena: {{ ds }} is the run's logical date.

SELECT
    pickup_location_id,
    city,
    state,
    total_revenue,
    transaction_count,
    avg_amount,
    distinct_vehicles
FROM location_performance
WHERE ds = '{{ ds }}'
ORDER BY total_revenue DESC, pickup_location_id
LIMIT 10
