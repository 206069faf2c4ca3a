"""Dashboard fixtures: a real Engine on a file under tmp_path, and real dashboard servers on free
ports, stopped and closed after each test."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import pytest

from durableflow import Engine
from durableflow.ui import Dashboard, DashboardServer
from tests.cli.cli_helpers import subprocess_env
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


class UiProcess:
    """`durableflow ui` in its own process; `url` is the address it printed."""

    def __init__(self, db, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "durableflow", "--db", str(db), "ui", "--port", "0",
                                      *args], env=subprocess_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.first_line = self.proc.stderr.readline()     # it says where it listens, first
        found = re.search(r"at (http://\S+/)", self.first_line)
        if not found:
            self.stop()
            pytest.fail(f"durableflow ui did not start: {self.first_line}{self.proc.stderr.read()}")
        self.url = found.group(1)

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        """Stop it (by its pid) and return its exit code and the rest of what it wrote to stderr."""
        if self.proc.stderr.closed:
            return self.proc.returncode, ""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        rest = self.proc.stderr.read()
        self.proc.stderr.close()
        self.proc.stdout.close()
        return self.proc.returncode, rest


@pytest.fixture
def ui_process():
    """ui_process(db, *args) starts `durableflow --db DB ui --port 0 ARGS`; stopped after the test."""
    started: list[UiProcess] = []

    def _start(db, *args: str) -> UiProcess:
        ui = UiProcess(db, *args)
        started.append(ui)
        return ui
    yield _start
    for ui in started:
        ui.stop()
