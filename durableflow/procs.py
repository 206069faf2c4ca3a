"""Processes of this host: telling a live worker from a dead one, and finding what it left behind.

A SIGKILLed worker cannot take its node processes along: their groups are re-parented and run
on, and a redelivery would run the same node beside them. Every process a worker starts for a
node carries DURABLEFLOW_OWNER=<worker pid>:<its start time> beside DURABLEFLOW_RUN_ID,
_NODE_ID and _ITERATION in its environment (children inherit them), so whoever recovers that
worker's leases can find the processes of exactly those deliveries and stop them first.
Linux only (/proc); elsewhere nothing is found and leases are recovered as before.
"""

from __future__ import annotations

import os
import signal
import socket

OWNER_ENV = "DURABLEFLOW_OWNER"


def proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode("ascii", "replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _started(stat: list[str] | None) -> str | None:
    return stat[19] if stat and len(stat) > 19 else None


def pid_started(pid: int | str) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    return _started(proc_stat(pid))


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
    return started is None or _started(stat) in (None, started)


_identity: tuple[int, str] | None = None


def host_identity() -> str:
    """The host a pid means something on: host name, boot id and PID namespace. Containers that
    share a host name (and a database volume) have PID namespaces of their own, and a pid
    recorded by one says nothing about a process in another: only a worker with this identity
    can be told dead by its pid; others are recovered when their leases expire.

    $DURABLEFLOW_HOST_ID, if set, is the identity instead (`NAME/BOOT/NAMESPACE`): tests make
    worker processes of one machine stand for different hosts sharing a PostgreSQL database."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        given = os.environ.get("DURABLEFLOW_HOST_ID")
        if given:
            _identity = (pid, given)
            return given
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                boot = f.read().strip()
        except OSError:
            boot = "?"
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = "?"
        _identity = (pid, f"{socket.gethostname()}/{boot}/{namespace}")
    return _identity[1]


_own_tag: tuple[int, str] | None = None


def owner_tag() -> str:
    """This process's DURABLEFLOW_OWNER value (computed again after a fork)."""
    global _own_tag
    pid = os.getpid()
    if _own_tag is None or _own_tag[0] != pid:
        _own_tag = (pid, f"{pid}:{pid_started(pid) or '?'}")
    return _own_tag[1]


def kill_left_behind(pid: int, started: str | None, deliveries: set[tuple[str, str, int]]) -> int:
    """SIGKILL the process groups of the node processes the (dead) worker process pid/started
    was running for `deliveries`, (run_id, node_id, iteration) of the leases it held. A process
    it started for a node that finished (a daemon a node detached on purpose) is left alone,
    and so is anything owned by another user. Returns how many processes were found."""
    if started is None or not deliveries:
        return 0  # without a start time a reused pid could match someone else's processes
    tag = f"{pid}:{started}"
    me, uid = os.getpid(), os.getuid()
    found: list[tuple[int, int | None, str | None]] = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0
    for entry in entries:
        other = int(entry)
        if other == me:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                raw = f.read()
        except OSError:
            continue  # gone, or not ours to read
        if f"{OWNER_ENV}={tag}".encode() not in raw:
            continue
        env = dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)
        if env.get(OWNER_ENV) != tag:
            continue
        try:
            delivery = (env["DURABLEFLOW_RUN_ID"], env["DURABLEFLOW_NODE_ID"], int(env["DURABLEFLOW_ITERATION"]))
        except (KeyError, ValueError):
            continue
        if delivery in deliveries:
            stat = proc_stat(entry)
            found.append((other, int(stat[2]) if stat and len(stat) > 2 else None, _started(stat)))
    for other, group, other_started in found:
        if pid_started(other) != other_started:
            continue  # gone since the scan, its pid perhaps reused: not ours to kill
        try:
            if group and group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(other, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(found)
