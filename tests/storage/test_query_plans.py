"""The queue's per-run and per-claim statements are answered from their partial indexes.

A million acked messages or events must not turn a pause, a cancel or a claim into a table scan;
EXPLAIN QUERY PLAN shows which index SQLite picks for each named statement.
"""

from __future__ import annotations

import pytest

from durableflow.storage.queries import Q

PARAMS = {"run_id": "r1", "now": "2026-01-01T00:00:00.000Z", "held": 1, "limit": 1, "after": 0,
          "id": 1}

EXPECTED = {
    "claim": "messages_claimable",
    "claim_one": "messages_claimable",
    "run_open_messages": "messages_open_by_run",
    "run_messages_discard": "messages_open_by_run",
    "messages_hold_run": "messages_open_by_run",
    "messages_wake_waiting": "messages_open_by_run",
    "messages_release_throttled": "messages_open_by_run",
    "events_of_run_after": "events_by_run",
}


def plan(raw, sql: str) -> str:
    names = sql.count("?")
    args = ("r1",) * names if names else PARAMS
    return " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, args))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_statement_uses_its_partial_index(store, raw, name):
    detail = plan(raw, getattr(Q, name))
    assert EXPECTED[name] in detail, detail
    # A scan is allowed only through a partial index (the claim walks messages_claimable, which
    # holds ready rows only); never through the table.
    for step in detail.split(" | "):
        if step.startswith(("SCAN messages", "SCAN events")):
            assert "INDEX" in step, detail
