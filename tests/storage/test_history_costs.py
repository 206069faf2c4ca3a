"""What upkeep, the listings and the README's history queries cost must not grow with the history
(issue 11, points 13 and 19).

Each statement runs on two files with the same recent activity, one of them also holding thousands
of old finished runs (or runs waiting without a deadline). Their cost is counted in SQLite
virtual-machine instructions, which do not depend on the machine: a statement that reads from an
index in its order, or a time window of one, costs the same on both; one that scans or sorts the
history costs thousands more. The plans are checked too: no full scan of runs, node_instances,
messages or events, and no sort of a whole table for a listing.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from durableflow.clock import iso
from durableflow.storage import Store, runs
from durableflow.storage.connection import connect


@pytest.fixture
def backend():
    """SQLite's own file, PRAGMAs, planner or migration series: these tests stay SQLite's (the
    PostgreSQL schema and its migrations are checked by tests/postgres)."""
    return "sqlite"


README = Path(__file__).resolve().parents[2] / "README.md"
QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)
BIG = ("runs", "node_instances", "messages", "events")
OLD = 3000          # old finished runs in the big file
RECENT = 60         # completed and failed runs of the last hour (each), in both files
DAY = 86400.0


def _fill(conn, prefix: str, count: int, *, start: float, span: float, status: str = "completed",
          parents: bool = True, deadline: str | None = None, paused_until: str | None = None) -> None:
    """`count` runs of workflow wf (v1 and v2 in turn) from `start` over `span` seconds: every
    fourth one a child run of the one before; three node attempts each (a retried one in
    failed runs), acked messages, events, and a dead letter for each failed run."""
    step = span / max(1, count)
    done = status in ("completed", "failed", "cancelled")
    for i in range(count):
        t = start + i * step
        run_id = f"{prefix}{i:06d}"
        parent = f"{prefix}{i - 1:06d}" if parents and i % 4 == 3 else None
        conn.execute(
            "INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, status, "
            "deadline_at, paused_until, created_at, started_at, finished_at, error) "
            "VALUES (?, 'wf', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, 1 + i % 2, parent, "loop" if parent else None, status, deadline, paused_until, iso(t),
             iso(t), iso(t + 2) if done else None, "node 'b' failed" if status == "failed" else None))
        for n, node in enumerate(("a", "b", "c")):
            attempts = 2 if status == "failed" and node == "b" else 1
            for attempt in range(1, attempts + 1):
                st = ("failed" if status == "failed" and node == "b" else "completed") if done else "pending"
                mid = conn.execute(
                    "INSERT INTO messages (run_id, kind, target_node_id, status, visible_at, created_at, finished_at) "
                    "VALUES (?, 'node', ?, ?, ?, ?, ?)",
                    (run_id, node, "acked" if done else "ready", iso(t), iso(t), iso(t + 1) if done else None)).lastrowid
                conn.execute(
                    "INSERT INTO node_instances (run_id, node_id, attempt, status, message_id, created_at, "
                    "started_at, finished_at, error_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, node, attempt, st, mid, iso(t + n * 0.1), iso(t + n * 0.1) if done else None,
                     iso(t + n * 0.1 + 0.05) if done else None, "Boom" if st == "failed" else None))
                conn.execute("INSERT INTO events (run_id, node_id, type, data, at) VALUES (?, ?, 'node.completed', '{}', ?)",
                             (run_id, node, iso(t)))
        if status == "failed":
            conn.execute("INSERT INTO dead_letters (message_id, run_id, kind, target_node_id, attempts, error, created_at) "
                         "VALUES (?, ?, 'node', 'b', 5, 'lost', ?)", (mid, run_id, iso(t + 1)))


def make_file(path: Path, *, old: int, now: float) -> Path:
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for v in (1, 2):
            conn.execute("INSERT INTO workflows VALUES ('wf', ?, 'c', '{}', NULL, ?)", (v, iso(now - 30 * DAY)))
        if old:   # finished 2 to 9 days ago; one in ten failed
            _fill(conn, "old-ok-", old - old // 10, start=now - 9 * DAY, span=7 * DAY)
            _fill(conn, "old-bad-", old // 10, start=now - 9 * DAY, span=7 * DAY, status="failed")
        _fill(conn, "new-ok-", RECENT, start=now - 3600, span=3000)
        _fill(conn, "new-bad-", RECENT, start=now - 3600, span=3000, status="failed")
        _fill(conn, "new-run-", 5, start=now - 60, span=30, status="running", parents=False)
        conn.execute("UPDATE node_instances SET status = 'running', started_at = created_at "
                     "WHERE run_id LIKE 'new-run-%' AND node_id = 'a'")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("history-costs")
    now = time.time()
    return make_file(folder / "small.db", old=0, now=now), make_file(folder / "big.db", old=OLD, now=now)


def vm_ops(conn, fn) -> int:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 1)
    return count[0]


def costs(files, fn) -> tuple[int, int, object, object]:
    """(VM instructions on the small file, on the big one, and what fn returned on each)."""
    out = []
    for path in files:
        conn = connect(path)
        try:
            got = []
            out.append((vm_ops(conn, lambda: got.append(fn(conn))), got[0]))
        finally:
            conn.close()
    (small, a), (big, b) = out
    return small, big, a, b


def flat(small: int, big: int) -> bool:
    """The big file costs no more than the small one, give or take the depth of a b-tree."""
    return big <= small * 1.25 + 300


def full_scans(conn, sql: str, params=(), *, listing: bool = False) -> list[str]:
    """Plan lines that scan a whole big table; for a listing, also a sort of all its rows."""
    lines = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    bad = [l for l in lines if re.match(r"SCAN (\w+)$", l) and _table(conn, sql, l) in BIG]
    if listing:
        bad += [l for l in lines if l == "USE TEMP B-TREE FOR ORDER BY"]
    return bad


def _table(conn, sql: str, line: str) -> str:
    name = line.split()[1]
    m = re.search(rf"\b(\w+)\s+(?:AS\s+)?{name}\b", sql)
    return m.group(1) if m and m.group(1) in BIG else name


# --- the listings ------------------------------------------------------------------------------

LISTINGS = {
    "top-level": dict(),
    "all": dict(top_level=False),
    "status": dict(status="completed"),
    "status, all": dict(status="completed", top_level=False),
    "workflow": dict(workflow_id="wf"),
    "workflow and status, all": dict(workflow_id="wf", status="completed", top_level=False),
}


@pytest.mark.parametrize("how", sorted(LISTINGS))
def test_a_listing_costs_the_runs_it_shows_not_the_history(files, how):
    kwargs = LISTINGS[how]
    small, big, a, b = costs(files, lambda c: runs.list_runs(c, limit=20, **kwargs))
    assert [r["run_id"] for r in a] == [r["run_id"] for r in b] and len(a) == 20
    assert flat(small, big), (small, big)


def test_the_default_listing_leaves_out_child_runs_and_all_names_their_parent(files):
    conn = connect(files[0])
    try:
        top = runs.list_runs(conn, limit=1000)
        every = runs.list_runs(conn, limit=1000, top_level=False)
        assert runs.has_child_runs(conn)
    finally:
        conn.close()
    assert all(r["parent_run_id"] is None for r in top)
    children = [r for r in every if r["parent_run_id"]]
    assert children and len(every) == len(top) + len(children)
    assert {r["parent_node_id"] for r in children} == {"loop"}
    assert [r["created_at"] for r in every] == sorted((r["created_at"] for r in every), reverse=True)
    assert set(top[0]) == set(children[0])                      # the same keys either way


def test_the_latest_of_several_versions_come_merged_newest_first(files):
    conn = connect(files[1])
    try:
        merged = runs.list_runs(conn, workflow_id="wf", limit=7, top_level=False)
        expected = runs.list_runs(conn, limit=7, top_level=False)
    finally:
        conn.close()
    assert {r["workflow_version"] for r in merged} == {1, 2}
    assert [r["run_id"] for r in merged] == [r["run_id"] for r in expected]


# --- upkeep, every second ------------------------------------------------------------------------

UPKEEP = ("runs_due_resume", "runs_past_deadline", "runs_next_due")


@pytest.fixture(scope="module")
def waiting_files(tmp_path_factory):
    """Both files have 3 runs with a deadline and 3 paused for a while, none due yet; the big one
    also 3,000 running and 1,000 paused runs with neither."""
    folder = tmp_path_factory.mktemp("waiting-costs")
    out = []
    now = time.time()
    for name, many in (("small.db", 0), ("big.db", 1)):
        path = folder / name
        Store(path).close()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO workflows VALUES ('wf', 1, 'c', '{}', NULL, ?)", (iso(now),))
        conn.execute("INSERT INTO workflows VALUES ('wf', 2, 'c', '{}', NULL, ?)", (iso(now),))
        _fill(conn, "dl-", 3, start=now - 60, span=10, status="running", deadline=iso(now + DAY), parents=False)
        _fill(conn, "pu-", 3, start=now - 60, span=10, status="paused", paused_until=iso(now + DAY), parents=False)
        if many:
            _fill(conn, "wait-", 3000, start=now - 3600, span=3000, status="running", parents=False)
            _fill(conn, "hold-", 1000, start=now - 3600, span=3000, status="paused", parents=False)
        conn.execute("COMMIT")
        conn.close()
        out.append(path)
    return out


@pytest.mark.parametrize("name", UPKEEP)
def test_upkeep_costs_the_same_with_thousands_of_waiting_runs(waiting_files, name):
    now = iso(time.time())
    small, big, a, b = costs(waiting_files, lambda c: c.execute(getattr(c.sql.runs, name), (now,)
                                                                 if "?" in getattr(c.sql.runs, name) else ()).fetchall())
    assert a == b
    assert flat(small, big), (small, big)


def test_upkeep_still_finds_what_is_due(waiting_files):
    later = iso(time.time() + 2 * DAY)
    conn = connect(waiting_files[1])
    try:
        assert sorted(runs.past_deadline(conn, later)) == ["dl-000000", "dl-000001", "dl-000002"]
        assert sorted(runs.due_resumes(conn, later)) == ["pu-000000", "pu-000001", "pu-000002"]
        assert runs.next_run_due_at(conn) is not None
    finally:
        conn.close()


# --- the README's history queries ------------------------------------------------------------------

LISTING_QUERIES = {1: "the last 20 runs", 3: "one run's attempts", 6: "what is running",
                   7: "the queue", 8: "one run's timeline", 9: "dead letters"}
WINDOW_QUERIES = {2: "why runs failed in the last day", 4: "slowest nodes in the last day",
                  5: "retried nodes in the last day", 10: "completion rate in the last day"}


@pytest.mark.parametrize("number", sorted(LISTING_QUERIES) + sorted(WINDOW_QUERIES))
def test_a_readme_query_costs_the_same_however_much_older_history_there_is(files, number):
    sql = QUERIES[number - 1]
    params = {"run_id": "new-ok-000010"}
    small, big, a, b = costs(files, lambda c: c.execute(sql, params).fetchall())
    assert a and b
    if number not in (8, 9):   # the same answer on both (8 and 9 show ids, which differ)
        assert sorted(map(repr, a)) == sorted(map(repr, b)), (a, b)
    assert flat(small, big), (number, small, big)


@pytest.mark.parametrize("number", sorted(LISTING_QUERIES) + sorted(WINDOW_QUERIES))
def test_no_readme_query_scans_a_big_table(files, number):
    conn = connect(files[1])
    try:
        found = full_scans(conn, QUERIES[number - 1], {"run_id": "new-ok-000010"},
                           listing=number in (1, 9))
        assert found == []
    finally:
        conn.close()


def test_workflows_counts_runs_from_an_index(files):
    conn = connect(files[1])
    try:
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + conn.sql.workflows.workflows_list))
        counted = {(w, v): n for w, v, *_rest, n in conn.execute(conn.sql.workflows.workflows_list)}
        truth = dict(((w, v), n) for w, v, n in conn.execute(
            "SELECT workflow_id, workflow_version, count(*) FROM runs NOT INDEXED GROUP BY 1, 2"))
    finally:
        conn.close()
    assert "COVERING INDEX runs_by_workflow" in plan, plan
    assert counted == truth
