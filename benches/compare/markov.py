"""Markov attribution end to end: `markov_attribution` (exact) against ChannelAttribution's
`markov_model` (Monte-Carlo, default convergence settings) on the same paths.

    target/release/datafusion-marketing generate /data/lake1m --customers 110000   # ~1M journeys
    /tmp/peers/bin/pip install channelattribution pandas matplotlib
    /tmp/peers/bin/python benches/compare/markov.py /data/lake1m --bin target/release/datafusion-marketing

Step 1 builds the journeys with sql/channel_attribution.sql's 30-day lookback and writes one
row per distinct path (ChannelAttribution's input format) to a CSV; step 2 times both engines
on that CSV (ours reads it with DataFusion), alternately, `--runs` times, in fresh processes.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SQL = os.path.join(HERE, "..", "..", "sql", "channel_attribution.sql")

OURS = """CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true');
SELECT c.channel AS channel, c.conversions AS conversions FROM (
  SELECT unnest(markov_attribution(string_to_array(path, ' > '), conversions, value, non_conversions, {order}))
  AS c FROM p) ORDER BY channel;"""

CA = """
import sys, pandas as pd
from ChannelAttribution import markov_model
d = pd.read_csv(sys.argv[1])
r = markov_model(d, "path", "conversions", var_value="value", var_null="non_conversions", order=1, flg_pro=False)
for _, x in r.sort_values("channel_name").iterrows():
    print(f"RESULT {x.channel_name},{x.total_conversions}")
"""


def timed(cmd):
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{cmd[0]} failed: {p.stderr}")
        wall, rss = t.read().split()
    return float(wall), int(rss) / 1024, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    ap.add_argument("--reuse-paths", action="store_true", help="reuse the paths CSV of an earlier run")
    a = ap.parse_args()
    csv = os.path.join(tempfile.gettempdir(), "markov_paths.csv")
    if not (a.reuse_paths and os.path.exists(csv)):
        build_paths(a, csv)
    compare(a, csv)


def build_paths(a, csv):
    view = open(SQL).read().split(";\n")[0] + ";"
    export = view + f"""
COPY (SELECT array_to_string(path, ' > ') AS path, sum(converted) AS conversions,
             sum(1 - converted) AS non_conversions, round(sum(value), 2) AS value
      FROM journeys GROUP BY array_to_string(path, ' > ')) TO '{csv}' STORED AS CSV OPTIONS ('format.has_header' 'true');
SELECT count(*) AS journeys, sum(converted) AS conversions FROM journeys;"""
    wall, _, out = timed([a.bin, "--lake", a.lake, "-q", "--format", "csv", f"--command={export}"])
    print(f"journeys built in {wall:.1f}s: {out.strip().splitlines()[-1]} (journeys,conversions)")


def compare(a, csv):
    results = {"ours order 1": [], "ChannelAttribution order 1": [], "ours order 3": []}
    outs = {}
    for _ in range(a.runs):
        for name, cmd in [
            ("ours order 1", [a.bin, "-q", "--format", "csv", "-c", OURS.format(csv=csv, order=1)]),
            ("ChannelAttribution order 1", [sys.executable, "-c", CA, csv]),
            ("ours order 3", [a.bin, "-q", "--format", "csv", "-c", OURS.format(csv=csv, order=3)]),
        ]:
            wall, rss, out = timed(cmd)
            results[name].append((wall, rss))
            outs[name] = out
    for name, rs in results.items():
        print(f"{name:<28} median {statistics.median(w for w, _ in rs):8.2f} s  peak RSS {max(r for _, r in rs):7.0f} MiB")
    ours = statistics.median(w for w, _ in results["ours order 1"])
    ca = statistics.median(w for w, _ in results["ChannelAttribution order 1"])
    print(f"ours / ChannelAttribution = {ours / ca:.3f}")
    mine = dict(l.split(",") for l in outs["ours order 1"].strip().splitlines()[1:])
    theirs = dict(l[7:].split(",") for l in outs["ChannelAttribution order 1"].splitlines() if l.startswith("RESULT "))
    worst = max(abs(float(mine[c]) / float(theirs[c]) - 1) for c in theirs)
    print(f"largest per-channel difference from ChannelAttribution: {100 * worst:.2f}% (its Monte-Carlo noise)")


if __name__ == "__main__":
    main()
