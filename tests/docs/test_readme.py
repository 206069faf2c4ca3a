"""The README's SQL history queries run, and answer, on a real database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from durableflow.storage.statements import SQLITE
from tests.readme_history import make_history, plain_sql

README = Path(__file__).resolve().parents[2] / "README.md"
QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("readme") / "history.db"
    return db, make_history(db)


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


@pytest.mark.parametrize("number, name", [(4, "slowest_nodes"), (11, "run_figures"), (12, "runs_by_status"),
                                          (13, "throughput")])
def test_status_and_stats_run_the_readme_query_itself(number, name):
    readme = QUERIES[number - 1]
    for text, param in CLOCK.items():
        readme = readme.replace(text, param)
    assert plain_sql(readme) == plain_sql(getattr(SQLITE.metrics, name))


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
