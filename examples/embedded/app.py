"""A Python program that embeds durableflow: its own functions are the nodes.

    python examples/embedded/app.py [DATABASE]

It registers a workflow whose nodes are `callable`s of this module, runs a background worker
inside the program, starts a few orders, follows their events, and prints the outcome. Kill it
at any point and run it again: finished orders are not redone (idempotency keys) and unfinished
ones carry on from their last recorded node.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from durableflow import Engine

WORKFLOW = {
    "workflowId": "orders",
    "workflowName": "Price, reserve and confirm an order",
    "nodes": [
        {"nodeId": "price", "runtimeType": "Python", "callable": "app:price"},
        {"nodeId": "reserve", "runtimeType": "Python", "callable": "app:reserve",
         "retry": {"strategy": "exponential", "maxAttempts": 3, "initialDelay": "50ms"}},
        {"nodeId": "confirm", "runtimeType": "Python", "callable": "app:confirm"},
    ],
    "connections": [
        {"sourceNodeId": "price", "targetNodeId": "reserve"},
        {"sourceNodeId": "reserve", "targetNodeId": "confirm", "condition": "output.reserved"},
    ],
}

PRICES = {"widget": 2.5, "gadget": 10.0}


def price(ctx):
    order = ctx.input
    total = round(PRICES[order["item"]] * order["qty"], 2)
    ctx.progress(100, f"priced at {total}")
    return {**order, "total": total}


def reserve(ctx):
    order = ctx.input
    return {**order, "reserved": order["qty"] <= 10}


def confirm(ctx):
    ctx.vars["confirmed_by"] = "app"
    return {"order": ctx.input["id"], "confirmed": True, "total": ctx.input["total"]}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).parent))    # so that "app:price" imports this module
    db = argv[1] if len(argv) > 1 else str(Path(tempfile.mkdtemp()) / "orders.db")
    engine = Engine(db)
    engine.register(WORKFLOW)
    orders = [{"id": 1, "item": "widget", "qty": 4}, {"id": 2, "item": "gadget", "qty": 20},
              {"id": 3, "item": "gadget", "qty": 1}]
    seen = []
    unsubscribe = engine.subscribe(lambda e: seen.append(e["type"]))
    with engine.worker(concurrency=4):
        run_ids = [engine.start("orders", o, idempotency_key=f"order-{o['id']}") for o in orders]
        runs = [engine.wait(r, timeout=60) for r in run_ids]
    unsubscribe()
    for order, run in zip(orders, runs):
        print(f"order {order['id']}: {run.status}  outputs={run.outputs}")
    print(f"{len(seen)} events seen; database: {db}")
    engine.close()
    return 0 if all(r.status == "completed" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
