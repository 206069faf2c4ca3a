"""Runtimes that run an external program: Shell, PowerShell (`pwsh`), CSharpScript (`dotnet script`).

All three share one contract (see process.py for the process-group handling):
- input: the JSON of ctx.input on stdin, and in DURABLEFLOW_INPUT (or DURABLEFLOW_INPUT_FILE
  when larger than 64 KiB), with DURABLEFLOW_RUN_ID / _NODE_ID / _ATTEMPT / _ITERATION;
- output: {"exitCode", "stdout", "stderr"} (text as written, trailing newline kept), or with
  `outputFormat: json` the parsed JSON of stdout;
- a non-zero exit is NodeError(error_type="ExitCode", exit_code=N); a process killed by a
  signal reports 128 + the signal number, as shells do. Its message is a readable one-line
  summary (the last line of stderr, control characters escaped), then the last lines of stderr;
- stdout and stderr are each captured up to the node's `maxStreamBytes`, else
  ctx.max_stream_bytes (1 MiB by default): head and tail kept, the middle cut with a marker.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from ..errors import NodeError
from ..model import NodeDef
from .base import DEFAULT_MAX_OUTPUT, NodeContext, check_output, escape_controls
from .process import RAISE_CAP_HINT, ProcessResult, ProcessRunner, child_env

__all__ = ["ExternalRuntime", "Shell", "PowerShell", "CSharpScript", "shape_output"]

SH = "/bin/sh"


class ExternalRuntime:
    """Common execute(): build argv, run it under a ProcessRunner, shape the result."""

    runtime_type = "Shell"

    def __init__(self, *, grace_period: float | None = None, max_output: int | None = None,
                 drain_timeout: float | None = None):
        # max_output: bytes kept per stream for every node this instance runs that sets no
        # maxStreamBytes; None (the engine's shared instances) leaves it to ctx.max_stream_bytes.
        self.max_output = max_output
        self.runner = ProcessRunner(grace_period=grace_period,
                                    max_output=max_output or DEFAULT_MAX_OUTPUT,
                                    drain_timeout=drain_timeout)

    @property
    def grace_period(self) -> float:
        return self.runner.grace_period

    @grace_period.setter
    def grace_period(self, value: float) -> None:
        self.runner.grace_period = value

    def execute(self, node: NodeDef, ctx: NodeContext, *, timeout: float | None) -> Any:
        ctx.check_cancelled()
        input_json = check_output(ctx.input, "input", ascii=True)   # any child's locale reads it
        env, input_file = child_env(node, ctx, input_json)
        temp_files: list[str] = []
        try:
            argv, cwd = self.command(node, env, temp_files)
            result = self.runner.run(argv, node_id=node.node_id, stdin=input_json.encode("ascii"),
                                     env=env, cwd=cwd, timeout=timeout,
                                     cancel_event=ctx.cancel_event,
                                     max_output=stream_limit(node, ctx, self.max_output),
                                     clock=ctx.clock)
        finally:
            for path in temp_files + ([input_file] if input_file else []):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if result.stderr.total:  # what the program said goes where a Python node's prints go
            ctx.log.info("stderr of node %s:\n%s", node.node_id, result.stderr.text().rstrip("\n"))
        if result.returncode != 0 and result.stdout.total:
            ctx.log.info("stdout of node %s:\n%s", node.node_id, result.stdout.text().rstrip("\n"))
        return shape_output(node, result, program=Path(argv[0]).name)

    def command(self, node: NodeDef, env: dict, temp_files: list[str]) -> tuple[list[str], Any]:
        raise NotImplementedError


def stream_limit(node: NodeDef, ctx: NodeContext, runtime_default: int | None = None) -> int:
    """Bytes kept per stream: the node's maxStreamBytes, else the runtime instance's own
    setting when it was given one, else the engine's (ctx.max_stream_bytes)."""
    return node.max_stream_bytes or runtime_default or ctx.max_stream_bytes


class Shell(ExternalRuntime):
    """`command` (argv; a string is split with shlex), `scriptPath`, or an inline `script` for sh.

    Nothing goes through a shell unless `shell: true`: then a one-string command (or the argv
    joined with spaces) is run by `/bin/sh -c`.
    """

    runtime_type = "Shell"

    def command(self, node, env, temp_files):
        _exactly_one(node, ("command", "script_path", "script"))
        if node.command is not None:
            cmd = node.command
            if isinstance(cmd, str):
                argv = [SH, "-c", cmd] if node.shell else shlex.split(cmd)
            else:
                parts = [_arg(a) for a in cmd]
                argv = [SH, "-c", " ".join(parts)] if node.shell else parts
            if not argv or not argv[0]:
                raise NodeError(f"node {node.node_id!r}: command is empty", error_type="InvalidNode")
            return argv, node.working_dir
        if node.script_path is not None:
            path = _script(node)
            # Run it directly only when exec can (executable with a #! line); otherwise sh runs it.
            with open(path, "rb") as fh:
                shebang = fh.read(2) == b"#!"
            argv = [str(path)] if shebang and os.access(path, os.X_OK) else [SH, str(path)]
            return argv, node.working_dir or path.parent
        return [SH, "-c", node.script], node.working_dir


class _ScriptHost(ExternalRuntime):
    """A program that runs a script file: `scriptPath`, or an inline `script` put in a temp file."""

    program = ""
    program_args: tuple[str, ...] = ()
    suffix = ""

    def command(self, node, env, temp_files):
        _exactly_one(node, ("script_path", "script"))
        exe = shutil.which(self.program, path=env.get("PATH", os.defpath))
        if exe is None:
            raise NodeError(f"node {node.node_id!r}: program {self.program!r} ({self.runtime_type}) "
                            f"not found on PATH", error_type="ProgramNotFound")
        if node.script_path is not None:
            path = _script(node)
            cwd = node.working_dir or path.parent
        else:
            # The hosts want a file with the right suffix (pwsh -File refuses others), and stdin
            # is taken by the input.
            fd, name = tempfile.mkstemp(prefix="durableflow-", suffix=self.suffix)
            temp_files.append(name)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(node.script)
            path, cwd = Path(name), node.working_dir
        return [exe, *self.program_args, str(path)], cwd


class PowerShell(_ScriptHost):
    runtime_type = "PowerShell"
    program = "pwsh"
    program_args = ("-NoProfile", "-NonInteractive", "-File")
    suffix = ".ps1"


class CSharpScript(_ScriptHost):
    runtime_type = "CSharpScript"
    program = "dotnet"
    program_args = ("script",)
    suffix = ".csx"


def shape_output(node: NodeDef, result: ProcessResult, *, program: str) -> Any:
    """The node's output from a finished process, or the NodeError its exit means."""
    if result.returncode != 0:
        if result.returncode < 0:
            try:
                name = signal.Signals(-result.returncode).name
            except ValueError:
                name = f"signal {-result.returncode}"
            what = f"{program} was killed by {name} (exit code {result.exit_code})"
        else:
            what = f"{program} exited with code {result.exit_code}"
        line = result.stderr.last_line() or result.stdout.last_line()
        # The last line alone is often a hint, not the cause: the stored error keeps the tail of
        # stderr (else stdout) below the one-line summary that tables show. Every line is
        # readable text: bad bytes replaced, control characters escaped, each cut short.
        name, stream = ("stderr", result.stderr) if result.stderr.total else ("stdout", result.stdout)
        tail = stream.last_lines()
        more = f"\n{name} (last lines):\n" + "\n".join(tail) if len(tail) > 1 else ""
        summary = escape_controls(f"node {node.node_id!r}: {what}") + (f": {line}" if line else "")
        raise NodeError(summary + more, error_type="ExitCode", exit_code=result.exit_code)
    if node.output_format == "json":
        return _parse_json_stdout(node, result)
    return {"exitCode": 0, "stdout": result.stdout.text(hint=True),
            "stderr": result.stderr.text(hint=True)}


def _parse_json_stdout(node: NodeDef, result: ProcessResult) -> Any:
    if result.stdout.truncated:
        raise NodeError(f"node {node.node_id!r}: stdout ({result.stdout.total} bytes) is larger than "
                        f"the {result.stdout.limit}-byte capture limit, so it cannot be read as JSON; "
                        f"{RAISE_CAP_HINT} (e.g. maxStreamBytes: {_room_for(result.stdout.total)})",
                        error_type="InvalidOutput")
    text = result.stdout.text()
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        preview = " ".join(text.split())
        if not preview:
            message = "stdout is empty, expected JSON (outputFormat: json)"
        else:
            preview = preview if len(preview) <= 80 else preview[:77] + "..."
            message = f"stdout is not JSON (outputFormat: json): {preview!r}"
        raise NodeError(f"node {node.node_id!r}: {message}", error_type="InvalidOutput") from None


def _room_for(size: int) -> int:
    """A round cap above `size`: the next whole MiB, with a quarter to spare."""
    mib = 1024 * 1024
    return -(-(size + size // 4) // mib) * mib


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")   # NaN/Infinity could not be stored later


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _script(node: NodeDef) -> Path:
    path = Path(os.path.abspath(node.script_path))
    if not path.is_file():
        raise NodeError(f"node {node.node_id!r}: script {str(path)!r} not found",
                        error_type="ScriptNotFound")
    return path


def _exactly_one(node: NodeDef, fields: tuple[str, ...]) -> None:
    given = [f for f in fields if getattr(node, f) is not None]
    if len(given) != 1:
        names = ", ".join(_camel(f) for f in fields)
        found = ", ".join(_camel(f) for f in given) or "none"
        raise NodeError(f"node {node.node_id!r}: a {node.runtime_type} node needs exactly one of "
                        f"{names} (found {found})", error_type="InvalidNode")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)
