"""The lifecycles of run, node instance, message, lease and circuit breaker, as `transitions` machines.

Each machine is built once, at import. The hot path never drives a model through a machine
(that costs ~70 µs); it asks the built machine whether a trigger is allowed from the stored state,
a dictionary lookup, then applies the change as `UPDATE ... WHERE status = :from` in SQL.
"""

from __future__ import annotations

from transitions import Machine

from durableflow.errors import InvalidTransition


def _machine(name: str, states: list[str], transitions: list[list], initial: str) -> Machine:
    return Machine(
        model=None, states=states, transitions=transitions, initial=initial,
        auto_transitions=False, send_event=False, name=name,
    )


RUN = _machine("run", ["pending", "running", "paused", "completed", "failed", "cancelled", "compensating"], [
    ["start", "pending", "running"],
    ["pause", ["pending", "running"], "paused"],
    ["resume", "paused", "running"],
    ["complete", "running", "completed"],
    ["fail", ["pending", "running", "paused"], "failed"],
    # A failed (or cancelled with compensation) run undoes what it did; a completed child run
    # is undone too when its parent compensates.
    ["compensate", ["running", "paused", "completed"], "compensating"],
    ["compensated", "compensating", "failed"],
    ["cancel", ["pending", "running", "paused", "compensating"], "cancelled"],
], "pending")

NODE = _machine("node", ["pending", "waiting", "running", "completed", "failed", "cancelled", "skipped"], [
    ["start", ["pending", "waiting"], "running"],
    ["release", "running", "pending"],            # claimed, given back before its body started
    ["wait", ["pending", "running"], "waiting"],   # a limit holds it, or a timer/signal parks it
    ["complete", ["running", "waiting"], "completed"],
    ["fail", ["running", "waiting", "pending"], "failed"],
    ["cancel", ["pending", "waiting", "running"], "cancelled"],
    ["skip", "pending", "skipped"],
], "pending")

MESSAGE = _machine("message", ["ready", "leased", "acked", "dead"], [
    ["lease", "ready", "leased"],
    ["ack", "leased", "acked"],
    ["nack", "leased", "ready"],          # retry later: the backoff is the stored visible time
    ["expire", "leased", "ready"],        # lease lost: worker died or overran
    ["bury", ["leased", "ready"], "dead"],
    ["discard", "ready", "acked"],        # its run was cancelled or finished without it
    ["requeue", "dead", "ready"],
], "ready")

LEASE = _machine("lease", ["held", "released", "expired"], [
    ["renew", "held", "held"],
    ["release", "held", "released"],
    ["expire", "held", "expired"],
], "held")

BREAKER = _machine("circuit_breaker", ["closed", "open", "half_open"], [
    ["trip", ["closed", "half_open"], "open"],
    ["probe", "open", "half_open"],
    ["reset", "half_open", "closed"],
    ["close", ["open", "half_open"], "closed"],   # by hand: `durableflow breakers reset KEY`
], "closed")


def target(machine: Machine, trigger: str, source: str) -> str:
    """The state `trigger` leads to from `source`, or InvalidTransition. A table lookup."""
    event = machine.events.get(trigger)
    # Event.transitions is a defaultdict: .get() avoids growing it with every unknown source.
    found = event.transitions.get(source) if event is not None else None
    if not found:
        raise InvalidTransition(f"{machine.name.rstrip(': ')}: cannot '{trigger}' from '{source}'")
    return found[0].dest


def allowed_sources(machine: Machine, trigger: str) -> tuple[str, ...]:
    return tuple(machine.events[trigger].transitions.keys())
