"""The database server's clock, the default clock of a PostgreSQL store.

Hosts sharing one database must agree on the time: a lease expires, a parked message comes due,
a schedule fires and a rate-limit bucket refills at the time the database says, or a host whose
clock runs ahead would take live work from others and fire schedules early. This clock is this
host's clock corrected by its offset from the server's, measured when the store opens and again
every REFRESH_SECONDS (the round trip's midpoint, best of a few). Reading it costs what reading
the wall clock costs; only a refresh goes to the server. An injected clock replaces it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from durableflow.clock import Clock

log = logging.getLogger("durableflow.storage")

REFRESH_SECONDS = 60.0
RETRY_SECONDS = 5.0       # after a failed refresh: the old offset stays until the next try
SAMPLES = 3


class ServerClock(Clock):
    """`measure()` returns the server's time (epoch seconds) as one round trip to it."""

    def __init__(self, server_time: Callable[[], float], *, refresh_seconds: float = REFRESH_SECONDS,
                 local: Callable[[], float] | None = None):
        self._server_time = server_time
        self.refresh_seconds = refresh_seconds
        # This host's wall clock; looked up on `time` at each call (freezegun patches it there).
        self._local = local or (lambda: time.time())
        self._lock = threading.Lock()
        self.offset = 0.0
        self._measured_at = 0.0
        self._retry_at = 0.0
        self.measure()

    def measure(self) -> float:
        """Measure the offset now; returns it. The sample with the shortest round trip wins."""
        best: tuple[float, float] | None = None
        for _ in range(SAMPLES):
            t0 = self._local()
            m0 = time.monotonic()
            server = self._server_time()
            rtt = time.monotonic() - m0
            sample = server - (t0 + rtt / 2)
            if best is None or rtt < best[0]:
                best = (rtt, sample)
        self.offset = best[1]
        self._measured_at = time.monotonic()
        return self.offset

    def _due(self) -> bool:
        mono = time.monotonic()
        return mono - self._measured_at >= self.refresh_seconds and mono >= self._retry_at

    def now(self) -> float:
        if self._due() and self._lock.acquire(blocking=False):
            # One thread refreshes; the others read the offset they have meanwhile.
            try:
                if self._due():
                    try:
                        self.measure()
                    except Exception as exc:  # a server gone for a moment: keep the old offset
                        self._retry_at = time.monotonic() + min(RETRY_SECONDS, self.refresh_seconds)
                        log.debug("server clock: refresh failed, keeping offset %.3fs: %s", self.offset, exc)
            finally:
                self._lock.release()
        return self._local() + self.offset
