"""`run --secrets FILE` and `worker --secrets FILE`: a file others can read is refused before the
database is opened; a good one resolves references, and its values show nowhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from durableflow import Engine
from tests.cli.cli_helpers import cli_argv, edge, py, subprocess_env, workflow

CANARY = "canary-" + "5f1d0c9e" * 8
ECHO = ("ctx.log.warning('token %s', ctx.input['token'])\n"
        "ctx.progress(50, ctx.input['token'])\n"
        "output = {'echo': ctx.input['token'], 'saw_it': ctx.input['token'].startswith('canary-')}")


@pytest.fixture
def secrets_file(tmp_path):
    def _write(mode: int) -> Path:
        path = tmp_path / "prod.env"
        path.write_text(f"API_TOKEN={CANARY}\n")
        os.chmod(path, mode)
        return path
    return _write


@pytest.fixture
def echo_flow(write) -> Path:
    return write(workflow("echo", {"nodeId": "m", "runtimeType": "Manual"}, py("echo", ECHO),
                          connections=[edge("m", "echo")]), "echo.yaml")


@pytest.mark.parametrize("command", [
    ["worker", "--until-idle", "--max-wait", "0s"],
    ["run", "FLOW", "--input", 'token={"$secret": "API_TOKEN"}'],
])
def test_a_secrets_file_others_can_read_is_refused_before_the_database_is_opened(
        invoke, db, secrets_file, echo_flow, command):
    path = secrets_file(0o644)
    result = invoke(*[echo_flow if a == "FLOW" else a for a in command], "--secrets", path)
    assert result.exit_code == 2
    assert result.stderr == (f"durableflow: error: secrets file {path} has mode 0644; it must be "
                             f"readable by its owner only (chmod 600 {path})\n")
    assert CANARY not in result.stdout + result.stderr
    assert not db.exists()


def test_a_missing_secrets_file_is_refused_naming_it(invoke, db, tmp_path):
    result = invoke("worker", "--until-idle", "--secrets", tmp_path / "nope.env")
    assert result.exit_code == 2
    assert result.stderr == f"durableflow: error: secrets file {tmp_path / 'nope.env'}: no such file\n"
    assert not db.exists()


def test_run_with_a_secrets_file_resolves_and_shows_the_value_nowhere(durableflow, db, secrets_file,
                                                                      echo_flow):
    path = secrets_file(0o600)
    done = durableflow("run", echo_flow, "--secrets", path, "--json",
                       "--input", 'token={"$secret": "API_TOKEN"}')
    assert done.returncode == 0, done.stderr
    assert '"saw_it": true' in done.stdout and "token ***" in done.stderr
    assert CANARY not in done.stdout and CANARY not in done.stderr
    assert all(CANARY.encode() not in Path(f"{db}{s}").read_bytes()
               for s in ("", "-wal", "-shm") if Path(f"{db}{s}").exists())


def test_worker_with_a_secrets_file_resolves_a_run_started_elsewhere(db, secrets_file, echo_flow,
                                                                     tmp_path):
    path = secrets_file(0o400)
    with Engine(db) as engine:
        run_id = engine.start(str(echo_flow), {"token": {"$secret": "API_TOKEN"}})
    done = subprocess.run(cli_argv(db, "worker", "--until-idle", "--max-wait", "0s", "--secrets", path),
                          capture_output=True, text=True, timeout=60, env=subprocess_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert CANARY not in done.stdout + done.stderr
    with Engine(db) as engine:
        run = engine.get_run(run_id)
    assert run.status == "completed", run.error
    assert run.outputs == {"echo": {"echo": "***", "saw_it": True}}
