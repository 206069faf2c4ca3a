"""The one source of time. Everything asks a Clock; tests freeze or move it."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta, timezone


def iso(ts: float) -> str:
    """Epoch seconds -> ISO-8601 UTC with milliseconds, the format every stored timestamp uses.

    Same text as `datetime.fromtimestamp(ts, utc)` truncated to milliseconds (tests/unit checks
    it), but the date-and-time part is formatted once per distinct second: a queue transaction stamps
    several columns, and strftime was a tenth of its Python time.
    """
    global _last
    last = _last
    if last[0] == ts:   # a transaction stamps one moment on many rows
        return last[1]
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)  # as datetime does: half-even to the microsecond, then carry
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    sec = int(whole)
    prefix = _seconds.get(sec)
    if prefix is None:
        # A claim stamps now and now + lease: two seconds in turn, so one cached second missed
        # every other call. Small and cleared when full; a dict set is atomic for other threads.
        if len(_seconds) >= 64:
            _seconds.clear()
        prefix = _seconds[sec] = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
    text = f"{prefix}{us // 1000:03d}Z"
    _last = (ts, text)   # one assignment: another thread sees the old pair or the new
    return text


_seconds: dict[int, str] = {}
_last: tuple[float, str] = (math.nan, "")


def parse_iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Clock:
    """Wall clock. `now()` is epoch seconds; `sleep` is only for idle polling loops."""

    def now(self) -> float:
        # Looked up on the module at each call (not `from time import time`), so freezegun's
        # patch of time.time (it assigns time.time) reaches us too; tests/unit/test_clock.py
        # checks that the attribute is read at each call.
        return time.time()

    def now_iso(self) -> str:
        return iso(self.now())

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Sleep up to `seconds`; returns True early if `until` is set."""
        if until is None:
            time.sleep(max(0.0, seconds))
            return False
        return until.wait(max(0.0, seconds))


class ManualClock(Clock):
    """A clock whose wall time only moves when told to. Sleeping does not advance it, and only
    yields briefly, so idle loops never block tests.

    `monotonic()` stays real time by default, so node timeouts, kill grace periods and waits
    with a deadline still elapse in a test that never advances the clock. With
    `manual_monotonic=True` it is manual too: it starts at 0.0 and `advance()` moves both
    (`set()` moves only the wall time, as setting a real clock leaves monotonic time alone).
    Then a node's timeout, the grace period between SIGTERM and SIGKILL, and the wait for a
    finished process's pipes elapse only when the test advances the clock.
    """

    def __init__(self, start: float | datetime = 1_800_000_000.0, *, manual_monotonic: bool = False):
        if isinstance(start, datetime):
            start = start.timestamp()
        self._now = float(start)
        self._manual_monotonic = manual_monotonic
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        if not self._manual_monotonic:
            return time.monotonic()
        with self._lock:
            return self._mono

    def advance(self, seconds: float | timedelta) -> None:
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        with self._lock:
            self._now += seconds
            if self._manual_monotonic:
                self._mono += max(0.0, seconds)   # monotonic time never goes back

    def set(self, ts: float) -> None:
        with self._lock:
            self._now = ts

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        # Yield the CPU briefly so other threads progress, without advancing fake time.
        if until is not None:
            return until.wait(min(max(seconds, 0.0), 0.005))
        time.sleep(min(max(seconds, 0.0), 0.005))
        return False
