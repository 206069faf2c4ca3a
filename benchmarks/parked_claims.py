"""Parked claims: what a claim costs when many messages wait in the queue for a future time.

    python benchmarks/parked_claims.py                      # 0, 20,000 and 100,000 parked
    python benchmarks/parked_claims.py --quick              # 0 and 20,000, well under a minute
    python benchmarks/parked_claims.py --parked 0,50000 --engine-parked 0 --json pc.json

A `Wait`, a `WaitForSignal`, the parent of a `Subflow` or loop and a retry in backoff keep their
node's message in the queue, `ready` with its visible time in the future (a day ahead here).
Up to migration 0004 such parked messages stayed in the claim index, so a claim walked past all
of them, under the write lock, before it found one visible now. Since 0005 they wait apart, in
messages_due_later (held = 3), and each claim transaction only probes that index for the ones
that are due: a claim should cost the same whatever the number parked (`x empty` near 1.00).

For each count P of parked messages (--parked, default 0,20000,100000; --quick 0,20000), a fresh
file gets P messages enqueued with `Store.enqueue(NewMessage(kind='node', payload=...,
run_id=None, visible_at=now + 1 day))`, --enqueue-batch (1,000) per transaction. Then, in each
repeat, M ready messages (--messages, default 2,000; --quick 500) are enqueued, untimed, after
the parked ones (so with higher ids, as new work arrives), and taken one at a time, timed:

  claim+ack     `Store.claim(worker, limit=1)` then `Store.ack(id, token)`: two transactions
  worker loop   `Store.ack_and_claim(held)`: ack the message in hand and claim the next in one
                transaction, as the engine's worker does

A pass stops after M messages or --max-seconds (2 s; --quick 0.5 s), whichever comes first; the
figure is microseconds per message (claim and ack), the median of --repeats (5; --quick 3)
passes. The files take turns within each repeat (rotating order), so drift of the machine hits
them alike. `ratio` is the median over the empty file's median. Parked and ready messages have
the same priority (NewMessage's default, 1).

Engine row (--engine-parked N, default 20,000, 0 to skip): the same on a file holding N real
runs parked on a 1-day `Wait` node (n0 -> Wait 1d -> n2). As in history_queries.py, 200 runs go
through the engine and the rest are copies of their rows made with plain SQL (new ids, shifted
times), checked by opening the file with the engine. The ready messages there get the priority
the engine gave the parked Wait messages (4: a normal node of a normal run), so the claim order
treats them alike.
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    environment, fmt_rate, format_table, now, progress, scratch_dir, write_json,
)
from history_queries import build_db, env_line, git_state  # noqa: E402

DAY = 86400.0
PAYLOAD = '{"input":{},"inputs":{}}'          # a node message's payload, as the engine writes it
WORKER = "bench-worker"
MODES = ("claim_ack", "loop")
MODE_LABELS = {"claim_ack": "claim+ack, 1 at a time", "loop": "worker loop (ack_and_claim)"}
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]


class Subject:
    """One database file, its Store, and the ready messages it still holds from earlier passes."""

    def __init__(self, key: str, label: str, path: str, parked: int, priority: int, build: dict):
        from durableflow.storage import Store
        self.key, self.label, self.path, self.parked = key, label, path, parked
        self.priority, self.build = priority, build
        self.store = Store(path)
        self.ready_left = 0
        self.samples: dict[str, list[float]] = {m: [] for m in MODES}   # µs per message
        self.counts: dict[str, list[int]] = {m: [] for m in MODES}

    def top_up(self, m: int) -> None:
        from durableflow.storage import NewMessage
        need = m - self.ready_left
        if need > 0:
            self.store.enqueue(*[NewMessage(kind="node", payload=PAYLOAD, run_id=None, priority=self.priority)
                                 for _ in range(need)])
        self.ready_left = max(m, self.ready_left)

    def run_pass(self, mode: str, m: int, max_seconds: float) -> tuple[int, float]:
        """Take up to m messages one at a time; returns (messages claimed and acked, seconds)."""
        store = self.store
        self.top_up(m)
        gc.collect()
        n = 0
        t0 = now()
        stop = t0 + max_seconds
        if mode == "claim_ack":
            while n < m:
                got = store.claim(WORKER, 1)
                if not got:
                    break
                store.ack(got[0].id, got[0].token)
                n += 1
                if now() > stop:
                    break
        else:
            got = store.claim(WORKER, 1)
            held = got[0] if got else None
            while held is not None:
                n += 1
                if n >= m or now() > stop:
                    store.ack(held.id, held.token)
                    break
                got = store.ack_and_claim(held, 1)
                held = got[0] if got else None
        secs = now() - t0
        self.ready_left -= n
        return n, secs

    def close(self) -> None:
        self.store.close()


def parked_count(path: str) -> tuple[int, int | None]:
    """(messages ready with a visible time in the future, their priority)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        future = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 60))
        n, prio = conn.execute("SELECT count(*), max(priority) FROM messages WHERE status = 'ready' "
                               "AND visible_at > ?", (future,)).fetchone()
        return n, prio
    finally:
        conn.close()


def make_synthetic(path: str, parked: int, batch: int) -> dict:
    from durableflow.storage import NewMessage, Store
    t0 = now()
    store = Store(path)
    try:
        left = parked
        while left > 0:
            k = min(batch, left)
            visible = time.time() + DAY
            store.enqueue(*[NewMessage(kind="node", payload=PAYLOAD, run_id=None, visible_at=visible)
                            for _ in range(k)])
            left -= k
    finally:
        store.close()
    got, _ = parked_count(path)
    if got != parked:
        raise RuntimeError(f"{path}: {got} parked messages, expected {parked}")
    return {"seconds": round(now() - t0, 2), "db_mb": round(os.path.getsize(path) / 2**20, 1)}


def summarize(subjects: list[Subject]) -> list[dict]:
    base = {m: statistics.median(subjects[0].samples[m]) if subjects[0].samples[m] else None for m in MODES}
    rows = []
    for s in subjects:
        for mode in MODES:
            xs = s.samples[mode]
            if not xs:
                continue
            med = statistics.median(xs)
            rows.append({
                "key": s.key, "label": s.label, "parked": s.parked, "mode": mode,
                "us_per_message": round(med, 1), "messages_per_s": round(1e6 / med),
                "ratio_to_empty": round(med / base[mode], 2) if base[mode] else None,
                "samples_us": [round(x, 1) for x in xs], "messages_per_pass": s.counts[mode],
                "spread": round((max(xs) - min(xs)) / med, 3) if len(xs) > 1 else None,
                "ready_priority": s.priority,
            })
    return rows


def table(rows: list[dict]) -> str:
    out = [[r["label"], MODE_LABELS[r["mode"]], f"{r['us_per_message']:,.1f}", fmt_rate(r["messages_per_s"]),
            f"{r['ratio_to_empty']:.2f}",
            " / ".join(f"{x:,.0f}" for x in r["samples_us"]),
            f"{min(r['messages_per_pass']):,}-{max(r['messages_per_pass']):,}"]
           for r in rows]
    return format_table(["parked in the queue", "how", "µs per claim+ack", "msgs/s", "x empty",
                         "samples µs", "msgs/pass"], out, "llrrrll")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="0 and 20,000 parked, shorter passes")
    p.add_argument("--parked", help="comma-separated counts of parked messages (default 0,20000,100000; "
                                    "quick 0,20000); 0 is always measured, as the baseline")
    p.add_argument("--engine-parked", type=int, default=20_000,
                   help="runs parked on a 1-day Wait for the engine row (default 20000; 0 = skip)")
    p.add_argument("--messages", type=int, help="ready messages taken per pass (default 2000; quick 500)")
    p.add_argument("--repeats", type=int, help="passes per file and way (default 5; quick 3)")
    p.add_argument("--max-seconds", type=float, help="cap on one pass (default 2; quick 0.5)")
    p.add_argument("--enqueue-batch", type=int, default=1000, help="parked messages per enqueue transaction")
    p.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout)")
    p.add_argument("--dir", help="folder for the temporary database files (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the database files")
    args = p.parse_args(argv)
    levels = [int(x.replace("_", "")) for x in (args.parked or ("0,20000" if args.quick else "0,20000,100000")).split(",")]
    levels = [0] + sorted({x for x in levels if x > 0})
    args.messages = args.messages or (500 if args.quick else 2000)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.max_seconds = args.max_seconds or (0.5 if args.quick else 2.0)

    import durableflow
    env = environment() | {"durableflow": durableflow.__file__, "durableflow_git": git_state(durableflow.__file__)}
    t_start = now()
    errors: dict[str, str] = {}
    subjects: list[Subject] = []
    engine_note = None
    with scratch_dir(args.dir, keep=args.keep, prefix="dfbench-parked-") as workdir:
        try:
            for n in levels:
                path = os.path.join(workdir, f"parked-{n}.db")
                progress(f"building {path}: {n:,} parked messages")
                build = make_synthetic(path, n, args.enqueue_batch)
                subjects.append(Subject(f"p{n}", f"{n:,} parked messages", path, n, 1, build))
            if args.engine_parked > 0:
                path = os.path.join(workdir, f"engine-wait-{args.engine_parked}.db")
                try:
                    build = build_db(path, "waiting", args.engine_parked, span_s=3600)
                    got, prio = parked_count(path)
                    build["parked_messages"] = got
                    subjects.append(Subject("engine", f"{args.engine_parked:,} runs on a 1-day Wait",
                                            path, got, prio or 4, build))
                except Exception as exc:   # optional row: say why it is missing, keep the rest
                    traceback.print_exc()
                    engine_note = f"skipped: {type(exc).__name__}: {exc}"
                    errors["engine"] = engine_note
            else:
                engine_note = "skipped (--engine-parked 0)"

            for r in range(args.repeats):
                order = subjects[r % len(subjects):] + subjects[:r % len(subjects)]
                for s in order:
                    for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                        n, secs = s.run_pass(mode, args.messages, args.max_seconds)
                        if n == 0:
                            raise RuntimeError(f"{s.label}: nothing to claim")
                        s.samples[mode].append(secs / n * 1e6)
                        s.counts[mode].append(n)
                progress(f"repeat {r + 1}/{args.repeats}: " + "; ".join(
                    f"{s.label}: " + ", ".join(f"{s.samples[m][-1]:,.0f}" for m in MODES) + " µs"
                    for s in subjects))
        except Exception as exc:
            traceback.print_exc()
            errors["run"] = f"{type(exc).__name__}: {exc}"
        finally:
            for s in subjects:
                s.close()
        if args.keep:
            progress(f"database files kept in {workdir}")

    rows = summarize(subjects) if subjects and subjects[0].samples[MODES[0]] else []
    doc = {
        "benchmark": "parked_claims",
        "unit": "microseconds per message (claim and ack), median of the passes",
        "environment": env,
        "loadavg_at_start": LOAD_AT_START, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {"quick": args.quick, "parked": levels, "engine_parked": args.engine_parked,
                     "messages_per_pass": args.messages, "repeats": args.repeats,
                     "max_seconds_per_pass": args.max_seconds, "enqueue_batch": args.enqueue_batch,
                     "parked_visible_in_s": DAY, "payload": PAYLOAD},
        "builds": {s.key: s.build for s in subjects},
        "engine_row": engine_note or "measured",
        "rows": rows,
        "errors": errors,
        "seconds": round(now() - t_start, 1),
    }
    write_json(doc, args.json if args.json and args.json != "-" else None)
    if rows:
        print(f"\nClaim cost with parked messages (visible in 1 day); up to {args.messages:,} messages "
              f"or {args.max_seconds} s per pass, median of {args.repeats}")
        print(table(rows))
    if engine_note:
        print(f"engine row: {engine_note}")
    for s in subjects:
        print(f"({s.label}: file built in {s.build.get('seconds')} s, {s.build.get('db_mb')} MB)")
    print(f"\n{env_line(env)}")
    print(f"load average (1/5/15 min) at start {LOAD_AT_START}, at end {doc['loadavg_at_end']}; "
          f"{doc['seconds']} s")
    for k, v in errors.items():
        print(f"ERROR {k}: {v}")
    return 1 if any(k != "engine" for k in errors) else 0


if __name__ == "__main__":
    sys.exit(main())
