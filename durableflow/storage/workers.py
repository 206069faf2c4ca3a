"""The `workers` table: the worker processes that have worked on this database."""

from __future__ import annotations

import socket

from durableflow.procs import host_identity


def register_worker_txn(conn, worker_id: str, pid: int, pid_started: str | None, concurrency: int,
                        now: str) -> None:
    conn.execute(conn.sql.workers.worker_register,
                 (worker_id, socket.gethostname(), pid, pid_started, concurrency, now, now, host_identity()))


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
