"""The Python nodes of etl.py: plain functions of an importable module, so that any worker
(this program's, or `durableflow worker` with this folder on PYTHONPATH) can call them."""

from __future__ import annotations

from typing import Any

from durableflow import NodeContext


def parse(ctx: NodeContext) -> dict[str, Any]:
    """Keep the orders worth processing (amount at least the `minAmount` variable)."""
    minimum = ctx.vars.get("minAmount", 0)
    orders = [order for order in ctx.input["orders"] if order["amount"] >= minimum]
    return {"day": ctx.input["day"], "orders": orders}


def score(ctx: NodeContext) -> dict[str, Any]:
    """One order (a ForEach body run gets {item, index}): a score from its amount."""
    order = ctx.input["item"]
    return {"id": order["id"], "customer": order["customer"], "score": round(order["amount"] / 10)}


def report(ctx: NodeContext) -> dict[str, Any]:
    """Join the parsed day (ctx.inputs["parsed"]) and the scores (ctx.inputs["scores"])."""
    scored = [body["score"] for body in ctx.inputs["scores"]]   # each body run's outputs
    totals: dict[str, int] = {}
    for item in scored:
        totals[item["customer"]] = totals.get(item["customer"], 0) + item["score"]
    return {"day": ctx.inputs["parsed"]["day"], "orders": len(scored), "scores": totals}


def alert(ctx: NodeContext) -> dict[str, Any]:
    """The Fail path: ctx.input describes the failure of the node that failed."""
    return {"alerted": ctx.input["nodeId"], "reason": ctx.input["error"]}
