"""A run's global variables (`ctx.vars`): what a node changed, applied per key, and the
variables a rerun starts from. Changes commit with the node's result."""

from __future__ import annotations

import json
from typing import Mapping

from durableflow.plan import Plan
from durableflow.storage import events, runs
from durableflow.storage.events import dumps, loads

_MISSING = object()

# A completion's change to the variables goes in its event, so that `rerun --from` can replay
# them; a bigger one is left out (that rerun then starts from the final variables).
MAX_EVENT_VARS_BYTES = 64 * 1024


def vars_delta(before: Mapping | None, after: Mapping | None) -> dict | None:
    """What a node did to the variables it was given: {"set": {key: value}, "unset": [keys]}.
    Per key, so that parallel branches writing different keys do not undo each other."""
    if after is None or before is None or after == before:
        return None
    delta: dict = {}
    unset = sorted(before.keys() - after.keys())
    changed = {k: v for k, v in after.items() if before.get(k, _MISSING) != v}
    if changed:
        delta["set"] = changed
    if unset:
        delta["unset"] = unset
    return delta or None


def apply_vars_delta(variables: dict, delta: Mapping) -> None:
    for key in delta.get("unset", ()):
        variables.pop(key, None)
    variables.update(delta.get("set", {}))


def event_delta(delta: dict | None) -> dict | None:
    """The delta as a completion's event records it."""
    if delta and len(dumps(delta)) > MAX_EVENT_VARS_BYTES:
        return {"omitted": f"over {MAX_EVENT_VARS_BYTES:,} bytes"}
    return delta


def merge_variables(conn, run_id: str, delta: dict | None, current_json: str | None) -> dict:
    """Apply the keys a node changed to the run's current variables (others may have moved on)."""
    current = {} if not current_json or current_json == "{}" else loads(current_json)
    if not delta:
        return current
    apply_vars_delta(current, delta)
    runs.set_variables_txn(conn, run_id, dumps(current))
    return current


def variables_kept(conn, plan: Plan, old: Mapping, kept: set[str]
                   ) -> tuple[str | None, dict[str, dict], dict[str, int]]:
    """The variables as the kept nodes left them: the definition's, with the changes of the kept
    nodes' completions replayed in commit order; with each kept node's change and the order the
    nodes completed in. When replaying every completion does not give the old run's final
    variables (recorded before completions kept their changes, or a node completed in several
    iterations), the old run's final variables it is, as before."""
    started_with = dumps(dict(plan.definition.variables))   # as start() stores them
    replay_all, replay_kept = json.loads(started_with), json.loads(started_with)
    deltas: dict[str, dict] = {}
    order: dict[str, int] = {}
    for node_id, data in events.node_completion_events(conn, old["run_id"]):
        order.setdefault(node_id, len(order))
        delta = json.loads(data).get("vars") if data else None
        if isinstance(delta, dict) and delta:
            apply_vars_delta(replay_all, delta)
            if node_id in kept:
                apply_vars_delta(replay_kept, delta)
                if node_id in deltas:
                    replay_all = None   # several iterations: one copy cannot carry them
                    break
                deltas[node_id] = delta
    if replay_all != json.loads(old["variables"] or "{}"):
        return old["variables"], {}, order
    return dumps(replay_kept), deltas, order
