"""Every page of the dashboard, over real HTTP, on a real file the engine wrote."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from durableflow import Engine
from durableflow.clock import ManualClock
from tests.ui.support import edge, insert_breaker, noop, py, signal_flow, workflow

RUN_LINK = re.compile(r'href="/runs/([0-9a-f]{32})"')


def listed(text: str) -> list[str]:
    """Run ids in the runs table, in order, each once."""
    table = text.split('<table class="runs">', 1)[-1] if '<table class="runs">' in text else ""
    return list(dict.fromkeys(RUN_LINK.findall(table.split("</table>")[0])))


def chain(workflow_id: str = "chain") -> dict:
    return workflow(workflow_id, noop("a"), py("b", "output = {'got': ctx.input, 'n': 2}"),
                    connections=[edge("a", "b")])


def failing(workflow_id: str = "failing") -> dict:
    return workflow(workflow_id, py("boom", "raise ValueError('bad input')",
                                    retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": "10ms",
                                           "jitter": 0}))


def test_runs_are_listed_newest_first_and_filtered_by_status_workflow_and_id(engine, db, serve):
    done = [engine.execute(chain(), {"i": i}, timeout=60).run_id for i in range(3)]
    bad = engine.execute(failing(), timeout=60).run_id
    waiting = engine.start(signal_flow())
    _, client = serve(db)

    page = client.get("/runs")
    assert page.status == 200
    assert listed(page.text) == [waiting, bad, *reversed(done)]
    assert listed(client.get("/runs?status=failed").text) == [bad]
    assert listed(client.get("/runs?workflow=chain").text) == list(reversed(done))
    assert listed(client.get("/runs?workflow=chain&status=failed").text) == []
    assert listed(client.get(f"/runs?q={done[1][:20]}").text) == [done[1]]
    assert listed(client.get(f"/runs?q={done[1].upper()}").text) == [done[1]]   # ids are lower case
    nothing = client.get("/runs?q=ffffffff")
    assert listed(nothing.text) == [] and "no runs match" in nothing.text


def test_child_runs_are_listed_only_with_the_toggle_and_on_their_parents_page(engine, db, serve):
    loop = workflow("loop", {"nodeId": "each", "runtimeType": "ForEach", "items": "[1, 2, 3]",
                             "body": {"nodes": [py("double", "output = ctx.input['item'] * 2")]}})
    parent = engine.execute(loop, timeout=60)
    assert parent.status == "completed"
    children = [r["run_id"] for r in engine.runs(top_level=False) if r["parent_run_id"] == parent.run_id]
    assert len(children) == 3
    _, client = serve(db)

    assert listed(client.get("/runs").text) == [parent.run_id]
    everything = listed(client.get("/runs?children=1").text)
    assert set(everything) == {parent.run_id, *children}
    run_page = client.get(f"/runs/{parent.run_id}").text
    assert "Child runs" in run_page and all(c in run_page for c in children)
    child_page = client.get(f"/runs/{children[0]}").text
    assert f'href="/runs/{parent.run_id}"' in child_page     # its parent, linked


def test_paging_continues_after_the_last_run_shown_even_among_runs_of_one_instant(tmp_path, serve):
    """45 runs created in the same millisecond, then 5 later: pages of 20 show each run once, in
    order, with no OFFSET (the cursor is the last run's created_at and rowid)."""
    clock = ManualClock(1_800_000_000.0)
    path = tmp_path / "paging.db"
    with Engine(path, clock=clock) as eng:
        eng.register(chain())
        same = [eng.start("chain") for _ in range(45)]
        clock.advance(1)
        later = [eng.start("chain") for _ in range(5)]
    _, client = serve(path)

    seen, url = [], "/runs?limit=20"
    for _ in range(5):
        page = client.get(url)
        assert page.status == 200, page.text
        seen += listed(page.text)
        older = re.search(r'<a class="button" href="([^"]+)">Older', page.text)
        if not older:
            break
        url = older.group(1).replace("&amp;", "&")
    assert seen == list(reversed(later)) + list(reversed(same))
    # Searching pages the same way, by id.
    first = client.get(f"/runs?q={same[0][:8]}&limit=20")
    assert len(listed(first.text)) == 20 and "Older" in first.text


def test_the_run_page_shows_the_graph_each_attempt_and_the_timeline(engine, db, serve):
    run = engine.execute(failing(), {"day": "2026-11-27"}, timeout=60)
    assert [n.status for n in run.nodes] == ["failed", "failed"]
    _, client = serve(db)

    page = client.get(f"/runs/{run.run_id}")
    assert page.status == 200
    text = page.text
    assert re.search(r'<g class="node s-failed" data-node="boom"', text)          # graph, coloured
    assert "2 attempt(s)" in text and text.count('<div class="attempt">') == 2
    assert "ValueError" in text and "bad input" in text and "2026-11-27" in text  # errors, inputs
    assert "node.failed" in text and "run.failed" in text                          # the timeline
    assert 'data-live="0"' in text                                                 # finished: no stream


def test_a_node_not_reached_yet_is_listed_and_drawn_without_a_status(engine, db, serve):
    run_id = engine.start(signal_flow())
    _, client = serve(db)
    text = client.get(f"/runs/{run_id}").text
    assert re.search(r'<g class="node s-none" data-node="b"', text)
    assert "not reached" in text and 'data-live="1"' in text


def test_a_long_value_is_cut_with_a_link_to_all_of_it(engine, db, serve):
    run = engine.execute(workflow("big", py("big", "output = {'text': 'x' * 10000}")), timeout=60)
    _, client = serve(db)
    text = client.get(f"/runs/{run.run_id}").text
    link = re.search(r'<a href="(/runs/[^"]+/output)">the whole value \((\d+) characters\)', text)
    assert link and int(link.group(2)) > 10000
    whole = client.get(link.group(1))
    assert whole.status == 200 and whole.header("Content-Type").startswith("text/plain")
    assert json.loads(whole.text) == {"text": "x" * 10000}
    assert client.get(f"/runs/{run.run_id}/attempts/999999/output").status == 404


def test_workflows_and_their_versions_with_the_definition(engine, db, serve):
    engine.register(chain())
    engine.register(workflow("chain", noop("a"), noop("c"), connections=[edge("a", "c")]))
    _, client = serve(db)
    listing = client.get("/workflows").text
    assert "v1" in listing and "v2" in listing
    latest = client.get("/workflows/chain").text
    assert "nodeId: c" in latest and 'data-node="c"' in latest
    first = client.get("/workflows/chain?version=1").text
    assert "nodeId: b" in first and "nodeId: c" not in first
    assert client.get("/workflows/chain/definition.json?version=1").text.startswith("{")
    assert client.get("/workflows/nope").status == 404


def test_dead_letters_are_listed_newest_first(engine, db, serve):
    run_id = engine.start(signal_flow())
    conn = sqlite3.connect(db)
    with conn:
        for i in range(3):
            mid = conn.execute("INSERT INTO messages (run_id, kind, target_node_id, status, visible_at, "
                               "created_at) VALUES (?, 'node', 'gate', 'dead', 'x', 'x')", (run_id,)).lastrowid
            conn.execute("INSERT INTO dead_letters (message_id, run_id, kind, target_node_id, error, attempts, "
                         "created_at) VALUES (?, ?, 'node', 'gate', ?, 5, '2026-12-01T00:00:00.000Z')",
                         (mid, run_id, f"lost {i}"))
    conn.close()
    _, client = serve(db)
    text = client.get("/dead-letters").text
    assert text.index("lost 2") < text.index("lost 1") < text.index("lost 0")
    assert f'href="/runs/{run_id}"' in text


def test_schedules_and_a_schedules_recent_fires(engine, db, serve):
    engine.register(workflow("hourly", {"nodeId": "tick", "runtimeType": "Timer", "interval": "1h"},
                             noop("work"), connections=[edge("tick", "work")]))
    run_id = engine.trigger_schedule("hourly:tick")
    _, client = serve(db)
    text = client.get("/schedules").text
    assert "hourly:tick" in text and "every 3600s" in text
    detail = client.get("/schedules/hourly:tick")
    assert detail.status == 200 and run_id[:12] in detail.text
    assert client.get("/schedules/nope:x").status == 404


def test_breakers_say_not_yet_until_there_are_any(engine, db, serve, monkeypatch):
    """An Engine without breakers() (before circuit breakers were enforced): the table's rows if it
    has any, else a note."""
    monkeypatch.delattr(Engine, "breakers", raising=False)
    server, client = serve(db)
    assert "Not yet" in client.get("/breakers").text
    conn = sqlite3.connect(db)
    with conn:
        insert_breaker(conn, "Python:pay", "open")
    conn.close()
    text = client.get("/breakers").text
    assert "Not yet" not in text and "Python:pay" in text and 'class="badge b-open"' in text


def test_breakers_come_from_the_engine_once_it_has_them(engine, db, serve):
    server, client = serve(db)
    server.dash.engine.breakers = lambda: [{"key": "Shell:fetch", "state": "half_open", "failures": 3}]
    text = client.get("/breakers").text
    assert "Shell:fetch" in text and "half_open" in text and "failures" in text


def test_stats_count_runs_by_status_throughput_and_the_slowest_nodes(engine, db, serve):
    for _ in range(2):
        engine.execute(chain(), timeout=60)
    engine.execute(failing(), timeout=60)
    _, client = serve(db)
    text = client.get("/stats").text
    counts = dict(re.findall(r'badge s-(\w+)">\w+</span></a></td><td>(\d+)</td>', text))
    assert counts == {"completed": "2", "failed": "1"}
    assert '<p class="big">3</p>' in text                        # finished in the last 24 h
    assert "<td>chain</td><td>b</td><td>2</td>" in text          # slowest nodes, per workflow
    assert client.get("/stats?window=1h").status == 200
    assert client.get("/stats?window=1y").status == 400


@pytest.mark.parametrize("path, status", [
    ("/runs/0123", 404), ("/runs?status=bogus", 400), ("/runs?limit=7", 400), ("/runs?before=xyz", 400),
    ("/nowhere", 404), ("/static/../server.py", 404), ("/runs/x/events", 404)])
def test_bad_requests_get_a_page_that_says_what_is_wrong(engine, db, serve, path, status):
    _, client = serve(db)
    reply = client.get(path)
    assert reply.status == status
    assert '<p class="err">' in reply.text or status == 404


def test_the_root_goes_to_the_runs(engine, db, serve):
    _, client = serve(db)
    reply = client.get("/")
    assert reply.status == 303 and reply.header("Location") == "/runs"


def test_a_file_an_older_durableflow_wrote_is_refused_read_only_with_what_to_do(engine, db):
    from durableflow.errors import StorageError
    from durableflow.ui import Dashboard
    engine.close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM schema_version WHERE version = (SELECT max(version) FROM schema_version)")
    conn.close()
    with pytest.raises(StorageError, match="run the dashboard once without --read-only"):
        Dashboard(db, read_only=True)


def test_a_breaker_the_engine_opened_is_shown_open(engine, db, serve):
    breaker = {"key": "payments", "failureThreshold": 0.5, "minimumCalls": 1, "window": "1m",
               "openDuration": "1m", "halfOpenSuccesses": 1}
    flaky = workflow("pay", py("charge", "raise ValueError('down')", circuitBreaker=breaker))
    assert engine.execute(flaky, timeout=60).status == "failed"
    _, client = serve(db)
    text = client.get("/breakers").text
    assert "payments" in text and '<span class="badge b-open">open</span>' in text and "pay:charge" in text
