"""Fixtures for the compensation tests: an Engine on a manual clock, the hooks module that node
bodies share with the test, and raw SQL reads (the helpers of tests/integration/fixtures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from durableflow import Engine

FIXTURES = Path(__file__).parent.parent / "integration" / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

from df_it_fixtures import hooks, sql  # noqa: E402,F401 (shared fixtures)

# A compensation body: records what it undoes, with the failure it was told about.
UNDO = ("import df_it_hooks as h\n"
        "h.record('undone', (ctx.input['nodeId'], ctx.input['output'], ctx.failure))\n"
        "output = 'undid ' + ctx.input['nodeId']\n")


@pytest.fixture
def engine(tmp_path, clock, hooks):
    eng = Engine(tmp_path / "saga.db", clock=clock)
    try:
        yield eng
    finally:
        hooks.reset()
        eng.close()
