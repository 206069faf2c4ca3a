"""A run page's live view: server-sent events read from the `events` table, written by a worker in
another process."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import pytest

from durableflow.ui import live
from tests.cli.cli_helpers import subprocess_env
from tests.ui.support import node_status, signal_flow, wait_for


class Stream:
    """An open event stream, read frame by frame."""

    def __init__(self, base: str, path: str, headers: dict | None = None, timeout: float = 20):
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()

    def frames(self):
        """Each frame as {"event", "id", "data"} (comments and retry lines left out)."""
        frame: dict = {}
        while True:
            line = self.response.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if not line:
                if "data" in frame:
                    yield frame
                frame = {}
            elif line.startswith("data: "):
                frame["data"] = json.loads(line[6:])
            elif line.startswith("id: "):
                frame["id"] = int(line[4:])
            elif line.startswith("event: "):
                frame["event"] = line[7:]

    def close(self):
        self.conn.close()


@pytest.fixture
def worker_process(db):
    """`durableflow worker` in its own process, stopped (SIGTERM, by its pid) after the test."""
    procs = []

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "durableflow", "--db", str(db), "worker"],
                                env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_the_stream_sends_what_a_worker_in_another_process_writes_and_ends_with_the_run(
        engine, db, serve, worker_process):
    run_id = engine.start(signal_flow())
    worker_process()
    wait_for(lambda: node_status(engine, run_id, "gate") == "waiting", what="the worker to reach the gate")
    _, client = serve(db)
    after = int(client.get(f"/runs/{run_id}").text.split('data-after="')[1].split('"')[0])
    stream = Stream(client.base, f"/runs/{run_id}/events?after={after}")
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    frames = stream.frames()
    engine.signal(run_id, "go", {"by": "test"})          # the worker process takes it from here
    seen = []
    for frame in frames:
        seen.append(frame)
        if frame.get("event") == "end":
            break
    stream.close()
    events = [f["data"] for f in seen if "event" not in f]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events) and events[0]["seq"] > after
    assert [f["id"] for f in seen if "id" in f] == [e["seq"] for e in events]
    kinds = [(e["node_id"], e["type"]) for e in events]
    assert ("gate", "node.completed") in kinds and ("b", "node.running") in kinds
    assert kinds.index(("b", "node.running")) < kinds.index(("b", "node.completed")) < kinds.index((None, "run.completed"))
    assert seen[-1] == {"event": "end", "data": {"run_id": run_id, "status": "completed"}}


def test_a_reconnecting_browser_continues_after_its_last_event_id(engine, db, serve):
    done = engine.execute({"workflowId": "quick", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]}, timeout=60)
    all_events = list(engine.events(done.run_id))
    _, client = serve(db)
    middle = all_events[3]["seq"]
    stream = Stream(client.base, f"/runs/{done.run_id}/events?after=0", {"Last-Event-ID": str(middle)})
    frames = list(stream.frames())
    stream.close()
    assert [f["id"] for f in frames if "id" in f] == [e["seq"] for e in all_events if e["seq"] > middle]
    assert frames[-1]["event"] == "end"


def test_an_unknown_run_has_no_stream_and_streams_are_limited(engine, db, serve):
    run_id = engine.start(signal_flow())
    server, client = serve(db)
    assert client.get("/runs/0123abc/events").status == 404
    server.dash.max_streams = 1
    first = Stream(client.base, f"/runs/{run_id}/events")
    assert first.response.status == 200
    second = client.get(f"/runs/{run_id}/events")
    assert second.status == 503 and second.header("Retry-After")
    first.close()


def test_a_quiet_stream_sends_keepalives_and_stops_when_told():
    now = [0.0]
    stop = threading.Event()
    waits = []

    def read(fn, run_id, after):
        return [], "running"

    def fake_wait(seconds):
        waits.append(seconds)
        now[0] += seconds
        if now[0] > 3.5 * live.KEEPALIVE:
            stop.set()
        return stop.is_set()

    stop.wait = fake_wait
    frames = list(live.run_stream(read, lambda: 1, "r1", 0, stop, clock=lambda: now[0]))
    assert frames[0].startswith(b"retry: ")
    assert frames[1:] == [b": keepalive\n\n"] * 3
    assert set(waits) == {live.POLL}
