"""Shared machinery of the comparison scripts in this folder (standard library only).

A `Workload` is one task run by our CLI and by one or more peers (another engine, or the bare DataFusion
scan + aggregate of the same columns as the floor). `measure` runs every engine of a workload alternately,
`runs` times, each in a fresh process, and returns one `Row` per peer: median wall time, largest peak RSS,
the ratio ours / peer against the target, and whether both answers agree within the stated tolerance.
`markdown` turns the rows into the summary table.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

# The floor: bare DataFusion scan + aggregate of the columns RFM and the CLV summary read, per customer.
ORDERS_FLOOR = """SELECT count(*) AS customers, sum(f) AS frequency, sum(m) AS monetary, max(l) AS last_ts
FROM (SELECT customer_id, max(order_ts) AS l, count(*) AS f, sum(amount) AS m FROM orders GROUP BY customer_id)"""


class RunError(RuntimeError):
    """A child process failed: the message is the last line of its stderr, `detail` the tail of it."""

    def __init__(self, message, detail):
        super().__init__(message)
        self.detail = detail


@dataclass
class Measurement:
    wall: float  # seconds: the whole process, unless the peer reports the time of its library call itself
    rss: float  # peak resident set of the process, MiB
    answer: object  # what the agreement check compares


@dataclass
class Check:
    ok: bool
    text: str


@dataclass
class Engine:
    label: str
    run: Callable[[], Measurement]
    # Timed as a whole process: `measure` runs the same command once, untimed, right before each timed
    # run (see WARMUP). False for an engine that times its own library call after loading its code and data.
    warm: bool = True


# Why a whole-process engine gets an untimed run of its own command right before each timed run: on the
# benchmark VM the page cache of files left idle for a few seconds is dropped, so a process started after
# another engine's long run reads part of its executable (and its input) back from disk. Measured with our
# BG/NBD fit (0.10-0.13 s back to back): 0.12-0.21 s with 6-16 major faults after 12-30 s idle. The engines
# that time their own library call (lifetimes) load their code and input before their clock starts; this
# gives every other engine the same start. `--no-warmup` (run.py) turns it off.
WARMUP = True


@dataclass
class Peer:
    engine: Engine
    target: float | None = None  # largest acceptable ours / peer wall-time ratio
    rss_target: float | None = None  # largest acceptable ours / peer peak-RSS ratio
    check: Callable[[object, object], Check] | None = None  # (ours answer, peer answer) -> Check


@dataclass
class Workload:
    key: str  # the name run.py's --only / --skip select it by
    name: str
    ours: Engine
    peers: list[Peer] = field(default_factory=list)


@dataclass
class Row:
    workload: str
    ours_s: float | None = None
    ours_rss: float | None = None
    peer: str = "—"
    peer_s: float | None = None
    peer_rss: float | None = None
    target: str = "—"
    met: str = "—"
    agreement: str = "—"
    failed: bool = False  # an error, or answers that disagree

    @property
    def ratio(self):
        if self.ours_s is None or not self.peer_s:
            return None
        return self.ours_s / self.peer_s


def timed(cmd, stdin=None):
    """Run `cmd` to completion: (wall seconds, peak RSS MiB, stdout). Raises RunError if it fails."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        start = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + [str(c) for c in cmd],
                           input=stdin, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if p.returncode != 0:
            err = p.stderr.strip()
            raise RunError(f"{os.path.basename(str(cmd[0]))} exited with {p.returncode}: "
                           f"{err.splitlines()[-1] if err else 'no message'}", err[-3000:])
        rss_kb = int(t.read().split()[-1])
    return wall, rss_kb / 1024, p.stdout


def ours(binary, sql, lake=None):
    """Run SQL with our CLI (JSON output): a Measurement whose answer is the last statement's rows (dicts)."""
    cmd = [binary] + (["--lake", lake] if lake else []) + ["--format", "json", f"--command={sql}"]
    wall, rss, out = timed(cmd)
    lines = out.strip().splitlines()
    return Measurement(wall, rss, json.loads(lines[-1]) if lines else [])


def python(interpreter, script, args=(), stdin=None):
    """Run a Python script (source text) in a fresh interpreter; the last line of its stdout must be one JSON
    document (libraries may print before it). If the document is an object with a "seconds" key, that (the
    library call alone) is the wall time."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        wall, rss, out = timed([interpreter, f.name, *args], stdin)
    finally:
        os.unlink(f.name)
    answer = json.loads(out.strip().splitlines()[-1])
    if isinstance(answer, dict) and "seconds" in answer:
        wall = answer["seconds"]
    return Measurement(wall, rss, answer)


DUCKDB = """
import decimal, json, sys, duckdb
con = duckdb.connect()
if len(sys.argv) > 1:
    con.execute(f"SET threads = {int(sys.argv[1])}")
cur = con.execute(sys.stdin.read())
names = [d[0] for d in cur.description]
rows = [dict(zip(names, r)) for r in cur.fetchall()]
print(json.dumps(rows, default=lambda v: float(v) if isinstance(v, decimal.Decimal) else str(v)))
"""


def duckdb(interpreter, sql, threads=None):
    """Run SQL with DuckDB (default threads: all cores): a Measurement whose answer is the rows (dicts)."""
    return python(interpreter, DUCKDB, [] if threads is None else [str(threads)], sql)


def rel_diff(a, b):
    """Largest relative difference between two equally long sequences of numbers (b is the reference)."""
    if len(a) != len(b):
        return float("inf")
    return max((abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b)), default=0.0)


def within(ours_values, peer_values, tolerance, what):
    """Check that the numbers agree to `tolerance` relative."""
    d = rel_diff([float(v) for v in ours_values], [float(v) for v in peer_values])
    shown = "identical" if d == 0 else f"max rel. diff {d:.1e}"
    return Check(d <= tolerance, f"{what} {shown} (tol. {tolerance:g})")


def same_keys_within(ours_map, peer_map, tolerance, what):
    """Check two {key: number or tuple of numbers} maps: same keys, every value within `tolerance` relative."""
    if set(ours_map) != set(peer_map):
        return Check(False, f"{what}: keys differ ({sorted(set(ours_map) ^ set(peer_map))[:5]})")
    flat = lambda m: [v for k in sorted(m) for v in (m[k] if isinstance(m[k], (list, tuple)) else [m[k]])]
    return within(flat(ours_map), flat(peer_map), tolerance, f"{what} ({len(ours_map)} keys)")


def secs(x):
    return "—" if x is None else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def mib(x):
    return "—" if x is None else f"{x:.0f}"


def target_text(peer):
    if peer.target is None and peer.rss_target is None:
        return "—"
    parts = []
    if peer.target is not None:
        faster = f" (≥ {1 / peer.target:g}× faster)" if peer.target < 0.1 else ""
        parts.append(f"time ≤ {peer.target:g}×{faster}")
    if peer.rss_target is not None:
        parts.append(f"RSS ≤ {peer.rss_target:g}×")
    return ", ".join(parts)


def measure(workloads, runs, log=sys.stderr, warmup=WARMUP):
    """Run each workload's engines alternately `runs` times; one Row per peer (or one per failed workload).
    With `warmup` each timed run of an engine marked `warm` directly follows an untimed run of the same
    engine."""
    rows = []
    for w in workloads:
        engines = [w.ours] + [p.engine for p in w.peers]
        walls = [[] for _ in engines]
        rsss = [[] for _ in engines]
        answers = [None] * len(engines)
        errors = [None] * len(engines)
        for r in range(runs):
            for i, e in enumerate(engines):
                if errors[i] or errors[0]:
                    continue
                try:
                    if warmup and e.warm:
                        e.run()
                    m = e.run()
                except Exception as ex:  # a crash, or output that does not parse: report it, go on
                    errors[i] = str(ex) if isinstance(ex, RunError) else f"{type(ex).__name__}: {ex}"
                    print(f"[{w.name}] {e.label} FAILED: {getattr(ex, 'detail', errors[i])}", file=log, flush=True)
                    continue
                walls[i].append(m.wall)
                rsss[i].append(m.rss)
                answers[i] = m.answer
                print(f"[{w.name}] run {r + 1}/{runs} {e.label:<40} {secs(m.wall):>8} s {mib(m.rss):>6} MiB",
                      file=log, flush=True)
        if errors[0]:
            rows.append(Row(w.name, peer=w.ours.label, agreement=f"ERROR (ours): {errors[0][:300]}", failed=True))
            continue
        ours_s, ours_rss = statistics.median(walls[0]), max(rsss[0])
        if not w.peers:
            rows.append(Row(w.name, ours_s, ours_rss))
        for i, p in enumerate(w.peers, start=1):
            row = Row(w.name, ours_s, ours_rss, peer=p.engine.label, target=target_text(p))
            if errors[i]:
                row.agreement, row.failed = f"ERROR (peer): {errors[i][:300]}", True
                rows.append(row)
                continue
            row.peer_s, row.peer_rss = statistics.median(walls[i]), max(rsss[i])
            verdicts = []
            if p.target is not None:
                verdicts.append(("time " if p.rss_target else "") + ("yes" if row.ratio <= p.target else "NO"))
            if p.rss_target is not None:
                verdicts.append("RSS " + ("yes" if ours_rss <= p.rss_target * row.peer_rss else "NO"))
            row.met = ", ".join(verdicts) or "—"
            if p.check is not None:
                try:
                    c = p.check(answers[0], answers[i])
                except Exception as ex:
                    c = Check(False, f"check could not read the answers: {type(ex).__name__}: {ex}")
                row.agreement = ("ok: " if c.ok else "MISMATCH: ") + c.text
                row.failed = not c.ok
            rows.append(row)
    return rows


def markdown(rows, scale=None):
    """The summary table (Markdown); `scale` adds a scale column."""
    head = ["workload"] + (["scale"] if scale else []) + [
        "ours (s)", "ours RSS (MiB)", "peer", "peer (s)", "peer RSS (MiB)", "ours / peer", "target", "met?",
        "agreement"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.3g}"
        cells = [r.workload] + ([scale] if scale else []) + [
            secs(r.ours_s), mib(r.ours_rss), r.peer, secs(r.peer_s), mib(r.peer_rss), ratio, r.target, r.met,
            r.agreement.replace("|", "/").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(rows):
    """Print the table of a standalone script; exit non-zero if any workload failed or disagreed."""
    print(markdown(rows), end="")
    if any(r.failed for r in rows):
        sys.exit("some workloads failed or disagree")
