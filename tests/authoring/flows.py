"""Node functions and a @workflow the authoring tests run; importable by the engine's workers as
`tests.authoring.flows:...` (the YAML twins in fixtures/ name them so)."""

from __future__ import annotations

from typing import Any

from durableflow import Body, NodeContext, Retry, Workflow, node, workflow


class Transient(Exception):
    """A failure worth a retry."""


@node(retry=Retry.fixed(2, delay="10ms", jitter=0, retry_on=[Transient]), timeout="30s")
def load(ctx: NodeContext) -> dict[str, Any]:
    if ctx.attempt == 1:
        raise Transient("the first attempt fails")
    return {"rows": ctx.input.get("rows", 3), "items": [1, 2, 3]}


@node
def clean(ctx: NodeContext) -> dict[str, Any]:
    return {"rows": ctx.input["rows"] - 1}


@node(priority="high")
def summarize(ctx: NodeContext) -> dict[str, Any]:
    return {"raw": ctx.inputs["raw"]["rows"], "cleaned": ctx.inputs["cleaned"]["rows"]}


@node
def shout(ctx: NodeContext) -> dict[str, Any]:
    raise ValueError(f"too many rows: {ctx.input['rows']}")


@node
def handle(ctx: NodeContext) -> dict[str, Any]:
    return {"handled": ctx.input["nodeId"], "type": ctx.input["errorType"]}


@node
def score(ctx: NodeContext) -> dict[str, Any]:
    return {"score": ctx.input["item"] * 10}


def per_item(body: Body) -> None:
    score()


@workflow(timeout="1m", variables={"limit": 1})
def pipeline(wf: Workflow) -> None:
    raw = load()
    cleaned = clean(raw.when("output.rows > 0"))
    summarize(raw=raw, cleaned=cleaned)
    big = cleaned >> wf.if_else("big", "input.rows > vars.limit")
    shouted = shout(big.on("true"))
    handle(shouted.on_fail)
    raw >> wf.for_each("scores", "input.items", per_item, max_parallelism=1)
