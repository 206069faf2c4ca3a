"""The `workers` table: the worker processes that have worked on this database."""

from __future__ import annotations

from durableflow.clock import iso, parse_iso
from durableflow.procs import host_identity


# A stopped worker's row is kept this long (it names the host and pid behind node_instances.
# worker_id and lease events), then dropped when a worker starts: the table holds the live
# workers and those of the last week, however often workers come and go.
STOPPED_WORKERS_KEPT_S = 7 * 86400.0


def register_worker_txn(conn, worker_id: str, pid: int, pid_started: str | None, concurrency: int,
                        now: str, cpu: float | None = None, memory_mb: int | None = None) -> None:
    conn.execute(conn.sql.workers.workers_prune_stopped,
                 {"before": iso(parse_iso(now) - STOPPED_WORKERS_KEPT_S)})
    host_id = host_identity()
    conn.execute(conn.sql.workers.worker_register,
                 (worker_id, host_id.split("/", 1)[0], pid, pid_started, concurrency, now, now, host_id,
                  cpu, memory_mb))


def live_one_fits(conn, cpu: float, memory_mb: float) -> bool:
    return conn.execute(conn.sql.workers.workers_live_fit, (cpu, memory_mb)).fetchone() is not None


def largest_live(conn) -> tuple[float, float] | None:
    """The most cpu and memory (MB) any live worker offers, or None when none says."""
    cpu, memory = conn.execute(conn.sql.workers.workers_largest_live).fetchone()
    return None if cpu is None and memory is None else (cpu or 0.0, memory or 0)


def worker_heartbeat_txn(conn, worker_id: str, now: str) -> None:
    conn.execute(conn.sql.workers.worker_heartbeat, (now, worker_id))


def worker_stopped_txn(conn, worker_id: str, now: str) -> None:
    conn.execute(conn.sql.workers.worker_stopped, (now, worker_id))


def live_workers_on_host(conn, host_id: str) -> list[tuple[str, int, str | None]]:
    """(worker_id, pid, process start time) of the workers of this host identity (see
    procs.host_identity) not recorded as stopped."""
    host = host_id.split("/", 1)[0]
    return conn.execute(conn.sql.workers.workers_live_on_host, (host, host_id)).fetchall()


def mark_worker_gone_txn(conn, worker_id: str, now: str) -> bool:
    return conn.execute(conn.sql.workers.workers_mark_gone, (now, worker_id)).rowcount == 1
