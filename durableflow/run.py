"""Run and NodeInstance: read-only snapshots of a run, as users see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from durableflow.clock import parse_iso
from durableflow.plan import Plan
from durableflow.storage.events import loads

_DONE = ("completed", "failed", "skipped", "cancelled")


def _load(text: str | None) -> Any:
    return None if text is None else loads(text)


@dataclass(frozen=True)
class NodeInstance:
    id: int
    node_id: str
    iteration: int
    attempt: int
    status: str
    input: Any
    output: Any
    error: str | None
    error_type: str | None
    port: str | None
    waiting_reason: str | None
    progress: float | None
    progress_message: str | None
    worker_id: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    compensates: str | None = None      # a compensation's attempt: the node it undoes

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return parse_iso(self.finished_at) - parse_iso(self.started_at)
        return None


@dataclass(frozen=True)
class Run:
    run_id: str
    workflow_id: str
    workflow_version: int
    status: str
    inputs: Any
    outputs: dict | None
    error: str | None
    variables: dict
    parent_run_id: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    paused_until: str | None
    nodes: tuple = ()                     # every attempt, oldest first
    progress: dict = field(default_factory=dict)
    rerun_of: dict | None = None          # {"run_id", "from", "fresh"}: the run it repeats
    scheduled_at: str | None = None       # the fire time a scheduled run stands for

    def node(self, node_id: str, iteration: int = 0) -> NodeInstance | None:
        """The latest attempt of a node (None if it has not been reached)."""
        found = None
        for n in self.nodes:
            if n.node_id == node_id and n.iteration == iteration:
                found = n
        return found

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


def latest_by_node(nodes) -> dict[tuple[str, int], Any]:
    latest: dict[tuple[str, int], Any] = {}
    for n in nodes:
        latest[(n.node_id, n.iteration)] = n
    return latest


def compute_progress(plan: Plan | None, nodes, started_at: str | None, now: float,
                     finished: bool = False, paused: bool = False) -> dict:
    """Counts by status over the workflow's nodes (latest attempt of each), percent and ETA.

    Nodes a finished run never reached will not run: they count as `unreached`, not pending, so
    a run that failed early reads "1/3 nodes done, 1 failed, 2 never reached". No ETA while a
    node waits (for a timer or a signal), nor while the run is paused: the time so far says
    nothing about that wait, and an ETA from it would grow for as long as the pause lasts.
    """
    counts = {s: 0 for s in ("pending", "waiting", "running", *_DONE, "unreached")}
    seen: set[str] = set()
    for (node_id, _it), n in latest_by_node(nodes).items():
        counts[n.status] += 1
        seen.add(node_id)
    if plan is not None:
        never = sum(1 for nid in plan.nodes if nid not in seen and nid not in plan.helpers)
        counts["unreached" if finished else "pending"] += never
    total = sum(counts.values())
    done = sum(counts[s] for s in _DONE)
    percent = round(100.0 * done / total, 1) if total else 100.0
    eta = None
    if counts["waiting"] or (paused and not finished):
        pass
    elif started_at and 0 < done < total and not finished:
        elapsed = now - parse_iso(started_at)
        eta = round(elapsed / done * (total - done), 3)
    elif total and (done == total or finished):
        eta = 0.0
    return {"total": total, **counts, "percent": percent, "eta_seconds": eta}


def figures_progress(figures: dict | None) -> dict:
    """The run's figures as run.progress reports them (None where there is no figure yet: a run
    not started has no time, one with no completed attempt no average). The queue counts the
    run's messages: ready (claimable now), delayed (due later: a Wait's timer, a retry's
    backoff, a signal or child runs waited for), held (a paused run, maxConcurrency, a
    concurrency key's slot) and leased (in a worker's hands); its depth is all but the leased."""
    f = figures or {}
    queue = {k: f.get(k) for k in ("ready", "delayed", "held", "leased")}
    depth = None if figures is None else f["ready"] + f["delayed"] + f["held"]
    return {"elapsed_seconds": f.get("total_s"), "avg_node_seconds": f.get("avg_node_s"),
            "retries_used": f.get("retries_used"), "queue_depth": depth,
            **{f"queue_{k}": v for k, v in queue.items()}}


def build_run(row: dict, node_rows: list[dict], plan: Plan | None, now: float,
              figures: dict | None = None) -> Run:
    nodes = tuple(
        NodeInstance(
            id=r["id"], node_id=r["node_id"], iteration=r["iteration"], attempt=r["attempt"],
            status=r["status"], input=_load(r["input"]), output=_load(r["output"]),
            error=r["error"], error_type=r["error_type"], port=r["port"],
            waiting_reason=r["waiting_reason"], progress=r["progress"],
            progress_message=r["progress_message"], worker_id=r["worker_id"],
            created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"],
            compensates=r.get("compensates"),
        )
        for r in node_rows
    )
    return Run(
        run_id=row["run_id"], workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"], status=row["status"],
        inputs=_load(row["inputs"]), outputs=_load(row["outputs"]), error=row["error"],
        variables=_load(row["variables"]) or {}, parent_run_id=row["parent_run_id"],
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], paused_until=row["paused_until"], nodes=nodes,
        rerun_of=row.get("rerun_of"), scheduled_at=row.get("scheduled_at"),
        progress={**compute_progress(plan, nodes, row["started_at"], now,
                                     finished=row["status"] in ("completed", "failed", "cancelled"),
                                     paused=row["status"] == "paused"),
                  **figures_progress(figures)},
    )
