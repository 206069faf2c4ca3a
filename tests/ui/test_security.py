"""Who may talk to the dashboard: the Host header (no DNS rebinding), the access token, the CSRF
token on every control, --read-only; and what `durableflow ui` refuses to start with."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest

from durableflow.cli import cli
from durableflow.ui.security import HostCheck, host_name, is_loopback
from tests.ui.support import Client, signal_flow

TOKEN = "s3cret-token-for-tests_0123"


@pytest.fixture
def run_id(engine):
    return engine.start(signal_flow())


# --- the Host header ---------------------------------------------------------------------------

@pytest.mark.parametrize("host, ok", [
    (None, True), ("localhost", True), ("127.0.0.1", True), ("evil.example", False),
    ("127.0.0.1.evil.example", False), ("localhost.evil.example", False), ("", False)])
def test_only_the_bound_address_and_loopback_names_are_answered(engine, db, serve, run_id, host, ok):
    server, client = serve(db)
    port = server.server_address[1]
    headers = {} if host is None else {"Host": f"{host}:{port}" if host else ""}
    for path in ("/runs", f"/runs/{run_id}", "/static/app.js", "/stats"):
        reply = client.get(path, headers=headers)
        assert (reply.status == 200) is ok, (path, reply.status)
        if not ok:
            assert reply.status == 400 and "Host header" in reply.text


def test_a_server_on_every_interface_answers_addresses_and_the_names_allowed(engine, db, serve):
    server, client = serve(db, host="0.0.0.0", token=TOKEN, allowed_hosts=("proxy.example",))
    port = server.server_address[1]
    client.get(f"/runs?token={TOKEN}")
    assert client.get("/runs", {"Host": f"10.1.2.3:{port}"}).status == 200
    assert client.get("/runs", {"Host": "proxy.example"}).status == 200
    assert client.get("/runs", {"Host": "rebound.example"}).status == 400


def test_host_names_are_read_without_their_port():
    assert host_name("LocalHost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("example.com.") == "example.com"
    assert host_name(None) is None
    check = HostCheck("127.0.0.1")
    assert check.allows("[::1]:1") and check.allows("localhost") and not check.allows("[::1")
    assert [is_loopback(h) for h in ("127.0.0.1", "127.5.5.5", "::1", "[::1]", "localhost", "0.0.0.0",
                                     "192.168.1.2", "example.com")] == [True] * 5 + [False] * 3


# --- the access token --------------------------------------------------------------------------

def test_with_a_token_every_request_needs_it(engine, db, serve, run_id):
    _, client = serve(db, token=TOKEN)
    for path in ("/runs", f"/runs/{run_id}", "/static/app.js", "/stats", f"/runs/{run_id}/events"):
        refused = client.get(path)
        assert refused.status == 401 and "access token" in refused.text and "ui.db" not in refused.text, path
    assert client.get("/runs?token=wrong-token-0123456789").status == 401
    first = client.get(f"/runs?status=running&token={TOKEN}")
    assert first.status == 303 and first.header("Location") == "/runs?status=running"   # not left in the URL
    assert "HttpOnly" in first.header("Set-Cookie") and "SameSite=Strict" in first.header("Set-Cookie")
    assert client.get("/runs").status == 200                        # the cookie carries it now
    other = Client(client.base)
    assert other.get("/runs", {"X-Durableflow-Token": TOKEN}).status == 200
    assert other.get("/runs", {"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert other.get("/runs", {"X-Durableflow-Token": TOKEN[:-1]}).status == 401


# --- CSRF -------------------------------------------------------------------------------------

def test_a_control_needs_this_browsers_csrf_token(engine, db, serve, run_id):
    _, client = serve(db)
    token = client.csrf(f"/runs/{run_id}")
    other = Client(client.base)
    other_token = other.csrf(f"/runs/{run_id}")
    assert token != other_token
    attempts = [
        client.post(f"/runs/{run_id}/cancel", {"confirm": "yes"}),                      # none
        client.post(f"/runs/{run_id}/cancel", {"csrf": "0" * 64, "confirm": "yes"}),   # made up
        client.post(f"/runs/{run_id}/cancel", {"csrf": other_token, "confirm": "yes"}),  # another browser's
        Client(client.base).post(f"/runs/{run_id}/cancel", {"csrf": token, "confirm": "yes"}),  # no cookie
    ]
    for reply in attempts:
        assert reply.status == 403 and "CSRF" in reply.text
    for origin in ("http://evil.example", "null"):    # null: a sandboxed frame, a data: URL
        cross = client.post(f"/runs/{run_id}/cancel", {"csrf": token, "confirm": "yes"}, {"Origin": origin})
        assert cross.status == 403
    fetched = client.post(f"/runs/{run_id}/cancel", {"csrf": token, "confirm": "yes"},
                          {"Sec-Fetch-Site": "cross-site"})
    assert fetched.status == 403
    as_json = client.request("POST", f"/runs/{run_id}/cancel", b'{"confirm": "yes"}',
                             {"Content-Type": "application/json"})
    assert as_json.status == 415
    assert engine.get_run(run_id).status == "running"
    port = client.base.rsplit(":", 1)[1]
    same = client.post(f"/runs/{run_id}/cancel", {"csrf": token, "confirm": "yes"},
                       {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
    assert same.status == 303 and engine.get_run(run_id).status == "cancelled"


def test_pages_forbid_inline_script_and_framing(engine, db, serve, run_id):
    _, client = serve(db)
    page = client.get(f"/runs/{run_id}")
    csp = page.header("Content-Security-Policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.header("X-Content-Type-Options") == "nosniff"
    assert "<script>" not in page.text                 # the script is /static/app.js
    assert not re.search(r"<[^>]+\son\w+=", page.text)  # and no inline handlers


# --- read-only -----------------------------------------------------------------------------------

def test_read_only_has_no_controls_and_never_writes(engine, db, serve, run_id):
    engine.close()          # nothing else writes: the file must not change at all
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    server, client = serve(db, read_only=True)
    page = client.get(f"/runs/{run_id}")
    assert page.status == 200 and 'class="control' not in page.text and "read-only" in page.text
    for action in ("pause", "cancel", "signal", "rerun", "resume"):
        reply = client.post(f"/runs/{run_id}/{action}", {"csrf": "x", "confirm": "yes", "name": "go"})
        assert reply.status == 403, action
    for path in ("/runs", "/workflows", "/stats", "/dead-letters", "/schedules", "/breakers"):
        assert client.get(path).status == 200
    assert server.dash._writer is None
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


# --- what `durableflow ui` refuses -------------------------------------------------------------------

@pytest.fixture
def invoke(db, monkeypatch):
    from click.testing import CliRunner
    monkeypatch.delenv("DURABLEFLOW_DB", raising=False)
    monkeypatch.delenv("DURABLEFLOW_UI_TOKEN", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, ["--db", str(db), "ui", *map(str, args)], catch_exceptions=False)


@pytest.mark.parametrize("args, says", [
    (("--host", "0.0.0.0"), "--host 0.0.0.0 is not a loopback address"),
    (("--host", "192.168.1.20", "--port", "0"), "add --token TOKEN"),
    (("--token", "short"), "--token: give at least 16 characters"),
    (("--token", "has spaces in it, sixteen+"), "--token: give at least 16 characters"),
])
def test_refused_settings_are_one_line_and_exit_2(engine, invoke, args, says):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and says in result.stderr


def test_a_bad_port_is_a_usage_error(engine, invoke):
    result = invoke("--port", "70000")
    assert result.exit_code == 2 and "--port" in result.stderr and "70000" in result.stderr
    assert invoke("--port", "eighty").exit_code == 2


def test_a_missing_database_or_a_port_in_use_is_one_line_and_exit_1(engine, invoke, tmp_path):
    from click.testing import CliRunner
    missing = CliRunner().invoke(cli, ["--db", str(tmp_path / "none.db"), "ui", "--port", "0"])
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1 and "no such database" in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = invoke("--port", taken.getsockname()[1])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr
