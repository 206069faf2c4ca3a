"""The examples of examples/python-authored run, and a workflow written in Python is saved,
validated and run by the CLI like a hand-written file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.authoring.conftest import EXAMPLES, ROOT


def python(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**environ, **env})


@pytest.mark.slow
def test_the_builder_example_runs_and_its_saved_yaml_runs_the_same_in_the_cli(tmp_path):
    ran = python(str(EXAMPLES / "etl.py"), str(tmp_path / "in-process.db"))
    assert ran.returncode == 0, ran.stderr
    assert "orders-etl: completed" in ran.stdout
    assert "report: {'day': '2026-11-27', 'orders': 3, 'scores': {'acme': 16, 'initech': 2}}" \
        in ran.stdout

    saved = tmp_path / "etl.yaml"
    written = python(str(EXAMPLES / "etl.py"), "--save", str(saved))
    assert written.returncode == 0, written.stderr
    data = yaml.safe_load(saved.read_text())
    assert data["nodes"][1]["callable"] == "steps:parse"
    assert data["nodes"][0]["scriptPath"] == str(EXAMPLES / "fetch.sh")   # outside: absolute

    valid = python("-m", "durableflow", "validate", str(saved), PYTHONPATH=str(EXAMPLES))
    assert valid.returncode == 0, valid.stderr
    cli = python("-m", "durableflow", "--db", str(tmp_path / "cli.db"), "run", str(saved),
                 "--input", "day=2026-11-27", "--json", PYTHONPATH=str(EXAMPLES))
    assert cli.returncode == 0, cli.stderr
    run = json.loads(cli.stdout)
    assert run["status"] == "completed"
    assert run["outputs"]["report"] == {"day": "2026-11-27", "orders": 3,
                                        "scores": {"acme": 16, "initech": 2}}


@pytest.mark.slow
def test_the_decorator_example_runs_its_orders(tmp_path):
    ran = python(str(EXAMPLES / "orders.py"), str(tmp_path / "orders.db"))
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert len(lines) == 4 and all(": completed" in line for line in lines)
    assert "'receipt': {'order': 1, 'total': 10.0, 'confirmed': True}" in lines[0]
    assert "'backorder': {'order': 2, 'backordered': 20}" in lines[1]
    assert "'review': {'order': 2, 'review': 'total 600.0 needs a look'}" in lines[1]
    assert "'apologise': {'failed': 'reserve', 'why': 'KeyError'}" in lines[3]
