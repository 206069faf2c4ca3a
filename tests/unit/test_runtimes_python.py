"""The Python and Noop runtimes, NodeContext, check_output and get_runtime: real threads and processes."""

from __future__ import annotations

import logging
import shutil
import threading
import time

import pytest

from durableflow.errors import NodeCancelled, NodeError, NodeTimeout
from durableflow.model import NodeDef
from durableflow.runtimes import (INLINE_RUNTIMES, Noop, Python, UnknownRuntime, check_output,
                                  get_runtime)
from durableflow.runtimes import python as python_module


from tests.unit.runtime_fixtures import df_runtime_helpers as h  # noqa: E402


@pytest.fixture
def fixtures_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(h.FIXTURES))


def py(**kw) -> NodeDef:
    return NodeDef(node_id=kw.pop("node_id", "n1"), runtime_type="Python", **kw)


# --- NodeContext ------------------------------------------------------------------------------

def test_ctx_progress_clamps_and_rejects_non_numbers():
    seen = []
    ctx = h.make_ctx(progress_cb=lambda p, m: seen.append((p, m)))
    ctx.progress(50, "half")
    ctx.progress(250)
    ctx.progress(-3, 7)
    assert seen == [(50.0, "half"), (100.0, None), (0.0, "7")]
    for bad in ("50", None, True, float("nan")):
        with pytest.raises(ValueError):
            ctx.progress(bad)
    h.make_ctx().progress(10)   # no callback: accepted and ignored


def test_ctx_cancel_and_logger():
    ctx = h.make_ctx(node_id="fetch")
    assert ctx.log.name == "durableflow.node.fetch"
    assert not ctx.cancelled
    ctx.check_cancelled()
    ctx.cancel_event.set()
    assert ctx.cancelled
    with pytest.raises(NodeCancelled):
        ctx.check_cancelled()


# --- thread isolation --------------------------------------------------------------------------

def test_inline_script_sees_ctx_fields_and_sets_output():
    ctx = h.make_ctx(run_id="r9", node_id="calc", attempt=3, iteration=2)
    node = py(node_id="calc", script="""
        output = {"in": ctx.input, "inputs": ctx.inputs, "vars": dict(ctx.vars),
                  "ids": [ctx.run_id, ctx.node_id, ctx.attempt, ctx.iteration]}
    """)
    out = Python().execute(node, ctx, timeout=5)
    assert out == {"in": {"value": 21}, "inputs": {"up": {"x": 1}}, "vars": {"count": 1},
                   "ids": ["r9", "calc", 3, 2]}


def test_inline_script_is_compiled_once_per_text():
    text = "output = ctx.input['value'] + 1  # compile-cache probe"
    before = python_module._compile.cache_info().hits
    for _ in range(3):
        assert Python().execute(py(script=text), h.make_ctx(), timeout=5) == 22
    assert python_module._compile.cache_info().hits >= before + 2


def test_vars_written_by_the_body_are_visible_to_the_caller():
    variables = {"count": 1}
    ctx = h.make_ctx(vars=variables)
    Python().execute(py(script="ctx.vars['count'] += 1\nctx.vars['new'] = 'x'"), ctx, timeout=5)
    assert ctx.vars is variables
    assert variables == {"count": 2, "new": "x"}


def test_script_path_is_loaded_once_per_mtime(tmp_path):
    script = tmp_path / "body.py"
    shutil.copy(h.FIXTURES / "df_run_script.py", script)
    node = py(script_path=script)
    assert Python().execute(node, h.make_ctx(), timeout=5)["calls"] == 1
    assert Python().execute(node, h.make_ctx(attempt=2), timeout=5) == {
        "calls": 2, "input": {"value": 21}, "attempt": 2}
    # An edit (even within the same second) is picked up: a fresh module, counting from 1.
    script.write_text(script.read_text() + "\n# edited\n")
    assert Python().execute(node, h.make_ctx(), timeout=5)["calls"] == 1


def test_script_path_problems_are_clear(tmp_path):
    with pytest.raises(NodeError) as missing:
        Python().execute(py(script_path=tmp_path / "nope.py"), h.make_ctx(), timeout=5)
    assert missing.value.error_type == "ScriptNotFound" and "nope.py" in str(missing.value)
    no_run = tmp_path / "norun.py"
    no_run.write_text("x = 1\n")
    with pytest.raises(NodeError) as invalid:
        Python().execute(py(script_path=no_run), h.make_ctx(), timeout=5)
    assert invalid.value.error_type == "InvalidScript" and "run(ctx)" in str(invalid.value)


def test_callable_is_imported_and_called(fixtures_on_path):
    ctx = h.make_ctx()
    assert Python().execute(py(callable="df_runtime_callables:double"), ctx, timeout=5) == {
        "value": 42, "node": "n1"}
    assert ctx.vars["doubled"] is True
    assert Python().execute(py(callable="df_runtime_callables:Tools.echo"), h.make_ctx(input=[1]),
                            timeout=5) == [1]


@pytest.mark.parametrize("target, error_type", [
    ("no_colon_here", "InvalidCallable"),
    ("df_runtime_callables:missing", "InvalidCallable"),
    ("df_no_such_module_xyz:f", "ModuleNotFoundError"),
])
def test_bad_callables(fixtures_on_path, target, error_type):
    with pytest.raises(NodeError) as err:
        Python().execute(py(callable=target), h.make_ctx(), timeout=5)
    assert err.value.error_type == error_type


def test_exactly_one_body_source_is_required():
    for node in (py(), py(script="output = 1", callable="a:b")):
        with pytest.raises(NodeError) as err:
            Python().execute(node, h.make_ctx(), timeout=5)
        assert err.value.error_type == "InvalidNode"


def test_exception_becomes_node_error_with_type_and_one_line_location():
    node = py(script="x = 1\nraise KeyError('missing\\nkey')")
    with pytest.raises(NodeError) as err:
        Python().execute(node, h.make_ctx(), timeout=5)
    assert err.value.error_type == "KeyError"
    message = str(err.value)
    assert message.startswith("KeyError: ") and "missing" in message
    assert ":2 in <module>" in message and "\n" not in message
    assert isinstance(err.value.__cause__, KeyError)


def test_node_error_from_the_body_keeps_its_type(fixtures_on_path):
    with pytest.raises(NodeError) as err:
        Python().execute(py(callable="df_runtime_callables:custom_error"), h.make_ctx(), timeout=5)
    assert (err.value.error_type, err.value.exit_code) == ("QuotaExceeded", 9)


def test_syntax_error_and_system_exit_are_body_failures():
    with pytest.raises(NodeError) as syntax:
        Python().execute(py(script="output = ("), h.make_ctx(), timeout=5)
    assert syntax.value.error_type == "SyntaxError"
    with pytest.raises(NodeError) as exit_:
        Python().execute(py(script="raise SystemExit(3)"), h.make_ctx(), timeout=5)
    assert exit_.value.error_type == "SystemExit"


def test_non_serialisable_output_is_a_clear_error():
    with pytest.raises(NodeError) as err:
        Python().execute(py(script="output = {'rows': [1, {2, 3}]}"), h.make_ctx(), timeout=5)
    assert err.value.error_type == "OutputNotSerializable"
    assert "set" in str(err.value) and "['rows'][1]" in str(err.value)
    with pytest.raises(NodeError) as bad_vars:
        Python().execute(py(script="ctx.vars['when'] = object()"), h.make_ctx(), timeout=5)
    assert bad_vars.value.error_type == "OutputNotSerializable" and "ctx.vars" in str(bad_vars.value)


def test_thread_timeout_returns_on_time_and_abandons_the_body():
    release, finished = threading.Event(), threading.Event()
    ctx = h.make_ctx(inputs={"release": release, "finished": finished})
    node = py(script="ctx.inputs['release'].wait(30)\nctx.inputs['finished'].set()\noutput = 'late'")
    started = time.monotonic()
    with pytest.raises(NodeTimeout) as err:
        Python().execute(node, ctx, timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.5
    assert err.value.error_type == "TimeoutError"
    assert ctx.cancelled                      # a cooperative body is told to stop
    assert not finished.is_set()              # the body was still running when we returned
    release.set()
    assert finished.wait(5)                   # and its late result went nowhere


def test_thread_cancel_is_seen_by_a_cooperative_body():
    started, saw_cancel = threading.Event(), threading.Event()
    ctx = h.make_ctx(inputs={"started": started, "saw": saw_cancel})
    node = py(script="""
        ctx.inputs['started'].set()
        ctx.cancel_event.wait(10)
        if ctx.cancelled:
            ctx.inputs['saw'].set()
    """)
    h.set_when(started, ctx.cancel_event)
    begun = time.monotonic()
    with pytest.raises(NodeCancelled):
        Python().execute(node, ctx, timeout=10)
    assert time.monotonic() - begun < 3
    assert saw_cancel.wait(5)


def test_cancelled_before_start_does_not_run():
    ctx = h.make_ctx()
    ctx.cancel_event.set()
    with pytest.raises(NodeCancelled):
        Python().execute(py(script="raise AssertionError('ran')"), ctx, timeout=5)


# --- process isolation -------------------------------------------------------------------------

def test_process_isolation_returns_output_and_vars():
    variables = {"count": 1}
    ctx = h.make_ctx(vars=variables, attempt=2)
    node = py(isolation="process", script="""
        import os
        ctx.vars['count'] += 1
        output = {"in": ctx.input, "inputs": ctx.inputs, "attempt": ctx.attempt,
                  "pid": os.getpid(), "env": os.environ["DURABLEFLOW_NODE_ID"]}
    """)
    out = Python().execute(node, ctx, timeout=10)
    assert out["in"] == {"value": 21} and out["inputs"] == {"up": {"x": 1}}
    assert out["attempt"] == 2 and out["env"] == "n1"
    assert out["pid"] != __import__("os").getpid()
    assert variables == {"count": 2}          # same dict object, updated in place


def test_process_isolation_callable_progress_log_and_print(fixtures_on_path, caplog):
    seen = []
    logger = logging.getLogger("durableflow.node.test-proc")
    ctx = h.make_ctx(progress_cb=lambda p, m: seen.append((p, m)), logger=logger)
    with caplog.at_level(logging.INFO, logger=logger.name):
        out = Python().execute(py(isolation="process", callable="df_runtime_callables:report"),
                               ctx, timeout=10)
    assert out == {"pid_is_int": True}        # the body's print() did not corrupt the result
    assert seen == [(100.0, "over the top")]
    messages = [r.getMessage() for r in caplog.records]
    assert "hello from n1" in messages
    assert any("printed by the body" in m for m in messages)


def test_process_isolation_errors():
    runtime = Python()
    with pytest.raises(NodeError) as raised:
        runtime.execute(py(isolation="process", script="int('x')"), h.make_ctx(), timeout=10)
    assert raised.value.error_type == "ValueError" and "invalid literal" in str(raised.value)
    with pytest.raises(NodeError) as died:
        runtime.execute(py(isolation="process", script="import os, sys\nprint('bye', file=sys.stderr, flush=True)\nos._exit(7)"),
                        h.make_ctx(), timeout=10)
    assert (died.value.error_type, died.value.exit_code) == ("ExitCode", 7)
    assert "bye" in str(died.value)
    with pytest.raises(NodeError) as bad:
        runtime.execute(py(isolation="process", script="output = {1, 2}"), h.make_ctx(), timeout=10)
    assert bad.value.error_type == "OutputNotSerializable" and "set" in str(bad.value)


def test_process_isolation_timeout_kills_the_child(tmp_path):
    pid_file = tmp_path / "pid"
    node = py(isolation="process", script=f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """)
    started = time.monotonic()
    with pytest.raises(NodeTimeout):
        Python(grace_period=0.5).execute(node, h.make_ctx(), timeout=1.0)
    assert time.monotonic() - started < 3
    pid = int(pid_file.read_text())
    h.wait_until(lambda: not h.pid_alive(pid), what=f"child {pid} to die")


def test_process_isolation_cancel_kills_the_child():
    started = threading.Event()
    ctx = h.make_ctx(progress_cb=lambda p, m: started.set())
    h.set_when(started, ctx.cancel_event)
    node = py(isolation="process", script="import time\nctx.progress(1)\ntime.sleep(60)")
    begun = time.monotonic()
    with pytest.raises(NodeCancelled):
        Python(grace_period=0.5).execute(node, ctx, timeout=30)
    assert time.monotonic() - begun < 5


def test_unknown_isolation_is_refused():
    with pytest.raises(NodeError) as err:
        Python().execute(py(script="output = 1", isolation="fiber"), h.make_ctx(), timeout=5)
    assert err.value.error_type == "InvalidNode"


# --- check_output, Noop, get_runtime -----------------------------------------------------------

def test_check_output():
    assert check_output({"a": [1, "x", None, 2.5]}) == '{"a": [1, "x", null, 2.5]}'
    for value, fragment in [({"t": (1, object())}, "object at output['t'][1]"),
                            ({"x": float("nan")}, "nan"),
                            ({(1, 2): 3}, "key of type tuple")]:
        with pytest.raises(NodeError) as err:
            check_output(value)
        assert err.value.error_type == "OutputNotSerializable"
        assert fragment in str(err.value)


def test_noop_and_registry():
    assert Noop().execute(NodeDef("n", "Noop"), h.make_ctx(input=[1, 2]), timeout=None) == [1, 2]
    assert INLINE_RUNTIMES == {"Noop"}
    for name in ("Noop", "Python", "Shell", "PowerShell", "CSharpScript"):
        assert get_runtime(name) is get_runtime(name)
        assert get_runtime(name).runtime_type == name
    with pytest.raises(KeyError):
        get_runtime("IfElse")
    with pytest.raises(NodeError) as err:
        get_runtime("Bogus")
    assert isinstance(err.value, UnknownRuntime) and "Bogus" in str(err.value)
