"""Reads and deletes across a run's tables: export/import of a run tree, and pruning of finished
runs.

Export reads rows as dicts, per table, by the columns `database.table_columns` names (the same
on both databases). Import writes with plain inserts inside the caller's transaction, so an
import is all or nothing.
"""

from __future__ import annotations

import json
from typing import Callable

from durableflow.errors import DefinitionError, InvalidTransition, RunNotFound
from durableflow.storage import queue, runs, workflows
from durableflow.storage.events import event_txn, last_event_seq
from durableflow.storage.export_check import ROW_TABLES, check_export
from durableflow.storage.rows import insert_rows

FORMAT = "durableflow.run-export"
FORMAT_VERSION = 1

# Tables that hang off a run, in an order that satisfies foreign keys on insert.
RUN_TABLES = ("node_instances", "messages", "dead_letters", "joins", "join_inputs", "signals", "loop_items",
              "reruns", "events")


def run_tree(conn, run_id: str) -> list[str]:
    """The run and all its descendants (subflows, loop bodies), parents first."""
    return [r[0] for r in conn.execute(conn.sql.history.run_tree, (run_id,))]


def run_tree_nodes(conn, run_id: str) -> tuple[list[tuple], list[tuple]]:
    """The run and its descendants as (run_id, parent_run_id, parent_node_id, workflow_id,
    workflow_version), parents first, and their node attempts as (run_id, node_id, status),
    oldest first. Empty lists for a run that does not exist."""
    tree = [tuple(r) for r in conn.execute(conn.sql.history.run_tree_runs, (run_id,))]
    nodes = [tuple(r) for r in conn.execute(conn.sql.history.run_tree_nodes, (run_id,))] if tree else []
    return tree, nodes


def _rows(conn, table: str, where: str, params, order_by: str | None = None) -> list[dict]:
    """Rows of `table` as dicts of its columns (as table_columns names them: PostgreSQL's
    runs.rowid, SQLite's hidden rowid stay out). `table`, `where` and `order_by` are ours."""
    cols = [r[0] for r in conn.execute(conn.sql.database.table_columns, {"table": table})]
    order = f" ORDER BY {order_by}" if order_by else ""
    cur = conn.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {where}{order}", params)
    return [dict(zip(cols, row)) for row in cur]


def export_txn(conn, run_id: str) -> dict:
    ids = run_tree(conn, run_id)
    if not ids:
        raise RunNotFound(f"run {run_id} not found")
    marks = ",".join("?" * len(ids))
    runs = _rows(conn, "runs", f"run_id IN ({marks})", ids, "created_at")
    versions = {(r["workflow_id"], r["workflow_version"]) for r in runs}
    workflows = [w for (wid, v) in sorted(versions)
                 for w in _rows(conn, "workflows", "workflow_id = ? AND version = ?", [wid, v])]
    tables = {}
    for table in RUN_TABLES:
        if table == "dead_letters":
            where = f"message_id IN (SELECT id FROM messages WHERE run_id IN ({marks}))"
        else:
            where = f"run_id IN ({marks})"
        # Insertion order: their ids (SQLite's rowid), the events' seq.
        order = "seq" if table == "events" else ("id" if table not in ("joins", "join_inputs", "loop_items", "reruns") else None)
        tables[table] = _rows(conn, table, where, ids, order)
    return {"format": FORMAT, "formatVersion": FORMAT_VERSION, "runId": run_id,
            "workflows": workflows, "runs": runs, **tables}


def import_txn(conn, doc: dict, now: str, check_definition: Callable[[str], None] | None = None) -> str:
    """Insert an exported run tree. Everything is checked before the first row goes in;
    `check_definition(json_text)` lets the engine confirm each workflow still loads."""
    conn.run_states = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DefinitionError("not a durableflow run export (missing format marker)")
    if doc.get("formatVersion") != FORMAT_VERSION:
        raise DefinitionError(f"run export format version {doc.get('formatVersion')} is not supported")
    columns = {t: {r[0] for r in conn.execute(conn.sql.database.table_columns, {"table": t})} for t in ROW_TABLES}
    check_export(doc, columns)
    if check_definition is not None:
        for i, w in enumerate(doc["workflows"]):
            try:
                check_definition(w["definition"])
            except DefinitionError as exc:
                raise DefinitionError(f"workflows[{i}].definition: {exc.message}") from None
    for w in doc["workflows"]:
        checksum = workflows.checksum_of(conn, w["workflow_id"], w["version"])
        if checksum is None:
            insert_rows(conn, "workflows", [w])
        elif checksum != w["checksum"]:
            raise InvalidTransition(f"workflow '{w['workflow_id']}' version {w['version']} exists here "
                                    f"with a different definition; import refused")
    for r in doc["runs"]:
        if runs.run_exists(conn, r["run_id"]):
            raise InvalidTransition(f"run {r['run_id']} already exists in this database; import refused")
        if r.get("idempotency_key") and runs.run_id_for_key(conn, r["idempotency_key"]):
            raise InvalidTransition(f"idempotency key {r['idempotency_key']!r} is taken here; import refused")
    insert_rows(conn, "runs", doc["runs"])
    # Row ids are local to a database: messages and node instances get new ids, links follow.
    message_ids = {}
    for m in doc["messages"]:
        old = m["id"]
        row = {k: v for k, v in m.items() if k != "id"}
        if row["status"] == "leased":  # its lease stayed behind: deliverable again
            row["status"] = "ready"
        message_ids[old] = queue.import_message_txn(conn, row, now)
    nodes = []
    for n in doc["node_instances"]:
        row = {k: v for k, v in n.items() if k != "id"}
        row["message_id"] = message_ids.get(row["message_id"])
        if row["status"] == "running":  # interrupted by the move: that attempt is lost
            row.update(status="failed", error="interrupted: the run was exported while this ran",
                       error_type="WorkerLost", finished_at=now)
        nodes.append(row)
    insert_rows(conn, "node_instances", nodes)
    dead = [{**{k: v for k, v in d.items() if k != "id"}, "message_id": message_ids[d["message_id"]]}
            for d in doc["dead_letters"]]
    queue.import_dead_letters_txn(conn, dead)
    for table in ("joins", "join_inputs", "signals", "loop_items", "reruns"):
        insert_rows(conn, table, [{k: v for k, v in row.items() if k != "id"} for row in doc[table]])
    insert_rows(conn, "events", [{k: v for k, v in e.items() if k != "seq"} for e in doc["events"]])
    event_txn(conn, doc["runId"], None, "run.imported", {"runs": len(doc["runs"])}, now)
    return doc["runId"]


def prune_txn(conn, before: str, now: str, limit: int = 500) -> int:
    """Delete up to `limit` top-level runs finished before `before`, with all that is theirs."""
    conn.run_states = None
    roots = [r[0] for r in conn.execute(conn.sql.history.runs_prunable, (before, limit))]
    if not roots:
        return 0
    newest = last_event_seq(conn)
    for root in roots:
        conn.execute(conn.sql.history.events_delete_of_runs, {"run_ids": json.dumps(run_tree(conn, root))})
        conn.execute(conn.sql.history.run_delete, {"run_id": root})
    # events.seq has no AUTOINCREMENT (it would cost a page per transaction), so the next number
    # is max(seq) + 1. This event takes the number after the old maximum: numbers never go back,
    # and a tail that already read the pruned ones misses nothing later.
    event_txn(conn, None, None, "history.pruned", {"runs": roots, "before": before}, now, seq=newest + 1)
    return len(roots)


def dumps_export(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)
