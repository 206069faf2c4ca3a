"""Workflow overhead: what the engine costs per node and per run, with `Noop` nodes only.

    python benchmarks/workflow_overhead.py                  # full run (100,000 runs for memory)
    python benchmarks/workflow_overhead.py --quick          # smaller sizes, well under a minute
    python benchmarks/workflow_overhead.py --only chain,fanout --json out.json
    python benchmarks/workflow_overhead.py --only runs --profile   # cProfile the dispatcher thread

Measurements (each on fresh database files in a temporary folder, timings repeated, median kept):

  chain    one run of a chain of N Noop nodes, one worker with concurrency 1: the time from
           the worker's start to the run finished, divided by N (ms per node).
  fanout   one run of start -> N Noop -> end (the end node joins all N): nodes per second.
  runs     M runs of a 3-node Noop chain are started first, then the time from the workers'
           start until every run is finished: runs per second. Variants: one worker in this
           process (concurrency 1), one process with concurrency 4, one worker subprocess, and
           P worker subprocesses (each `Engine(path).worker(concurrency=1)` on the same file).
  memory   R 3-node runs in batches, one engine and one long-lived worker in this process; RSS
           after each batch must stay flat (first, last, max, least-squares slope).
  history  M 3-node runs (one worker c=1) on a fresh file and on the file the memory
           measurement left (R finished runs), interleaved: throughput must stay flat as history
           grows. A worker's start-up quick_check reads the whole file once (about a second
           per 300 MB here) beside its first work: it is timed and reported apart, and the
           timed worker is started with quick_check=False, on both files alike.

--profile wraps durableflow.worker.Worker._dispatch (the dispatcher thread) in cProfile, in this
process and in worker subprocesses; stats are written per measurement as .prof files and the top
entries are printed to stderr. Profiled timings are slower than unprofiled ones.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import multiprocessing as mp
import os
import pstats
import sqlite3
import statistics
import sys
import time
import traceback
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    Measurement, environment, fmt_rate, format_table, now, progress, scratch_dir, write_json,
)

ACTIVE_SQL = "SELECT count(*) FROM runs WHERE status IN ('pending', 'running', 'paused', 'compensating')"

TARGETS = {
    "chain_ms_per_node": ("<=", 0.5),
    "fanout_nodes_per_s": (">=", 5000.0),
    "runs_per_s_1w": (">=", 600.0),
}
NAMES = ("chain", "fanout", "runs", "memory", "history")

LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]


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


def timed_drain(path: str, **worker_options) -> tuple[float, float, float]:
    """Start an in-process worker on `path` and wait until no run is active.
    Returns the clock at worker start, once Worker.start() returned, and when drained."""
    from durableflow import Engine
    engine = Engine(path)
    conn = poll_conn(path)
    try:
        gc.collect()
        t0 = now()
        worker = engine.worker(**worker_options).start()
        t_started = now()
        try:
            t1 = wait_drained(conn, timeout=600)
        finally:
            worker.stop()
    finally:
        conn.close()
        engine.close()
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


def verdict(key: str, value: float | None) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, target = TARGETS[key]
    ok = value <= target if op == "<=" else value >= target
    return "ok" if ok else "MISSED"


# --- measurements ------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str):
        self.args = args
        self.workdir = workdir
        self.counter = 0
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

    # chain ------------------------------------------------------------------------------------

    def single_run(self, label: str, definition: dict, nodes: int) -> float:
        """One run of `definition`; seconds from the worker's start to the run finished."""
        from durableflow import Engine
        path = self.fresh_db(label)
        engine = Engine(path)
        try:
            workflow_id, _v = engine.register(definition)
            run_id = engine.start(workflow_id)
            gc.collect()
            t0 = now()
            worker = engine.worker(concurrency=1).start()
            try:
                run = engine.wait(run_id, timeout=600)
                t1 = now()
            finally:
                worker.stop()
            if run.status != "completed":
                raise RuntimeError(f"{label}: run ended {run.status}: {run.error}")
            done = sum(1 for n in run.nodes if n.status == "completed")
            if done != nodes:
                raise RuntimeError(f"{label}: {done} completed node instances, expected {nodes}")
            return t1 - t0
        finally:
            engine.close()

    def chain(self) -> dict:
        n = self.args.chain
        m = Measurement()
        for i in range(self.args.repeats):
            secs = self.single_run("chain", chain_def(n), n)
            m.add(n, secs)
            progress(f"chain {n}: repeat {i + 1}: {secs * 1000 / n:.3f} ms/node")
        self._collect_profile("chain")
        ms = [s * 1000 / n for s in m.seconds]
        med = sorted(ms)[len(ms) // 2] if len(ms) % 2 else (sum(sorted(ms)[len(ms) // 2 - 1:len(ms) // 2 + 1]) / 2)
        return {"nodes": n, "ms_per_node": round(med, 4), "samples_ms_per_node": [round(x, 4) for x in ms],
                "nodes_per_s": m.as_dict()["ops_per_s"], "detail": m.as_dict(),
                "target": "<= 0.5 ms/node", "verdict": verdict("chain_ms_per_node", med)}

    def fanout(self) -> dict:
        width = self.args.fanout
        nodes = width + 2
        m = Measurement()
        for i in range(self.args.repeats):
            secs = self.single_run("fanout", fanout_def(width), nodes)
            rate = m.add(nodes, secs)
            progress(f"fanout {width}: repeat {i + 1}: {rate:,.0f} nodes/s")
        self._collect_profile("fanout")
        return {"width": width, "nodes": nodes, "nodes_per_s": m.as_dict()["ops_per_s"],
                "detail": m.as_dict(), "target": ">= 5000 nodes/s",
                "verdict": verdict("fanout_nodes_per_s", m.median)}

    # runs -------------------------------------------------------------------------------------

    def prepare_runs(self, label: str, count: int) -> str:
        from durableflow import Engine
        path = self.fresh_db(label)
        with Engine(path) as engine:
            engine.register(chain_def(3, "chain3"))
            for _ in range(count):
                engine.start("chain3")
        return path

    def drain_in_process(self, label: str, count: int, concurrency: int) -> float:
        path = self.prepare_runs(label, count)
        t0, _started, t1 = timed_drain(path, concurrency=concurrency)
        check_all_completed(path, count)
        return t1 - t0

    def drain_processes(self, label: str, count: int, procs: int, concurrency: int) -> tuple[float, list[str]]:
        path = self.prepare_runs(label, count)
        ctx = mp.get_context("spawn")
        go, stop = ctx.Event(), ctx.Event()
        ready = [ctx.Event() for _ in range(procs)]
        prof_files = ([os.path.join(self.workdir, f"{label}-{self.counter}-p{i}.prof") for i in range(procs)]
                      if self.profiler else [None] * procs)
        children = [ctx.Process(target=worker_process, name=f"dfbench-worker-{i}",
                                args=(path, concurrency, ready[i], go, stop, prof_files[i]))
                    for i in range(procs)]
        for c in children:
            c.start()
        conn = poll_conn(path)
        try:
            for ev, c in zip(ready, children):
                while not ev.wait(0.2):
                    if c.exitcode is not None:
                        raise RuntimeError(f"worker subprocess exited early ({c.exitcode})")
            t0 = now()
            go.set()
            t1 = wait_drained(conn, timeout=600, procs=children)
        finally:
            conn.close()
            stop.set()
            go.set()
            for c in children:
                c.join(60)
                if c.is_alive():
                    c.kill()
                    c.join()
        bad = [c.exitcode for c in children if c.exitcode != 0]
        if bad:
            raise RuntimeError(f"worker subprocesses exited with {bad}")
        check_all_completed(path, count)
        return t1 - t0, [f for f in prof_files if f]

    def runs(self) -> dict:
        count, procs = self.args.drain, self.args.procs
        variants = [
            ("1w", "1 worker in-process, concurrency 1", lambda: (self.drain_in_process("runs-1w", count, 1), [])),
            ("1p_c4", "1 worker in-process, concurrency 4", lambda: (self.drain_in_process("runs-1p_c4", count, 4), [])),
            ("1sub", "1 worker subprocess, concurrency 1", lambda: self.drain_processes("runs-1sub", count, 1, 1)),
            (f"{procs}p", f"{procs} worker subprocesses, concurrency 1 each",
             lambda: self.drain_processes(f"runs-{procs}p", count, procs, 1)),
        ]
        if self.args.variants:
            keep = set(self.args.variants.split(","))
            variants = [v for v in variants if v[0] in keep]
        ms = {key: Measurement() for key, _d, _f in variants}
        child_prof: dict[str, list[str]] = {key: [] for key, _d, _f in variants}
        for i in range(self.args.repeats):
            for key, desc, fn in variants:  # interleaved, so drift hits every variant alike
                secs, files = fn()
                child_prof[key] += files
                rate = ms[key].add(count, secs)
                progress(f"runs {key}: repeat {i + 1}: {rate:,.0f} runs/s ({desc})")
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
                        "nodes_per_s": _r(ms[key].median * 3), "detail": d}
        if "1w" in out:
            out["1w"]["target"] = ">= 600 runs/s"
            out["1w"]["verdict"] = verdict("runs_per_s_1w", ms["1w"].median)
        return out

    # memory -----------------------------------------------------------------------------------

    def memory(self) -> dict:
        from durableflow import Engine
        total, batches = self.args.runs, self.args.batches
        batch = max(1, total // batches)
        path = self.fresh_db("memory")
        engine = Engine(path)
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
        with Engine(path) as engine:
            engine.register(chain_def(3, "chain3"))
            for _ in range(count):
                engine.start("chain3")
            t = now()
            if engine.store.quick_check() != ["ok"]:
                raise RuntimeError(f"{path}: quick_check failed")
            check_s = now() - t
        t0, t_started, t1 = timed_drain(path, concurrency=1, quick_check=False)
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


def worker_process(path: str, concurrency: int, ready, go, stop, profile_path: str | None) -> None:
    """A worker subprocess: open the engine, say ready, work from `go` until `stop`."""
    from durableflow import Engine
    profiler = DispatchProfiler().install() if profile_path else None
    engine = Engine(path)
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

def table(results: dict) -> str:
    rows = []
    if "chain" in results:
        c = results["chain"]
        rows.append([f"chain of {c['nodes']:,} Noop, 1 worker c=1", f"{c['ms_per_node']:.3f} ms/node",
                     c["target"], c["verdict"], _samples(c["samples_ms_per_node"], "{:.3f}")])
    if "fanout" in results:
        f = results["fanout"]
        rows.append([f"fan-out/in of {f['width']:,} Noop, 1 worker c=1", f"{fmt_rate(f['nodes_per_s'])} nodes/s",
                     f["target"], f["verdict"], _samples(f["detail"]["samples_ops_per_s"], "{:,.0f}")])
    if "runs" in results:
        r = results["runs"]
        for key, v in r.items():
            if not isinstance(v, dict):
                continue
            rows.append([f"{r['runs']:,} 3-node runs, {v['description']}",
                         f"{fmt_rate(v['runs_per_s'])} runs/s", v.get("target", ""), v.get("verdict", ""),
                         _samples(v["detail"]["samples_ops_per_s"], "{:,.0f}")])
    if "memory" in results:
        m = results["memory"]
        rows.append([f"memory, {m['runs']:,} 3-node runs in {m['batches']} batches",
                     f"RSS {m['rss_first_mb']} -> {m['rss_last_mb']} MB (max {m['rss_max_mb']})",
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
                         f"{fmt_rate(v['runs_per_s'])} runs/s",
                         h["target"] if key == "history" else "",
                         f"{h['verdict']} ({h['ratio']:.2f}x)" if key == "history" else "",
                         f"Worker.start {v['worker_start_ms']} ms; the file's quick_check, which a worker "
                         f"runs beside its first work, took {v['quick_check_ms']:.0f} ms (timed apart)"])
    return format_table(["measurement", "result", "target", "verdict", "samples"], rows, "lrlll")


def _samples(values, fmt: str) -> str:
    return " / ".join(fmt.format(v) for v in values)


def memory_table(m: dict) -> str:
    rows = [[r["batch"], f"{r['runs_done']:,}", f"{r['rss_kb'] / 1024:.1f}", f"{r['py_blocks']:,}",
             f"{r['gc_objects']:,}", r["db_mb"], fmt_rate(r["runs_per_s"])] for r in m["per_batch"]]
    return format_table(["batch", "runs done", "RSS MB", "py blocks", "gc objects", "db MB", "runs/s"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes (memory: 10,000 runs)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(NAMES)}")
    p.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout)")
    p.add_argument("--profile", nargs="?", const="dfbench-profiles", metavar="DIR",
                   help="cProfile the dispatcher thread(s); .prof files go to DIR (default ./dfbench-profiles)")
    p.add_argument("--repeats", type=int, help="repeats of each timing (default 3)")
    p.add_argument("--chain", type=int, help="chain length (default 1000)")
    p.add_argument("--fanout", type=int, help="fan-out width (default 1000)")
    p.add_argument("--drain", type=int, help="3-node runs drained per timing (default 2000; quick 1000)")
    p.add_argument("--procs", type=int, default=4, help="worker subprocesses for the multi-process variant")
    p.add_argument("--variants", help="runs variants to keep: 1w,1p_c4,1sub,<procs>p")
    p.add_argument("--runs", type=int, help="runs for the memory measurement (default 100000; quick 10000)")
    p.add_argument("--batches", type=int, default=20, help="batches of the memory measurement")
    p.add_argument("--dir", help="folder for the temporary database files (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the database files")
    args = p.parse_args(argv)
    args.repeats = args.repeats or 3
    args.chain = args.chain or 1000
    args.fanout = args.fanout or 1000
    args.drain = args.drain or (1000 if args.quick else 2000)
    args.runs = args.runs or (10_000 if args.quick else 100_000)
    only = NAMES if not args.only else tuple(x.strip() for x in args.only.split(","))
    unknown = set(only) - set(NAMES)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))} (choose from {', '.join(NAMES)})")

    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    t_start = now()
    with scratch_dir(args.dir, keep=args.keep, prefix="dfbench-overhead-") as workdir:
        bench = Bench(args, workdir)
        for name in NAMES:
            if name not in only:
                continue
            progress(f"== {name}")
            try:
                results[name] = getattr(bench, name)()
            except Exception as exc:  # one failed measurement must not hide the others
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
        for k, v in bench.extra.items():
            results.setdefault(k, v)
        if args.keep:
            progress(f"database files kept in {workdir}")

    doc = {
        "benchmark": "workflow_overhead",
        "environment": environment(),
        "loadavg_at_start": LOAD_AT_START, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {"quick": args.quick, "repeats": args.repeats, "chain": args.chain,
                     "fanout": args.fanout, "drain_runs": args.drain, "procs": args.procs,
                     "memory_runs": args.runs, "memory_batches": args.batches,
                     "profiled": bool(args.profile), "synchronous": "NORMAL"},
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()} | {"memory": "flat"},
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
    print(table(results))
    if "memory" in results:
        print()
        print(memory_table(results["memory"]))
    print(f"\nload average (1/5/15 min) at start {LOAD_AT_START}, at end {doc['loadavg_at_end']}; "
          f"{doc['environment'].get('cpus')} CPUs; {doc['seconds']} s")
    if errors:
        print()
        for k, v in errors.items():
            print(f"ERROR {k}: {v}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
