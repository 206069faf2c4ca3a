"""End to end in a real headless browser: Debian's chromium driven by Playwright's Python package
(never a browser download). `durableflow ui` runs in its own process; a worker in this one
carries the run out, so every change the page shows crossed processes through the events table.

Skipped, saying why, where chromium or playwright is missing; `.ci/run` installs both. With
DURABLEFLOW_UPDATE_SCREENSHOT=1 the run page's screenshot is also copied to docs/ui-run.png
(the README's).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.ui.support import gate, node_status, review_flow, wait_for

CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; without the background-networking flags it keeps trying
# (and failing) to reach Google's hosts through this machine's closed network.
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "ui-run.png"
HOSTILE = "<img src=x onerror=alert('xss')>"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]' (.ci/run does)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    alerts: list[str] = []

    def on_dialog(dialog):          # the controls' confirm() is answered by each test
        if dialog.type != "confirm":
            alerts.append(dialog.message)
            dialog.dismiss()
    pg.on("dialog", on_dialog)
    pg.alerts = alerts
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors
    try:
        yield pg
    finally:
        context.close()


def graph_node(page, node_id: str, status: str):
    return page.locator(f'.graph g.node.s-{status}[data-node="{node_id}"]')


def accept_next_confirm(page) -> list[str]:
    asked: list[str] = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept()
    page.once("dialog", answer)
    return asked


def test_a_run_page_follows_the_run_live_and_its_controls_work(engine, db, ui_process, page, tmp_path):
    name = f"batch-{uuid.uuid4().hex[:6]}"
    run_id = engine.start(review_flow(), {"batch": name, "day": "2026-12-06"})
    worker = engine.worker(concurrency=4).start()
    try:
        wait_for(lambda: node_status(engine, run_id, "transform") == "running", what="transform running")
        ui = ui_process(db)
        page.goto(f"{ui.url}runs/{run_id}")
        graph_node(page, "transform", "running").wait_for()
        graph_node(page, "skip_empty", "skipped").wait_for()
        page.locator("#timeline .live:not([hidden])").wait_for()           # the stream is open
        page.evaluate("window.loadedOnce = true")

        gate(name).set()                                                    # the body returns
        graph_node(page, "transform", "completed").wait_for()
        graph_node(page, "approve", "waiting").wait_for()
        assert page.evaluate("window.loadedOnce") is True                   # no reload: live
        assert page.locator("#timeline-rows tr", has_text="node.completed").filter(
            has_text="transform").count() == 1
        page.locator('details[data-node="transform"] summary').click()     # the refreshed attempts
        page.locator('details[data-node="transform"] pre.value', has_text='"released": true').wait_for()

        asked = accept_next_confirm(page)
        page.click("form.c-pause button")
        page.wait_for_url(f"**/runs/{run_id}?notice=paused")
        page.locator("#run-status .badge.s-paused").wait_for()
        assert asked == [f"Pause run {run_id}? Nodes already running finish; nothing new starts until it is resumed."]
        assert engine.get_run(run_id).status == "paused"
        assert page.locator("form.c-resume").is_visible() and not page.locator("form.c-pause").is_visible()
        shot = tmp_path / "run-page.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000
        if os.environ.get("DURABLEFLOW_UPDATE_SCREENSHOT"):
            DOCS_SHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_SHOT)

        accept_next_confirm(page)
        page.click("form.c-resume button")
        page.locator("#run-status .badge.s-running").wait_for()
        page.fill('form.c-signal input[name="data"]', '{"by": "the browser test"}')
        accept_next_confirm(page)
        page.click("form.c-signal button")
        page.wait_for_url(f"**/runs/{run_id}?notice=signalled")
        graph_node(page, "publish", "completed").wait_for()                 # live again after the reload
        page.locator("#run-status .badge.s-completed").wait_for()
        page.locator("#timeline .live[hidden]").wait_for(state="attached")  # the stream ended with the run
        page.locator('details[data-node="publish"] > summary .badge.s-completed').wait_for()   # attempts refreshed
        assert engine.get_run(run_id).node("approve").output == {"by": "the browser test"}
    finally:
        worker.stop(timeout=30)
    assert page.alerts == [] and page.errors == []


def test_hostile_values_that_arrive_live_are_shown_as_text(engine, db, ui_process, page):
    name = f"batch-{uuid.uuid4().hex[:6]}"
    run_id = engine.start(review_flow(), {"batch": name, "note": HOSTILE})
    worker = engine.worker(concurrency=2).start()
    try:
        wait_for(lambda: node_status(engine, run_id, "transform") == "running", what="transform running")
        ui = ui_process(db)
        page.goto(f"{ui.url}runs/{run_id}")
        page.locator("#timeline .live:not([hidden])").wait_for()
        conn = sqlite3.connect(db)
        with conn:     # an event no engine writes: a hostile node id and type, through the stream
            conn.execute("INSERT INTO events (run_id, node_id, type, data, at) VALUES (?, ?, ?, ?, ?)",
                         (run_id, HOSTILE, "node.<script>alert(1)</script>", json.dumps({"x": HOSTILE}),
                          "2026-12-06T00:00:00.000Z"))
        conn.close()
        page.locator("#timeline-rows tr", has_text="node.<script>alert(1)</script>").wait_for()
        gate(name).set()
        page.locator('details[data-node="transform"] > summary .badge.s-completed').wait_for()
        page.locator('details[data-node="transform"] summary').click()
        page.locator('details[data-node="transform"] pre.value', has_text="onerror").first.wait_for()
    finally:
        worker.stop(timeout=30)
    assert page.alerts == [] and page.errors == []
    assert HOSTILE in page.locator("#attempts").text_content()
    assert page.locator("#timeline-rows img, #attempts img, #timeline-rows script").count() == 0


def test_a_dismissed_confirmation_does_nothing(engine, db, ui_process, page):
    name = uuid.uuid4().hex
    run_id = engine.start(review_flow(), {"batch": name})
    worker = engine.worker(concurrency=2).start()
    try:
        wait_for(lambda: node_status(engine, run_id, "transform") == "running", what="transform running")
        ui = ui_process(db)
        page.goto(f"{ui.url}runs/{run_id}")
        asked: list[str] = []

        def refuse(dialog):
            asked.append(dialog.type)
            dialog.dismiss()
        page.once("dialog", refuse)
        page.click("form.c-cancel button")
        wait_for(lambda: asked, what="the confirmation")
        assert asked == ["confirm"] and page.url == f"{ui.url}runs/{run_id}"
        assert engine.get_run(run_id).status == "running"
        gate(name).set()
    finally:
        worker.stop(timeout=30)


def test_the_runs_list_filters_and_pages_in_the_browser(engine, db, ui_process, page):
    for i in range(25):
        engine.start(review_flow("list-a" if i % 2 else "list-b"), {"batch": "never", "i": i})
    ui = ui_process(db)
    page.goto(f"{ui.url}runs")
    page.select_option('select[name="workflow"]', "list-a")
    page.select_option('select[name="limit"]', "20")
    page.click("form.filters button")
    page.wait_for_url("**/runs?*workflow=list-a*")
    assert page.locator("table.runs tbody tr").count() == 12
    page.select_option('select[name="workflow"]', "")
    page.click("form.filters button")
    assert page.locator("table.runs tbody tr").count() == 20
    page.click("text=Older →")
    assert page.locator("table.runs tbody tr").count() == 5
    assert page.errors == []
