"""Schedules: how late fires start, and what a worker pays for the schedules it watches.

    python benchmarks/schedule_timing.py                 # lateness over 120 fires; 10,000 schedules
    python benchmarks/schedule_timing.py --quick         # 40 fires; 2,000 schedules; well under a minute
    python benchmarks/schedule_timing.py --json out.json

Measurements (fresh database files in a temporary folder):

  lateness  S schedules firing every second (`interval: 1s`) and one worker in a subprocess
            (`durableflow worker`): for each fire, the time from its fire time to its run's
            start (runs.started_at - runs.scheduled_at, both stamped by the engine's clock):
            p50, p99 and max over F fires. The scheduler runs in the worker's upkeep thread ten
            times a second and reads the database only when a fire is due.
  cost      3-node Noop runs drained by one in-process worker (concurrency 1), on a file with
            no schedules and on one with N schedules none of which is due (a yearly cron, next
            fire months away), interleaved, R repeats: runs/s with them over runs/s without.
            A worker's scheduler reads the soonest fire time once a second.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    Measurement, environment, fmt_rate, format_table, now, progress, scratch_dir, write_json,
)


def timer_workflow(workflow_id: str, **timer) -> dict:
    return {"workflowId": workflow_id, "nodes": [
        {"nodeId": "tick", "runtimeType": "Timer", **timer},
        {"nodeId": "work", "runtimeType": "Noop"}],
        "connections": [{"sourceNodeId": "tick", "targetNodeId": "work"}]}


def chain3() -> dict:
    return {"workflowId": "chain3", "nodes": [{"nodeId": f"n{i}", "runtimeType": "Noop"} for i in range(3)],
            "connections": [{"sourceNodeId": f"n{i}", "targetNodeId": f"n{i + 1}"} for i in range(2)]}


def _parse(text: str) -> float:
    from durableflow.clock import parse_iso
    return parse_iso(text)


def lateness(workdir: str, schedules: int, fires: int) -> dict:
    from durableflow import Engine
    path = os.path.join(workdir, "lateness.db")
    with Engine(path) as engine:
        for i in range(schedules):
            engine.register(timer_workflow(f"every-{i}", interval="1s", overlap="allow"))
    log = open(os.path.join(workdir, "worker.log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "durableflow", "--db", path, "worker", "--concurrency", "4"],
                            stderr=log)
    conn = sqlite3.connect(path, timeout=30)
    try:
        deadline = now() + 60 + fires / schedules * 2
        query = "SELECT count(*) FROM runs WHERE status = 'completed'"
        while conn.execute(query).fetchone()[0] < fires:
            if now() > deadline or proc.poll() is not None:
                raise RuntimeError(f"only {conn.execute(query).fetchone()[0]} of {fires} fires ran "
                                   f"(worker exit {proc.poll()})")
            time.sleep(0.2)
        rows = conn.execute("SELECT scheduled_at, started_at FROM runs WHERE scheduled_at IS NOT NULL "
                            "ORDER BY scheduled_at LIMIT ?", (fires,)).fetchall()
    finally:
        conn.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    late_ms = sorted((_parse(started) - _parse(fired)) * 1000 for fired, started in rows)
    q = statistics.quantiles(late_ms, n=100)
    return {"schedules": schedules, "fires": len(late_ms), "p50_ms": round(statistics.median(late_ms), 1),
            "p99_ms": round(q[98], 1), "max_ms": round(late_ms[-1], 1), "min_ms": round(late_ms[0], 1)}


def _with_schedules(path: str, count: int) -> None:
    """`count` registered workflows, each with a yearly Timer: watched, never due."""
    from durableflow import Engine
    with Engine(path) as engine:
        engine.register(chain3())
        for i in range(count):
            engine.register(timer_workflow(f"yearly-{i}", cron="0 0 1 1 *"))


def _drain(path: str, runs: int) -> float:
    from durableflow import Engine
    with Engine(path) as engine:
        engine.register(chain3())
        for _ in range(runs):
            engine.start("chain3")
        conn = sqlite3.connect(path)
        t0 = now()
        with engine.worker(concurrency=1, quick_check=False):
            while conn.execute("SELECT count(*) FROM runs WHERE status IN ('pending', 'running')").fetchone()[0]:
                time.sleep(0.005)
        elapsed = now() - t0
        conn.close()
    return elapsed


def cost(workdir: str, schedules: int, runs: int, repeats: int) -> dict:
    with_path = os.path.join(workdir, "with-schedules.db")
    t = now()
    _with_schedules(with_path, schedules)
    build_s = now() - t
    plain, watched = Measurement(), Measurement()
    for i in range(repeats):
        for label, m in (("without", plain), ("with", watched)):
            path = with_path if label == "with" else os.path.join(workdir, f"plain-{i}.db")
            rate = m.add(runs, _drain(path, runs))
            progress(f"cost: repeat {i + 1}: {label} {schedules:,} schedules: {rate:,.0f} runs/s")
    ratios = [w / p for w, p in zip(watched.samples, plain.samples)]
    return {"schedules": schedules, "runs": runs, "build_s": round(build_s, 1),
            "runs_per_s_without": plain.as_dict()["ops_per_s"], "runs_per_s_with": watched.as_dict()["ops_per_s"],
            "ratio": round(statistics.median(ratios), 3), "ratios": [round(r, 3) for r in ratios]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="40 fires, 2,000 schedules")
    p.add_argument("--fires", type=int, help="fires measured for lateness (default 120)")
    p.add_argument("--every", type=int, default=4, help="schedules firing every second (default 4)")
    p.add_argument("--schedules", type=int, help="idle schedules for the cost (default 10000)")
    p.add_argument("--runs", type=int, default=1000, help="3-node runs drained per timing")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the cost timing")
    p.add_argument("--only", default="lateness,cost", help="lateness, cost")
    p.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout)")
    args = p.parse_args(argv)
    fires = args.fires or (40 if args.quick else 120)
    count = args.schedules or (2000 if args.quick else 10_000)
    results = {}
    with scratch_dir(None, prefix="dfbench-schedules-") as workdir:
        if "lateness" in args.only:
            progress(f"== lateness: {args.every} schedules every second, {fires} fires")
            results["lateness"] = lateness(workdir, args.every, fires)
        if "cost" in args.only:
            progress(f"== cost: {count:,} idle schedules")
            results["cost"] = cost(workdir, count, args.runs, args.repeats)
    doc = {"benchmark": "schedule_timing", "environment": environment(), "results": results}
    write_json(doc, args.json if args.json and args.json != "-" else None)
    rows = []
    if "lateness" in results:
        r = results["lateness"]
        rows.append([f"lateness, {r['schedules']} schedules every 1 s, {r['fires']} fires",
                     f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms"])
    if "cost" in results:
        r = results["cost"]
        rows.append([f"3-node runs/s, one worker, with {r['schedules']:,} idle schedules vs none",
                     f"{fmt_rate(r['runs_per_s_with'])} vs {fmt_rate(r['runs_per_s_without'])} "
                     f"({r['ratio']:.3f}x; {r['ratios']})"])
    print()
    print(format_table(["measurement", "result"], rows, "ll"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
