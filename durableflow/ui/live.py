"""A run's events as server-sent events, read from the `events` table: whatever process wrote them.

The stream starts after the last event the page showed (`?after=SEQ`, or the browser's
Last-Event-ID when it reconnects), so nothing is missed or sent twice. Between reads it asks
SQLite's `PRAGMA data_version`, which moves when any other connection commits to the file (a
worker in another process, the dashboard's own controls): a few microseconds, no transaction.
Only then does it read the run's new events, from events_by_run. When the run has finished and
every event is sent, it says `end` and closes; a comment line every few seconds finds a browser
that has gone away.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable, Iterator

from durableflow.storage import ui as reads

POLL = 0.1            # seconds between looks at data_version (each costs microseconds)
KEEPALIVE = 10.0      # seconds of silence before a comment line
RETRY_MS = 2000       # how long a browser waits before it reconnects
FINISHED = ("completed", "failed", "cancelled")


def frame(data: dict, *, event: str | None = None, id: int | None = None) -> bytes:
    lines = []
    if event:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    # json.dumps escapes newlines, so the data is one line.
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def run_stream(read: Callable, data_version: Callable[[], int], run_id: str, after: int,
               stop: threading.Event, *, clock=None) -> Iterator[bytes]:
    """Frames of the run's events after seq `after`, until the run has finished (then `end`) or
    `stop` is set. `read(fn, *args)` runs fn in a read transaction; `clock()` is monotonic time."""
    clock = clock or time.monotonic
    yield f"retry: {RETRY_MS}\n\n".encode()
    quiet_since = clock()
    while not stop.is_set():
        version = data_version()
        events, status = read(reads.events_since, run_id, after)
        for e in events:
            after = e["seq"]
            yield frame(e, id=e["seq"])
        if events:
            quiet_since = clock()
            continue        # there may be more than one read's worth
        if status is None:
            yield frame({"run_id": run_id, "status": None}, event="end")
            return
        if status in FINISHED:
            yield frame({"run_id": run_id, "status": status}, event="end")
            return
        while data_version() == version and not stop.is_set():
            if clock() - quiet_since >= KEEPALIVE:
                yield b": keepalive\n\n"
                quiet_since = clock()
            stop.wait(POLL)
