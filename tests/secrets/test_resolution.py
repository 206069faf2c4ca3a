"""References resolved by the worker just before a body runs, and only there: what each kind of
body sees, what the rows keep (the reference), where the value comes from, a missing one."""

from __future__ import annotations

import json
import sys

from df_it_support import Sql, conn, node, py, wf

def stored(engine, query: str) -> list:
    """The JSON values a query reads from the file, behind the engine's back."""
    sql = Sql(engine.path)
    try:
        return [json.loads(text) for (text,) in sql.rows(query)]
    finally:
        sql.close()


SHOW = "output = {'input': ctx.input, 'inputs': ctx.inputs, 'vars': dict(ctx.vars)}"


def test_a_python_body_sees_values_where_the_rows_keep_references(engine_with, canary, monkeypatch):
    monkeypatch.setenv("API_TOKEN", canary)
    engine = engine_with()
    flow = wf("see", node("m", "Manual"),
              py("look", f"assert ctx.input['token'] == {canary!r}\n"
                         f"assert ctx.inputs['m']['token'] == {canary!r}\n"
                         f"assert ctx.vars['pw'] == {canary!r}\n"
                         "output = len(ctx.input['token'])"),
              connections=[conn("m", "look")], variables={"pw": {"$secret": "API_TOKEN"}})
    run = engine.execute(flow, inputs={"token": {"$secret": "API_TOKEN"}}, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"look": len(canary)}
    ref = {"$secret": "API_TOKEN"}
    assert stored(engine, "SELECT inputs FROM runs") == [{"token": ref}]
    assert stored(engine, "SELECT variables FROM runs") == [{"pw": ref}]
    assert stored(engine, "SELECT input FROM node_instances WHERE node_id = 'look'") == [{"token": ref}]
    assert [p["input"] for p in stored(engine, "SELECT payload FROM messages")] == [{"token": ref}] * 2


def test_shell_env_and_command_and_a_process_body_see_values(engine_with, canary, monkeypatch):
    monkeypatch.setenv("API_TOKEN", canary)
    engine = engine_with()
    check = f"test \"$TOKEN\" = {canary} && test \"$1\" = {canary} && echo ok"
    flow = wf("kinds",
              node("sh", "Shell", command=["sh", "-c", check, "sh", {"$secret": "API_TOKEN"}],
                   env={"TOKEN": {"$secret": "API_TOKEN"}}),
              py("proc", f"import os\nassert os.environ['TOKEN'] == {canary!r}\n"
                         f"assert ctx.input['token'] == {canary!r}\noutput = 'ok'",
                 isolation="process", env={"TOKEN": {"$secret": "API_TOKEN"}}))
    run = engine.execute(flow, inputs={"token": {"$secret": "API_TOKEN"}}, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"sh": {"exitCode": 0, "stdout": "ok\n", "stderr": ""}, "proc": "ok"}


def test_the_engines_secrets_file_wins_over_the_environment(engine_with, write_secrets, monkeypatch):
    monkeypatch.setenv("FROM_BOTH", "environment-value")
    monkeypatch.setenv("ENV_ONLY", "environment-only")
    engine = engine_with(write_secrets("FROM_BOTH=file-value\n"))
    flow = wf("order", py("a", "output = [len(ctx.input['both']), len(ctx.input['env'])]"))
    run = engine.execute(flow, inputs={"both": {"$secret": "FROM_BOTH"}, "env": {"$secret": "ENV_ONLY"}},
                         timeout=30)
    assert run.outputs == {"a": [len("file-value"), len("environment-only")]}


def test_a_mapping_given_to_the_engine_resolves_references(engine_with, canary):
    engine = engine_with({"MAPPED": canary})
    run = engine.execute(wf("mapped", py("a", f"output = ctx.input['k'] == {canary!r}")),
                         inputs={"k": {"$secret": "MAPPED"}}, timeout=30)
    assert run.outputs == {"a": True}


def test_a_missing_secret_fails_the_node_at_once_naming_it_whatever_the_retry_policy(engine_with):
    engine = engine_with()
    retry = {"strategy": "fixed", "maxAttempts": 5, "initialDelay": "10ms"}
    flow = wf("missing", node("sh", "Shell", command=["true"], retry=retry,
                              env={"X": {"$secret": "DURABLEFLOW_TEST_NOT_SET"}}))
    run = engine.execute(flow, timeout=30)
    assert run.status == "failed"
    (attempt,) = run.nodes
    assert (attempt.attempt, attempt.status, attempt.error_type) == (1, "failed", "SecretNotFound")
    assert attempt.error == ("node 'sh': secret 'DURABLEFLOW_TEST_NOT_SET' not found in the worker's "
                             "environment (no secrets file given)")
    assert run.error == ("node 'sh' failed: secret 'DURABLEFLOW_TEST_NOT_SET' not found in the "
                         "worker's environment (no secrets file given)")


def test_a_missing_secret_is_a_failure_a_fail_connection_handles(engine_with, write_secrets):
    engine = engine_with(write_secrets("OTHER=x\n"))
    flow = wf("handled", py("a", "output = ctx.input", ), py("on_fail", "output = ctx.input['errorType']"),
              connections=[conn("a", "on_fail", on="Fail")])
    run = engine.execute(flow, inputs={"k": {"$secret": "ABSENT"}}, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"on_fail": "SecretNotFound"}
    assert "secret 'ABSENT' not found in secrets file" in run.node("a").error


def test_routing_nodes_and_subflows_pass_the_reference_on_not_the_value(engine_with, canary, monkeypatch):
    monkeypatch.setenv("API_TOKEN", canary)
    engine = engine_with()
    engine.register(wf("child", py("use", f"output = ctx.input['key'] == {canary!r}")))
    flow = wf("parent", node("m", "Manual"), node("pass", "Noop"),
              node("sub", "Subflow", workflowId="child", inputs={"key": "${ input.token }"}),
              connections=[conn("m", "pass"), conn("pass", "sub")])
    run = engine.execute(flow, inputs={"token": {"$secret": "API_TOKEN"}}, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"sub": {"use": True}}
    assert run.node("pass").output == {"token": {"$secret": "API_TOKEN"}}
    assert stored(engine, "SELECT inputs FROM runs WHERE workflow_id = 'child'") == [
        {"key": {"$secret": "API_TOKEN"}}]


def test_vars_a_body_leaves_keep_their_reference_and_what_it_changes_is_masked(engine_with, canary,
                                                                                monkeypatch):
    monkeypatch.setenv("API_TOKEN", canary)
    engine = engine_with()
    variables = {"pw": {"$secret": "API_TOKEN"}, "n": 1, "nested": {"pw": {"$secret": "API_TOKEN"}, "m": 1}}
    flow = wf("vars",
              py("thread", "ctx.vars['n'] = 2\nctx.vars['nested']['m'] = 2\n"
                           "ctx.vars['copy'] = 'pw=' + ctx.vars['pw']\noutput = 1"),
              py("proc", "ctx.vars['n'] = 3\nctx.vars['pw_len'] = len(ctx.vars['pw'])\noutput = 1",
                 isolation="process"),
              connections=[conn("thread", "proc")], variables=variables)
    run = engine.execute(flow, timeout=60)
    assert run.status == "completed", run.error
    assert stored(engine, "SELECT variables FROM runs") == [{"pw": {"$secret": "API_TOKEN"}, "n": 3,
                      "nested": {"pw": {"$secret": "API_TOKEN"}, "m": 2},
                      "copy": "pw=***", "pw_len": len(canary)}]


def test_a_node_without_references_sees_its_input_as_before(engine_with):
    engine = engine_with()
    run = engine.execute(wf("plain", py("a", SHOW)), inputs={"x": [1, {"y": "$secret"}]}, timeout=30)
    assert run.outputs == {"a": {"input": {"x": [1, {"y": "$secret"}]}, "inputs": {}, "vars": {}}}


def test_the_worker_resolves_with_its_own_environment(engine_with, canary, tmp_path):
    """A run started by one process and run by a worker in another: the worker's environment."""
    import subprocess
    from tests.cli.cli_helpers import subprocess_env
    engine = engine_with()
    run_id = engine.start(wf("elsewhere", py("a", f"output = ctx.input['k'] == {canary!r}")),
                          inputs={"k": {"$secret": "WORKER_ONLY"}})
    env = dict(subprocess_env(), WORKER_ONLY=canary)
    done = subprocess.run([sys.executable, "-m", "durableflow", "--db", str(engine.path), "worker",
                           "--until-idle", "--max-wait", "0s"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert engine.get_run(run_id).outputs == {"a": True}
