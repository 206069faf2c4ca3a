"""runs, status, history, pause, resume, cancel."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def finished(invoke, chain, failing):
    """(completed run id, failed run id)."""
    ok = json.loads(invoke("run", chain, "--json", "-i", "n=1").stdout)["run_id"]
    bad = json.loads(invoke("run", failing, "--json").stdout)["run_id"]
    return ok, bad


@pytest.fixture
def waiting(invoke, chain):
    """A started run that no worker has touched."""
    return invoke("start", chain).stdout.strip()


# --- runs ----------------------------------------------------------------------------------------

def test_runs_table_newest_first(invoke, finished):
    ok, bad = finished
    result = invoke("runs")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "workflow", "status"]
    body = [line.split() for line in lines[2:]]
    assert [row[0] for row in body] == [bad, ok]
    assert body[0][1:4] == ["failing", "v1", "failed"]
    assert body[1][1:4] == ["chain", "v1", "completed"]
    assert result.stderr == ""                          # all shown: nothing to say
    cut = invoke("runs", "--limit", "1")
    assert [line.split()[0] for line in cut.stdout.splitlines()[2:]] == [bad]
    assert "the newest 1; there are more" in cut.stderr


def test_runs_filters_and_json(invoke, finished):
    ok, bad = finished
    data = json.loads(invoke("runs", "--json").stdout)
    assert [r["run_id"] for r in data] == [bad, ok]
    assert {"run_id", "workflow_id", "workflow_version", "status", "created_at", "finished_at",
            "error"} <= set(data[0])
    assert [r["run_id"] for r in json.loads(invoke("runs", "--json", "--status", "failed").stdout)] == [bad]
    assert [r["run_id"] for r in json.loads(invoke("runs", "--json", "--workflow", "chain").stdout)] == [ok]
    assert len(json.loads(invoke("runs", "--json", "--limit", "1").stdout)) == 1
    assert json.loads(invoke("runs", "--json", "--status", "paused").stdout) == []
    assert invoke("runs", "--status", "paused").stdout.strip() == "no runs"


@pytest.mark.parametrize("args", [["--status", "done"], ["--limit", "0"], ["--limit", "x"]])
def test_runs_bad_arguments(invoke, finished, args):
    result = invoke("runs", *args)
    assert result.exit_code == 2
    assert "Usage: durableflow runs" in result.stderr


def test_runs_without_a_database_does_not_create_one(invoke, db):
    result = invoke("runs")
    assert result.exit_code == 1
    assert result.stderr == f"durableflow: error: {db}: no such database (use --db PATH or $DURABLEFLOW_DB)\n"
    assert not db.exists()


# --- status --------------------------------------------------------------------------------------

def test_status_shows_header_nodes_and_progress(invoke, finished):
    ok, bad = finished
    result = invoke("status", ok)
    assert result.exit_code == 0
    out = result.stdout
    assert out.splitlines()[0].split() == ["run", ok, "chain", "v1", "completed"]
    assert 'inputs:   {"n": 1}' in out
    assert 'outputs:  {"b": {"got": {"n": 1}}}' in out
    assert "progress: 2/2 nodes done (100.0%)" in out
    assert any(line.split()[:3] == ["b", "completed", "1"] for line in out.splitlines())
    failed = invoke("status", bad).stdout
    assert "error:    node 'boom' failed: ValueError: boom [x]" in failed


def test_status_json(invoke, finished):
    ok, _ = finished
    run = json.loads(invoke("status", ok, "--json").stdout)
    assert run["run_id"] == ok and run["status"] == "completed"
    assert set(run["progress"]) >= {"total", "pending", "waiting", "running", "completed", "failed",
                                    "skipped", "cancelled", "unreached", "percent", "eta_seconds"}
    assert [n["node_id"] for n in run["nodes"]] == ["a", "b"]


def test_status_of_a_waiting_run(invoke, waiting):
    out = invoke("status", waiting).stdout
    assert "running" in out.splitlines()[0]
    assert "progress: 0/2 nodes done (0.0%), 2 pending" in out


def test_status_unknown_run(invoke, finished):
    result = invoke("status", "nope")
    assert result.exit_code == 1
    assert result.stderr == "durableflow: error: run nope not found\n"


# --- history -------------------------------------------------------------------------------------

def test_history_in_order(invoke, finished):
    ok, _ = finished
    result = invoke("history", ok)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["seq", "at", "node", "type", "data"]
    rows = [line.split() for line in lines[2:]]
    seqs = [int(r[0]) for r in rows]
    assert seqs == sorted(seqs)
    types = [r[2] if r[2].startswith(("run.", "node.", "message.")) else r[3] for r in rows]
    assert types[0] == "run.pending" and types[-1] == "run.completed"
    assert "node.completed" in types


def test_history_json_parses_data(invoke, finished):
    ok, _ = finished
    events = json.loads(invoke("history", ok, "--json").stdout)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(e["run_id"] == ok for e in events)
    assert events[0]["type"] == "run.pending"
    assert events[0]["data"] == {"workflowId": "chain", "version": 1}
    assert {"seq", "at", "node_id", "type", "data"} <= set(events[0])


def test_history_follow_of_a_finished_run_ends(invoke, finished):
    ok, _ = finished
    result = invoke("history", ok, "--follow")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1].split()[-2] == "run.completed"


def test_history_follow_json_is_one_object_per_line(invoke, finished):
    ok, _ = finished
    result = invoke("history", ok, "--follow", "--json")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    events = [json.loads(line) for line in lines]       # each line stands alone
    assert events == json.loads(invoke("history", ok, "--json").stdout)


def test_history_unknown_run(invoke, finished):
    result = invoke("history", "nope")
    assert result.exit_code == 1
    assert result.stderr == "durableflow: error: run nope not found\n"


# --- pause, resume, cancel -----------------------------------------------------------------------

def test_pause_resume_cancel(invoke, waiting, db):
    result = invoke("pause", waiting)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"run {waiting} paused"
    assert json.loads(invoke("status", waiting, "--json").stdout)["status"] == "paused"
    assert [r["run_id"] for r in json.loads(invoke("runs", "--json", "--status", "paused").stdout)] == [waiting]

    assert invoke("pause", waiting).exit_code == 0        # twice: not an error, as cancel
    assert json.loads(invoke("status", waiting, "--json").stdout)["status"] == "paused"

    result = invoke("resume", waiting)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"run {waiting} resumed"
    assert json.loads(invoke("status", waiting, "--json").stdout)["status"] == "running"
    assert invoke("resume", waiting).exit_code == 0       # twice: not an error either
    assert json.loads(invoke("status", waiting, "--json").stdout)["status"] == "running"

    result = invoke("cancel", waiting)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"run {waiting} cancelled"
    cancelled = json.loads(invoke("status", waiting, "--json").stdout)
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] == "cancelled with `durableflow cancel`"   # who stopped it


def test_cancel_with_a_reason_keeps_it(invoke, waiting):
    assert invoke("cancel", waiting, "--reason", "customer withdrew the order").exit_code == 0
    assert json.loads(invoke("status", waiting, "--json").stdout)["error"] == "customer withdrew the order"


def test_pause_for_a_while(invoke, waiting):
    result = invoke("pause", waiting, "--for", "10m")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"run {waiting} paused for 10m00s"
    run = json.loads(invoke("status", waiting, "--json").stdout)
    assert run["paused_until"] is not None
    assert "paused until:" in invoke("status", waiting).stdout


def test_a_paused_run_does_not_progress_until_resumed(invoke, waiting):
    invoke("pause", waiting)
    assert invoke("worker", "--until-idle", "--max-wait", "0s").exit_code == 0
    assert json.loads(invoke("status", waiting, "--json").stdout)["status"] == "paused"
    invoke("resume", waiting)
    assert invoke("worker", "--until-idle").exit_code == 0
    assert json.loads(invoke("status", waiting, "--json").stdout)["status"] == "completed"


def test_control_of_a_finished_run_is_refused(invoke, finished):
    ok, _ = finished
    result = invoke("pause", ok)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"durableflow: error: cannot pause run {ok}: it is completed")
    result = invoke("resume", ok)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"durableflow: error: cannot resume run {ok}: it is completed")
    result = invoke("cancel", ok)
    assert result.exit_code == 1
    assert result.stderr == f"durableflow: error: run {ok} is already completed; nothing to cancel\n"


@pytest.mark.parametrize("command", ["pause", "resume", "cancel"])
def test_control_of_an_unknown_run(invoke, finished, command):
    result = invoke(command, "nope")
    assert result.exit_code == 1
    assert result.stderr == "durableflow: error: run nope not found\n"


@pytest.mark.parametrize("value", ["soon", "0", "-5s", "inf", "nan", "99999999999d"])
def test_pause_bad_duration(invoke, waiting, value):
    result = invoke("pause", waiting, "--for", value)
    assert result.exit_code == 2
    assert "Invalid value for '--for'" in result.stderr
    assert json.loads(invoke("status", waiting, "--json").stdout)["status"] == "running"
