"""Builder mistakes mypy must reject: each line marked `# expect: CODE` is one error of that code
(tests/authoring/test_typing.py runs mypy on this file). Never imported, never run."""

from __future__ import annotations

from typing import Any

from durableflow import Engine, NodeContext, Retry, Workflow, node, workflow


def transform(ctx: NodeContext) -> dict[str, Any]:
    return {}


@node  # expect: arg-type
def two_args(a: int, b: int) -> int:
    return a + b


wf = Workflow("mistakes")
fetch = wf.shell("fetch", ["python3", "fetch.py"])
process = wf.python("process", transform, retry=3)  # expect: arg-type
wf.python("urgent", transform, priority="urgent")  # expect: arg-type
wf.shell("typo", ["ls"], timout="1m")  # expect: call-arg
wf.python("joins", transform, join_mode="some")  # expect: arg-type
check = wf.if_else("check", "input.rows > 0")
check.on("yes") >> process  # expect: arg-type
fetch >> "process"  # expect: operator
Retry.exponential(max_attempts="5")  # expect: arg-type
wf.wait("pause", until=3600)  # expect: arg-type
Workflow("w", max_concurrency="4")  # expect: arg-type
Engine("x.db").register(42)  # expect: arg-type


@node
def step(ctx: NodeContext) -> int:
    return 1


@workflow
def traced(w: Workflow) -> None:
    first = step()
    step("first")  # expect: call-overload
    step(first, retry=Retry.none())  # expect: call-overload
    w.python("ok", step, isolation="fork")  # expect: arg-type
