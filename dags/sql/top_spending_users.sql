-- Top spending users for one day.
--
-- Reads `user_spending`, written by spark/user_transaction_metrics.py under
-- processed/user_spending/ds=<date>/. One row per user, already joined with users.csv.

SELECT
    user_id,
    first_name,
    last_name,
    total_spent,
    transaction_count,
    total_rental_hours,
    avg_amount
FROM user_spending
WHERE ds = '{{ ds }}'
ORDER BY total_spent DESC, user_id
LIMIT 10
