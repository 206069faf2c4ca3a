"""The limits from the command line: what a worker offers (--cpu, --memory), and `breakers`
(list, --json, reset)."""

from __future__ import annotations

import json
import sqlite3

from durableflow import Engine
from tests.cli.cli_helpers import py, workflow

DOWN = "raise ConnectionError('billing is down')"


def test_a_worker_offers_what_it_is_told(invoke, write, db):
    path = write(workflow("big", py("crunch", "output = 1", resources={"cpu": 3, "memoryMb": 6000})))
    run_id = invoke("start", path).stdout.strip()
    result = invoke("worker", "--until-idle", "--cpu", "4", "--memory", "8G")
    assert result.exit_code == 0, result.stderr
    assert "offers 4 cpu and 8192 MB)" in result.stderr.splitlines()[0]
    with Engine(db) as engine:
        assert engine.get_run(run_id).status == "completed"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT cpu, memory_mb FROM workers").fetchall() == [(4.0, 8192)]
    finally:
        conn.close()


def test_a_worker_too_small_for_a_node_fails_it_with_one_line(invoke, write, db):
    path = write(workflow("big", py("crunch", "output = 1", resources={"memoryMb": 4096})))
    run_id = invoke("start", path).stdout.strip()
    assert invoke("worker", "--until-idle", "--memory", "1.5G").exit_code == 0
    shown = invoke("status", run_id)
    assert "needs memory 4096 MB, more than any live worker offers (the most: cpu" in shown.stdout
    assert "memory 1536 MB)" in shown.stdout


def test_worker_refuses_sizes_it_cannot_read(invoke):
    bad = invoke("worker", "--memory", "8X")
    assert bad.exit_code == 2
    assert "Invalid value for '--memory': '8X' is not a size; write e.g. 512M, 8G or a number of megabytes" \
        in bad.stderr
    zero = invoke("worker", "--cpu", "0")
    assert zero.exit_code == 2 and "Invalid value for '--cpu'" in zero.stderr


def test_breakers_lists_resets_and_says_what_is_wrong(invoke, write, db):
    Engine(db).close()
    assert invoke("breakers").stdout.strip() == \
        "no circuit breakers (a registered node with a circuitBreaker has one)"
    path = write(workflow("billing", py("charge", DOWN, circuitBreaker={"key": "billing-api", "minimumCalls": 2})))
    assert invoke("register", path).exit_code == 0
    listed = invoke("breakers")
    assert listed.exit_code == 0
    [line] = [row for row in listed.stdout.splitlines() if row.startswith("billing-api")]
    assert line.split()[:4] == ["billing-api", "closed", "0", "0"]
    for _ in range(2):
        run_id = invoke("start", path).stdout.strip()
        assert invoke("worker", "--until-idle").exit_code == 0
    [row] = json.loads(invoke("breakers", "--json").stdout)
    assert (row["key"], row["state"], row["calls"], row["failed"]) == ("billing-api", "open", 2, 2)
    assert row["probe_at"] > row["opened_at"]
    reset = invoke("breakers", "reset", "billing-api")
    assert (reset.exit_code, reset.stdout.strip()) == (0, "circuit breaker 'billing-api' closed")
    assert json.loads(invoke("breakers", "--json").stdout)[0]["state"] == "closed"
    again = invoke("breakers", "reset", "billing-api")
    assert again.stdout.strip() == "circuit breaker 'billing-api' was closed already"
    missing = invoke("breakers", "reset", "nope")
    assert missing.exit_code != 0
    assert missing.stderr.strip() == "durableflow: error: circuit breaker 'nope' not found (breakers: billing-api)"
    with Engine(db) as engine:
        assert engine.get_run(run_id).status == "failed"
