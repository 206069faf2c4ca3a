"""run (in-process) and start (enqueue only)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from durableflow import Engine
from tests.cli.cli_helpers import edge, noop, py, workflow


# --- run -----------------------------------------------------------------------------------------

def test_run_completes_with_summary_table(invoke, chain):
    result = invoke("run", chain, "--input", "n=3")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    header = out.splitlines()[0].split()
    assert header == ["node", "status", "attempt", "duration", "error"]
    assert any(line.split()[:3] == ["a", "completed", "1"] for line in out.splitlines())
    assert any(line.split()[:3] == ["b", "completed", "1"] for line in out.splitlines())
    assert "completed" in [line for line in out.splitlines() if line.startswith("run ")][0]
    assert 'outputs: {"b": {"got": {"n": 3}}}' in out


def test_run_input_values_are_json_when_they_parse(invoke, chain):
    result = invoke("run", chain, "--json", "-i", "n=3", "-i", "ok=true", "-i", "name=bob",
                    "-i", 'obj={"a": [1, 2]}', "-i", "empty=", "-i", "eq=a=b", "-i", "f=1.5", "-i", "nan=NaN")
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["inputs"] == {"n": 3, "ok": True, "name": "bob", "obj": {"a": [1, 2]},
                             "empty": "", "eq": "a=b", "f": 1.5, "nan": "NaN"}
    assert run["outputs"] == {"b": {"got": run["inputs"]}}


def test_run_json_is_the_whole_run(invoke, chain):
    result = invoke("run", chain, "--json")
    run = json.loads(result.stdout)
    assert run["status"] == "completed"
    assert run["workflow_id"] == "chain"
    assert [n["node_id"] for n in run["nodes"]] == ["a", "b"]
    assert all(n["duration"] is not None for n in run["nodes"])
    assert run["progress"]["completed"] == 2 and run["progress"]["percent"] == 100.0


def test_run_failed_exit_1_with_the_error(invoke, failing):
    result = invoke("run", failing)
    assert result.exit_code == 1
    boom = [line for line in result.stdout.splitlines() if line.startswith("boom")][0]
    assert "failed" in boom and "ValueError: boom [x]" in boom  # brackets are not rich markup
    assert "error: node 'boom' failed" in result.stdout
    run = json.loads(invoke("run", failing, "--json").stdout)
    assert run["status"] == "failed"


def test_run_inputs_file_then_input_on_top(invoke, chain, tmp_path):
    (tmp_path / "in.json").write_text(json.dumps({"a": 1, "b": 2}))
    (tmp_path / "in.yaml").write_text("a: 10\nc: [1, 2]\n")
    run = json.loads(invoke("run", chain, "--json", "--inputs", tmp_path / "in.json",
                            "--input", "b=3").stdout)
    assert run["inputs"] == {"a": 1, "b": 3}
    run = json.loads(invoke("run", chain, "--json", "--inputs", tmp_path / "in.yaml").stdout)
    assert run["inputs"] == {"a": 10, "c": [1, 2]}


def test_run_inputs_file_problems_are_usage_errors(invoke, chain, tmp_path, db):
    (tmp_path / "list.json").write_text("[1, 2]")
    result = invoke("run", chain, "--inputs", tmp_path / "list.json", "--input", "a=1")
    assert result.exit_code == 2
    assert "not a mapping" in result.stderr
    result = invoke("run", chain, "--inputs", tmp_path / "missing.json")
    assert result.exit_code == 2
    assert "file not found" in result.stderr
    (tmp_path / "bad.json").write_text("{nope")
    assert invoke("run", chain, "--inputs", tmp_path / "bad.json").exit_code == 2
    result = invoke("run", chain, "--input", "day=1", "--input", "day=2")
    assert result.exit_code == 2 and "'--input': key 'day' given twice" in result.stderr
    assert not db.exists()


def test_run_inputs_checked_against_inputs_schema(invoke, write):
    path = write(workflow("typed", noop("a"), inputsSchema={
        "type": "object", "required": ["day"], "properties": {"day": {"type": "string"}}}))
    result = invoke("run", path, "--input", "day=3")
    assert result.exit_code == 2
    assert result.stderr.startswith("durableflow: error: inputs.day: ")
    assert invoke("run", path, "--input", "day=monday").exit_code == 0


def test_run_invalid_definition_exit_2_without_creating_the_database(invoke, write, db):
    path = write(workflow("bad", noop("a"), connections=[edge("a", "ghost")]))
    result = invoke("run", path)
    assert result.exit_code == 2
    assert all(line.startswith("durableflow: error: ") for line in result.stderr.splitlines())
    assert "ghost" in result.stderr
    assert not db.exists()


def test_run_missing_file(invoke, tmp_path):
    result = invoke("run", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "file not found" in result.stderr


def test_run_timeout_cancels_the_run(invoke, write):
    path = write(workflow("hang", py("hang", "import time\n"
                                     "while not ctx.cancelled:\n"
                                     "    time.sleep(0.01)\n"
                                     "output = 'stopped'\n")))
    result = invoke("run", path, "--timeout", "300ms")
    assert result.exit_code == 1
    assert "did not finish within 300ms; cancelled" in result.stderr
    assert "cancelled" in [line for line in result.stdout.splitlines() if line.startswith("run ")][0]


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "0"], "0 is not in the range"),
    (["--input", "novalue"], "'novalue' is not key=value"),
    (["--input", "=3"], "is not key=value"),
    (["--timeout", "soon"], "not a duration"),
    (["--timeout", "0"], "must be more than zero"),
])
def test_run_bad_arguments_exit_2(invoke, chain, args, message, db):
    result = invoke("run", chain, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Usage: durableflow run" in result.stderr
    assert not db.exists()


def test_run_with_idempotency_key_reuses_the_run(invoke, chain):
    first = json.loads(invoke("run", chain, "--json", "--idempotency-key", "k1").stdout)
    again = json.loads(invoke("run", chain, "--json", "--idempotency-key", "k1").stdout)
    assert first["run_id"] == again["run_id"]


def test_live_progress_bar_draws_from_run_progress(db, chain, monkeypatch):
    from durableflow.cli import live
    buffer = io.StringIO()
    monkeypatch.setattr(live, "console", lambda: Console(file=buffer, force_terminal=True,
                                                         width=120))
    with Engine(db) as engine:
        run = engine.execute(chain)
        finished = live.follow(engine, run.run_id, timeout=None, live=True)
    assert finished.status == "completed"
    text = buffer.getvalue()
    assert f"run {run.run_id[:8]}" in text
    assert "2/2" in text


@pytest.mark.slow
def test_run_in_a_real_process_exit_0_and_1(durableflow, chain, failing, db):
    ok = durableflow("run", chain, "--input", "n=1")
    assert ok.returncode == 0, ok.stderr
    assert 'outputs: {"b": {"got": {"n": 1}}}' in ok.stdout
    assert "\x1b[" not in ok.stdout  # not a terminal: no progress bar, no colours
    bad = durableflow("run", failing)
    assert bad.returncode == 1
    assert "ValueError: boom [x]" in bad.stdout
    assert "Traceback" not in bad.stderr


# --- start ---------------------------------------------------------------------------------------

def test_start_prints_only_the_run_id(invoke, chain, db):
    result = invoke("start", chain, "--input", "n=1")
    assert result.exit_code == 0, result.stderr
    run_id = result.stdout.strip()
    assert len(result.stdout.splitlines()) == 1 and len(run_id) == 32
    with Engine(db) as engine:
        run = engine.get_run(run_id)
    assert run.status == "running" and run.inputs == {"n": 1}


def test_start_by_workflow_id_and_version(invoke, chain, write, db):
    invoke("start", chain)
    write(workflow("chain", noop("a"), noop("b"), connections=[edge("a", "b")]), "chain.yaml")
    invoke("start", chain)
    latest = invoke("start", "chain").stdout.strip()
    first = invoke("start", "chain", "--version", "1").stdout.strip()
    with Engine(db) as engine:
        assert engine.get_run(latest).workflow_version == 2
        assert engine.get_run(first).workflow_version == 1


def test_start_idempotency_key_returns_the_existing_run(invoke, chain):
    first = invoke("start", chain, "--idempotency-key", "order-7").stdout
    again = invoke("start", chain, "--idempotency-key", "order-7").stdout
    assert first == again


def test_start_unknown_workflow_or_version_exit_1(invoke, chain):
    result = invoke("start", "nope")
    assert result.exit_code == 1
    assert result.stderr == "durableflow: error: workflow 'nope' is not registered\n"
    invoke("start", chain)
    result = invoke("start", "chain", "--version", "9")
    assert result.exit_code == 1
    assert "version 9 is not registered" in result.stderr


def test_start_version_with_a_file_is_a_usage_error(invoke, chain, db):
    result = invoke("start", chain, "--version", "1")
    assert result.exit_code == 2
    assert "--version applies to a registered workflow id" in result.stderr
    assert not db.exists()


def test_start_invalid_file_exit_2(invoke, write, db):
    path = write(workflow("bad", noop("a"), noop("a")))
    result = invoke("start", path)
    assert result.exit_code == 2
    assert not db.exists()


def test_a_failed_shell_node_says_why_and_names_itself_once(invoke, write):
    path = write({"workflowId": "f2", "nodes": [{"nodeId": "sh", "runtimeType": "Shell", "command": [
        "sh", "-c", "echo step1 ok; echo 'ERROR: cannot open /data/in.csv' >&2; "
                    "echo 'hint: check mount' >&2; exit 1"]}]}, "f2.yaml")
    result = invoke("run", str(path))
    assert result.exit_code == 1
    out = result.stdout   # the run's report (as for any failed run) is on stdout
    assert "error: node 'sh' failed: sh exited with code 1: hint: check mount" in out
    assert "node 'sh' failed: node 'sh'" not in out
    assert "ERROR: cannot open /data/in.csv" in out       # the cause, not only the hint


def test_max_nesting_is_a_global_option_of_the_commands_that_run_nodes(invoke, write):
    """Issue 15: `--max-nesting N` reaches the engine that runs the Subflow; a bad N is a
    usage error, and the default is the engine's."""
    from durableflow.execution.children import DEFAULT_MAX_NESTING
    rec = write(workflow("rec", {"nodeId": "again", "runtimeType": "Subflow", "workflowId": "rec"}), "rec.yaml")
    assert invoke("register", rec).exit_code == 0
    result = invoke("--max-nesting", "2", "run", rec, "--json")
    assert result.exit_code == 1
    run = json.loads(result.stdout)
    assert run["status"] == "failed"
    assert run["error"].endswith("runs are nested 2 deep here (limit 2): rec -> rec -> rec; refused to "
                                 "start a run of 'rec' (does a workflow start itself?)")
    bad = invoke("--max-nesting", "0", "run", rec)
    assert bad.exit_code == 2 and "--max-nesting" in bad.stderr
    assert f"(default {DEFAULT_MAX_NESTING})" in invoke("--help").stdout.replace("\n", " ").replace("  ", " ")
