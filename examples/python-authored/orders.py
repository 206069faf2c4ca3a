"""Orders with decorators: `@node` functions wired by a `@workflow` function, run in-process.

    python examples/python-authored/orders.py [DATABASE]

The @workflow body runs once, when it is decorated, and records a graph: calling a @node
function there adds its node, and its arguments (the NodeRefs earlier calls returned) become
the connections into it. Nothing in the body runs at run time; the functions run as nodes.

price -> reserve -> confirm (when reserved) | backorder (when not);
price -> big_order (IfElse) -true-> review;  reserve's failure -> apologise;
receipt joins price and confirm under the names `order` and `confirmation` (a confirm that
does not run is ruled out, so the receipt is written either way).

The functions live in this script (__main__), which is fine for engine.execute here and for
engine.worker() inside this program; workers running another program need them in a module
(see etl.py and steps.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from durableflow import Engine, NodeContext, Retry, Workflow, node, workflow

PRICES = {"widget": 2.5, "gadget": 30.0}
STOCK = {"widget": 100, "gadget": 5}


@node(timeout="10s")
def price(ctx: NodeContext) -> dict[str, Any]:
    order = ctx.input                      # an entry node: the run's inputs
    return {**order, "total": round(PRICES.get(order["item"], 0.0) * order["qty"], 2)}


@node(retry=Retry.exponential(3, initial_delay="20ms", retry_on=[TimeoutError]))
def reserve(ctx: NodeContext) -> dict[str, Any]:
    if ctx.input.get("flaky") and ctx.attempt == 1:
        raise TimeoutError("stock service did not answer")    # retried: the second attempt works
    if ctx.input["item"] not in STOCK:
        raise KeyError(f"unknown item {ctx.input['item']!r}")   # not retried: the Fail path
    return {**ctx.input, "reserved": ctx.input["qty"] <= STOCK[ctx.input["item"]]}


@node
def confirm(ctx: NodeContext) -> dict[str, Any]:
    return {"order": ctx.input["id"], "confirmed": True}


@node
def backorder(ctx: NodeContext) -> dict[str, Any]:
    return {"order": ctx.input["id"], "backordered": ctx.input["qty"]}


@node
def review(ctx: NodeContext) -> dict[str, Any]:
    return {"order": ctx.input["id"], "review": f"total {ctx.input['total']} needs a look"}


@node
def apologise(ctx: NodeContext) -> dict[str, Any]:
    return {"failed": ctx.input["nodeId"], "why": ctx.input["errorType"]}


@node(join_mode="all")   # the default: once `order` has arrived and `confirmation` has or never will
def receipt(ctx: NodeContext) -> dict[str, Any]:
    order, confirmation = ctx.inputs["order"], ctx.inputs.get("confirmation")
    return {"order": order["id"], "total": order["total"], "confirmed": confirmation is not None}


@workflow(timeout="1m", retry_budget=5)
def orders(wf: Workflow) -> None:
    priced = price()
    reserved = reserve(priced)
    confirmed = confirm(reserved.when("output.reserved"))
    backorder(reserved.when("not output.reserved"))
    apologise(reserved.on_fail)
    big = priced >> wf.if_else("big_order", "input.total > 100")
    review(big.on("true"))
    receipt(order=priced, confirmation=confirmed)


ORDERS = [
    {"id": 1, "item": "widget", "qty": 4},
    {"id": 2, "item": "gadget", "qty": 20},                     # too many: backordered, reviewed
    {"id": 3, "item": "gadget", "qty": 2, "flaky": True},       # one retry
    {"id": 4, "item": "sprocket", "qty": 1},                    # unknown: handled failure
]


def main(argv: list[str]) -> int:
    db = argv[1] if len(argv) > 1 else str(Path(tempfile.mkdtemp()) / "orders.db")
    ok = True
    with Engine(db) as engine:
        for order in ORDERS:
            run = engine.execute(orders, order, timeout=60)
            ok = ok and run.status == "completed"
            ran = sorted(n.node_id for n in run.nodes if n.status == "completed")
            print(f"order {order['id']}: {run.status}  ran={ran}  outputs={run.outputs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
