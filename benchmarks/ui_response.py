"""The dashboard's response times on a big file, idle and while a worker writes to it.

    python benchmarks/ui_response.py                       # 100,000 finished runs
    python benchmarks/ui_response.py --quick               # 10,000
    python benchmarks/ui_response.py --db big.db --json ui.json   # build big.db once, reuse it

The file is built by history_queries.py's builder (imported, not copied: real 3-node runs through
the engine, then copies spread over the last --days, one in 20 failed). `durableflow ui
--read-only --port 0` serves it from its own process, as a user runs it, and this program asks
each page over real HTTP (urllib, a new connection per request as a browser's first visit
makes), reading the whole response: --repeats times (default 20) after two warm-ups, reporting
the median, the 95th percentile and the slowest, in milliseconds.

Pages: the runs list (first page of 50, of 200, a status, a workflow, child runs included, a page
from the middle of the history by its cursor, a search by run id), a run's page (completed and
failed), its attempts (what the live view fetches), its event stream to the end, the workflows,
dead letters and stats pages.

Twice: on the file at rest, then while a writer process (`--writer-rate`, default 20 runs/s of a
3-node workflow, with a worker of concurrency 2) adds runs to it, so reads meet the WAL and a
moving head of every index. Last, the live view's latency: a run waiting for a signal is paused
and resumed by this process (another process than the dashboard's), at random moments, and the
time from each commit to the frame that carries its event is measured (--repeats samples).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, format_table, now, progress, scratch_dir, write_json  # noqa: E402
import history_queries  # noqa: E402  (its file builder)

LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]
WAIT_FLOW = {"workflowId": "ui-bench-wait",
             "nodes": [{"nodeId": "a", "runtimeType": "Noop"},
                       {"nodeId": "gate", "runtimeType": "WaitForSignal", "signal": "go"}],
             "connections": [{"sourceNodeId": "a", "targetNodeId": "gate"}]}


# --- the dashboard and the writer, each in its own process ----------------------------------------

def start_ui(path: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "durableflow", "--db", path, "ui", "--read-only",
                             "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    found = re.search(r"at (http://\S+/)", line)
    if not found:
        proc.kill()
        raise RuntimeError(f"durableflow ui did not start: {line}{proc.stderr.read()}")
    return proc, found.group(1).rstrip("/")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def writer_main(path: str, rate: float) -> None:
    """The writer process: start `rate` chain3 runs a second, a worker carrying them out."""
    from durableflow import Engine
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    engine = Engine(path)
    with engine.worker(concurrency=2):
        started, t0 = 0, time.monotonic()
        print("ready", flush=True)
        while not stopping:
            due = int((time.monotonic() - t0) * rate)
            while started < due:
                engine.start("chain3")
                started += 1
            time.sleep(0.01)
    engine.close()
    print(f"started {started}", flush=True)


def stop_writer(proc: subprocess.Popen) -> int | None:
    """Stop the writer (SIGTERM, by its pid); how many runs it started."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    found = re.search(r"started (\d+)", out or "")
    return int(found.group(1)) if found else None


def start_writer(path: str, rate: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--writer-process", path, str(rate)],
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the writer process did not start")
    return proc


# --- measuring --------------------------------------------------------------------------------------

def fetch(url: str) -> tuple[int, int]:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.status, len(resp.read())


def page_row(key: str, label: str, url: str, repeats: int) -> dict:
    for _ in range(2):
        status, size = fetch(url)
        if status != 200:
            raise RuntimeError(f"{url}: HTTP {status}")
    samples = []
    for _ in range(repeats):
        t0 = now()
        fetch(url)
        samples.append((now() - t0) * 1000)
    return {"key": key, "label": label, "url": url, "bytes": size, **summary(samples)}


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2),
            "max_ms": round(ordered[-1], 2), "samples_ms": [round(s, 2) for s in samples]}


def targets(path: str) -> dict:
    conn = history_queries._plain(path)
    try:
        done = history_queries.middle_run(conn, "completed")
        failed = history_queries.middle_run(conn, "failed")
        created, rowid = conn.execute("SELECT created_at, rowid FROM runs WHERE run_id = ?", (done,)).fetchone()
    finally:
        conn.close()
    return {"completed": done, "failed": failed, "cursor": f"{created}~{rowid}"}


def measure_pages(base: str, t: dict, repeats: int) -> list[dict]:
    pages = [
        ("runs", "runs list, first page (50)", "/runs"),
        ("runs_200", "runs list, 200 a page", "/runs?limit=200"),
        ("runs_failed", "runs list, status failed", "/runs?status=failed"),
        ("runs_workflow", "runs list, workflow chain3", "/runs?workflow=chain3"),
        ("runs_children", "runs list, child runs too", "/runs?children=1"),
        ("runs_middle", "runs list, a page from the middle", f"/runs?before={t['cursor']}"),
        ("runs_search", "runs list, search by run id", f"/runs?q={t['completed'][:14]}"),
        ("run_page", "run page (completed)", f"/runs/{t['completed']}"),
        ("run_page_failed", "run page (failed, retried)", f"/runs/{t['failed']}"),
        ("run_attempts", "a run's attempts (live refresh)", f"/runs/{t['completed']}/attempts"),
        ("run_events", "a run's event stream, to its end", f"/runs/{t['completed']}/events?after=0"),
        ("workflows", "workflows", "/workflows"),
        ("dead_letters", "dead letters", "/dead-letters"),
        ("stats", "stats (last 24 h)", "/stats"),
    ]
    rows = []
    for key, label, path in pages:
        rows.append(page_row(key, label, base + path, repeats))
        progress(f"  {label}: {rows[-1]['median_ms']} ms")
    return rows


def measure_live(path: str, base: str, repeats: int) -> dict:
    """Commit (pause, resume) in this process -> the frame carrying its event, read from the
    dashboard's stream of that run."""
    import http.client
    from urllib.parse import urlsplit
    from durableflow import Engine
    engine = Engine(path)
    try:
        run_id = engine.start(WAIT_FLOW)
        with engine.worker(concurrency=1):
            deadline = time.monotonic() + 60
            while (engine.get_run(run_id).node("gate") or None) is None or \
                    engine.get_run(run_id).node("gate").status != "waiting":
                if time.monotonic() > deadline:
                    raise RuntimeError("the waiting run did not reach its gate")
                time.sleep(0.01)
        after = max(e["seq"] for e in engine.events(run_id))
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", f"/runs/{run_id}/events?after={after}")
        response = conn.getresponse()       # kept: the stream is read from its file
        stream = response.fp
        samples = []
        rng = random.Random(17)
        for i in range(repeats):
            time.sleep(rng.uniform(0, 0.3))   # commits at any moment of the stream's polling, not just after a frame
            t0 = now()
            (engine.pause if i % 2 == 0 else engine.resume)(run_id)
            want = "run.paused" if i % 2 == 0 else "run.running"
            while True:
                line = stream.readline().decode()
                if line.startswith("data: ") and json.loads(line[6:]).get("type") == want:
                    break
                if not line:
                    raise RuntimeError("the stream ended")
            samples.append((now() - t0) * 1000)
        conn.close()
        engine.cancel(run_id)
    finally:
        engine.close()
    return {"key": "live", "label": "live view: commit -> its frame", **summary(samples)}


def table(rows: list[dict]) -> str:
    return format_table(("page", "median ms", "p95 ms", "max ms", "bytes"),
                        [(r["label"], f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['max_ms']:.1f}",
                          f"{r.get('bytes', ''):,}" if r.get("bytes") else "") for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smaller file (10,000 runs)")
    p.add_argument("--runs", type=int, help="finished runs in the file (default 100000; quick 10000)")
    p.add_argument("--repeats", type=int, default=20, help="requests per page after two warm-ups (default 20)")
    p.add_argument("--days", type=float, default=7.0, help="runs are spread over the last DAYS")
    p.add_argument("--writer-rate", type=float, default=20.0,
                   help="runs a second the writer process starts while pages are timed again (0: no writer)")
    p.add_argument("--db", metavar="FILE", help="the file: reused if it exists, else built and kept")
    p.add_argument("--json", metavar="FILE", help="write the JSON document here ('-' = stdout)")
    p.add_argument("--dir", help="folder for the temporary database file (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary database file")
    p.add_argument("--writer-process", nargs=2, metavar=("PATH", "RATE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.writer_process:
        writer_main(args.writer_process[0], float(args.writer_process[1]))
        return 0
    args.runs = args.runs or (10_000 if args.quick else 100_000)

    import durableflow
    env = environment() | {"durableflow": durableflow.__file__,
                           "durableflow_git": history_queries.git_state(durableflow.__file__)}
    t_start = now()
    results: dict[str, Any] = {}
    with scratch_dir(args.dir, keep=args.keep, prefix="dfbench-ui-") as workdir:
        path, build = history_queries.ensure_db(args.db, workdir, "finished.db", "finished", args.runs,
                                                span_s=args.days * 86400, failed_every=20)
        durableflow.Engine(path).close()       # an older file migrates forward, as any opening does
        t = targets(path)
        ui, base = start_ui(path)
        try:
            progress(f"== at rest ({base})")
            results["idle"] = measure_pages(base, t, args.repeats)
            if args.writer_rate > 0:
                progress(f"== while a writer adds {args.writer_rate:g} runs/s")
                writer = start_writer(path, args.writer_rate)
                try:
                    results["writing"] = measure_pages(base, t, args.repeats)
                finally:
                    results["writer_runs_started"] = stop_writer(writer)
            progress("== live view")
            results["live"] = measure_live(path, base, args.repeats)
        finally:
            stop(ui)
        if args.keep:
            progress(f"database file kept in {workdir}")

    doc = {"benchmark": "ui_response", "environment": env,
           "loadavg_at_start": LOAD_AT_START, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
           "settings": {"runs": args.runs, "repeats": args.repeats, "warmup": 2, "days": args.days,
                        "writer_rate": args.writer_rate, "db": args.db},
           "build": build, "targets": t, "results": results, "seconds": round(now() - t_start, 1)}
    write_json(doc, args.json if args.json and args.json != "-" else None)
    runs = sum(build.get("runs_by_status", {}).values())
    print(f"\n{runs:,} runs, {build.get('db_mb')} MB; over HTTP from `durableflow ui` in its own process; "
          f"{args.repeats} requests a page after two warm-ups")
    print("\nAt rest:")
    print(table(results["idle"]))
    if "writing" in results:
        print(f"\nWhile a worker adds {args.writer_rate:g} runs/s ({results.get('writer_runs_started')} runs "
              f"started while these were timed):")
        print(table(results["writing"]))
    print("\nLive view (commit in another process -> its frame on the stream):")
    print(table([results["live"]]))
    print(f"\n{history_queries.env_line(env)}")
    print(f"load average (1/5/15 min) at start {LOAD_AT_START}, at end {doc['loadavg_at_end']}; {doc['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
