"""Shell, PowerShell and CSharpScript runtimes, with real processes (and stand-in pwsh/dotnet)."""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import pytest

from durableflow.errors import NodeCancelled, NodeError, NodeTimeout
from durableflow.model import FrozenDict, NodeDef
from durableflow.runtimes import CSharpScript, PowerShell, Shell, check_output, missing_program
from durableflow.runtimes.process import MAX_ENV_INPUT, Capture


from tests.unit.runtime_fixtures import df_runtime_helpers as h  # noqa: E402
PY = sys.executable
# Prints what the process received, as JSON: argv, stdin, and the DURABLEFLOW_* environment.
REPORT = ("import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read(), "
          "'env': {k: v for k, v in os.environ.items() if k.startswith(('DURABLEFLOW_', 'DF_'))}, "
          "'cwd': os.getcwd()}))")


def sh(*command, **kw) -> NodeDef:
    return NodeDef(node_id=kw.pop("node_id", "n1"), runtime_type="Shell",
                   command=tuple(command) if command else None, **kw)


def test_text_output_shape():
    out = Shell().execute(sh("sh", "-c", "echo out; echo err >&2"), h.make_ctx(), timeout=10)
    assert out == {"exitCode": 0, "stdout": "out\n", "stderr": "err\n"}


def test_argv_is_not_interpreted_by_a_shell():
    args = ["a b", "'single'", '"double"', "$HOME", "*", "; echo hacked", "`id`"]
    node = sh(PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *args, output_format="json")
    assert Shell().execute(node, h.make_ctx(), timeout=10) == args


def test_shell_true_runs_through_sh():
    one = sh("echo $DURABLEFLOW_NODE_ID && echo two", shell=True)
    assert Shell().execute(one, h.make_ctx(), timeout=10)["stdout"] == "n1\ntwo\n"
    joined = sh("echo", "abc", "|", "tr", "a", "X", shell=True)
    assert Shell().execute(joined, h.make_ctx(), timeout=10)["stdout"] == "Xbc\n"


def test_input_on_stdin_and_in_the_environment(tmp_path):
    ctx = h.make_ctx(run_id="r7", node_id="fetch", attempt=2, input={"day": "2026-11-27", "n": [1]})
    node = sh(PY, "-c", REPORT, node_id="fetch", output_format="json",
              env=FrozenDict({"DF_MODE": "fast", "DF_N": 3, "DF_FLAG": True}), working_dir=tmp_path)
    got = Shell().execute(node, ctx, timeout=10)
    assert json.loads(got["stdin"]) == ctx.input
    env = got["env"]
    assert json.loads(env["DURABLEFLOW_INPUT"]) == ctx.input
    assert (env["DURABLEFLOW_RUN_ID"], env["DURABLEFLOW_NODE_ID"], env["DURABLEFLOW_ATTEMPT"]) == (
        "r7", "fetch", "2")
    assert (env["DF_MODE"], env["DF_N"], env["DF_FLAG"]) == ("fast", "3", "true")
    assert Path(got["cwd"]) == tmp_path


def test_large_input_goes_to_a_temp_file_instead_of_the_environment():
    big = {"blob": "x" * (MAX_ENV_INPUT + 10)}
    script = REPORT.replace("'cwd': os.getcwd()",
                            "'file': open(os.environ['DURABLEFLOW_INPUT_FILE']).read()")
    got = Shell().execute(sh(PY, "-c", script, output_format="json"), h.make_ctx(input=big), timeout=10)
    assert "DURABLEFLOW_INPUT" not in got["env"]
    assert json.loads(got["stdin"]) == big and json.loads(got["file"]) == big
    assert not Path(got["env"]["DURABLEFLOW_INPUT_FILE"]).exists()   # removed afterwards


def test_non_zero_exit_is_an_exit_code_error():
    with pytest.raises(NodeError) as err:
        Shell().execute(sh("sh", "-c", "echo working; echo 'disk is full' >&2; exit 3"),
                        h.make_ctx(), timeout=10)
    assert (err.value.error_type, err.value.exit_code) == ("ExitCode", 3)
    assert "exited with code 3" in str(err.value) and "disk is full" in str(err.value)


def test_a_failed_command_keeps_the_tail_of_its_stderr_below_the_summary():
    script = ("echo step1 ok; echo 'ERROR: cannot open /data/in.csv' >&2; "
              "for i in $(seq 1 30); do echo \"noise $i\" >&2; done; echo 'hint: check mount' >&2; exit 1")
    with pytest.raises(NodeError) as err:
        Shell().execute(sh("sh", "-c", script), h.make_ctx(), timeout=10)
    lines = str(err.value).splitlines()
    assert lines[0] == "node 'n1': sh exited with code 1: hint: check mount"
    assert lines[1] == "stderr (last lines):"
    assert lines[2:] == [f"noise {i}" for i in range(22, 31)] + ["hint: check mount"]


def test_a_one_line_failure_stays_one_line():
    with pytest.raises(NodeError) as err:
        Shell().execute(sh("sh", "-c", "echo 'only this' >&2; exit 2"), h.make_ctx(), timeout=10)
    assert str(err.value) == "node 'n1': sh exited with code 2: only this"


def test_killed_by_a_signal_reports_128_plus_signal():
    with pytest.raises(NodeError) as err:
        Shell().execute(sh("sh", "-c", "kill -9 $$"), h.make_ctx(), timeout=10)
    assert err.value.exit_code == 137 and "SIGKILL" in str(err.value)


def test_output_format_json():
    node = sh("printf", '{"rows": 3, "ok": true}', output_format="json")
    assert Shell().execute(node, h.make_ctx(), timeout=10) == {"rows": 3, "ok": True}
    for garbage in ("this is not json at all " * 10, "NaN", ""):
        with pytest.raises(NodeError) as err:
            Shell().execute(sh("printf", "%s", garbage, output_format="json"), h.make_ctx(), timeout=10)
        assert err.value.error_type == "InvalidOutput"
        message = str(err.value)
        assert "\n" not in message and len(message) < 200
        assert "not JSON" in message or "empty" in message


def test_non_utf8_output_is_decoded_with_replacement():
    out = Shell().execute(sh("printf", "ok \\377\\376 end"), h.make_ctx(), timeout=10)
    assert out["stdout"] == "ok \ufffd\ufffd end"
    check_output(out)   # storable


def test_output_is_capped_and_memory_stays_flat():
    cap = 64 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    node = sh("sh", "-c", "head -c 200000000 /dev/zero; echo THE-END")
    out = Shell(max_output=cap).execute(node, h.make_ctx(), timeout=30)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(out["stdout"]) < cap + 200
    assert "truncated by durableflow" in out["stdout"]
    assert out["stdout"].endswith("THE-END\n")        # the tail is kept
    assert grown_mib < 50


def test_capture_keeps_head_and_tail_exactly():
    cap = Capture(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        cap.feed(chunk)
    assert cap.truncated and cap.total == 26
    assert cap.text() == "abcde\n[... 16 bytes truncated by durableflow ...]\nvwxyz"
    small = Capture(10)
    small.feed(b"0123456789")
    assert not small.truncated and small.text() == "0123456789"


def test_timeout_kills_the_whole_group_grandchild_included(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    node = sh("sh", "-c", f"sleep 999 & echo $! > {pid_file}; wait")
    started = time.monotonic()
    with pytest.raises(NodeTimeout):
        Shell(grace_period=0.5).execute(node, h.make_ctx(), timeout=0.5)
    assert time.monotonic() - started < 3
    grandchild = int(pid_file.read_text())
    h.wait_until(lambda: not h.pid_alive(grandchild), what=f"grandchild {grandchild} to die")


def test_sigterm_ignored_means_sigkill_after_the_grace_period(tmp_path):
    pid_file = tmp_path / "pid"
    # `trap '' TERM` is inherited by the sleep too: only SIGKILL ends this group.
    node = sh("sh", "-c", f"trap '' TERM; sleep 999 & echo $! > {pid_file}; wait; wait")
    started = time.monotonic()
    with pytest.raises(NodeTimeout):
        Shell(grace_period=0.4).execute(node, h.make_ctx(), timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 3
    pid = int(pid_file.read_text())
    h.wait_until(lambda: not h.pid_alive(pid), what=f"{pid} to die")


def test_cancel_kills_the_group(tmp_path):
    pid_file = tmp_path / "pid"
    ctx = h.make_ctx()
    node = sh("sh", "-c", f"sleep 999 & echo $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait")

    def cancel_when_started():
        h.wait_until(pid_file.exists, what="the pid file")
        ctx.cancel_event.set()
    threading.Thread(target=cancel_when_started, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(NodeCancelled):
        Shell(grace_period=0.5).execute(node, ctx, timeout=30)
    assert time.monotonic() - started < 5
    pid = int(pid_file.read_text())
    h.wait_until(lambda: not h.pid_alive(pid), what=f"{pid} to die")


def test_leftover_background_process_does_not_outlive_the_node(tmp_path):
    pid_file = tmp_path / "pid"
    node = sh("sh", "-c", f"sleep 999 >/dev/null 2>&1 & echo $! > {pid_file}; echo done")
    started = time.monotonic()
    assert Shell().execute(node, h.make_ctx(), timeout=10)["stdout"] == "done\n"
    assert time.monotonic() - started < 3
    pid = int(pid_file.read_text())
    h.wait_until(lambda: not h.pid_alive(pid), what=f"{pid} to die")


def test_script_path_runs_with_sh_or_directly(tmp_path):
    plain = tmp_path / "plain.sh"
    plain.write_text((h.FIXTURES / "helper.sh").read_text())
    out = Shell().execute(NodeDef("n1", "Shell", script_path=plain), h.make_ctx(), timeout=10)
    assert out["stdout"] == f"script in {tmp_path}\narg count 0\n"
    exe = tmp_path / "exe.py"
    exe.write_text(f"#!{PY}\nimport sys, os\nprint(os.path.basename(sys.argv[0]), sys.stdin.read())\n")
    exe.chmod(0o755)
    out = Shell().execute(NodeDef("n1", "Shell", script_path=exe), h.make_ctx(input=5), timeout=10)
    assert out["stdout"] == "exe.py 5\n"


def test_missing_things_are_named():
    with pytest.raises(NodeError) as program:
        Shell().execute(sh("df-no-such-program-xyz", "--flag"), h.make_ctx(), timeout=10)
    assert program.value.error_type == "ProgramNotFound" and "df-no-such-program-xyz" in str(program.value)
    with pytest.raises(NodeError) as script:
        Shell().execute(NodeDef("n1", "Shell", script_path=Path("/nonexistent/x.sh")), h.make_ctx(), timeout=10)
    assert script.value.error_type == "ScriptNotFound" and "x.sh" in str(script.value)
    with pytest.raises(NodeError) as cwd:
        Shell().execute(sh("true", working_dir=Path("/nonexistent/dir")), h.make_ctx(), timeout=10)
    assert cwd.value.error_type == "WorkingDirNotFound"
    with pytest.raises(NodeError) as both:
        Shell().execute(sh("true", script="true"), h.make_ctx(), timeout=10)
    assert both.value.error_type == "InvalidNode"


# --- PowerShell and CSharpScript through stand-ins on PATH -------------------------------------

@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """`pwsh` and `dotnet` that report their argv, stdin and script text as JSON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    body = (f"#!{PY}\nimport json, os, sys\n"
            "script = open(sys.argv[-1]).read()\n"
            "print(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read(), 'script': script,"
            " 'input_env': os.environ.get('DURABLEFLOW_INPUT')}))\n")
    for name in ("pwsh", "dotnet"):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return bin_dir


def test_powershell_script_path_and_inline(stand_ins, tmp_path):
    ps1 = tmp_path / "job.ps1"
    ps1.write_text("Write-Output 'hi'")
    node = NodeDef("ps", "PowerShell", script_path=ps1, output_format="json")
    got = PowerShell().execute(node, h.make_ctx(input={"a": 1}), timeout=10)
    assert got["argv"] == ["-NoProfile", "-NonInteractive", "-File", str(ps1)]
    assert json.loads(got["stdin"]) == {"a": 1} and json.loads(got["input_env"]) == {"a": 1}
    inline = NodeDef("ps", "PowerShell", script="$x = 1\nWrite-Output $x", output_format="json")
    got = PowerShell().execute(inline, h.make_ctx(), timeout=10)
    assert got["argv"][:3] == ["-NoProfile", "-NonInteractive", "-File"]
    assert got["argv"][3].endswith(".ps1") and got["script"] == "$x = 1\nWrite-Output $x"
    assert not Path(got["argv"][3]).exists()          # the temp script is removed


def test_csharp_script_runs_through_dotnet_script(stand_ins, tmp_path):
    csx = tmp_path / "process.csx"
    csx.write_text('Console.WriteLine("hi");')
    got = CSharpScript().execute(NodeDef("cs", "CSharpScript", script_path=csx, output_format="json"),
                                 h.make_ctx(input=[1, 2]), timeout=10)
    assert got["argv"] == ["script", str(csx)] and json.loads(got["stdin"]) == [1, 2]


def test_missing_interpreter_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for runtime, program in ((PowerShell(), "pwsh"), (CSharpScript(), "dotnet")):
        node = NodeDef("x", runtime.runtime_type, script="whatever")
        with pytest.raises(NodeError) as err:
            runtime.execute(node, h.make_ctx(), timeout=10)
        assert err.value.error_type == "ProgramNotFound" and repr(program) in str(err.value)
        assert missing_program(runtime.runtime_type) == program
    assert missing_program("Shell") is None
