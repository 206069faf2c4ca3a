"""worker: --until-idle, signals, recovery; in-process and as real processes."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import threading

import pytest

from durableflow import Engine
from durableflow.storage.queue import NewMessage
from tests.cli.cli_helpers import cli_argv, py, subprocess_env, wait_for, workflow

# A node that says it started, then holds on until the test lets it go.
GATED = """\
import pathlib, time
folder = pathlib.Path(ctx.input["dir"])
(folder / f"started-{ctx.attempt}").write_text("yes")
while not (folder / "release").exists():
    time.sleep(0.01)
output = "released"
"""


@pytest.fixture
def gated(write):
    return write(workflow("gated", py("hold", GATED)), "gated.yaml")


def status_of(db, run_id: str) -> str:
    with Engine(db) as engine:
        return engine.get_run(run_id).status


# --- in-process ----------------------------------------------------------------------------------

def test_start_then_worker_until_idle_completes_the_run(invoke, chain, db):
    run_id = invoke("start", chain).stdout.strip()
    result = invoke("worker", "--until-idle", "--concurrency", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    notes = result.stderr.splitlines()
    assert "started on" in notes[0] and "(concurrency 2, lease 30s, offers " in notes[0]
    assert notes[-2].endswith("idle, exiting") and notes[-1].endswith("stopped")
    assert status_of(db, run_id) == "completed"


def test_until_idle_waits_for_a_retry_due_soon(invoke, write, db):
    path = write(workflow("flaky", py(
        "flaky", "if ctx.attempt == 1:\n    raise RuntimeError('first try fails')\noutput = ctx.attempt",
        retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": "300ms", "jitter": 0})))
    run_id = invoke("start", path).stdout.strip()
    result = invoke("worker", "--until-idle", "--max-wait", "10s")
    assert result.exit_code == 0, result.stderr
    with Engine(db) as engine:
        run = engine.get_run(run_id)
    assert run.status == "completed"
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "completed")]


def test_until_idle_resumes_a_pause_that_ends_within_max_wait(invoke, chain, db):
    run_id = invoke("start", chain).stdout.strip()
    assert invoke("pause", run_id, "--for", "300ms").exit_code == 0
    result = invoke("worker", "--until-idle", "--max-wait", "10s")
    assert result.exit_code == 0, result.stderr
    assert status_of(db, run_id) == "completed"


def test_until_idle_enforces_a_workflow_timeout_that_passes_within_max_wait(invoke, write, db):
    path = write({"workflowId": "late", "timeout": "300ms", "nodes": [
        {"nodeId": "nap", "runtimeType": "Wait", "duration": "1h"}]}, "late.yaml")
    run_id = invoke("start", path).stdout.strip()
    result = invoke("worker", "--until-idle", "--max-wait", "10s")
    assert result.exit_code == 0, result.stderr
    with Engine(db) as engine:
        run = engine.get_run(run_id)
    assert run.status == "failed" and "timed out" in run.error


def test_until_idle_does_not_wait_for_work_due_in_days(invoke, chain, db):
    run_id = invoke("start", chain).stdout.strip()
    with Engine(db) as engine:
        engine.store.enqueue(NewMessage(kind="later", visible_at=engine.clock.now() + 3 * 86400))
    result = invoke("worker", "--until-idle", "--max-wait", "60s")
    assert result.exit_code == 0, result.stderr
    assert status_of(db, run_id) == "completed"
    with Engine(db) as engine:
        assert engine.store.queue_counts()["ready"] == 1  # still there, three days out


# --- real processes ------------------------------------------------------------------------------

@pytest.mark.slow
def test_start_and_worker_until_idle_in_real_processes(durableflow, chain, db):
    started = durableflow("start", chain, "--input", "n=5")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    worked = durableflow("worker", "--until-idle")
    assert worked.returncode == 0, worked.stderr
    status = json.loads(durableflow("status", run_id, "--json").stdout)
    assert status["status"] == "completed"
    assert status["outputs"] == {"b": {"got": {"n": 5}}}


@contextlib.contextmanager
def spawn(db, tmp_path, *args):
    """A `durableflow ...` process; its stderr lines arrive on a queue. Yields (proc, lines);
    on exit the process is killed if still alive and its pipe closed."""
    proc = subprocess.Popen(cli_argv(db, *args), cwd=tmp_path, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=30)
        proc.stderr.close()


def wait_for_line(lines: queue.Queue, text: str, timeout: float = 20.0) -> str:
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no stderr line containing {text!r} within {timeout}s; saw {seen}")
        seen.append(line)
        if text in line:
            return line


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_finishes_the_node_in_hand_then_exits_0(durableflow, gated, db, tmp_path, signum):
    first = durableflow("start", gated, "--input", f"dir={json.dumps(str(tmp_path))}").stdout.strip()
    second = durableflow("start", gated, "--input", f"dir={json.dumps(str(tmp_path))}").stdout.strip()
    with spawn(db, tmp_path, "worker", "--concurrency", "1") as (proc, lines):
        wait_for(lambda: (tmp_path / "started-1").exists(), what="the node to start")
        proc.send_signal(signum)
        assert "finishing 1 node(s) in hand" in wait_for_line(lines, "stopping")
        assert proc.poll() is None  # still running: the node in hand holds it
        (tmp_path / "release").write_text("go")
        assert proc.wait(timeout=30) == 0
        wait_for_line(lines, "stopped")
    with Engine(db) as engine:
        statuses = {engine.get_run(r).status for r in (first, second)}
        # the node in hand finished and was recorded; the other run was never claimed
        assert statuses == {"completed", "running"}
        waiting = [r for r in (first, second) if engine.get_run(r).status == "running"][0]
        assert [n.status for n in engine.get_run(waiting).nodes] == ["pending"]
        assert engine.store.queue_counts()["leased"] == 0


@pytest.mark.slow
def test_a_killed_worker_is_recovered_and_its_node_rerun(durableflow, gated, db, tmp_path):
    run_id = durableflow("start", gated, "--input", f"dir={json.dumps(str(tmp_path))}").stdout.strip()
    with spawn(db, tmp_path, "worker") as (proc, _lines):
        wait_for(lambda: (tmp_path / "started-1").exists(), what="the node to start")
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait(timeout=30)
    recovered = durableflow("recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    report = json.loads(recovered.stdout)
    assert len(report["dead_workers"]) == 1 and report["reclaimed"] == 1
    (tmp_path / "release").write_text("go")
    worked = durableflow("worker", "--until-idle")
    assert worked.returncode == 0, worked.stderr
    status = json.loads(durableflow("status", run_id, "--json").stdout)
    assert status["status"] == "completed"
    assert [(n["attempt"], n["status"]) for n in status["nodes"]] == [(1, "failed"), (2, "completed")]
    assert status["nodes"][0]["error_type"] == "WorkerLost"


@pytest.mark.slow
def test_ctrl_c_during_run_then_again_quits_and_a_worker_carries_on(durableflow, db, gated, tmp_path):
    with spawn(db, tmp_path, "run", gated, "--input", f"dir={json.dumps(str(tmp_path))}") as (proc, lines):
        wait_for(lambda: (tmp_path / "started-1").exists(), what="the node to start")
        proc.send_signal(signal.SIGINT)
        assert "finishing 1 node(s) in hand" in wait_for_line(lines, "interrupted")
        assert proc.poll() is None  # waiting for the node in hand
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert "quit with 1 node(s) in hand" in wait_for_line(lines, "quit with")
    run_id = json.loads(durableflow("runs", "--json").stdout)[0]["run_id"]
    assert json.loads(durableflow("status", run_id, "--json").stdout)["status"] == "running"
    (tmp_path / "release").write_text("go")
    worked = durableflow("worker", "--until-idle")
    assert worked.returncode == 0, worked.stderr
    status = json.loads(durableflow("status", run_id, "--json").stdout)
    assert status["status"] == "completed"
    assert [(n["attempt"], n["status"]) for n in status["nodes"]] == [(1, "failed"), (2, "completed")]


@pytest.mark.slow
def test_ctrl_c_during_run_waits_for_the_node_in_hand(db, gated, tmp_path):
    with spawn(db, tmp_path, "run", gated, "--input", f"dir={json.dumps(str(tmp_path))}") as (proc, lines):
        wait_for(lambda: (tmp_path / "started-1").exists(), what="the node to start")
        proc.send_signal(signal.SIGINT)
        wait_for_line(lines, "interrupted: finishing")
        (tmp_path / "release").write_text("go")
        assert proc.wait(timeout=30) == 130
        assert wait_for_line(lines, "interrupted; run").endswith(" is completed")
