"""What `durableflow stats` and Engine.stats() report, shaped from what storage/metrics.py reads.

Pure: the engine reads the rows (one snapshot) at a moment of its clock and hands them here.
"""

from __future__ import annotations

from durableflow import machines
from durableflow.clock import iso

HOUR = 3600.0
DAY = 86400.0


def shape_stats(raw: dict, now: float, **extra) -> dict:
    """Every status word of runs, node instances and messages, zero or not (a script reading the
    JSON finds the same keys each time); the last hour's throughput, in all and per minute; the
    slowest nodes of the last day. `extra`: figures read outside the snapshot (file size...)."""
    out = {k: v for k, v in raw.items() if k not in ("throughput", "slowest_nodes")}
    for key, machine in (("runs", machines.RUN), ("node_instances", machines.NODE),
                         ("messages", machines.MESSAGE)):
        out[key] = {status: raw[key].get(status, 0) for status in machine.states}
    minutes = raw["throughput"]
    runs_finished = sum(m["runs_finished"] for m in minutes)
    nodes_completed = sum(m["nodes_completed"] for m in minutes)
    out.update(extra)
    out["now"] = iso(now)
    out["throughput_last_hour"] = {
        "since": iso(now - HOUR), "runs_finished": runs_finished, "nodes_completed": nodes_completed,
        "runs_per_minute": round(runs_finished / (HOUR / 60), 3),
        "nodes_per_minute": round(nodes_completed / (HOUR / 60), 3),
        "by_minute": minutes,
    }
    out["slowest_nodes_last_day"] = {"since": iso(now - DAY), "nodes": raw["slowest_nodes"]}
    return out
