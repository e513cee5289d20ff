"""Reference attribution from ChannelAttribution (pip `channelattribution`) on the same
paths our tests use: heuristic models (exact) and markov_model order 1 (Monte-Carlo).

    # paths: the 30-day-lookback journeys of sql/channel_attribution.sql on the test lake
    # (generate --customers 3000 --seed 7), one row per distinct path seen in >= 2 journeys
    python tests/data/make_attribution_fixture.py tests/data/attribution_paths.csv.gz \
        tests/data/attribution_channelattribution.csv

Needs `pip install channelattribution pandas matplotlib` (tests do not).
"""
import sys

import pandas as pd
from ChannelAttribution import heuristic_models, markov_model

paths = pd.read_csv(sys.argv[1])
h = heuristic_models(paths, "path", "conversions", var_value="value", flg_pro=False)
m = markov_model(paths, "path", "conversions", var_value="value", var_null="non_conversions",
                 order=1, conv_par=0.01, seed=42, flg_pro=False)
out = h.merge(m, on="channel_name").sort_values("channel_name")
# ChannelAttribution prints progress on stdout, so the fixture goes to a file
with open(sys.argv[2], "w") as f:
    f.write("channel,first_touch,last_touch,linear,markov_conversions,markov_value\n")
    for _, r in out.iterrows():
        f.write(f"{r.channel_name},{r.first_touch_conversions!r},{r.last_touch_conversions!r},"
                f"{r.linear_touch_conversions!r},{r.total_conversions!r},{r.total_conversion_value!r}\n")
