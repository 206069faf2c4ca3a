"""Fixtures for the secrets tests: a canary value (long and random: found only where it leaked),
secrets files written with the mode a test asks for, and an Engine on a file under tmp_path
whose workers resolve references from such a file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from durableflow import Engine

FIXTURES = Path(__file__).parent.parent / "integration" / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


def new_canary() -> str:
    return "canary-" + os.urandom(32).hex()


@pytest.fixture
def canary() -> str:
    return new_canary()


@pytest.fixture
def write_secrets(tmp_path):
    """write_secrets(text, name="secrets.env", mode=0o600) -> the path of a secrets file."""
    def _write(text: str, name: str = "secrets.env", mode: int = 0o600) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        os.chmod(path, mode)
        return path
    return _write


@pytest.fixture
def engine_with(tmp_path):
    """engine_with(secrets) -> an Engine on tmp_path/flow.db whose workers use those secrets."""
    made: list[Engine] = []

    def _make(secrets=None, name: str = "flow.db") -> Engine:
        eng = Engine(tmp_path / name, secrets=secrets)
        made.append(eng)
        return eng
    yield _make
    for eng in made:
        eng.close()
