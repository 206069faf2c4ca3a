"""Defects in loading and checking definitions: huge integers, lone surrogates, the id message,
`maxStreamBytes`, UTF-8 in what is stored, and the `__main__` callable warning.

Real files and real subprocesses (the CLI, a script run as __main__); nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from durableflow.definitions import (
    definition_checksum, dump_json, dump_yaml, load_definition, load_definition_text,
    save_definition, storable, to_dict)
from durableflow.errors import DefinitionError

REPO = Path(__file__).resolve().parents[2]
DIGITS = "1" * 5000
NOOP = {"nodeId": "a", "runtimeType": "Noop"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DURABLEFLOW_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "durableflow", "--db", str(cwd / "x.db"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def one_line_error(text: str) -> str:
    lines = text.strip("\n").split("\n")
    assert len(lines) == 1, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert "set_int_max_str_digits" not in text, text   # Python's hint means nothing to a user
    assert len(lines[0]) < 300, lines[0]
    return lines[0]


# --- 1. a 5,000-digit integer ----------------------------------------------------------------

HUGE_FILES = {
    "big.json": '{"workflowId": "w",\n "variables": {"big": %s},\n "nodes": [{"nodeId": "a", '
                '"runtimeType": "Noop"}]}\n' % DIGITS,
    "big.yaml": "workflowId: w\nvariables:\n  big: %s\nnodes:\n  - nodeId: a\n"
                "    runtimeType: Noop\n" % DIGITS,
    "bigneg.json": '{"workflowId": "w", "nodes": [{"nodeId": "a", "runtimeType": "Noop", '
                   '"x-n": -%s}]}' % DIGITS,
}


@pytest.mark.parametrize("name", sorted(HUGE_FILES))
def test_a_5000_digit_integer_is_a_one_line_definition_error(tmp_path, name):
    path = tmp_path / name
    path.write_text(HUGE_FILES[name], encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    message = one_line_error(str(info.value))
    assert message.startswith(f"{path}: ")
    assert "5000 digits" in message
    # where: the line (YAML) or the key path (JSON) of the value
    assert ("line 3" in message) if name == "big.yaml" else ("variables.big" in message
                                                             or "x-n" in message)


@pytest.mark.parametrize("name", sorted(HUGE_FILES))
def test_cli_validate_of_a_5000_digit_integer_exits_2_with_one_line(tmp_path, name):
    (tmp_path / name).write_text(HUGE_FILES[name], encoding="utf-8")
    done = cli("validate", name, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    message = one_line_error(done.stderr)
    assert message.startswith(f"{name}: ") and "5000 digits" in message


def test_text_and_dict_definitions_with_huge_integers_get_the_same_error():
    with pytest.raises(DefinitionError) as info:
        load_definition_text(HUGE_FILES["big.json"], format="json", name="inline.json")
    assert "5000 digits" in one_line_error(str(info.value))
    with pytest.raises(DefinitionError) as info:
        load_definition({"workflowId": "w", "variables": {"big": 10 ** 5000}, "nodes": [NOOP]})
    message = one_line_error(str(info.value))
    assert "variables.big" in message and "digits" in message


def test_a_huge_float_is_named_briefly(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"workflowId": "w", "variables": {"f": %s.5}, "nodes": [%s]}'
                    % (DIGITS, json.dumps(NOOP)), encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    assert "out of range" in one_line_error(str(info.value))
    path = tmp_path / "f.yaml"
    path.write_text("workflowId: w\nvariables: {f: %s.5e+400}\nnodes: [%s]\n"
                    % (DIGITS, json.dumps(NOOP)), encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    assert "finite" in one_line_error(str(info.value))


def test_integers_up_to_the_limit_still_load_and_store(tmp_path):
    digits = "9" * 4000
    path = tmp_path / "ok.json"
    path.write_text('{"workflowId": "w", "variables": {"n": %s}, "nodes": [%s]}'
                    % (digits, json.dumps(NOOP)), encoding="utf-8")
    defn = load_definition(path)
    assert defn.variables["n"] == int(digits)
    storable(defn)   # json.dumps of it works too


def test_a_lone_surrogate_is_refused_at_load_not_when_stored(tmp_path):
    # JSON and YAML both spell one with an escape; SQLite cannot store it as UTF-8 text.
    files = {"s.json": '{"workflowId": "w", "workflowName": "\\ud800x", "nodes": [%s]}'
                       % json.dumps(NOOP),
             "s.yaml": 'workflowId: w\nworkflowName: "\\ud800x"\nnodes: [%s]\n' % json.dumps(NOOP)}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(DefinitionError) as info:
            load_definition(tmp_path / name)
        message = one_line_error(str(info.value))
        assert "workflowName" in message and "surrogate" in message, message
        done = cli("validate", name, cwd=tmp_path)
        assert done.returncode == 2 and "surrogate" in one_line_error(done.stderr)


# --- 5. the id message says ASCII ------------------------------------------------------------

def test_the_id_error_says_ascii_letters(kit):
    line = kit.error(kit.workflow(kit.node("café", "Noop")), "nodeId")
    assert "ASCII letters" in line, line
    line = kit.error({"workflowId": "wörk", "nodes": [NOOP]}, "workflowId")
    assert "ASCII letters" in line, line


# --- 2. maxStreamBytes in the definition ------------------------------------------------------

def shell(**keys) -> dict:
    return {"nodeId": "s", "runtimeType": "Shell", "command": ["true"], **keys}


def test_max_stream_bytes_loads_and_round_trips(kit, tmp_path):
    data = kit.workflow(shell(maxStreamBytes=3_000_000), kit.node("p", "PowerShell", script="1",
                                                                  maxStreamBytes=5))
    defn = kit.load(data)
    assert defn.node("s").max_stream_bytes == 3_000_000
    assert defn.node("p").max_stream_bytes == 5
    assert "maxStreamBytes" not in defn.node("s").config
    for suffix in ("yaml", "json"):
        saved = save_definition(defn, tmp_path / f"again.{suffix}")
        again = load_definition(saved, check_programs=False)
        assert again == defn
        raw = (yaml.safe_load if suffix == "yaml" else json.loads)(saved.read_text("utf-8"))
        assert raw["nodes"][0]["maxStreamBytes"] == 3_000_000
    # not set: not written, so a stored definition keeps its checksum
    plain = kit.load(kit.workflow(shell()))
    assert plain.node("s").max_stream_bytes is None
    assert "maxStreamBytes" not in dump_json(plain) and "maxStreamBytes" not in dump_yaml(plain)


@pytest.mark.parametrize("value", [0, -1, "4MB", 1.5, True, None, [1]])
def test_a_bad_max_stream_bytes_is_one_line_naming_node_and_field(kit, value):
    line = kit.error(kit.workflow(shell(maxStreamBytes=value)), "node 's'", "maxStreamBytes")
    assert "whole number of bytes" in line, line


def test_max_stream_bytes_only_applies_to_external_programs(kit):
    line = kit.error(kit.workflow(kit.node("a", "Noop", maxStreamBytes=10)), "maxStreamBytes")
    assert "does not apply to runtime type Noop" in line


# --- 7. stored JSON is UTF-8, checksums unchanged ---------------------------------------------

def test_stored_definition_is_utf8_and_ascii_checksums_do_not_move(kit):
    defn = kit.load(kit.workflow(kit.node("a", "Noop", name="Café 😀"), workflowName="Crème"))
    checksum, text = storable(defn)
    assert "Café 😀" in text and "Crème" in text and "\\u00e9" not in text
    # The checksum has always been the sha256 of the UTF-8 canonical form: an existing stored
    # workflow, ASCII or not, registers as the same version.
    bare = dataclasses.replace(defn, source_path=None, version=None)
    canonical = json.dumps(to_dict(bare), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    assert checksum == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    ascii_only = kit.load(kit.workflow(kit.node("a", "Noop")))
    assert definition_checksum(ascii_only) == hashlib.sha256(
        b'{"nodes":[{"nodeId":"a","runtimeType":"Noop"}],"workflowId":"wf"}').hexdigest()


def test_engine_stores_definition_and_node_output_as_utf8(tmp_path):
    from durableflow import Engine
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump({"workflowId": "utf", "workflowName": "Données é", "nodes": [
        {"nodeId": "p", "runtimeType": "Python", "script": "output = {'mot': 'café 😀'}"}]},
        allow_unicode=True), encoding="utf-8")
    engine = Engine(tmp_path / "app.db")
    try:
        run = engine.execute(path)
        assert run.status == "completed", run.error
    finally:
        engine.close(timeout=30)
    db = sqlite3.connect(tmp_path / "app.db")
    try:
        (definition,) = db.execute("SELECT definition FROM workflows").fetchone()
        (output,) = db.execute("SELECT output FROM node_instances WHERE node_id = 'p'").fetchone()
    finally:
        db.close()
    assert "Données é" in definition
    assert "café 😀" in output and "\\u" not in output


# --- 4. a __main__ callable -------------------------------------------------------------------

MAIN_SCRIPT = textwrap.dedent("""
    import json, logging, sys
    from durableflow import Engine

    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger().addHandler(Keep())

    def f(ctx):
        return {"doubled": ctx.input * 2 if isinstance(ctx.input, int) else 42}

    definition = {"workflowId": "main-callable", "nodes": [
        {"nodeId": "f", "runtimeType": "Python", "callable": "__main__:f"}]}
    engine = Engine(sys.argv[1])
    try:
        run = engine.execute(definition)
    finally:
        engine.close(timeout=30)
    print(json.dumps({"status": run.status, "outputs": run.outputs, "warnings": warnings}))
""")


def test_a_callable_defined_in_the_running_main_gets_no_warning(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(MAIN_SCRIPT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "app.db")], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "completed"
    assert report["outputs"] == {"f": {"doubled": 42}}
    assert not [w for w in report["warnings"] if "callable" in w], report["warnings"]


def test_validate_of_a_main_callable_says_other_processes_cannot_import_it(tmp_path):
    (tmp_path / "wf.json").write_text(json.dumps({"workflowId": "w", "nodes": [
        {"nodeId": "f", "runtimeType": "Python", "callable": "__main__:f"}]}), encoding="utf-8")
    done = cli("validate", "wf.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "callable" in line]
    assert len(warnings) == 1, done.stderr
    assert "not importable" not in warnings[0]
    assert "'f' is not defined in __main__ here" in warnings[0]
    assert "workers in other processes cannot import __main__ callables" in warnings[0]


def test_notices_for_main_callables_in_this_process():
    from durableflow.definitions.notices import notices
    main = sys.modules["__main__"]
    name = "_durableflow_test_callable"
    setattr(main, name, lambda ctx: 1)
    try:
        found = load_definition({"workflowId": "w", "nodes": [
            {"nodeId": "f", "runtimeType": "Python", "callable": f"__main__:{name}"}]})
        assert notices(found, "w") == []
        # isolation: process runs the body in a child interpreter, whose __main__ is not ours
        isolated = load_definition({"workflowId": "w", "nodes": [
            {"nodeId": "f", "runtimeType": "Python", "callable": f"__main__:{name}",
             "isolation": "process"}]})
        (warning,) = notices(isolated, "w")
        assert "cannot import __main__ callables" in warning and "isolation" in warning
    finally:
        delattr(main, name)
    # a real module, present or not
    ok = load_definition({"workflowId": "w", "nodes": [
        {"nodeId": "f", "runtimeType": "Python", "callable": "json:dumps"}]})
    assert notices(ok, "w") == []
    missing = load_definition({"workflowId": "w", "nodes": [
        {"nodeId": "f", "runtimeType": "Python", "callable": "no_such_module_df:f"}]})
    (warning,) = notices(missing, "w")
    assert "not importable here" in warning
