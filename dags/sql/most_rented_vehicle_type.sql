-- Most rented vehicle type for one day.
--
-- Reads `vehicle_type_performance`, written by spark/vehicle_location_metrics.py under
-- processed/vehicle_type_performance/ds=<date>/. There are only a handful of vehicle types,
-- so the whole ranking is returned: the first row answers the question and ties stay
-- visible instead of being cut at random.

SELECT
    RANK() OVER (ORDER BY transaction_count DESC) AS rental_rank,
    vehicle_type,
    transaction_count,
    total_revenue,
    avg_rental_hours,
    total_rental_hours
FROM vehicle_type_performance
WHERE ds = '{{ ds }}'
ORDER BY rental_rank, total_revenue DESC
