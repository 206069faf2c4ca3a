"""Fixtures for the limits tests: an Engine on a manual clock (rate limits, breakers and maxWait
move with it, nothing waits in real time), the hooks module node bodies share with the test,
and raw SQL reads (the helpers of tests/integration/fixtures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from durableflow import Engine

FIXTURES = Path(__file__).parent.parent / "integration" / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

from df_it_fixtures import hooks, sql  # noqa: E402,F401 (shared fixtures)

# A body that holds its slot until the test sets "release:<run id>", counting how many are in.
HOLD = ("import df_it_hooks as h\n"
        "h.record('started', ctx.run_id)\n"
        "h.enter('inside')\n"
        "try:\n"
        "    h.wait('release:' + ctx.run_id)\n"
        "finally:\n"
        "    h.leave('inside')\n"
        "output = ctx.run_id\n")


@pytest.fixture
def engine(tmp_path, clock, hooks):
    eng = Engine(tmp_path / "limits.db", clock=clock)
    try:
        yield eng
    finally:
        hooks.reset()   # free held bodies before the workers stop
        eng.close()
