"""Helpers for the dashboard's tests: an HTTP client with cookies that does not follow redirects,
workflow definitions, node bodies a test releases, and waiting on a condition with a deadline."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Callable
from urllib.parse import urlencode

import pytest

# --- node bodies (callable: "tests.ui.support:hold") ---------------------------------------------

_gates: dict[str, threading.Event] = {}
_lock = threading.Lock()


def gate(name: str) -> threading.Event:
    with _lock:
        return _gates.setdefault(name, threading.Event())


def hold(ctx) -> dict:
    """Runs until the test opens the gate named by the run's input `batch` (at most 60 s); its
    output carries the run's input `note`."""
    inputs = ctx.input if isinstance(ctx.input, dict) else {}
    opened = gate(inputs.get("batch", "default")).wait(60)
    return {"released": opened, "rows": 3, "note": inputs.get("note")}


def reset_gates() -> None:
    with _lock:
        for event in _gates.values():
            event.set()
        _gates.clear()


# --- definitions ---------------------------------------------------------------------------------

def noop(node_id: str, **keys) -> dict:
    return {"nodeId": node_id, "runtimeType": "Noop", **keys}


def py(node_id: str, script: str, **keys) -> dict:
    return {"nodeId": node_id, "runtimeType": "Python", "script": script, **keys}


def edge(source: str, target: str, **keys) -> dict:
    return {"sourceNodeId": source, "targetNodeId": target, **keys}


def workflow(workflow_id: str, *nodes: dict, connections=(), **top) -> dict:
    return {"workflowId": workflow_id, "nodes": list(nodes), "connections": list(connections), **top}


def review_flow(workflow_id: str = "nightly-report") -> dict:
    """fetch -> check (IfElse) -> transform (held until released) or skip_empty; fetch -> audit;
    transform and audit -> approve (waits for the signal 'go') -> publish."""
    return workflow(
        workflow_id,
        py("fetch", "output = dict(ctx.input, rows=3)"),
        {"nodeId": "check", "runtimeType": "IfElse", "condition": "input.rows > 0"},
        {"nodeId": "transform", "runtimeType": "Python", "callable": "tests.ui.support:hold"},
        noop("skip_empty"),
        py("audit", "output = {'checked': ctx.input['rows']}"),
        {"nodeId": "approve", "runtimeType": "WaitForSignal", "signal": "go"},
        noop("publish"),
        connections=[edge("fetch", "check"), edge("check", "transform", sourcePort="true"),
                     edge("check", "skip_empty", sourcePort="false"), edge("fetch", "audit"),
                     edge("transform", "approve"), edge("audit", "approve"), edge("approve", "publish")])


def signal_flow(workflow_id: str = "signalled") -> dict:
    """a -> gate (waits for the signal 'go') -> b: a run that stays running until signalled."""
    return workflow(workflow_id, noop("a"), {"nodeId": "gate", "runtimeType": "WaitForSignal", "signal": "go"},
                    py("b", "output = {'got': ctx.input}"),
                    connections=[edge("a", "gate"), edge("gate", "b")])


# --- HTTP ----------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict
    text: str

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """urllib with a cookie jar; redirects are returned, not followed."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None) -> Reply:
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            with err:
                return Reply(err.code, dict(err.headers), err.read().decode("utf-8", "replace"))

    def get(self, path: str, headers: dict | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, fields: dict, headers: dict | None = None) -> Reply:
        body = urlencode(fields).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded",
                                                 **(headers or {})})

    def csrf(self, path: str) -> str:
        page = self.get(path)
        assert page.status == 200, page.text
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, "the page has no control form"
        return found.group(1)

    def control(self, run_id: str, action: str, **fields) -> Reply:
        token = self.csrf(f"/runs/{run_id}")
        return self.post(f"/runs/{run_id}/{action}", {"csrf": token, "confirm": "yes", **fields})


def insert_breaker(conn, key: str, status: str, **values) -> None:
    """A circuit_breakers row, whatever columns the table has (its required ones get a value)."""
    row = {"key": key, "status": status}
    for _cid, name, kind, notnull, default, _pk in conn.execute("PRAGMA table_info(circuit_breakers)"):
        if name in values:
            row[name] = values[name]
        elif name not in row and notnull and default is None:
            row[name] = 1 if kind.upper() in ("INTEGER", "REAL") else "x"
    conn.execute(f"INSERT INTO circuit_breakers ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                 list(row.values()))


def node_status(engine, run_id: str, node_id: str) -> str | None:
    """The status of the node's latest attempt (None before it has one)."""
    node = engine.get_run(run_id).node(node_id)
    return None if node is None else node.status


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition"):
    """Poll `condition` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
