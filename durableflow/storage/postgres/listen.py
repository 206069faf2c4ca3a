"""Waking idle workers on PostgreSQL: LISTEN/NOTIFY in place of SQLite's data_version poll.

Every write transaction of a PostgreSQL store that changed a row ends with `pg_notify(channel)`
and COMMIT in one round trip (the server delivers the notification only if the transaction
commits, and folds repeats). While
workers run in a process, one thread of it LISTENs on a connection of its own and wakes them on
each notification. If that connection is lost the thread opens another after a pause and, until
then, wakes the workers every SLOW_POLL seconds: a slow poll, never a missed wake-up for long.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import psycopg

from durableflow.notify import Notifier

log = logging.getLogger("durableflow.notify")

SLOW_POLL = 1.0
RECONNECT_AFTER = 1.0


def channel_name(schema: str) -> str:
    """The channel of one store: its database (NOTIFY is per database) and its schema (a plain
    name, checked by dsn.parse)."""
    return f"durableflow:{schema}"


class ListenWatcher:
    """Same face as notify.ChangeWatcher: start() by each worker, stop() when it stops."""

    def __init__(self, connect: Callable[[], psycopg.Connection], channel_name: str, notifier: Notifier):
        self._connect = connect
        self._channel = channel_name
        self._notifier = notifier
        self._users = 0
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()     # set while a LISTEN connection is up (tests wait on it)

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._stop is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._watch, args=(self._stop,),
                                                name="durableflow-listener", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self._stop is None:
                return
            self._stop.set()
            thread, self._stop, self._thread = self._thread, None, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    def _watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:
                log.debug("listener: cannot connect, polling slowly: %s", exc)
                self._slow_poll(stop, RECONNECT_AFTER)
                continue
            try:
                conn.execute(f'LISTEN "{self._channel}"')
                self.listening.set()
                # Anything committed while we were not listening: one wake-up covers it.
                self._notifier.work()
                while not stop.is_set():
                    for _ in conn.notifies(timeout=0.2, stop_after=1):
                        self._notifier.work()
            except Exception as exc:
                self.listening.clear()
                try:
                    conn.close()
                except Exception:
                    pass
                if not stop.is_set():
                    log.debug("listener: connection lost, polling slowly: %s", exc)
                    self._slow_poll(stop, RECONNECT_AFTER)
                continue
            self.listening.clear()
            conn.close()

    def _slow_poll(self, stop: threading.Event, seconds: float) -> None:
        waited = 0.0
        while waited < seconds and not stop.is_set():
            step = min(SLOW_POLL, seconds - waited)
            stop.wait(step)
            waited += step
            self._notifier.work()
