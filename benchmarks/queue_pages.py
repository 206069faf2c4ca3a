"""Pages written per message: why the queues in queue_throughput.py are as fast as they are.

    python benchmarks/queue_pages.py                  # JSON on stdout, table on stderr
    python benchmarks/queue_pages.py --json pages.json --n 2000     # table on stdout

Under WAL, a commit appends every page it changed to the -wal file, whole. With automatic
checkpoints off, the growth of that file divided by (page size + 24-byte frame header) is the
number of pages written, so this counts them for each implementation of queue_throughput.py and
each operation: enqueue one per transaction, claim+ack one at a time, and the worker loop
(durableflow and raw: ack and claim the next in one transaction; the peers run their claim+ack).
It is a count, not a timing: the result does not depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, format_table, scratch_dir, write_json  # noqa: E402
from queue_throughput import IMPLS, open_impl, payload  # noqa: E402


def connections(q) -> list:
    """The sqlite3 connections an implementation writes through (see queue_throughput.py)."""
    name = q.name
    if name == "durableflow":
        return [q.store._writer]
    if name == "raw":
        return [q.conn]
    if name in ("huey", "huey-noresult"):
        return [q.h.storage.conn]
    if name == "huey-storage":
        return [q.st.conn]
    if name == "persist-queue":
        return list({id(c): c for c in (q.q._getter, q.q._putter)}.values())
    if name == "litequeue":
        return [q.q.conn]
    raise ValueError(name)


def pages_per_message(name: str, path: str, n: int) -> dict[str, float]:
    q = open_impl(name, path, "NORMAL")
    try:
        conns = connections(q)
        for c in conns:
            c.execute("PRAGMA wal_autocheckpoint = 0")
        size = conns[0].execute("PRAGMA page_size").fetchone()[0]

        def frames() -> float:
            wal = path + "-wal"   # appears with the first write
            return os.path.getsize(wal) / (size + 24) if os.path.exists(wal) else 0.0

        out = {"page_size": size}
        f0 = frames()
        for i in range(2 * n):
            q.enqueue([payload(i)])
        f1 = frames()
        out["enqueue"] = (f1 - f0) / (2 * n)
        for _ in range(n):
            if not q.take_one():
                raise RuntimeError(f"{name}: queue ran dry")
        f2 = frames()
        out["claim_ack"] = (f2 - f1) / n
        # The worker loop's first call only claims; count the steady calls after it.
        if not q.take_next():
            raise RuntimeError(f"{name}: queue ran dry")
        f3 = frames()
        for _ in range(n - 2):
            if not q.take_next():
                raise RuntimeError(f"{name}: queue ran dry")
        out["worker_loop"] = (frames() - f3) / (n - 2)
        out["kib_per_worker_loop_message"] = out["worker_loop"] * (size + 24) / 1024
        return out
    finally:
        q.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="messages per operation (default 1000)")
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated implementations")
    ap.add_argument("--json", metavar="FILE", help="write the JSON here (default: stderr)")
    args = ap.parse_args(argv)
    names = [x for x in args.impls.split(",") if x]
    results = {}
    with scratch_dir() as work:
        for name in names:
            results[name] = pages_per_message(name, os.path.join(work, f"{name}.db"), args.n)
    rows = [[name, r["page_size"], f"{r['enqueue']:.2f}", f"{r['claim_ack']:.2f}",
             f"{r['worker_loop']:.2f}", f"{r['kib_per_worker_loop_message']:.1f}"]
            for name, r in results.items()]
    table = ("pages written to the WAL per message (synchronous=NORMAL, autocheckpoint off)\n"
             + format_table(["queue", "page size", "enqueue", "claim+ack", "worker loop",
                             "KiB/msg (loop)"], rows, "lrrrrr"))
    print(table, file=sys.stdout if args.json else sys.stderr)
    write_json({"benchmark": "queue_pages", "messages": args.n, "results": results,
                "environment": environment()}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
