"""What the engine hands around: a claimed node attempt (Task), what its body produced (Outcome)
and how a run's new messages are queued (EnqueueAs). No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from durableflow.plan import Plan
from durableflow.records import Claimed, RunState

ACTIVE = ("running", "paused")
# A node waiting for a signal or for child runs looks again this often by itself, in case the
# wake-up that should have come was lost.
SIGNAL_RECHECK = 24 * 3600.0


class EnqueueAs(NamedTuple):
    """How the messages a run sends now are enqueued."""

    held: bool          # the run is paused: not claimable until it resumes
    priority: int       # the run's priority (2 high, 1 normal, 0 low)

    @classmethod
    def of(cls, state: RunState) -> "EnqueueAs":
        return cls(state.status == "paused", state.priority)


@dataclass
class Task:
    """A claimed node attempt, handed to a runtime."""

    message: Claimed
    plan: Plan
    instance_id: int
    attempt: int
    input: Any
    inputs: dict
    variables: dict
    retries_used: int
    cancel_event: Any = None
    scheduled_at: str | None = None               # the fire time its run stands for (a schedule's)
    limit_key: str | None = None                  # the concurrency key whose slot it holds
    breaker_key: str | None = None                # the circuit breaker its call counts for
    breaker_closed: bool = False                  # ... which was closed when it was let through
    payload: dict = field(default_factory=dict)   # the message as delivered (input, inputs, ...)
    # Claimed to run and be recorded in the claiming transaction: its row's start is not written
    # yet; (the row's status then, when it started, the worker). See nodes.defer_start_txn.
    deferred_start: tuple[str, str, str] | None = None
    # Queued and taken in the claiming transaction, its rows not written yet (storage.handoff):
    # until they are, message.id and instance_id are None.
    offer: Any = None
    input_json: str | None = None   # the input's JSON, when the claim had it as text (an offer's)

    @property
    def run_id(self) -> str:
        return self.message.run_id

    @property
    def node_id(self) -> str:
        return self.message.target_node_id

    @property
    def node(self):
        return self.plan.nodes[self.message.target_node_id]


@dataclass
class Outcome:
    """What a node body produced."""

    ok: bool
    output: Any = None
    output_json: str | None = None
    port: str | None = None
    variables: dict | None = None        # the body's vars after it ran (None: untouched)
    error: str | None = None
    error_type: str | None = None
    error_types: tuple = ()              # error_type and its bases' names, for retryOn
    exit_code: int | None = None
    cancelled: bool = False
    retryable: bool = True               # False: fail for good, whatever the retry policy
    park_until: float | None = None      # a Wait: deliver this node again at that moment
    await_signal: tuple | None = None    # a WaitForSignal: (name, deadline or None)
    subflow: Any = None                  # a Subflow: builtins.Subflow (start a child, or look at it)
