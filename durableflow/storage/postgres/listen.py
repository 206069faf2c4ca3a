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

from durableflow.notify import Notifier, Watcher

log = logging.getLogger("durableflow.notify")

SLOW_POLL = 1.0
RECONNECT_AFTER = 1.0


def channel_name(schema: str) -> str:
    """The channel of one store: its database (NOTIFY is per database) and its schema (a plain
    name, checked by dsn.parse)."""
    return f"durableflow:{schema}"


class ListenWatcher(Watcher):
    """In place of notify.ChangeWatcher: start() by each worker, stop() when it stops."""

    thread_name = "durableflow-listener"
    join_seconds = 2.0

    def __init__(self, connect: Callable[[], psycopg.Connection], channel_name: str, notifier: Notifier):
        super().__init__()
        self._connect = connect
        self._channel = channel_name
        self._notifier = notifier
        self.listening = threading.Event()     # set while a LISTEN connection is up (tests wait on it)

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
