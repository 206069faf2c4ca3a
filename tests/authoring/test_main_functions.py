"""Functions of `__main__` (the script being run) as nodes: `__main__:name`, which runs in the
program that defined them, and fails elsewhere with a sentence saying why."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from durableflow import Engine, Workflow, node
from durableflow.errors import NodeError
from durableflow.model import NodeDef
from durableflow.runtimes.python import load_body
from tests.authoring.conftest import ROOT


def test_a_main_callable_missing_here_says_whose_main_it_was():
    missing = NodeDef("n", "Python", callable="__main__:surely_not_defined_here")
    with pytest.raises(NodeError) as caught:
        load_body(missing)
    message = str(caught.value)
    assert "'surely_not_defined_here' not found in this worker's __main__" in message
    assert "runs only in workers of that same program" in message
    assert "move it into an importable module" in message


def test_a_missing_callable_of_a_module_keeps_its_short_message():
    with pytest.raises(NodeError) as caught:
        load_body(NodeDef("n", "Python", callable="tests.authoring.flows:nothing_here"))
    assert str(caught.value) == ("node 'n': callable 'tests.authoring.flows:nothing_here': "
                                 "'nothing_here' not found")


def test_a_function_of_main_compiles_to_main_and_runs_in_process(tmp_path, monkeypatch):
    main = sys.modules["__main__"]

    def doubled(ctx):
        return {"twice": ctx.input["n"] * 2}

    doubled.__module__ = "__main__"
    doubled.__qualname__ = "authoring_test_doubled"
    monkeypatch.setattr(main, "authoring_test_doubled", node(doubled), raising=False)
    wf = Workflow("from-main")
    wf.python("double", main.authoring_test_doubled)
    assert wf.to_dict()["nodes"][0]["callable"] == "__main__:authoring_test_doubled"
    with Engine(tmp_path / "main.db") as engine:
        run = engine.execute(wf, {"n": 21}, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"double": {"twice": 42}}


SCRIPT = """
import sys
from durableflow import Engine, NodeContext, node, workflow

@node
def greet(ctx: NodeContext) -> str:
    return "hello " + ctx.input["name"]

@workflow
def greeting(wf):
    greet()

engine = Engine(sys.argv[1])
print(engine.start(greeting, {"name": "ada"}))
engine.close()
"""


@pytest.mark.slow
def test_a_worker_of_another_program_fails_the_node_saying_why(tmp_path):
    script = tmp_path / "greeter.py"
    script.write_text(textwrap.dedent(SCRIPT))
    db = tmp_path / "greet.db"
    started = subprocess.run([sys.executable, str(script), str(db)], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    worked = subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), "worker",
                             "--until-idle", "--max-wait", "1s"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert worked.returncode == 0, worked.stderr
    with Engine(db) as engine:
        run = engine.get_run(run_id)
    assert run.status == "failed"
    error = run.node("greet").error
    assert "callable '__main__:greet': 'greet' not found in this worker's __main__" in error
    assert "move it into an importable module" in error
