"""Crash torture: run a ~20-node workflow in real `durableflow worker` subprocesses, SIGKILL them
at random moments many times, restart, and check the end state against an uninterrupted run.

Used by tests/crash/test_crash_torture.py (a short share in CI) and by
benchmarks/crash_torture.py (as many kills as you like).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

NODE_BODY = '''
import json, os, time
from pathlib import Path

def run(ctx):
    ledger = Path(os.environ["TORTURE_LEDGER"]) / f"{ctx.node_id}.log"
    seen = len(ledger.read_text().splitlines()) if ledger.exists() else 0
    if ctx.node_id == "flaky" and seen < 2:
        with ledger.open("a") as f:
            f.write(json.dumps({"run": ctx.run_id, "attempt": ctx.attempt, "failed": True}) + "\\n")
        raise RuntimeError(f"flaky failure number {seen + 1}")
    if ctx.node_id == "slow":
        time.sleep(0.3)
    value = sum(v["value"] for v in ctx.inputs.values()) if ctx.inputs else 1
    output = {"node": ctx.node_id, "value": value + len(ctx.node_id)}
    with ledger.open("a") as f:
        f.write(json.dumps({"run": ctx.run_id, "attempt": ctx.attempt, "output": output}) + "\\n")
    return output
'''


def workflow(script: str) -> dict:
    """chain c1..c6 -> diamond (d_top -> d_left, d_right -> d_join) -> flaky -> slow -> fan of 5
    -> end -> ForEach over three child runs -> a 200 ms Wait."""
    ids = [f"c{i}" for i in range(1, 7)] + ["d_top", "d_left", "d_right", "d_join", "flaky", "slow"] \
        + [f"f{i}" for i in range(1, 6)] + ["end"]
    nodes = []
    for nid in ids:
        node = {"nodeId": nid, "runtimeType": "Python", "scriptPath": script}
        if nid == "flaky":
            node["retry"] = {"strategy": "fixed", "maxAttempts": 3, "initialDelay": "50ms", "jitter": 0}
        nodes.append(node)
    edges = [(f"c{i}", f"c{i + 1}") for i in range(1, 6)]
    edges += [("c6", "d_top"), ("d_top", "d_left"), ("d_top", "d_right"), ("d_left", "d_join"),
              ("d_right", "d_join"), ("d_join", "flaky"), ("flaky", "slow")]
    edges += [("slow", f"f{i}") for i in range(1, 6)] + [(f"f{i}", "end") for i in range(1, 6)]
    # Child runs too: a ForEach whose body runs as three child runs, and a durable timer.
    nodes.append({"nodeId": "loop", "runtimeType": "ForEach", "items": "[1, 2, 3]", "maxParallelism": 2,
                  "body": {"nodes": [{"nodeId": "item_work", "runtimeType": "Python", "scriptPath": script}]}})
    nodes.append({"nodeId": "nap", "runtimeType": "Wait", "duration": "200ms"})
    edges += [("end", "loop"), ("loop", "nap")]
    return {"workflowId": "torture", "nodes": nodes,
            "connections": [{"sourceNodeId": a, "targetNodeId": b} for a, b in edges]}


@dataclass
class Torture:
    folder: Path
    kills: int = 20
    min_delay: float = 0.05
    max_delay: float = 0.7
    seed: int | None = None
    runs: int = 3
    log: list = field(default_factory=list)
    # name -> the database `--db` is given: a file in `folder` (SQLite), or a fresh PostgreSQL
    # database's DSN (tests/backends.py).
    target: Callable[[str], object] | None = None

    def __post_init__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(self.seed)
        script = self.folder / "node.py"
        script.write_text(NODE_BODY)
        self.definition = self.folder / "torture.json"
        self.definition.write_text(json.dumps(workflow(str(script)), indent=1))

    def cli(self, db: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "durableflow", "--db", str(db), *args]

    def env(self, ledger: Path) -> dict:
        ledger.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "TORTURE_LEDGER": str(ledger), "PYTHONUNBUFFERED": "1"}

    def start(self, db: Path, ledger: Path) -> str:
        out = subprocess.run(self.cli(db, "start", str(self.definition)), env=self.env(ledger),
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"start failed: {out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    def worker(self, db: Path, ledger: Path) -> subprocess.Popen:
        return subprocess.Popen(
            self.cli(db, "--max-deliveries", "1000", "worker", "--concurrency", "4", "--until-idle",
                     "--max-wait", "5s", "--lease", "5s"),
            env=self.env(ledger), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def database(self, name: str):
        return self.target(name) if self.target is not None else self.folder / name

    def reference(self) -> dict:
        """The same workflow run once without interruptions."""
        db, ledger = self.database("reference.db"), self.folder / "reference-ledger"
        run_id = self.start(db, ledger)
        proc = self.worker(db, ledger)
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"reference worker failed: {err}")
        return read_run(db, run_id)

    def tortured(self, min_kills: int = 0) -> tuple[Path, Path, list[str]]:
        """Start `runs` runs and SIGKILL workers at random moments, up to `kills` times. If the
        runs finish before `min_kills` kills, more runs are started and the killing goes on."""
        db, ledger = self.database("tortured.db"), self.folder / "tortured-ledger"
        run_ids = [self.start(db, ledger) for _ in range(self.runs)]
        killed = 0
        for _ in range(self.kills):
            proc = self.worker(db, ledger)
            delay = self.rng.uniform(self.min_delay, self.max_delay)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                killed += 1
                self.log.append(("killed", round(delay, 3)))
                continue
            _, err = proc.communicate()
            self.log.append(("exited", round(delay, 3), proc.returncode))
            if proc.returncode != 0:
                raise RuntimeError(f"worker exited {proc.returncode}: {err}")
            if killed >= min_kills:
                break  # every run finished before we could kill again
            run_ids += [self.start(db, ledger) for _ in range(self.runs)]
        final = self.worker(db, ledger)
        _, err = final.communicate(timeout=180)
        if final.returncode != 0:
            raise RuntimeError(f"final worker exited {final.returncode}: {err}")
        return db, ledger, run_ids


def connect(db):
    """A plain connection to the database behind the engine's back: sqlite3 or PostgreSQL's."""
    if str(db).startswith("postgresql://"):
        from tests.backends import PgRaw
        return PgRaw(db)
    return sqlite3.connect(db)


def read_run(db: Path, run_id: str) -> dict:
    conn = connect(db)
    try:
        status, outputs, error = conn.execute(
            "SELECT status, outputs, error FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return {"status": status, "outputs": json.loads(outputs) if outputs else None, "error": error}
    finally:
        conn.close()


# Nodes the engine runs itself: no body, so no ledger entry to match.
ENGINE_NODES = frozenset({"loop", "nap"})


def check_invariants(db: Path, ledger: Path, run_id: str) -> list[str]:
    """Everything the crash guarantee promises, as a list of violations (empty = all good),
    over the run and the child runs its ForEach started."""
    problems = []
    conn = connect(db)
    try:
        runs = [run_id] + [r[0] for r in conn.execute(
            "SELECT run_id FROM runs WHERE parent_run_id = ?", (run_id,))]
        if len(runs) != 4:
            problems.append(f"{len(runs) - 1} ForEach child runs, not 3")
        ledgers = {}
        for path in ledger.glob("*.log"):
            ledgers[path.stem] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for rid in runs:
            for node_id, iteration, n in conn.execute(
                    "SELECT node_id, iteration, count(*) FROM node_instances WHERE run_id = ? "
                    "AND status = 'completed' GROUP BY node_id, iteration HAVING count(*) > 1", (rid,)):
                problems.append(f"{node_id}[{iteration}] recorded completed {n} times")
            for node_id, output in conn.execute(
                    "SELECT node_id, output FROM node_instances WHERE run_id = ? AND status = 'completed'", (rid,)):
                if node_id in ENGINE_NODES:
                    continue
                recorded = json.loads(output)
                bodies = [e.get("output") for e in ledgers.get(node_id, []) if e.get("run") == rid]
                if recorded not in bodies:
                    problems.append(f"{node_id}: recorded result {recorded} matches no ledger entry")
            status = conn.execute("SELECT status FROM runs WHERE run_id = ?", (rid,)).fetchone()[0]
            if status != "completed":
                problems.append(f"run {rid} is {status}")
        open_msgs = conn.execute("SELECT count(*) FROM messages WHERE status IN ('ready', 'leased')").fetchone()[0]
        if open_msgs:
            problems.append(f"{open_msgs} messages left ready or leased")
        if isinstance(conn, sqlite3.Connection):
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                problems.append(f"quick_check: {check}")
    finally:
        conn.close()
    return problems
