"""The dashboard's reads page by index: the runs list and a run's page read the rows they show from
an index in its order, with no full scan and no sort of the history, so they cost the same on a
file of 1,000 runs and one of 50,000 (counted in SQLite virtual-machine instructions, which do
not depend on the machine). A filter the index does not hold reads a bounded number of rows."""

from __future__ import annotations

import sqlite3

import pytest

from durableflow.storage import Store
from durableflow.storage import ui as reads
from durableflow.storage.connection import connect
from durableflow.storage.statements import SQLITE


@pytest.fixture
def backend():
    """SQLite's query plans: these tests stay SQLite's (PostgreSQL's plans are checked by
    tests/postgres/test_postgres_sql.py)."""
    return "sqlite"


UI = {name: getattr(SQLITE.ui, name) for name in SQLITE.ui.names()}
PARAMS = {"at": "2027-01-01T00:00:00.000Z", "rowid": 10, "limit": 50, "status": "failed", "top_level": 1,
          "workflow_id": "wf", "version": 1, "low": "01a", "high": "01b", "run_id": "r1", "cap": 100,
          "id": 1, "before": 100, "after": 0, "since": "2027-01-01T00:00:00.000Z"}

EXPECTED = {
    # The runs list, each filter from its own index, newest first.
    "runs_page_top": "runs_top_level",
    "runs_page_all": "runs_by_created",
    "runs_page_in_status": "runs_by_status",
    "runs_page_of_version": "runs_by_workflow",
    "runs_by_id_prefix": "sqlite_autoindex_runs_1",
    # A run's page and its live view.
    "run_status": "sqlite_autoindex_runs_1",
    "attempts_of_run": "node_instances_by_run",
    "attempt_values": "INTEGER PRIMARY KEY",
    "run_events_before": "events_by_run",
    "run_events_after": "events_by_run",
    "child_runs": "runs_by_parent",
    "child_run_count": "runs_by_parent",
    # The other pages.
    "dead_letters_page": "INTEGER PRIMARY KEY",
    "stats_finished_by_hour": "runs_by_finished",
    "stats_slowest_nodes": "runs_by_created",
    # Counting every run by status reads the whole of runs_by_status (the index, not the
    # table): the stats page's one whole-history read.
    "stats_runs_by_status": "SCAN runs USING COVERING INDEX runs_by_status",
    # Small tables: every registered workflow, every breaker.
    "workflow_ids": "workflows",
    "breakers_all": "circuit_breakers",
}
# Read in their index's order: a sort would read every matching row before LIMIT stops it.
IN_ORDER = ("runs_page_top", "runs_page_all", "runs_page_in_status", "runs_page_of_version", "runs_by_id_prefix",
            "attempts_of_run", "run_events_before", "run_events_after", "child_runs", "dead_letters_page")


def plan(raw, name: str) -> str:
    return " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + UI[name], PARAMS))


def test_every_ui_statement_is_checked_here():
    assert set(UI) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_read_uses_its_index(store, raw, name):
    detail = plan(raw, name)
    assert EXPECTED[name] in detail, detail
    if name == "stats_runs_by_status":
        return
    for step in detail.split(" | "):
        if step.startswith(("SCAN messages", "SCAN events", "SCAN runs", "SCAN node_instances")):
            pytest.fail(f"{name} scans a table that grows with the history: {detail}")


@pytest.mark.parametrize("name", IN_ORDER)
def test_a_page_is_read_in_index_order_without_sorting(store, raw, name):
    detail = plan(raw, name)
    assert "TEMP B-TREE" not in detail, detail


# --- what a page costs as the history grows --------------------------------------------------------

def make_file(path, runs: int, children: bool = False) -> None:
    """`runs` runs of workflow wf (v1 and v2 in turn), one in ten failed, every fifth a child of the
    one before (`children`: every run but one in ten thousand); three node attempts and eight
    events each."""
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for v in (1, 2):
        conn.execute("INSERT INTO workflows VALUES ('wf', ?, 'c', '{}', NULL, '2026-01-01T00:00:00.000Z')", (v,))
    conn.execute("""
        WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < :n)
        INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, status, created_at, started_at,
                          finished_at)
        SELECT printf('%032x', i), 'wf', 1 + i % 2,
               CASE WHEN (:children AND i % 10000 <> 3) OR (NOT :children AND i % 5 = 4)
                    THEN printf('%032x', i - i % 10000 + 3) END,
               CASE WHEN i % 10 = 3 THEN 'failed' ELSE 'completed' END,
               strftime('%Y-%m-%dT%H:%M:%fZ', 1800000000 + i, 'unixepoch'),
               strftime('%Y-%m-%dT%H:%M:%fZ', 1800000000 + i, 'unixepoch'),
               strftime('%Y-%m-%dT%H:%M:%fZ', 1800000002 + i, 'unixepoch')
        FROM k""", {"n": runs, "children": children})
    conn.execute("""
        INSERT INTO node_instances (run_id, node_id, status, output, created_at, started_at, finished_at)
        SELECT r.run_id, n.value, 'completed', '{"rows": 3}', r.created_at, r.created_at, r.finished_at
        FROM runs r, json_each('["a", "b", "c"]') n""")
    conn.execute("""
        INSERT INTO events (run_id, node_id, type, data, at)
        SELECT r.run_id, 'a', 'node.' || e.value, '{"id": 1}', r.created_at
        FROM runs r, json_each('["pending", "running", "completed", "pending", "running", "completed",
                                 "pending", "running"]') e""")
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui-costs")
    small, big = folder / "small.db", folder / "big.db"
    make_file(small, 1000)
    make_file(big, 50_000)
    return small, big


def vm_steps(path, fn, *args, **kwargs) -> int:
    conn = connect(path, readonly=True)
    steps = [0]

    def count():
        steps[0] += 1
        return 0
    conn.set_progress_handler(count, 1)
    try:
        conn.execute("BEGIN")
        fn(conn, *args, **kwargs)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return steps[0]


READS = {
    "runs list": lambda c, n: reads.runs_page(c, limit=51),
    "runs list with child runs": lambda c, n: reads.runs_page(c, top_level=False, limit=51),
    "runs list, failed": lambda c, n: reads.runs_page(c, status="failed", limit=51),
    "runs list, one workflow": lambda c, n: reads.runs_page(c, workflow_id="wf", limit=51),
    "runs list, second page": lambda c, n: reads.runs_page(
        c, before=("2027-01-15T08:00:40.000Z", 10**9), limit=51),
    "search by id": lambda c, n: reads.runs_by_id_prefix(c, f"{n - 60:032x}"[:30], limit=51),
    "run page": lambda c, n: reads.run_page(c, f"{n - 100:032x}"),
    "live view": lambda c, n: reads.events_since(c, f"{n - 100:032x}", 0),
    "dead letters": lambda c, n: reads.dead_letters_page(c, limit=51),
}


@pytest.mark.parametrize("what", sorted(READS))
def test_a_page_costs_the_same_on_a_file_a_hundred_times_bigger(files, what):
    small, big = files
    cost_small = vm_steps(small, READS[what], 1000)
    cost_big = vm_steps(big, READS[what], 50_000)
    # An index a hundred times bigger is a level or two deeper; a scan would cost 100 times more.
    assert cost_big < 1.5 * cost_small + 500, (what, cost_small, cost_big)


def test_a_filter_the_index_does_not_hold_reads_a_bounded_number_of_rows(tmp_path, monkeypatch):
    """Top-level failed runs, in runs_by_status, among thousands of failed child runs (a ForEach
    over many items): each page stops after SCAN_CAP rows read, and its cursor goes on from there."""
    path = tmp_path / "children.db"
    make_file(path, 40_000, children=True)      # 4,000 failed runs, four of them top-level
    monkeypatch.setattr(reads, "SCAN_CAP", 1000)
    conn = connect(path, readonly=True)
    try:
        pages, found, before = [], [], None
        while True:
            page = reads.runs_page(conn, status="failed", before=before, limit=50)
            pages.append(page)
            found += [r["run_id"] for r in page.runs]
            if page.next is None:
                break
            assert page.stopped
            before = page.next
    finally:
        conn.close()
    assert found == [f"{i:032x}" for i in (30003, 20003, 10003, 3)]
    assert len(pages) == 4000 // 1000 + 1
    first = vm_steps(path, lambda c: reads.runs_page(c, status="failed", limit=50))
    monkeypatch.setattr(reads, "SCAN_CAP", 10**9)        # no cap: the page reads all 4,000
    assert vm_steps(path, lambda c: reads.runs_page(c, status="failed", limit=50)) > 3 * first
