"""Recovery time after SIGKILL with 10,000 in-flight messages.

    python benchmarks/recovery_time.py                 # 10,000 leased messages, 3 repeats
    python benchmarks/recovery_time.py --quick         # 2,000 leased messages, 2 repeats
    python benchmarks/recovery_time.py --inflight 50000 --history 100000 --json out.json

What happens, per repeat, on a fresh copy of a prepared database:

 1. Prepared once (not timed): a workflow `hold` whose only node is a Python node that would block
    forever, and N runs of it started, so N node messages are ready. Optionally H finished runs
    of a 3-node Noop chain before them, as history (--history).
 2. A holder subprocess opens the engine, registers itself as a worker (a real `workers` row with
    its pid, as `Worker.start` writes it) and claims the N messages through `engine.service.claim` with a
    one-hour lease, so they are `leased` by a live process and would not expire on their own.
    The parent checks the leases in the database, then SIGKILLs the holder and reaps it.
 3. A fresh measuring subprocess does what a restarted worker does and times each step:
    `Engine(path)` (open, WAL recovery, migration check), `PRAGMA quick_check` (only when
    `Worker.start` runs it, as it does at the time of writing: phase "check"), registering its
    worker row,
    `engine.recover()` (finds the holder's pid gone, reclaims its N leases at once), and the first
    `engine.service.claim(...)` that returns a task (one of the reclaimed messages, second delivery).

The page cache is warm (the file was just written); the numbers do not include a cold disk.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, format_table, median, now, progress, scratch_dir, write_json  # noqa: E402

HOLD_SCRIPT = "import time\nwhile True:\n    time.sleep(3600)\noutput = None\n"
HOLD_LEASE = 3600.0
PHASE_LABELS = {"open": "Engine(path)", "check": "quick_check (Worker.start)",
                "register": "register worker", "recover": "engine.recover()",
                "first_claim": "first claim", "total": "total"}
PHASES = ("open", "check", "register", "recover", "first_claim", "total")


def hold_def() -> dict:
    return {"workflowId": "hold",
            "nodes": [{"nodeId": "block", "runtimeType": "Python", "script": HOLD_SCRIPT}],
            "connections": []}


def chain3_def() -> dict:
    return {"workflowId": "chain3",
            "nodes": [{"nodeId": f"n{i}", "runtimeType": "Noop"} for i in range(3)],
            "connections": [{"sourceNodeId": f"n{i}", "targetNodeId": f"n{i + 1}"} for i in range(2)]}


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sizes(path: str) -> dict:
    out = {}
    for suffix in ("", "-wal"):
        try:
            out["db_mb" if not suffix else "wal_mb"] = round(os.path.getsize(path + suffix) / 2**20, 2)
        except FileNotFoundError:
            out["db_mb" if not suffix else "wal_mb"] = 0.0
    return out

LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]


# --- the three roles ---------------------------------------------------------------------------

def prepare(path: str, inflight: int, history: int) -> dict:
    """The template database: `inflight` ready messages of `hold` runs (and finished history)."""
    from durableflow import Engine
    t0 = now()
    with Engine(path) as engine:
        if history:
            engine.register(chain3_def())
            for _ in range(history):
                engine.start("chain3")
            with engine.worker(concurrency=1):
                conn = sqlite3.connect(path, isolation_level=None)
                try:
                    while conn.execute("SELECT count(*) FROM runs WHERE status NOT IN "
                                       "('completed', 'failed', 'cancelled')").fetchone()[0]:
                        time.sleep(0.05)
                finally:
                    conn.close()
        engine.register(hold_def())
        for _ in range(inflight):
            engine.start("hold")
    return {"prepare_s": round(now() - t0, 2), **sizes(path)}


def copy_db(src: str, dst: str) -> None:
    """A consistent copy (sqlite3 backup API), so every repeat starts from the same state."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        b.close()
        a.close()
    c = sqlite3.connect(dst, isolation_level=None)
    try:
        c.execute("PRAGMA journal_mode = WAL")
    finally:
        c.close()


def hold(path: str, inflight: int, batch: int) -> None:
    """Holder subprocess: register as a worker, lease `inflight` messages, report, sleep until killed."""
    from durableflow import Engine
    from durableflow.worker import Worker
    engine = Engine(path)
    worker = Worker(engine.service, concurrency=inflight, lease_seconds=HOLD_LEASE)  # not started: no threads
    engine.service.register_worker(worker)
    held = 0
    t0 = now()
    while held < inflight:
        tasks = engine.service.claim(worker.worker_id, min(batch, inflight - held), HOLD_LEASE)
        if not tasks:
            break
        held += len(tasks)
    msg = {"worker_id": worker.worker_id, "pid": os.getpid(), "held": held,
           "claim_s": round(now() - t0, 3), "rss_mb": round(rss_kb() / 1024, 1)}
    sys.stdout.write("HELD " + json.dumps(msg) + "\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


def measure(path: str, claim_limit: int) -> None:
    """Measuring subprocess: open, register, recover, first claim; prints one JSON line."""
    t_imp = now()
    from durableflow import Engine
    from durableflow.worker import Worker
    # Worker.start runs PRAGMA quick_check before it registers (a whole-file read); time it as
    # its own phase when (and only when) the worker does it.
    checks = "quick_check" in inspect.getsource(Worker.start)
    t0 = now()
    engine = Engine(path)
    t1 = now()
    if checks:
        problems = [p for p in engine.store.quick_check() if p != "ok"]
        if problems:
            raise RuntimeError(f"quick_check: {problems[:3]}")
    t1c = now()
    worker = Worker(engine.service, concurrency=max(1, claim_limit))  # not started: we drive it by hand
    engine.service.register_worker(worker)
    t2 = now()
    recovered = engine.recover()
    t3 = now()
    tasks: list = []
    claims = 0
    while not tasks:
        tasks = engine.service.claim(worker.worker_id, claim_limit, engine.lease_seconds)
        claims += 1
        if not tasks and now() - t3 > 60:
            break
    t4 = now()
    first = tasks[0] if tasks else None
    out = {
        **{k: round(v, 6) for k, v in (("import_s", t0 - t_imp), ("open", t1 - t0), ("check", t1c - t1),
                                        ("register", t2 - t1c),
                                        ("recover", t3 - t2), ("first_claim", t4 - t3), ("total", t4 - t0))},
        "worker_start_runs_quick_check": checks,
        "claims_tried": claims, "claimed": len(tasks),
        "first_task": None if first is None else {
            "message_id": first.message.id, "run_id": first.run_id, "node_id": first.node_id,
            "attempt": first.attempt, "message_attempts": first.message.attempts},
        "recover_result": {k: (len(v) if isinstance(v, list) else v) for k, v in recovered.items()},
        "dead_workers": recovered.get("dead_workers"),
        "rss_mb": round(rss_kb() / 1024, 1),
    }
    sys.stdout.write("MEASURED " + json.dumps(out) + "\n")
    sys.stdout.flush()
    engine.service.unregister_worker(worker)
    engine.close()


# --- the driver --------------------------------------------------------------------------------

def child(role: str, *args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), f"--_{role}", *args]


def one_repeat(template: str, path: str, args: argparse.Namespace) -> dict:
    copy_db(template, path)
    holder = subprocess.Popen(child("hold", path, str(args.inflight), str(args.claim_batch)),
                              stdout=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        if not line.startswith("HELD "):
            raise RuntimeError(f"holder did not report (exit {holder.poll()}): {line!r}")
        held = json.loads(line[5:])
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        try:
            leased = conn.execute("SELECT count(*) FROM leases WHERE worker_id = ?",
                                  (held["worker_id"],)).fetchone()[0]
            status = dict(conn.execute("SELECT status, count(*) FROM messages GROUP BY status"))
        finally:
            conn.close()
        if leased != args.inflight or held["held"] != args.inflight:
            raise RuntimeError(f"holder leased {leased} (reported {held['held']}), wanted {args.inflight}")
        if holder.poll() is not None:
            raise RuntimeError("holder died before the kill")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    before = sizes(path)
    proc = subprocess.run(child("measure", path, str(args.claim_limit)), capture_output=True, text=True,
                          timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEASURED ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measuring process failed ({proc.returncode}): {proc.stderr[-2000:]}")
    m = json.loads(lines[-1][9:])
    if m["recover_result"].get("reclaimed") != args.inflight:
        raise RuntimeError(f"recover() reclaimed {m['recover_result']}, expected {args.inflight}")
    if held["worker_id"] not in (m.get("dead_workers") or []):
        raise RuntimeError(f"recover() did not name the killed worker: {m.get('dead_workers')}")
    if not m["claimed"]:
        raise RuntimeError("no task was claimed after recovery")
    m["holder"] = held
    m["messages_before_kill"] = status
    m["files_at_open"] = before
    return m


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--_hold":
        hold(argv[1], int(argv[2]), int(argv[3]))
        return 0
    if argv and argv[0] == "--_measure":
        measure(argv[1], int(argv[2]))
        return 0

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2,000 in-flight messages, 2 repeats")
    p.add_argument("--inflight", type=int, help="leased messages held by the killed worker (default 10000)")
    p.add_argument("--history", type=int, default=0, help="finished 3-node runs in the file beforehand")
    p.add_argument("--repeats", type=int, help="repeats (default 3; quick 2)")
    p.add_argument("--claim-batch", type=int, default=500, help="messages per claim in the holder")
    p.add_argument("--claim-limit", type=int, default=1, help="limit of the measured first claim")
    p.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout)")
    p.add_argument("--dir", help="folder for the temporary database files")
    p.add_argument("--keep", action="store_true", help="keep the database files")
    args = p.parse_args(argv)
    args.inflight = args.inflight or (2000 if args.quick else 10_000)
    args.repeats = args.repeats or (2 if args.quick else 3)

    samples: list[dict] = []
    error = None
    t_start = now()
    with scratch_dir(args.dir, keep=args.keep, prefix="dfbench-recovery-") as workdir:
        template = os.path.join(workdir, "template.db")
        progress(f"preparing {args.inflight:,} in-flight runs"
                 + (f" after {args.history:,} finished runs" if args.history else ""))
        prep = prepare(template, args.inflight, args.history)
        progress(f"prepared in {prep['prepare_s']} s, {prep['db_mb']} MB")
        for i in range(args.repeats):
            try:
                m = one_repeat(template, os.path.join(workdir, f"run{i}.db"), args)
            except Exception as exc:
                traceback.print_exc()
                error = f"{type(exc).__name__}: {exc}"
                break
            samples.append(m)
            progress(f"repeat {i + 1}: holder leased {m['holder']['held']:,} in {m['holder']['claim_s']} s; "
                     f"after SIGKILL: open {m['open'] * 1000:.1f} ms, register {m['register'] * 1000:.1f} ms, "
                     f"recover {m['recover'] * 1000:.1f} ms, first claim {m['first_claim'] * 1000:.1f} ms, "
                     f"total {m['total'] * 1000:.1f} ms")
        if args.keep:
            progress(f"database files kept in {workdir}")

    summary = {ph: round(median(s[ph] for s in samples) * 1000, 2) for ph in PHASES} if samples else {}
    doc = {
        "benchmark": "recovery_time",
        "environment": environment(),
        "loadavg_at_start": LOAD_AT_START, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {"inflight": args.inflight, "history": args.history, "repeats": args.repeats,
                     "holder_lease_s": HOLD_LEASE, "holder_claim_batch": args.claim_batch,
                     "first_claim_limit": args.claim_limit, "synchronous": "NORMAL",
                     "page_cache": "warm"},
        "prepare": prep,
        "median_ms": summary,
        "reclaimed_per_s": (round(args.inflight / (summary["recover"] / 1000)) if summary.get("recover") else None),
        "samples": samples,
        "error": error,
        "seconds": round(now() - t_start, 1),
    }
    write_json(doc, args.json if args.json else None)
    if samples:
        rows = [[PHASE_LABELS[ph], f"{summary[ph]:,.1f}",
                 " / ".join(f"{s[ph] * 1000:,.1f}" for s in samples)] for ph in PHASES]
        print()
        print(f"recovery after SIGKILL of a worker holding {args.inflight:,} leased messages "
              f"(median of {len(samples)}; db {samples[-1]['files_at_open']['db_mb']} MB, "
              f"wal {samples[-1]['files_at_open']['wal_mb']} MB at open)")
        print(format_table(["phase", "median ms", "samples ms"], rows))
        print(f"recover() reclaimed {args.inflight:,} leases: {doc['reclaimed_per_s']:,} leases/s; "
              f"python import of durableflow (not in total): "
              f"{median(s['import_s'] for s in samples) * 1000:.0f} ms")
    print(f"load average (1/5/15 min) at start {LOAD_AT_START}, at end {doc['loadavg_at_end']}; {doc['seconds']} s")
    if error:
        print(f"ERROR: {error}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
