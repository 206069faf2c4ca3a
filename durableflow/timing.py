"""When a Timer fires: a cron expression in an IANA time zone, or a fixed interval. Pure: epoch
seconds in, epoch seconds out; nothing here reads a clock.

Cron follows the wall clock of its time zone, and each wall-clock time fires once:
- a time the spring change skips (02:30 when clocks jump from 02:00 to 03:00) fires at the same
  instant it would have had before the change, which reads 03:30 on the wall; a daily job is not
  skipped;
- a time the autumn change repeats (02:30 twice) fires at its first occurrence only; a daily job
  is not doubled;
- two wall times that fall on one instant fire once.
An interval counts from the Unix epoch (`interval: 10m` fires at :00, :10, ...), so every
process computes the same fire times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

CATCH_UP = ("none", "one", "all")
OVERLAP = ("skip", "bufferOne", "bufferAll", "allow", "cancelOther")
DEFAULT_MISFIRE_GRACE = 60.0
DEFAULT_MAX_CATCH_UP = 100


@dataclass(frozen=True)
class Timing:
    cron: str | None = None
    interval: float | None = None
    timezone: str = "UTC"
    catch_up: str = "none"
    misfire_grace: float = DEFAULT_MISFIRE_GRACE
    overlap: str = "skip"
    max_catch_up: int = DEFAULT_MAX_CATCH_UP

    @property
    def expression(self) -> str:
        """How `schedules` shows it: the cron expression, or `every 600s`."""
        return self.cron if self.cron is not None else f"every {self.interval:g}s"

    def next_after(self, t: float) -> float:
        """The first fire time strictly after `t`."""
        if self.interval is not None:
            return (math.floor(t / self.interval) + 1) * self.interval
        return _next_cron(self.cron, self.timezone, t)

    def fire_times(self, after: float, until: float, limit: int | None = None) -> list[float]:
        """Fire times in (after, until], oldest first; with `limit`, the latest `limit` of them."""
        out: list[float] = []
        if self.interval is not None:
            first = self.next_after(after)
            if first > until:
                return []
            count = math.floor((until - first) / self.interval) + 1
            skip = max(0, count - limit) if limit is not None else 0
            return [first + (skip + i) * self.interval for i in range(count - skip)]
        t = after
        while True:
            t = self.next_after(t)
            if t > until:
                return out
            out.append(t)
            if limit is not None and len(out) > limit:
                out.pop(0)


_NEAR = 3 * 3600.0      # longer than any clock change


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _next_cron(expression: str, zone_name: str, t: float) -> float:
    zone = _zone(zone_name)
    here = datetime.fromtimestamp(t, zone)
    local = here.replace(tzinfo=None)
    if here.utcoffset() != datetime.fromtimestamp(t - _NEAR, zone).utcoffset():
        # Just after a change: a wall time before t's that the spring change skipped fires at an
        # instant after t, so the walk starts before it.
        local -= timedelta(seconds=_NEAR)
    it = croniter(expression, local)
    for _ in range(100_000):
        wall = it.get_next(datetime)
        at = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc).timestamp()
        if at > t:
            return at
    raise ValueError(f"cron {expression!r}: no fire time found after {t}")


def check_cron(expression: str) -> str | None:
    """None when croniter takes the expression; else what is wrong, in a few words."""
    if not isinstance(expression, str) or not expression.strip():
        return "empty"
    try:
        croniter(expression)
    except (ValueError, KeyError, TypeError) as exc:
        return str(exc) or type(exc).__name__
    return None


def check_zone(name: str) -> bool:
    try:
        _zone(name)
    except (ValueError, KeyError, OSError):
        return False
    return True
