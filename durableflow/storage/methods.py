"""The Store's public methods: each is one transaction, run through whichever plumbing the store
has (StoreBase on SQLite, PostgresPlumbing on PostgreSQL); the engine's own transactions call the
`*_txn` helpers of the family modules through `write`."""

from __future__ import annotations

from typing import Iterable

from durableflow.records import Claimed, NewMessage, Reclaimed
from durableflow.storage import events, metrics, nodes, queue, runs, workflows


class StoreMethods:
    """Mixed into Store (SQLite) and PgStore (PostgreSQL) before their plumbing."""

    # --- the queue ---------------------------------------------------------------------------

    def enqueue(self, *messages: NewMessage) -> list[int]:
        return self.write(queue.enqueue_txn, messages, self.clock.now())

    def claim(self, worker_id: str, limit: int = 1, lease_seconds: float = 30.0) -> list[Claimed]:
        return self.write(queue.claim_txn, worker_id, limit, lease_seconds, self.clock.now())

    def ack(self, message_id: int, token: str) -> None:
        self.write(queue.ack_txn, message_id, token, self.clock.now())

    def ack_and_claim(self, done: Claimed, limit: int = 1, lease_seconds: float = 30.0) -> list[Claimed]:
        """Ack `done` and lease up to `limit` more to the same worker, in one transaction: the
        loop of a worker that takes one message at a time, at one commit per message."""
        return self.write(queue.ack_and_claim_txn, done, limit, lease_seconds, self.clock.now())

    def ack_many(self, claimed: Iterable[Claimed]) -> None:
        self.write(queue.ack_many_txn, list(claimed), self.clock.now())

    def nack(self, message_id: int, token: str, *, delay: float = 0.0, error: str | None = None,
             count_attempt: bool = False) -> None:
        self.write(queue.nack_txn, message_id, token, self.clock.now(), delay=delay, error=error,
                   count_attempt=count_attempt)

    def extend(self, worker_id: str, lease_seconds: float = 30.0) -> int:
        return self.write(queue.extend_txn, worker_id, self.clock.now() + lease_seconds)

    def extend_lease(self, message_id: int, token: str, lease_seconds: float = 30.0) -> None:
        self.write(queue.extend_one_txn, message_id, token, self.clock.now() + lease_seconds)

    def reclaim(self, dead_workers: Iterable[str] = ()) -> list[Reclaimed]:
        return self.write(queue.reclaim_txn, self.clock.now(), dead_workers=list(dead_workers))

    def requeue_dead(self, message_id: int) -> None:
        self.write(queue.requeue_dead_txn, message_id, self.clock.now())

    def dead_letters(self) -> list[dict]:
        return self.read(queue.dead_letters)

    def message(self, message_id: int) -> dict:
        return self.read(queue.message_row, message_id)

    def queue_counts(self) -> dict[str, int]:
        return self.read(queue.queue_counts)

    def deliveries_of_worker(self, worker_id: str) -> set[tuple[str, str, int]]:
        """(run_id, node_id, iteration) of the node messages a worker holds leases on."""
        rows = self.read(queue.leases_of_worker, worker_id)
        return {(r[3], r[4], r[5]) for r in rows if r[3] is not None}

    def leased_count(self) -> int:
        return self.read(queue.leased_count)

    def next_visible_at(self) -> str | None:
        return self.read(queue.next_visible_at)

    # --- runs, nodes, events, workflows ----------------------------------------------------------

    def get_run_row(self, run_id: str) -> dict:
        return self.read(runs.get_run_row, run_id)

    def node_rows(self, run_id: str) -> list[dict]:
        return self.read(nodes.node_rows_txn, run_id)

    def run_snapshot(self, run_id: str, now: str) -> tuple[dict, list[dict], dict]:
        """The run row, its node rows and its figures at `now`, read in one snapshot."""
        def txn(c):
            row = runs.get_run_row(c, run_id)
            row["rerun_of"] = runs.rerun_of(c, run_id)
            return row, nodes.node_rows_txn(c, run_id), metrics.run_figures(c, run_id, now)
        return self.read(txn)

    def list_runs(self, status: str | None = None, workflow_id: str | None = None, limit: int = 100,
                  top_level: bool = True) -> list[dict]:
        return self.read(runs.list_runs, status, workflow_id, limit, top_level)

    def has_child_runs(self) -> bool:
        return self.read(runs.has_child_runs)

    def run_statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        return self.read(runs.run_statuses, run_ids)

    def next_run_due_at(self) -> str | None:
        return self.read(runs.next_run_due_at)

    def events_after(self, after: int = 0, run_id: str | None = None, limit: int = 1000) -> list[dict]:
        return self.read(events.events_after, after, run_id, limit)

    def last_event_seq(self) -> int:
        return self.read(events.last_event_seq)

    def get_workflow(self, workflow_id: str, version: int | None = None) -> dict:
        return self.read(workflows.get_workflow, workflow_id, version)

    def list_workflows(self) -> list[dict]:
        return self.read(workflows.list_workflows)

    def stats(self, *, hour_ago: str, day_ago: str) -> dict:
        """Counts over the whole database and the figures of the last hour and day, read in one
        snapshot."""
        return self.read(metrics.stats, hour_ago=hour_ago, day_ago=day_ago)
