"""Processes of this host: telling a live worker from a dead one, and finding what it left behind.

A SIGKILLed worker cannot take its node processes along: their groups are re-parented and run
on, and a redelivery would run the same node beside them. Every process a worker starts for a
node carries DURABLEFLOW_OWNER=<worker pid>:<its start time> in its environment (children
inherit it), so whoever recovers that worker's leases can find those processes and stop them
first. Linux only (/proc); elsewhere nothing is found and leases are recovered as before.
"""

from __future__ import annotations

import os
import signal

OWNER_ENV = "DURABLEFLOW_OWNER"


def proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode("ascii", "replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    stat = proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = proc_stat(pid)
    if stat is None:
        return True  # no /proc: trust kill(0)
    if stat[0] in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    return started is None or len(stat) <= 19 or stat[19] == started


_own_tag: tuple[int, str] | None = None


def owner_tag() -> str:
    """This process's DURABLEFLOW_OWNER value (computed again after a fork)."""
    global _own_tag
    pid = os.getpid()
    if _own_tag is None or _own_tag[0] != pid:
        _own_tag = (pid, f"{pid}:{pid_started(pid) or '?'}")
    return _own_tag[1]


def kill_left_behind(pid: int, started: str | None) -> int:
    """SIGKILL the process groups of node processes started by the (dead) worker process
    pid/started. Returns how many processes carried its tag."""
    if started is None:
        return 0  # without a start time a reused pid could match someone else's processes
    marker = f"\0{OWNER_ENV}={pid}:{started}\0".encode()
    me = os.getpid()
    found: list[tuple[int, int | None]] = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0
    for entry in entries:
        other = int(entry)
        if other == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = b"\0" + f.read()
        except OSError:
            continue  # gone, or another user's
        if marker in env:
            stat = proc_stat(entry)
            found.append((other, int(stat[2]) if stat and len(stat) > 2 else None))
    for other, group in found:
        try:
            if group and group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(other, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(found)
