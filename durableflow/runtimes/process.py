"""Running an external process for a node: own process group, capped output, timeout and cancel.

One selector in the calling thread moves every byte (stdin in; stdout, stderr and any extra pipe
out), so there are no helper threads to leak, and a child writing gigabytes costs no memory: each
stream keeps only its head and tail.

Lifecycle of the process group (the child is started with `start_new_session=True`):
- timeout or cancel: SIGTERM to the group, up to `grace_period` for the leader to exit, then
  SIGKILL to the group, so grandchildren (`sleep 999 &`) die with it;
- normal exit: whatever the leader left behind in its group is SIGKILLed at once. A node owns its
  group; nothing it started outlives it (use `setsid` to escape on purpose).
The leader is not reaped until the group has been signalled (waitid with WNOWAIT), so its pid
(and the group id) cannot be reused by an unrelated process in between.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..clock import Clock
from ..errors import NodeCancelled, NodeError, NodeTimeout
from ..procs import OWNER_ENV, owner_tag
from .base import DEFAULT_MAX_OUTPUT, escape_controls

__all__ = ["Capture", "ProcessResult", "ProcessRunner", "DEFAULT_MAX_OUTPUT", "RAISE_CAP_HINT",
           "child_env"]

# What a cut stream or a refused JSON stdout says, so that the cap can be raised where it bites.
RAISE_CAP_HINT = "raise maxStreamBytes on the node, or Engine(max_stream_bytes=...)"
_LINE_LIMIT = 200   # characters of one stderr/stdout line quoted in an error
# Linux refuses a single environment string over 128 KiB (MAX_ARG_STRLEN); stay well below.
MAX_ENV_INPUT = 64 * 1024
_CHUNK = 64 * 1024
_HAS_WNOWAIT = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


class Capture:
    """Keeps the first and last `limit/2` bytes of a stream and counts the rest."""

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT):
        self.limit = max(2, int(limit))
        self.head_limit = self.limit - self.limit // 2
        self.tail_limit = self.limit // 2
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail.append(data)
            self.tail_len += len(data)
            # Drop whole chunks from the front while the rest still covers the tail we keep.
            while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_limit:
                self.tail_len -= len(self.tail.popleft())

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self, hint: bool = False) -> str:
        """The captured text, decoded so that it is always storable (bad bytes become U+FFFD).

        A cut stream has a marker where its middle was; with `hint` the marker also says how to
        keep more (for a node's output: a reader of it may not know the cap exists).
        """
        tail = b"".join(self.tail)
        if not self.truncated:
            return (bytes(self.head) + tail).decode("utf-8", errors="replace")
        tail = tail[-self.tail_limit:] if self.tail_limit else b""
        dropped = self.total - len(self.head) - len(tail)
        note = f" ({self.limit} bytes kept per stream; {RAISE_CAP_HINT})" if hint else ""
        return (self.head.decode("utf-8", errors="replace")
                + f"\n[... {dropped} bytes truncated by durableflow{note} ...]\n"
                + tail.decode("utf-8", errors="replace"))

    def last_lines(self, count: int = 10, limit: int = 1000) -> list[str]:
        """The last `count` non-blank lines, at most `limit` characters in all (newest kept),
        each readable: decoded with replacement, control characters escaped, cut short."""
        lines = [ln.rstrip() for ln in b"".join(self.tail or [bytes(self.head)]).splitlines()]
        out, size = [], 0
        for raw in reversed([ln for ln in lines if ln.strip()][-count:]):
            line = _readable(raw)
            if size + len(line) > limit:
                break
            out.append(line)
            size += len(line) + 1
        return out[::-1]

    def last_line(self, limit: int = _LINE_LIMIT) -> str:
        lines = [ln.strip() for ln in b"".join(self.tail or [bytes(self.head)]).splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines:
            return ""
        return _readable(lines[-1], limit)


def _readable(raw: bytes, limit: int = _LINE_LIMIT) -> str:
    """One line of a process's output as error text: bad UTF-8 replaced (U+FFFD), tabs as
    spaces, other control characters escaped (`\\x00`, `\\x1b`), at most `limit` characters."""
    line = escape_controls(raw.decode("utf-8", errors="replace").replace("\t", " "))
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass
class ProcessResult:
    returncode: int          # negative: killed by that signal (subprocess convention)
    stdout: Capture
    stderr: Capture

    @property
    def exit_code(self) -> int:
        """Shell convention: 128 + signal number for a process killed by a signal."""
        return self.returncode if self.returncode >= 0 else 128 - self.returncode


class ProcessRunner:
    """Spawns and supervises one process per call. Attributes are the tunables."""

    grace_period = 2.0               # seconds between SIGTERM and SIGKILL
    drain_timeout = 1.0              # after the leader exits, how long to wait for pipes to close
    tick = 0.05                      # how often cancel is checked (seconds)

    def __init__(self, *, grace_period: float | None = None, max_output: int = DEFAULT_MAX_OUTPUT,
                 drain_timeout: float | None = None):
        if grace_period is not None:
            self.grace_period = grace_period
        if drain_timeout is not None:
            self.drain_timeout = drain_timeout
        self.max_output = max_output

    def run(self, argv: list[str], *, node_id: str, stdin: bytes = b"",
            env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float | None = None, cancel_event: threading.Event | None = None,
            extra_reader: tuple[int, Callable[[bytes], None]] | None = None,
            pass_fds: tuple[int, ...] = (), max_output: int | None = None,
            clock: Clock | None = None) -> ProcessResult:
        """Run argv to completion; NodeTimeout / NodeCancelled after killing its group.

        `extra_reader` is (fd, callback): another pipe read in the same loop, the callback gets
        each chunk and b"" at EOF. The caller owns (and closes) that fd. `pass_fds` are handed
        to the child and closed here once it has them (also when starting it fails).
        `max_output` (bytes kept per stream) overrides the runner's; `clock` is what the
        timeout, the kill grace period and the drain are measured on (default: a real Clock).
        """
        clock = clock if clock is not None else _REAL_CLOCK
        limit = self.max_output if max_output is None else max_output
        if cwd is not None and not Path(cwd).is_dir():
            for fd in pass_fds:
                os.close(fd)
            raise NodeError(f"node {node_id!r}: working directory {str(cwd)!r} does not exist",
                            error_type="WorkingDirNotFound")
        try:
            proc = _spawn(argv, node_id=node_id, env=env, cwd=cwd, pass_fds=pass_fds)
        finally:
            for fd in pass_fds:   # the child has its copies; ours would keep the pipe from EOF
                os.close(fd)
        with _LIVE_LOCK:
            _LIVE[proc.pid] = proc
        out, err = Capture(limit), Capture(limit)
        deadline = None if timeout is None else clock.monotonic() + max(0.0, timeout)
        reason = None
        pump = None
        try:
            pump = _Pump(proc, stdin, out, err, extra_reader, clock)
            while not pump.leader_exited():
                if cancel_event is not None and cancel_event.is_set():
                    reason = "cancelled"
                    break
                now = clock.monotonic()
                if deadline is not None and now >= deadline:
                    reason = "timeout"
                    break
                wait = self.tick if deadline is None else min(self.tick, deadline - now)
                pump.pump(wait)
            if reason is None and cancel_event is not None and cancel_event.is_set():
                reason = "cancelled"   # a body that stopped because it was cancelled is cancelled
            if reason is None:
                _signal_group(proc, signal.SIGKILL)        # leftovers of a finished leader
            else:
                self._terminate(proc, pump, clock)
            pump.drain(self.drain_timeout)
        except BaseException:
            _signal_group(proc, signal.SIGKILL)
            raise
        finally:
            proc.wait()                                     # reap only after the group was signalled
            with _LIVE_LOCK:
                _LIVE.pop(proc.pid, None)
            if pump is not None:
                pump.close()
        if reason == "timeout":
            raise NodeTimeout(f"node {node_id!r} timed out after {timeout:g}s; its process group was killed")
        if reason == "cancelled":
            raise NodeCancelled(f"node {node_id!r} cancelled; its process group was killed")
        return ProcessResult(proc.returncode, out, err)

    def _terminate(self, proc: subprocess.Popen, pump: "_Pump", clock: Clock) -> None:
        _signal_group(proc, signal.SIGTERM)
        until = clock.monotonic() + max(0.0, self.grace_period)
        while not pump.leader_exited():
            left = until - clock.monotonic()
            if left <= 0:
                break
            pump.pump(min(self.tick, left))
        _signal_group(proc, signal.SIGKILL)


_REAL_CLOCK = Clock()


def _spawn(argv, *, node_id, env, cwd, pass_fds) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=None if env is None else dict(env), cwd=cwd, pass_fds=pass_fds,
            start_new_session=True, close_fds=True)
    except FileNotFoundError:
        raise NodeError(f"node {node_id!r}: program {argv[0]!r} not found"
                        + ("" if os.sep in argv[0] else " on PATH"),
                        error_type="ProgramNotFound") from None
    except PermissionError:
        raise NodeError(f"node {node_id!r}: program {argv[0]!r} is not executable",
                        error_type="PermissionDenied") from None
    except OSError as exc:  # ENOEXEC (no shebang), E2BIG (environment too large), ...
        raise NodeError(f"node {node_id!r}: cannot start {argv[0]!r}: {exc.strerror or exc}",
                        error_type="ProgramNotFound" if exc.errno == errno.ENOENT else "SpawnError") from None


# Process groups of node bodies running now, so that a process quitting at once can take them
# along (a SIGKILLed worker cannot; its children are left to finish on their own).
_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


def kill_running_groups() -> int:
    """SIGKILL the process group of every node body running in this process. Returns how many."""
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
    return len(procs)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)   # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass


class _Pump:
    """The selector loop's state: which pipes are open and where their bytes go."""

    def __init__(self, proc, stdin: bytes, out: Capture, err: Capture, extra_reader,
                 clock: Clock):
        self.proc = proc
        self.clock = clock
        self.sel = selectors.DefaultSelector()
        self.readers: dict[int, Callable[[bytes], None]] = {}
        self._exited = False
        self._idle = 0.0005
        for stream, sink in ((proc.stdout, out.feed), (proc.stderr, err.feed)):
            fd = stream.fileno()
            os.set_blocking(fd, False)
            self.readers[fd] = sink
            self.sel.register(fd, selectors.EVENT_READ)
        if extra_reader is not None:
            fd, callback = extra_reader
            os.set_blocking(fd, False)
            self.readers[fd] = callback
            self.sel.register(fd, selectors.EVENT_READ)
        self._stdin = memoryview(stdin)
        self._stdin_fd = proc.stdin.fileno()
        if self._stdin:
            os.set_blocking(self._stdin_fd, False)
            self.sel.register(self._stdin_fd, selectors.EVENT_WRITE)
        else:
            self._close_stdin()
        # A pidfd turns readable when the leader exits, so exits wake the loop at once (Linux).
        self._pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(proc.pid)
                self.sel.register(self._pidfd, selectors.EVENT_READ)
            except OSError:
                self._pidfd = None

    def leader_exited(self) -> bool:
        if self._exited:
            return True
        if _HAS_WNOWAIT:
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = True
            self._exited = info is not None
        else:  # reaps: a tiny window where the group id could be reused before we signal it
            self._exited = self.proc.poll() is not None
        return self._exited

    def pump(self, timeout: float) -> None:
        if not self.readers and self._pidfd is None:
            # Nothing can wake us: poll for the exit with a short, growing interval.
            time.sleep(min(timeout, self._idle))
            self._idle = min(self._idle * 2, 0.05)
            return
        for key, _ in self.sel.select(max(0.0, timeout)):
            fd = key.fd
            if fd == self._pidfd:
                self.sel.unregister(fd)   # stays readable for ever; leader_exited() takes over
                continue
            if fd == self._stdin_fd:
                self._write_stdin()
                continue
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            self.readers[fd](data)
            if not data:
                self.sel.unregister(fd)
                del self.readers[fd]

    def drain(self, limit: float) -> None:
        """Read what is left; a process that escaped the group may hold a pipe: stop after `limit`."""
        if self._pidfd is not None and self._pidfd in self.sel.get_map():
            self.sel.unregister(self._pidfd)
        until = self.clock.monotonic() + limit
        while self.readers:
            left = until - self.clock.monotonic()
            if left <= 0:
                break
            self.pump(left)

    def _write_stdin(self) -> None:
        try:
            n = os.write(self._stdin_fd, self._stdin[:_CHUNK])
        except BlockingIOError:
            return
        except OSError:   # EPIPE: the process does not read its stdin; that is its right
            n = len(self._stdin)
        self._stdin = self._stdin[n:]
        if not self._stdin:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self._stdin_fd in self.sel.get_map():
            self.sel.unregister(self._stdin_fd)
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def close(self) -> None:
        self.sel.close()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        if self._pidfd is not None:
            os.close(self._pidfd)


def child_env(node, ctx, input_json: str) -> tuple[dict, str | None]:
    """os.environ + node.env + DURABLEFLOW_*; returns (env, temp input file to delete or None).

    The input JSON always goes on stdin too. Up to MAX_ENV_INPUT bytes it is also in
    DURABLEFLOW_INPUT; a bigger one is written to a temp file named by DURABLEFLOW_INPUT_FILE
    instead, because an environment string that large would make exec fail (E2BIG).
    """
    env = dict(os.environ)
    for key, value in (node.env or {}).items():
        if value is None:
            env.pop(str(key), None)
        elif isinstance(value, bool):
            env[str(key)] = "true" if value else "false"
        else:
            env[str(key)] = str(value)
    env[OWNER_ENV] = owner_tag()             # lets recovery find it if this worker dies
    env["DURABLEFLOW_RUN_ID"] = str(ctx.run_id)
    env["DURABLEFLOW_NODE_ID"] = str(ctx.node_id)
    env["DURABLEFLOW_ATTEMPT"] = str(ctx.attempt)
    env["DURABLEFLOW_ITERATION"] = str(ctx.iteration)
    env["DURABLEFLOW_IDEMPOTENCY_KEY"] = str(ctx.idempotency_key)
    env.pop("DURABLEFLOW_INPUT", None)       # never leak a parent node's input
    env.pop("DURABLEFLOW_INPUT_FILE", None)
    if len(input_json) <= MAX_ENV_INPUT:     # json.dumps output is ASCII: chars == bytes
        env["DURABLEFLOW_INPUT"] = input_json
        return env, None
    fd, path = tempfile.mkstemp(prefix="durableflow-input-", suffix=".json")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(input_json)
    env["DURABLEFLOW_INPUT_FILE"] = path
    return env, path
