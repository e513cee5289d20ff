"""Reference R, F, M and quintile scores for the test lake, from DuckDB running the
equivalent hand-written SQL (the cross-check for `rfm(...)`).

    cargo run -- generate /tmp/rfm-lake --customers 3000 --seed 7   # the lake tests/common.rs makes
    python tests/data/make_rfm_fixture.py /tmp/rfm-lake > tests/data/rfm_duckdb_seed7_3000.csv

Needs `pip install duckdb` (tests do not). Definitions, as documented for `rfm`:
recency_days = whole 24-hour periods from the last order to as_of (= latest order),
frequency = orders, monetary = sum(amount); score = 1 + floor(5 * (rank - 1) / n) with
SQL RANK (ties share the lowest rank), recency ranked descending.
"""
import sys

import duckdb

lake = sys.argv[1]
sql = f"""
WITH o AS (
    SELECT * FROM read_parquet('{lake}/orders/*/*.parquet', hive_partitioning = true)
),
per AS (
    SELECT customer_id, max(order_ts) AS last_ts, count(*) AS frequency, sum(amount) AS monetary
    FROM o GROUP BY customer_id
),
r AS (
    SELECT customer_id,
           (epoch_us((SELECT max(last_ts) FROM per)) - epoch_us(last_ts)) // 86400000000 AS recency_days,
           frequency, monetary
    FROM per
)
SELECT customer_id, recency_days, frequency, monetary,
       1 + floor(5 * (rank() OVER (ORDER BY recency_days DESC) - 1) / count(*) OVER ())::BIGINT AS r_score,
       1 + floor(5 * (rank() OVER (ORDER BY frequency) - 1) / count(*) OVER ())::BIGINT AS f_score,
       1 + floor(5 * (rank() OVER (ORDER BY monetary) - 1) / count(*) OVER ())::BIGINT AS m_score
FROM r
ORDER BY customer_id
"""
print("customer_id,recency_days,frequency,monetary,r_score,f_score,m_score")
for row in duckdb.sql(sql).fetchall():
    c, rec, f, m, rs, fs, ms = row
    print(f"{c},{rec},{f},{m!r},{rs},{fs},{ms}")
