"""Markov attribution end to end: `markov_attribution` (exact) against ChannelAttribution's
`markov_model` (Monte-Carlo, default convergence settings) on the same paths.

    target/release/datafusion-marketing generate /data/lake1m --customers 110000   # ~1M journeys
    /tmp/peers/bin/pip install channelattribution pandas matplotlib
    /tmp/peers/bin/python benches/compare/markov.py /data/lake1m --bin target/release/datafusion-marketing

Step 1 builds the journeys with sql/channel_attribution.sql's 30-day lookback (also kept as Parquet,
the input of heuristic.py) and writes one row per distinct path (ChannelAttribution's input format) to
a CSV sorted by path (so ChannelAttribution's seeded simulation gets the same input every time); step 2
times both engines on that CSV (ours reads it with DataFusion), alternately, `--runs` times, in fresh
processes, plus our order 3 on the same paths. Agreement: the same channels, each credited the same share
of the conversions within 1 percentage point (ChannelAttribution's answer is a Monte-Carlo estimate: see
`check`). Target: at most 0.5x ChannelAttribution's time. `run.py` runs this workload as part of the
full comparison.
"""
import argparse
import os
import sys
import tempfile

import common

HERE = os.path.dirname(os.path.abspath(__file__))
SQL = os.path.join(HERE, "..", "..", "sql", "channel_attribution.sql")

OURS = """CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true');
SELECT c.channel AS channel, c.conversions AS conversions FROM (
  SELECT unnest(markov_attribution(string_to_array(path, ' > '), conversions, value, non_conversions, {order}))
  AS c FROM p) ORDER BY channel;"""

CA = """
import json, sys, pandas as pd
from ChannelAttribution import markov_model
d = pd.read_csv(sys.argv[1])
r = markov_model(d, "path", "conversions", var_value="value", var_null="non_conversions", order=1, flg_pro=False)
print(json.dumps({x.channel_name: float(x.total_conversions) for x in r.itertuples()}))
"""


def build_journeys(binary, lake, parquet, csv):
    """Build the journeys of sql/channel_attribution.sql once, keep them in `parquet` (path, converted,
    value per journey) and write one row per distinct path to `csv`. Returns {journeys, conversions, paths}."""
    view = open(SQL).read().split(";\n")[0] + ";"
    sql = view + f"""
COPY (SELECT path, converted, value FROM journeys) TO '{parquet}' STORED AS PARQUET;
CREATE EXTERNAL TABLE j STORED AS PARQUET LOCATION '{parquet}';
COPY (SELECT array_to_string(path, ' > ') AS path, sum(converted) AS conversions,
             sum(1 - converted) AS non_conversions, round(sum(value), 2) AS value
      FROM j GROUP BY array_to_string(path, ' > ') ORDER BY 1) TO '{csv}' STORED AS CSV
     OPTIONS ('format.has_header' 'true');
SELECT count(*) AS journeys, sum(converted) AS conversions, count(DISTINCT path) AS paths FROM j;"""
    return common.ours(binary, sql, lake).answer[0]


def check(ours, ca):
    """Each channel's share of the credited conversions within 1 percentage point: ChannelAttribution's answer
    is a Monte-Carlo estimate (default convergence: 5 % variation between folds), so small channels can be
    off by more than 5 % of their own credit."""
    mine = {r["channel"]: r["conversions"] for r in ours}
    if set(mine) != set(ca):
        return common.Check(False, f"channels differ: {sorted(set(mine) ^ set(ca))}")
    total_ours, total_ca = sum(mine.values()), sum(ca.values())
    share = max(abs(mine[c] / total_ours - ca[c] / total_ca) for c in ca)
    rel = max(abs(mine[c] / ca[c] - 1) for c in ca)
    return common.Check(share <= 0.01, f"share of conversions per channel ({len(ca)} channels) max diff "
                                       f"{100 * share:.2f} pp (tol. 1 pp; largest per-channel rel. diff {rel:.1%})")


def workloads(binary, csv, python):
    """Markov order 1 against ChannelAttribution (target 0.5x), and our order 3 alone."""
    ours = lambda order: common.Engine(f"ours: markov_attribution order {order}",
                                       lambda: common.ours(binary, OURS.format(csv=csv, order=order)))
    return [
        common.Workload("markov", "Markov attribution order 1", ours(1), [
            common.Peer(common.Engine("ChannelAttribution markov_model", lambda: common.python(python, CA, [csv])),
                        target=0.5, check=check)]),
        common.Workload("markov", "Markov attribution order 3 (ours only)", ours(3)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    ap.add_argument("--reuse-paths", action="store_true", help="reuse the paths CSV of an earlier run")
    a = ap.parse_args()
    csv = os.path.join(tempfile.gettempdir(), "markov_paths.csv")
    parquet = os.path.join(tempfile.gettempdir(), "markov_journeys.parquet")
    if not (a.reuse_paths and os.path.exists(csv)):
        print(f"journeys: {build_journeys(a.bin, a.lake, parquet, csv)}", file=sys.stderr)
    common.report(common.measure(workloads(a.bin, csv, sys.executable), a.runs))


if __name__ == "__main__":
    main()
