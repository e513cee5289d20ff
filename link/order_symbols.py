#!/usr/bin/env python3
"""Write link/symbol-order.txt: the functions our workloads execute, for LLD's --symbol-ordering-file.

    python3 link/order_symbols.py target/release/datafusion-marketing [--customers 30000]

Runs the release binary under valgrind's callgrind (which records every function a process
executes) on a freshly generated lake, one process per workload: start-up alone, the benchmark
queries of benches/compare (imported from there) (RFM and its bare GROUP BY floor, the CLV summary and fits, BG/NBD on 1.2M
synthetic customers, item similarity and association rules) and the demo (every analysis in sql/, among
them Markov, Shapley and heuristic attribution, on a 3,000-customer lake).
The functions found are written most shared first: those every workload runs (start-up, SQL
planning, the Parquet scan), then the ones fewer workloads share, earlier workloads before later
ones, names in byte order. build.rs hands the file to the linker, which places these functions at
the start of .text in this order, so a query's code is a few contiguous MiB of the binary instead
of pages scattered over all of it.

Regenerate it after upgrading dependencies or changing features: symbol names carry hashes of
the crate versions and features, and names the binary no longer has are skipped by the linker.
Needs valgrind; takes about fifteen minutes.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

DEMO_CUSTOMERS = 3000
HERE = os.path.dirname(os.path.abspath(__file__))
# the benchmark's own queries, so the profiled code follows them
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benches", "compare"))
import clv  # noqa: E402
import common  # noqa: E402
import rfm  # noqa: E402
import similarity  # noqa: E402


def workloads(binary, lake, demo_lake, work):
    """(name, arguments) of each profiled process, most important first (earlier ones win ties).
    Writes the CLV fits' input first (outside the profile: the summary is profiled by its own query)."""
    full, small = clv.prepare(binary, lake, work, 5000)
    q = lambda *sql: ["--lake", lake, "--format", "json"] + [f"--command={s}" for s in sql]
    return [
        ("start", ["--format", "json", "--command=SELECT 1"]),
        ("rfm", q(rfm.OURS)),
        ("floor", q(common.ORDERS_FLOOR)),
        ("clv", q(clv.SUMMARY, clv.BGNBD.format(path=full), clv.PARETO.format(path=small),
                  clv.GGCLV.format(path=full))),
        # many distinct (x, t_x, T): the histogram's large-state paths and the fits' coarse levels
        ("fit", q("""SELECT m.r AS r, m.customers AS customers FROM (SELECT bgnbd_fit(f, CASE WHEN f = 0 THEN 0 ELSE
  CAST((v * 104729) % (t + 1) AS DOUBLE) END, CAST(t AS DOUBLE)) AS m FROM (SELECT v, (v * 31) % 25 AS f,
  30 + (v * 7919) % 700 AS t FROM generate_series(1, 1200000) AS g(v)))""")),
        ("similarity", q("""CREATE VIEW interactions AS SELECT o.customer_id AS user_id, i.product_id AS item_id
FROM order_items i JOIN orders o ON o.order_id = i.order_id""", similarity.OURS_SIM,
                         similarity.OURS_RULES.format(support=0.01, confidence=0.1))),
        ("demo", ["demo", "--dir", demo_lake]),
    ]


def text_symbols(binary):
    """Names of the functions defined in the binary."""
    out = subprocess.run(["nm", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    return {parts[2] for parts in (line.split(maxsplit=2) for line in out.splitlines())
            if len(parts) == 3 and parts[1] in "TtWw"}


def executed(binary, args, out_prefix):
    """Names of the functions one process executes (callgrind, names as in the symbol table)."""
    cmd = ["valgrind", "--tool=callgrind", "--demangle=no", "--compress-strings=no", "--dump-line=no",
           f"--callgrind-out-file={out_prefix}.%p", binary] + args
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"failed ({run.returncode}): {' '.join(cmd)[:300]}\n{run.stderr[-3000:]}")
    names = set()
    folder, prefix = os.path.split(out_prefix)
    for f in os.listdir(folder):
        if f.startswith(prefix + "."):
            with open(os.path.join(folder, f)) as profile:
                for line in profile:
                    m = re.match(r"c?fn=(?:\(\d+\) )?(.+)$", line)
                    if m:
                        names.add(m.group(1))
            os.remove(os.path.join(folder, f))
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", help="the release binary (target/release/datafusion-marketing)")
    ap.add_argument("--customers", type=int, default=30000, help="customers of the generated lake")
    ap.add_argument("--out", default=os.path.join(HERE, "symbol-order.txt"))
    a = ap.parse_args()
    defined = text_symbols(a.binary)
    with tempfile.TemporaryDirectory(prefix="dfm-order-") as work:
        lake = os.path.join(work, "lake")
        subprocess.run([a.binary, "generate", lake, "--customers", str(a.customers), "--seed", "7"],
                       check=True, capture_output=True)
        # the demo's analyses (Shapley, recommendations) are slow under valgrind: a smaller lake
        demo_lake = os.path.join(work, "demo-lake")
        subprocess.run([a.binary, "generate", demo_lake, "--customers", str(DEMO_CUSTOMERS), "--seed", "7"],
                       check=True, capture_output=True)
        runs = workloads(a.binary, lake, demo_lake, work)
        masks = {}
        for bit, (name, args) in enumerate(runs):
            found = executed(a.binary, args, os.path.join(work, f"cg-{name}")) & defined
            print(f"{name}: {len(found)} functions", file=sys.stderr)
            for f in found:
                masks[f] = masks.get(f, 0) | (1 << (len(runs) - 1 - bit))
    # most workloads first; among equals, the earlier workloads' functions first; then by name
    order = sorted(masks, key=lambda f: (-bin(masks[f]).count("1"), -masks[f], f))
    with open(a.out, "w") as out:
        out.write(f"# made by link/order_symbols.py from {os.path.basename(a.binary)}, {a.customers} customers; "
                  f"workloads: {', '.join(n for n, _ in runs)}\n")
        out.writelines(f + "\n" for f in order)
    print(f"{len(order)} functions -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
