"""A canary secret never reaches the database file, its -wal or -shm, a log line or an export,
though the body it is given echoes it into its output, error, stdout/stderr, ctx.log and
progress: for a Python node on a thread, in a process, and a Shell node. The files are read raw."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from durableflow.cli import cli
from df_it_support import conn, node, py, wf

PY_ECHO = """
import sys
value = ctx.input['token']
print('stdout', value)
print('stderr', value, file=sys.stderr)
ctx.log.info('log %s', value)
ctx.log.warning(value)
ctx.progress(50, 'progress ' + value)
ctx.vars['seen'] = 'vars ' + value
output = {'echo': value, value: 'as a key', 'saw_it': value == ctx.vars['pw'], 'length': len(value)}
"""
PY_FAIL = "raise RuntimeError('failed with ' + ctx.input['token'])"
SH_ECHO = 'echo "stdout $TOKEN"; echo "stderr $TOKEN" >&2; echo "$DURABLEFLOW_INPUT"; echo "$1"'
SH_FAIL = 'echo "stderr $TOKEN" >&2; echo "failed with $TOKEN" >&2; exit 3'
RETRY = {"strategy": "fixed", "maxAttempts": 2, "initialDelay": "10ms", "jitter": 0}
REF = {"$secret": "CANARY"}


def flow(kind: str) -> dict:
    if kind == "shell":
        echo = node("echo", "Shell", command=["sh", "-c", SH_ECHO, "sh", REF], env={"TOKEN": REF})
        fail = node("fail", "Shell", command=["sh", "-c", SH_FAIL], env={"TOKEN": REF}, retry=RETRY)
    else:
        isolation = {"isolation": "process"} if kind == "process" else {}
        echo = py("echo", PY_ECHO, **isolation)
        fail = py("fail", PY_FAIL, retry=RETRY, **isolation)
    return wf(f"canary-{kind}", node("m", "Manual"), echo, fail, node("after", "Noop"),
              connections=[conn("m", "echo"), conn("m", "fail"), conn("echo", "after")],
              variables={"pw": REF})


def raw_bytes(db: Path) -> dict[str, bytes]:
    files = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        if path.exists():
            files[path.name] = path.read_bytes()
    return files


@pytest.mark.parametrize("kind", ["thread", "process", "shell"])
def test_the_canary_is_in_no_file_log_or_export(kind, engine_with, write_secrets, canary, caplog,
                                                 tmp_path):
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "flow.db"
    engine = engine_with(write_secrets(f"CANARY={canary}\n"))
    run = engine.execute(flow(kind), inputs={"token": REF}, timeout=60)

    # It is nowhere: not in the files (read while the engine has them open, and after), not in
    # a log line, not in an export ...
    files = raw_bytes(db)
    assert db.name + "-wal" in files
    assert [name for name, data in files.items() if canary.encode() in data] == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert canary not in logged

    # ... though the bodies did see it, and did echo it everywhere they could.
    assert run.status == "failed"
    echo, after = run.node("echo"), run.node("after")
    if kind == "shell":
        assert echo.output["stdout"] == 'stdout ***\n{"token": "***"}\n***\n'
        assert echo.output["stderr"] == "stderr ***\n"
    else:
        assert echo.output == {"echo": "***", "***": "as a key", "saw_it": True, "length": len(canary)}
        assert [e["data"]["message"] for e in engine.events(run.run_id)
                if e["type"] == "node.progress"] == ["progress ***"]
    assert after.input == echo.output
    failure = "ExitCode" if kind == "shell" else "RuntimeError"
    assert [(n.attempt, n.error_type) for n in run.nodes if n.node_id == "fail"] == [(1, failure), (2, failure)]
    assert "failed with ***" in run.node("fail").error and "failed with ***" in run.error
    # A thread's print() goes to the worker's own stdout, not to a log (nor to the database).
    assert ("log ***" in logged) == (kind != "shell") and ("stderr ***" in logged) == (kind != "thread")

    engine.close()
    assert [name for name, data in raw_bytes(db).items() if canary.encode() in data] == []
    exported = CliRunner().invoke(cli, ["--db", str(db), "export", run.run_id], catch_exceptions=False)
    assert exported.exit_code == 0, exported.stderr
    assert "***" in exported.stdout and "$secret" in exported.stdout   # what it holds instead
    assert canary not in exported.stdout and canary not in exported.stderr
