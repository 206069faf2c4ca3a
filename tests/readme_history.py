"""What the README's history queries are tried on: a small real history, made by the engine
(tests/docs on SQLite, tests/postgres on a copy of it in PostgreSQL), and how a query is compared
with the engine's own statement."""

from __future__ import annotations

import re
from pathlib import Path

from durableflow import Engine


def make_history(db: Path, *, waiting: bool = False) -> str:
    """A completed run (one node retried), a failed one, one failed while another node waited for
    its retry, and with `waiting` one that no worker has taken yet. Returns the completed run's id."""
    engine = Engine(db)
    ok = {"workflowId": "ok", "nodes": [
        {"nodeId": "a", "runtimeType": "Python", "script": "output = {'rows': 2}"},
        {"nodeId": "b", "runtimeType": "Python",
         "script": "if ctx.attempt < 2:\n    raise TimeoutError('slow')\noutput = 1",
         "retry": {"strategy": "fixed", "maxAttempts": 2, "initialDelay": "10ms", "jitter": 0}}],
        "connections": [{"sourceNodeId": "a", "targetNodeId": "b"}]}
    bad = {"workflowId": "bad", "nodes": [{"nodeId": "x", "runtimeType": "Python", "script": "raise KeyError('k')"}]}
    # y fails first and waits for a retry when x fails the run: y's failed attempt is not why.
    retrying = {"workflowId": "retrying", "nodes": [
        {"nodeId": "x", "runtimeType": "Python", "script": "raise ValueError('bad input')"},
        {"nodeId": "y", "runtimeType": "Python", "script": "raise RuntimeError('transient')",
         "priority": "high",      # claimed before x, though x's rows come first
         "retry": {"strategy": "fixed", "maxAttempts": 3, "initialDelay": "5s", "jitter": 0}}]}
    try:
        good = engine.execute(ok, timeout=60)
        failed = engine.execute(bad, timeout=60)
        cut_short = engine.execute(retrying, timeout=60, concurrency=1)
        assert (good.status, failed.status, cut_short.status) == ("completed", "failed", "failed")
        assert [(n.node_id, n.attempt, n.status) for n in cut_short.nodes if n.node_id == "y"] == [
            ("y", 1, "failed"), ("y", 2, "cancelled")]
        if waiting:   # no worker takes it: the queue (query 7) has a ready message to show
            engine.start({"workflowId": "waits", "nodes": [
                {"nodeId": "w", "runtimeType": "Python", "script": "output = 1"}]})
    finally:
        engine.close()
    return good.run_id


def plain_sql(text: str) -> str:
    """A statement without its comments and layout."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    text = re.sub(r"\s+", " ", text).strip().rstrip(";").strip()
    return re.sub(r"\s*([(),])\s*", r"\1", text)
