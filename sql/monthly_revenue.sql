-- Revenue by quarter: orders, buyers, revenue and average order value (the `year`
-- column comes from the Hive partition folders of `orders` and prunes the scan)
SELECT
    year,
    date_part('quarter', order_ts) AS quarter,
    count(*) AS orders,
    count(DISTINCT customer_id) AS buyers,
    round(sum(amount), 2) AS revenue,
    round(avg(amount), 2) AS avg_order_value
FROM orders
WHERE year >= 2023
GROUP BY year, date_part('quarter', order_ts)
ORDER BY year, quarter;
