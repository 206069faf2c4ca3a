"""Node bodies through the engine: Python script / scriptPath / callable, the ctx they see, Shell."""

from __future__ import annotations

import json
import sys
import textwrap

import yaml

from df_it_support import conn, node, node_status, py, wait_until, wf


def test_inline_script_sets_output(engine):
    run = engine.execute(wf("inline", py("a", "x = 20\noutput = {'sum': x + ctx.input['y']}")),
                         inputs={"y": 22}, timeout=30)
    assert run.status == "completed"
    assert run.outputs == {"a": {"sum": 42}}


def test_script_path_defines_run_relative_to_the_definition_file(engine, tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "double.py").write_text(textwrap.dedent("""
        def run(ctx):
            return {"doubled": [v * 2 for v in ctx.input["values"]], "node": ctx.node_id}
    """))
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(wf("from-file", {
        "nodeId": "dbl", "runtimeType": "Python", "scriptPath": "scripts/double.py"})))
    run = engine.execute(str(path), inputs={"values": [1, 2, 3]}, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"dbl": {"doubled": [2, 4, 6], "node": "dbl"}}


def test_callable_module_function_is_called_with_ctx(engine, tmp_path, monkeypatch):
    (tmp_path / "it_callable_mod.py").write_text(textwrap.dedent("""
        def shout(ctx):
            return ctx.input["word"].upper() + "!"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    defn = wf("callable", {"nodeId": "c", "runtimeType": "Python", "callable": "it_callable_mod:shout"})
    run = engine.execute(defn, inputs={"word": "hey"}, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"c": "HEY!"}


def test_ctx_identity_fields_and_inputs_by_source_and_by_target_port(engine):
    record = textwrap.dedent("""
        output = {"run_id": ctx.run_id, "node_id": ctx.node_id, "attempt": ctx.attempt,
                  "input": ctx.input, "inputs": ctx.inputs, "vars": dict(ctx.vars)}
    """)
    defn = wf(
        "ctx-fields",
        py("left", "output = {'side': 'L'}"),
        py("right", "output = {'side': 'R'}"),
        py("by_source", record),
        py("by_port", record),
        py("join", record),
        connections=[
            conn("left", "by_source"),
            conn("right", "by_port", targetPort="rhs"),
            conn("left", "join", targetPort="first"),
            conn("right", "join"),
        ],
        variables={"threshold": 10},
    )
    run = engine.execute(defn, inputs={"go": True}, concurrency=3, timeout=30)
    assert run.status == "completed", run.error
    out = run.outputs
    assert out["by_source"] == {"run_id": run.run_id, "node_id": "by_source", "attempt": 1,
                                "input": {"side": "L"}, "inputs": {"left": {"side": "L"}},
                                "vars": {"threshold": 10}}
    assert out["by_port"]["input"] == {"side": "R"}
    assert out["by_port"]["inputs"] == {"rhs": {"side": "R"}}
    # A join sees each delivery under its targetPort, else the source node id.
    assert out["join"]["inputs"] == {"first": {"side": "L"}, "right": {"side": "R"}}
    # An entry node's input is the run's inputs.
    assert run.node("left").input == {"go": True}


def test_shell_node_gets_input_on_stdin_and_env_and_returns_parsed_json(engine):
    program = textwrap.dedent("""
        import json, os, sys
        data = json.load(sys.stdin)
        env = json.loads(os.environ["DURABLEFLOW_INPUT"])
        print(json.dumps({"stdin": data, "env": env, "node": os.environ["DURABLEFLOW_NODE_ID"],
                          "argv": sys.argv[1:]}))
    """)
    defn = wf(
        "shell",
        py("make", "output = {'rows': 3, 'name': 'x'}"),
        node("sh", "Shell", command=[sys.executable, "-c", program, "one", "two words"],
             outputFormat="json"),
        node("text", "Shell", command=[sys.executable, "-c", "print('plain')"]),
        connections=[conn("make", "sh"), conn("sh", "text")],
    )
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    sh = run.node("sh").output
    assert sh == {"stdin": {"rows": 3, "name": "x"}, "env": {"rows": 3, "name": "x"},
                  "node": "sh", "argv": ["one", "two words"]}
    assert run.outputs == {"text": {"exitCode": 0, "stdout": "plain\n", "stderr": ""}}


def test_shell_nonzero_exit_fails_the_node_with_its_exit_code(engine):
    defn = wf("shell-fail", node("sh", "Shell", command=[
        sys.executable, "-c", "import sys; sys.stderr.write('broken pipe\\n'); sys.exit(3)"]))
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    sh = run.node("sh")
    assert sh.status == "failed" and sh.error_type == "ExitCode"
    assert "code 3" in sh.error and "broken pipe" in sh.error
    assert "sh" in run.error


def test_python_exception_is_the_node_error_with_type(engine):
    run = engine.execute(wf("raise", py("a", "raise KeyError('missing')")), timeout=30)
    a = run.node("a")
    assert (run.status, a.status, a.error_type) == ("failed", "failed", "KeyError")
    assert "missing" in a.error


def test_unserialisable_output_fails_the_node(engine):
    run = engine.execute(wf("bad-out", py("a", "output = object()")), timeout=30)
    a = run.node("a")
    assert (run.status, a.status, a.error_type) == ("failed", "failed", "OutputNotSerializable")
    assert json.dumps(engine.get_run(run.run_id).outputs) in ("null", "{}")


def test_process_isolated_python_node_writes_vars_and_reports_progress(engine):
    defn = wf(
        "isolated",
        py("child", "ctx.vars['seen'] = ctx.vars['start'] + 1\nctx.progress(30, 'child')\n"
                    "import os\noutput = {'input': ctx.input, 'attempt': ctx.attempt, 'pid': os.getpid()}",
           isolation="process"),
        py("after", "import os\noutput = {'vars': dict(ctx.vars), 'pid': os.getpid()}"),
        connections=[conn("child", "after")],
        variables={"start": 1},
    )
    run = engine.execute(defn, inputs={"q": 1}, timeout=30)
    assert run.status == "completed", run.error
    child = run.node("child")
    assert child.output["input"] == {"q": 1} and child.output["attempt"] == 1
    assert child.output["pid"] != run.outputs["after"]["pid"]
    assert child.progress == 30 and child.progress_message == "child"
    assert run.variables == {"start": 1, "seen": 2}
    assert run.outputs["after"]["vars"] == {"start": 1, "seen": 2}


def test_external_bodies_are_killed_on_cancel(engine):
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    defn = wf("kill-on-cancel", py("start"), node("sh", "Shell", command=sleeper),
              py("iso", "import time\ntime.sleep(30)", isolation="process"),
              connections=[conn("start", "sh"), conn("start", "iso")])
    run_id = engine.start(defn)
    with engine.worker(concurrency=2):
        wait_until(lambda: node_status(engine, run_id, "sh") == "running"
                   and node_status(engine, run_id, "iso") == "running", what="both bodies running")
        engine.cancel(run_id)
        wait_until(lambda: node_status(engine, run_id, "sh") == "cancelled"
                   and node_status(engine, run_id, "iso") == "cancelled", timeout=10, what="both cancelled")
    run = engine.get_run(run_id)
    assert run.status == "cancelled"
    assert "killed" in run.node("sh").error and "killed" in run.node("iso").error


def test_external_bodies_time_out(engine):
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    handled = wf("shell-timeout", node("sh", "Shell", command=sleeper, timeout="500ms"),
                 py("handler", "output = ctx.input['errorType']"),
                 connections=[conn("sh", "handler", on="Fail")])
    run = engine.execute(handled, timeout=30)
    assert run.status == "completed", run.error
    assert run.node("sh").error_type == "TimeoutError" and "killed" in run.node("sh").error
    assert run.outputs == {"handler": "TimeoutError"}
    unhandled = wf("iso-timeout", py("iso", "import time\ntime.sleep(30)", isolation="process", timeout="500ms"))
    run = engine.execute(unhandled, timeout=30)
    assert run.status == "failed" and "iso" in run.error
    assert run.node("iso").error_type == "TimeoutError"
