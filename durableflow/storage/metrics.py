"""Figures: one run's (time, average node time, retries, queue) and the whole file's (`stats`).

Each reader takes the time as ISO text from the caller, who has it from the engine's clock: the
statements never ask SQLite for the time (see sqlite/metrics.sql).
"""

from __future__ import annotations

from durableflow.storage import queue

RUN_FIGURES = ("total_s", "avg_node_s", "retries_used", "ready", "delayed", "held", "leased")
SLOWEST = ("workflow_id", "node_id", "completed", "avg_s", "max_s")


def run_figures(conn, run_id: str, now: str) -> dict | None:
    """The run's figures at `now` (None for an unknown run)."""
    row = conn.execute(conn.sql.metrics.run_figures, {"run_id": run_id, "now": now}).fetchone()
    return None if row is None else dict(zip(RUN_FIGURES, row))


def runs_by_status(conn) -> dict[str, int]:
    return dict(conn.execute(conn.sql.metrics.runs_by_status).fetchall())


def throughput(conn, since: str) -> list[dict]:
    """Runs finished and node attempts completed since `since`, per minute ('YYYY-MM-DDTHH:MM'),
    oldest first; minutes with neither are not listed."""
    return [{"minute": m, "runs_finished": r, "nodes_completed": n}
            for m, r, n in conn.execute(conn.sql.metrics.throughput, {"since": since})]


def slowest_nodes(conn, since: str) -> list[dict]:
    """The ten slowest nodes on average, per workflow, over the attempts completed since `since`."""
    return [dict(zip(SLOWEST, r)) for r in conn.execute(conn.sql.metrics.slowest_nodes, {"since": since})]


def stats(conn, *, hour_ago: str, day_ago: str) -> dict:
    """Counts over the whole database, throughput since `hour_ago` and the slowest nodes since
    `day_ago` (call inside one read: one snapshot)."""
    q = conn.sql.metrics
    workflow_ids, versions = conn.execute(q.stats_workflows).fetchone()
    return {
        "runs": runs_by_status(conn),
        "node_instances": dict(conn.execute(q.stats_nodes).fetchall()),
        "messages": queue.queue_counts(conn),
        "dead_letters": conn.execute(q.stats_dead_letters).fetchone()[0],
        "events": conn.execute(q.stats_events).fetchone()[0],
        "workers_running": conn.execute(q.stats_workers).fetchone()[0],
        "workflows": workflow_ids, "workflow_versions": versions,
        "throughput": throughput(conn, hour_ago),
        "slowest_nodes": slowest_nodes(conn, day_ago),
    }
