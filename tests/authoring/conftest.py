"""Shared helpers of the authoring tests: a real Engine per database file under tmp_path, and a
run's history as node_history holds it."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from durableflow import Engine, Run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python-authored"
FIXTURES = Path(__file__).parent / "fixtures"


def line_here() -> int:
    """The caller's line number: `ref = wf.noop("x"); at = line_here()` records the declaring line."""
    return sys._getframe(1).f_lineno


def history(engine: Engine, run: Run) -> dict:
    """What a run did, as comparable data: node_history's rows in its own order, and each
    attempt's output."""
    conn = sqlite3.connect(engine.path)
    try:
        rows = conn.execute("SELECT node_id, iteration, attempt, status, error_type FROM "
                            "node_history WHERE run_id = ?", (run.run_id,)).fetchall()
    finally:
        conn.close()
    return {"status": run.status, "outputs": run.outputs, "node_history": rows,
            "attempts": [(n.node_id, n.iteration, n.attempt, n.status, n.output)
                         for n in run.nodes]}


@pytest.fixture
def engines(tmp_path):
    """engines("a") -> an Engine on tmp_path/a.db; all closed at the end."""
    made: list[Engine] = []

    def make(name: str) -> Engine:
        engine = Engine(tmp_path / f"{name}.db")
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


@pytest.fixture
def example_path(monkeypatch):
    """examples/python-authored on sys.path: its etl.py and steps.py import by name."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return EXAMPLES
