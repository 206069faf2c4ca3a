"""What happens inside the engine's transactions, one room per concern:

    runs.py       a run's lifecycle: start, rerun, settle, fail, cancel, pause, resume, signals
    attempts.py   a node attempt's lifecycle: claim, complete, fail (the one retry decision),
                  park, give back, lost with its worker
    routing.py    deliveries over connections, joins, skips
    children.py   Subflow, ForEach and While: nodes that wait for child runs
    variables.py  the run's variables: per-key changes, and what a rerun starts from

Every method takes an open write connection and is called inside one `Store.write`, so a node's
result, the messages it sends and the run's new state commit together or not at all. SQL stays
in durableflow.storage; this package decides what to write. `Execution` composes the rooms.
"""

from __future__ import annotations

import logging
from typing import Callable

from durableflow.errors import DurableflowError, InvalidTransition
from durableflow.plan import Plans
from durableflow.execution.attempts import AttemptLifecycle
from durableflow.execution.children import DEFAULT_MAX_NESTING, ChildRuns
from durableflow.execution.routing import Routing
from durableflow.execution.runs import RunLifecycle
from durableflow.tasks import Outcome, Task

log = logging.getLogger("durableflow.execution")


class Execution:
    """The engine's transaction logic. `run_finished()` is called after the commit of each
    transaction that finished a run (the in-process wake-up of whoever waits for one)."""

    def __init__(self, plans: Plans, *, new_run_id: Callable[[], str], run_finished: Callable[[], None],
                 max_deliveries: int = 5, max_nesting: int = DEFAULT_MAX_NESTING):
        self.plans = plans
        self.routing = Routing(max_deliveries=max_deliveries)
        self.runs = RunLifecycle(self.routing, plans, run_finished)
        self.attempts = AttemptLifecycle(self.routing, self.runs, plans)
        self.children = ChildRuns(self.runs, self.attempts, plans, new_run_id, max_nesting)

    def record_many(self, conn, items: list[tuple[Task, Outcome]], now: float) -> list[Exception | None]:
        """Record several results in this transaction, each behind its own savepoint: a stale
        lease on one does not undo the others. Returns, per item, None or what refused it."""
        if len(items) > 1 and self._record_together(conn, items, now):
            return [None] * len(items)
        results: list[Exception | None] = []
        for task, outcome in items:
            self._start_unless_completed(conn, task, outcome)
            conn.execute("SAVEPOINT record")
            mark = conn.commit_mark()
            try:
                self._record(conn, task, outcome, now)
            except DurableflowError as exc:
                _rollback_to(conn, "record", mark)
                results.append(exc)
            except conn.IntegrityError as exc:
                # e.g. a second 'completed' row for one (run, node, iteration): refuse this one
                _rollback_to(conn, "record", mark)
                results.append(InvalidTransition(f"node {task.node_id} of run {task.run_id}: "
                                                 f"result refused by the database ({exc})"))
            except conn.Error:
                raise  # busy, disk full, corrupt: the whole transaction's business
            except Exception as exc:
                # A fault of ours in recording this one result (a bug, a value out of range):
                # it fails this node, not the worker that also serves every other run.
                _rollback_to(conn, "record", mark)
                log.exception("recording node %s of run %s failed", task.node_id, task.run_id)
                results.append(self._fail_unrecordable(conn, task, exc, now))
            else:
                results.append(None)
            conn.execute("RELEASE record")
        return results

    def _record_together(self, conn, items: list[tuple[Task, Outcome]], now: float) -> bool:
        """The common case first: every result recorded behind one savepoint. If one is refused
        (or recording it fails), all of them are undone and False returned: record_many then
        records them one by one, each behind its own."""
        conn.execute("SAVEPOINT records")
        mark = conn.commit_mark()
        try:
            for task, outcome in items:
                self._start_unless_completed(conn, task, outcome)
                self._record(conn, task, outcome, now)
        except conn.IntegrityError:
            pass
        except conn.Error:
            raise  # busy, disk full, corrupt: the whole transaction's business
        except Exception:  # noqa: BLE001 - said and dealt with when recorded alone
            pass
        else:
            conn.execute("RELEASE records")
            return True
        _rollback_to(conn, "records", mark)
        conn.execute("RELEASE records")
        return False

    def _start_unless_completed(self, conn, task: Task, outcome: Outcome) -> None:
        """Only a completion writes a put-off start and the end at once: any other result finds
        the start written first."""
        if task.deferred_start is not None and not outcome.ok:
            self.attempts.start_deferred(conn, task)

    def _record(self, conn, task: Task, outcome: Outcome, now: float) -> None:
        waits = outcome.park_until is not None or outcome.await_signal is not None or outcome.subflow is not None
        if waits and self.attempts.run_has_ended(conn, task, now):
            return  # recorded as cancelled: nothing waits, nothing starts in an ended run
        if outcome.park_until is not None:
            self.attempts.park(conn, task, outcome.park_until, now)
        elif outcome.await_signal is not None:
            self.attempts.await_signal(conn, task, *outcome.await_signal, now)
        elif outcome.subflow is not None:
            self.children.step(conn, task, outcome.subflow, now)
        elif outcome.ok:
            self.attempts.complete(conn, task, outcome, now)
        else:
            self.attempts.fail(conn, task, outcome, now, may_retry=outcome.retryable)

    def _fail_unrecordable(self, conn, task: Task, exc: Exception, now: float) -> Exception | None:
        conn.execute("SAVEPOINT unrecordable")
        mark = conn.commit_mark()
        try:
            self.attempts.start_deferred(conn, task)
            self.attempts.fail(conn, task, Outcome(False, error=f"durableflow could not record this node's "
                                                              f"result: {type(exc).__name__}: {exc}",
                                                   error_type="InternalError"), now, may_retry=False)
        except Exception as again:  # noqa: BLE001 - the lease expires and redelivery counts it
            _rollback_to(conn, "unrecordable", mark)
            conn.execute("RELEASE unrecordable")
            return again if isinstance(again, DurableflowError) else InvalidTransition(str(again))
        conn.execute("RELEASE unrecordable")
        return None


def _rollback_to(conn, savepoint: str, mark) -> None:
    """Undo one result's writes, the after-commit work they asked for (a plan kept, a wake-up),
    and what they changed in memory (a node's put-off start, the hand-off's offers)."""
    conn.execute(f"ROLLBACK TO {savepoint}")
    conn.forget_since(mark)
