"""An orders ETL written with the builder: the same definition a YAML file would hold.

    python examples/python-authored/etl.py [DATABASE]     run it in-process, print the outcome
    python examples/python-authored/etl.py --save FILE    write it as YAML (or .json) for the CLI:
        PYTHONPATH=examples/python-authored durableflow run FILE

fetch (Shell) -> parse (Python) -> any_orders (IfElse) -true-> score_each (ForEach, a Body per
order) -> report, which joins the parsed day and the scores under two names; -false-> nothing
to do; a failed fetch goes to alert.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))   # workers import the nodes' module by name: "steps:parse"

import steps  # noqa: E402

from durableflow import Body, Defaults, Engine, Retry, Workflow  # noqa: E402


def build() -> Workflow:
    wf = Workflow("orders-etl", name="Orders ETL", timeout="5m", variables={"minAmount": 10},
                  defaults=Defaults(timeout="1m"),
                  inputs_schema={"type": "object", "properties": {"day": {"type": "string"}}})
    fetch = wf.shell("fetch", script_path="fetch.sh", output_format="json",
                     retry=Retry.fixed(2, delay="100ms", retry_on=[75]))   # exit 75: try again
    parse = wf.python("parse", steps.parse,
                      retry=Retry.exponential(3, initial_delay="50ms", retry_on=[TimeoutError]))
    any_orders = wf.if_else("any_orders", "len(input.orders) > 0")

    per_order = Body()
    per_order.python("score", steps.score)
    score_each = wf.for_each("score_each", "input.orders", per_order, max_parallelism=4)

    report = wf.python("report", steps.report, priority="high")
    nothing = wf.noop("nothing_to_do")
    alert = wf.python("alert", steps.alert)

    fetch >> parse >> any_orders
    any_orders.on("true") >> score_each >> report.input("scores")
    parse >> report.input("parsed")
    any_orders.on("false") >> nothing
    fetch.on_fail >> alert
    return wf


def main(argv: list[str]) -> int:
    wf = build()
    if len(argv) > 2 and argv[1] == "--save":
        print(wf.save(argv[2]))
        return 0
    db = argv[1] if len(argv) > 1 else str(Path(tempfile.mkdtemp()) / "etl.db")
    with Engine(db) as engine:
        run = engine.execute(wf, {"day": "2026-11-27"}, timeout=60)
    print(f"{run.workflow_id}: {run.status}")
    for instance in run.nodes:
        print(f"  {instance.node_id:<14} {instance.status}")
    print(f"report: {run.outputs.get('report') if run.outputs else None}")
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
