"""Helpers shared by the benchmark programs: timing, medians of repeats, JSON and table output.

Nothing here knows about queues; a benchmark measures `(operations, seconds)` pairs, keeps the
samples of its repeats with `Measurement`, and prints them with `format_table` / `write_json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

# One clock for every measurement. On Linux it is CLOCK_MONOTONIC, shared by all processes of
# the machine, so start and end times taken in different processes can be subtracted.
now = time.perf_counter if sys.platform.startswith("linux") else time.monotonic


@dataclass
class Measurement:
    """The repeats of one measurement: each sample is a rate in operations per second."""

    ops: int = 0                                   # operations per repeat (the last one)
    ops_done: list[int] = field(default_factory=list)   # operations of each repeat
    samples: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, ops: int, seconds: float) -> float:
        rate = ops / seconds if seconds > 0 else float("inf")
        self.ops = ops
        self.ops_done.append(ops)
        self.samples.append(rate)
        self.seconds.append(seconds)
        return rate

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the samples: how noisy the repeats were."""
        if len(self.samples) < 2 or not self.median:
            return None
        return (max(self.samples) - min(self.samples)) / self.median

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops_per_s": _round(self.median),
            "ops_per_repeat": self.ops,
            "repeats": len(self.samples),
            "samples_ops_per_s": [_round(s) for s in self.samples],
            "samples_seconds": [round(s, 6) for s in self.seconds],
            "samples_ops": list(self.ops_done),
            "spread": None if self.spread is None else round(self.spread, 3),
            **({"notes": self.notes} if self.notes else {}),
        }


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """Run fn() once; returns (operations it reports, seconds it took)."""
    t0 = now()
    ops = fn()
    return ops, now() - t0


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _round(x: float | None) -> float | None:
    if x is None:
        return None
    return round(x, 1) if x < 1000 else round(x)


# --- scratch space -------------------------------------------------------------------------------

@contextlib.contextmanager
def scratch_dir(base: str | None = None, keep: bool = False, prefix: str = "dfbench-") -> Iterator[str]:
    """A fresh directory for database files, removed afterwards unless keep."""
    path = tempfile.mkdtemp(prefix=prefix, dir=base)
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def remove_db(path: str) -> None:
    """Delete a SQLite database and its -wal / -shm files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


# --- reporting -----------------------------------------------------------------------------------

def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]   # other work on the machine
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:,.1f}"


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A plain-text table. align: one letter per column, 'l' or 'r' (default: first left, rest right)."""
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def write_json(doc: Any, target: str | None) -> None:
    """Write the JSON document to a file, or to stdout for None / '-'."""
    text = json.dumps(doc, indent=2, sort_keys=False)
    if target in (None, "-"):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")


def progress(msg: str) -> None:
    """Progress lines go to stderr so stdout stays a clean JSON document or table."""
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()
