"""Fixtures for engine integration tests: a real Engine on a file under tmp_path, the shared
hooks module node bodies use, and raw SQL reads behind the engine's back (helpers live in
fixtures/df_it_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from durableflow import Engine
from tests.backends import target

FIXTURES = Path(__file__).parent / "fixtures"
if str(FIXTURES) not in sys.path:
    # Node bodies import df_it_hooks by name (callable: "df_it_hooks:..."); it must stay importable
    # for threads abandoned by a test after that test's monkeypatch is undone.
    sys.path.insert(0, str(FIXTURES))

from df_it_fixtures import hooks, sql  # noqa: E402,F401 (shared fixtures)


@pytest.fixture
def engine(tmp_path, hooks, backend):
    eng = Engine(target(backend, tmp_path, "flow.db"))
    try:
        yield eng
    finally:
        hooks.reset()   # free blocked bodies before the workers are stopped
        eng.close()
