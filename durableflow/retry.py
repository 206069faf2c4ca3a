"""Retry decisions: a policy and an attempt in, "retry at +delay" or "give up" out. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass

from durableflow.model import RetryPolicy


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float = 0.0
    reason: str = ""


def base_delay(policy: RetryPolicy, attempt: int) -> float:
    """The delay before attempt `attempt + 1`, before jitter. `attempt` is the one that failed (1-based)."""
    if policy.strategy == "fixed":
        delay = policy.initial_delay
    elif policy.strategy == "linear":
        delay = policy.initial_delay * attempt
    elif policy.strategy == "exponential":
        delay = policy.initial_delay * policy.multiplier ** (attempt - 1)
    else:
        delay = 0.0
    return min(delay, policy.max_delay)


def matches(policy: RetryPolicy, error_type: str | None, exit_code: int | None,
            error_types: tuple = ()) -> bool:
    """Whether retryOn names the failure: an exit code, or the name of the exception's class or
    of one of its bases (bare or module-qualified), as `except` would match it."""
    if not policy.retry_on:
        return True
    names = set(error_types)
    if error_type is not None:
        names.add(error_type)
    for item in policy.retry_on:
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and exit_code is not None and item == exit_code:
            return True
        if isinstance(item, str) and item in names:
            return True
    return False


def decide(
    policy: RetryPolicy | None,
    attempt: int,
    *,
    error_type: str | None = None,
    error_types: tuple = (),
    exit_code: int | None = None,
    budget_left: int | None = None,
    rng: random.Random | None = None,
) -> Decision:
    if policy is None or policy.strategy == "none":
        return Decision(False, reason="no retry policy")
    if attempt >= policy.max_attempts:
        return Decision(False, reason=f"gave up after {attempt} attempts (maxAttempts {policy.max_attempts})")
    if not matches(policy, error_type, exit_code, error_types):
        what = f"exit code {exit_code}" if exit_code is not None else error_type
        return Decision(False, reason=f"{what} is not in retryOn")
    if budget_left is not None and budget_left <= 0:
        return Decision(False, reason="the run's retryBudget is spent")
    delay = base_delay(policy, attempt)
    if policy.jitter and delay > 0:
        spread = delay * policy.jitter
        delay += (rng or random).uniform(-spread, spread)
        delay = min(max(delay, 0.0), policy.max_delay * (1 + policy.jitter))
    return Decision(True, delay=delay, reason=f"retry {attempt + 1} of {policy.max_attempts} in {delay:.3f}s")
