"""Workflow overhead: what the engine costs per node and per run, with `Noop` nodes only, measured
against a floor that plain `sqlite3` reaches on the same machine in the same run.

    python benchmarks/workflow_overhead.py                   # the default set, a few minutes
    python benchmarks/workflow_overhead.py --quick           # smaller sizes, about a minute
    python benchmarks/workflow_overhead.py --sync FULL       # everything under synchronous=FULL
    python benchmarks/workflow_overhead.py --only chain,fanout --json out.json
    python benchmarks/workflow_overhead.py --only memory,history   # 100,000 runs, several minutes
    python benchmarks/workflow_overhead.py --only runs --profile   # cProfile the dispatcher thread
    PYTHONPATH=/path/to/older/checkout python benchmarks/workflow_overhead.py   # measure older code

Measurements (each on fresh database files in a temporary folder, timings repeated: chain and
fanout 5 times, the others 3, or --repeats; median kept).
The default set is floor, chain, fanout, runs, statements, latency; memory and history (100,000
runs, longer than all the others together) run when named in --only, or with --all.

  floor    plain `sqlite3` on a minimal schema (FLOOR_SCHEMA below), the file set up as durableflow
           sets up its own (WAL, connection.PAGE_SIZE, the same synchronous, journal_size_limit):
           a chain of N nodes done one after the other, each node two BEGIN IMMEDIATE
           transactions: (1) claim, `UPDATE messages SET status = 'leased' WHERE id = (SELECT ...
           WHERE status = 'ready' ORDER BY priority, id LIMIT 1) RETURNING ...`; (2) complete and
           route: the node's row INSERTed, the message acked (UPDATE), the next node's message
           INSERTed. Nodes per second. Every timed figure of chain, fanout and runs is
           bracketed by floor chains, each on a fresh file: 2 (--floor-chains) just before its
           clock starts and 2 just after it has cleaned up; the median of those 4 is the
           figure's floor sample, and the figure is reported as a ratio to it. The reported ratio
           is the median of the per-repeat ratios, so drift in the machine's speed hits both
           sides alike. The floor's own figure is the median of all its chains in the run.
  chain    one run of a chain of N Noop nodes, one worker with concurrency 1: the time from
           the worker's start to the run finished, divided by N (ms per node); ratio = its
           nodes/s over the floor's.
  fanout   one run of start -> N Noop -> end (the end node joins all N): nodes per second;
           ratio to the floor's nodes/s.
  runs     M runs of a 3-node Noop chain are started first, then the time from the workers'
           start until every run is finished: runs per second; ratio = 3 x runs/s over the
           floor's nodes/s. Variants: one worker in this process (concurrency 1; the one with a
           target), one process with concurrency 4, one worker subprocess, and P worker
           subprocesses (each `Engine(path, synchronous=...).worker(concurrency=1)` on the file).
  statements
           SQL statements the engine's writer connection (`engine.store._writer`) executes, counted
           with `set_trace_callback` (every statement, by kind: BEGIN, COMMIT, ROLLBACK, SAVEPOINT,
           RELEASE, INSERT, UPDATE, SELECT, DELETE, other), divided by nodes: during one untimed
           chain run of N (from the worker's start to the run finished: the worker's start-up is
           in it; what a start-up costs alone, on a file with nothing to do, is shown apart), one
           fan-out run, and the drain of M' 3-node runs; and engine.start() per run. An
           executemany counts once per row (SQLite runs the statement once per row). Reads on the engine's reader connections
           are not counted.
  latency  (a) one worker (concurrency 1) idle in this process: `engine.start()` of a 1-node Noop
           run until `engine.wait()` returns it completed, over L runs; (b) one worker
           subprocess (`Engine(path, synchronous=...).worker(concurrency=1)`) idle: from
           `engine.start()` in this process until this process sees the run completed, polling
           `PRAGMA data_version` every 0.5 ms on a read-only connection and reading the run's
           status when it moved, over L' runs. Before each start: the previous run is finished,
           the worker holds nothing (no lease, no ready message; in (a) also its `idle` flag is
           set: its claim found nothing and it waits), then a random pause of 0 to --gap-ms
           (150) ms, so starts land at different points of the idle worker's poll back-off
           (today it doubles from 1 ms up to 100 ms, which it reaches after about 130 ms idle;
           a larger --gap-ms gives more weight to a fully backed-off worker). p50, p99 (nearest rank), mean and max; the same by pause
           (thirds of 0..--gap-ms); and in (b) the run's own created_at -> finished_at stamps
           (ms resolution) as a cross-check of the polling.
  memory   R 3-node runs in batches, one engine and one long-lived worker in this process; RSS
           after each batch must stay flat (first, last, max, least-squares slope).
  history  M 3-node runs (one worker c=1) on a fresh file and on the file the memory
           measurement left (R finished runs), interleaved: throughput must stay flat as history
           grows. A worker's start-up quick_check reads the whole file once (about a second
           per 300 MB here) beside its first work: it is timed and reported apart, and the
           timed worker is started with quick_check=False, on both files alike.

Targets (issue 12), as medians of per-repeat ratios to the floor: under synchronous=NORMAL, chain
>= 0.6, fan-out >= 1.5, 3-node runs with one in-process worker >= 0.8; under FULL, fan-out >= 3
(chain and runs reported without a target). Latency (b): p99 under 50 ms, reported. Verdicts are
reported, never asserted: the exit status is 1 only when a measurement failed to run.

--profile wraps durableflow.worker.Worker._dispatch (the dispatcher thread) in cProfile, in this
process and in worker subprocesses; stats are written per measurement as .prof files and the top
entries are printed to stderr. Profiled timings are slower than unprofiled ones.
"""

from __future__ import annotations

import argparse
import cProfile
import collections
import functools
import gc
import io
import math
import multiprocessing as mp
import os
import pstats
import random
import re
import sqlite3
import statistics
import sys
import time
import traceback
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    Measurement, environment, fmt_rate, format_table, now, progress, remove_db, scratch_dir, write_json,
)

ACTIVE_SQL = "SELECT count(*) FROM runs WHERE status IN ('pending', 'running', 'paused', 'compensating')"
# Anything a worker could hold or take: a lease, a ready or leased message.
IN_HAND_SQL = ("SELECT (SELECT count(*) FROM leases) + "
               "(SELECT count(*) FROM messages WHERE status = 'ready' OR status = 'leased')")
TERMINAL = ("completed", "failed", "cancelled")

# Targets: ratio of the figure's nodes/s to the floor's nodes/s (runs: 3 x runs/s), median of
# the per-repeat ratios, by synchronous mode. A figure without a target is reported.
TARGETS = {
    "NORMAL": {"chain": 0.6, "fanout": 1.5, "runs_1w": 0.8},
    "FULL": {"fanout": 3.0},
}
LATENCY_TARGET_P99_MS = 50.0   # (b), an idle worker in another process
NAMES = ("floor", "chain", "fanout", "runs", "statements", "latency", "memory", "history")
DEFAULT = ("floor", "chain", "fanout", "runs", "statements", "latency")
RATIO_NAMES = ("chain", "fanout", "runs")

LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]


def machine_cpu_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal: all but idle and iowait are work
    ticks = sum(int(x) for i, x in enumerate(fields[1:9]) if i not in (3, 4))
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (worker subprocesses)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --- the floor: plain sqlite3, two transactions per node ------------------------------------------

FLOOR_SCHEMA = """
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    payload     TEXT,
    status      TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    finished_at REAL
);
CREATE INDEX messages_ready ON messages (priority, id) WHERE status = 'ready';
CREATE TABLE nodes (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    message_id  INTEGER NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT,
    finished_at REAL
);
"""
FLOOR_CLAIM = ("UPDATE messages SET status = 'leased' WHERE id = ("
               "SELECT id FROM messages WHERE status = 'ready' ORDER BY priority, id LIMIT 1) "
               "RETURNING id, run_id, node_id, payload")
FLOOR_NODE = ("INSERT INTO nodes (run_id, node_id, message_id, status, output, finished_at) "
              "VALUES (?, ?, ?, 'completed', ?, ?)")
FLOOR_ACK = "UPDATE messages SET status = 'acked', finished_at = ? WHERE id = ? AND status = 'leased'"
FLOOR_SEND = "INSERT INTO messages (run_id, node_id, payload, status, priority) VALUES (?, ?, ?, 'ready', ?)"


def floor_connect(path: str, sync: str) -> sqlite3.Connection:
    """A new file set up as durableflow sets up its own (storage/connection.py)."""
    from durableflow.storage.connection import PAGE_SIZE, WAL_SIZE_LIMIT
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"floor: could not switch {path} to WAL (got {mode})")
    return conn


def floor_chain(path: str, nodes: int, sync: str) -> float:
    """A chain of `nodes` nodes on a fresh file, one after the other; returns the seconds taken
    from the first claim to the last node's commit. The schema and the first message are
    written before the clock starts."""
    remove_db(path)
    conn = floor_connect(path, sync)
    try:
        conn.executescript(FLOOR_SCHEMA)
        run_id = "0" * 12 + "0123456789abcdef0123"          # 32 characters, as the engine's
        conn.execute(FLOOR_SEND, (run_id, "n0", "null", 4))
        execute = conn.execute
        gc.collect()
        t0 = now()
        for i in range(nodes):
            execute("BEGIN IMMEDIATE")
            mid, rid, nid, payload = execute(FLOOR_CLAIM).fetchone()
            execute("COMMIT")
            ts = time.time()
            execute("BEGIN IMMEDIATE")
            execute(FLOOR_NODE, (rid, nid, mid, payload, ts))
            execute(FLOOR_ACK, (ts, mid))
            if i + 1 < nodes:
                execute(FLOOR_SEND, (rid, f"n{i + 1}", payload, 4))
            execute("COMMIT")
        seconds = now() - t0
        done = conn.execute("SELECT count(*) FROM nodes").fetchone()[0]
    finally:
        conn.close()
    if done != nodes:
        raise RuntimeError(f"floor: {done} nodes recorded, expected {nodes}")
    return seconds


def percentile(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): the smallest sample with at least q% of the samples
    at or below it."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def ratio_verdict(ratio: float | None, target: float | None) -> str:
    if target is None or ratio is None:
        return ""
    return "ok" if ratio >= target else "MISSED"


# --- statement counting --------------------------------------------------------------------------

KINDS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "INSERT", "UPDATE", "SELECT", "DELETE")
TXN_KINDS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
_COMMENT = re.compile(r"^\s*(?:--[^\n]*\n|/\*.*?\*/)*\s*", re.S)
_LITERAL = re.compile(r"'(?:[^']|'')*'|\bX'[0-9A-Fa-f]*'|(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_SPACE = re.compile(r"\s+")


class StatementCounter:
    """A trace callback that keeps every statement's text (sqlite3 passes it with its bound values
    expanded); classified afterwards, so the callback itself costs one list append."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.marks: dict[str, int] = {}

    def __call__(self, sql: str) -> None:
        self.texts.append(sql)

    def mark(self, name: str) -> None:
        self.marks[name] = len(self.texts)

    @staticmethod
    def kind(sql: str) -> str:
        body = _COMMENT.sub("", sql, count=1)
        word = body.split(None, 1)[0].upper() if body.strip() else ""
        word = word.rstrip(";")
        if word == "END":
            return "COMMIT"
        return word if word in KINDS else "other"

    @staticmethod
    def shape(sql: str) -> str:
        """The statement with its literal values replaced by ?, for grouping."""
        body = _COMMENT.sub("", sql, count=1)
        return _SPACE.sub(" ", _LITERAL.sub("?", body)).strip()[:160]

    def summary(self, start: int, end: int, per: int, top: int = 25) -> dict[str, Any]:
        texts = self.texts[start:end]
        kinds = collections.Counter(self.kind(t) for t in texts)
        shapes = collections.Counter(self.shape(t) for t in texts)
        by_kind = {k.lower(): round(kinds.get(k, 0) / per, 3) for k in KINDS + ("other",)}
        return {
            "statements": len(texts), "per": per,
            "per_node": round(len(texts) / per, 3) if per else None,
            "by_kind_per_node": by_kind,
            "transaction_control_per_node": round(sum(kinds.get(k, 0) for k in TXN_KINDS) / per, 3),
            "transactions_per_node": round(kinds.get("BEGIN", 0) / per, 3),
            "top_statements_per_node": [{"per_node": round(c / per, 3), "sql": s}
                                        for s, c in shapes.most_common(top)],
        }


# --- definitions -------------------------------------------------------------------------------

def chain_def(n: int, workflow_id: str = "chain") -> dict:
    return {
        "workflowId": workflow_id,
        "nodes": [{"nodeId": f"n{i}", "runtimeType": "Noop"} for i in range(n)],
        "connections": [{"sourceNodeId": f"n{i}", "targetNodeId": f"n{i + 1}"} for i in range(n - 1)],
    }


def fanout_def(width: int) -> dict:
    mids = [f"m{i}" for i in range(width)]
    return {
        "workflowId": "fanout",
        "nodes": [{"nodeId": "start", "runtimeType": "Noop"}]
                 + [{"nodeId": m, "runtimeType": "Noop"} for m in mids]
                 + [{"nodeId": "end", "runtimeType": "Noop"}],
        "connections": [{"sourceNodeId": "start", "targetNodeId": m} for m in mids]
                       + [{"sourceNodeId": m, "targetNodeId": "end"} for m in mids],
    }


# --- profiling ---------------------------------------------------------------------------------

class DispatchProfiler:
    """Monkeypatches Worker._dispatch so each dispatcher thread runs under its own cProfile."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._orig: Callable | None = None

    def install(self) -> "DispatchProfiler":
        from durableflow.worker import Worker
        orig = self._orig = Worker._dispatch
        profiles = self.profiles

        @functools.wraps(orig)
        def _dispatch(worker_self):
            prof = cProfile.Profile()
            profiles.append(prof)
            prof.enable()
            try:
                return orig(worker_self)
            finally:
                prof.disable()

        Worker._dispatch = _dispatch
        return self

    def take(self) -> list[cProfile.Profile]:
        out, self.profiles[:] = list(self.profiles), []
        return out

    @staticmethod
    def dump(profiles: list[cProfile.Profile], path: str) -> str | None:
        if not profiles:
            return None
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(path)
        return path


def report_profile(files: list[str], out_path: str, label: str, top: int = 30) -> str | None:
    files = [f for f in files if f and os.path.exists(f)]
    if not files:
        return None
    stats = pstats.Stats(files[0])
    for f in files[1:]:
        stats.add(f)
    stats.dump_stats(out_path)
    buf = io.StringIO()
    stats.stream = buf
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    progress(f"--- profile of the dispatcher thread(s): {label} ({out_path}) ---")
    progress(buf.getvalue())
    buf = io.StringIO()
    stats.stream = buf
    stats.sort_stats("tottime").print_stats(top)
    progress(f"--- same, by own time: {label} ---")
    progress(buf.getvalue())
    return out_path


# --- helpers -----------------------------------------------------------------------------------

def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def active_runs(conn: sqlite3.Connection) -> int:
    return conn.execute(ACTIVE_SQL).fetchone()[0]


def poll_conn(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def wait_drained(conn: sqlite3.Connection, timeout: float, poll: float = 0.005,
                 procs: list | None = None) -> float:
    """Poll until no run is active; returns the clock when that was first seen."""
    deadline = now() + timeout
    while True:
        if active_runs(conn) == 0:
            return now()
        if now() > deadline:
            raise TimeoutError(f"runs still active after {timeout}s")
        if procs and any(p.exitcode not in (None, 0) for p in procs):
            raise RuntimeError("a worker subprocess died: "
                               + ", ".join(f"pid {p.pid} exit {p.exitcode}" for p in procs))
        time.sleep(poll)


def timed_drain(path: str, sync: str = "NORMAL", pre: Callable[[], Any] | None = None,
                post: Callable[[], Any] | None = None, trace: "StatementCounter | None" = None,
                **worker_options) -> tuple[float, float, float]:
    """Start an in-process worker on `path` and wait until no run is active.
    Returns the clock at worker start, once Worker.start() returned, and when drained.
    pre() runs just before the clock starts, post() once the worker and engine are closed; with
    `trace`, it is the writer connection's trace callback while the worker works, marked
    "drained" when no run is active."""
    from durableflow import Engine
    engine = Engine(path, synchronous=sync)
    conn = poll_conn(path)
    try:
        if pre:
            pre()
        gc.collect()
        if trace:
            engine.store._writer.set_trace_callback(trace)
        t0 = now()
        worker = engine.worker(**worker_options).start()
        t_started = now()
        try:
            t1 = wait_drained(conn, timeout=600)
            if trace:
                trace.mark("drained")
        finally:
            worker.stop()
            if trace:   # only now: see single_run
                engine.store._writer.set_trace_callback(None)
    finally:
        conn.close()
        engine.close()
    if post:
        post()
    return t0, t_started, t1


def check_all_completed(path: str, expected: int) -> None:
    conn = poll_conn(path)
    try:
        rows = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    finally:
        conn.close()
    if rows.get("completed", 0) != expected or len(rows) != 1:
        raise RuntimeError(f"expected {expected} completed runs, found {rows}")


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return None if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def one_def() -> dict:
    return {"workflowId": "one", "nodes": [{"nodeId": "n0", "runtimeType": "Noop"}], "connections": []}


def poll_finished(conn: sqlite3.Connection, run_id: str, timeout: float, interval: float,
                  proc=None) -> tuple[float, str]:
    """Poll until the run is finished, cheaply: `PRAGMA data_version` (which moves when another
    connection commits) every `interval` seconds, and the run's status only when it moved.
    Returns the clock when the finished status was seen, and the status."""
    deadline = now() + timeout
    seen = None
    polls = 0
    while True:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != seen:
            seen = version
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None and row[0] in TERMINAL:
                return now(), row[0]
        polls += 1
        if polls % 200 == 0:
            if now() > deadline:
                raise TimeoutError(f"run {run_id} not finished after {timeout}s")
            if proc is not None and proc.exitcode is not None:
                raise RuntimeError(f"the worker subprocess exited ({proc.exitcode})")
        time.sleep(interval)


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"runs": 0}
    return {"runs": len(ms), "p50_ms": round(percentile(ms, 50), 3), "p99_ms": round(percentile(ms, 99), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3)}


def by_gap(gaps: list[float], seconds: list[float], gap_max: float, buckets: int = 3) -> list[dict]:
    """Latency by the pause before the start, in `buckets` equal slices of 0..gap_max: how the
    wake-up depends on how long the worker had been idle (its poll backs off as it idles)."""
    out = []
    width = gap_max / buckets if gap_max > 0 else 0
    for b in range(buckets):
        lo, hi = b * width, (b + 1) * width
        sel = [s * 1000 for g, s in zip(gaps, seconds)
               if (lo <= g < hi) or (b == buckets - 1 and g >= lo)]
        out.append({"gap_ms": [round(lo * 1000), round(hi * 1000)], "runs": len(sel),
                    "p50_ms": round(percentile(sel, 50), 3) if sel else None,
                    "p99_ms": round(percentile(sel, 99), 3) if sel else None})
    return out


# --- measurements ------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str):
        self.args = args
        self.workdir = workdir
        self.sync = args.sync
        self.targets = TARGETS.get(args.sync, {})
        self.counter = 0
        self.floor_m = Measurement()          # every floor chain of this run
        self.loads: list[float] = []          # 1-minute load average before each paired figure
        self.rng = random.Random(args.seed)
        self.memory_db: str | None = None
        self.extra: dict[str, Any] = {}
        self.profiler = DispatchProfiler().install() if args.profile else None
        self.profile_files: dict[str, str] = {}
        if args.profile:
            os.makedirs(args.profile, exist_ok=True)

    def fresh_db(self, label: str) -> str:
        self.counter += 1
        return os.path.join(self.workdir, f"{self.counter:03d}-{label}.db")

    def _collect_profile(self, label: str, child_files: list[str] | None = None) -> None:
        if not self.profiler:
            return
        files = list(child_files or [])
        own = DispatchProfiler.dump(self.profiler.take(),
                                    os.path.join(self.workdir, f"{label}-{os.getpid()}.prof"))
        if own:
            files.append(own)
        out = report_profile(files, os.path.join(self.args.profile, f"{label}.prof"), label)
        if out:
            self.profile_files[label] = out

    # floor ------------------------------------------------------------------------------------

    def floor_chains(self, into: list[float]) -> None:
        """--floor-chains chains of N nodes, each on a fresh file (deleted afterwards); their
        nodes/s are appended to `into`, and every chain is kept in floor_m."""
        n = self.args.floor_nodes
        for _ in range(self.args.floor_chains):
            path = self.fresh_db("floor")
            try:
                secs = floor_chain(path, n, self.sync)
            finally:
                remove_db(path)
            into.append(self.floor_m.add(n, secs))

    def paired(self, figure: Callable[[Callable | None, Callable | None], Any]) -> tuple[float, Any]:
        """figure(pre, post): one timed figure, bracketed by floor chains taken right before its
        clock starts (pre) and right after it has cleaned up (post). Returns the median nodes/s of
        those chains (the figure's floor sample) and what figure() returned."""
        rates: list[float] = []
        load = os.getloadavg()[0]
        result = figure(lambda: self.floor_chains(rates), lambda: self.floor_chains(rates))
        if len(rates) != 2 * self.args.floor_chains:
            raise RuntimeError(f"floor: {len(rates)} chains around the figure, expected {2 * self.args.floor_chains}")
        self.loads.append(round(load, 2))
        return statistics.median(rates), result

    def ratio_fields(self, key: str, floors: list[float], ratios: list[float],
                     loads: list[float]) -> dict[str, Any]:
        target = self.targets.get(key)
        ratio = statistics.median(ratios) if ratios else None
        spread = ((max(ratios) - min(ratios)) / ratio) if len(ratios) > 1 and ratio else None
        return {"floor_nodes_per_s_samples": [round(f) for f in floors],
                "ratio_to_floor": None if ratio is None else round(ratio, 3),
                "ratio_samples": [round(r, 3) for r in ratios],
                "ratio_spread": None if spread is None else round(spread, 3),
                "load_1m_before_samples": loads,
                "target_ratio": target,
                "target": f">= {target:g} x floor" if target is not None else "",
                "verdict": ratio_verdict(ratio, target)}

    def floor(self) -> dict:
        """The floor alone (when no figure measured against it was asked for)."""
        for i in range(self.args.repeats):
            rates: list[float] = []
            self.floor_chains(rates)
            self.floor_chains(rates)
            progress(f"floor {self.args.floor_nodes}: sample {i + 1}: {statistics.median(rates):,.0f} nodes/s "
                     f"(median of {len(rates)} chains)")
        return self.floor_result()

    def floor_result(self) -> dict:
        m = self.floor_m
        return {"nodes": self.args.floor_nodes, "synchronous": self.sync,
                "chains_per_sample": 2 * self.args.floor_chains,
                "nodes_per_s": m.as_dict()["ops_per_s"],
                "ms_per_node": round(1000 / m.median, 4) if m.median else None,
                "samples": len(m.samples), "detail": m.as_dict(),
                "transactions_per_node": [
                    ["BEGIN IMMEDIATE", FLOOR_CLAIM, "COMMIT"],
                    ["BEGIN IMMEDIATE", FLOOR_NODE, FLOOR_ACK, FLOOR_SEND + "  -- not after the last node", "COMMIT"]],
                "schema": " ".join(FLOOR_SCHEMA.split())}

    # chain ------------------------------------------------------------------------------------

    def single_run(self, label: str, definition: dict, nodes: int, pre: Callable | None = None,
                   post: Callable | None = None, trace: StatementCounter | None = None) -> float:
        """One run of `definition`; seconds from the worker's start to the run finished."""
        from durableflow import Engine
        path = self.fresh_db(label)
        engine = Engine(path, synchronous=self.sync)
        try:
            workflow_id, _v = engine.register(definition)
            run_id = engine.start(workflow_id)
            if pre:
                pre()
            gc.collect()
            if trace is not None:
                trace.mark("begin")
                engine.store._writer.set_trace_callback(trace)
            t0 = now()
            worker = engine.worker(concurrency=1).start()
            try:
                run = engine.wait(run_id, timeout=600)
                t1 = now()
                if trace is not None:
                    trace.mark("finished")
            finally:
                worker.stop()
                if trace is not None:
                    # Only once no other thread uses the connection: sqlite3_trace_v2 takes the
                    # connection's mutex while holding the GIL, and a statement running on another
                    # thread holds that mutex while its trace callback waits for the GIL.
                    engine.store._writer.set_trace_callback(None)
            if run.status != "completed":
                raise RuntimeError(f"{label}: run ended {run.status}: {run.error}")
            done = sum(1 for n in run.nodes if n.status == "completed")
            if done != nodes:
                raise RuntimeError(f"{label}: {done} completed node instances, expected {nodes}")
        finally:
            engine.close()
        if post:
            post()
        return t1 - t0

    def chain(self) -> dict:
        n = self.args.chain
        m = Measurement()
        floors, ratios, loads = [], [], []
        for i in range(self.args.short_repeats):
            fl, secs = self.paired(lambda pre, post: self.single_run("chain", chain_def(n), n, pre, post))
            rate = m.add(n, secs)
            loads.append(self.loads[-1])
            floors.append(fl)
            ratios.append(rate / fl)
            progress(f"chain {n}: repeat {i + 1}: {secs * 1000 / n:.3f} ms/node, {rate:,.0f} nodes/s; "
                     f"floor {fl:,.0f} nodes/s; ratio {rate / fl:.3f}")
        self._collect_profile("chain")
        ms = [s * 1000 / n for s in m.seconds]
        med = statistics.median(ms)
        return {"nodes": n, "ms_per_node": round(med, 4), "samples_ms_per_node": [round(x, 4) for x in ms],
                "nodes_per_s": m.as_dict()["ops_per_s"], "detail": m.as_dict(),
                **self.ratio_fields("chain", floors, ratios, loads)}

    def fanout(self) -> dict:
        width = self.args.fanout
        nodes = width + 2
        m = Measurement()
        floors, ratios, loads = [], [], []
        for i in range(self.args.short_repeats):
            fl, secs = self.paired(
                lambda pre, post: self.single_run("fanout", fanout_def(width), nodes, pre, post))
            rate = m.add(nodes, secs)
            loads.append(self.loads[-1])
            floors.append(fl)
            ratios.append(rate / fl)
            progress(f"fanout {width}: repeat {i + 1}: {rate:,.0f} nodes/s; floor {fl:,.0f} nodes/s; "
                     f"ratio {rate / fl:.3f}")
        self._collect_profile("fanout")
        return {"width": width, "nodes": nodes, "nodes_per_s": m.as_dict()["ops_per_s"],
                "ms_per_node": round(1000 / m.median, 4), "detail": m.as_dict(),
                **self.ratio_fields("fanout", floors, ratios, loads)}

    # runs -------------------------------------------------------------------------------------

    def prepare_runs(self, label: str, count: int, trace: StatementCounter | None = None) -> str:
        from durableflow import Engine
        path = self.fresh_db(label)
        with Engine(path, synchronous=self.sync) as engine:
            engine.register(chain_def(3, "chain3"))
            if trace is not None:
                engine.store._writer.set_trace_callback(trace)
            for _ in range(count):
                engine.start("chain3")
            if trace is not None:
                engine.store._writer.set_trace_callback(None)
        return path

    def drain_in_process(self, label: str, count: int, concurrency: int,
                         pre: Callable | None = None, post: Callable | None = None) -> float:
        path = self.prepare_runs(label, count)
        t0, _started, t1 = timed_drain(path, self.sync, pre, post, concurrency=concurrency)
        check_all_completed(path, count)
        return t1 - t0

    def spawn_workers(self, path: str, procs: int, concurrency: int, label: str, go_now: bool = False):
        ctx = mp.get_context("spawn")
        go, stop = ctx.Event(), ctx.Event()
        if go_now:
            go.set()
        ready = [ctx.Event() for _ in range(procs)]
        prof_files = ([os.path.join(self.workdir, f"{label}-{self.counter}-p{i}.prof") for i in range(procs)]
                      if self.profiler else [None] * procs)
        children = [ctx.Process(target=worker_process, name=f"dfbench-worker-{i}",
                                args=(path, concurrency, ready[i], go, stop, prof_files[i], self.sync))
                    for i in range(procs)]
        for c in children:
            c.start()
        return children, ready, go, stop, prof_files

    @staticmethod
    def wait_ready(children, ready) -> None:
        for ev, c in zip(ready, children):
            while not ev.wait(0.2):
                if c.exitcode is not None:
                    raise RuntimeError(f"worker subprocess exited early ({c.exitcode})")

    @staticmethod
    def end_workers(children, go, stop) -> None:
        stop.set()
        go.set()
        for c in children:
            c.join(60)
            if c.is_alive():
                c.kill()
                c.join()

    def drain_processes(self, label: str, count: int, procs: int, concurrency: int,
                        pre: Callable | None = None, post: Callable | None = None) -> tuple[float, list[str]]:
        path = self.prepare_runs(label, count)
        children, ready, go, stop, prof_files = self.spawn_workers(path, procs, concurrency, label)
        conn = poll_conn(path)
        try:
            self.wait_ready(children, ready)
            if pre:
                pre()
            t0 = now()
            go.set()
            t1 = wait_drained(conn, timeout=600, procs=children)
        finally:
            conn.close()
            self.end_workers(children, go, stop)
        bad = [c.exitcode for c in children if c.exitcode != 0]
        if bad:
            raise RuntimeError(f"worker subprocesses exited with {bad}")
        if post:
            post()
        check_all_completed(path, count)
        return t1 - t0, [f for f in prof_files if f]

    def runs(self) -> dict:
        count, procs = self.args.drain, self.args.procs
        variants = [
            ("1w", "1 worker in-process, concurrency 1",
             lambda pre, post: (self.drain_in_process("runs-1w", count, 1, pre, post), [])),
            ("1p_c4", "1 worker in-process, concurrency 4",
             lambda pre, post: (self.drain_in_process("runs-1p_c4", count, 4, pre, post), [])),
            ("1sub", "1 worker subprocess, concurrency 1",
             lambda pre, post: self.drain_processes("runs-1sub", count, 1, 1, pre, post)),
            (f"{procs}p", f"{procs} worker subprocesses, concurrency 1 each",
             lambda pre, post: self.drain_processes(f"runs-{procs}p", count, procs, 1, pre, post)),
        ]
        if self.args.variants:
            keep = set(self.args.variants.split(","))
            variants = [v for v in variants if v[0] in keep]
        ms = {key: Measurement() for key, _d, _f in variants}
        floors: dict[str, list[float]] = {key: [] for key, _d, _f in variants}
        ratios: dict[str, list[float]] = {key: [] for key, _d, _f in variants}
        loads: dict[str, list[float]] = {key: [] for key, _d, _f in variants}
        child_prof: dict[str, list[str]] = {key: [] for key, _d, _f in variants}
        for i in range(self.args.repeats):
            for key, desc, fn in variants:  # interleaved, so drift hits every variant alike
                fl, (secs, files) = self.paired(fn)
                child_prof[key] += files
                rate = ms[key].add(count, secs)
                floors[key].append(fl)
                ratios[key].append(3 * rate / fl)
                loads[key].append(self.loads[-1])
                progress(f"runs {key}: repeat {i + 1}: {rate:,.0f} runs/s ({desc}); floor {fl:,.0f} "
                         f"nodes/s; ratio {3 * rate / fl:.3f}")
                if self.profiler and key in ("1w", "1p_c4"):
                    # in-process profiles go with their variant
                    own = DispatchProfiler.dump(self.profiler.take(), os.path.join(
                        self.workdir, f"runs-{key}-{i}-{os.getpid()}.prof"))
                    if own:
                        child_prof[key].append(own)
        if self.profiler:
            for key, _d, _f in variants:
                self._collect_profile(f"runs-{key}", child_prof[key])
        out: dict[str, Any] = {"runs": count, "nodes_per_run": 3}
        for key, desc, _f in variants:
            d = ms[key].as_dict()
            out[key] = {"description": desc, "runs_per_s": d["ops_per_s"],
                        "nodes_per_s": _r(ms[key].median * 3), "detail": d,
                        **self.ratio_fields(f"runs_{key}", floors[key], ratios[key], loads[key])}
        return out

    # statements -------------------------------------------------------------------------------

    def worker_startup_statements(self) -> dict:
        """What a worker's start-up costs the writer, on a file with nothing to do: from
        Worker.start() until its claim has found nothing (its idle flag), counted in the figures
        per node above (divided by their nodes, it is a small part)."""
        from durableflow import Engine
        path = self.fresh_db("statements-startup")
        c = StatementCounter()
        with Engine(path, synchronous=self.sync) as engine:
            engine.register(chain_def(3, "chain3"))
            engine.store._writer.set_trace_callback(c)
            worker = engine.worker(concurrency=1).start()
            try:
                idle = getattr(worker, "idle", None)
                if idle is None or not idle.wait(10):
                    time.sleep(0.2)
                c.mark("idle")
            finally:
                worker.stop()
                engine.store._writer.set_trace_callback(None)   # only now: see single_run
        summary = c.summary(0, c.marks["idle"], 1)
        return {"statements": summary["statements"],
                "by_kind": {k: int(v) for k, v in summary["by_kind_per_node"].items() if v},
                "sql": [t["sql"] for t in summary["top_statements_per_node"]]}

    def statements(self) -> dict:
        """Statements of the engine's writer connection per node (untimed runs, traced)."""
        out: dict[str, Any] = {"connection": "engine.store._writer (set_trace_callback)"}
        out["worker_startup"] = self.worker_startup_statements()
        n = self.args.chain
        c = StatementCounter()
        self.single_run("statements-chain", chain_def(n), n, trace=c)
        out["chain"] = {"nodes": n, **c.summary(c.marks["begin"], c.marks["finished"], n)}
        progress(f"statements: chain of {n}: {out['chain']['per_node']} per node")
        width = self.args.fanout
        c = StatementCounter()
        self.single_run("statements-fanout", fanout_def(width), width + 2, trace=c)
        out["fanout"] = {"nodes": width + 2, **c.summary(c.marks["begin"], c.marks["finished"], width + 2)}
        progress(f"statements: fan-out of {width}: {out['fanout']['per_node']} per node")
        count = self.args.statement_runs
        starts, drain = StatementCounter(), StatementCounter()
        path = self.prepare_runs("statements-runs", count, trace=starts)
        timed_drain(path, self.sync, trace=drain, concurrency=1)
        check_all_completed(path, count)
        out["runs_1w"] = {"runs": count, "nodes": 3 * count,
                          **drain.summary(0, drain.marks["drained"], 3 * count),
                          "per_run": round(drain.marks["drained"] / count, 3)}
        out["start"] = {"runs": count, **starts.summary(0, len(starts.texts), count),
                        "note": "engine.start() of a 3-node run: per run, not per node"}
        progress(f"statements: {count} 3-node runs, 1 worker: {out['runs_1w']['per_node']} per node; "
                 f"engine.start(): {out['start']['per_node']} per run")
        self._collect_profile("statements")
        return out

    # latency ----------------------------------------------------------------------------------

    def _settle(self, conn: sqlite3.Connection, idle) -> float:
        """Wait until the worker holds nothing (and, in this process, says it is idle)."""
        t0 = now()
        while active_runs(conn) or conn.execute(IN_HAND_SQL).fetchone()[0]:
            if now() - t0 > 30:
                raise TimeoutError("the worker did not come back to idle within 30 s")
            time.sleep(0.001)
        if idle is not None and not idle.wait(30):
            raise TimeoutError("the worker did not set its idle flag within 30 s")
        return now() - t0

    def latency(self) -> dict:
        return {"gap_ms": [0, self.args.gap_ms],
                "in_process": self.latency_in_process(),
                "cross_process": self.latency_cross_process()}

    def latency_in_process(self) -> dict:
        from durableflow import Engine
        n, warm, gap = self.args.latency_runs, 10, self.args.gap_ms / 1000
        path = self.fresh_db("latency-in")
        engine = Engine(path, synchronous=self.sync)
        engine.register(one_def())
        conn = poll_conn(path)
        worker = engine.worker(concurrency=1).start()
        idle = getattr(worker, "idle", None)   # threading.Event: set while the claim finds nothing
        lat, calls, gaps, not_idle = [], [], [], 0
        try:
            for i in range(warm + n):
                self._settle(conn, idle)
                pause = self.rng.uniform(0, gap)
                time.sleep(pause)
                if idle is not None and not idle.is_set():
                    not_idle += 1
                t0 = now()
                run_id = engine.start("one")
                t1 = now()
                run = engine.wait(run_id, timeout=60)
                t2 = now()
                if run.status != "completed":
                    raise RuntimeError(f"latency: run ended {run.status}: {run.error}")
                if i >= warm:
                    lat.append(t2 - t0)
                    calls.append(t1 - t0)
                    gaps.append(pause)
        finally:
            worker.stop()
            conn.close()
            engine.close()
        self._collect_profile("latency-in")
        out = latency_summary(lat)
        out.update({"what": "engine.start() of a 1-node Noop run until engine.wait() returns it completed; "
                            "one worker (concurrency 1) idle in this process",
                    "warmup_runs": warm, "start_call_p50_ms": round(percentile(calls, 50) * 1000, 3),
                    "start_call_p99_ms": round(percentile(calls, 99) * 1000, 3),
                    "starts_with_worker_not_idle": None if idle is None else not_idle,
                    "idle_flag": idle is not None, "by_pause": by_gap(gaps, lat, gap)})
        progress(f"latency in-process: {n} runs: p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms")
        return out

    def latency_cross_process(self) -> dict:
        from durableflow import Engine
        n, warm, gap = self.args.latency_sub_runs, 5, self.args.gap_ms / 1000
        interval = 0.0005
        path = self.fresh_db("latency-sub")
        engine = Engine(path, synchronous=self.sync)
        engine.register(one_def())
        children, ready, go, stop, prof_files = self.spawn_workers(path, 1, 1, "latency-sub", go_now=True)
        conn = poll_conn(path)
        lat, calls, gaps, run_ids = [], [], [], []
        try:
            self.wait_ready(children, ready)
            for i in range(warm + n):
                self._settle(conn, None)
                pause = self.rng.uniform(0, gap)
                time.sleep(pause)
                t0 = now()
                run_id = engine.start("one")
                t1 = now()
                t2, status = poll_finished(conn, run_id, 60, interval, children[0])
                if status != "completed":
                    raise RuntimeError(f"latency: run ended {status}")
                if i >= warm:
                    lat.append(t2 - t0)
                    calls.append(t1 - t0)
                    gaps.append(pause)
                    run_ids.append(run_id)
            stamped = [r[0] for r in conn.execute(
                "SELECT (julianday(finished_at) - julianday(created_at)) * 86400000.0 FROM runs "
                f"WHERE run_id IN ({','.join('?' * len(run_ids))})", run_ids)] if run_ids else []
        finally:
            conn.close()
            self.end_workers(children, go, stop)
            engine.close()
        if children[0].exitcode != 0:
            raise RuntimeError(f"the worker subprocess exited with {children[0].exitcode}")
        if self.profiler:
            self._collect_profile("latency-sub", [f for f in prof_files if f])
        out = latency_summary(lat)
        p99 = out.get("p99_ms")
        out.update({"what": "engine.start() of a 1-node Noop run in this process until this process "
                            "sees it completed; one worker subprocess Engine(path).worker(concurrency=1) idle",
                    "warmup_runs": warm, "poll_interval_ms": interval * 1000,
                    "start_call_p50_ms": round(percentile(calls, 50) * 1000, 3),
                    "db_stamped_p50_ms": round(percentile(stamped, 50), 1) if stamped else None,
                    "db_stamped_p99_ms": round(percentile(stamped, 99), 1) if stamped else None,
                    "by_pause": by_gap(gaps, lat, gap),
                    "target": f"p99 < {LATENCY_TARGET_P99_MS:g} ms",
                    "verdict": "" if p99 is None else ("ok" if p99 < LATENCY_TARGET_P99_MS else "MISSED")})
        progress(f"latency cross-process: {n} runs: p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms")
        return out

    # memory -----------------------------------------------------------------------------------

    def memory(self) -> dict:
        from durableflow import Engine
        total, batches = self.args.runs, self.args.batches
        batch = max(1, total // batches)
        path = self.fresh_db("memory")
        engine = Engine(path, synchronous=self.sync)
        engine.register(chain_def(3, "chain3"))
        conn = poll_conn(path)
        rows = []
        gc.collect()
        base = rss_kb()
        worker = engine.worker(concurrency=1).start()
        done = 0
        t_all = now()
        try:
            for b in range(batches):
                t0 = now()
                for _ in range(batch):
                    engine.start("chain3")
                t_started = now()
                t1 = wait_drained(conn, timeout=900)
                done += batch
                rss = rss_kb()
                row = {"batch": b + 1, "runs_done": done, "rss_kb": rss,
                       "py_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects()),
                       "db_mb": round(os.path.getsize(path) / 2**20, 1),
                       "start_s": round(t_started - t0, 3), "batch_s": round(t1 - t0, 3),
                       "runs_per_s": round(batch / (t1 - t0), 1)}
                rows.append(row)
                progress(f"memory: batch {b + 1}/{batches}: {done:,} runs, RSS {rss / 1024:.1f} MB, "
                         f"{row['runs_per_s']:,.0f} runs/s (start+drain), db {row['db_mb']} MB")
        finally:
            worker.stop()
            conn.close()
            engine.close()
        elapsed = now() - t_all
        check_all_completed(path, done)
        self.memory_db = path
        self._collect_profile("memory")
        xs = [r["runs_done"] for r in rows]
        ys = [r["rss_kb"] for r in rows]
        half = len(rows) // 2
        s_all = slope(xs, ys)                       # KB per run
        s_late = slope(xs[half:], ys[half:])
        s_blocks_late = slope(xs[half:], [r["py_blocks"] for r in rows[half:]])
        first, last, peak = ys[0], ys[-1], max(ys)
        # Flat: over the second half, RSS grows by less than 1 KB per 1,000 runs (1 byte a run,
        # 0.1 MB per 100,000 runs), or by less than 1 MB over the second half in total.
        late_growth_kb = (s_late or 0.0) * (xs[-1] - xs[half]) if s_late is not None else 0.0
        flat = s_late is not None and (s_late * 1000 < 1.0 or late_growth_kb < 1024)
        return {
            "runs": done, "batches": batches, "batch_size": batch, "seconds": round(elapsed, 1),
            "rss_before_worker_mb": round(base / 1024, 1),
            "rss_first_mb": round(first / 1024, 1), "rss_last_mb": round(last / 1024, 1),
            "rss_max_mb": round(peak / 1024, 1),
            "slope_kb_per_1k_runs": None if s_all is None else round(s_all * 1000, 2),
            "slope_second_half_kb_per_1k_runs": None if s_late is None else round(s_late * 1000, 2),
            "second_half_growth_mb": round(late_growth_kb / 1024, 2),
            "py_blocks_slope_second_half_per_1k_runs": None if s_blocks_late is None else round(s_blocks_late * 1000, 1),
            "runs_per_s_first_batch": rows[0]["runs_per_s"], "runs_per_s_last_batch": rows[-1]["runs_per_s"],
            "target": "flat (second half grows < 1 MB)", "verdict": "ok" if flat else "MISSED",
            "per_batch": rows,
        }

    # history ----------------------------------------------------------------------------------

    def _drain_timed(self, path: str, count: int) -> tuple[float, float, float]:
        """Start `count` 3-node runs in `path`, then drain them with one in-process worker (c=1).

        Returns (seconds from worker start to drained, seconds Worker.start() took, seconds the
        file's quick_check took). A worker runs that check beside its first work, and it reads
        the whole file once: on a big file it would compete with the first second of draining.
        It is a one-off cost, so it is timed apart here and the timed worker skips it."""
        from durableflow import Engine
        with Engine(path, synchronous=self.sync) as engine:
            engine.register(chain_def(3, "chain3"))
            for _ in range(count):
                engine.start("chain3")
            t = now()
            if engine.store.quick_check() != ["ok"]:
                raise RuntimeError(f"{path}: quick_check failed")
            check_s = now() - t
        t0, t_started, t1 = timed_drain(path, self.sync, concurrency=1, quick_check=False)
        return t1 - t0, t_started - t0, check_s

    def history(self) -> dict:
        """Runs/s on a fresh file against the file the memory measurement filled (interleaved)."""
        if self.memory_db is None:
            progress("history: filling a database first (the memory measurement)")
            self.extra["memory"] = self.memory()
        path = self.memory_db
        finished = poll_conn(path).execute("SELECT count(*) FROM runs").fetchone()[0]
        db_mb = round(os.path.getsize(path) / 2**20, 1)
        count = self.args.drain
        res = {k: {"all": Measurement(), "start_s": [], "check_s": []} for k in ("fresh", "history")}
        for i in range(self.args.repeats):
            for key in ("fresh", "history"):
                target = self.fresh_db("history-fresh") if key == "fresh" else path
                secs, start_s, check_s = self._drain_timed(target, count)
                r = res[key]
                r["all"].add(count, secs)
                r["start_s"].append(start_s)
                r["check_s"].append(check_s)
                progress(f"history {key}: repeat {i + 1}: {count / secs:,.0f} runs/s "
                         f"(quick_check of the file, timed apart: {check_s * 1000:.0f} ms)")
        self._collect_profile("history")
        out: dict[str, Any] = {"runs": count, "history_runs": finished, "history_db_mb": db_mb}
        for key, r in res.items():
            out[key] = {"runs_per_s": r["all"].as_dict()["ops_per_s"],
                        "worker_start_ms": round(_median(r["start_s"]) * 1000, 1),
                        "quick_check_ms": round(_median(r["check_s"]) * 1000, 1),
                        "detail": r["all"].as_dict()}
        f, h = res["fresh"]["all"].median, res["history"]["all"].median
        # Flat: with the history, at least 90% of the fresh file's rate.
        out["ratio"] = round(h / f, 3) if f else None
        out["target"] = "history >= 90% of fresh"
        out["verdict"] = "ok" if out["ratio"] is not None and out["ratio"] >= 0.9 else "MISSED"
        return out


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def _r(x: float | None) -> float | None:
    if x is None:
        return None
    return round(x, 1) if x < 1000 else round(x)


def worker_process(path: str, concurrency: int, ready, go, stop, profile_path: str | None,
                   sync: str = "NORMAL") -> None:
    """A worker subprocess: open the engine, say ready, work from `go` until `stop`."""
    from durableflow import Engine
    profiler = DispatchProfiler().install() if profile_path else None
    engine = Engine(path, synchronous=sync)
    try:
        ready.set()
        go.wait()
        if stop.is_set():
            return
        with engine.worker(concurrency=concurrency):
            stop.wait()
    finally:
        engine.close()
        if profiler:
            DispatchProfiler.dump(profiler.take(), profile_path)


# --- output ------------------------------------------------------------------------------------

def _x(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def _ratios(values) -> str:
    return "ratios " + " / ".join(f"{v:.2f}" for v in values)


def table(results: dict) -> str:
    rows = []
    if "floor" in results:
        f = results["floor"]
        s = f["detail"]["samples_ops_per_s"]
        rows.append([f"floor: plain sqlite3, chain of {f['nodes']:,}, 2 txns/node ({f['synchronous']})",
                     f"{f['ms_per_node']:.3f} ms/node, {fmt_rate(f['nodes_per_s'])} nodes/s", "1.00x", "", "",
                     f"{len(s)} chains, {min(s):,.0f} to {max(s):,.0f} nodes/s (spread {f['detail']['spread']})"])
    if "chain" in results:
        c = results["chain"]
        rows.append([f"chain of {c['nodes']:,} Noop, 1 worker c=1",
                     f"{c['ms_per_node']:.3f} ms/node, {fmt_rate(c['nodes_per_s'])} nodes/s",
                     _x(c["ratio_to_floor"]), c["target"], c["verdict"], _ratios(c["ratio_samples"])])
    if "fanout" in results:
        f = results["fanout"]
        rows.append([f"fan-out/in of {f['width']:,} Noop, 1 worker c=1",
                     f"{f['ms_per_node']:.3f} ms/node, {fmt_rate(f['nodes_per_s'])} nodes/s",
                     _x(f["ratio_to_floor"]), f["target"], f["verdict"], _ratios(f["ratio_samples"])])
    if "runs" in results:
        r = results["runs"]
        for key, v in r.items():
            if not isinstance(v, dict):
                continue
            rows.append([f"{r['runs']:,} 3-node runs, {v['description']}",
                         f"{fmt_rate(v['runs_per_s'])} runs/s ({fmt_rate(v['nodes_per_s'])} nodes/s)",
                         _x(v["ratio_to_floor"]), v["target"], v["verdict"], _ratios(v["ratio_samples"])])
    if "statements" in results:
        s = results["statements"]
        for key, what in (("chain", "chain"), ("fanout", "fan-out"), ("runs_1w", "3-node runs, 1 worker")):
            if key in s:
                v = s[key]
                rows.append([f"statements per node, {what} ({v['nodes']:,} nodes)", f"{v['per_node']:.2f}",
                             "", "", "", f"{v['transactions_per_node']:.2f} transactions per node; by kind below"])
    if "latency" in results:
        lt = results["latency"]
        for key, what in (("in_process", "idle worker in this process"),
                          ("cross_process", "idle worker in another process")):
            v = lt.get(key)
            if not v or not v.get("runs"):
                continue
            extra = f"mean {v['mean_ms']:.1f}, max {v['max_ms']:.1f} ms; start() itself p50 {v['start_call_p50_ms']:.2f} ms"
            if key == "cross_process" and v.get("db_stamped_p50_ms") is not None:
                extra += (f"; in the run's own stamps p50 {v['db_stamped_p50_ms']:.0f}, "
                          f"p99 {v['db_stamped_p99_ms']:.0f} ms")
            rows.append([f"latency start -> completed, 1-node run, {what} ({v['runs']:,} runs, "
                         f"0-{lt['gap_ms'][1]:g} ms apart)",
                         f"p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms", "",
                         v.get("target", ""), v.get("verdict", ""), extra])
    if "memory" in results:
        m = results["memory"]
        rows.append([f"memory, {m['runs']:,} 3-node runs in {m['batches']} batches",
                     f"RSS {m['rss_first_mb']} -> {m['rss_last_mb']} MB (max {m['rss_max_mb']})", "",
                     m["target"], m["verdict"],
                     f"slope {m['slope_kb_per_1k_runs']} KB/1k runs (2nd half {m['slope_second_half_kb_per_1k_runs']});"
                     f" batch runs/s {fmt_rate(m['runs_per_s_first_batch'])} -> {fmt_rate(m['runs_per_s_last_batch'])}"])
    if "history" in results:
        h = results["history"]
        for key in ("fresh", "history"):
            v = h[key]
            what = ("fresh file" if key == "fresh"
                    else f"after {h['history_runs']:,} finished runs ({h['history_db_mb']} MB)")
            rows.append([f"{h['runs']:,} 3-node runs, 1 worker c=1, {what}",
                         f"{fmt_rate(v['runs_per_s'])} runs/s", "",
                         h["target"] if key == "history" else "",
                         f"{h['verdict']} ({h['ratio']:.2f}x)" if key == "history" else "",
                         f"Worker.start {v['worker_start_ms']} ms; the file's quick_check, which a worker "
                         f"runs beside its first work, took {v['quick_check_ms']:.0f} ms (timed apart)"])
    return format_table(["measurement", "result", "vs floor", "target", "verdict", "samples"], rows, "llrlll")


def statements_table(s: dict) -> str:
    kinds = [k.lower() for k in KINDS] + ["other"]
    rows = []
    for key, what in (("chain", "chain, per node"), ("fanout", "fan-out/in, per node"),
                      ("runs_1w", "3-node runs, 1 worker, per node"), ("start", "engine.start(), per run")):
        if key not in s:
            continue
        v = s[key]
        rows.append([what, f"{v['per_node']:.2f}", f"{v['transaction_control_per_node']:.2f}"]
                    + [f"{v['by_kind_per_node'][k]:.2f}" for k in kinds])
    return format_table(["writer statements", "all", "txn ctl"] + [k.upper() for k in kinds], rows)


def latency_table(lt: dict) -> str:
    rows = []
    for key, what in (("in_process", "worker in this process"), ("cross_process", "worker in another process")):
        v = lt.get(key) or {}
        for b in v.get("by_pause", []):
            rows.append([what, f"{b['gap_ms'][0]}-{b['gap_ms'][1]} ms", b["runs"],
                         "" if b["p50_ms"] is None else f"{b['p50_ms']:.1f}",
                         "" if b["p99_ms"] is None else f"{b['p99_ms']:.1f}"])
    return format_table(["latency by the pause before start()", "pause", "runs", "p50 ms", "p99 ms"], rows)


def memory_table(m: dict) -> str:
    rows = [[r["batch"], f"{r['runs_done']:,}", f"{r['rss_kb'] / 1024:.1f}", f"{r['py_blocks']:,}",
             f"{r['gc_objects']:,}", r["db_mb"], fmt_rate(r["runs_per_s"])] for r in m["per_batch"]]
    return format_table(["batch", "runs done", "RSS MB", "py blocks", "gc objects", "db MB", "runs/s"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes (runs 1,000, latency 200 + 100 runs, memory 10,000 runs)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(NAMES)} "
                                  f"(default: {', '.join(DEFAULT)})")
    p.add_argument("--all", action="store_true", help="every measurement, memory and history included")
    p.add_argument("--sync", type=str.upper, choices=("NORMAL", "FULL"), default="NORMAL",
                   help="PRAGMA synchronous for the engine, the floor and worker subprocesses (default NORMAL)")
    p.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout)")
    p.add_argument("--profile", nargs="?", const="dfbench-profiles", metavar="DIR",
                   help="cProfile the dispatcher thread(s); .prof files go to DIR (default ./dfbench-profiles)")
    p.add_argument("--repeats", type=int, help="repeats of each timing (default: chain and fanout 5, the others 3)")
    p.add_argument("--chain", type=int, help="chain length (default 1000)")
    p.add_argument("--fanout", type=int, help="fan-out width (default 1000)")
    p.add_argument("--floor-nodes", type=int, help="nodes of the floor's chain (default: the chain length)")
    p.add_argument("--floor-chains", type=int, default=2,
                   help="floor chains timed just before and again just after each figure; the median "
                        "of the 2 x N is the figure's floor sample (default 2)")
    p.add_argument("--drain", type=int, help="3-node runs drained per timing (default 2000; quick 1000)")
    p.add_argument("--procs", type=int, default=4, help="worker subprocesses for the multi-process variant")
    p.add_argument("--variants", help="runs variants to keep: 1w,1p_c4,1sub,<procs>p")
    p.add_argument("--statement-runs", type=int, default=500, help="3-node runs traced by statements (default 500)")
    p.add_argument("--latency-runs", type=int, help="runs timed with a worker in this process (default 1000; quick 200)")
    p.add_argument("--latency-sub-runs", type=int,
                   help="runs timed with a worker in another process (default 300; quick 100)")
    p.add_argument("--gap-ms", type=float, default=150.0,
                   help="latency: random pause of 0 to this many ms before each start (default 150)")
    p.add_argument("--seed", type=int, default=12, help="seed of the latency pauses")
    p.add_argument("--runs", type=int, help="runs for the memory measurement (default 100000; quick 10000)")
    p.add_argument("--batches", type=int, default=20, help="batches of the memory measurement")
    p.add_argument("--dir", help="folder for the temporary database files (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the database files")
    args = p.parse_args(argv)
    # chain and fan-out take a second a repeat: 5 of them; runs, history: 3 (or --repeats for all)
    args.short_repeats = args.repeats or 5
    args.repeats = args.repeats or 3
    args.chain = args.chain or 1000
    args.fanout = args.fanout or 1000
    args.floor_nodes = args.floor_nodes or args.chain
    args.drain = args.drain or (1000 if args.quick else 2000)
    args.runs = args.runs or (10_000 if args.quick else 100_000)
    args.latency_runs = args.latency_runs or (200 if args.quick else 1000)
    args.latency_sub_runs = args.latency_sub_runs or (100 if args.quick else 300)
    if args.all and args.only:
        p.error("--all and --only: give one")
    only = NAMES if args.all else DEFAULT if not args.only else tuple(x.strip() for x in args.only.split(","))
    unknown = set(only) - set(NAMES)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))} (choose from {', '.join(NAMES)})")
    measured_against_floor = [n for n in RATIO_NAMES if n in only]

    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    t_start = now()
    machine_cpu0, own_cpu0 = machine_cpu_seconds(), own_cpu_seconds()
    progress(f"workflow_overhead: synchronous={args.sync}, measurements {', '.join(n for n in NAMES if n in only)}; "
             f"load average {LOAD_AT_START}")
    with scratch_dir(args.dir, keep=args.keep, prefix="dfbench-overhead-") as workdir:
        bench = Bench(args, workdir)
        for name in NAMES:
            if name not in only:
                continue
            if name == "floor" and measured_against_floor:
                continue   # measured beside each figure; reported below
            progress(f"== {name}")
            try:
                results[name] = getattr(bench, name)()
            except Exception as exc:  # one failed measurement must not hide the others
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
        if bench.floor_m.samples and "floor" not in results:
            results = {"floor": bench.floor_result(), **results}
        for k, v in bench.extra.items():
            results.setdefault(k, v)
        if args.keep:
            progress(f"database files kept in {workdir}")

    import durableflow
    measured = os.path.dirname(os.path.dirname(os.path.abspath(durableflow.__file__)))
    wall = now() - t_start
    machine_cpu1 = machine_cpu_seconds()
    others = (None if machine_cpu0 is None or machine_cpu1 is None
              else max(0.0, (machine_cpu1 - machine_cpu0) - (own_cpu_seconds() - own_cpu0)))
    doc = {
        "benchmark": "workflow_overhead",
        "environment": environment(),
        "durableflow_measured": measured,   # PYTHONPATH=/other/checkout measures other code
        "loadavg_at_start": LOAD_AT_START, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        # CPU the rest of the machine used while this ran (all CPU time less this process's and its
        # ended children's): near 0 on a quiet machine. In CPU seconds and in cores on average.
        "other_processes_cpu_s": None if others is None else round(others, 1),
        "other_processes_cores": None if others is None else round(others / wall, 2),
        "settings": {"quick": args.quick, "synchronous": args.sync, "repeats": args.repeats,
                     "repeats_chain_fanout": args.short_repeats,
                     "chain": args.chain, "fanout": args.fanout, "floor_nodes": args.floor_nodes,
                     "floor_chains_before_and_after": args.floor_chains,
                     "drain_runs": args.drain, "procs": args.procs, "statement_runs": args.statement_runs,
                     "latency_runs": args.latency_runs, "latency_sub_runs": args.latency_sub_runs,
                     "latency_gap_ms": [0, args.gap_ms], "seed": args.seed,
                     "memory_runs": args.runs, "memory_batches": args.batches,
                     "profiled": bool(args.profile), "measurements": [n for n in NAMES if n in only]},
        "targets": {"ratio_to_floor": {k: f">= {v:g}" for k, v in TARGETS.get(args.sync, {}).items()},
                    "latency_cross_process_p99_ms": f"< {LATENCY_TARGET_P99_MS:g}",
                    "memory": "flat", "history": ">= 0.9 of a fresh file"},
        "results": results,
        "errors": errors,
        "profiles": bench.profile_files,
        "seconds": round(now() - t_start, 1),
    }
    if args.json and args.json != "-":
        write_json(doc, args.json)
    else:
        write_json(doc, None)
    print()
    print(f"synchronous={args.sync}; ratios are medians of per-repeat ratios to the floor measured "
          f"back to back with each figure")
    print(table(results))
    if "statements" in results:
        print()
        print(statements_table(results["statements"]))
        start = results["statements"].get("worker_startup")
        if start:
            print(f"worker start-up, on a file with nothing to do (once per worker, inside the chain's "
                  f"and fan-out's counts): {start['statements']} statements")
    if "latency" in results:
        print()
        print(latency_table(results["latency"]))
    if "memory" in results:
        print()
        print(memory_table(results["memory"]))
    print(f"\nload average (1/5/15 min) at start {LOAD_AT_START}, at end {doc['loadavg_at_end']}; "
          f"{doc['environment'].get('cpus')} CPUs; {doc['seconds']} s; durableflow from {measured}")
    if others is not None:
        print(f"other processes used {others:.1f} CPU seconds meanwhile ({others / wall:.2f} cores on "
              f"average): {'a quiet machine' if others / wall < 0.1 else 'not a quiet machine'}")
    if errors:
        print()
        for k, v in errors.items():
            print(f"ERROR {k}: {v}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
