"""Scaling on Ballista: the same queries locally and on a cluster of 1 and 2 executors.

    python3 benches/compare/distributed.py --lake /tmp/lake10m --journeys journeys.parquet \
        --bin target/release/datafusion-marketing --runs 3

Needs a binary built with `--features ballista`. Starts a scheduler and the executors on 127.0.0.1
(free ports), runs each workload `--runs` times through the CLI with `--cluster`, checks that every
run prints exactly the local answer, and prints the median wall time per configuration as a markdown
table. Executors get `--concurrency` task slots each (default: cores / executors, so every
configuration has the machine's cores).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOADS = [
    ("RFM by segment (rfm table function, 10M orders)",
     "SELECT segment, count(*) AS customers, round(sum(monetary), 2) AS revenue "
     "FROM rfm('orders', 'customer_id', 'order_ts', 'amount', TIMESTAMP '2026-01-01') "
     "GROUP BY segment ORDER BY segment"),
    ("CLV: clv_summary per customer + bgnbd_fit (10M orders)",
     "SELECT round(m.r, 6) AS r, round(m.alpha, 4) AS alpha, round(m.a, 6) AS a, round(m.b, 5) AS b, "
     "m.customers AS customers FROM (SELECT bgnbd_fit(s) AS m FROM (SELECT clv_summary(order_ts, amount, "
     "TIMESTAMP '2026-01-01', 'week') AS s FROM orders GROUP BY customer_id))"),
    ("Markov attribution order 1 (journeys: touches per customer-month, converted when that month has an order)",
     "SELECT c.channel, round(c.removal_effect, 9) AS removal_effect, round(c.conversions, 6) AS conversions "
     "FROM (SELECT unnest(markov_attribution(j.path, CASE WHEN o.n IS NULL THEN 0 ELSE 1 END, coalesce(o.v, 0.0))) AS c "
     "FROM (SELECT customer_id, date_trunc('month', ts) AS m, journey_path(channel, ts) AS path "
     "      FROM touchpoints GROUP BY customer_id, date_trunc('month', ts)) j "
     "LEFT JOIN (SELECT customer_id, date_trunc('month', order_ts) AS m, count(*) AS n, sum(amount) AS v "
     "      FROM orders GROUP BY customer_id, date_trunc('month', order_ts)) o "
     "ON j.customer_id = o.customer_id AND j.m = o.m) ORDER BY c.channel"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def start_cluster(binary, executors, concurrency, work):
    port = free_port()
    procs = [subprocess.Popen([binary, "scheduler", "--bind", f"127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    wait_port(port, procs[0], "scheduler")
    for i in range(executors):
        flight, grpc = free_port(), free_port()
        p = subprocess.Popen([binary, "executor", "--scheduler", f"127.0.0.1:{port}",
                              "--bind", f"127.0.0.1:{flight}", "--grpc-port", str(grpc),
                              "--concurrency", str(concurrency), "--work-dir", os.path.join(work, f"e{i}")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(flight, p, f"executor {i}")
    return port, procs


def run(binary, lake, sql, cluster=None, partitions=None):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        if partitions:
            f.write(f"SET datafusion.execution.target_partitions = {partitions};\n")
        f.write(sql + ";\n")
        path = f.name
    cmd = [binary, "-q", "--format", "csv", "--lake", lake, "-f", path]
    if cluster:
        cmd += ["--cluster", f"df://127.0.0.1:{cluster}"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - start
    os.unlink(path)
    if out.returncode != 0:
        sys.exit(f"failed ({'cluster' if cluster else 'local'}): {out.stderr}")
    return took, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--bin", default="target/release/datafusion-marketing")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--executors", default="1,2")
    ap.add_argument("--partitions", type=int, default=4, help="target partitions on the cluster")
    a = ap.parse_args()
    cores = os.cpu_count() or 2
    configs = [("local", None)] + [(f"{n} executor(s) x {max(1, cores // n)} slots", n)
                                   for n in map(int, a.executors.split(","))]
    times = {}
    answers = {}
    for name, n in configs:
        work = tempfile.mkdtemp(prefix="dfm-ballista-")
        procs = []
        port = None
        if n:
            port, procs = start_cluster(a.bin, n, max(1, cores // n), work)
        try:
            for label, sql in WORKLOADS:
                for _ in range(a.runs):
                    took, out = run(a.bin, a.lake, sql, port, a.partitions if n else None)
                    times.setdefault((label, name), []).append(took)
                    if answers.setdefault(label, out) != out:
                        sys.exit(f"{label}: {name} printed a different answer:\n{out}\nvs\n{answers[label]}")
                print(f"{label} / {name}: {statistics.median(times[(label, name)]):.2f} s", file=sys.stderr)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
    print("| workload | " + " | ".join(n for n, _ in configs) + " |")
    print("|---|" + "---|" * len(configs))
    for label, _ in WORKLOADS:
        print(f"| {label} | " + " | ".join(f"{statistics.median(times[(label, n)]):.2f} s" for n, _ in configs) + " |")
    print(f"\nmedian of {a.runs} runs; every run printed the local answer", file=sys.stderr)


if __name__ == "__main__":
    main()
