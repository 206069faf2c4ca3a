"""The `node_instances` table: one row per attempt of a node in a run.

Status changes are checked against the node machine, applied with `WHERE status = :from`,
row-count checked, and appended to `events` in the same transaction.
"""

from __future__ import annotations

import json

from durableflow import machines
from durableflow.errors import InvalidTransition
from durableflow.storage.events import dumps, event_txn

NODE_COLUMNS = ("id", "run_id", "node_id", "iteration", "attempt", "status", "input", "output",
                "error", "error_type", "port", "waiting_reason", "progress", "progress_message",
                "worker_id", "created_at", "started_at", "finished_at", "compensates")


def insert_node_txn(conn, run_id: str, node_id: str, iteration: int, attempt: int, status: str,
                    message_id: int | None, input_json: str | None, now: str,
                    data: dict | None = None) -> int:
    cur = conn.execute(conn.sql.nodes.node_insert, (run_id, node_id, iteration, attempt, status,
                                                    message_id, input_json, now))
    if data:
        text = dumps({"id": cur.lastrowid, "attempt": attempt, "iteration": iteration, **data})
    else:
        text = f'{{"id":{cur.lastrowid},"attempt":{attempt},"iteration":{iteration}}}'
    conn.add_event((run_id, node_id, "node." + status, text, now))
    return cur.lastrowid


def node_rows_txn(conn, run_id: str) -> list[dict]:
    return [dict(zip(NODE_COLUMNS, r)) for r in conn.execute(conn.sql.nodes.nodes_of_run, (run_id,))]


def copy_node_txn(conn, run_id: str, row: dict, now: str, from_run: str,
                  vars_delta: dict | None = None) -> int:
    """Carry a finished node instance of another run over (rerun --from), as it was recorded,
    with the change it made to the variables."""
    cur = conn.execute(conn.sql.nodes.node_copy, {**row, "run_id": run_id, "now": now})
    data = {"id": cur.lastrowid, "copiedFrom": from_run, "instance": row["id"]}
    if vars_delta:
        data["vars"] = vars_delta
    event_txn(conn, run_id, row["node_id"], "node." + row["status"], data, now)
    return cur.lastrowid


def start_node_txn(conn, message_id: int, run_id: str, node_id: str, worker_id: str,
                   now: str, limit_key: str | None = None) -> tuple[int, int] | None:
    """Start the node a message delivers; with `limit_key`, it holds a slot of that key."""
    row = conn.execute(conn.sql.nodes.node_start, {"now": now, "worker_id": worker_id,
                                                   "message_id": message_id, "limit_key": limit_key}).fetchone()
    if row is None:
        return None
    instance_id, attempt, _ = row
    conn.add_event((run_id, node_id, "node.running", f'{{"id":{instance_id},"attempt":{attempt}}}', now))
    return instance_id, attempt


def rows_to_start(conn, message_ids: list[int]) -> dict[int, tuple[int, int, str]]:
    """What node_to_start reads, for a claimed batch's messages at once: message id -> (instance
    id, attempt, status) of the attempt each delivers, if it has one."""
    got: dict[int, tuple[int, int, str]] = {}
    for mid, *row in conn.execute(conn.sql.nodes.nodes_to_start, (json.dumps(message_ids),)):
        seen = got.get(mid)
        if seen is None or row[0] > seen[0]:   # the latest attempt of a message
            got[mid] = tuple(row)
    return got


def defer_start_txn(conn, message_id: int, run_id: str, node_id: str, now: str,
                    read: dict | None = None) -> tuple[int, int, str] | None:
    """Start the node a message delivers, in the events only: its row stays as it is until the
    node finishes in this same transaction (finish_node_txn with `started`) or start_deferred_txn
    writes the start after all. (instance id, attempt, the row's status), or None. `read`: what
    rows_to_start read for the batch, if it did."""
    if read is not None:
        row = read.get(message_id)
    else:
        row = conn.execute(conn.sql.nodes.node_to_start, (message_id,)).fetchone()
    if row is None:
        return None
    machines.target(machines.NODE, "start", row[2])
    conn.add_event((run_id, node_id, "node.running", f'{{"id":{row[0]},"attempt":{row[1]}}}', now))
    return row


def start_deferred_txn(conn, instance_id: int, node_id: str, started: tuple[str, str, str]) -> None:
    """Write the start defer_start_txn put off; `started` = (row status then, when, worker)."""
    source, at, worker_id = started
    if conn.execute(conn.sql.nodes.node_start_deferred, {"id": instance_id, "from": source, "now": at,
                                                         "worker_id": worker_id}).rowcount != 1:
        raise InvalidTransition(f"node instance {instance_id} ({node_id}): cannot 'start', "
                                f"it is no longer {source}")


def finish_node_txn(conn, instance_id: int, run_id: str, node_id: str, trigger: str, source: str,
                    now: str, *, output: str | None = None, error: str | None = None,
                    error_type: str | None = None, port: str | None = None,
                    data: dict | None = None, started: tuple[str, str, str] | None = None) -> str:
    """With `started` (see defer_start_txn), the row goes from the status it had when the node was
    claimed straight to its end: the start and the end in one write."""
    to = machines.target(machines.NODE, trigger, source)
    values = {"to": to, "from": source, "id": instance_id, "output": output, "error": error,
              "error_type": error_type, "port": port, "now": now}
    if started is None:
        cur = conn.execute(conn.sql.nodes.node_finish, values)
    else:
        values["from"], values["started_at"], values["worker_id"] = started
        cur = conn.execute(conn.sql.nodes.node_start_finish, values)
    if cur.rowcount != 1:
        raise InvalidTransition(f"node instance {instance_id} ({node_id}): cannot '{trigger}', "
                                f"it is no longer {source}")
    conn.add_event((run_id, node_id, "node." + to, finish_event_text(instance_id, source, error, error_type,
                                                                     port, data), now))
    return to


def finish_event_text(instance_id: int, source: str, error: str | None, error_type: str | None,
                      port: str | None, data: dict | None) -> str:
    """The data of a node's event as it ends."""
    if error is None and port is None and not data:
        return f'{{"id":{instance_id},"from":"{source}"}}'
    payload = {"id": instance_id, "from": source}
    if error is not None:
        payload.update(error=error, errorType=error_type)
    if port is not None:
        payload["port"] = port
    if data:
        payload.update(data)
    return dumps(payload)


def release_node_txn(conn, instance_id: int, run_id: str, node_id: str, now: str) -> None:
    """A claimed attempt whose body never started goes back to pending, attempt unchanged."""
    machines.target(machines.NODE, "release", "running")
    if conn.execute(conn.sql.nodes.node_release, (instance_id,)).rowcount != 1:
        raise InvalidTransition(f"node instance {instance_id}: cannot 'release', it is not running")
    event_txn(conn, run_id, node_id, "node.pending", {"id": instance_id, "from": "running", "released": True}, now)


def wait_node_txn(conn, instance_id: int, run_id: str, node_id: str, source: str, reason: str,
                  now: str) -> None:
    machines.target(machines.NODE, "wait", source)
    if conn.execute(conn.sql.nodes.node_wait, {"id": instance_id, "from": source, "reason": reason}).rowcount != 1:
        raise InvalidTransition(f"node instance {instance_id}: cannot 'wait', it is no longer {source}")
    event_txn(conn, run_id, node_id, "node.waiting", {"id": instance_id, "from": source, "reason": reason}, now)


def progress_txn(conn, instance_id: int, run_id: str, node_id: str, percent: float,
                 message: str | None, now: str) -> None:
    if conn.execute(conn.sql.nodes.node_progress, {"id": instance_id, "percent": percent,
                                                   "message": message}).rowcount:
        event_txn(conn, run_id, node_id, "node.progress",
                  {"id": instance_id, "percent": percent, "message": message}, now)


def open_nodes(conn, run_id: str) -> list[tuple[int, str, str, int | None]]:
    """(id, node_id, status, message_id) of the run's pending, waiting and running attempts."""
    return conn.execute(conn.sql.nodes.nodes_open_of_run, (run_id,)).fetchall()


def open_node_of_message(conn, message_id: int):
    """(id, status, attempt, node_id, iteration, limit_key, compensates) of the open attempt a
    message delivers, or None."""
    return conn.execute(conn.sql.nodes.node_open_by_message, (message_id,)).fetchone()


def last_attempt(conn, run_id: str, node_id: str, iteration: int) -> int:
    return conn.execute(conn.sql.nodes.node_last_attempt, (run_id, node_id, iteration)).fetchone()[0] or 0


def running_count(conn, run_id: str) -> int:
    return conn.execute(conn.sql.nodes.run_running_count, (run_id,)).fetchone()[0]


def completed_outputs(conn, run_id: str) -> list[tuple[str, str]]:
    """(node id, output) of the run's completed attempts, in the order they were made."""
    rows = conn.execute(conn.sql.nodes.run_completed_outputs, (run_id,)).fetchall()
    rows.sort()
    return [(node_id, output) for _id, node_id, output in rows]


def set_waiting_reason_txn(conn, instance_id: int, reason: str) -> None:
    """A waiting attempt waits for something else now (a limit it meets again)."""
    conn.execute(conn.sql.nodes.node_waiting_reason, {"id": instance_id, "reason": reason})


# --- compensation ----------------------------------------------------------------------------

def mark_compensation_txn(conn, instance_id: int, compensates: str) -> None:
    conn.execute(conn.sql.nodes.node_mark_compensation, (compensates, instance_id))


def next_to_compensate(conn, run_id: str, node_ids_json: str) -> list[tuple]:
    """(id, node_id, iteration, input, output, finished_at) of the newest completed instances
    among the given nodes that no compensation has taken up (a few, newest first)."""
    return conn.execute(conn.sql.nodes.compensation_next, {"run_id": run_id, "nodes": node_ids_json}).fetchall()


def compensation_open(conn, run_id: str) -> bool:
    return conn.execute(conn.sql.nodes.compensation_open, (run_id,)).fetchone() is not None


def plain_running(conn, run_id: str) -> bool:
    return conn.execute(conn.sql.nodes.nodes_running_plain, (run_id,)).fetchone() is not None


def compensations(conn, run_id: str) -> list[tuple]:
    """(node_id, compensates, iteration, status, error) of every compensation attempt, oldest first."""
    return conn.execute(conn.sql.nodes.compensations_of_run, (run_id,)).fetchall()
