"""Whatever the dashboard shows is escaped: names, ids, outputs, errors, inputs, events, error
messages, and the values a form sends back. Hostile rows are also written with plain SQL, as a
hand-edited or imported file could hold them (ids the loader would refuse)."""

from __future__ import annotations

import re
import sqlite3
from urllib.parse import quote

import pytest

from tests.ui.support import edge, insert_breaker, node_status, noop, py, wait_for, workflow

SCRIPT = "<script>alert('xss')</script>"
IMG = '"><img src=x onerror=alert(1)>'
ATTR = '" autofocus onfocus="alert(3)'      # breaks out of an attribute unless quotes are escaped
HOSTILE = (SCRIPT, IMG, "<svg onload=alert(2)>", ATTR)


def assert_escaped(text: str, where: str) -> None:
    for raw in HOSTILE:
        assert raw not in text, f"{where}: {raw!r} is in the page as HTML"
    assert not re.search(r'<[^>]*\sonfocus="alert', text), where
    assert not re.search(r"<(script|img|svg onload)[\s>]", text.replace('<script src="/static/app.js" defer>', "")
                         .replace('<svg class="graph"', "").replace('<svg class="chart"', "")), where


@pytest.fixture
def hostile(engine, db):
    """A run whose every shown value is hostile; returns (run_id, the hostile child run's id)."""
    defn = workflow(
        "evil", noop("start", name=SCRIPT),
        py("leak", f"output = {{'html': {SCRIPT!r}, 'attr': {IMG!r}}}", name=IMG),
        py("fail", f"raise ValueError({SCRIPT!r})", description=IMG),
        {"nodeId": "gate", "runtimeType": "WaitForSignal", "signal": SCRIPT},
        connections=[edge("start", "leak"), edge("leak", "fail", condition="output.html != '<b>'"),
                     edge("fail", "gate", triggerMessageType="Fail")],
        workflowName=SCRIPT, description=IMG, variables={"v": SCRIPT})
    run_id = engine.start(defn, {"who": SCRIPT, "also": IMG})
    with engine.worker(concurrency=2):
        wait_for(lambda: node_status(engine, run_id, "gate") == "waiting", what="gate waiting")
        engine.signal(run_id, SCRIPT, {"data": IMG})
        assert engine.wait(run_id, timeout=30).status == "completed"
    child = '01"><script>alert(9)</script>'
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO node_instances (run_id, node_id, status, output, error, created_at) "
                     "VALUES (?, ?, 'failed', ?, ?, '2026-12-01T00:00:00.000Z')",
                     (run_id, SCRIPT, '{"x": "%s"}' % IMG.replace('"', '\\"'), SCRIPT))
        conn.execute("INSERT INTO events (run_id, node_id, type, data, at) VALUES (?, ?, ?, ?, ?)",
                     (run_id, "<svg onload=alert(2)>", SCRIPT, '{"e": "%s"}' % SCRIPT, "2026-12-01T00:00:00.000Z"))
        conn.execute("INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, "
                     "status, error, created_at) VALUES (?, 'evil', 1, ?, ?, 'failed', ?, "
                     "'2026-12-01T00:00:00.000Z')", (child, run_id, IMG, SCRIPT + ATTR))
        conn.execute("INSERT INTO node_instances (run_id, node_id, status, created_at) "
                     "VALUES (?, ?, 'running', '2026-12-01T00:00:00.000Z')", (run_id, ATTR))
        mid = conn.execute("INSERT INTO messages (run_id, kind, target_node_id, status, visible_at, created_at) "
                           "VALUES (?, 'node', ?, 'dead', 'x', 'x')", (run_id, SCRIPT)).lastrowid
        conn.execute("INSERT INTO dead_letters (message_id, run_id, kind, target_node_id, payload, error, attempts, "
                     "created_at) VALUES (?, ?, ?, ?, ?, ?, 5, 'x')", (mid, run_id, IMG, SCRIPT, SCRIPT, IMG))
        insert_breaker(conn, SCRIPT, "open", updated_at=IMG)
        conn.execute("INSERT INTO workflows (workflow_id, version, checksum, definition, source_path, created_at) "
                     "VALUES (?, 1, ?, '{\"workflowId\": \"x\"}', ?, 'x')", (IMG, SCRIPT, SCRIPT))
    conn.close()
    return run_id, child


def test_every_page_shows_hostile_values_as_text(engine, db, serve, hostile):
    run_id, child = hostile
    _, client = serve(db)
    pages = ["/runs", "/runs?children=1", f"/runs/{run_id}", f"/runs/{run_id}/attempts", f"/runs/{quote(child, safe='')}",
             "/workflows", "/workflows/evil", f"/workflows/{quote(IMG, safe='')}", "/dead-letters", "/breakers",
             "/stats", "/schedules", f"/runs?q={quote(SCRIPT)}", f"/runs?workflow={quote(IMG)}"]
    for path in pages:
        reply = client.get(path)
        assert reply.status == 200, (path, reply.status, reply.text[-500:])
        assert_escaped(reply.text, path)
    shown = client.get(f"/runs/{run_id}").text + client.get("/runs?children=1").text
    # ... and shown, as text: the escaped forms are on the pages.
    assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in shown
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in shown


def test_error_pages_and_the_confirmation_page_escape_what_they_repeat(engine, db, serve, hostile):
    run_id, _ = hostile
    _, client = serve(db)
    for path in (f"/runs/{quote(SCRIPT, safe='')}", f"/runs?status={quote(SCRIPT)}",
                 f"/runs?before={quote(IMG)}", f"/workflows/{quote(SCRIPT, safe='')}", f"/stats?window={quote(IMG)}",
                 f"/schedules/{quote(SCRIPT, safe='')}", f"/nowhere/{quote(SCRIPT, safe='')}"):
        reply = client.get(path)
        assert reply.status in (400, 404), path
        assert_escaped(reply.text, path)
    token = client.csrf(f"/runs/{run_id}")
    ask = client.post(f"/runs/{run_id}/signal", {"csrf": token, "name": SCRIPT, "data": IMG})
    assert ask.status == 200
    assert_escaped(ask.text, "confirmation")
    refused = client.post(f"/runs/{run_id}/signal", {"csrf": token, "name": SCRIPT, "data": IMG, "confirm": "yes"})
    assert refused.status == 400 and "data is not JSON" in refused.text   # it repeats the name
    assert_escaped(refused.text, "refused signal")


def test_raw_values_are_served_as_inert_text(engine, db, serve, hostile):
    run_id, _ = hostile
    _, client = serve(db)
    attempts = engine.get_run(run_id).nodes
    leak = next(n for n in attempts if n.node_id == "leak")
    raw = client.get(f"/runs/{run_id}/attempts/{leak.id}/output")
    assert raw.header("Content-Type") == "text/plain; charset=utf-8"
    assert raw.header("X-Content-Type-Options") == "nosniff"
    assert "sandbox" in raw.header("Content-Security-Policy")
