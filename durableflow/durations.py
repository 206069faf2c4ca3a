"""Durations as written in definitions and on the command line: 500ms, 10s, 5m, 2h, 1d, or a number of seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


# Longer than anything a workflow waits for, and far inside the dates SQLite text and Python's
# datetime can spell: a deadline of "now + 99999999999d" would be year 273 million.
MAX_DURATION = 100 * 365 * 86400.0


def parse_duration(value: object) -> float:
    """Return seconds. Accepts numbers (seconds) and strings like '1h30m'. Raises ValueError
    for anything negative, not finite (NaN, 'inf') or longer than 100 years."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return _bounded(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError("empty duration")
    try:
        number = float(text)  # plain seconds, as format_duration spells them too (e.g. 1.5e-07)
    except ValueError:
        number = None
    if number is not None:
        return _bounded(number, value)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            _bad(value)
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        _bad(value)
    return _bounded(total, value)


def _bounded(seconds: float, value: object) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {value!r} is too long (at most 100 years)")
    return seconds


def _bad(value: object) -> float:
    raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 10s, 5m, 2h, 1d)")


def format_duration(seconds: float) -> str:
    """Shortest exact spelling, so that parse_duration(format_duration(x)) == x for stored values."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    if ms == 0 or abs(ms - seconds * 1000) > 1e-6:   # below a millisecond: "0d" would read as 0
        return repr(seconds)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
