"""SQLite beside PostgreSQL in one run: queue rows and 3-node runs with 1, 2, 4 and 8 worker processes.

    python benchmarks/backends.py            # full run (a few minutes)
    python benchmarks/backends.py --quick    # about a minute
    python benchmarks/backends.py --workers 1,2 --json out.json

Four columns, each a fresh store, same code (durableflow's Store and Engine), same machine:
  sqlite NORMAL   one WAL file, PRAGMA synchronous=NORMAL (durableflow's default): a commit is
                  in the WAL, fsynced at checkpoints; power loss can lose the last commits,
                  never corrupt the file
  sqlite FULL     synchronous=FULL: every commit fsyncs the WAL
  pg async        PostgreSQL, synchronous_commit=off: the commit returns before its WAL record
                  is flushed (lost on a server crash for up to 3 x wal_writer_delay, never torn)
  pg sync         synchronous_commit=on: every commit waits for its WAL flush (fsync)
The PostgreSQL server is a throwaway cluster started with tests/pg_cluster.py's code, on the same
disk as the SQLite files, switched to fsync=on and full_page_writes=on (the test cluster runs
without them) so that "pg sync" is as durable as "sqlite FULL". Client and server share the
machine's cores.

Rows:
  enqueue, 1 per txn       Store.enqueue of one message per transaction
  claim+ack, 1 at a time   Store.claim(1) then Store.ack, as queue_throughput.py's claim_ack
  3-node runs, W procs     R runs of Noop -> Noop -> Noop started beforehand; W worker processes
                           (engine.worker(concurrency=1) each) started, then timed from "go"
                           until every run is completed; runs per second
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, fmt_rate, format_table, now, progress, scratch_dir, write_json  # noqa: E402

LEASE_SECONDS = 30.0
THREE = {"workflowId": "three", "nodes": [{"nodeId": n, "runtimeType": "Noop"} for n in "abc"],
         "connections": [{"sourceNodeId": "a", "targetNodeId": "b"},
                         {"sourceNodeId": "b", "targetNodeId": "c"}]}

COLUMNS = [
    ("sqlite NORMAL", "sqlite", "NORMAL", "WAL, synchronous=NORMAL (fsync at checkpoints)"),
    ("sqlite FULL", "sqlite", "FULL", "WAL, synchronous=FULL (fsync per commit)"),
    ("pg async", "postgres", "off", "synchronous_commit=off (WAL flushed by the WAL writer)"),
    ("pg sync", "postgres", "on", "synchronous_commit=on (WAL fsync per commit)"),
]


# --- targets -------------------------------------------------------------------------------------

class Targets:
    """Gives each measurement a fresh store of one column: a new SQLite file, or a new database
    of the throwaway cluster with that column's synchronous_commit."""

    def __init__(self, work_dir: str):
        from tests.pg_cluster import PgCluster
        self.work_dir = work_dir
        self.cluster = PgCluster().start()
        # Durable like a production server: the test cluster turns these off for speed.
        self.cluster.admin_sql("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET full_page_writes = on",
                               "ALTER SYSTEM SET synchronous_commit = on", "SELECT pg_reload_conf()")
        self.n = 0

    def new(self, kind: str, setting: str) -> tuple[str, dict]:
        """(where, Store/Engine options) for a fresh store."""
        self.n += 1
        if kind == "sqlite":
            return os.path.join(self.work_dir, f"b{self.n}.db"), {"synchronous": setting}
        name = self.cluster.new_database(prefix="bench")
        self.cluster.admin_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = {setting}')
        return self.cluster.dsn(name), {}

    def server_settings(self) -> dict:
        import psycopg
        with psycopg.connect(self.cluster.dsn("postgres", user="postgres")) as c:
            return {k: c.execute(f"SHOW {k}").fetchone()[0]
                    for k in ("server_version", "fsync", "full_page_writes", "wal_sync_method",
                              "shared_buffers", "wal_writer_delay")}

    def close(self) -> None:
        self.cluster.stop()


# --- queue rows ----------------------------------------------------------------------------------

def queue_rows(where: str, options: dict, n: int, cap: float) -> tuple[float, float]:
    """(enqueue/s one per txn, claim+ack/s one at a time) on one fresh store."""
    from durableflow.storage import NewMessage, Store
    store = Store(where, **options)
    try:
        worker = f"bench-{os.getpid()}"
        t0, done = now(), 0
        while done < n and now() - t0 < cap:
            store.enqueue(NewMessage(kind="bench", payload='{"n":%d}' % done))
            done += 1
        enq = done / (now() - t0)
        t0, taken = now(), 0
        while taken < done and now() - t0 < cap:
            got = store.claim(worker, 1, LEASE_SECONDS)
            if not got:
                break
            store.ack(got[0].id, got[0].token)
            taken += 1
        return enq, taken / (now() - t0)
    finally:
        store.close()


# --- runs with worker processes ------------------------------------------------------------------

def _worker_process(where: str, options: dict, ready, go, stop) -> None:
    from durableflow import Engine
    engine = Engine(where, **options)
    try:
        ready.release()
        go.wait()
        with engine.worker(concurrency=1, schedules=False):
            stop.wait()
    finally:
        engine.close()


def runs_with_workers(where: str, options: dict, runs: int, workers: int, cap: float) -> tuple[float, int]:
    """(runs/s, runs completed) with `workers` processes on `runs` 3-node runs started beforehand."""
    from durableflow import Engine
    engine = Engine(where, **options)
    try:
        engine.register(THREE)
        for _ in range(runs):
            engine.start("three")
        ctx = mp.get_context("spawn")
        ready, go, stop = ctx.Semaphore(0), ctx.Event(), ctx.Event()
        procs = [ctx.Process(target=_worker_process, args=(where, options, ready, go, stop), daemon=True)
                 for _ in range(workers)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                if not ready.acquire(timeout=120):
                    raise RuntimeError("a worker process did not open its Engine within 120 s")
            count = lambda: engine.store.read(  # noqa: E731
                lambda c: c.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0])
            t0 = now()
            go.set()
            done = 0
            while now() - t0 < cap:
                done = count()
                if done >= runs:
                    break
                time.sleep(0.005)   # polling the store: the timing's resolution, not a wait for work
            took = now() - t0
            return done / took, done
        finally:
            stop.set()
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
    finally:
        engine.close()


# --- the run -------------------------------------------------------------------------------------

def filesystem(path: str) -> str:
    try:
        return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (about a minute)")
    ap.add_argument("--workers", default="1,2,4,8", help="worker-process counts (default 1,2,4,8)")
    ap.add_argument("--repeats", type=int, help="repeats per cell, the median shown (default 3, --quick 1)")
    ap.add_argument("--messages", type=int, help="queue messages per cell (default 2000, --quick 300)")
    ap.add_argument("--runs", type=int, help="3-node runs per cell (default 1000, --quick 200)")
    ap.add_argument("--max-seconds", type=float, help="cap per timed loop (default 20, --quick 6)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    ap.add_argument("--dir", help="where the SQLite files go (default: system temp dir)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    n_msg = args.messages or (300 if args.quick else 2000)
    n_runs = args.runs or (200 if args.quick else 1000)
    cap = args.max_seconds or (6.0 if args.quick else 20.0)
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]

    from tests.pg_cluster import skip_reason
    why = skip_reason()
    if why:
        progress(f"backends: cannot start PostgreSQL: {why}")
        return 2
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.time()
    cells: dict[str, dict[str, list[float]]] = {}

    def add(row: str, col: str, value: float) -> None:
        cells.setdefault(row, {}).setdefault(col, []).append(value)

    with scratch_dir(args.dir) as work_dir:
        targets = Targets(work_dir)
        try:
            server = targets.server_settings()
            progress(f"backends: PostgreSQL {server['server_version']} on port {targets.cluster.port}, "
                     f"SQLite files in {work_dir} ({filesystem(work_dir)}); repeats={repeats}")
            for r in range(repeats):
                # Columns take turns going first, so a change in the machine's load hits all alike.
                order = COLUMNS[r % 4:] + COLUMNS[:r % 4]
                for label, kind, setting, _ in order:
                    where, options = targets.new(kind, setting)
                    enq, take = queue_rows(where, options, n_msg, cap)
                    add("enqueue, 1 per txn", label, enq)
                    add("claim+ack, 1 at a time", label, take)
                    progress(f"  {label}: enqueue {fmt_rate(enq)}/s, claim+ack {fmt_rate(take)}/s")
                for w in worker_counts:
                    for label, kind, setting, _ in order:
                        where, options = targets.new(kind, setting)
                        rate, done = runs_with_workers(where, options, n_runs, w, cap)
                        add(f"3-node runs, {w} worker proc{'s' if w > 1 else ''}", label, rate)
                        progress(f"  {label}: {w} workers: {fmt_rate(rate)} runs/s ({done}/{n_runs})")
        finally:
            targets.close()

    load_after = [round(x, 2) for x in os.getloadavg()]
    labels = [c[0] for c in COLUMNS]
    rows = [[row] + [fmt_rate(statistics.median(vals[l])) if l in vals else "" for l in labels]
            for row, vals in cells.items()]
    lines = [f"durableflow backends: median of {repeats} repeat(s); queue rows in messages/s, "
             f"3-node Noop runs in runs/s ({n_msg} messages, {n_runs} runs per cell, cap {cap:g} s)",
             format_table(["measurement"] + labels, rows), "durability of each column:"]
    lines += [f"  {label:14} {what}" for label, _, _, what in COLUMNS]
    lines.append(f"PostgreSQL {server['server_version']}: fsync={server['fsync']}, full_page_writes="
                 f"{server['full_page_writes']}, wal_sync_method={server['wal_sync_method']}, "
                 f"shared_buffers={server['shared_buffers']}, wal_writer_delay={server['wal_writer_delay']}")
    env = environment()
    lines.append(f"machine: {env.get('cpus')} cpus ({env.get('cpu', '?')}), Python {env['python']}, "
                 f"SQLite {env['sqlite']}; load average (1, 5, 15 min) before {load_before}, after "
                 f"{load_after}; wall time {time.time() - started:.0f} s")
    print("\n".join(lines))
    if args.json:
        write_json({"benchmark": "backends", "repeats": repeats, "messages": n_msg, "runs": n_runs,
                    "cap_seconds": cap, "columns": {l: w for l, _, _, w in COLUMNS}, "server": server,
                    "environment": env, "loadavg_before": load_before, "loadavg_after": load_after,
                    "cells": {row: {l: v for l, v in vals.items()} for row, vals in cells.items()}},
                   args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
