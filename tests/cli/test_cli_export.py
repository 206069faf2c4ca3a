"""export and import through the CLI, and imports of damaged export files."""

from __future__ import annotations

import copy
import json

import pytest


@pytest.fixture
def exported(invoke, chain, tmp_path):
    """A completed run exported to a file: (run id, the export as a dict)."""
    out = json.loads(invoke("run", str(chain), "--input", "x=1", "--json").stdout)
    run_id = out["run_id"]
    path = tmp_path / "run.json"
    assert invoke("export", run_id, "--output", str(path)).exit_code == 0
    return run_id, json.loads(path.read_text(encoding="utf-8"))


def test_export_then_import_into_another_database(invoke, exported, tmp_path):
    run_id, doc = exported
    path = tmp_path / "again.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    other = tmp_path / "other.db"
    result = invoke("import", str(path), db_path=other)
    assert result.exit_code == 0 and result.stdout.strip() == run_id
    status = json.loads(invoke("status", run_id, "--json", db_path=other).stdout)
    assert status["status"] == "completed"


@pytest.mark.parametrize("where", ["missing-folder/x.json", "file-not-folder/x.json"])
def test_export_to_a_path_that_cannot_be_written_is_one_line(invoke, exported, tmp_path, where):
    run_id, _doc = exported
    (tmp_path / "file-not-folder").write_text("x")
    target = tmp_path / where
    result = invoke("export", run_id, "--output", str(target))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and f"--output {target}: cannot write it" in result.stderr
    assert "internal error" not in result.stderr


def _damage(doc, how):
    doc = copy.deepcopy(doc)
    if how == "definition not json":
        doc["workflows"][0]["definition"] = "{not json"
    elif how == "definition does not load":
        doc["workflows"][0]["definition"] = json.dumps({"workflowId": "chain", "nodes": []})
    elif how == "inputs not json":
        doc["runs"][0]["inputs"] = "{bad"
    elif how == "no runs":
        del doc["runs"]
    elif how == "rows not a list":
        doc["node_instances"] = "nodes"
    elif how == "row of another run":
        doc["node_instances"][0]["run_id"] = "someone-else"
    elif how == "bad status":
        doc["node_instances"][0]["status"] = "sleeping"
    elif how == "unknown column":
        doc["messages"][0]["colour"] = "blue"
    elif how == "runId not exported":
        doc["runId"] = "different"
    elif how == "nested value":
        doc["runs"][0]["priority"] = {"high": True}
    return doc


@pytest.mark.parametrize("how, names", [
    ("definition not json", "workflows[0].definition: not JSON"),
    ("definition does not load", "workflows[0].definition:"),
    ("inputs not json", "runs[0].inputs: not JSON"),
    ("no runs", "runs: missing"),
    ("rows not a list", "node_instances: missing, or not a list"),
    ("row of another run", "node_instances[0].run_id: run 'someone-else' is not in the export"),
    ("bad status", "node_instances[0].status: 'sleeping' is not one of"),
    ("unknown column", "messages[0]: unknown field 'colour'"),
    ("runId not exported", "runId: 'different' is not among the exported runs"),
    ("nested value", "runs[0].priority: dict where a text or number belongs"),
])
def test_a_damaged_export_is_refused_with_the_field_and_nothing_is_stored(invoke, exported, tmp_path,
                                                                          how, names):
    _, doc = exported
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(_damage(doc, how)), encoding="utf-8")
    other = tmp_path / "other.db"
    invoke("workflows", db_path=other)                 # an empty durableflow database
    result = invoke("import", str(path), db_path=other)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and names in lines[0], result.stderr
    assert "internal error" not in result.stderr
    assert json.loads(invoke("runs", "--json", db_path=other).stdout) == []
