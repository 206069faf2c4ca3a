"""Plain, immutable model objects for workflow definitions, and the status words. No I/O here.

Definitions are deep-frozen: mappings become read-only `FrozenDict`s and lists become tuples,
so a loaded definition can be shared between worker threads without copying.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


class FrozenDict(dict):
    """A dict that refuses changes after construction (hashable by identity is not needed)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("definition objects are immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


def freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of freeze: plain dicts and lists, ready for json/yaml."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


# --- status words (SPEC section 4) ---------------------------------------------------------

class RunStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATING = "compensating"


class NodeStatus(str, enum.Enum):
    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class MessageStatus(str, enum.Enum):
    READY = "ready"
    LEASED = "leased"
    ACKED = "acked"
    DEAD = "dead"


class TriggerType(str, enum.Enum):
    COMPLETE = "Complete"
    FAIL = "Fail"
    ANY = "Any"


TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "cancelled"})
TERMINAL_NODE_STATUSES = frozenset({"completed", "failed", "cancelled", "skipped"})

RUNTIME_TYPES = (
    "Python", "Shell", "PowerShell", "CSharpScript", "IfElse", "Switch", "ForEach", "While",
    "Subflow", "Wait", "WaitForSignal", "Timer", "Manual", "Event", "Noop",
)
TRIGGER_RUNTIMES = frozenset({"Timer", "Manual", "Event"})
PRIORITIES = {"high": 2, "normal": 1, "low": 0}


# --- policies (SPEC section 3) ----------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    strategy: str = "none"            # none | fixed | linear | exponential
    max_attempts: int = 1             # total attempts, the first included
    initial_delay: float = 1.0        # seconds
    max_delay: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.25              # fraction of the delay, +/-
    retry_on: tuple = ()              # error type names (str) or exit codes (int); empty = any


@dataclass(frozen=True)
class NodeDef:
    node_id: str
    runtime_type: str
    name: str | None = None
    # Python / Shell / PowerShell / CSharpScript bodies
    script: str | None = None
    script_path: Path | None = None   # absolute: resolved against the definition file's folder
    callable: str | None = None       # "pkg.mod:func"
    command: tuple | None = None      # argv
    shell: bool = False
    output_format: str = "text"       # text | json
    isolation: str = "thread"         # thread | process
    env: FrozenDict = field(default_factory=FrozenDict)
    working_dir: Path | None = None
    max_stream_bytes: int | None = None   # stdout/stderr bytes kept; None: the engine's setting
    # policies
    timeout: float | None = None      # seconds
    retry: RetryPolicy | None = None
    priority: str = "normal"
    join_mode: str = "all"            # all | any | each
    inputs: FrozenDict | None = None  # literal values or "${ expr }"
    compensation_node_id: str | None = None
    fallback_node_id: str | None = None
    # everything type-specific (condition, cases, items, body, duration, signal, cron, ...)
    # and every policy not modelled above (rateLimit, circuitBreaker, resources, ...), verbatim
    config: FrozenDict = field(default_factory=FrozenDict)


@dataclass(frozen=True)
class Connection:
    source_node_id: str
    target_node_id: str
    trigger: str = "Complete"         # Complete | Fail | Any
    condition: str | None = None
    source_port: str | None = None
    target_port: str | None = None
    connection_id: str | None = None  # optional, for error messages and graphs

    @property
    def label(self) -> str:
        return self.connection_id or f"{self.source_node_id}->{self.target_node_id}"


@dataclass(frozen=True)
class WorkflowDef:
    workflow_id: str
    nodes: tuple                      # tuple[NodeDef, ...] in file order
    connections: tuple = ()           # tuple[Connection, ...]
    name: str | None = None
    version: int | None = None
    description: str | None = None
    variables: FrozenDict = field(default_factory=FrozenDict)
    inputs_schema: FrozenDict | None = None
    max_concurrency: int | None = None
    timeout: float | None = None
    retry_budget: int | None = None
    defaults: FrozenDict = field(default_factory=FrozenDict)
    source_path: Path | None = field(default=None, compare=False)  # where it was loaded from
    extra: FrozenDict = field(default_factory=FrozenDict)          # unknown-but-allowed keys

    def node(self, node_id: str) -> NodeDef:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)
