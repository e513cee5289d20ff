"""Reference Shapley attribution from DP6's Marketing Attribution Models (pip
`marketing-attribution-models==2.1.1`, module `mam`) on the paths our tests use, both variants:
`order=False` (coalition = the journey's set of distinct channels) and `order=True` (distinct channels
in first-touch order). `max_size=None`, so MAM does not truncate coalitions (we never do).

    python tests/data/make_shapley_fixture.py tests/data/attribution_paths.csv.gz \
        tests/data/attribution_shapley_mam.csv

Needs `pip install marketing-attribution-models==2.1.1 pandas` (tests do not).
"""
import sys
from collections import defaultdict

import pandas as pd
import polars as pl
from mam import MAM
from mam.models.shapley import ShapleyModel

SEP = " > "

paths = pd.read_csv(sys.argv[1])
# MAM's grouped-journey input: one row per (path, converted) with the number of journeys
rows = []
for r in paths.itertuples():
    if r.conversions > 0:
        rows.append({"path": r.path, "converted": True, "n": int(r.conversions)})
    if r.non_conversions > 0:
        rows.append({"path": r.path, "converted": False, "n": int(r.non_conversions)})
mam = MAM(pl.DataFrame(rows), format_type="grouped_journey", channels_colname="path",
          journey_with_conv_colname="converted", occurrences_colname="n", path_separator=SEP)

credit = {}
for order in (False, True):
    model = ShapleyModel(max_size=None, value_column="conv_rate", separator=SEP)
    table = model._compute_shapley(mam.unified_df, order=order)
    total = defaultdict(float)
    for comb, weights in zip(table["combinations"], table[model.model_name]):
        for channel, w in zip(comb.split(SEP), weights):
            total[channel] += w
    credit[order] = total

with open(sys.argv[2], "w") as f:
    f.write("channel,shapley_conversions,ordered_shapley_conversions\n")
    for channel in sorted(set(credit[False]) | set(credit[True])):
        f.write(f"{channel},{credit[False].get(channel, 0.0)!r},{credit[True].get(channel, 0.0)!r}\n")
