"""`durableflow runs` lists top-level runs; `--all` adds the child runs of Subflow and loop nodes,
each with its parent (issue 11, point 19)."""

from __future__ import annotations

import json

import pytest

from tests.cli.cli_helpers import edge, noop, workflow


@pytest.fixture
def looped(invoke, write):
    """Two runs of a workflow whose ForEach runs a body run per item (3 items each)."""
    path = write(workflow("looped", noop("start"),
                          {"nodeId": "each", "runtimeType": "ForEach", "items": "[1, 2, 3]",
                           "body": {"nodes": [noop("inner")]}},
                          connections=[edge("start", "each")]), "looped.yaml")
    return [json.loads(invoke("run", path, "--json").stdout)["run_id"] for _ in range(2)]


def table_rows(result) -> list[list[str]]:
    return [line.split() for line in result.stdout.splitlines()[2:]]


def test_runs_shows_top_level_runs_and_says_there_are_more(invoke, looped):
    result = invoke("runs")
    assert result.exit_code == 0
    assert [row[0] for row in table_rows(result)] == looped[::-1]
    assert "--all" in result.stderr and "child runs" in result.stderr


def test_runs_all_adds_the_children_with_their_parent(invoke, looped):
    result = invoke("runs", "--all")
    assert result.exit_code == 0
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["run", "parent", "workflow"]
    rows = table_rows(result)
    children = [row for row in rows if row[1] in looped]
    assert len(rows) == 8 and len(children) == 6
    assert {row[1] for row in children} == set(looped) and {row[2] for row in children} == {"(each)"}
    assert result.stderr == ""


def test_runs_json_has_the_same_keys_with_and_without_all(invoke, looped):
    top = json.loads(invoke("runs", "--json").stdout)
    every = json.loads(invoke("runs", "--json", "--all").stdout)
    assert [r["run_id"] for r in top] == looped[::-1]
    assert all(r["parent_run_id"] is None and r["parent_node_id"] is None for r in top)
    children = [r for r in every if r["parent_run_id"]]
    assert len(every) == 8 and {r["parent_run_id"] for r in children} == set(looped)
    assert {r["parent_node_id"] for r in children} == {"each"}
    assert {frozenset(r) for r in top + every} == {frozenset(top[0])}
    assert [r["run_id"] for r in json.loads(invoke("runs", "--json", "--all", "--workflow", "looped.each").stdout)] \
        == [r["run_id"] for r in children]
    assert json.loads(invoke("runs", "--json", "--workflow", "looped.each").stdout) == []
    assert len(json.loads(invoke("runs", "--json", "--all", "--status", "completed", "--limit", "5").stdout)) == 5


def test_runs_names_the_run_a_rerun_repeats(invoke, looped):
    again = invoke("rerun", looped[0], "--fresh").stdout.strip().split()[-1]
    rows = {r["run_id"]: r for r in json.loads(invoke("runs", "--json").stdout)}
    assert rows[again]["rerun_of"] == looped[0] and rows[looped[0]]["rerun_of"] is None
    result = invoke("runs")
    assert "rerun of" in result.stdout.splitlines()[0]
    line = next(line for line in result.stdout.splitlines() if line.startswith(again))
    assert looped[0] in line
