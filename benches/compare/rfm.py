"""RFM end to end: `rfm(...)` against DuckDB running the equivalent hand-written SQL
(NTILE scores + a CASE segment map) and against a bare DataFusion GROUP BY scan.

    cargo build --release
    target/release/datafusion-marketing generate /data/lake10m --customers 1100000   # ~10M orders
    python -m venv /tmp/peers && /tmp/peers/bin/pip install duckdb
    /tmp/peers/bin/python benches/compare/rfm.py /data/lake10m --runs 5 --bin target/release/datafusion-marketing

Each workload runs alternately (ours, DuckDB, bare scan) `--runs` times in fresh processes;
prints median wall time, peak RSS (from /usr/bin/time) and the ratios, and checks that both
engines agree on recency, frequency and monetary totals (scores differ by design: NTILE
splits ties arbitrarily, quantile_score does not).
"""
import argparse
import statistics
import subprocess
import sys
import tempfile

OURS = """SELECT segment, count(*) AS customers, sum(recency_days) AS recency, sum(frequency) AS frequency,
       round(sum(monetary), 2) AS monetary, sum(r_score) AS r, sum(f_score) AS f, sum(m_score) AS m
FROM rfm('orders', 'customer_id', 'order_ts', 'amount', TIMESTAMP '2026-01-01')
GROUP BY segment ORDER BY segment"""

BARE = """SELECT count(*) AS customers, sum(f) AS frequency, round(sum(m), 2) AS monetary, max(l) AS last_ts
FROM (SELECT customer_id, max(order_ts) AS l, count(*) AS f, sum(amount) AS m FROM orders GROUP BY customer_id)"""

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
       round(sum(monetary), 2) AS monetary, sum(r_score) AS r, sum(f_score) AS f, sum(m_score) AS m
FROM seg GROUP BY segment ORDER BY segment
"""

DUCK_RUNNER = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads = {threads}")
for row in con.sql(sys.stdin.read()).fetchall():
    print(",".join(str(x) for x in row))
"""


def timed(cmd, stdin=None):
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd,
                           input=stdin, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{cmd[0]} failed: {p.stderr}")
        wall, rss_kb = t.read().split()
    return float(wall), int(rss_kb) / 1024, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    ours = [a.bin, "--lake", a.lake, "--format", "csv", "-q", "-c", OURS]
    bare = [a.bin, "--lake", a.lake, "--format", "csv", "-q", "-c", BARE]
    duck = [sys.executable, "-c", DUCK_RUNNER.format(threads=a.threads)]
    results = {"rfm (ours)": [], "duckdb NTILE SQL": [], "bare GROUP BY scan": []}
    outputs = {}
    for _ in range(a.runs):
        for name, cmd, stdin in [("rfm (ours)", ours, None),
                                 ("duckdb NTILE SQL", duck, DUCK.format(lake=a.lake)),
                                 ("bare GROUP BY scan", bare, None)]:
            wall, rss, out = timed(cmd, stdin)
            results[name].append((wall, rss))
            outputs[name] = out
    print(f"{'workload':<22} {'median s':>9} {'peak RSS MiB':>13}")
    med = {}
    for name, rs in results.items():
        med[name] = statistics.median(w for w, _ in rs)
        print(f"{name:<22} {med[name]:>9.3f} {max(r for _, r in rs):>13.0f}")
    print(f"ours / duckdb = {med['rfm (ours)'] / med['duckdb NTILE SQL']:.2f}")
    print(f"ours / bare scan = {med['rfm (ours)'] / med['bare GROUP BY scan']:.2f}")
    # same customers, recency, frequency and monetary totals
    def totals(text, header):
        rows = [l.split(",") for l in text.strip().splitlines()[1 if header else 0:]]
        return (sum(int(r[1]) for r in rows), sum(int(r[2]) for r in rows),
                sum(int(r[3]) for r in rows), round(sum(float(r[4]) for r in rows), 0))
    t_ours = totals(outputs["rfm (ours)"], True)
    t_duck = totals(outputs["duckdb NTILE SQL"], False)
    print(f"totals (customers, recency, frequency, monetary): ours {t_ours} duckdb {t_duck}")
    if t_ours != t_duck:
        sys.exit("MISMATCH between engines")
    print("answers agree")


if __name__ == "__main__":
    main()
