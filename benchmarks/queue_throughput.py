"""Queue throughput: durableflow's leased queue against raw sqlite3 (the ceiling) and peers.

    python benchmarks/queue_throughput.py                 # full run, synchronous=NORMAL
    python benchmarks/queue_throughput.py --sync FULL
    python benchmarks/queue_throughput.py --quick         # a short run, a few seconds
    python benchmarks/queue_throughput.py --only claim_ack,workers --json out.json

Every measurement runs each implementation on a fresh database file, repeats it (interleaving
the implementations), and reports the median in messages per second. See benchmarks/README.md.

"raw" executes exactly the statements durableflow's queue executes (copied below from
durableflow/storage/sqlite/*.sql and queue.py, and checked against them at start-up) on the same
schema (schema.sql) with the same pragmas, from the leanest Python that can drive them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import sqlite3
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from durableflow.clock import iso as _iso  # noqa: E402
from _common import (  # noqa: E402
    Measurement, environment, fmt_pct, fmt_rate, format_table, now, progress, remove_db,
    scratch_dir, write_json,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_SQL = ROOT / "schema.sql"
LEASE_SECONDS = 30.0
BUSY_TIMEOUT = 30.0
KIND = "bench"

# --- the raw ceiling: durableflow's statements, copied -------------------------------------------

RAW_SQL = {
    "enqueue": """
INSERT INTO messages (run_id, kind, target_node_id, iteration, payload, status, priority,
                      visible_at, held, max_attempts, created_at)
VALUES (?, ?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?)""",
    "claim": """
UPDATE messages SET status = 'leased'
WHERE id IN (
    SELECT id FROM messages INDEXED BY messages_claimable
    WHERE status = 'ready' AND held = 0 AND visible_at <= :now
    ORDER BY priority DESC, id
    LIMIT :limit)
RETURNING id, run_id, kind, target_node_id, iteration, payload, priority, attempts, max_attempts""",
    "claim_one": """
UPDATE messages SET status = 'leased'
WHERE id = (
    SELECT id FROM messages INDEXED BY messages_claimable
    WHERE status = 'ready' AND held = 0 AND visible_at <= :now
    ORDER BY priority DESC, id
    LIMIT 1)
RETURNING id, run_id, kind, target_node_id, iteration, payload, priority, attempts, max_attempts""",
    "lease_insert": """
INSERT INTO leases (message_id, worker_id, token, acquired_at, expires_at)
VALUES (?, ?, ?, ?, ?)""",
    "lease_release": "DELETE FROM leases WHERE message_id = ? AND token = ?",
    "message_ack": """
UPDATE messages SET status = 'acked', finished_at = ? WHERE id = ? AND status = 'leased'
RETURNING run_id, target_node_id""",
    "message_ack_known": "UPDATE messages SET status = 'acked', finished_at = ? WHERE id = ? AND status = 'leased'",
    "event_insert": "INSERT INTO events (run_id, node_id, type, data, at) VALUES (?, ?, ?, ?, ?)",
}
R = {k: v.strip() for k, v in RAW_SQL.items()}


def check_raw_sql() -> list[str]:
    """Names of copied statements that no longer match durableflow's (whitespace-insensitive)."""
    from durableflow.storage.statements import SQLITE

    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s).strip()

    theirs = {name: getattr(family, name) for family in SQLITE.families().values() for name in family.names()}
    return [name for name, sql in R.items() if norm(sql) != norm(theirs[name])]


def iso_now(t: float | None = None) -> str:
    """'2026-11-27T10:15:30.123Z', by durableflow's formatter: the fastest there is (it formats
    each second once), so the ceiling does not pay for slower timestamps than durableflow."""
    return _iso(time.time() if t is None else t)


def payload(i: int) -> str:
    return '{"n":%d,"data":"0123456789abcdef"}' % i


# --- implementations -----------------------------------------------------------------------------
# Each opens its own connection(s) on `path`; one instance per process. Operations:
#   enqueue(payloads)   all given payloads in one transaction (a list of one = one per txn)
#   take_one()          claim (or dequeue) one message and ack it; False when the queue is empty
#   take_many(k)        claim up to k and ack them in one transaction; returns how many
#   take_next()         the worker loop, one at a time: ack the message in hand and claim the next
#                       in one transaction. Libraries without such a call run take_one().
# `batch_enqueue` / `batch_take` / `multiprocess` say what the library can do through its API.

class Impl:
    name = ""
    batch_enqueue = True
    batch_take = True
    multiprocess = True
    note = ""

    def __init__(self, path: str, sync: str):
        self.path, self.sync = path, sync

    def enqueue(self, payloads: list[str]) -> None:
        raise NotImplementedError

    def take_one(self) -> bool:
        raise NotImplementedError

    def take_many(self, k: int) -> int:
        raise NotImplementedError

    def take_next(self) -> bool:
        return self.take_one()


class ChainedTake(Impl):
    """take_next as durableflow's worker does it: the first call claims; each call then acks the
    message in hand and claims the next in one transaction. Subclasses give the two steps,
    each returning the message now in hand or None."""

    _held = None

    def claim_first(self):
        raise NotImplementedError

    def ack_and_claim_next(self, held):
        raise NotImplementedError

    def take_next(self) -> bool:
        if self._held is None:
            self._held = self.claim_first()
            if self._held is None:
                return False
        self._held = self.ack_and_claim_next(self._held)
        return True

    def close(self) -> None:
        pass


class Durableflow(ChainedTake):
    name = "durableflow"

    def __init__(self, path, sync):
        super().__init__(path, sync)
        from durableflow.storage import NewMessage, Store
        self._new = NewMessage
        self.store = Store(path, synchronous=sync, busy_timeout=BUSY_TIMEOUT)
        self.worker = f"bench-{os.getpid()}"

    def enqueue(self, payloads):
        new = self._new
        self.store.enqueue(*[new(kind=KIND, payload=p) for p in payloads])

    def take_one(self):
        got = self.store.claim(self.worker, 1, LEASE_SECONDS)
        if not got:
            return False
        self.store.ack(got[0].id, got[0].token)
        return True

    def claim_first(self):
        got = self.store.claim(self.worker, 1, LEASE_SECONDS)
        return got[0] if got else None

    def ack_and_claim_next(self, held):
        nxt = self.store.ack_and_claim(held, 1, LEASE_SECONDS)
        return nxt[0] if nxt else None

    def take_many(self, k):
        got = self.store.claim(self.worker, k, LEASE_SECONDS)
        if got:
            self.store.ack_many(got)
        return len(got)

    def close(self):
        self.store.close()


class Raw(ChainedTake):
    """durableflow's statements and pragmas on plain sqlite3, without durableflow's Python."""

    name = "raw"

    def __init__(self, path, sync):
        super().__init__(path, sync)
        fresh = not os.path.exists(path) or os.path.getsize(path) == 0
        c = self.conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT,
                                        check_same_thread=False)
        c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        c.execute("PRAGMA foreign_keys = ON")
        c.execute(f"PRAGMA synchronous = {sync}")
        if fresh:
            from durableflow.storage.connection import PAGE_SIZE
            c.execute(f"PRAGMA page_size = {PAGE_SIZE}")   # as durableflow creates its files
            c.execute("PRAGMA journal_mode = WAL")
            c.executescript("BEGIN IMMEDIATE;\n" + SCHEMA_SQL.read_text(encoding="utf-8") + "\nCOMMIT;")
        self.worker = f"bench-{os.getpid()}"
        self.who = json.dumps(self.worker)

    def _txn(self, fn, *args):
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            out = fn(c, *args)
            c.execute("COMMIT")
            return out
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def enqueue(self, payloads):
        self._txn(self._enqueue, payloads, iso_now())

    @staticmethod
    def _enqueue(c, payloads, now_s):
        ins = R["enqueue"]
        if len(payloads) == 1:
            c.execute(ins, (None, KIND, None, 0, payloads[0], 1, now_s, 0, 5, now_s))
            return
        c.executemany(ins, [(None, KIND, None, 0, p, 1, now_s, 0, 5, now_s) for p in payloads])

    def _claim(self, c, k, now_s, expires_s):
        rows = c.execute(R["claim_one"] if k == 1 else R["claim"], {"now": now_s, "limit": k}).fetchall()
        if not rows:
            return rows
        token = os.urandom(8).hex()
        if len(rows) == 1:
            r = rows[0]
            c.execute(R["lease_insert"], (r[0], self.worker, token, now_s, expires_s))
            c.execute(R["event_insert"], (r[1], r[3], "message.leased",
                                          f'{{"id":{r[0]},"from":"ready","worker":{self.who}}}', now_s))
        else:
            rows.sort(key=lambda r: (-r[6], r[0]))
            c.executemany(R["lease_insert"], [(r[0], self.worker, token, now_s, expires_s) for r in rows])
            c.executemany(R["event_insert"], [
                (r[1], r[3], "message.leased", f'{{"id":{r[0]},"from":"ready","worker":{self.who}}}', now_s)
                for r in rows])
        return [(r[0], r[1], r[3], token) for r in rows]

    @staticmethod
    def _ack(c, items, now_s, known=False):
        release, ack, ev = R["lease_release"], R["message_ack"], R["event_insert"]
        if len(items) == 1:
            mid, run_id, node_id, token = items[0]
            if c.execute(release, (mid, token)).rowcount != 1:
                raise RuntimeError("stale lease")
            if known:   # as ack_and_claim: run and node are known, no RETURNING
                if c.execute(R["message_ack_known"], (now_s, mid)).rowcount != 1:
                    raise RuntimeError("not leased")
            else:       # as ack(id, token): RETURNING names the run and node for the event
                row = c.execute(ack, (now_s, mid)).fetchone()
                if row is None:
                    raise RuntimeError("not leased")
                run_id, node_id = row
            c.execute(ev, (run_id, node_id, "message.acked", f'{{"id":{mid},"from":"leased"}}', now_s))
            return
        # Batches: as durableflow's ack_many_txn, one executemany per statement.
        if c.executemany(release, [(i[0], i[3]) for i in items]).rowcount != len(items):
            raise RuntimeError("stale lease")
        if c.executemany(R["message_ack_known"], [(now_s, i[0]) for i in items]).rowcount != len(items):
            raise RuntimeError("not leased")
        c.executemany(ev, [(i[1], i[2], "message.acked", f'{{"id":{i[0]},"from":"leased"}}', now_s)
                           for i in items])

    def _take(self, k):
        t = time.time()
        got = self._txn(self._claim, k, iso_now(t), iso_now(t + LEASE_SECONDS))
        if got:
            self._txn(self._ack, got, iso_now())
        return len(got)

    def take_one(self):
        return self._take(1) == 1

    def claim_first(self):
        t = time.time()
        got = self._txn(self._claim, 1, iso_now(t), iso_now(t + LEASE_SECONDS))
        return got[0] if got else None

    def ack_and_claim_next(self, held):
        t = time.time()
        got = self._txn(self._ack_claim, held, iso_now(t), iso_now(t + LEASE_SECONDS))
        return got[0] if got else None

    def _ack_claim(self, c, held, now_s, expires_s):
        self._ack(c, [held], now_s, known=True)
        return self._claim(c, 1, now_s, expires_s)

    def take_many(self, k):
        return self._take(k)

    def close(self):
        self.conn.close()


def _huey_task(payload):
    """What every huey run executes: returns a value, so huey stores it as the task's result,
    its only durable record that the task ran (huey has no ack)."""
    return len(payload)


def _huey_task_none(payload):
    """The same work, fire and forget: returns None, so huey records nothing."""
    return None


class Huey(Impl):
    """huey as its users run it: SqliteHuey, a task call to enqueue, and what huey's consumer does
    per task: `dequeue()` (which deletes the task), then `execute(task)`, which runs it, clears its
    revocation key and stores its result. The result is huey's record that the task ran: the
    counterpart of durableflow's ack, so this is the peer the verdict counts."""

    name = "huey"
    batch_enqueue = False
    batch_take = False
    note = ("task API: enqueue = calling a task; claim+ack = dequeue() + execute(), as huey's "
            "consumer does per task; the task returns a value, stored as its result (huey's only "
            "record that it ran)")
    _fn = staticmethod(_huey_task)

    def __init__(self, path, sync):
        super().__init__(path, sync)
        from huey import SqliteHuey
        self.h = SqliteHuey("bench", filename=path, journal_mode="wal", timeout=BUSY_TIMEOUT,
                            fsync=None)
        # fsync=True/False maps to synchronous FULL/OFF only; set the level ourselves on the
        # storage's (persistent, lazily opened) connection.
        self.h.storage.conn.execute(f"PRAGMA synchronous = {sync}")
        self.task = self.h.task()(self._fn)

    def enqueue(self, payloads):
        assert len(payloads) == 1
        self.task(payloads[0])

    def take_one(self):
        task = self.h.dequeue()
        if task is None:
            return False
        self.h.execute(task)
        return True

    def close(self):
        self.h.storage.close()


class HueyNoResult(Huey):
    """huey with a task that returns None: fire and forget, nothing recorded when it ran."""

    name = "huey-noresult"
    note = ("reference: huey's task API with a task returning None, so huey stores nothing: a "
            "task lost in a crash after dequeue leaves no trace; not counted in the verdict")
    _fn = staticmethod(_huey_task_none)


class HueyStorage(Impl):
    """huey's storage layer alone (`huey.storage.SqliteStorage`), below its task API: enqueue /
    dequeue of raw bytes. Shown for reference, not counted as a peer: dequeue deletes the row
    (at most once: a crash after it loses the task), with no task envelope, no revocation check,
    no lease and no ack."""

    name = "huey-storage"
    batch_enqueue = False
    batch_take = False
    note = ("reference, not a peer: huey's storage class below its API; dequeue deletes the row "
            "in one transaction (at most once, no lease, no ack)")

    def __init__(self, path, sync):
        super().__init__(path, sync)
        from huey.storage import SqliteStorage
        self.st = SqliteStorage(name="bench", filename=path, journal_mode="wal", timeout=BUSY_TIMEOUT,
                                fsync=None)
        self.st.conn.execute(f"PRAGMA synchronous = {sync}")

    def enqueue(self, payloads):
        assert len(payloads) == 1
        self.st.enqueue(payloads[0].encode())

    def take_one(self):
        return self.st.dequeue() is not None

    def close(self):
        self.st.close()


class PersistQueue(Impl):
    """persist-queue's SQLiteAckQueue: put / get + ack, multithreading=True, auto_commit=True."""

    name = "persist-queue"
    batch_enqueue = False
    batch_take = False
    multiprocess = False
    note = ("get() selects outside a write transaction and marks the row without a status check, "
            "so two processes can get the same message: not run with several processes")

    def __init__(self, path, sync):
        super().__init__(path, sync)
        from persistqueue import SQLiteAckQueue
        # It takes a directory and names the file itself.
        folder, fname = os.path.split(path)
        self.q = SQLiteAckQueue(folder, db_file_name=fname, multithreading=True, auto_commit=True,
                                timeout=BUSY_TIMEOUT)
        # No option for it; both of its connections are reachable as _getter / _putter.
        for conn in {id(self.q._getter): self.q._getter, id(self.q._putter): self.q._putter}.values():
            conn.execute(f"PRAGMA synchronous = {sync}")
        from persistqueue.exceptions import Empty
        self._empty = Empty

    def enqueue(self, payloads):
        assert len(payloads) == 1
        self.q.put(payloads[0])

    def take_one(self):
        try:
            item = self.q.get(block=False, raw=True)
        except self._empty:
            return False
        self.q.ack(id=item["pqid"])
        return True

    def close(self):
        self.q.close()


class LiteQueue(Impl):
    """litequeue's LiteQueue: put / pop + done."""

    name = "litequeue"
    batch_take = False

    def __init__(self, path, sync):
        super().__init__(path, sync)
        from litequeue import LiteQueue as LQ
        self.q = LQ(path, queue_name="bench", timeout=BUSY_TIMEOUT)
        self.q.conn.execute(f"PRAGMA synchronous = {sync}")   # it hard-codes NORMAL; override

    def enqueue(self, payloads):
        if len(payloads) == 1:
            self.q.put(payloads[0])
            return
        with self.q.transaction("IMMEDIATE"):   # its public transaction() context manager
            for p in payloads:
                self.q.put(p)

    def take_one(self):
        m = self.q.pop()
        if m is None:
            return False
        self.q.done(m.message_id)
        return True

    def close(self):
        self.q.close()


IMPLS: dict[str, type[Impl]] = {
    c.name: c for c in (Durableflow, Raw, Huey, PersistQueue, LiteQueue, HueyNoResult, HueyStorage)}
# The "vs peers" verdict: each peer as its users run it, recording what durableflow records.
# huey-noresult and huey-storage do less (nothing recorded; no task API) and are shown for reference.
PEERS = ("huey", "persist-queue", "litequeue")


def open_impl(name: str, path: str, sync: str) -> Impl:
    return IMPLS[name](path, sync)


def prefill(name: str, path: str, sync: str, n: int, batch: int = 500) -> None:
    q = open_impl(name, path, sync)
    try:
        if q.batch_enqueue:
            for i in range(0, n, batch):
                q.enqueue([payload(j) for j in range(i, min(n, i + batch))])
        else:
            for i in range(n):
                q.enqueue([payload(i)])
    finally:
        q.close()


# --- single-process measurements -----------------------------------------------------------------

# Every timed loop stops at n messages or after `cap` seconds, whichever comes first, so a slow
# disk (synchronous=FULL) or a slow peer cannot stretch the run; the rate is messages / seconds.

def run_enqueue(name, path, sync, n, per_txn, cap):
    q = open_impl(name, path, sync)
    try:
        batches = [[payload(j) for j in range(i, min(n, i + per_txn))] for i in range(0, n, per_txn)]
        enqueue = q.enqueue
        done = 0
        t0 = now()
        deadline = t0 + cap
        for b in batches:
            enqueue(b)
            done += len(b)
            if now() >= deadline:
                break
        return done, now() - t0
    finally:
        q.close()


def take_loop(q: Impl, per_txn: int, n: int, cap: float) -> tuple[int, float]:
    """Claim+ack until the queue is empty, n were taken, or cap seconds passed."""
    done = 0
    t0 = now()
    deadline = t0 + cap
    if per_txn in (1, "next"):
        take = q.take_one if per_txn == 1 else q.take_next
        while done < n and take():
            done += 1
            if not done & 15 and now() >= deadline:
                break
    else:
        take = q.take_many
        while done < n:
            got = take(min(per_txn, n - done))
            if not got:
                break
            done += got
            if now() >= deadline:
                break
    return done, now() - t0


def run_take(name, path, sync, n, per_txn, cap):
    prefill(name, path, sync, n)
    q = open_impl(name, path, sync)
    try:
        done, elapsed = take_loop(q, per_txn, n, cap)
    finally:
        q.close()
    if done != n and elapsed < cap:
        raise RuntimeError(f"{name}: took {done} of {n} messages")
    return done, elapsed


# --- multi-process measurements ------------------------------------------------------------------

def _consumer(name, path, sync, cap, barrier, producer_done, results):
    try:
        q = open_impl(name, path, sync)
        take = q.take_next         # a worker's loop: durableflow acks and claims in one transaction
        barrier.wait()
        start = now()
        deadline = start + cap
        done, capped = 0, False
        while True:
            if take():
                done += 1
                if not done & 15 and now() >= deadline:
                    capped = True
                    break
                continue
            if now() >= deadline:
                capped = True
                break
            if producer_done is None:
                break
            if producer_done.value:
                if take():            # the producer finished before we looked: drain what's left
                    done += 1
                    continue
                break
            time.sleep(0.0002)
        end = now()
        q.close()
        results.put(("consumer", done, start, end, capped, None))
    except BaseException:
        results.put(("consumer", 0, now(), now(), False, traceback.format_exc()))
        barrier.abort()


def _producer(name, path, sync, n, cap, barrier, producer_done, results):
    try:
        q = open_impl(name, path, sync)
        items = [[payload(i)] for i in range(n)]
        enqueue = q.enqueue
        barrier.wait()
        start = now()
        deadline = start + cap
        done, capped = 0, False
        for b in items:
            enqueue(b)
            done += 1
            if now() >= deadline:
                capped = done < n
                break
        end = now()
        producer_done.value = 1
        q.close()
        results.put(("producer", done, start, end, capped, None))
    except BaseException:
        producer_done.value = 1
        results.put(("producer", 0, now(), now(), False, traceback.format_exc()))
        barrier.abort()


def _mp_context():
    # fork is cheap and safe here: the parent holds no open connection when it forks.
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def run_processes(name, path, sync, n, workers, producer: bool, cap: float):
    """`workers` consumer processes (each its own connection) drain n messages: pre-filled, or
    enqueued one per transaction by a concurrent producer process. Returns (messages, seconds)."""
    ctx = _mp_context()
    if not producer:
        prefill(name, path, sync, n)
    else:
        open_impl(name, path, sync).close()          # create the schema before the race
    parties = workers + (1 if producer else 0)
    barrier = ctx.Barrier(parties + 1)
    results = ctx.Queue()
    done_flag = ctx.Value("b", 0) if producer else None
    procs = [ctx.Process(target=_consumer, args=(name, path, sync, cap, barrier, done_flag, results))
             for _ in range(workers)]
    if producer:
        procs.append(ctx.Process(target=_producer, args=(name, path, sync, n, cap, barrier, done_flag, results)))
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)
        out = [results.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    errors = [e for *_, e in out if e]
    if errors:
        raise RuntimeError(f"{name}: a process failed:\n{errors[0]}")
    consumed = sum(o[1] for o in out if o[0] == "consumer")
    produced = sum(o[1] for o in out if o[0] == "producer") if producer else n
    capped = any(o[4] for o in out)
    # From the first process let through the barrier to the last one done.
    elapsed = max(o[3] for o in out) - min(o[2] for o in out)
    if consumed > produced or (consumed != produced and not capped):
        raise RuntimeError(f"{name}: consumers took {consumed} messages of {produced}")
    return consumed, elapsed


# --- claims on top of a long history -------------------------------------------------------------

def build_history(path: str, sync: str, n: int) -> float:
    """A durableflow database holding n acked messages, written by one INSERT ... SELECT."""
    from durableflow.storage import Store
    Store(path, synchronous=sync).close()
    c = sqlite3.connect(path, isolation_level=None)
    t0 = now()
    ts = iso_now(time.time() - 86400)
    c.execute("BEGIN IMMEDIATE")
    c.execute("""
        WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
        INSERT INTO messages (kind, payload, status, priority, visible_at, held, attempts,
                              max_attempts, created_at, finished_at)
        SELECT 'bench', '{"n":' || i || ',"data":"0123456789abcdef"}', 'acked', 1, ?, 0, 0, 5, ?, ?
        FROM seq""", (n, ts, ts, ts))
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return now() - t0


# --- the plan ------------------------------------------------------------------------------------

SIZES = {
    #                      default   quick
    # Large enough that a run lasts a good fraction of a second: a 0.1 s run is mostly noise.
    "enqueue":            (20000,    2000),
    "enqueue_batch":      (30000,    3000),
    "claim_ack":          (8000,     800),
    "claim_next":         (8000,     800),
    "claim_ack_batch":    (30000,    3000),
    "workers":            (4000,     500),
    "e2e":                (4000,     500),
    "history_rows":       (1_000_000, 100_000),
    "history_fresh":      (5000,     500),
}
ALL_IMPLS = tuple(IMPLS)


def plan(args):
    """(key, label, kind, params, target, impls) per row, in table order."""
    B = args.batch
    rows = [
        ("enqueue", "enqueue, 1 per txn", "enqueue", {"per_txn": 1}, 0.75),
        ("enqueue_batch", f"enqueue, {B} per txn", "enqueue", {"per_txn": B}, 0.50),
        ("claim_ack", "claim+ack, 1 at a time", "take", {"per_txn": 1}, 0.75),
        ("claim_next", "worker loop, 1 at a time", "take", {"per_txn": "next"}, 0.75),
        ("claim_ack_batch", f"claim {B} + ack_many", "take", {"per_txn": B}, 0.50),
    ]
    for w in args.workers:
        rows.append((f"workers_{w}", f"{w} worker process{'es' if w > 1 else ''}, pre-filled",
                     "procs", {"workers": w, "producer": False}, 0.75 if w == 1 else 0.60))
    rows.append(("e2e", "1 producer + 2 consumers", "procs", {"workers": 2, "producer": True}, 0.60))
    return rows


def group_of(key: str) -> str:
    return "workers" if key.startswith("workers_") else key


def applicable(impl_cls: type[Impl], kind: str, params: dict) -> str | None:
    """None if the implementation can run this row; else why not."""
    if kind == "enqueue" and params["per_txn"] > 1 and not impl_cls.batch_enqueue:
        return "no batch enqueue in its API"
    if kind == "take" and params["per_txn"] not in (1, "next") and not impl_cls.batch_take:
        return "no batch claim/ack in its API"
    if kind == "procs" and not impl_cls.multiprocess:
        return "not safe with several processes"
    return None


def run_row(args, work_dir, key, kind, params, impls, n):
    results = {name: Measurement() for name in impls}
    runnable = {}
    for name in impls:
        why = applicable(IMPLS[name], kind, params)
        if why:
            results[name].notes.append(why)
        else:
            runnable[name] = results[name]
    by_repeat: dict[str, dict[int, float]] = {name: {} for name in runnable}
    for r in range(args.repeats):
        # Interleave implementations within each repeat. durableflow and raw run back to back
        # (taking turns going first) so their per-repeat ratio sees the same machine; the peers
        # follow in rotating order.
        pair = [x for x in ("durableflow", "raw") if x in runnable]
        pair = pair if r % 2 == 0 else pair[::-1]
        others = [x for x in runnable if x not in pair]
        order = pair + (others[r % len(others):] + others[:r % len(others)] if others else [])
        for name in order:
            path = os.path.join(work_dir, f"{key}-{name}-{r}.db")
            remove_db(path)
            try:
                cap = args.max_seconds
                if kind == "enqueue":
                    ops, secs = run_enqueue(name, path, args.sync, n, params["per_txn"], cap)
                elif kind == "take":
                    ops, secs = run_take(name, path, args.sync, n, params["per_txn"], cap)
                else:
                    ops, secs = run_processes(name, path, args.sync, n, params["workers"],
                                              params["producer"], cap)
                by_repeat[name][r] = runnable[name].add(ops, secs)
            except Exception as exc:  # a peer failing must not sink the whole run
                runnable[name].notes.append(f"repeat {r}: {type(exc).__name__}: {exc}".splitlines()[0])
                progress(f"  ! {key}/{name}: {exc}")
            finally:
                remove_db(path)
    paired = [by_repeat["durableflow"][r] / by_repeat["raw"][r]
              for r in range(args.repeats)
              if r in by_repeat.get("durableflow", {}) and r in by_repeat.get("raw", {})]
    return results, paired


def run_history(args, work_dir, n_hist, n_fresh):
    """durableflow claim+ack one at a time: empty table vs n_hist acked messages."""
    empty_path = os.path.join(work_dir, "history-empty.db")
    full_path = os.path.join(work_dir, "history-full.db")
    progress(f"  building {n_hist:,} acked messages ...")
    build_s = build_history(full_path, args.sync, n_hist)
    from durableflow.storage import Store
    Store(empty_path, synchronous=args.sync).close()
    m_empty, m_full = Measurement(), Measurement()
    ratios = []
    chunk = max(1, min(250, n_fresh // 10))
    for _ in range(args.repeats):
        # Both stores open side by side, taking turns in short chunks: a change in the machine's
        # load during the repeat hits both alike, so their ratio stays meaningful.
        for path in (empty_path, full_path):
            prefill("durableflow", path, args.sync, n_fresh)
        _settle()
        qe, qf = open_impl("durableflow", empty_path, args.sync), open_impl("durableflow", full_path, args.sync)
        try:
            acc = {id(qe): [0, 0.0], id(qf): [0, 0.0]}
            turn = 0
            while any(acc[id(q)][0] < n_fresh and acc[id(q)][1] < args.max_seconds for q in (qe, qf)):
                for q in ((qe, qf) if turn % 2 == 0 else (qf, qe)):
                    a = acc[id(q)]
                    if a[0] < n_fresh and a[1] < args.max_seconds:
                        d, t = take_loop(q, 1, min(chunk, n_fresh - a[0]), args.max_seconds)
                        a[0] += d
                        a[1] += t
                turn += 1
        finally:
            qe.close()
            qf.close()
        re_, rf = m_empty.add(*acc[id(qe)]), m_full.add(*acc[id(qf)])
        ratios.append(rf / re_)
    c = sqlite3.connect(full_path)
    acked = c.execute("SELECT count(*) FROM messages WHERE status = 'acked'").fetchone()[0]
    c.close()
    return m_empty, m_full, build_s, acked, ratios


def _settle() -> None:
    """Flush dirty pages (e.g. of the freshly built history) so the kernel's write-back does not
    compete with the fsyncs of the timed loop."""
    if hasattr(os, "sync"):
        os.sync()


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "MISS")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and 2 repeats (a few seconds)")
    ap.add_argument("--sync", default="NORMAL", type=str.upper, choices=("NORMAL", "FULL"),
                    help="PRAGMA synchronous for every implementation (default NORMAL)")
    ap.add_argument("--only", default="", help="comma-separated rows to run: enqueue, enqueue_batch, "
                    "claim_ack, claim_next, claim_ack_batch, workers, e2e, history (default: all)")
    ap.add_argument("--impls", default=",".join(ALL_IMPLS), help="comma-separated implementations "
                    f"(default: {','.join(ALL_IMPLS)})")
    ap.add_argument("--repeats", type=int, help="repeats per measurement (default 5, --quick 2)")
    ap.add_argument("--batch", type=int, default=100, help="messages per transaction in batch rows")
    ap.add_argument("--workers", default="1,2,4", help="worker-process counts (default 1,2,4)")
    ap.add_argument("--max-seconds", type=float, help="stop each timed run after this long "
                    "(default 1.5, --quick 0.5); the rate is messages done / time taken")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every message count")
    for k, (d, _) in SIZES.items():
        ap.add_argument(f"--n-{k.replace('_', '-')}", type=int, dest=f"n_{k}", help=f"default {d:,}")
    ap.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout; "
                    "default: stdout, with the table on stderr)")
    ap.add_argument("--dir", help="where to put the database files (default: system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the database files")
    args = ap.parse_args(argv)

    args.repeats = args.repeats or (2 if args.quick else 5)
    args.max_seconds = args.max_seconds or (0.5 if args.quick else 1.5)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    known = {"enqueue", "enqueue_batch", "claim_ack", "claim_next", "claim_ack_batch", "workers", "e2e", "history"}
    if only - known:
        ap.error(f"--only: unknown {', '.join(sorted(only - known))}; choose from {', '.join(sorted(known))}")
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    if set(impls) - set(IMPLS):
        ap.error(f"--impls: unknown {', '.join(sorted(set(impls) - set(IMPLS)))}")
    sizes = {}
    for k, (d, q) in SIZES.items():
        given = getattr(args, f"n_{k}")
        sizes[k] = given if given is not None else max(1, int((q if args.quick else d) * args.scale))

    drift = check_raw_sql()
    if drift:
        progress(f"WARNING: raw statements differ from durableflow's storage/sqlite/*.sql: {', '.join(drift)}")

    started = time.time()
    doc = {
        "benchmark": "queue_throughput",
        "unit": "messages per second (median of repeats)",
        "settings": {"synchronous": args.sync, "journal_mode": "WAL", "repeats": args.repeats,
                     "batch": args.batch, "quick": args.quick, "sizes": sizes,
                     "max_seconds_per_run": args.max_seconds,
                     "lease_seconds": LEASE_SECONDS, "busy_timeout_s": BUSY_TIMEOUT},
        "environment": environment(),
        "raw_sql_matches_durableflow": not drift,
        "peer_notes": {n: IMPLS[n].note for n in ALL_IMPLS if IMPLS[n].note},
        "rows": [],
    }
    table_rows = []
    with scratch_dir(args.dir, keep=args.keep) as work_dir:
        progress(f"queue_throughput: synchronous={args.sync}, repeats={args.repeats}, files in {work_dir}")
        for key, label, kind, params, target in plan(args):
            if only and group_of(key) not in only:
                continue
            n = sizes[group_of(key)]
            progress(f"- {label} (n={n:,}) ...")
            t0 = time.time()
            res, paired = run_row(args, work_dir, key, kind, params, impls, n)
            df = res.get("durableflow") and res["durableflow"].median
            raw = res.get("raw") and res["raw"].median
            # df/raw: the median of per-repeat ratios of back-to-back runs (robust to load drift).
            ratio = statistics.median(paired) if paired else None
            peer_rates = {p: res[p].median for p in PEERS if p in res and res[p].median}
            best_peer = max(peer_rates.values()) if peer_rates else None
            above = None if not (df and best_peer) else df > best_peer
            meets = None if ratio is None else ratio >= target
            doc["rows"].append({
                "key": key, "label": label, "messages": n, "params": params,
                "target_ratio_to_raw": target, "ratio_to_raw": None if ratio is None else round(ratio, 3),
                "ratio_to_raw_samples": [round(x, 3) for x in paired],
                "ratio_of_medians": round(df / raw, 3) if df and raw else None,
                "meets_raw_target": meets, "above_every_peer": above,
                "results": {name: m.as_dict() for name, m in res.items()},
                "wall_s": round(time.time() - t0, 2),
            })
            table_rows.append([label, f"{n:,}"] + [fmt_rate(res[i].median) if i in res else "" for i in impls]
                              + [fmt_pct(ratio), f">={100 * target:.0f}%", verdict(meets), verdict(above)])
            progress("  " + ", ".join(f"{k}={fmt_rate(m.median)}" for k, m in res.items()))

        history = None
        if not only or "history" in only:
            n_hist, n_fresh = sizes["history_rows"], sizes["history_fresh"]
            label = f"claim+ack 1 at a time: {n_hist:,} acked vs empty"
            progress(f"- {label} (n={n_fresh:,}) ...")
            m_empty, m_full, build_s, acked, ratios = run_history(args, work_dir, n_hist, n_fresh)
            ratio = statistics.median(ratios)   # median of the paired per-repeat ratios
            history = {"acked_rows": acked, "build_seconds": round(build_s, 2), "messages": n_fresh,
                       "empty": m_empty.as_dict(), "with_history": m_full.as_dict(),
                       "ratio": round(ratio, 3), "ratio_samples": [round(x, 3) for x in ratios],
                       "target_ratio": 0.90, "meets_target": ratio >= 0.90}
            doc["history"] = history
            progress(f"  empty={fmt_rate(m_empty.median)}, with history={fmt_rate(m_full.median)}")

    doc["wall_seconds"] = round(time.time() - started, 1)
    doc["loadavg_after_1_5_15"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None

    headers = ["measurement", "n (max)"] + impls + ["df/raw", "target", "vs raw", "vs peers"]
    lines = [f"durableflow queue throughput: synchronous={args.sync}, WAL, median of {args.repeats} "
             f"repeats, messages/s (df/raw: median of per-repeat ratios)"]
    if table_rows:
        lines.append(format_table(headers, table_rows))
    if history:
        lines.append("")
        lines.append(format_table(
            ["claim+ack 1 at a time (durableflow)", "n", "empty table", f"{history['acked_rows']:,} acked",
             "ratio", "target", "verdict"],
            [["history must not slow claims", f"{history['messages']:,}",
              fmt_rate(history["empty"]["ops_per_s"]), fmt_rate(history["with_history"]["ops_per_s"]),
              fmt_pct(history["ratio"]), ">=90%", verdict(history["meets_target"])]]))
    notes = [f"  {r['label']}: {name}: {'; '.join(m['notes'])}" for r in doc["rows"]
             for name, m in r["results"].items() if m.get("notes") and m["ops_per_s"] is not None]
    if drift:
        lines.append(f"WARNING: raw statements differ from durableflow's: {', '.join(drift)}")
    if notes:
        lines.append("notes:\n" + "\n".join(notes))
    load = doc["environment"].get("loadavg_1_5_15")
    lines.append(f"(wall time {doc['wall_seconds']} s; load average before {load}, after "
                 f"{doc['loadavg_after_1_5_15']}; n/a = not offered by that library's API, see README)")
    table = "\n".join(lines)

    if args.json in (None, "-"):
        sys.stderr.write(table + "\n")
        write_json(doc, None)
    else:
        write_json(doc, args.json)
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
