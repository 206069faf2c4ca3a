"""Bootstrap of a process-isolated Python node: run as `python -c <this file's source> FD`.

Standalone on purpose (imports nothing from durableflow), so it works wherever the interpreter
does. Protocol:
- stdin: one JSON request {mode, script|path|callable, input, inputs, vars, run_id, node_id,
  attempt, iteration, sys_path};
- fd FD: JSON lines back to the parent: {"t": "progress", "percent", "message"},
  {"t": "log", "level", "msg"}, then exactly one {"t": "result", "output", "vars"} or
  {"t": "error", "type", "types", "message", "exit_code"};
- the body's own stdout/stderr are captured by the parent and logged there.
"""

import json
import logging
import os
import sys
import textwrap
import threading
import traceback
import types


class _Channel:
    def __init__(self, fd):
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self._lock = threading.Lock()   # a body may report progress from several threads

    def send(self, message):
        line = json.dumps(message, allow_nan=False)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()


class _LogForwarder(logging.Handler):
    def __init__(self, channel):
        super().__init__(logging.DEBUG)
        self._channel = channel

    def emit(self, record):
        try:
            self._channel.send({"t": "log", "level": record.levelno, "msg": self.format(record)})
        except Exception:
            self.handleError(record)


class Context:
    """The child's ctx: same fields as NodeContext. Cancel arrives as SIGTERM, so `cancelled`
    stays False: the process ends instead of being asked."""

    cancelled = False

    def __init__(self, request, channel):
        self.input = request["input"]
        self.inputs = request["inputs"]
        self.vars = request["vars"]
        self.run_id = request["run_id"]
        self.node_id = request["node_id"]
        self.attempt = request["attempt"]
        self.iteration = request["iteration"]
        self.scheduled_at = request.get("scheduled_at")
        self.failure = request.get("failure")
        self.idempotency_key = request.get("idempotency_key")
        self._channel = channel
        self.log = logging.getLogger("durableflow.node." + str(self.node_id))
        self.log.setLevel(logging.DEBUG)    # the parent's logger decides what is kept
        self.log.propagate = False
        self.log.addHandler(_LogForwarder(channel))

    def progress(self, percent, message=None):
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or percent != percent:
            raise ValueError("progress percent must be a number, got %r" % (percent,))
        percent = min(100.0, max(0.0, float(percent)))
        self._channel.send({"t": "progress", "percent": percent,
                            "message": None if message is None else str(message)})

    def check_cancelled(self):
        return None


def _run(request, ctx):
    mode = request["mode"]
    if mode == "script":
        namespace = {"__name__": "__durableflow_script__", "ctx": ctx, "output": None}
        source = textwrap.dedent(request["script"])   # as the thread runtime does
        exec(compile(source, "<durableflow script>", "exec"), namespace)
        return namespace.get("output")
    if mode == "script_path":
        path = request["path"]
        with open(path, "rb") as fh:
            code = compile(fh.read(), path, "exec")
        module = types.ModuleType("__durableflow_script__")
        module.__file__ = path
        sys.modules[module.__name__] = module
        exec(code, module.__dict__)
        run = getattr(module, "run", None)
        if not callable(run):
            raise _Invalid("InvalidScript", "script %s defines no run(ctx) function" % path)
        return run(ctx)
    module_name, _, attr = request["callable"].partition(":")
    import importlib
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target(ctx)


class _Invalid(Exception):
    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


def _describe(exc):
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    message = "%s: %s" % (name, text) if text else name
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen") and f.filename != "<string>"]
    if frames and not isinstance(exc, SyntaxError):
        last = frames[-1]
        message += " (at %s:%s in %s)" % (os.path.basename(last.filename), last.lineno, last.name)
    error_type = getattr(exc, "error_type", None)   # a durableflow NodeError raised by the body
    if isinstance(exc, _Invalid):
        message = text
    exit_code = getattr(exc, "exit_code", None)
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        exit_code = exc.code          # sys.exit(75) matches retryOn: [75], as the exit status would
    # The class and its bases, bare and module-qualified, for retryOn (the parent's NodeError).
    # A durableflow NodeError raised by the body names its own type, as it does in a thread.
    names = [error_type] if isinstance(error_type, str) else []
    for klass in type(exc).__mro__ if not names and not isinstance(exc, _Invalid) else ():
        if klass in (BaseException, object):
            continue
        names.append(klass.__qualname__)
        if klass.__module__ not in ("builtins", "__main__"):
            names.append(klass.__module__ + "." + klass.__qualname__)
    return {"t": "error", "type": error_type if isinstance(error_type, str) else name,
            "types": names, "message": message[:500],
            "exit_code": exit_code if isinstance(exit_code, int) else None}


def _serialisable(value, what):
    try:
        json.dumps(value, allow_nan=False)
        return None
    except (TypeError, ValueError, RecursionError) as exc:
        return {"t": "error", "type": "OutputNotSerializable", "exit_code": None,
                "message": "%s is not JSON-serialisable: %s" % (what, " ".join(str(exc).split()))}


def main():
    channel = _Channel(int(sys.argv[1]))
    try:
        request = json.loads(sys.stdin.buffer.read())
        sys.path[:] = request["sys_path"]
        ctx = Context(request, channel)
        output = _run(request, ctx)
        message = (_serialisable(output, "output") or _serialisable(ctx.vars, "ctx.vars")
                   or {"t": "result", "output": output, "vars": ctx.vars})
    except BaseException as exc:   # SystemExit and KeyboardInterrupt are body failures too
        message = _describe(exc)
    channel.send(message)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Skip interpreter shutdown: a body's leftover non-daemon thread must not keep us alive.
    os._exit(0)


if __name__ == "__main__":
    main()
