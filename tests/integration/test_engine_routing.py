"""Routing: Complete/Fail/Any connections, conditions, IfElse/Switch ports with dead-path
elimination, join modes, run outputs and variables."""

from __future__ import annotations

import pytest

from df_it_support import conn, node, node_status, py, wait_until, wf


def statuses(run) -> dict:
    """Latest status per (node, iteration) -> {node_id: status} for iteration 0."""
    return {n.node_id: n.status for n in run.nodes if n.iteration == 0}


# --- Complete / Fail / Any ------------------------------------------------------------------------

def test_fail_edge_handles_the_error_and_the_run_completes(engine):
    defn = wf(
        "handled",
        py("risky", "raise ValueError('bad row 7')"),
        py("after", "output = 'not reached'"),
        py("handler", "output = ctx.input"),
        connections=[conn("risky", "after"), conn("risky", "handler", on="Fail")],
    )
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    risky = run.node("risky")
    assert risky.status == "failed" and risky.error_type == "ValueError" and "bad row 7" in risky.error
    handler_input = run.node("handler").input
    assert handler_input == {"error": risky.error, "errorType": "ValueError", "nodeId": "risky", "attempt": 1}
    # The Complete path of a failed node is ruled out.
    assert run.node("after").status == "skipped"
    assert run.outputs == {"handler": handler_input}


def test_unhandled_failure_fails_the_run_naming_the_node(engine):
    defn = wf(
        "unhandled",
        py("first", "output = 1"),
        py("second", "raise RuntimeError('disk on fire')"),
        py("third"),
        connections=[conn("first", "second"), conn("second", "third")],
    )
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    assert "second" in run.error and "disk on fire" in run.error
    assert run.node("first").status == "completed"
    assert run.node("second").status == "failed"
    assert run.node("third") is None or run.node("third").status in ("skipped", "cancelled")
    assert run.finished_at is not None


def test_any_connection_fires_on_success_and_on_failure(engine):
    for script, expect_input_key in (("output = {'ok': 1}", "ok"), ("raise OSError('x')", "error")):
        defn = wf(
            "any-edge",
            py("src", script),
            py("always", "output = sorted(ctx.input)"),
            connections=[conn("src", "always", on="Any")],
        )
        run = engine.execute(defn, timeout=30)
        assert run.status == "completed", run.error
        assert expect_input_key in run.outputs["always"]


@pytest.mark.parametrize("rows, taken, skipped", [(5, "load", "empty"), (0, "empty", "load")])
def test_condition_over_the_source_output(engine, rows, taken, skipped):
    defn = wf(
        "cond",
        py("count", f"output = {{'rows': {rows}}}"),
        py("load", "output = 'loaded'"),
        py("empty", "output = 'nothing'"),
        connections=[
            conn("count", "load", condition="output.rows > 0"),
            conn("count", "empty", condition="output['rows'] == 0"),
        ],
    )
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    assert run.node(taken).status == "completed"
    assert run.node(skipped).status == "skipped"
    # A skipped terminal is left out of the outputs.
    assert run.outputs == {taken: "loaded" if taken == "load" else "nothing"}


def test_condition_that_fails_to_evaluate_fails_the_run(engine):
    defn = wf(
        "cond-error",
        py("src", "output = {'rows': 'many'}"),
        py("dst"),
        connections=[conn("src", "dst", condition="output.rows > 0")],
    )
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    assert "src" in run.error


# --- IfElse / Switch ------------------------------------------------------------------------------

def ifelse_defn() -> dict:
    return wf(
        "branch",
        node("check", "IfElse", condition="input.amount > 100"),
        py("big", "output = 'big ' + str(ctx.input['amount'])"),
        py("big_more", "output = ctx.input + '!'"),
        py("small", "output = 'small'"),
        py("small_more", "output = ctx.input + '?'"),
        py("merge", "output = ctx.inputs"),
        connections=[
            conn("check", "big", sourcePort="true"),
            conn("big", "big_more"),
            conn("check", "small", sourcePort="false"),
            conn("small", "small_more"),
            conn("big_more", "merge"),
            conn("small_more", "merge"),
        ],
    )


@pytest.mark.parametrize("amount, taken, not_taken", [
    (500, ("big", "big_more"), ("small", "small_more")),
    (5, ("small", "small_more"), ("big", "big_more")),
])
def test_ifelse_skips_the_branch_not_taken_and_the_join_does_not_wait_for_it(engine, amount, taken, not_taken):
    run = engine.execute(ifelse_defn(), inputs={"amount": amount}, timeout=30)
    assert run.status == "completed", run.error
    s = statuses(run)
    assert s["check"] == "completed" and run.node("check").port == ("true" if amount > 100 else "false")
    assert all(s[n] == "completed" for n in taken)
    assert all(s[n] == "skipped" for n in not_taken)
    assert s["merge"] == "completed"
    last = taken[1]
    assert run.node("merge").output == {last: run.node(last).output}
    assert run.outputs == {"merge": {last: run.node(last).output}}


def test_ifelse_with_terminal_branches_leaves_the_skipped_one_out_of_outputs(engine):
    defn = wf(
        "branch-terminal",
        node("check", "IfElse", condition="input.flag"),
        py("yes", "output = 'Y'"),
        py("no", "output = 'N'"),
        connections=[conn("check", "yes", sourcePort="true"), conn("check", "no", sourcePort="false")],
    )
    run = engine.execute(defn, inputs={"flag": False}, timeout=30)
    assert run.status == "completed"
    assert run.outputs == {"no": "N"}
    assert run.node("yes").status == "skipped"


def switch_defn(expression: str, cases: dict) -> dict:
    ports = list(dict.fromkeys(cases.values())) + ["other"]
    return wf(
        "switch",
        node("route", "Switch", expression=expression, cases=cases, default="other"),
        *[py(f"on_{p}", f"output = '{p}'") for p in ports],
        connections=[conn("route", f"on_{p}", sourcePort=p) for p in ports],
    )


@pytest.mark.parametrize("kind, port", [("eu", "europe"), ("us", "america"), ("mars", "other")])
def test_switch_routes_to_the_matching_case_or_default(engine, kind, port):
    defn = switch_defn("input.region", {"eu": "europe", "us": "america"})
    run = engine.execute(defn, inputs={"region": kind}, timeout=30)
    assert run.status == "completed", run.error
    assert run.node("route").port == port
    assert run.outputs == {f"on_{port}": port}
    for other in {"europe", "america", "other"} - {port}:
        assert run.node(f"on_{other}").status == "skipped"


@pytest.mark.parametrize("value, port", [(2, "two"), (True, "yes"), (None, "none")])
def test_switch_matches_non_string_values_by_their_json_spelling(engine, value, port):
    """Case keys are strings (YAML/JSON keys); validate.switch_port documents the rule the engine
    must share: a non-string value matches its JSON spelling (1 -> "1", True -> "true", None -> "null")."""
    defn = switch_defn("input.v", {"2": "two", "true": "yes", "null": "none"})
    run = engine.execute(defn, inputs={"v": value}, timeout=30)
    assert run.status == "completed", run.error
    assert run.node("route").port == port


# --- joins ----------------------------------------------------------------------------------------

def test_join_all_waits_for_every_branch(engine, hooks):
    defn = wf(
        "join-all",
        py("start", "output = 1"),
        py("fast", "output = 'f'"),
        py("slow", "import df_it_hooks as h\nh.wait('slow-go')\noutput = 's'"),
        py("join", "import df_it_hooks as h\nh.record('join', ctx.inputs)\noutput = ctx.inputs"),
        connections=[conn("start", "fast"), conn("start", "slow"), conn("fast", "join"), conn("slow", "join")],
    )
    run_id = engine.start(defn)
    with engine.worker(concurrency=3):
        wait_until(lambda: node_status(engine, run_id, "fast") == "completed", what="fast to complete")
        wait_until(lambda: node_status(engine, run_id, "slow") == "running", what="slow to run")
        assert engine.get_run(run_id).node("join") is None    # not started while slow runs
        hooks.event("slow-go").set()
        run = engine.wait(run_id, timeout=30)
    assert run.status == "completed"
    assert hooks.calls["join"] == [{"fast": "f", "slow": "s"}]
    assert [n.status for n in run.nodes if n.node_id == "join"] == ["completed"]


def test_join_any_runs_once_on_the_first_delivery(engine, hooks):
    defn = wf(
        "join-any",
        py("start", "output = 1"),
        py("a", "output = 'a'"),
        py("b", "import df_it_hooks as h\nh.wait('b-go')\noutput = 'b'"),
        py("first", "import df_it_hooks as h\nh.record('first', ctx.input)\nh.event('first-ran').set()\noutput = ctx.input",
           joinMode="any"),
        connections=[conn("start", "a"), conn("start", "b"), conn("a", "first"), conn("b", "first")],
    )
    run_id = engine.start(defn)
    with engine.worker(concurrency=3):
        assert hooks.wait("first-ran", 20)
        hooks.event("b-go").set()
        run = engine.wait(run_id, timeout=30)
    assert run.status == "completed", run.error
    assert hooks.calls["first"] == ["a"]
    assert [n.status for n in run.nodes if n.node_id == "first"] == ["completed"]
    assert run.node("b").status == "completed"
    assert run.outputs == {"first": "a"}


def test_join_each_runs_once_per_delivery(engine, hooks):
    defn = wf(
        "join-each",
        py("start", "output = 1"),
        py("a", "output = 'a'"),
        py("b", "output = 'b'"),
        py("c", "output = 'c'"),
        node("gate", "IfElse", condition="False"),
        py("never", "output = 'never'"),
        py("each", "import df_it_hooks as h\nh.record('each', ctx.input)\noutput = ctx.input.upper()",
           joinMode="each"),
        connections=[conn("start", "a"), conn("start", "b"), conn("start", "c"), conn("start", "gate"),
                     conn("gate", "never", sourcePort="true"),
                     conn("a", "each"), conn("b", "each"), conn("c", "each"), conn("never", "each")],
    )
    run = engine.execute(defn, concurrency=3, timeout=30)
    assert run.status == "completed", run.error
    assert sorted(hooks.calls["each"]) == ["a", "b", "c"]
    each_rows = [n for n in run.nodes if n.node_id == "each"]
    assert sorted(n.iteration for n in each_rows) == [0, 1, 2]
    assert all(n.status == "completed" for n in each_rows)
    assert run.node("never").status == "skipped"


def test_join_all_with_every_branch_ruled_out_is_skipped(engine):
    defn = wf(
        "join-none",
        node("gate", "IfElse", condition="input.go"),
        py("x", "output = 'x'"),
        py("y", "output = 'y'"),
        py("join", "output = 'joined'"),
        py("tail", "output = 'tail'"),
        py("other", "output = 'other'"),
        connections=[conn("gate", "x", sourcePort="true"), conn("gate", "y", sourcePort="true"),
                     conn("x", "join"), conn("y", "join"), conn("join", "tail"),
                     conn("gate", "other", sourcePort="false")],
    )
    run = engine.execute(defn, inputs={"go": False}, timeout=30)
    assert run.status == "completed", run.error
    assert {n: statuses(run)[n] for n in ("x", "y", "join", "tail")} == dict.fromkeys(("x", "y", "join", "tail"), "skipped")
    assert run.outputs == {"other": "other"}


def test_outputs_are_those_of_terminal_nodes_that_ran(engine):
    defn = wf(
        "terminals",
        py("root", "output = 'r'"),
        py("mid", "output = 'm'"),
        py("leaf1", "output = 'l1'"),
        py("leaf2", "output = {'deep': [1, 2]}"),
        connections=[conn("root", "mid"), conn("mid", "leaf1"), conn("root", "leaf2")],
    )
    run = engine.execute(defn, timeout=30)
    assert run.outputs == {"leaf1": "l1", "leaf2": {"deep": [1, 2]}}


# --- variables ------------------------------------------------------------------------------------

def test_variables_written_by_a_node_are_seen_downstream_and_kept_on_the_run(engine, hooks):
    defn = wf(
        "vars",
        py("setter", "ctx.vars['token'] = 'abc'\nctx.vars['count'] = ctx.vars['count'] + 1\noutput = 1"),
        py("reader", "output = {'token': ctx.vars.get('token'), 'count': ctx.vars['count']}"),
        py("cond_target", "output = 'ran'"),
        connections=[conn("setter", "reader"), conn("setter", "cond_target", condition="vars.count == 2")],
        variables={"count": 1},
    )
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs["reader"] == {"token": "abc", "count": 2}
    assert run.outputs["cond_target"] == "ran"
    assert run.variables == {"count": 2, "token": "abc"}


def test_parallel_nodes_writing_different_keys_both_survive(engine, hooks):
    body = ("import df_it_hooks as h\nh.barrier('both', 2).wait()\n"
            "ctx.vars[ctx.node_id] = ctx.node_id.upper()\noutput = 1")
    defn = wf(
        "vars-parallel",
        py("start", "output = 1"),
        py("left", body),
        py("right", body),
        py("end", "output = dict(ctx.vars)"),
        connections=[conn("start", "left"), conn("start", "right"), conn("left", "end"), conn("right", "end")],
        variables={"keep": True},
    )
    run = engine.execute(defn, concurrency=2, timeout=30)
    assert run.status == "completed", run.error
    expected = {"keep": True, "left": "LEFT", "right": "RIGHT"}
    assert run.variables == expected
    assert run.outputs == {"end": expected}


def test_manual_trigger_and_noop_pass_the_run_inputs_along(engine):
    defn = wf("manual", node("trigger", "Manual"), node("pass", "Noop"), py("use", "output = ctx.input"),
              connections=[conn("trigger", "pass"), conn("pass", "use")])
    run = engine.execute(defn, inputs={"k": [1, 2]}, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"use": {"k": [1, 2]}}
    assert [n.status for n in run.nodes] == ["completed"] * 3


def test_a_routing_node_whose_expression_fails_takes_its_fail_edge(engine):
    defn = wf("ifelse-error", node("check", "IfElse", condition="input.missing > 1"), py("yes"),
              py("handler", "output = ctx.input['errorType']"),
              connections=[conn("check", "yes", sourcePort="true"), conn("check", "handler", on="Fail")])
    run = engine.execute(defn, inputs={"present": 1}, timeout=30)
    assert run.status == "completed", run.error
    check = run.node("check")
    assert check.status == "failed" and check.error_type == "ExpressionError" and "missing" in check.error
    assert run.node("yes").status == "skipped"
    assert run.outputs == {"handler": "ExpressionError"}
