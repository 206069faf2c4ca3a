"""The README's SQL history queries run, and answer, on a real database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from durableflow import Engine

README = Path(__file__).resolve().parents[2] / "README.md"
QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("readme") / "history.db"
    engine = Engine(db)
    ok = {"workflowId": "ok", "nodes": [
        {"nodeId": "a", "runtimeType": "Python", "script": "output = {'rows': 2}"},
        {"nodeId": "b", "runtimeType": "Python",
         "script": "if ctx.attempt < 2:\n    raise TimeoutError('slow')\noutput = 1",
         "retry": {"strategy": "fixed", "maxAttempts": 2, "initialDelay": "10ms", "jitter": 0}}],
        "connections": [{"sourceNodeId": "a", "targetNodeId": "b"}]}
    bad = {"workflowId": "bad", "nodes": [{"nodeId": "x", "runtimeType": "Python", "script": "raise KeyError('k')"}]}
    # y fails first and waits for a retry when x fails the run: y's failed attempt is not why.
    retrying = {"workflowId": "retrying", "nodes": [
        {"nodeId": "x", "runtimeType": "Python", "script": "raise ValueError('bad input')"},
        {"nodeId": "y", "runtimeType": "Python", "script": "raise RuntimeError('transient')",
         "priority": "high",      # claimed before x, though x's rows come first
         "retry": {"strategy": "fixed", "maxAttempts": 3, "initialDelay": "5s", "jitter": 0}}]}
    good = engine.execute(ok, timeout=60)
    failed = engine.execute(bad, timeout=60)
    cut_short = engine.execute(retrying, timeout=60, concurrency=1)
    assert (good.status, failed.status, cut_short.status) == ("completed", "failed", "failed")
    assert [(n.node_id, n.attempt, n.status) for n in cut_short.nodes if n.node_id == "y"] == [
        ("y", 1, "failed"), ("y", 2, "cancelled")]
    engine.close()
    return db, good.run_id


def test_the_readme_has_ten_history_queries():
    assert len(QUERIES) == 10


@pytest.mark.parametrize("number", range(1, 11))
def test_history_query_runs(history_db, number):
    db, run_id = history_db
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(QUERIES[number - 1], {"run_id": run_id}).fetchall()
    finally:
        conn.close()
    if number in (1, 2, 3, 4, 5, 8, 10):       # these must find what the fixture made
        assert rows, f"query {number} found nothing"


def test_query_2_names_the_failed_run_its_error_and_its_last_failed_attempt(history_db):
    db, _ = history_db
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(QUERIES[1]).fetchall()
    finally:
        conn.close()
    # The completed run's retried attempt is not a cause, nor is an attempt whose retry the
    # run's failure cut short; each failed run is there, once.
    by_workflow = {workflow: (node, attempt, error_type, why)
                   for _run, workflow, why, node, attempt, error_type in rows}
    assert len(rows) == 2 and set(by_workflow) == {"bad", "retrying"}
    assert by_workflow["bad"][:3] == ("x", 1, "KeyError") and "KeyError" in by_workflow["bad"][3]
    assert by_workflow["retrying"][:3] == ("x", 1, "ValueError") and "bad input" in by_workflow["retrying"][3]
