"""Defects in the runtimes: the per-stream output cap, binary stderr in errors, UTF-8 outputs,
and time read from the context's clock. Real processes and threads throughout."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest
import yaml

from durableflow.clock import Clock, ManualClock
from durableflow.errors import NodeError, NodeTimeout
from durableflow.model import NodeDef
from durableflow.runtimes import Python, Shell, check_output
from durableflow.runtimes.process import DEFAULT_MAX_OUTPUT, ProcessRunner

from tests.unit.runtime_fixtures import df_runtime_helpers as h

PY = sys.executable
BIG_JSON = ("import json, sys; sys.stdout.write(json.dumps({'rows': ['x' * 100] * 22000}))")


def sh(*command, **kw) -> NodeDef:
    return NodeDef(node_id=kw.pop("node_id", "n1"), runtime_type="Shell",
                   command=tuple(command) if command else None, **kw)


# --- 2. the per-stream cap --------------------------------------------------------------------

def test_default_cap_is_one_mib_and_the_error_says_how_to_raise_it():
    assert h.make_ctx().max_stream_bytes == DEFAULT_MAX_OUTPUT == 1024 * 1024
    with pytest.raises(NodeError) as err:
        Shell().execute(sh(PY, "-c", BIG_JSON, output_format="json"), h.make_ctx(), timeout=60)
    message = str(err.value)
    assert err.value.error_type == "InvalidOutput"
    assert "maxStreamBytes" in message and "\n" not in message


def test_node_max_stream_bytes_lets_a_2_mb_json_stdout_through():
    node = sh(PY, "-c", BIG_JSON, output_format="json", max_stream_bytes=3_000_000)
    out = Shell().execute(node, h.make_ctx(), timeout=60)
    assert len(out["rows"]) == 22000


def test_context_max_stream_bytes_is_the_default_when_the_node_sets_none():
    node = sh(PY, "-c", BIG_JSON, output_format="json")
    out = Shell().execute(node, h.make_ctx(max_stream_bytes=3_000_000), timeout=60)
    assert len(out["rows"]) == 22000
    # the node's key wins over the context
    small = sh(PY, "-c", BIG_JSON, output_format="json", max_stream_bytes=1000)
    with pytest.raises(NodeError, match="maxStreamBytes"):
        Shell().execute(small, h.make_ctx(max_stream_bytes=3_000_000), timeout=60)


def test_cut_text_output_names_max_stream_bytes():
    node = sh("sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a; echo; echo END", max_stream_bytes=100)
    out = Shell().execute(node, h.make_ctx(), timeout=30)
    assert "truncated by durableflow" in out["stdout"] and "maxStreamBytes" in out["stdout"]
    assert out["stdout"].endswith("END\n")


def test_engine_runs_a_definition_with_max_stream_bytes(tmp_path):
    from durableflow import Engine
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"workflowId": "big", "nodes": [
        {"nodeId": "dump", "runtimeType": "Shell", "command": [PY, "-c", BIG_JSON],
         "outputFormat": "json", "maxStreamBytes": 3_000_000}]}), encoding="utf-8")
    engine = Engine(tmp_path / "app.db")
    try:
        run = engine.execute(path, timeout=120)
    finally:
        engine.close(timeout=30)
    assert run.status == "completed", run.error
    assert len(run.outputs["dump"]["rows"]) == 22000


# --- 6. binary stderr in an error -------------------------------------------------------------

BINARY = "import sys; sys.stderr.buffer.write(bytes(range(32)) + b'\\xff\\xfe bad \\x1b[31mred\\x7f v\\x0bf\\x0c\\xc2\\x85 \\xe2\\x80\\xa8 end\\n'); sys.exit(3)"


def test_binary_stderr_becomes_a_readable_error():
    with pytest.raises(NodeError) as err:
        Shell().execute(sh(PY, "-c", BINARY), h.make_ctx(), timeout=30)
    message = str(err.value)
    assert err.value.exit_code == 3
    lines = message.split("\n")
    assert lines == message.splitlines()          # no \v, \f, \x1c.. or \x85 hiding in a line
    for line in lines:
        assert line.isprintable(), repr(line)
        assert len(line) <= 300
    # 0x0a and 0x0d end lines; the last line is the summary's, the first ones are in the tail
    assert "\\x1b[31mred\\x7f" in lines[0] and "\ufffd" in lines[0] and "\\x0e" in lines[0]
    assert "\\x00\\x01" in message
    assert lines[0].endswith("v\\x0bf\\x0c\\x85 \\u2028 end")   # line breaks to str.splitlines


def test_binary_stderr_of_a_python_child_and_control_characters_in_exceptions():
    node = NodeDef(node_id="p", runtime_type="Python", isolation="process",
                   script="import os; os.write(2, bytes(range(1, 32)) + b'\\xff'); os._exit(4)")
    with pytest.raises(NodeError) as err:
        Python().execute(node, h.make_ctx(node_id="p"), timeout=30)
    assert str(err.value).isprintable(), repr(str(err.value))
    node = NodeDef(node_id="q", runtime_type="Python",
                   script="raise ValueError('bad\\x00byte \\x1b[1m' + 'y' * 2000)")
    with pytest.raises(NodeError) as err:
        Python().execute(node, h.make_ctx(node_id="q"), timeout=30)
    message = str(err.value)
    assert message.isprintable() and "\\x00" in message and len(message) <= 500


# --- 7. stored JSON is UTF-8 -----------------------------------------------------------------

def test_check_output_keeps_accents_and_emoji_as_utf8():
    text = check_output({"mot": "café", "emoji": "😀"})
    assert "café" in text and "😀" in text and "\\u" not in text
    assert json.loads(text) == {"mot": "café", "emoji": "😀"}


def test_check_output_falls_back_to_escapes_for_lone_surrogates():
    text = check_output({"s": "a\ud800b"})
    text.encode("utf-8")                   # storable in SQLite
    assert json.loads(text) == {"s": "a\ud800b"}


def test_non_ascii_input_reaches_a_shell_node_intact():
    script = "import json, os, sys; print(json.dumps([json.load(sys.stdin), json.loads(os.environ['DURABLEFLOW_INPUT'])]))"
    out = Shell().execute(sh(PY, "-c", script, output_format="json"),
                          h.make_ctx(input={"mot": "café 😀"}), timeout=30)
    assert out == [{"mot": "café 😀"}] * 2
    node = NodeDef(node_id="p", runtime_type="Python", isolation="process",
                   script="output = ctx.input['mot'] + ctx.vars['v']")
    ctx = h.make_ctx(node_id="p", input={"mot": "é"}, vars={"v": "😀"})
    assert Python().execute(node, ctx, timeout=30) == "é😀"


# --- 9. the runtimes read the context's clock -------------------------------------------------

def test_node_context_has_a_clock_and_manual_clock_keeps_real_monotonic_by_default():
    assert isinstance(h.make_ctx().clock, Clock)
    clock = ManualClock(1_800_000_000.0)
    before_real, before = time.monotonic(), clock.monotonic()
    clock.advance(3600)
    assert clock.now() == 1_800_003_600.0
    assert clock.monotonic() - before < 60          # advance() moved the wall clock only
    h.wait_until(lambda: clock.monotonic() > before, what="real monotonic time to move")
    assert abs((clock.monotonic() - before) - (time.monotonic() - before_real)) < 5


_BLOCKERS: dict[str, threading.Event] = {}


def _blocks(ctx):
    _BLOCKERS["started"].set()
    _BLOCKERS["release"].wait(60)
    return "late"


def advance_until_done(clock: ManualClock, thread: threading.Thread, step: float,
                       limit: float = 30.0) -> None:
    """Advance manual time by `step` until the thread ends (a real deadline fails the test).
    Repeated, because the runtime may read its start time after a first advance."""
    deadline = time.monotonic() + limit
    while thread.is_alive():
        assert time.monotonic() < deadline, "the node did not time out on manual time"
        clock.advance(step)
        thread.join(0.05)


def run_in_thread(call) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run():
        try:
            result["value"] = call()
        except BaseException as exc:   # handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_default_manual_clock_still_times_python_nodes_out_in_real_time():
    _BLOCKERS.update(release=threading.Event(), started=threading.Event())
    node = NodeDef(node_id="slow", runtime_type="Python", callable=f"{__name__}:_blocks")
    try:
        started = time.monotonic()
        with pytest.raises(NodeTimeout):
            Python().execute(node, h.make_ctx(node_id="slow", clock=ManualClock()), timeout=0.3)
        assert time.monotonic() - started >= 0.3
    finally:
        _BLOCKERS["release"].set()


def test_manual_monotonic_time_times_a_python_node_out_without_waiting():
    clock = ManualClock(1_800_000_000.0, manual_monotonic=True)
    start = clock.monotonic()
    assert clock.monotonic() == start             # frozen until advanced
    clock.advance(5)
    assert (clock.monotonic(), clock.now()) == (start + 5, 1_800_000_005.0)
    _BLOCKERS.update(release=threading.Event(), started=threading.Event())
    node = NodeDef(node_id="slow", runtime_type="Python", callable=f"{__name__}:_blocks")
    real_start = time.monotonic()
    thread, result = run_in_thread(
        lambda: Python().execute(node, h.make_ctx(node_id="slow", clock=clock), timeout=3600))
    try:
        assert _BLOCKERS["started"].wait(30)
        thread.join(0.2)
        assert thread.is_alive()                  # an hour of manual time has not passed
        advance_until_done(clock, thread, 3601)
        assert isinstance(result.get("error"), NodeTimeout), result
        assert time.monotonic() - real_start < 60
    finally:
        _BLOCKERS["release"].set()


def test_manual_monotonic_time_times_a_process_out_without_waiting():
    clock = ManualClock(manual_monotonic=True)
    thread, result = run_in_thread(
        lambda: Shell().execute(sh("sleep", "600"), h.make_ctx(clock=clock), timeout=300))
    thread.join(0.3)
    assert thread.is_alive()                      # real time does not time it out
    advance_until_done(clock, thread, 301)
    assert isinstance(result.get("error"), NodeTimeout), result
    # a ProcessRunner given a clock reads it too
    frozen = ManualClock(manual_monotonic=True)
    thread, result = run_in_thread(
        lambda: ProcessRunner().run(["sleep", "600"], node_id="n", timeout=5, clock=frozen))
    advance_until_done(frozen, thread, 10)
    assert isinstance(result.get("error"), NodeTimeout), result
