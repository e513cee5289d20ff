"""RFM end to end: `rfm(...)` against DuckDB running the equivalent hand-written SQL
(NTILE scores + a CASE segment map) and against the bare DataFusion GROUP BY scan of the same columns.

    cargo build --release
    target/release/datafusion-marketing generate /data/lake10m --customers 1100000   # ~10M orders
    python -m venv /tmp/peers && /tmp/peers/bin/pip install duckdb
    /tmp/peers/bin/python benches/compare/rfm.py /data/lake10m --runs 5 --bin target/release/datafusion-marketing

The engines run alternately (ours, DuckDB, bare scan) `--runs` times in fresh processes; the table
shows median wall time, peak RSS (from /usr/bin/time) and the ratios against the targets, and checks
that the engines agree on the customer count and the recency, frequency and monetary totals (1e-9
relative; scores differ by design: NTILE splits ties arbitrarily, quantile_score does not).
`run.py` runs the same workload as part of the full comparison.
"""
import argparse
import sys

import common

OURS = """SELECT segment, count(*) AS customers, sum(recency_days) AS recency, sum(frequency) AS frequency,
       sum(monetary) AS monetary, sum(r_score) AS r, sum(f_score) AS f, sum(m_score) AS m
FROM rfm('orders', 'customer_id', 'order_ts', 'amount', TIMESTAMP '2026-01-01')
GROUP BY segment ORDER BY segment"""

DUCK = """
WITH per AS (
    SELECT customer_id,
           (epoch_us(TIMESTAMP '2026-01-01') - epoch_us(max(order_ts))) // 86400000000 AS recency_days,
           count(*) AS frequency, sum(amount) AS monetary
    FROM read_parquet('{lake}/orders/*/*.parquet', hive_partitioning = true)
    GROUP BY customer_id
),
scored AS (
    SELECT *, ntile(5) OVER (ORDER BY recency_days DESC) AS r_score,
              ntile(5) OVER (ORDER BY frequency) AS f_score,
              ntile(5) OVER (ORDER BY monetary) AS m_score
    FROM per
),
seg AS (
    SELECT *, CASE
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((5,5),(5,4),(4,5)) THEN 'Champions'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((5,3),(4,4),(3,5),(3,4)) THEN 'Loyal Customers'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((5,2),(4,2),(3,3),(4,3)) THEN 'Potential Loyalists'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((5,1)) THEN 'New Customers'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((4,1),(3,1)) THEN 'Promising'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((3,2),(2,3),(2,2)) THEN 'Need Attention'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((2,1)) THEN 'About To Sleep'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((2,5),(2,4),(1,3)) THEN 'At Risk'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((1,5),(1,4)) THEN 'Can''t Lose Them'
        WHEN (r_score, (f_score + m_score + 1) // 2) IN ((1,2)) THEN 'Hibernating'
        ELSE 'Lost' END AS segment
    FROM scored
)
SELECT segment, count(*) AS customers, sum(recency_days) AS recency, sum(frequency) AS frequency,
       sum(monetary) AS monetary, sum(r_score) AS r, sum(f_score) AS f, sum(m_score) AS m
FROM seg GROUP BY segment ORDER BY segment
"""



def totals(rows):
    return [sum(r[k] for r in rows) for k in ("customers", "recency", "frequency", "monetary")]


def check_duckdb(ours, duck):
    return common.within(totals(ours), totals(duck), 1e-9, "customers, recency, frequency, monetary totals")


def check_floor(ours, floor):
    keys = ("customers", "frequency", "monetary")
    got = dict(zip(("customers", "recency", "frequency", "monetary"), totals(ours)))
    return common.within([got[k] for k in keys], [floor[0][k] for k in keys], 1e-9, ", ".join(keys) + " totals")


def workloads(binary, lake, python, threads=None):
    """RFM against DuckDB (targets: 0.8x its time, no more memory) and the bare scan (target: 1.5x)."""
    duck = DUCK.format(lake=lake)
    ours = common.Engine("ours: rfm(...)", lambda: common.ours(binary, OURS, lake))
    peer = common.Engine("DuckDB NTILE SQL", lambda: common.duckdb(python, duck, threads))
    floor = common.Engine("bare DataFusion GROUP BY customer", lambda: common.ours(binary, common.ORDERS_FLOOR, lake))
    return [common.Workload("rfm", "RFM by segment", ours, [
        common.Peer(peer, target=0.8, rss_target=1.0, check=check_duckdb),
        common.Peer(floor, target=1.5, check=check_floor),
    ])]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    a = ap.parse_args()
    common.report(common.measure(workloads(a.bin, a.lake, sys.executable, a.threads), a.runs))


if __name__ == "__main__":
    main()
