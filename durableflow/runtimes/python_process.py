"""`isolation: process` for Python nodes: the body runs in a child interpreter.

The child is `sys.executable -c <_child.py source> FD` in its own process group (so timeout and
cancel kill it, grandchildren included). The request goes as JSON on stdin; progress, log records
and the result come back as JSON lines on a separate pipe (FD), which keeps the body's own
stdout/stderr free: those are captured (capped) and logged on ctx.log after the run.
vars written in the child come back with the result and replace ctx.vars' contents in place.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import NodeError
from ..model import NodeDef
from .base import NodeContext, check_output, one_line
from .process import ProcessRunner, child_env

__all__ = ["run_in_process", "BOOTSTRAP"]

BOOTSTRAP = Path(__file__).with_name("_child.py").read_text(encoding="utf-8")


def run_in_process(runner: ProcessRunner, node: NodeDef, ctx: NodeContext,
                   timeout: float | None, *, max_output: int | None = None) -> Any:
    if node.script is not None:
        source = {"mode": "script", "script": node.script}
    elif node.script_path is not None:
        path = Path(os.path.abspath(node.script_path))
        if not path.is_file():
            raise NodeError(f"node {node.node_id!r}: script {str(path)!r} not found",
                            error_type="ScriptNotFound")
        source = {"mode": "script_path", "path": str(path)}
    else:
        source = {"mode": "callable", "callable": node.callable}
    # ASCII (escapes): the child reads it whatever its locale, and chars == bytes below
    input_json = check_output(ctx.input, "input", ascii=True)
    request = check_output({
        **source, "inputs": ctx.inputs, "vars": ctx.vars, "run_id": ctx.run_id,
        "node_id": ctx.node_id, "attempt": ctx.attempt, "iteration": ctx.iteration,
        "scheduled_at": ctx.scheduled_at,
        "failure": ctx.failure,
        "idempotency_key": ctx.idempotency_key,
        # The child imports callables the way this process would.
        "sys_path": [p if p else os.getcwd() for p in sys.path],
    }, "ctx", ascii=True)
    # Splice the input in as text rather than re-encoding it.
    request = request[:-1] + ', "input": ' + input_json + "}"
    env, input_file = child_env(node, ctx, input_json)
    inbox = _Inbox(ctx)
    read_fd, write_fd = os.pipe()
    try:
        result = runner.run([sys.executable, "-c", BOOTSTRAP, str(write_fd)],
                            node_id=node.node_id, stdin=request.encode("ascii"), env=env,
                            cwd=node.working_dir, timeout=timeout, cancel_event=ctx.cancel_event,
                            extra_reader=(read_fd, inbox.feed), pass_fds=(write_fd,),
                            max_output=max_output or ctx.max_stream_bytes, clock=ctx.clock)
    finally:
        os.close(read_fd)
        if input_file:
            try:
                os.unlink(input_file)
            except OSError:
                pass
    for name, capture in (("stdout", result.stdout), ("stderr", result.stderr)):
        if capture.total:
            ctx.log.info("%s of node %s:\n%s", name, node.node_id, capture.text().rstrip("\n"))
    final = inbox.final
    if final is None:
        line = result.stderr.last_line()
        raise NodeError(f"node {node.node_id!r}: python child exited with code {result.exit_code} "
                        "before reporting a result" + (f": {line}" if line else ""),
                        error_type="ExitCode", exit_code=result.exit_code)
    if final["t"] == "error":
        raise NodeError(one_line(final.get("message") or "", 500),
                        error_type=final.get("type") or "NodeError",
                        exit_code=final.get("exit_code"),
                        error_types=tuple(t for t in final.get("types") or () if isinstance(t, str)))
    ctx.vars.clear()
    ctx.vars.update(final.get("vars") or {})
    return final.get("output")


class _Inbox:
    """Splits the message pipe into JSON lines and acts on each as it arrives."""

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx
        self.pending: list[bytes] = []
        self.final: dict | None = None

    def feed(self, data: bytes) -> None:
        if b"\n" not in data:
            if data:
                self.pending.append(data)   # look for newlines only in new bytes: no rescans
            return
        self.pending.append(data)
        *lines, rest = b"".join(self.pending).split(b"\n")
        self.pending = [rest] if rest else []
        for line in lines:
            if line.strip():
                self._handle(line)

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            kind = message["t"]
        except (ValueError, KeyError, TypeError):
            return   # not ours; the body cannot write to this fd by accident, so this is rare
        if kind == "progress":
            try:
                self.ctx.progress(message["percent"], message.get("message"))
            except Exception:   # a failing progress sink must not lose the node's result
                self.ctx.log.debug("progress callback failed", exc_info=True)
        elif kind == "log":
            level = message.get("level")
            self.ctx.log.log(level if isinstance(level, int) else logging.INFO, "%s", message.get("msg"))
        elif kind in ("result", "error"):
            self.final = message
