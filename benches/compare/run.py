"""Every end-to-end comparison of issue 9 in one command: ours against the tools users would pick instead.

    python3 benches/compare/run.py --scale small                          # smoke run, a few minutes
    python3 benches/compare/run.py --scale large --runs 5 --out bench-large.md

Needs only Python 3.11's standard library to start. It then
1. finds the release binary (`--bin`; by default `$CARGO_TARGET_DIR` or `target/` of this repository,
   built with `cargo build --release` when missing);
2. creates a virtual environment `WORK/venv` with the peers (pinned: the versions BENCHMARKS.md reports)
   unless `--python` names an interpreter that already has them;
3. generates the data under `--work` (default ~/.cache/dfm-bench), reusing what an earlier run left there:
   lakes from `datafusion-marketing generate` in WORK/lake-c<customers> (symlink an existing lake there to
   reuse it, e.g. `ln -s /tmp/lake10m ~/.cache/dfm-bench/lake-c1100000`), interactions from
   similarity.py's generator in WORK/interactions-u<users>-i<items>-n<rows>. What our binary derives from
   them (CLV summaries, journeys) is rebuilt on every run;
4. runs each workload with ours and with each peer alternately, `--runs` times, every run in a fresh
   process, and prints the median wall time, the largest peak RSS (/usr/bin/time), ours / peer against the
   target of the family issue, and whether both produced the same answer within the stated tolerance.

Scales (see SCALES): large = 10M orders / 1.1M customers (RFM, CLV; Pareto/NBD on the first 20k customers),
the 1M-order lake's 1.37M journeys (attribution; 8 channels) and 1M synthetic journeys with 15 channels
(Markov and Shapley, issue 4's benchmark), 20M interactions (item cosine) and 2M (association rules:
mlxtend needs ~4 GB at 2M and would exhaust the memory at 20M); small = one 20k-customer lake (180k orders,
246k journeys; Pareto/NBD on 5k customers), 50k synthetic journeys with 12 channels and 200k interactions for both similarity workloads.

Workloads (`--only` / `--skip` take these keys): rfm (vs DuckDB NTILE SQL), clv (summary, BG/NBD, BG/NBD +
Gamma-Gamma + CLV vs lifetimes), pareto (vs lifetimes), markov (order 1 vs ChannelAttribution on the lake's and on the synthetic journeys;
order 3 and Shapley alone),
heuristic (vs DuckDB list SQL), cosine (vs DuckDB self-join and scipy), rules (vs mlxtend); rfm, clv summary,
heuristic, cosine and rules also run the bare DataFusion scan + aggregate of the same columns (the floor).
Wall time is the whole process for every engine except lifetimes, which is timed around its library calls
only (data already in memory), so the CLV ratios understate ours. Each timed whole-process run directly
follows an untimed run of the same command (`--no-warmup` turns this off): this VM drops the page cache of
idle files within seconds, and without it a process started after a peer's long run reads its executable
back from disk (common.WARMUP has the numbers); lifetimes loads its code and data before its clock starts. The per-family scripts (rfm.py, clv.py,
markov.py, heuristic.py, similarity.py) run the same workloads on their own.

A workload that fails is reported in the table and the others still run; the exit status is 1 when any
workload failed or any agreement check did not pass.
"""
import argparse
import datetime
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import clv
import common
import heuristic
import markov
import rfm
import similarity

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

PEERS = ["duckdb==2.0.0", "lifetimes==0.11.3", "channelattribution==2.2.5", "scipy==1.17.1", "mlxtend==0.25.0",
         "pandas==3.1.1", "pyarrow==26.0.1"]

KEYS = ("rfm", "clv", "pareto", "markov", "heuristic", "cosine", "rules")

SUPPORT, CONFIDENCE = 0.01, 0.1  # association rules: issue 6's min_support, similarity.py's min_confidence

# prints the installed version of each package named in argv
VERSIONS = """
import importlib.metadata as m, json, sys
def version(p):
    try:
        return m.version(p)
    except m.PackageNotFoundError:
        return "MISSING"
print(json.dumps({p: version(p) for p in sys.argv[1:]}))
"""


@dataclass(frozen=True)
class Scale:
    orders_customers: int  # `generate --customers` of the RFM and CLV lake
    journeys_customers: int  # `generate --customers` of the lake the attribution journeys come from
    pareto_customers: int  # Pareto/NBD fits the first this many customers' summaries
    synthetic: tuple[int, int]  # synthetic journeys, channels (issue 4's benchmark)
    cosine: tuple[int, int, int]  # users, items, interactions
    rules: tuple[int, int, int]


SCALES = {
    "small": Scale(20_000, 20_000, 5_000, (50_000, 12), (20_000, 20_000, 200_000), (20_000, 20_000, 200_000)),
    "large": Scale(1_100_000, 110_000, 20_000, (1_000_000, 15), (2_000_000, 20_000, 20_000_000), (200_000, 20_000, 2_000_000)),
}


def log(message):
    print(message, file=sys.stderr, flush=True)


def find_binary(path):
    """The binary to benchmark; the default one is built when missing."""
    if path:
        if not os.access(path, os.X_OK):
            sys.exit(f"--bin {path}: no such executable")
        return path
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    default = target / "release" / "datafusion-marketing"
    if not default.exists():
        log(f"{default} missing: cargo build --release")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    return str(default)


def peer_python(work, python):
    """The interpreter that runs the peers: `python` as given, or WORK/venv with PEERS installed."""
    if python:
        return python
    venv = work / "venv"
    interpreter = venv / "bin" / "python"
    stamp = venv / "peers.txt"  # what was installed, so a changed PEERS list reinstalls
    if not interpreter.exists():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not stamp.exists() or stamp.read_text().split() != PEERS:
        log(f"installing the peers into {venv}: {' '.join(PEERS)}")
        subprocess.run([str(interpreter), "-m", "pip", "install", "--quiet", *PEERS], check=True)
        stamp.write_text("\n".join(PEERS) + "\n")
    return str(interpreter)


def lake(binary, work, customers):
    """WORK/lake-c<customers>, generated unless present (generated aside, then renamed: complete or absent)."""
    path = work / f"lake-c{customers}"
    if not path.exists():
        partial = work / f"lake-c{customers}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log(f"generating {path}")
        subprocess.run([binary, "generate", str(partial), "--customers", str(customers)], check=True,
                       stdout=subprocess.DEVNULL)
        partial.rename(path)
    return path


def interactions(python, work, users, items, rows):
    """A lake with one `interactions` table from similarity.py's generator, generated unless present."""
    path = work / f"interactions-u{users}-i{items}-n{rows}"
    if not (path / "interactions" / "part-0.parquet").exists():
        log(f"generating {path}")
        script = ("import sys; sys.path.insert(0, sys.argv[1]); import similarity; "
                  "similarity.generate(sys.argv[2], *map(int, sys.argv[3:]))")
        subprocess.run([python, "-c", script, str(HERE), str(path / "interactions" / "part-0.parquet"), str(users),
                        str(items), str(rows)], check=True)
    return path


def describe(binary, python):
    """Lines about the machine and the engines' versions."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    versions = subprocess.run([python, "-c", VERSIONS, *(p.split("==")[0] for p in PEERS)], capture_output=True,
                              text=True, check=True)
    ours = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return [f"machine: {os.cpu_count()} cores ({cpu}), {mem / 2**20:.0f} GiB RAM, {platform.platform()}",
            f"ours: {ours} ({binary}); {code_layout(binary)}",
            "peers: " + ", ".join(f"{k} {v}" for k, v in json.loads(versions.stdout).items())]


def code_layout(binary):
    """Whether the binary's code starts with the functions of link/symbol-order.txt (see build.rs): without
    that order a query keeps 60-80 MiB more of the binary resident."""
    try:
        names = {l.strip() for l in open(REPO / "link" / "symbol-order.txt") if not l.startswith("#")}
        table = subprocess.run(["nm", "-n", "--defined-only", binary], capture_output=True, text=True,
                               check=True).stdout
    except (OSError, subprocess.CalledProcessError) as ex:
        return f"code layout unknown ({ex})"
    first = [p[2] for p in (l.split(maxsplit=2) for l in table.splitlines()) if len(p) == 3 and p[1] in "Tt"]
    first = first[:1000]
    ordered = sum(f in names for f in first)
    return (f"code layout: {ordered} of its first {len(first)} functions are in link/symbol-order.txt "
            f"({'ordered' if ordered > len(first) // 2 else 'NOT ordered: expect more RSS'})")


def families(keys, scale, binary, python, work):
    """(keys, builder) of each family with a selected workload. A builder prepares the family's data and
    returns its workloads, which may include others on the same data (the caller keeps the family's keys)."""
    @functools.cache
    def orders():
        path = lake(binary, work, scale.orders_customers)
        n = common.ours(binary, "SELECT count(*) AS orders, count(DISTINCT customer_id) AS buyers FROM orders",
                        path).answer[0]
        log(f"orders lake {path}: {n['orders']:,} orders, {n['buyers']:,} buyers")
        return path

    def clv_workloads():
        derived = work / f"clv-c{scale.orders_customers}"
        derived.mkdir(exist_ok=True)
        return clv.workloads(binary, str(orders()), python, str(derived), scale.pareto_customers)

    def attribution():
        source = lake(binary, work, scale.journeys_customers)
        derived = work / f"journeys-c{scale.journeys_customers}"
        derived.mkdir(exist_ok=True)
        parquet, csv = str(derived / "journeys.parquet"), str(derived / "paths.csv")
        j = markov.build_journeys(binary, str(source), parquet, csv)
        log(f"journeys from {source}: {j['journeys']:,} journeys, {j['conversions']:,} converting, "
            f"{j['paths']:,} distinct paths")
        return markov.workloads(binary, csv, python) + heuristic.workloads(binary, parquet, python)

    def synthetic():
        n, channels = scale.synthetic
        derived = work / f"journeys-synthetic-n{n}-c{channels}"
        derived.mkdir(exist_ok=True)
        parquet, csv = str(derived / "journeys.parquet"), str(derived / "paths.csv")
        j = markov.synthesize(python, parquet, csv, n, channels)
        log(f"synthetic journeys {derived}: {j['journeys']:,} journeys, {j['touches']:,} touches, "
            f"{j['conversions']:,} converting, {j['paths']:,} distinct paths, {j['channels']} channels")
        return markov.synthetic_workloads(binary, parquet, csv, python, channels)

    def similar(shape):
        path = interactions(python, work, *shape)
        log(f"interactions {path}: {shape[2]:,} rows, {shape[0]:,} users, {shape[1]:,} items")
        return similarity.workloads(binary, str(path), python, SUPPORT, CONFIDENCE)

    return [(k, b) for k, b in [
        ({"rfm"}, lambda: rfm.workloads(binary, str(orders()), python)),
        ({"clv", "pareto"}, clv_workloads),
        ({"markov", "heuristic"}, attribution),
        ({"markov"}, synthetic),
        ({"cosine"}, lambda: similar(scale.cosine)),
        ({"rules"}, lambda: similar(scale.rules)),
    ] if k & keys]


def key_list(text):
    keys = [k for k in text.split(",") if k]
    unknown = set(keys) - set(KEYS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {', '.join(sorted(unknown))}; known: {', '.join(KEYS)}")
    return keys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=SCALES, default="small")
    ap.add_argument("--work", type=Path, default=Path("~/.cache/dfm-bench").expanduser(),
                    help="where the lakes, the derived files and the venv live (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="alternating runs per engine (default: %(default)s)")
    ap.add_argument("--bin", help="our release binary (default: built from this repository when missing)")
    ap.add_argument("--python", help="an interpreter that already has the peers (skips the venv)")
    ap.add_argument("--only", type=key_list, default=[], help=f"comma-separated workloads to run: {','.join(KEYS)}")
    ap.add_argument("--skip", type=key_list, default=[], help="comma-separated workloads to leave out")
    ap.add_argument("--out", type=Path, help="also write the report (Markdown) to this file")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="time each whole-process run without the untimed run of the same command before it "
                         "(see common.WARMUP)")
    a = ap.parse_args()
    scale = SCALES[a.scale]
    a.work.mkdir(parents=True, exist_ok=True)
    binary = find_binary(a.bin)
    python = peer_python(a.work, a.python)
    header = [f"# Comparison, scale {a.scale}, {a.runs} alternating run(s), "
              f"{datetime.datetime.now().isoformat(timespec='minutes')}", ""]
    header += [f"- {line}" for line in describe(binary, python)]
    header += [f"- command: `{' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}`",
               "- wall time: median, whole process (lifetimes: its library calls only)"
               + (", each timed run right after an untimed run of the same command" if a.warmup else ", no warm-up run")
               + "; RSS: largest peak; ratio: ours / peer", ""]

    keys = (set(a.only) or set(KEYS)) - set(a.skip)
    rows = []
    for family, build in families(keys, scale, binary, python, a.work):
        try:
            workloads = build()
        except Exception as ex:  # data preparation failed: report it, go on with the other families
            name = "/".join(sorted(family & keys))
            if isinstance(ex, subprocess.CalledProcessError):  # its stderr went to the log already
                why = f"{Path(str(ex.cmd[0])).name} exited with {ex.returncode} (see the log)"
            else:
                why = str(ex) if isinstance(ex, common.RunError) else f"{type(ex).__name__}: {ex}"
            log(f"preparing {name} FAILED: {getattr(ex, 'detail', why)}")
            rows.append(common.Row(name, agreement=f"ERROR (preparing the data): {why}", failed=True))
            continue
        rows += common.measure([w for w in workloads if w.key in family & keys], a.runs, warmup=a.warmup)

    report = "\n".join(header) + "\n" + common.markdown(rows, scale=a.scale)
    print(report, end="")
    if a.out:
        a.out.write_text(report)
    failed = [r.workload for r in rows if r.failed]
    if failed:
        sys.exit(f"failed or disagreeing: {', '.join(dict.fromkeys(failed))}")


if __name__ == "__main__":
    main()
