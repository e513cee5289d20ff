"""Recommendation similarity: item-item cosine top-20 against DuckDB running the self-join
equivalent and against scipy sparse X.T @ X + top-k; association rules against mlxtend
fpgrowth + association_rules.

    cargo build --release
    python -m venv /tmp/peers && /tmp/peers/bin/pip install duckdb scipy pandas pyarrow mlxtend
    /tmp/peers/bin/python benches/compare/similarity.py --users 200000 --items 20000 --interactions 2000000 \
        --runs 3 --bin target/release/datafusion-marketing

The interactions (user_id, item_id) are generated here: item popularity is Zipf (s = 1.05) over a
seeded permutation, user activity geometric with the mean giving `--interactions` rows, pairs
distinct. Each workload runs alternately (ours, then each peer) `--runs` times in fresh processes;
it prints median wall time (whole process: reading Parquet included for everyone), peak RSS and
the ratio, and checks the answers agree: the neighbour count, the sum of scores (1e-9 relative)
and the sum of overlaps (exact); for rules the rule count and the sum of lifts.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


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
    df.to_parquet(path, index=False, row_group_size=256 * 1024)
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
SELECT count(*), sum(score), sum(c) FROM r WHERE rn <= 20
"""

DUCK_RUNNER = """
import sys, json, duckdb
con = duckdb.connect()
print(json.dumps([float(x) for x in con.execute(sys.stdin.read()).fetchall()[0]]))
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
print(json.dumps([count, total, overlap]))
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
print(json.dumps([len(rules), float(rules["lift"].sum())]))
"""


def timed(cmd, stdin=None):
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd,
                           input=stdin, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{cmd[:3]} failed: {p.stderr[-3000:]}")
        wall, rss_kb = t.read().split()[-2:]
    return float(wall), int(rss_kb) / 1024, p.stdout


def ours(binary, lake, sql):
    w, m, out = timed([binary, "--lake", lake, "--format", "json", "-c", sql])
    row = json.loads(out)[0]
    return w, m, [float(v) for v in row.values()]


def peer(python, script, args, stdin=None):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        w, m, out = timed([python, f.name] + args, stdin)
    finally:
        os.unlink(f.name)
    return w, m, json.loads(out)


def agree(a, b):
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


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
    skip = set(filter(None, a.skip.split(",")))
    work = a.work or tempfile.mkdtemp(prefix="sim-bench-")
    path = os.path.join(work, "interactions", "part-0.parquet")
    if not os.path.exists(path):
        rows = generate(path, a.users, a.items, a.interactions)
        print(f"generated {rows} distinct interactions in {path}")

    workloads = [
        ("item cosine top-20", OURS_SIM, [
            ("DuckDB self-join", lambda: peer(a.python, DUCK_RUNNER, [], DUCK_SIM.format(path=path)), "duckdb"),
            ("scipy X.T@X + top-k", lambda: peer(a.python, SCIPY_RUNNER, [path]), "scipy"),
        ]),
        (f"association rules (support {a.support})",
         OURS_RULES.format(support=a.support, confidence=a.confidence), [
            ("mlxtend fpgrowth", lambda: peer(a.python, MLXTEND_RUNNER, [path, str(a.support), str(a.confidence)]), "mlxtend"),
        ]),
    ]
    print(f"| workload | ours (s) | ours RSS (MiB) | peer | peer (s) | peer RSS (MiB) | ours / peer | answers differ by |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sql, peers in workloads:
        times = {"ours": [], **{p[0]: [] for p in peers}}
        rss = {k: [] for k in times}
        results = {}
        for _ in range(a.runs):
            w, m, r = ours(a.bin, work, sql)
            times["ours"].append(w); rss["ours"].append(m); results["ours"] = r
            for pname, run, key in peers:
                if key in skip:
                    continue
                w, m, r = run()
                times[pname].append(w); rss[pname].append(m); results[pname] = r
        ot = statistics.median(times["ours"])
        for pname, _, key in peers:
            if key in skip:
                continue
            pt = statistics.median(times[pname])
            print(f"| {name} | {ot:.2f} | {max(rss['ours']):.0f} | {pname} | {pt:.2f} | {max(rss[pname]):.0f} | "
                  f"{ot / pt:.2f} | {agree(results['ours'], results[pname]):.1e} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
