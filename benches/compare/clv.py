"""CLV against lifetimes: the transaction summary, BG/NBD on ~1M customers, Pareto/NBD on 20k
customers, Gamma-Gamma + 12-month CLV.

    cargo build --release
    target/release/datafusion-marketing generate /data/lake10m --customers 1100000   # ~10M orders
    python -m venv /tmp/peers && /tmp/peers/bin/pip install lifetimes duckdb pandas pyarrow
    /tmp/peers/bin/python benches/compare/clv.py /data/lake10m --runs 3 --bin target/release/datafusion-marketing

Both sides get the same inputs: the summary workload reads the lake's orders (lifetimes gets
them as a pandas DataFrame read by DuckDB, and only `summary_data_from_transaction_data` is
timed); the fit workloads read one summary Parquet file made by our `clv_summary` (lifetimes
gets numpy arrays — it breaks on newer pandas Series — and only `.fit` is timed). Ours is
timed as the wall time of a whole CLI process (start-up, Parquet reading and planning
included), so the ratios understate our advantage. Runs alternate; medians are printed with
peak RSS, and the fitted parameters are compared (relative difference).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

AS_OF = "TIMESTAMP '2026-01-01'"


def run_ours(binary, lake, sql):
    args = ["/usr/bin/time", "-f", "%M", binary, "--format", "json"]
    if lake:
        args += ["--lake", lake]
    args += ["-c", sql]
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"ours failed: {p.stderr}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return wall, rss_kb / 1024, json.loads(p.stdout)


PEER = r'''
import json, sys, time, warnings
warnings.simplefilter("ignore")
import duckdb, numpy as np
from lifetimes import BetaGeoFitter, ParetoNBDFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data
task, path = sys.argv[1], sys.argv[2]
out = {}
if task == "summary":
    tx = duckdb.sql(f"SELECT customer_id, order_ts, amount FROM read_parquet('{path}/orders/*/*.parquet', hive_partitioning = true) WHERE order_ts <= TIMESTAMP '2026-01-01'").df()
    t = time.perf_counter()
    s = summary_data_from_transaction_data(tx, "customer_id", "order_ts", monetary_value_col="amount", observation_period_end="2026-01-01", freq="D")
    out["seconds"] = time.perf_counter() - t
    out["check"] = [int(len(s)), float(s["frequency"].sum()), float(s["recency"].sum()), float(s["T"].sum()), float(s["monetary_value"].sum())]
else:
    d = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").df()
    f, r, T = (d[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    t = time.perf_counter()
    if task == "bgnbd":
        m = BetaGeoFitter().fit(f, r, T)
        out["params"] = [float(m.params_[k]) for k in ("r", "alpha", "a", "b")]
    elif task == "pareto":
        m = ParetoNBDFitter().fit(f, r, T)
        out["params"] = [float(m.params_[k]) for k in ("r", "alpha", "s", "beta")]
        # lifetimes' own log-likelihood at its optimum (its optimizer can stop short)
        out["ll"] = float(np.sum(ParetoNBDFitter._conditional_log_likelihood(tuple(out["params"]), f, r, T)))
    elif task == "ggclv":
        bg = BetaGeoFitter().fit(f, r, T)
        mv = d["monetary_value"].to_numpy().astype(float)
        keep = (f > 0) & (mv > 0)
        gg = GammaGammaFitter().fit(f[keep], mv[keep])
        import pandas as pd
        clv = gg.customer_lifetime_value(bg, pd.Series(f), pd.Series(r), pd.Series(T), pd.Series(mv), time=12, discount_rate=0.01, freq="D")
        out["params"] = [float(gg.params_[k]) for k in ("p", "q", "v")]
        out["check"] = [float(clv.sum())]
    out["seconds"] = time.perf_counter() - t
print(json.dumps(out))
'''


def run_peer(python, task, path):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PEER)
        script = f.name
    p = subprocess.run(["/usr/bin/time", "-f", "%M", python, script, task, path], capture_output=True, text=True)
    os.unlink(script)
    if p.returncode != 0:
        sys.exit(f"lifetimes failed: {p.stderr[-2000:]}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return json.loads(p.stdout), rss_kb / 1024


def rel(a, b):
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--pareto-customers", type=int, default=20000)
    ap.add_argument("--skip-summary-peer", action="store_true", help="lifetimes' summary of 10M rows is slow")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="clv-bench-")
    full = os.path.join(work, "summary.parquet")
    small = os.path.join(work, "summary_small.parquet")
    summary = f"""SELECT customer_id, s.frequency AS frequency, s.recency AS recency, s."T" AS "T", s.monetary_value AS monetary_value
        FROM (SELECT customer_id, clv_summary(order_ts, amount, {AS_OF}) AS s FROM orders GROUP BY customer_id) WHERE s IS NOT NULL"""
    run_ours(a.bin, a.lake, f"COPY ({summary} ORDER BY customer_id) TO '{full}' STORED AS PARQUET")
    run_ours(a.bin, None, f"COPY (SELECT * FROM '{full}' ORDER BY customer_id LIMIT {a.pareto_customers}) TO '{small}' STORED AS PARQUET")

    rows = []
    # 1. summary of the transactions
    ours_sql = f"""SELECT count(*) AS n, sum(s.frequency) AS f, sum(s.recency) AS r, sum(s."T") AS t, sum(s.monetary_value) AS m
        FROM (SELECT clv_summary(order_ts, amount, {AS_OF}) AS s FROM orders GROUP BY customer_id) WHERE s IS NOT NULL"""
    tasks = [
        ("summary (10M transactions)", a.lake, ours_sql, "summary", a.lake),
        ("BG/NBD fit (all customers)", None,
         f"""SELECT m.r, m.alpha, m.a, m.b, m.customers, m.converged FROM (SELECT bgnbd_fit(frequency, recency, "T") AS m FROM '{full}')""",
         "bgnbd", full),
        (f"Pareto/NBD fit ({a.pareto_customers} customers)", None,
         f"""SELECT m.r, m.alpha, m.s, m.beta, m.log_likelihood AS ll, m.customers, m.converged FROM (SELECT pareto_nbd_fit(frequency, recency, "T") AS m FROM '{small}')""",
         "pareto", small),
        ("BG/NBD + Gamma-Gamma + 12-month CLV", None,
         f"""WITH m AS (SELECT bgnbd_fit(frequency, recency, "T", 0, 'day') AS bg,
                   gamma_gamma_fit(frequency, monetary_value) FILTER (WHERE monetary_value > 0) AS gg FROM '{full}')
             SELECT gg.p AS p, gg.q AS q, gg.v AS v, sum(customer_lifetime_value(bg, gg, frequency, recency, "T", monetary_value)) AS clv
             FROM '{full}' CROSS JOIN m GROUP BY gg.p, gg.q, gg.v""",
         "ggclv", full),
    ]
    for name, lake, sql, task, path in tasks:
        ours_t, ours_rss, peer_t, peer_rss = [], [], [], []
        result = peer_out = None
        for _ in range(a.runs):
            w, m, result = run_ours(a.bin, lake, sql)
            ours_t.append(w)
            ours_rss.append(m)
            if task == "summary" and a.skip_summary_peer:
                continue
            peer_out, pm = run_peer(a.python, task, path)
            peer_t.append(peer_out["seconds"])
            peer_rss.append(pm)
        r0 = result[0]
        if peer_out is None:
            agree = "not run"
        elif task == "summary":
            agree = f"{rel([r0['n'], r0['f'], r0['r'], r0['t'], r0['m']], peer_out['check']):.1e}"
        elif task == "ggclv":
            agree = f"{rel([r0['p'], r0['q'], r0['v'], r0['clv']], peer_out['params'] + peer_out['check']):.1e}"
        else:
            keys = ["r", "alpha", "a", "b"] if task == "bgnbd" else ["r", "alpha", "s", "beta"]
            got = [r0[f"m[{k}]"] if f"m[{k}]" in r0 else r0[k] for k in keys]
            agree = f"{rel(got, peer_out['params']):.1e}"
            if "ll" in peer_out:
                agree += f" (log-lik. ours - lifetimes = {r0['ll'] - peer_out['ll']:+.3f})"
        om = statistics.median(ours_t)
        pmed = statistics.median(peer_t) if peer_t else float("nan")
        rows.append((name, om, max(ours_rss), pmed, max(peer_rss) if peer_rss else float("nan"), pmed / om, agree))
        print(rows[-1], file=sys.stderr)
    print(f"| workload | ours (s) | ours peak RSS (MiB) | lifetimes (s) | lifetimes peak RSS (MiB) | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    for name, om, orss, pm, prss, ratio, agree in rows:
        print(f"| {name} | {om:.3f} | {orss:.0f} | {pm:.2f} | {prss:.0f} | {ratio:.0f}x | {agree} |")


if __name__ == "__main__":
    main()
