"""The builder reaches every node type and policy of SPEC sections 2 and 3, compiles to exactly
the definition the YAML loader makes of the same workflow, and writes YAML/JSON that loads back
to it."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from durableflow import (
    Body, CircuitBreaker, Defaults, RateLimit, Resources, Retry, Workflow)
from durableflow.definitions import load_definition, load_definition_text
from tests.authoring import flows
from tests.authoring.conftest import FIXTURES

STAND_IN = "#!/bin/sh\necho '{}'\n"


@pytest.fixture
def programs(tmp_path, monkeypatch):
    """pwsh and dotnet on PATH (stand-ins): PowerShell and CSharpScript nodes need them to load."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("pwsh", "dotnet"):
        (folder / name).write_text(STAND_IN)
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def everything() -> Workflow:
    wf = Workflow("everything", name="Every node type and policy", description="one of each",
                  version=3, variables={"threshold": 10, "tags": ("a", "b")},
                  inputs_schema={"type": "object", "required": ["day"]}, max_concurrency=4,
                  timeout=timedelta(minutes=30), retry_budget=10,
                  defaults=Defaults(timeout="10m", retry=Retry.exponential(3), priority="normal",
                                    isolation="thread"),
                  extra={"x-owner": "data-team"})
    start, nightly = wf.manual("start"), wf.timer("nightly", cron="0 2 * * *",
                                                  timezone="Europe/Paris", catch_up="one")
    every, on_order = wf.timer("every", interval=timedelta(minutes=15)), wf.event(
        "on_order", "order.created")
    fetch = wf.shell("fetch", ["python3", "fetch.py"], output_format="json",
                     env={"MODE": "fast", "LEVEL": 2}, working_dir="fixtures/scripts",
                     max_stream_bytes=4194304, timeout="2m", join_mode="any",
                     retry=Retry.fixed(2, delay=1, retry_on=[75]))
    line = wf.shell("line", "echo hi | wc -c", shell=True)
    script = wf.shell("script", script_path=Path("fixtures/scripts/job.sh"))
    process = wf.python("process", flows.clean, name="Process", description="the heavy part",
                        isolation="process", timeout=90, priority="high",
                        retry=Retry.exponential(5, initial_delay="1s", max_delay=timedelta(
                            minutes=1), multiplier=2, jitter=0.25,
                            retry_on=[TimeoutError, flows.Transient, 75]))
    inline = wf.python("inline", script="output = 1", retry=Retry.none())
    from_file = wf.python("from_file", script_path="fixtures/scripts/run.py",
                          env={"STAGE": "test"}, working_dir="fixtures", priority="low")
    ps = wf.powershell("ps", "Write-Output hi")
    ps_file = wf.powershell("ps_file", script_path="fixtures/scripts/job.ps1", output_format="json")
    cs = wf.csharp_script("cs", "fixtures/scripts/job.csx")
    check = wf.if_else("check", "input.rows > vars.threshold")
    route = wf.switch("route", "input.kind", {"a": "port_a", "b": "port_b"}, default="other")

    body = Body()
    keep = body.python("score", flows.score, timeout="5s") >> body.if_else(
        "keep", "input.score.score > 10")
    keep.on("true") >> body.noop("kept")
    each = wf.for_each("each", "input.items", body, max_parallelism=2, continue_on_error=True,
                       join_mode="any")
    loop = wf.while_loop("loop", "output == null or output.more", "page-body", body_version=2,
                         max_iterations=50)
    by_ref = wf.for_each("by_ref", "input", flows.pipeline)
    child = wf.subflow("child", flows.pipeline, version=1,
                       inputs={"day": "${ input.day }", "fixed": 1})
    pause = wf.wait("pause", "10m")
    until = wf.wait("until", until=datetime(2026, 11, 27, 9, tzinfo=timezone.utc))
    approval = wf.wait_for_signal("approval", "approved", timeout="1d")
    charge = wf.python("charge", flows.load, timeout="10m", retry=Retry.exponential(3),
                       max_concurrent_executions=2, concurrency_key="payments",
                       rate_limit=RateLimit(5, per="1s", key="psp", burst=2),
                       circuit_breaker=CircuitBreaker(key="psp", failure_threshold=0.5,
                                                      minimum_calls=10, window="1m",
                                                      open_duration=timedelta(seconds=30),
                                                      half_open_successes=2),
                       resources=Resources(cpu=0.5, memory_mb=256), compensation="refund",
                       extra={"x-note": "pays"})
    charge.configure(fallback=wf.noop("charge_later"))   # declared after: configure
    wf.python("refund", flows.handle)
    ported = wf.python("ported", script="output = 2", ports=["left", "right"])
    left, right = wf.noop("left"), wf.noop("right", join_mode="each")

    [start, nightly, every, on_order] >> fetch
    fetch >> line >> script >> process
    fetch.on_fail >> inline
    process.when("output.rows > 0") >> check
    check.on("true") >> route
    check.on("false") >> from_file
    route.on("port_a") >> ps
    route.on("port_b") >> ps_file
    route.on("other") >> cs
    [ps, ps_file, cs] >> each
    each >> loop >> by_ref >> child >> pause >> until >> approval >> charge
    charge.connect(ported, trigger="Any", target_port="result", id="charged")
    ported.on("left") >> left
    ported.on("right") >> right
    from_file.on_any.when("output != null") >> right
    return wf


def test_every_node_type_and_policy_compiles_to_the_yaml_definition(programs):
    built, written = everything().to_definition(), load_definition(FIXTURES / "everything.yaml")
    assert [n.node_id for n in built.nodes] == [n.node_id for n in written.nodes]
    for mine, theirs in zip(built.nodes, written.nodes):
        assert mine == theirs, mine.node_id
    assert built.connections == written.connections
    assert built == written


def test_every_runtime_type_of_the_model_is_reachable(programs):
    from durableflow.model import RUNTIME_TYPES
    assert {n.runtime_type for n in everything().to_definition().nodes} == set(RUNTIME_TYPES)


def test_yaml_json_and_files_load_back_to_the_same_definition(programs, tmp_path):
    wf = everything()
    defn = wf.to_definition()
    base = Path(__file__).parent
    assert load_definition_text(wf.to_yaml(), base_dir=base) == defn
    assert load_definition_text(wf.to_json(), format="json", base_dir=base) == defn
    assert json.loads(wf.to_json()) == yaml.safe_load(wf.to_yaml()) == wf.to_dict()
    # paths in the text are relative to the declaring file's folder, as a YAML file's are
    assert wf.to_dict()["nodes"][6]["scriptPath"] == "fixtures/scripts/job.sh"
    for name in ("elsewhere.yaml", "elsewhere.json"):
        saved = wf.save(tmp_path / name)
        assert saved == tmp_path / name and load_definition(saved) == defn


def test_arrows_draw_the_connections_they_say():
    wf = Workflow("arrows")
    a, b, c = (wf.noop(name) for name in "abc")
    d = wf.noop("d", join_mode="any")
    assert (a >> b >> c) is c                      # a chain returns its right end
    assert (a >> [c, d]) == [c, d]                # fan out
    assert ([b, c] >> d.input("joined")) is d     # fan in, under one targetPort
    a.on_fail >> d.input("failure")
    a.on_any.when("output != null") >> b.input("any")
    data = wf.to_dict()["connections"]
    shown = [(c["sourceNodeId"], c["targetNodeId"], c["triggerMessageType"], c.get("condition"),
              c.get("targetPort")) for c in data]
    assert shown == [
        ("a", "b", "Complete", None, None), ("b", "c", "Complete", None, None),
        ("a", "c", "Complete", None, None), ("a", "d", "Complete", None, None),
        ("b", "d", "Complete", None, "joined"), ("c", "d", "Complete", None, "joined"),
        ("a", "d", "Fail", None, "failure"), ("a", "b", "Any", "output != null", "any")]


def test_only_given_fields_are_written_so_a_saved_file_keeps_a_hand_written_shape():
    wf = Workflow("small")
    wf.python("p", flows.clean, retry=Retry.exponential(4, retry_on=[KeyError, flows.Transient]))
    assert wf.to_dict() == {"workflowId": "small", "nodes": [{
        "nodeId": "p", "runtimeType": "Python", "callable": "tests.authoring.flows:clean",
        "retry": {"strategy": "exponential", "maxAttempts": 4,
                  "retryOn": ["KeyError", "tests.authoring.flows.Transient"]}}]}


def test_a_node_can_be_looked_up_and_configured_later():
    wf = Workflow("later")
    wf.python("charge", flows.load)
    wf.python("refund", flows.handle)
    assert "charge" in wf and wf["charge"].runtime_type == "Python"
    wf["charge"].configure(compensation=wf["refund"], timeout=timedelta(seconds=90))
    node = wf.to_definition().node("charge")
    assert (node.compensation_node_id, node.timeout) == ("refund", 90.0)
    assert [n.node_id for n in wf.nodes] == ["charge", "refund"]


def test_a_body_built_by_a_function_is_inline_and_registered_with_its_parent(tmp_path):
    def per_word(body: Body) -> None:
        body.python("count", script="output = len(ctx.input['item'])")

    wf = Workflow("words")
    wf.for_each("counts", "input.words", per_word)
    from durableflow import Engine
    with Engine(tmp_path / "w.db") as engine:
        run = engine.execute(wf, {"words": ["ab", "abc"]}, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"counts": [{"count": 2}, {"count": 3}]}
    assert wf.to_dict()["nodes"][0]["body"] == {"nodes": [
        {"nodeId": "count", "runtimeType": "Python", "script": "output = len(ctx.input['item'])"}]}
