-- Lake overview: rows and time span of each table
SELECT 'customers' AS table_name, count(*) AS row_count, min(signup_ts) AS first_ts, max(signup_ts) AS last_ts FROM customers
UNION ALL
SELECT 'orders', count(*), min(order_ts), max(order_ts) FROM orders
UNION ALL
SELECT 'order_items', count(*), NULL, NULL FROM order_items
UNION ALL
SELECT 'touchpoints', count(*), min(ts), max(ts) FROM touchpoints
UNION ALL
SELECT 'events', count(*), min(ts), max(ts) FROM events
ORDER BY table_name;
