"""What a write transaction keeps in memory until it commits, on whichever backend's connection.

A node step of the engine appends five or six `events` rows, takes a lease it often gives back
in the same transaction (a cheap node claimed, run and recorded at once), and reads its run's
state several times. Rows that nothing reads before the commit are written together when it
comes (or as soon as something in the transaction reads their table), a lease given back before
then is never written at all, and a run's state is read once until something writes the run.

Everything here is append-only between savepoints, so ROLLBACK TO a savepoint undoes it by
cutting the lists back to the mark taken there (`commit_mark` / `forget_since`).
"""

from __future__ import annotations

import logging

from durableflow.storage import handoff, joins

log = logging.getLogger("durableflow.storage")

# Rows per multi-row INSERT of events: one statement instead of one per row.
EVENTS_PER_INSERT = 64


class TxnBuffers:
    sql = None   # the backend's dialect (storage.statements.Dialect)
    _after_commit: list | None = None
    _events: list | None = None
    # Leases taken in this transaction and not yet written: message id -> lease row.
    _leases: dict | None = None
    # (message id, the row it had or None): undo log of _leases, for ROLLBACK TO.
    _lease_log: list | None = None
    # run_id -> RunState read in this transaction since the last write to `runs`.
    run_states: dict | None = None
    # Writes put off in the hope they fold into a later one (a node's start into its end), to be
    # made before anything acts on a whole run (see write_put_off).
    _put_off: list | None = None
    # Nodes queued and taken within this transaction, written once (storage.handoff.Handoff):
    # set by a worker's claiming transaction, None otherwise.
    handoff = None
    # Whether this transaction looked for parked messages that came due (queue.promote_due_txn).
    promoted = False
    # What puts back in-memory state (a task's put-off start, the hand-off's offers) when
    # ROLLBACK TO a savepoint undoes the writes that changed it: callables, in order.
    _undo: list | None = None
    # Joins arrived at in this transaction: (run, node, iteration) -> counts (storage.joins).
    joins: dict | None = None

    def reset_buffers(self) -> None:
        """A transaction begins, or rolled back: nothing carried over."""
        self._after_commit = self._events = self._leases = self._lease_log = self.run_states = None
        self._put_off = self.handoff = self._undo = self.joins = None
        self.promoted = False

    def put_off(self, write) -> None:
        """write() makes a write this transaction put off, if it is still owed (it says so itself:
        it may run more than once)."""
        if self._put_off is None:
            self._put_off = [write]
        else:
            self._put_off.append(write)

    def write_put_off(self) -> None:
        """Before a run is failed, cancelled or compensated in this transaction: its nodes' rows
        must say what they are (a node started, its row not yet written, is running)."""
        if self.handoff is not None and self.handoff.offers:
            handoff.write_offers_txn(self)
        owed = self._put_off
        if owed:
            self._put_off = None
            self.on_rollback(lambda: self._owe_again(owed))
            for write in owed:
                write()

    def _owe_again(self, owed: list) -> None:
        self._put_off = owed + (self._put_off or [])

    def on_rollback(self, fn) -> None:
        """Call fn() if ROLLBACK TO a savepoint taken before now undoes this transaction's writes
        since: it puts back the in-memory state those writes changed."""
        if self._undo is None:
            self._undo = [fn]
        else:
            self._undo.append(fn)

    # --- after-commit callbacks --------------------------------------------------------------

    def on_commit(self, fn) -> None:
        """Call fn() once the write transaction in progress has committed (not if it rolls
        back). For wake-ups and caches that must only see committed state; the same callable
        registered twice runs once."""
        pending = self._after_commit
        if pending is None:
            self._after_commit = [fn]
        elif fn not in pending:
            pending.append(fn)

    def committed(self) -> None:
        """The transaction committed: run what waited for it."""
        callbacks = self._after_commit
        if callbacks:
            self._after_commit = None
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # committed: a failing wake-up must not read as a failed write
                    log.exception("after-commit callback %r failed", callback)

    def commit_mark(self) -> tuple[int, int, int, int]:
        """Where the buffers stand; taken at a SAVEPOINT."""
        return (len(self._after_commit or ()), len(self._events or ()), len(self._lease_log or ()),
                len(self._undo or ()))

    def forget_since(self, mark: tuple[int, int, int, int]) -> None:
        """ROLLBACK TO a savepoint undid what was registered since its mark: none of it runs,
        and none of its rows is written."""
        callbacks, events, leases, undo = mark
        pending = self._undo
        if pending:
            while len(pending) > undo:
                pending.pop()()
        if self._after_commit:
            del self._after_commit[callbacks:]
        if self._events:
            del self._events[events:]
        log = self._lease_log
        if log:
            while len(log) > leases:
                mid, before = log.pop()
                if before is None:
                    del self._leases[mid]
                else:
                    self._leases[mid] = before
        self.run_states = None

    # --- events --------------------------------------------------------------------------------

    def add_event(self, row: tuple) -> None:
        """(run_id, node_id, type, data JSON text, at), in the order they happened."""
        if self._events is None:
            self._events = [row]
        else:
            self._events.append(row)

    def add_events(self, rows: list[tuple]) -> None:
        if self._events is None:
            self._events = list(rows)
        else:
            self._events.extend(rows)

    def flush_events(self) -> None:
        rows = self._events
        if not rows:
            return
        self._events = None
        if len(rows) == 1:
            self.execute(self.sql.events.event_insert, rows[0])
            return
        for start in range(0, len(rows), EVENTS_PER_INSERT):
            chunk = rows[start:start + EVENTS_PER_INSERT]
            self.execute(_events_insert(self.sql.events.event_insert, len(chunk)),
                         [value for row in chunk for value in row])

    # --- leases --------------------------------------------------------------------------------

    def add_lease(self, row: tuple) -> None:
        """(message_id, worker_id, token, acquired_at, expires_at): written at commit, unless
        given back first."""
        if self._leases is None:
            self._leases, self._lease_log = {}, []
        self._leases[row[0]] = row
        self._lease_log.append((row[0], None))

    def give_back_lease(self, message_id: int, token: str | None) -> bool:
        """Drop an unwritten lease of this transaction (any token when None). Whether there was
        one: if not, the lease, if any, is a row of the table."""
        pending = self._leases
        if not pending:
            return False
        row = pending.get(message_id)
        if row is None or (token is not None and row[2] != token):
            return False
        del pending[message_id]
        self._lease_log.append((message_id, row))
        return True

    def flush_leases(self) -> None:
        """Before a statement that reads or renews leases, and at commit."""
        pending = self._leases
        if pending:
            self._leases, self._lease_log = None, None
            self.executemany(self.sql.queue.lease_insert, list(pending.values()))

    def flush(self) -> None:
        """Write what waits for the commit."""
        if self.joins:
            joins.flush_txn(self)
        if self._leases:
            self.flush_leases()
        if self._events:
            self.flush_events()


_inserts: dict[tuple[str, int], str] = {}


def _events_insert(single: str, n: int) -> str:
    """`single` (INSERT ... VALUES (?, ...)) for n rows, in the dialect's own placeholders."""
    sql = _inserts.get((single, n))
    if sql is None:
        head, sep, group = single.rpartition("VALUES")
        sql = _inserts[(single, n)] = head + sep + ", ".join([group.strip()] * n)
    return sql
