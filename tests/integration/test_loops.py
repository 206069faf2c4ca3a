"""Loops and subflows, finished (issue 15): a ForEach that goes on past failed items
(`continueOnError`), a While body that sees the previous body output, and a nesting limit of
child runs that is the Engine's to set and that names the chain of workflows it stopped."""

from __future__ import annotations

import json

import pytest
from df_it_support import Sql, node, py, wait_until, wf

from durableflow import Engine, ValidationError

# Item 0 finishes only after item 3 has: a ForEach that ran one body at a time would never get
# there (the body gives up after the hooks' bound and the test fails), and the results come
# back in another order than item order. Odd items fail, item 3 after letting item 0 go.
OUT_OF_ORDER = """
import df_it_hooks
index = ctx.input["index"]
if index == 0:
    assert df_it_hooks.wait("item 3 done"), "item 3 never ran while item 0 waited"
df_it_hooks.record("finished", index)
if index == 3:
    df_it_hooks.event("item 3 done").set()
if index % 2:
    raise ValueError(f"item {ctx.input['item']} is odd")
output = ctx.input["item"] * 10
"""


def for_each(workflow_id: str, **keys) -> dict:
    return wf(workflow_id, node("each", "ForEach", items="input.numbers", maxParallelism=3,
                                body={"nodes": [py("tenfold", OUT_OF_ORDER)]}, **keys))


def test_for_each_continue_on_error_keeps_every_items_result_in_item_order(engine, hooks, sql):
    run = engine.execute(for_each("keep-going", continueOnError=True), inputs={"numbers": [0, 1, 2, 3, 4]},
                         timeout=60)
    assert run.status == "completed", run.error
    finished = hooks.calls["finished"]
    assert sorted(finished) == [0, 1, 2, 3, 4] and finished.index(3) < finished.index(0)
    children = {json.loads(inputs)["index"]: child for inputs, child in
                sql.rows("SELECT inputs, run_id FROM runs WHERE parent_run_id = ?", run.run_id)}
    result = run.outputs["each"]
    assert [result[i] for i in (0, 2, 4)] == [{"tenfold": 0}, {"tenfold": 20}, {"tenfold": 40}]
    for index in (1, 3):
        error = result[index]["error"]
        assert error["type"] == "ValueError"
        assert error["message"].startswith(f"body run {children[index]} failed: node 'tenfold' failed: "
                                           f"ValueError: item {index} is odd")
        assert set(result[index]) == {"error"} and set(error) == {"type", "message"}
    each = run.node("each")
    assert each.status == "completed" and each.attempt == 1


def test_for_each_without_continue_on_error_fails_at_the_first_bad_item(engine, hooks, sql):
    body = {"nodes": [py("check", "assert ctx.input['item'] != 'b', 'no b'\noutput = ctx.input['item']")]}
    run = engine.execute(wf("stop-early", node("each", "ForEach", items="input.letters", maxParallelism=2,
                                               body=body)),
                         inputs={"letters": ["a", "b", "c", "d", "e", "f"]}, timeout=60)
    assert run.status == "failed"
    each = run.node("each")
    assert each.status == "failed" and each.error_type == "LoopFailed"
    assert "item 1: body run" in each.error and "no b" in each.error
    # The loop stopped there: no body run is left going, and not every item got one.
    statuses = [s for (s,) in sql.rows("SELECT status FROM runs WHERE parent_run_id = ?", run.run_id)]
    assert "failed" in statuses and len(statuses) < 6
    assert set(statuses) <= {"completed", "failed", "cancelled"}


def test_continue_on_error_reports_a_cancelled_item_and_is_false_by_default(engine, hooks, sql):
    """A body run cancelled by hand is an item's error too; an explicit `false` is the default."""
    body = {"nodes": [node("nap", "WaitForSignal", signal="go")]}
    run_id = engine.start(wf("cancel-one", node("each", "ForEach", items="[1, 2]", continueOnError=True,
                                                body=body)))
    with engine.worker(concurrency=2):
        children = wait_until(lambda: waiting_bodies(sql, run_id, 2), what="both body runs waiting")
        engine.cancel(children[0])
        engine.signal(children[1], "go", {"ok": True})
        run = engine.wait(run_id, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs["each"] == [
        {"error": {"type": "Cancelled", "message": f"body run {children[0]} cancelled"}},
        {"nap": {"ok": True}}]
    strict = engine.execute(wf("strict", node("each", "ForEach", items="[1, 2]", continueOnError=False,
                                              body={"nodes": [py("no", "raise RuntimeError('no')")]})),
                            timeout=30)
    assert strict.status == "failed" and strict.node("each").error_type == "LoopFailed"


def waiting_bodies(sql, run_id: str, count: int) -> list[str] | None:
    """The body runs of `run_id` in item order, once `count` of them wait for their signal."""
    rows = sql.rows("SELECT r.run_id, r.inputs FROM runs r JOIN node_instances n ON n.run_id = r.run_id "
                    "WHERE r.parent_run_id = ? AND n.status = 'waiting'", run_id)
    # In item order (sorted here: SQLite's json_extract is not PostgreSQL's).
    rows.sort(key=lambda r: json.loads(r[1])["index"])
    return [r for r, _ in rows] if len(rows) == count else None


# --- While: the previous body output ---------------------------------------------------------

# One page per body run: the token to ask for comes from the previous body output.
PAGE = """
previous = ctx.input["previous"]
token = None if previous is None else previous["page"]["next"]
pages = ctx.input["input"]["pages"]
at = 0 if token is None else int(token[1:])
seen = [] if previous is None else previous["page"]["seen"]
tokens = [] if previous is None else previous["page"]["tokens"]
output = {"seen": seen + pages[at], "tokens": tokens + [token], "iteration": ctx.input["iteration"],
          "next": f"p{at + 1}" if at + 1 < len(pages) else None}
"""


def paging(limit: int) -> dict:
    return wf("pager", node("loop", "While",
                            condition="output == null or (output.page.next != null and iteration < vars.limit)",
                            body={"nodes": [py("page", PAGE)]}),
              variables={"limit": limit})


def test_while_pages_through_a_token_carried_by_the_previous_body_output(engine, sql):
    pages = {"pages": [[1, 2], [3], [], [4, 5]]}
    run = engine.execute(paging(limit=10), inputs=pages, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"loop": {"page": {"seen": [1, 2, 3, 4, 5], "tokens": [None, "p1", "p2", "p3"],
                                             "iteration": 3, "next": None}}}
    inputs = sorted((json.loads(text) for (text,) in sql.rows(
        "SELECT inputs FROM runs WHERE parent_run_id = ?", run.run_id)), key=lambda i: i["iteration"])
    assert [set(i) for i in inputs] == [{"input", "previous", "iteration"}] * 4
    assert inputs[0] == {"input": pages, "previous": None, "iteration": 0}
    assert inputs[2]["previous"] == {"page": {"seen": [1, 2, 3], "tokens": [None, "p1"], "iteration": 1,
                                              "next": "p2"}}


def test_the_while_condition_sees_output_iteration_and_vars(engine):
    """vars.limit stops the loop with pages left: the condition saw vars and iteration."""
    run = engine.execute(paging(limit=2), inputs={"pages": [[1], [2], [3], [4]]}, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs["loop"]["page"] == {"seen": [1, 2], "tokens": [None, "p1"], "iteration": 1, "next": "p2"}


# --- the nesting limit -------------------------------------------------------------------------

def sub(workflow_id: str, calls: str) -> dict:
    return wf(workflow_id, node("call", "Subflow", workflowId=calls))


def test_the_nesting_limit_is_the_engines_and_names_the_chain_of_workflows(tmp_path):
    engine = Engine(tmp_path / "nest.db", max_nesting=3)
    sql = Sql(engine.path)
    try:
        for workflow_id, calls in (("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")):
            engine.register(sub(workflow_id, calls))
        run = engine.execute("a", timeout=60)
        assert run.status == "failed"
        assert sql.rows("SELECT workflow_id, status FROM runs ORDER BY created_at") == [
            ("a", "failed"), ("b", "failed"), ("c", "failed"), ("d", "failed")]
        (error,) = sql.rows("SELECT error FROM node_instances WHERE error_type = 'NestingTooDeep'")
        assert error[0] == ("node 'call': runs are nested 3 deep here (limit 3): a -> b -> c -> d; "
                            "refused to start a run of 'a' (does a workflow start itself?)")
        assert "NestingTooDeep" not in run.error and "runs are nested 3 deep" in run.error
    finally:
        sql.close()
        engine.close()


def test_loop_bodies_count_towards_the_nesting_limit(tmp_path):
    """A ForEach body that holds a While: the While's body would be a second level."""
    inner = {"nodes": [node("loop", "While", condition="iteration < 1", body={"nodes": [py("x")]})]}
    outer = wf("outer", node("each", "ForEach", items="[1]", body=inner))
    with Engine(tmp_path / "loops.db", max_nesting=1) as engine:
        run = engine.execute(outer, timeout=60)
        assert run.status == "failed"
        child = engine.runs(top_level=False, workflow_id="outer.each")[0]
        loop = engine.get_run(child["run_id"]).node("loop")
        assert loop.error_type == "NestingTooDeep"
        assert ("runs are nested 1 deep here (limit 1): outer -> outer.each; refused to start a run "
                "of 'outer.each.loop'") in loop.error
    with Engine(tmp_path / "loops.db", max_nesting=2) as roomier:
        assert roomier.execute(outer, timeout=60).status == "completed"


@pytest.mark.parametrize("value", [0, -1, 2.5, "3", True, None])
def test_a_bad_max_nesting_is_one_line_and_opens_nothing(tmp_path, value):
    with pytest.raises(ValidationError, match="^max_nesting must be a whole number of at least 1, not ") as exc:
        Engine(tmp_path / "bad.db", max_nesting=value)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "bad.db").exists()
