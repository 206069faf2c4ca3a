"""CLI fixtures: a CliRunner bound to a database under tmp_path, workflow files written by the
tests, and a helper to run `python -m durableflow` as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml
from click.testing import CliRunner, Result

from durableflow.cli import cli
from tests.cli.cli_helpers import edge, noop, py, subprocess_env, workflow


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def write(tmp_path) -> Callable[..., Path]:
    """write(data, name="wf.yaml") -> the path of a definition (YAML or JSON by extension)."""
    def _write(data, name: str = "wf.yaml") -> Path:
        path = tmp_path / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        elif name.endswith(".json"):
            path.write_text(json.dumps(data), encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path
    return _write


@pytest.fixture
def chain(write) -> Path:
    """A two-node workflow: a Noop, then a Python node echoing its input."""
    return write(workflow("chain", noop("a"), py("b", "output = {'got': ctx.input}"),
                          connections=[edge("a", "b")]), "chain.yaml")


@pytest.fixture
def failing(write) -> Path:
    return write(workflow("failing", py("boom", "raise ValueError('boom [x]')")), "failing.yaml")


@pytest.fixture
def invoke(db, monkeypatch) -> Callable[..., Result]:
    """invoke(*args) runs the CLI in-process against `db`; stdout and stderr kept apart."""
    monkeypatch.delenv("DURABLEFLOW_DB", raising=False)
    runner = CliRunner()

    def _invoke(*args, db_path: Path | str | None = db, input: str | None = None) -> Result:
        argv = (["--db", str(db_path)] if db_path is not None else []) + [str(a) for a in args]
        return runner.invoke(cli, argv, input=input, catch_exceptions=False)
    return _invoke


@pytest.fixture
def durableflow(db, tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """durableflow(*args) runs `python -m durableflow --db DB ...` as a real process."""
    def _run(*args, timeout: float = 60, db_path: Path | None = db) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "durableflow"]
        if db_path is not None:
            argv += ["--db", str(db_path)]
        return subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, cwd=tmp_path, env=subprocess_env())
    return _run
