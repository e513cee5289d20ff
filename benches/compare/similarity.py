"""Recommendation similarity: item-item cosine top-20 against DuckDB running the self-join
equivalent and against scipy sparse X.T @ X + top-k; association rules against mlxtend
fpgrowth + association_rules.

    cargo build --release
    python -m venv /tmp/peers && /tmp/peers/bin/pip install duckdb scipy pandas pyarrow mlxtend
    /tmp/peers/bin/python benches/compare/similarity.py --users 200000 --items 20000 --interactions 2000000 \
        --runs 3 --bin target/release/datafusion-marketing

The interactions (user_id, item_id) are generated here: item popularity is Zipf (s = 1.05) over a
seeded permutation, user activity geometric with the mean giving `--interactions` rows, pairs
distinct. Each workload runs alternately (ours, then each peer, then the bare DataFusion GROUP BY
user of the same columns as the floor) `--runs` times in fresh processes; the table shows median
wall time (whole process: reading Parquet included for everyone), peak RSS, the ratio against the
targets (cosine: 0.3x DuckDB, 1x scipy; rules: 50x faster than mlxtend) and whether the answers
agree: the neighbour count and the sum of overlaps exactly, the sum of scores to 1e-9 relative; for
rules the rule count exactly and the sum of lifts to 1e-9 relative. `run.py` runs these workloads
as part of the full comparison.
"""
import argparse
import os
import sys
import tempfile

import common


def generate(path, users, items, interactions, seed=3):
    import numpy as np
    import pandas as pd

    ranks = np.arange(1, items + 1, dtype=np.float64)
    p = ranks ** -1.05
    p /= p.sum()
    draws = interactions
    for _ in range(3):  # repeated picks collapse: draw more until the distinct pairs reach the target
        rng = np.random.default_rng(seed)
        perm = rng.permutation(items)
        counts = rng.geometric(min(1.0, users / draws), size=users)
        u = np.repeat(np.arange(users, dtype=np.int64), counts)
        i = perm[rng.choice(items, size=len(u), p=p)].astype(np.int64)
        df = pd.DataFrame({"user_id": u, "item_id": i}).drop_duplicates()
        if len(df) >= interactions:
            break
        draws = int(draws * interactions / len(df) * 1.01)
    df = df.iloc[:interactions]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    df.to_parquet(path + ".partial", index=False, row_group_size=256 * 1024)
    os.replace(path + ".partial", path)  # a complete file or none: an interrupted run does not leave half a table
    return len(df)


OURS_SIM = """SELECT count(*) AS neighbours, sum(score) AS score, sum(overlap) AS overlap
FROM item_similarity('interactions', 'user_id', 'item_id', 'cosine', 20)"""

DUCK_SIM = """
WITH ui AS (SELECT DISTINCT user_id, item_id FROM read_parquet('{path}')),
n AS (SELECT item_id, count(*) AS n FROM ui GROUP BY item_id),
co AS (SELECT a.item_id AS i, b.item_id AS j, count(*) AS c
       FROM ui a JOIN ui b ON a.user_id = b.user_id AND a.item_id <> b.item_id GROUP BY 1, 2),
s AS (SELECT i, j, c, c / sqrt(ni.n * nj.n) AS score FROM co JOIN n ni ON ni.item_id = i JOIN n nj ON nj.item_id = j),
r AS (SELECT *, row_number() OVER (PARTITION BY i ORDER BY score DESC, j) AS rn FROM s)
SELECT count(*) AS neighbours, sum(score) AS score, sum(c) AS overlap FROM r WHERE rn <= 20
"""

SCIPY_RUNNER = """
import sys, json
import numpy as np, pyarrow.parquet as pq, scipy.sparse as sp
t = pq.read_table(sys.argv[1], columns=["user_id", "item_id"])
u = t.column("user_id").to_numpy(); i = t.column("item_id").to_numpy()
items, i_idx = np.unique(i, return_inverse=True)
users, u_idx = np.unique(u, return_inverse=True)
X = sp.csr_matrix((np.ones(len(u), dtype=np.float64), (u_idx, i_idx)), shape=(len(users), len(items)))
X.data[:] = 1.0  # binary, duplicates summed above
C = (X.T @ X).tocsr()
n = C.diagonal().copy()
C.setdiag(0); C.eliminate_zeros()
rows = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))
score = C.data / np.sqrt(n[rows] * n[C.indices])
count = total = overlap = 0
for r in range(C.shape[0]):
    lo, hi = C.indptr[r], C.indptr[r + 1]
    if lo == hi: continue
    s = score[lo:hi]; nb = items[C.indices[lo:hi]]
    top = np.lexsort((nb, -s))[:20]
    count += len(top); total += float(s[top].sum()); overlap += float(C.data[lo:hi][top].sum())
print(json.dumps([{"neighbours": count, "score": total, "overlap": overlap}]))
"""

OURS_RULES = """SELECT count(*) AS rules, sum(lift) AS lift
FROM association_rules('interactions', 'user_id', 'item_id', {support}, {confidence})"""

MLXTEND_RUNNER = """
import sys, json
import pandas as pd, pyarrow.parquet as pq
from mlxtend.frequent_patterns import fpgrowth, association_rules
t = pq.read_table(sys.argv[1]).to_pandas()
support, confidence = float(sys.argv[2]), float(sys.argv[3])
baskets = t.groupby("user_id")["item_id"].apply(list)
from mlxtend.preprocessing import TransactionEncoder
te = TransactionEncoder()
m = te.fit(baskets).transform(baskets, sparse=True)
df = pd.DataFrame.sparse.from_spmatrix(m, columns=te.columns_)
sets = fpgrowth(df, min_support=support, use_colnames=True)
rules = association_rules(sets, num_itemsets=len(baskets), metric="confidence", min_threshold=confidence)
print(json.dumps([{"rules": len(rules), "lift": float(rules["lift"].sum())}]))
"""


FLOOR = """SELECT count(*) AS users, sum(n) AS interactions
FROM (SELECT user_id, count(item_id) AS n FROM interactions GROUP BY user_id)"""


def check_similarity(ours, peer):
    o, p = ours[0], peer[0]
    exact = common.within([o["neighbours"], o["overlap"]], [p["neighbours"], p["overlap"]], 0,
                          "neighbour count and overlap sum")
    score = common.within([o["score"]], [p["score"]], 1e-9, "score sum")
    return common.Check(exact.ok and score.ok, f"{exact.text}; {score.text}")


def check_rules(ours, peer):
    o, p = ours[0], peer[0]
    count = common.within([o["rules"]], [p["rules"]], 0, "rule count")
    lift = common.within([o["lift"]], [p["lift"]], 1e-9, "lift sum")
    return common.Check(count.ok and lift.ok, f"{count.text}; {lift.text}")


def workloads(binary, lake, python, support, confidence, skip=()):
    """Item cosine top-20 (key "cosine") and association rules (key "rules") on the `interactions`
    table of `lake`; `skip` names peers to leave out: duckdb, scipy, mlxtend."""
    path = os.path.join(lake, "interactions", "part-0.parquet")
    ours = lambda label, sql: common.Engine(f"ours: {label}", lambda: common.ours(binary, sql, lake))
    peer = lambda key, label, run, **kw: [common.Peer(common.Engine(label, run), **kw)] if key not in skip else []
    floor = common.Peer(common.Engine("bare DataFusion GROUP BY user", lambda: common.ours(binary, FLOOR, lake)))
    rules = OURS_RULES.format(support=support, confidence=confidence)
    return [
        common.Workload("cosine", "item-item cosine top-20", ours("item_similarity", OURS_SIM),
                        peer("duckdb", "DuckDB self-join", lambda: common.duckdb(python, DUCK_SIM.format(path=path)),
                             target=0.3, check=check_similarity)
                        + peer("scipy", "scipy X.T@X + top-k", lambda: common.python(python, SCIPY_RUNNER, [path]),
                               target=1.0, check=check_similarity)
                        + [floor]),
        common.Workload("rules", f"association rules (support {support:g})", ours("association_rules", rules),
                        peer("mlxtend", "mlxtend fpgrowth + association_rules",
                             lambda: common.python(python, MLXTEND_RUNNER, [path, str(support), str(confidence)]),
                             target=0.02, check=check_rules)
                        + [floor]),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--interactions", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--work", default=None, help="folder for the generated lake (default: a temp folder)")
    ap.add_argument("--support", type=float, default=0.01)
    ap.add_argument("--confidence", type=float, default=0.1)
    ap.add_argument("--skip", default="", help="comma-separated peers to skip: duckdb,scipy,mlxtend")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="sim-bench-")
    path = os.path.join(work, "interactions", "part-0.parquet")
    if not os.path.exists(path):
        rows = generate(path, a.users, a.items, a.interactions)
        print(f"generated {rows} distinct interactions in {path}", file=sys.stderr)
    skip = set(filter(None, a.skip.split(",")))
    common.report(common.measure(workloads(a.bin, work, a.python, a.support, a.confidence, skip), a.runs))


if __name__ == "__main__":
    main()
