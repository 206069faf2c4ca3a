"""Workers on different hosts sharing one PostgreSQL database (issue 18).

Each worker is a real `durableflow worker` process; $DURABLEFLOW_HOST_ID makes it stand for a
host of its own. One is SIGKILLed while it runs a node. A worker of ANOTHER host cannot tell
whether that pid lives (it names a process on another machine), so it takes the node over only
when the lease expires; a worker of the SAME host sees the process is gone and takes it over at
once. Either way every node is recorded completed exactly once, and every body that completed
ran to the end once per recorded attempt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durableflow import Engine
from durableflow.clock import parse_iso
from tests.backends import PgRaw
from tests.cli.cli_helpers import subprocess_env
from tests.integration.fixtures.df_it_support import wait_until

pytestmark = pytest.mark.slow

LEASE = 6.0
RUNS = 6

BODY = '''
import json, os, time
from pathlib import Path

def run(ctx):
    folder = Path(os.environ["HOSTS_LEDGER"])
    entry = {"run": ctx.run_id, "node": ctx.node_id, "attempt": ctx.attempt, "pid": os.getpid(),
             "host": os.environ["DURABLEFLOW_HOST_ID"]}
    with (folder / "started.log").open("a") as f:
        f.write(json.dumps(entry) + "\\n")
    if ctx.node_id == "hold":
        deadline = time.monotonic() + 60
        while not (folder / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    with (folder / "finished.log").open("a") as f:
        f.write(json.dumps(entry) + "\\n")
    return {"by": entry["host"], "node": ctx.node_id}
'''


def workflow(script: Path) -> dict:
    nodes = [{"nodeId": n, "runtimeType": "Python", "scriptPath": str(script)} for n in ("hold", "after")]
    return {"workflowId": "hosts", "nodes": nodes,
            "connections": [{"sourceNodeId": "hold", "targetNodeId": "after"}]}


def worker(dsn: str, host: str, ledger: Path) -> subprocess.Popen:
    env = {**subprocess_env(), "DURABLEFLOW_HOST_ID": host, "HOSTS_LEDGER": str(ledger)}
    return subprocess.Popen(
        [sys.executable, "-m", "durableflow", "--db", dsn, "worker", "--concurrency", "3",
         "--lease", f"{LEASE:g}s", "--until-idle", "--max-wait", "30s"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("second_host", ["other", "same"])
def test_a_killed_hosts_work_is_finished_once_by_another(pg_dsn, tmp_path, second_host):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    script = tmp_path / "body.py"
    script.write_text(BODY)
    with Engine(pg_dsn) as engine:
        run_ids = [engine.start(workflow(script)) for _ in range(RUNS)]

    host_a = "host-a/boot-a/pid:[4026531836]"
    host_b = host_a if second_host == "same" else "host-b/boot-b/pid:[4026531999]"
    a = worker(pg_dsn, host_a, ledger)
    try:
        # A holds three `hold` nodes (its concurrency); kill it in the middle of them.
        wait_until(lambda: len(lines(ledger / "started.log")) >= 3 or a.poll() is not None,
                   timeout=30, what="worker A to start three nodes")
        assert a.poll() is None, a.communicate()[1][-2000:]
        a.send_signal(signal.SIGKILL)
    finally:
        if a.poll() is None:
            a.kill()
        a.communicate(timeout=10)
    killed_at = time.monotonic()
    taken = {(e["run"], e["attempt"]) for e in lines(ledger / "started.log")}
    assert len(taken) == 3 and lines(ledger / "finished.log") == []
    (ledger / "release").write_text("go")

    b = worker(pg_dsn, host_b, ledger)
    _, err = b.communicate(timeout=120)
    assert b.returncode == 0, err[-2000:]
    took = time.monotonic() - killed_at

    raw = PgRaw(pg_dsn)
    try:
        assert dict(raw.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()) == {"completed": RUNS}
        completed = raw.execute("SELECT run_id, node_id, count(*) FROM node_instances WHERE status = 'completed' "
                                "GROUP BY run_id, node_id").fetchall()
        assert sorted(completed) == sorted((r, n, 1) for r in run_ids for n in ("hold", "after"))
        lost = raw.execute("SELECT run_id, attempt, error_type, started_at, finished_at FROM node_instances "
                           "WHERE status = 'failed'").fetchall()
        outputs = dict(raw.execute("SELECT run_id, outputs FROM runs").fetchall())
    finally:
        raw.close()
    # A's three attempts were lost with it, and B ran each of them again, once.
    assert {(r, attempt) for r, attempt, *_ in lost} == taken
    assert {t for _, _, t, _, _ in lost} == {"WorkerLost"}
    finished = lines(ledger / "finished.log")
    assert all(e["host"] == host_b for e in finished)
    assert sorted((e["run"], e["node"]) for e in finished) == sorted((r, n) for r in run_ids for n in ("hold", "after"))
    assert all(json.loads(outputs[r])["after"]["by"] == host_b for r in run_ids)
    # How long the lost attempts stayed A's (by the server's clock): another host waits for the
    # lease to run out; the same host sees the pid is gone and takes them back at once.
    held = [parse_iso(done) - parse_iso(began) for _, _, _, began, done in lost]
    if second_host == "other":
        assert min(held) >= LEASE - 0.5, held
    else:
        assert max(held) < LEASE - 0.5 and took < LEASE + 30, held
