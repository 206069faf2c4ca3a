"""emit(): one run per workflow whose latest version has an Event entry node for the name, the
payload as its inputs, all in one transaction (all start or none)."""

from __future__ import annotations

from typing import Any, Callable

from durableflow.clock import iso
from durableflow.model import WorkflowDef
from durableflow.plan import Plans
from durableflow.storage import schedules, workflows
from durableflow.execution.runs import RunLifecycle


def emit_txn(conn, run_lifecycle: RunLifecycle, plans: Plans, new_run_id: Callable[[], str],
             name: str, payload: Any, dedupe_key: str | None, now: float,
             check: Callable[[WorkflowDef, Any], None]) -> list[dict]:
    """Start the runs; `check(definition, payload)` raises for a payload a workflow refuses (its
    inputsSchema), which rolls every start of this emit back. Returns, per listening workflow,
    {"workflow_id", "run_id", "started"}: started False when its dedupe key had started one."""
    by_workflow: dict[str, list[str]] = {}
    for workflow_id, node_id in schedules.listeners(conn, name):
        by_workflow.setdefault(workflow_id, []).append(node_id)
    out = []
    for workflow_id, nodes in by_workflow.items():
        if dedupe_key is not None:
            earlier = schedules.deduped_run(conn, workflow_id, dedupe_key)
            if earlier is not None:
                out.append({"workflow_id": workflow_id, "run_id": earlier, "started": False})
                continue
        version = workflows.get_workflow(conn, workflow_id)["version"]
        plan = plans.get(workflow_id, version, conn)
        check(plan.definition, payload)
        run_id = new_run_id()
        run_lifecycle.start_run(conn, plan, run_id, payload, now, entries=tuple(nodes))
        if dedupe_key is not None:
            schedules.record_dedupe_txn(conn, workflow_id, dedupe_key, run_id, iso(now))
        out.append({"workflow_id": workflow_id, "run_id": run_id, "started": True})
    return out
