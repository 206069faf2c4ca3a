"""The policies of SPEC section 3 as typed Python values, and the option names a node accepts.

Each class turns into the camelCase mapping a YAML file would hold (`to_dict`), writing only the
fields that were given, so a saved file keeps the shape of a hand-written one. Nothing is checked
here beyond Python types: the values go through the same schema and checks as a YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence, TypedDict, Union

from durableflow.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from durableflow.authoring.refs import NodeRef

Duration = Union[str, int, float, timedelta]
"""Seconds, a string such as "500ms", "10s", "5m", "1h30m", or a timedelta."""
Priority = Literal["high", "normal", "low"]
JoinMode = Literal["all", "any", "each"]
Isolation = Literal["thread", "process"]
Strategy = Literal["none", "fixed", "linear", "exponential"]
RetryOn = Union[type[BaseException], str, int]


def duration(value: Duration) -> str | int | float:
    """A duration as a definition writes it: a timedelta in its shortest exact spelling ("15m"),
    as a saved file spells it, since some keys (a Wait's `duration`, a Timer's `interval`, ...)
    are kept verbatim in the definition."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        text = format_duration(seconds)
        return text if parse_duration(text) == seconds else seconds
    return value


def error_name(item: RetryOn) -> str | int:
    """`retryOn` names an exception class as the runtime names a failure: bare for builtins and
    `__main__`, `module.Class` otherwise (a base class matches its subclasses, as `except` does)."""
    if isinstance(item, type):
        if item.__module__ in ("builtins", "__main__"):
            return item.__qualname__
        return f"{item.__module__}.{item.__qualname__}"
    return item


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Policy:
    """A frozen dataclass whose set fields become camelCase keys."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if value is None:
                continue
            out[_camel(item.name)] = self._lower(item.name, value)
        return out

    def _lower(self, name: str, value: Any) -> Any:
        return duration(value) if isinstance(value, timedelta) else value


@dataclass(frozen=True)
class Retry(_Policy):
    """`retry:` of a node or of `Defaults`. Use the constructors: `Retry.exponential(5)`,
    `Retry.fixed(3, delay="1s")`, `Retry.linear(...)`, `Retry.none()`."""

    strategy: Strategy = "none"
    max_attempts: int | None = None
    initial_delay: Duration | None = None
    max_delay: Duration | None = None
    multiplier: float | None = None
    jitter: float | None = None
    retry_on: Sequence[RetryOn] | None = None

    @classmethod
    def none(cls) -> Retry:
        """No retry: what a node says when the `defaults` block gives every node one."""
        return cls("none")

    @classmethod
    def fixed(cls, max_attempts: int, *, delay: Duration | None = None,
              max_delay: Duration | None = None, jitter: float | None = None,
              retry_on: Sequence[RetryOn] | None = None) -> Retry:
        return cls("fixed", max_attempts, delay, max_delay, None, jitter, retry_on)

    @classmethod
    def linear(cls, max_attempts: int, *, initial_delay: Duration | None = None,
               max_delay: Duration | None = None, jitter: float | None = None,
               retry_on: Sequence[RetryOn] | None = None) -> Retry:
        return cls("linear", max_attempts, initial_delay, max_delay, None, jitter, retry_on)

    @classmethod
    def exponential(cls, max_attempts: int, *, initial_delay: Duration | None = None,
                    max_delay: Duration | None = None, multiplier: float | None = None,
                    jitter: float | None = None,
                    retry_on: Sequence[RetryOn] | None = None) -> Retry:
        return cls("exponential", max_attempts, initial_delay, max_delay, multiplier, jitter,
                   retry_on)

    def _lower(self, name: str, value: Any) -> Any:
        if name == "retry_on":
            return [error_name(item) for item in value]
        return super()._lower(name, value)


@dataclass(frozen=True)
class RateLimit(_Policy):
    """`rateLimit:` at most `burst` starts at once, refilled at `rate` tokens per `per`."""

    rate: float
    per: Duration | None = None
    key: str | None = None
    burst: int | None = None


@dataclass(frozen=True)
class CircuitBreaker(_Policy):
    """`circuitBreaker:` `failure_threshold` is a fraction (0.5: half the calls in the window)."""

    key: str | None = None
    failure_threshold: float | None = None
    minimum_calls: int | None = None
    window: Duration | None = None
    open_duration: Duration | None = None
    half_open_successes: int | None = None


@dataclass(frozen=True)
class Resources(_Policy):
    """`resources:` what the node needs of the worker's capacity."""

    cpu: float | None = None
    memory_mb: int | None = None


@dataclass(frozen=True)
class Defaults(_Policy):
    """The workflow's `defaults:` block: what a node gets when it does not say."""

    timeout: Duration | None = None
    retry: Retry | None = None
    priority: Priority | None = None
    isolation: Isolation | None = None

    def _lower(self, name: str, value: Any) -> Any:
        return value.to_dict() if isinstance(value, Retry) else super()._lower(name, value)


class NodeOptions(TypedDict, total=False):
    """What every node accepts, whatever its type (SPEC section 3), as keyword arguments."""

    name: str
    description: str
    timeout: Duration
    retry: Retry
    priority: Priority
    join_mode: JoinMode
    inputs: Mapping[str, Any]
    compensation: NodeRef | str        # compensationNodeId
    fallback: NodeRef | str            # fallbackNodeId
    max_concurrent_executions: int
    concurrency_key: str
    rate_limit: RateLimit
    circuit_breaker: CircuitBreaker
    resources: Resources
    ports: Sequence[str]               # named output ports of a node that is not IfElse/Switch
    extra: Mapping[str, Any]           # "x-..." keys, kept verbatim


class PythonOptions(NodeOptions, total=False):
    """What `@node` accepts: a node's options and a Python node's own."""

    isolation: Isolation
    env: Mapping[str, str | int | float | bool]
    working_dir: str


class WorkflowSettings(TypedDict, total=False):
    """The workflow-level keys of a definition, as keyword arguments."""

    name: str                          # workflowName
    description: str
    version: int
    variables: Mapping[str, Any]
    inputs_schema: Mapping[str, Any]
    max_concurrency: int
    timeout: Duration
    retry_budget: int
    defaults: Defaults
    base_dir: str                      # where relative paths resolve (default: the declaring file's folder)
    extra: Mapping[str, Any]           # "x-..." keys, kept verbatim


# the camelCase key of each option that maps one to one
NODE_KEYS = {
    "name": "name", "description": "description", "timeout": "timeout", "retry": "retry",
    "priority": "priority", "join_mode": "joinMode", "inputs": "inputs",
    "compensation": "compensationNodeId", "fallback": "fallbackNodeId",
    "max_concurrent_executions": "maxConcurrentExecutions", "concurrency_key": "concurrencyKey",
    "rate_limit": "rateLimit", "circuit_breaker": "circuitBreaker", "resources": "resources",
    "ports": "ports", "isolation": "isolation", "env": "env", "working_dir": "workingDir",
}
WORKFLOW_KEYS = {
    "name": "workflowName", "description": "description", "version": "version",
    "variables": "variables", "inputs_schema": "inputsSchema", "max_concurrency": "maxConcurrency",
    "timeout": "timeout", "retry_budget": "retryBudget", "defaults": "defaults",
}
POLICY_TYPES: dict[str, type[_Policy]] = {
    "retry": Retry, "rate_limit": RateLimit, "circuit_breaker": CircuitBreaker,
    "resources": Resources, "defaults": Defaults,
}


def known_keys(typed: type, given: Mapping[str, Any], what: str) -> None:
    """A TypeError for a keyword the TypedDict does not declare, as Python gives for a function."""
    allowed = _all_keys(typed)
    for key in given:
        if key not in allowed:
            raise TypeError(f"{what} got an unexpected keyword argument {key!r} "
                            f"(valid: {', '.join(sorted(allowed))})")


def _all_keys(typed: type) -> frozenset[str]:
    keys: frozenset[str] = getattr(typed, "__required_keys__", frozenset())
    return keys | getattr(typed, "__optional_keys__", frozenset())
