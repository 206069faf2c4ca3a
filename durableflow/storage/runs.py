"""Workflows, runs, node instances, joins, events and workers: SQL helpers and read methods.

`*_txn` helpers run inside the caller's transaction; status changes are checked against the
machines, applied with `WHERE status = :from`, row-count checked, and appended to `events`.
"""

from __future__ import annotations

import json
import socket
from typing import Iterable, NamedTuple

from durableflow import machines
from durableflow.errors import DefinitionError, InvalidTransition, RunNotFound, WorkflowNotFound
from durableflow.storage.events import dumps, event_txn
from durableflow.storage.queries import Q
from durableflow.storage.queue import release_txn

RUN_COLUMNS = ("run_id", "workflow_id", "workflow_version", "parent_run_id", "parent_node_id",
               "status", "inputs", "variables", "outputs", "error", "priority", "idempotency_key",
               "paused_until", "deadline_at", "retries_used", "created_at", "started_at",
               "finished_at")
NODE_COLUMNS = ("id", "run_id", "node_id", "iteration", "attempt", "status", "input", "output",
                "error", "error_type", "port", "waiting_reason", "progress", "progress_message",
                "worker_id", "created_at", "started_at", "finished_at")
EVENT_COLUMNS = ("seq", "run_id", "node_id", "type", "data", "at")


def _event_row(row) -> dict:
    event = dict(zip(EVENT_COLUMNS, row))
    if event["data"] is not None:
        event["data"] = json.loads(event["data"])
    return event


# --- workflows -----------------------------------------------------------------------------------

def register_workflow_txn(conn, workflow_id: str, checksum: str, definition_json: str,
                          source_path: str | None, version: int | None, now: str) -> tuple[int, bool]:
    """Store a definition; returns (version, created). Same content = same version."""
    if version is not None:
        row = conn.execute(Q.workflow_version_get, (workflow_id, version)).fetchone()
        if row is not None:
            if row[0] != checksum:
                raise DefinitionError(
                    f"workflow '{workflow_id}' version {version} is already registered with a "
                    f"different definition; bump `version` or leave it out")
            return version, False
    else:
        row = conn.execute(Q.workflow_by_checksum, (workflow_id, checksum)).fetchone()
        if row is not None:
            return row[0], False
        latest = conn.execute(Q.workflow_latest, (workflow_id,)).fetchone()
        version = (latest[0] + 1) if latest else 1
    conn.execute(Q.workflow_insert, (workflow_id, version, checksum, definition_json, source_path, now))
    event_txn(conn, None, None, "workflow.registered",
              {"workflowId": workflow_id, "version": version, "checksum": checksum}, now)
    return version, True


def get_workflow(conn, workflow_id: str, version: int | None = None) -> dict:
    if version is None:
        row = conn.execute(Q.workflow_latest, (workflow_id,)).fetchone()
        if row is None:
            raise WorkflowNotFound(f"workflow '{workflow_id}' is not registered")
        version = row[0]
    row = conn.execute(Q.workflow_get, (workflow_id, version)).fetchone()
    if row is None:
        raise WorkflowNotFound(f"workflow '{workflow_id}' version {version} is not registered")
    return dict(zip(("workflow_id", "version", "checksum", "definition", "source_path", "created_at"), row))


# --- runs ----------------------------------------------------------------------------------------

def insert_run_txn(conn, *, run_id: str, workflow_id: str, workflow_version: int, inputs: str,
                   variables: str, priority: int, idempotency_key: str | None,
                   deadline_at: str | None, parent_run_id: str | None, parent_node_id: str | None,
                   now: str) -> None:
    conn.execute(Q.run_insert, {
        "run_id": run_id, "workflow_id": workflow_id, "workflow_version": workflow_version,
        "parent_run_id": parent_run_id, "parent_node_id": parent_node_id, "inputs": inputs,
        "variables": variables, "priority": priority, "idempotency_key": idempotency_key,
        "deadline_at": deadline_at, "now": now,
    })
    event_txn(conn, run_id, None, "run.pending",
              {"workflowId": workflow_id, "version": workflow_version}, now)


def run_transition_txn(conn, run_id: str, trigger: str, source: str, now: str, *,
                       outputs: str | None = None, error: str | None = None,
                       paused_until: str | None = None, data: dict | None = None) -> str:
    try:
        to = machines.target(machines.RUN, trigger, source)
    except InvalidTransition:
        raise InvalidTransition(f"run {run_id}: cannot {trigger} a run that is {source}") from None
    finished = now if to in ("completed", "failed", "cancelled") else None
    cur = conn.execute(Q.run_transition, {
        "to": to, "from": source, "run_id": run_id,
        "started_at": now if to == "running" else None, "finished_at": finished,
        "outputs": outputs, "error": error, "paused_until": paused_until,
    })
    if cur.rowcount != 1:
        raise InvalidTransition(f"run {run_id}: cannot '{trigger}': it is no longer {source}")
    payload = {"from": source}
    if error:
        payload["error"] = error
    if data:
        payload.update(data)
    event_txn(conn, run_id, None, "run." + to, payload, now)
    return to


class RunState(NamedTuple):
    status: str
    workflow_id: str
    version: int
    variables: str | None
    retries_used: int
    priority: int


def run_state(conn, run_id: str) -> RunState:
    row = conn.execute(Q.run_state, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"run {run_id} not found")
    return RunState(*row)


def get_run_row(conn, run_id: str) -> dict:
    row = conn.execute(Q.run_get, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"run {run_id} not found")
    return dict(zip(RUN_COLUMNS, row))


# --- node instances ------------------------------------------------------------------------------

def insert_node_txn(conn, run_id: str, node_id: str, iteration: int, attempt: int, status: str,
                    message_id: int | None, input_json: str | None, now: str,
                    data: dict | None = None) -> int:
    cur = conn.execute(Q.node_insert, (run_id, node_id, iteration, attempt, status, message_id,
                                       input_json, now))
    payload = {"id": cur.lastrowid, "attempt": attempt, "iteration": iteration}
    if data:
        payload.update(data)
    conn.execute(Q.event_insert, (run_id, node_id, "node." + status, dumps(payload), now))
    return cur.lastrowid


def node_rows_txn(conn, run_id: str) -> list[dict]:
    return [dict(zip(NODE_COLUMNS, r)) for r in conn.execute(Q.nodes_of_run, (run_id,))]


def copy_node_txn(conn, run_id: str, row: dict, now: str, from_run: str,
                  vars_delta: dict | None = None) -> int:
    """Carry a finished node instance of another run over (rerun --from), as it was recorded,
    with the change it made to the variables."""
    cur = conn.execute(Q.node_copy, {**row, "run_id": run_id, "now": now})
    data = {"id": cur.lastrowid, "copiedFrom": from_run, "instance": row["id"]}
    if vars_delta:
        data["vars"] = vars_delta
    event_txn(conn, run_id, row["node_id"], "node." + row["status"], data, now)
    return cur.lastrowid


def start_node_txn(conn, message_id: int, run_id: str, node_id: str, worker_id: str,
                   now: str) -> tuple[int, int] | None:
    row = conn.execute(Q.node_start, {"now": now, "worker_id": worker_id,
                                      "message_id": message_id}).fetchone()
    if row is None:
        return None
    instance_id, attempt, _ = row
    conn.execute(Q.event_insert, (run_id, node_id, "node.running",
                                  f'{{"id":{instance_id},"attempt":{attempt}}}', now))
    return instance_id, attempt


def finish_node_txn(conn, instance_id: int, run_id: str, node_id: str, trigger: str, source: str,
                    now: str, *, output: str | None = None, error: str | None = None,
                    error_type: str | None = None, port: str | None = None,
                    data: dict | None = None) -> str:
    to = machines.target(machines.NODE, trigger, source)
    cur = conn.execute(Q.node_finish, {"to": to, "from": source, "id": instance_id,
                                       "output": output, "error": error,
                                       "error_type": error_type, "port": port, "now": now})
    if cur.rowcount != 1:
        raise InvalidTransition(f"node instance {instance_id} ({node_id}): cannot '{trigger}', "
                                f"it is no longer {source}")
    if error is None and port is None and not data:
        text = f'{{"id":{instance_id},"from":"{source}"}}'
    else:
        payload = {"id": instance_id, "from": source}
        if error is not None:
            payload.update(error=error, errorType=error_type)
        if port is not None:
            payload["port"] = port
        if data:
            payload.update(data)
        text = dumps(payload)
    conn.execute(Q.event_insert, (run_id, node_id, "node." + to, text, now))
    return to


def release_node_txn(conn, instance_id: int, run_id: str, node_id: str, now: str) -> None:
    """A claimed attempt whose body never started goes back to pending, attempt unchanged."""
    machines.target(machines.NODE, "release", "running")
    if conn.execute(Q.node_release, (instance_id,)).rowcount != 1:
        raise InvalidTransition(f"node instance {instance_id}: cannot 'release', it is not running")
    event_txn(conn, run_id, node_id, "node.pending", {"id": instance_id, "from": "running", "released": True}, now)


def wait_node_txn(conn, instance_id: int, run_id: str, node_id: str, source: str, reason: str,
                  now: str) -> None:
    machines.target(machines.NODE, "wait", source)
    if conn.execute(Q.node_wait, {"id": instance_id, "from": source, "reason": reason}).rowcount != 1:
        raise InvalidTransition(f"node instance {instance_id}: cannot 'wait', it is no longer {source}")
    event_txn(conn, run_id, node_id, "node.waiting", {"id": instance_id, "from": source, "reason": reason}, now)


# --- workers -------------------------------------------------------------------------------------

def register_worker_txn(conn, worker_id: str, pid: int, pid_started: str | None, concurrency: int,
                        now: str) -> None:
    conn.execute(Q.worker_register, (worker_id, socket.gethostname(), pid, pid_started, concurrency, now, now))


# --- read methods --------------------------------------------------------------------------------

class RunOps:
    """Mixed into Store: reads over runs, nodes, events and workflows."""

    def get_run_row(self, run_id: str) -> dict:
        return self.read(get_run_row, run_id)

    def node_rows(self, run_id: str) -> list[dict]:
        return self.read(node_rows_txn, run_id)

    def run_snapshot(self, run_id: str) -> tuple[dict, list[dict]]:
        """The run row and its node rows, read in one snapshot."""
        def txn(c):
            return get_run_row(c, run_id), node_rows_txn(c, run_id)
        return self.read(txn)

    def list_runs(self, status: str | None = None, workflow_id: str | None = None, limit: int = 100) -> list[dict]:
        cols = ("run_id", "workflow_id", "workflow_version", "status", "created_at", "started_at",
                "finished_at", "error")
        return self.read(lambda c: [dict(zip(cols, r)) for r in c.execute(
            Q.runs_list, {"status": status, "workflow_id": workflow_id, "limit": limit})])

    def events_after(self, after: int = 0, run_id: str | None = None, limit: int = 1000) -> list[dict]:
        def txn(c):
            if run_id is None:
                rows = c.execute(Q.events_after, {"after": after, "limit": limit})
            else:
                rows = c.execute(Q.events_of_run_after, {"run_id": run_id, "after": after, "limit": limit})
            return [_event_row(r) for r in rows]
        return self.read(txn)

    def last_event_seq(self) -> int:
        return self.read(lambda c: c.execute(Q.last_event_seq).fetchone()[0])

    def get_workflow(self, workflow_id: str, version: int | None = None) -> dict:
        return self.read(get_workflow, workflow_id, version)

    def list_workflows(self) -> list[dict]:
        cols = ("workflow_id", "version", "checksum", "source_path", "created_at", "runs")
        return self.read(lambda c: [dict(zip(cols, r)) for r in c.execute(Q.workflows_list)])

    def stats(self) -> dict:
        """Counts over the whole database, read in one snapshot."""
        def txn(c):
            workflows, versions = c.execute(Q.stats_workflows).fetchone()
            return {
                "runs": dict(c.execute(Q.stats_runs).fetchall()),
                "node_instances": dict(c.execute(Q.stats_nodes).fetchall()),
                "messages": dict(c.execute(Q.queue_counts).fetchall()),
                "dead_letters": c.execute(Q.stats_dead_letters).fetchone()[0],
                "events": c.execute(Q.stats_events).fetchone()[0],
                "workers_running": c.execute(Q.stats_workers).fetchone()[0],
                "workflows": workflows, "workflow_versions": versions,
            }
        return self.read(txn)

    def next_run_due_at(self) -> str | None:
        """When upkeep next has something to do for a run (a pause ends, a deadline passes)."""
        return self.read(lambda c: c.execute(Q.runs_next_due).fetchone()[0])

    def run_statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        ids = list(run_ids)
        if not ids:
            return {}
        return self.read(lambda c: dict(c.execute(Q.runs_status_of, (json.dumps(ids),)).fetchall()))


# --- joins, holds and run-wide message changes ----------------------------------------------------

def join_get(conn, run_id: str, node_id: str, iteration: int) -> tuple[int, int, bool]:
    row = conn.execute(Q.join_get, (run_id, node_id, iteration)).fetchone()
    if row is None:
        return 0, 0, False
    return row[0], row[1], bool(row[2])


def join_put(conn, run_id: str, node_id: str, iteration: int, resolved: int, delivered: int,
             fired: bool) -> None:
    conn.execute(Q.join_put, {"run_id": run_id, "node_id": node_id, "iteration": iteration,
                              "resolved": resolved, "delivered": delivered,
                              "fired": 1 if fired else 0})


def join_input_put(conn, run_id: str, node_id: str, iteration: int, key: str, payload_json: str) -> None:
    conn.execute(Q.join_input_put, (run_id, node_id, iteration, key, payload_json))


def join_inputs_get(conn, run_id: str, node_id: str, iteration: int) -> list[tuple[str, str]]:
    """(key, payload JSON) of the deliveries to a join, in delivery order."""
    return conn.execute(Q.join_inputs_get, (run_id, node_id, iteration)).fetchall()


def unfired_join(conn, run_id: str) -> tuple[str, int, int] | None:
    """A join of the run that holds deliveries but never ran or skipped its node."""
    return conn.execute(Q.join_unfired, (run_id,)).fetchone()


def open_message_count(conn, run_id: str) -> int:
    return conn.execute(Q.run_open_messages, (run_id,)).fetchone()[0]


def running_count(conn, run_id: str) -> int:
    return conn.execute(Q.run_running_count, (run_id,)).fetchone()[0]


def completed_outputs(conn, run_id: str) -> list[tuple[str, str]]:
    return conn.execute(Q.run_completed_outputs, (run_id,)).fetchall()


def set_variables_txn(conn, run_id: str, variables_json: str) -> None:
    conn.execute(Q.run_variables_set, (variables_json, run_id))


def count_retry_txn(conn, run_id: str) -> None:
    conn.execute(Q.run_retry_used, (run_id,))


def hold_run_messages_txn(conn, run_id: str, held: bool) -> int:
    return conn.execute(Q.messages_hold_run, {"run_id": run_id, "held": 1 if held else 0}).rowcount


def insert_signal_txn(conn, run_id: str, name: str, payload_json: str, now: str) -> int:
    cur = conn.execute(Q.signal_insert, (run_id, name, payload_json, now))
    conn.execute(Q.event_insert, (run_id, None, "signal.received",
                                  dumps({"id": cur.lastrowid, "name": name}), now))
    return cur.lastrowid


def take_signal_txn(conn, run_id: str, name: str, instance_id: int) -> str | None:
    """The payload (JSON text) of the oldest signal `name` not yet taken, now taken; or None."""
    row = conn.execute(Q.signal_take, {"run_id": run_id, "name": name, "instance": instance_id}).fetchone()
    return None if row is None else (row[0] if row[0] is not None else "null")


def wake_waiting_txn(conn, run_id: str, now: str) -> int:
    return conn.execute(Q.messages_wake_waiting, {"run_id": run_id, "now": now}).rowcount


def parent_of(conn, run_id: str) -> str | None:
    row = conn.execute(Q.run_parent, (run_id,)).fetchone()
    return row[0] if row else None


def active_children(conn, run_id: str) -> list[tuple[str, str]]:
    return conn.execute(Q.runs_active_children, (run_id,)).fetchall()


def set_message_payload_txn(conn, message_id: int, payload_json: str) -> None:
    conn.execute(Q.message_set_payload, (payload_json, message_id))


def release_throttled_txn(conn, run_id: str) -> int:
    return conn.execute(Q.messages_release_throttled, (run_id,)).rowcount


def throttle_message_txn(conn, message_id: int, token: str, run_id: str, node_id: str, now: str) -> None:
    """Give a claimed message back, parked until a running node of its run finishes."""
    release_txn(conn, message_id, token)
    machines.target(machines.MESSAGE, "nack", "leased")
    if conn.execute(Q.message_throttle, (message_id,)).rowcount != 1:
        raise InvalidTransition(f"message {message_id}: cannot 'nack', it is not leased")
    event_txn(conn, run_id, node_id, "message.ready", {"id": message_id, "from": "leased", "throttled": True}, now)


def discard_run_messages_txn(conn, run_id: str, now: str) -> list[tuple[int, str]]:
    """Ack every ready message of a run that will not run (cancelled or failed run)."""
    machines.target(machines.MESSAGE, "discard", "ready")
    rows = conn.execute(Q.run_messages_discard, {"run_id": run_id, "now": now}).fetchall()
    conn.executemany(Q.event_insert, [(run_id, nid, "message.acked", f'{{"id":{mid},"from":"ready","discarded":true}}', now)
                                      for mid, nid in rows])
    return rows


def open_nodes(conn, run_id: str) -> list[tuple[int, str, str, int | None]]:
    return conn.execute(Q.nodes_open_of_run, (run_id,)).fetchall()


def open_node_of_message(conn, message_id: int):
    return conn.execute(Q.node_open_by_message, (message_id,)).fetchone()


def last_attempt(conn, run_id: str, node_id: str, iteration: int) -> int:
    return conn.execute(Q.node_last_attempt, (run_id, node_id, iteration)).fetchone()[0] or 0


def run_id_for_key(conn, key: str) -> str | None:
    row = conn.execute(Q.run_by_idempotency_key, (key,)).fetchone()
    return row[0] if row else None


def due_resumes(conn, now: str) -> list[str]:
    return [r[0] for r in conn.execute(Q.runs_due_resume, (now,))]


def past_deadline(conn, now: str) -> list[str]:
    return [r[0] for r in conn.execute(Q.runs_past_deadline, (now,))]


def worker_heartbeat_txn(conn, worker_id: str, now: str) -> None:
    conn.execute(Q.worker_heartbeat, (now, worker_id))


def worker_stopped_txn(conn, worker_id: str, now: str) -> None:
    conn.execute(Q.worker_stopped, (now, worker_id))


def live_workers_on_host(conn, host: str) -> list[tuple[str, int, str | None]]:
    return conn.execute(Q.workers_live_on_host, (host,)).fetchall()


def mark_worker_gone_txn(conn, worker_id: str, now: str) -> bool:
    return conn.execute(Q.workers_mark_gone, (now, worker_id)).rowcount == 1


def progress_txn(conn, instance_id: int, run_id: str, node_id: str, percent: float,
                 message: str | None, now: str) -> None:
    if conn.execute(Q.node_progress, {"id": instance_id, "percent": percent, "message": message}).rowcount:
        event_txn(conn, run_id, node_id, "node.progress",
                  {"id": instance_id, "percent": percent, "message": message}, now)


def node_completion_events(conn, run_id: str) -> list[tuple[str, str | None]]:
    return conn.execute(Q.node_completion_events, (run_id,)).fetchall()


def pause_until_resumed_txn(conn, run_id: str, now: str) -> None:
    if conn.execute(Q.run_pause_until_resumed, (run_id,)).rowcount:
        event_txn(conn, run_id, None, "run.pause_extended", {"until": None}, now)
