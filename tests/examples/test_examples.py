"""Every example runs, through the real CLI or the API, and does what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from durableflow import Engine

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def cli(db: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


@pytest.mark.slow
def test_data_pipeline_fetches_processes_and_saves_real_files(tmp_path):
    out = tmp_path / "out"
    done = cli(tmp_path / "p.db", "run", "examples/data-pipeline/pipeline.yaml",
               "--input", "day=2026-11-27", "--input", f"outDir={out}", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "completed"
    report = json.loads((out / "report-2026-11-27.json").read_text())
    # orders.csv: amounts under minAmount (10) are dropped, the rest totalled per customer.
    assert report == {"day": "2026-11-27", "rows": 5,
                      "totals": {"acme": 162.5, "globex": 99.99, "initech": 75.25}}
    assert (out / "orders-2026-11-27.csv").exists()
    assert run["outputs"]["save"]["customers"] == 3


def test_data_pipeline_refuses_inputs_its_schema_rejects(tmp_path):
    done = cli(tmp_path / "p.db", "run", "examples/data-pipeline/pipeline.yaml", "--input", "day=yesterday")
    assert done.returncode == 2
    assert "day" in done.stderr and "does not match" in done.stderr


def test_fan_out_fan_in_merges_every_branch(tmp_path):
    engine = Engine(tmp_path / "f.db")
    run = engine.execute(EXAMPLES / "fan-out-fan-in" / "fanout.yaml",
                         {"words": ["ant", "bee", "cat", "dog", "eel", "fox"]}, timeout=60)
    engine.close()
    assert run.status == "completed", run.error
    merged = run.outputs["merge"]
    assert merged["scores"] == {"ant": 35, "bee": 12, "cat": 24, "dog": 26, "eel": 22, "fox": 45}
    assert merged["best"] == "fox"
    assert {n.node_id for n in run.nodes} == {"split", "score_a", "score_b", "score_c", "merge"}


@pytest.mark.slow
def test_fail_edge_handles_the_declined_charge(tmp_path):
    done = cli(tmp_path / "e.db", "run", "examples/error-handling/fail-edge.yaml", "--input", "order=7", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "completed"
    handled = run["outputs"]["refund_and_notify"]
    assert handled["handled"] == "charge" and handled["type"] == "ExitCode"
    assert "card declined" in handled["reason"]
    statuses = {n["node_id"]: n["status"] for n in run["nodes"]}
    assert statuses == {"charge": "failed", "ship": "skipped", "refund_and_notify": "completed"}


@pytest.mark.slow
def test_the_embedded_program_runs_its_orders(tmp_path):
    db = tmp_path / "orders.db"
    done = subprocess.run([sys.executable, str(EXAMPLES / "embedded" / "app.py"), str(db)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "order 1: completed" in done.stdout and "'confirmed': True" in done.stdout
    # Run again: the idempotency keys return the finished runs instead of redoing them.
    again = subprocess.run([sys.executable, str(EXAMPLES / "embedded" / "app.py"), str(db)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    engine = Engine(db)
    assert len(engine.runs()) == 3
    engine.close()


STAND_IN = """#!{python}
# A stand-in for {name}: records its argv, answers with JSON on stdout.
import json, sys
data = sys.stdin.read()
print(json.dumps({{"program": "{name}", "argv": sys.argv[1:], "stdin": data}}))
"""


def test_original_sample_names_what_is_missing_then_passes_with_the_programs(tmp_path):
    sample = "examples/original-sample/pipeline.yaml"
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    missing = cli(tmp_path / "x.db", "validate", sample, env=env)
    assert missing.returncode == 2
    assert "'pwsh' on PATH" in missing.stderr and "'dotnet' on PATH" in missing.stderr
    assert "node 'fetch'" in missing.stderr and "node 'process'" in missing.stderr

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pwsh", "dotnet"):
        path = bin_dir / name
        path.write_text(STAND_IN.format(python=sys.executable, name=name))
        path.chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    ok = cli(tmp_path / "x.db", "validate", sample, env=env)
    assert ok.returncode == 0, ok.stderr
    ran = cli(tmp_path / "x.db", "run", sample, "--input", "day=1", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "completed"
    stdout = json.loads(run["outputs"]["save"]["stdout"])
    assert stdout["program"] == "dotnet" and stdout["argv"][0] == "script"
    assert stdout["argv"][1].endswith("scripts/save.csx")
