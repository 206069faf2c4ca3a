"""The rows the store hands up and takes in, as plain named tuples. No I/O.

They sit below both the storage layer and the engine, so that the engine's own types (Task,
Outcome) need nothing from storage, and storage needs nothing from the engine.
"""

from __future__ import annotations

from typing import NamedTuple


class NewMessage(NamedTuple):
    """A message to enqueue. A NamedTuple, not a frozen dataclass: the engine builds one per node
    and a frozen dataclass's __init__ cost more than the INSERT's Python side."""

    kind: str
    payload: str | None = None            # JSON text
    run_id: str | None = None
    target_node_id: str | None = None
    iteration: int = 0
    priority: int = 1
    visible_at: float | None = None       # epoch seconds; None = now
    held: bool = False
    max_attempts: int = 5


class Claimed(NamedTuple):
    """A message leased to a worker; `token` fences every report about it."""

    id: int
    run_id: str | None
    kind: str
    target_node_id: str | None
    iteration: int
    payload: str | None
    priority: int
    attempts: int
    max_attempts: int
    token: str
    worker_id: str
    expires_at: float


class Reclaimed(NamedTuple):
    """A delivery whose lease was taken back (its worker died or overran)."""

    message_id: int
    worker_id: str
    run_id: str | None
    target_node_id: str | None
    iteration: int
    dead: bool                            # True: buried in dead_letters; False: ready again
    deliveries: int = 0                   # deliveries lost so far, this one included


class RunState(NamedTuple):
    """What the engine reads of a run inside a transaction before it decides anything."""

    status: str
    workflow_id: str
    version: int
    variables: str | None
    retries_used: int
    priority: int
    scheduled_at: str | None = None      # the fire time a scheduled run stands for
