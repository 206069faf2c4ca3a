"""Dashboard fixtures: a real Engine on a file under tmp_path, and real dashboard servers on free
ports, stopped and closed after each test."""

from __future__ import annotations

import threading

import pytest

from durableflow import Engine
from durableflow.ui import Dashboard, DashboardServer
from tests.ui.support import Client, reset_gates


@pytest.fixture
def db(tmp_path):
    return tmp_path / "ui.db"


@pytest.fixture
def engine(db):
    eng = Engine(db)
    try:
        yield eng
    finally:
        reset_gates()          # free held bodies before the workers stop
        eng.close()


@pytest.fixture
def serve():
    """serve(db, read_only=False, token=None, host="127.0.0.1") -> (server, Client)."""
    running = []

    def _serve(path, *, read_only: bool = False, token: str | None = None, host: str = "127.0.0.1",
               allowed_hosts: tuple[str, ...] = ()):
        dash = Dashboard(path, read_only=read_only, token=token)
        server = DashboardServer(dash, host, 0, allowed_hosts=allowed_hosts)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        running.append((server, thread))
        return server, Client(server.url)

    yield _serve
    for server, thread in running:
        server.shutdown()
        thread.join(10)
        server.close()
