"""What node bodies print never mixes into the command's own stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

NOISY = """workflowId: noisy
nodes:
  - nodeId: talk
    runtimeType: Python
    script: |
      print("hello from the node", chr(27) + "[31m")
      import sys
      sys.stdout.write("{not json\\n")
      output = {"said": "hello"}
"""


@pytest.mark.slow
def test_run_json_stays_json_when_a_node_prints(tmp_path):
    flow = tmp_path / "noisy.yaml"
    flow.write_text(NOISY)
    done = subprocess.run([sys.executable, "-m", "durableflow", "--db", str(tmp_path / "n.db"), "run",
                           str(flow), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["outputs"] == {"talk": {"said": "hello"}}
    assert "hello from the node" in done.stderr and "{not json" in done.stderr


def test_stats_counts_what_the_database_holds(tmp_path):
    from click.testing import CliRunner

    from durableflow import Engine
    from durableflow.cli import cli
    db = tmp_path / "s.db"
    engine = Engine(db)
    engine.execute({"workflowId": "s", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]}, timeout=30)
    engine.close()
    result = CliRunner().invoke(cli, ["--db", str(db), "stats", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["runs"]["completed"] == 1 and counts["node_instances"]["completed"] == 1
    assert counts["messages"] == {"ready": 0, "leased": 0, "acked": 1, "dead": 0}   # every status
    assert sum(counts["runs"].values()) == 1 and set(counts["runs"]) >= {"pending", "paused"}
    assert counts["workflows"] == 1
    assert counts["database_bytes"] > 0
    table = CliRunner().invoke(cli, ["--db", str(db), "stats"])
    assert table.exit_code == 0 and "runs:" in table.stdout
