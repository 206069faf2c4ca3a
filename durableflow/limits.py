"""A node's limits, read once from its definition: a concurrency key shared across runs and
workers, a token-bucket rate limit, the resources it needs, and its circuit breaker. Pure.

Default keys: a concurrency or rate limit without `key`/`concurrencyKey` is the node's own
(`workflow:node`, across all its runs); a breaker without `key` is shared by every node that
runs the same thing (`Shell:python3 fetch.py`, `Python:pkg.mod:func`, ...).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from durableflow.durations import parse_duration
from durableflow.model import NodeDef


@dataclass(frozen=True)
class Concurrency:
    max_running: int
    key: str                  # a literal, or "${ expression }" over the node's input


@dataclass(frozen=True)
class RateLimit:
    key: str
    rate: float               # tokens added per `per` seconds
    per: float
    burst: float              # the most tokens the bucket holds: the most starts at once

    def settings(self) -> tuple:
        return (self.rate, self.per, self.burst)


@dataclass(frozen=True)
class Resources:
    cpu: float | None
    memory_mb: int | None


@dataclass(frozen=True)
class Breaker:
    key: str
    failure_threshold: float = 0.5
    minimum_calls: int = 5
    window: float = 60.0
    open_duration: float = 30.0
    half_open_successes: int = 1

    def settings(self) -> tuple:
        return (self.failure_threshold, self.minimum_calls, self.window, self.open_duration,
                self.half_open_successes)


@dataclass(frozen=True)
class Limits:
    concurrency: Concurrency | None = None
    rate: RateLimit | None = None
    resources: Resources | None = None
    breaker: Breaker | None = None
    max_wait: float | None = None     # seconds a node may wait for a limit before it fails

    def __bool__(self) -> bool:
        return any((self.concurrency, self.rate, self.resources, self.breaker))


NONE = Limits()


def limits_of(node: NodeDef, workflow_id: str) -> Limits:
    config = node.config
    own = f"{workflow_id}:{node.node_id}"
    concurrency = rate = resources = breaker = None
    if config.get("maxConcurrentExecutions") is not None:
        concurrency = Concurrency(int(config["maxConcurrentExecutions"]), str(config.get("concurrencyKey") or own))
    spec = config.get("rateLimit")
    if spec:
        rate = RateLimit(str(spec.get("key") or own), float(spec["rate"]),
                         parse_duration(spec.get("per", 1)), float(spec.get("burst", 1)))
    spec = config.get("resources")
    if spec and (spec.get("cpu") is not None or spec.get("memoryMb") is not None):
        resources = Resources(None if spec.get("cpu") is None else float(spec["cpu"]),
                              None if spec.get("memoryMb") is None else int(spec["memoryMb"]))
    spec = config.get("circuitBreaker")
    if spec is not None:
        defaults = Breaker(key="")
        breaker = Breaker(
            key=str(spec.get("key") or default_breaker_key(node)),
            failure_threshold=float(spec.get("failureThreshold", defaults.failure_threshold)),
            minimum_calls=int(spec.get("minimumCalls", defaults.minimum_calls)),
            window=parse_duration(spec.get("window", defaults.window)),
            open_duration=parse_duration(spec.get("openDuration", defaults.open_duration)),
            half_open_successes=int(spec.get("halfOpenSuccesses", defaults.half_open_successes)))
    wait = config.get("maxWait")
    return Limits(concurrency, rate, resources, breaker, None if wait is None else parse_duration(wait))


def default_breaker_key(node: NodeDef) -> str:
    """The node's runtime type and what it runs: nodes calling the same thing share a breaker."""
    if node.callable:
        what = node.callable
    elif node.script_path is not None:
        what = str(node.script_path)
    elif node.command:
        what = " ".join(str(part) for part in node.command)
    elif node.script:
        what = "script " + hashlib.sha256(node.script.encode()).hexdigest()[:12]
    else:
        what = node.node_id
    return f"{node.runtime_type}:{what}"
