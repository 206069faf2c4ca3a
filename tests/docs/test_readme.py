"""The README's SQL history queries run, and answer, on a real database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from durableflow import Engine
from durableflow.storage.statements import SQLITE

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


def test_the_readme_has_thirteen_history_queries():
    assert len(QUERIES) == 13


@pytest.mark.parametrize("number", range(1, 14))
def test_history_query_runs(history_db, number):
    db, run_id = history_db
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(QUERIES[number - 1], {"run_id": run_id}).fetchall()
    finally:
        conn.close()
    if number in (1, 2, 3, 4, 5, 8, 10, 11, 12, 13):       # these must find what the fixture made
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


# The README's time where the engine binds its clock's (durableflow/storage/sqlite/metrics.sql).
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'"
CLOCK = {NOW + ", '-1 hour')": ":since", NOW + ", '-1 day')": ":since", NOW + ")": ":now"}


def _sql(text: str) -> str:
    """A statement without its comments and layout."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    text = re.sub(r"\s+", " ", text).strip().rstrip(";").strip()
    return re.sub(r"\s*([(),])\s*", r"\1", text)


@pytest.mark.parametrize("number, name", [(4, "slowest_nodes"), (11, "run_figures"), (12, "runs_by_status"),
                                          (13, "throughput")])
def test_status_and_stats_run_the_readme_query_itself(number, name):
    readme = QUERIES[number - 1]
    for text, param in CLOCK.items():
        readme = readme.replace(text, param)
    assert _sql(readme) == _sql(getattr(SQLITE.metrics, name))


def test_query_13_counts_the_runs_and_nodes_of_the_last_hour(history_db):
    db, _ = history_db
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(QUERIES[12]).fetchall()
        finished, completed = conn.execute(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM node_instances WHERE status = 'completed')"
        ).fetchone()
    finally:
        conn.close()
    # The fixture's runs all finished moments ago: every one of them, and every completed attempt.
    assert sum(r[1] for r in rows) == finished == 3 and sum(r[2] for r in rows) == completed == 2
