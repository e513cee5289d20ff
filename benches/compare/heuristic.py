"""Heuristic attribution end to end: `attribution_weights(path, model)` unnested into credit per
channel for the five rule-based models (first touch, last touch, last non-direct, linear, position
based 40/20/40) against DuckDB running hand-written SQL that does the same credit split over the
list column, and against the bare DataFusion unnest + GROUP BY channel of the same columns (the floor).

    target/release/datafusion-marketing generate /data/lake1m --customers 110000   # ~1M journeys
    /tmp/peers/bin/pip install duckdb
    /tmp/peers/bin/python benches/compare/heuristic.py /data/lake1m --bin target/release/datafusion-marketing

The journeys (sql/channel_attribution.sql's 30-day lookback, built by markov.py's step 1) are kept as
one Parquet file (path, converted, value per journey) that every engine reads. The engines run
alternately `--runs` times in fresh processes. Agreement: the same (model, channel) pairs, with
credited conversions and credited value equal to 1e-9 relative. No target is set for this workload.
`run.py` runs it as part of the full comparison.
"""
import argparse
import os
import sys
import tempfile

import common
import markov

MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "position_based")

# one pass, as an analyst writes it: the weight lists of every model unnested side by side with the path
# (parallel unnest zips lists of equal length), summed per channel
OURS = """SELECT channel, {sums} FROM (
    SELECT unnest(path) AS channel, {weights}, value FROM '{parquet}' WHERE converted = 1)
GROUP BY channel"""

# i = the touch's position (1-based) in a path of n touches; lnd = the position of the last touch that is
# not 'direct' (the last touch when all are)
DUCK = """
WITH j AS (
    SELECT path, len(path) AS n, value,
           coalesce(list_max(list_filter(range(1, len(path) + 1), lambda k: path[k] IS DISTINCT FROM 'direct')),
                    len(path)) AS lnd
    FROM read_parquet('{parquet}') WHERE converted = 1
),
t AS (SELECT n, lnd, value, unnest(path) AS channel, unnest(range(1, n + 1)) AS i FROM j),
w AS (
    SELECT channel, value,
           CASE WHEN i = 1 THEN 1 ELSE 0 END::DOUBLE AS first_touch,
           CASE WHEN i = n THEN 1 ELSE 0 END::DOUBLE AS last_touch,
           CASE WHEN i = lnd THEN 1 ELSE 0 END::DOUBLE AS last_non_direct,
           1 / n::DOUBLE AS linear,
           CASE WHEN n = 1 THEN 1 WHEN n = 2 THEN 0.5 WHEN i = 1 OR i = n THEN 0.4 ELSE 0.2 / (n - 2) END::DOUBLE
               AS position_based
    FROM t
)
SELECT channel, {sums} FROM w GROUP BY channel"""

FLOOR = """SELECT channel, count(*) AS touches, sum(value) AS value
FROM (SELECT unnest(path) AS channel, value FROM '{parquet}' WHERE converted = 1) GROUP BY channel"""


def per_model(rows):
    return {(m, r["channel"]): (r[f"{m}_conversions"], r[f"{m}_value"]) for r in rows for m in MODELS}


def check(ours, duck):
    mine, theirs = per_model(ours), per_model(duck)
    return common.same_keys_within(mine, theirs, 1e-9, "conversions and value per (model, channel)")


def workloads(binary, parquet, python):
    """Heuristic attribution against DuckDB SQL and the bare unnest + GROUP BY channel (no targets)."""
    sums = ", ".join(f"sum({m}) AS {m}_conversions, sum({m} * value) AS {m}_value" for m in MODELS)
    weights = ", ".join(f"unnest(attribution_weights(path, '{m}')) AS {m}" for m in MODELS)
    ours = OURS.format(parquet=parquet, sums=sums, weights=weights)
    duck = DUCK.format(parquet=parquet, sums=sums)
    floor = FLOOR.format(parquet=parquet)
    return [common.Workload("heuristic", "heuristic attribution (5 models)",
                            common.Engine("ours: attribution_weights", lambda: common.ours(binary, ours)), [
        common.Peer(common.Engine("DuckDB list SQL", lambda: common.duckdb(python, duck)), check=check),
        common.Peer(common.Engine("bare DataFusion unnest + GROUP BY channel", lambda: common.ours(binary, floor))),
    ])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="heuristic-bench-") as work:
        parquet = os.path.join(work, "journeys.parquet")
        print(f"journeys: {markov.build_journeys(a.bin, a.lake, parquet, os.path.join(work, 'paths.csv'))}",
              file=sys.stderr)
        rows = common.measure(workloads(a.bin, parquet, sys.executable), a.runs)
    common.report(rows)


if __name__ == "__main__":
    main()
