"""Checks a run export before any row of it is inserted.

An export is a file a user may have edited or truncated. Whatever SQLite would refuse half-way
(an unknown column, a broken reference, a status outside a lifecycle) and whatever it would take
but nothing could read back later (JSON columns that are not JSON) is refused here, with one line
that names the table, the row and the field.
"""

from __future__ import annotations

import json

from durableflow.errors import DefinitionError
from durableflow.model import MessageStatus, NodeStatus, RunStatus

ROW_TABLES = ("workflows", "runs", "node_instances", "messages", "dead_letters", "joins",
              "join_inputs", "signals", "loop_items", "reruns", "events")
# Tables an export made by an older durableflow does not have: missing means no rows.
LATER_TABLES = ("loop_items", "reruns")
# Columns that hold JSON text (NULL allowed).
JSON_COLUMNS = {
    "workflows": ("definition",), "runs": ("inputs", "variables", "outputs"),
    "node_instances": ("input", "output"), "messages": ("payload",),
    "dead_letters": ("payload",), "join_inputs": ("payload",), "signals": ("payload",),
    "events": ("data",), "loop_items": ("item", "output"),
}
STATUSES = {"runs": {s.value for s in RunStatus}, "node_instances": {s.value for s in NodeStatus},
            "messages": {s.value for s in MessageStatus}}
# Each row of these names its run in run_id, which must be one of the export's runs.
RUN_OWNED = ("node_instances", "messages", "joins", "join_inputs", "signals", "loop_items", "reruns", "events")


def check_export(doc: dict, columns: dict[str, set[str]]) -> None:
    """Raise DefinitionError naming the first problem. `columns`: table -> its column names."""
    for table in LATER_TABLES:
        doc.setdefault(table, [])
    for table in ROW_TABLES:
        rows = doc.get(table)
        if not isinstance(rows, list):
            raise DefinitionError(f"{table}: missing, or not a list of rows")
        for i, row in enumerate(rows):
            _check_row(table, i, row, columns[table])
    runs = doc["runs"]
    run_ids = [r.get("run_id") for r in runs]
    if doc.get("runId") not in run_ids:
        raise DefinitionError(f"runId: {doc.get('runId')!r} is not among the exported runs")
    known = set(run_ids)
    for i, r in enumerate(runs):
        if r.get("parent_run_id") is not None and r["parent_run_id"] not in known:
            raise DefinitionError(f"runs[{i}].parent_run_id: run {r['parent_run_id']!r} is not in the export")
    versions = {(w.get("workflow_id"), w.get("version")) for w in doc["workflows"]}
    for i, r in enumerate(runs):
        if (r.get("workflow_id"), r.get("workflow_version")) not in versions:
            raise DefinitionError(f"runs[{i}]: workflow {r.get('workflow_id')!r} v{r.get('workflow_version')} "
                                  f"is not in the export")
    for table in RUN_OWNED:
        for i, row in enumerate(doc[table]):
            if row.get("run_id") not in known:
                raise DefinitionError(f"{table}[{i}].run_id: run {row.get('run_id')!r} is not in the export")
    message_ids = {m.get("id") for m in doc["messages"]}
    for i, d in enumerate(doc["dead_letters"]):
        if d.get("message_id") not in message_ids:
            raise DefinitionError(f"dead_letters[{i}].message_id: message {d.get('message_id')!r} "
                                  f"is not in the export")


def _check_row(table: str, i: int, row: object, allowed: set[str]) -> None:
    where = f"{table}[{i}]"
    if not isinstance(row, dict):
        raise DefinitionError(f"{where}: not an object")
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise DefinitionError(f"{where}: unknown field {unknown[0]!r}")
    for key, value in row.items():
        if value is not None and not isinstance(value, (str, int, float)):
            raise DefinitionError(f"{where}.{key}: {type(value).__name__} where a text or number belongs")
    for key in JSON_COLUMNS.get(table, ()):
        text = row.get(key)
        if text is None:
            continue
        if not isinstance(text, str):
            raise DefinitionError(f"{where}.{key}: JSON text expected, got {type(text).__name__}")
        try:
            json.loads(text)
        except ValueError as exc:
            raise DefinitionError(f"{where}.{key}: not JSON ({exc})") from None
    if table in STATUSES and row.get("status") not in STATUSES[table]:
        raise DefinitionError(f"{where}.status: {row.get('status')!r} is not one of "
                              f"{', '.join(sorted(STATUSES[table]))}")
