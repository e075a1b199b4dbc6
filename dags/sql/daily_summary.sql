-- One-row summary of a day of rentals, after both KPI jobs have been cataloged.
--
-- Reads the tables of both jobs (see the other files in this folder): the day's revenue and
-- count from `daily_revenue` (job 2), and the best location, vehicle type and user of the
-- day from `location_performance`, `vehicle_type_performance` (job 1) and `user_spending`
-- (job 2). A day with no rentals still returns its row, with NULLs.

WITH totals AS (
    SELECT SUM(total_revenue) AS total_revenue, SUM(transaction_count) AS transaction_count
    FROM daily_revenue
    WHERE ds = '{{ ds }}'
),
top_location AS (
    SELECT city, total_revenue
    FROM location_performance
    WHERE ds = '{{ ds }}'
    ORDER BY total_revenue DESC
    LIMIT 1
),
top_vehicle_type AS (
    SELECT vehicle_type, transaction_count
    FROM vehicle_type_performance
    WHERE ds = '{{ ds }}'
    ORDER BY transaction_count DESC
    LIMIT 1
),
top_user AS (
    SELECT user_id, total_spent
    FROM user_spending
    WHERE ds = '{{ ds }}'
    ORDER BY total_spent DESC
    LIMIT 1
)
SELECT
    DATE '{{ ds }}' AS rental_date,
    totals.total_revenue,
    totals.transaction_count,
    top_location.city AS top_location_city,
    top_location.total_revenue AS top_location_revenue,
    top_vehicle_type.vehicle_type AS most_rented_vehicle_type,
    top_vehicle_type.transaction_count AS most_rented_vehicle_type_rentals,
    top_user.user_id AS top_user_id,
    top_user.total_spent AS top_user_spent
FROM totals
LEFT JOIN top_location ON TRUE
LEFT JOIN top_vehicle_type ON TRUE
LEFT JOIN top_user ON TRUE
