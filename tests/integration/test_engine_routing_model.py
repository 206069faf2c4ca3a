"""Random acyclic graphs (Python nodes that complete or fail, IfElse nodes, Complete/Fail/Any
connections with ports, `all`/`any` joins) run through the engine and compared with a small
reference model of the routing rules of SPEC section 2: delivery, dead-path elimination,
handled and unhandled failures, and run outputs."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from df_it_support import node, py, wf

_ids = itertools.count()


@st.composite
def graphs(draw):
    n = draw(st.integers(2, 7))
    kinds = [draw(st.sampled_from(["ok", "ok", "bad", "if_true", "if_false"])) for _ in range(n)]
    edges = []
    for j in range(1, n):
        sources = draw(st.lists(st.integers(0, j - 1), min_size=0, max_size=min(3, j), unique=True))
        for i in sources:
            trigger = draw(st.sampled_from(["Complete", "Complete", "Fail", "Any"]))
            port = None
            if kinds[i].startswith("if") and trigger != "Fail":
                port = draw(st.sampled_from(["true", "false"]))
            edges.append((i, j, trigger, port))
    joins = [draw(st.sampled_from(["all", "any"])) for _ in range(n)]
    return kinds, edges, joins


def build(kinds, edges, joins) -> dict:
    nodes = []
    for k, kind in enumerate(kinds):
        extra = {"joinMode": joins[k]} if joins[k] != "all" else {}
        if kind == "ok":
            nodes.append(py(f"n{k}", f"output = {{'id': {k}, 'keys': sorted(ctx.inputs)}}", **extra))
        elif kind == "bad":
            nodes.append(py(f"n{k}", f"raise ValueError('bad {k}')", **extra))
        else:
            nodes.append(node(f"n{k}", "IfElse", condition="True" if kind == "if_true" else "False", **extra))
    connections = []
    for i, j, trigger, port in edges:
        c = {"sourceNodeId": f"n{i}", "targetNodeId": f"n{j}", "triggerMessageType": trigger}
        if port is not None:
            c["sourcePort"] = port
        connections.append(c)
    return wf(f"model-{next(_ids)}", *nodes, connections=connections)


def expected(kinds, edges):
    """Final status per node, the delivered sources of each node that ran, and the unhandled failures."""
    status, port, delivered_from = {}, {}, {}
    for j, kind in enumerate(kinds):
        incoming = [e for e in edges if e[1] == j]
        delivered = []
        for i, _j, trigger, p in incoming:
            s = status[i]
            if s == "skipped":
                continue
            if trigger == "Complete" and s != "completed" or trigger == "Fail" and s != "failed":
                continue
            if p is not None and port.get(i) != p:
                continue
            delivered.append(i)
        if incoming and not delivered:
            status[j] = "skipped"
            continue
        delivered_from[j] = delivered
        status[j] = "failed" if kind == "bad" else "completed"
        if kind.startswith("if"):
            port[j] = "true" if kind == "if_true" else "false"
    unhandled = []
    for k, s in status.items():
        if s == "failed":
            handlers = [e for e in edges if e[0] == k and e[2] in ("Fail", "Any")]
            if not handlers:
                unhandled.append(k)
    return status, delivered_from, unhandled


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(graphs())
def test_routing_matches_the_reference_model(engine, graph):
    kinds, edges, joins = graph
    run = engine.execute(build(kinds, edges, joins), concurrency=3, timeout=30)
    status, delivered_from, unhandled = expected(kinds, edges)
    if unhandled:
        assert run.status == "failed"
        assert any(f"'n{k}'" in run.error for k in unhandled), run.error
        return
    assert run.status == "completed", run.error
    got = {}
    for n in run.nodes:
        assert n.iteration == 0 and n.attempt == 1, n
        assert n.node_id not in got, f"{n.node_id} has two rows"
        got[n.node_id] = n
    assert {k: got[f"n{k}"].status for k in range(len(kinds))} == status
    for k, sources in delivered_from.items():
        if kinds[k] != "ok":
            continue
        keys = got[f"n{k}"].output["keys"]
        if joins[k] == "any" and len([e for e in edges if e[1] == k]) > 1:
            assert len(keys) == 1 and int(keys[0][1:]) in sources, (k, keys, sources)
        else:
            assert keys == sorted({f"n{i}" for i in sources}), (k, keys, sources)
    terminals = {k for k in range(len(kinds)) if not any(e[0] == k for e in edges)}
    outputs = {f"n{k}": got[f"n{k}"].output for k in terminals if status[k] == "completed"}
    assert run.outputs == outputs
