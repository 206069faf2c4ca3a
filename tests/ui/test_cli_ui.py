"""`durableflow ui` as a real process: it says where it listens, serves, and stops on a signal."""

from __future__ import annotations

import signal
import socket
import time
from urllib.parse import urlsplit

from tests.ui.support import Client, signal_flow


def test_it_prints_its_address_serves_and_stops_on_ctrl_c(engine, db, ui_process):
    run_id = engine.start(signal_flow())
    ui = ui_process(db)
    assert ui.url.startswith("http://127.0.0.1:") and "controls on" in ui.first_line
    client = Client(ui.url)
    assert client.get("/runs").status == 200
    assert run_id in client.get(f"/runs/{run_id}").text
    code, rest = ui.stop(signal.SIGINT)
    assert code == 0 and "dashboard stopped" in rest


def test_sigterm_stops_it_too_and_read_only_says_so(engine, db, ui_process):
    ui = ui_process(db, "--read-only")
    assert "read-only" in ui.first_line
    assert Client(ui.url).get("/stats").status == 200
    code, rest = ui.stop(signal.SIGTERM)
    assert code == 0 and "dashboard stopped" in rest


def test_with_a_token_it_prints_the_address_that_carries_it(engine, db, ui_process):
    token = "tok-0123456789abcdef"
    ui = ui_process(db, "--token", token)
    assert f"?token={token}" in ui.first_line
    client = Client(ui.url)
    assert client.get("/runs").status == 401
    assert client.get(f"/runs?token={token}").status == 303 and client.get("/runs").status == 200


def test_an_idle_connection_does_not_hold_the_stop(engine, db, ui_process):
    """Browsers open spare connections and leave them idle; Ctrl-C must not wait for them."""
    ui = ui_process(db)
    parts = urlsplit(ui.url)
    idle = socket.create_connection((parts.hostname, parts.port))
    try:
        assert Client(ui.url).get("/runs").status == 200     # the server is serving; idle sits in a thread
        started = time.monotonic()
        code, rest = ui.stop(signal.SIGINT)
        assert code == 0 and time.monotonic() - started < 10  # not the 30 s an idle request may take
    finally:
        idle.close()
