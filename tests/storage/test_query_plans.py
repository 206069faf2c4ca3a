"""Statements that run per claim, per node or per run, and prune, are answered from their indexes.

A million acked messages, finished runs or events must not turn a claim, a pause, a cancel or a
prune batch into a table scan; EXPLAIN QUERY PLAN shows which index SQLite picks for each.
"""

from __future__ import annotations

import pytest

from durableflow.storage.statements import SQLITE


@pytest.fixture
def backend():
    """SQLite's own file, PRAGMAs, planner or migration series: these tests stay SQLite's (the
    PostgreSQL schema and its migrations are checked by tests/postgres)."""
    return "sqlite"


STATEMENTS = {name: getattr(family, name) for family in SQLITE.families().values() for name in family.names()}

PARAMS = {"run_id": "r1", "now": "2026-01-01T00:00:00.000Z", "held": 1, "limit": 1, "after": 0,
          "id": 1, "run_ids": '["r1"]', "status": "failed", "workflow_id": "wf", "version": 1,
          "top_level": 1, "before": "2026-01-01T00:00:00.000Z", "nodes": '["a"]', "type": "node.completed",
          "node_id": "a", "since": "2025-12-31T23:00:00.000Z"}
POSITIONAL = {"runs_prunable": ("2026-01-01T00:00:00.000Z", 10), "node_open_by_message": (1,)}

EXPECTED = {
    "claim": "messages_claimable",
    "claim_one": "messages_claimable",
    "claim_oldest": "messages_claimable",
    "due_later_first": "messages_due_later",
    "promote_due": "messages_due_later",
    "next_visible": "messages_due_later",
    "run_open_messages": "messages_open_by_run",
    "run_messages_discard": "messages_open_by_run",
    "messages_hold_run": "messages_open_by_run",
    "messages_unhold_run": "messages_open_by_run",
    "messages_wake_waiting": "messages_open_by_run",
    "messages_release_throttled": "messages_open_by_run",
    "events_of_run_after": "events_by_run",
    "runs_prunable": "runs_by_finished",
    "node_open_by_message": "node_instances_by_message",
    "nodes_open_of_run": "node_instances_by_run",
    "runs_active_children": "runs_by_parent",
    "runs_have_children": "runs_by_parent",
    # A Subflow or loop starting a child run walks up its ancestors, one key lookup each; a
    # ForEach's results look up each failed item's error type in its body run's rows.
    "run_ancestry": "sqlite_autoindex_runs_1 (run_id=?)",
    "loop_results": "node_instances_by_run (run_id=?)",
    # `graph RUN`: the run's tree by parent, then each run's node rows by run.
    "run_tree_runs": "runs_by_parent (parent_run_id=?)",
    "run_tree_nodes": "node_instances_by_run (run_id=?)",
    # Listings: newest first, in index order, so LIMIT stops the walk.
    "runs_latest_top": "runs_top_level",
    "runs_latest": "runs_by_created",
    "runs_latest_in_status": "runs_by_status",
    "runs_latest_of_version": "runs_by_workflow",
    "workflows_list": "COVERING INDEX runs_by_workflow",
    # Upkeep, every second: partial indexes that hold only what it looks for.
    "runs_due_resume": "runs_pause_ends",
    "runs_past_deadline": "runs_deadlines",
    "runs_next_due": "runs_deadlines",
    "workers_live_on_host": "workers_live",
    "stats_workers": "workers_live",
    "workers_prune_stopped": "workers_stopped",
    "events_delete_of_runs": "events_by_run",
    # Compensation: one step of a compensating run, what it left, whose children.
    "compensation_next": "node_instances_by_run",
    "compensation_open": "node_instances_compensations",
    "nodes_running_plain": "node_instances_by_run",
    "compensations_of_run": "node_instances_compensations",
    "runs_children_completed": "runs_by_parent",
    "runs_children_compensating": "runs_by_parent",
    "last_seq_of": "events_by_run",
    # Limits: the running count of a key, its waiters, expired waits, a breaker's window.
    "running_with_key": "node_instances_by_limit",
    "running_with_key_but": "node_instances_by_limit",
    "waiters_first": "limit_waiters_by_key",
    "waiters_given_up": "limit_waiters_give_up",
    "breaker_window": "breaker_calls_by_key",
    "breaker_calls_forget": "breaker_calls_by_key",
    # status and stats: a run's figures from its own rows; the last hour's and day's from the runs
    # that finished in it or have not finished, then their completed attempts.
    "run_figures": "messages_open_by_run",
    "runs_by_status": "COVERING INDEX runs_by_status",
    "throughput": "runs_by_finished",
    "slowest_nodes": "runs_by_finished",
}


def plan(raw, name: str) -> str:
    sql = STATEMENTS[name]
    names = sql.count("?")
    args = POSITIONAL.get(name) or (("r1",) * names if names else PARAMS)
    return " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, args))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_statement_uses_its_partial_index(store, raw, name):
    detail = plan(raw, name)
    assert EXPECTED[name] in detail, detail
    # A scan is allowed only through a partial index (the claim walks messages_claimable, which
    # holds ready rows only); never through the table.
    for step in detail.split(" | "):
        if step.startswith(("SCAN messages", "SCAN events", "SCAN runs", "SCAN node_instances")):
            assert "INDEX" in step, detail


def test_deleting_a_run_finds_its_children_through_indexes(store, raw):
    """prune deletes runs and lets the foreign keys cascade: each child table must be searched by
    an index, or every deleted run scans it whole (prune then grows with runs x messages)."""
    raw.execute("PRAGMA foreign_keys = ON")
    detail = " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN DELETE FROM runs WHERE run_id = ?", ("r1",)))
    assert "messages_by_run" in detail, detail
    assert not [s for s in detail.split(" | ") if s.startswith("SCAN")], detail


@pytest.mark.parametrize("name", ["runs_latest_top", "runs_latest", "runs_latest_in_status", "runs_latest_of_version"])
def test_a_listing_reads_its_index_in_order_without_sorting(store, raw, name):
    """A sort would read every row the index gives before the LIMIT could stop it."""
    detail = plan(raw, name)
    assert "TEMP B-TREE" not in detail, detail


@pytest.mark.parametrize("name", ["run_figures", "throughput", "slowest_nodes"])
def test_figures_read_completed_attempts_of_their_runs_only(store, raw, name):
    """Each reads node_instances by run, in the index of completed attempts; the windows read
    the not-finished runs from runs_by_status, never every run."""
    detail = plan(raw, name)
    steps = [s for s in detail.split(" | ") if " node_instances" in s or " n " in s]
    assert steps and all("node_instances_one_completed (run_id=?)" in s for s in steps), detail
    if name != "run_figures":
        assert "SEARCH runs USING INDEX runs_by_status (status=?)" in detail, detail
