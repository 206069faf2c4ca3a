"""load(save(d)) == d, for YAML and JSON, over random valid definitions."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durableflow.definitions import (
    definition_checksum, dump_json, dump_yaml, load_definition, load_definition_text,
    save_definition, to_dict)

FIXTURES = Path(__file__).parent / "fixtures"

IDS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,11}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
SCALARS = st.none() | st.booleans() | st.integers(-10**20, 10**20) | \
    st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
DURATIONS = st.sampled_from(["500ms", "10s", "5m", "2h", "1d", "1h30m", 3, 0.25, "0.5"]) | \
    st.floats(0, 10**6, allow_nan=False)
RETRY = st.fixed_dictionaries({"strategy": st.sampled_from(["fixed", "linear", "exponential"])}, optional={
    "maxAttempts": st.integers(1, 10), "initialDelay": st.sampled_from(["1s", "100ms", 0.5]),
    "maxDelay": st.sampled_from(["10m", 3600]), "multiplier": st.floats(1, 5),
    "jitter": st.floats(0, 1), "retryOn": st.lists(st.sampled_from(["TimeoutError", 1, 2]),
                                                   max_size=2, unique=True)})
COMMON = {
    "name": TEXT, "timeout": DURATIONS, "retry": RETRY,
    "priority": st.sampled_from(["high", "normal", "low"]),
    # "each" lives in its own round trip below: random graphs would break its join rule.
    "joinMode": st.sampled_from(["all", "any"]),
    "inputs": st.dictionaries(TEXT, JSON | st.just("${ input.rows }"), max_size=3),
    "maxConcurrentExecutions": st.integers(1, 5), "concurrencyKey": IDS,
    "rateLimit": st.fixed_dictionaries({"rate": st.integers(1, 50)},
                                       optional={"per": DURATIONS.filter(lambda d: float(d) > 0 if not
                                                                         isinstance(d, str) else True),
                                                 "burst": st.integers(1, 9)}),
    "x-note": JSON,
}


def kind_keys(kind: str) -> st.SearchStrategy:
    extra = {
        "Python": {"script": TEXT.map(lambda s: f"output = {s!r}\n# more\n"),
                   "isolation": st.sampled_from(["thread", "process"])},
        "Shell": {"command": st.lists(TEXT.filter(bool), min_size=1, max_size=3),
                  "outputFormat": st.sampled_from(["text", "json"]),
                  "env": st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True),
                                         TEXT, max_size=2)},
        "Noop": {},
        "Wait": {"duration": DURATIONS},
        "WaitForSignal": {"signal": IDS},
        "IfElse": {"condition": st.sampled_from(["input.rows > 0", "len(inputs) == 2"])},
    }[kind]
    required = {k: v for k, v in extra.items() if k in ("script", "command", "duration", "signal",
                                                         "condition")}
    optional = {k: v for k, v in {**COMMON, **extra}.items() if k not in required}
    return st.fixed_dictionaries({"runtimeType": st.just(kind), **required}, optional=optional).map(_coherent)


def _coherent(node: dict) -> dict:
    """A concurrencyKey alone is refused (it names a limit without a size): give it one."""
    if "concurrencyKey" in node and "maxConcurrentExecutions" not in node:
        return {**node, "maxConcurrentExecutions": 1}
    return node


@st.composite
def definitions(draw) -> dict:
    ids = draw(st.lists(IDS, min_size=1, max_size=6, unique=True))
    kinds = ["Python", "Shell", "Noop", "Wait", "WaitForSignal", "IfElse"]
    nodes = [{"nodeId": node_id, **draw(kind_keys(draw(st.sampled_from(kinds)))),}
             for node_id in ids]
    connections, seen = [], set()
    for target in range(1, len(nodes)):  # edges only point forward: always acyclic
        keys: set[str] = set()   # an all-join keeps one input per key: two under one are refused
        for source in draw(st.lists(st.integers(0, target - 1), max_size=2, unique=True)):
            trigger = draw(st.sampled_from(["Complete", "Fail", "Any"]))
            conn = {"sourceNodeId": ids[source], "targetNodeId": ids[target],
                    "triggerMessageType": trigger}
            if nodes[source]["runtimeType"] == "IfElse" and trigger != "Fail":
                conn["sourcePort"] = draw(st.sampled_from(["true", "false"]))
            if draw(st.booleans()):
                conn["condition"] = "output.rows > vars.min"
            if draw(st.booleans()):
                conn["targetPort"] = draw(IDS)
            input_key = conn.get("targetPort", conn["sourceNodeId"])
            if input_key in keys:
                continue
            keys.add(input_key)
            key = tuple(sorted(conn.items()))
            if key not in seen:
                seen.add(key)
                connections.append(conn)
    top = draw(st.fixed_dictionaries({}, optional={
        "workflowName": TEXT, "version": st.integers(1, 99), "description": TEXT,
        "variables": st.dictionaries(TEXT, JSON, max_size=3), "maxConcurrency": st.integers(1, 8),
        "timeout": DURATIONS, "retryBudget": st.integers(0, 20),
        "defaults": st.fixed_dictionaries({}, optional={
            "timeout": DURATIONS, "priority": st.sampled_from(["high", "low"]), "retry": RETRY,
            "isolation": st.sampled_from(["thread", "process"])}),
        "inputsSchema": st.just({"type": "object"}), "x-owner": TEXT}))
    data = {"workflowId": draw(IDS), **top, "nodes": nodes}
    if connections:
        data["connections"] = connections
    return data


def _valid(data: dict, folder) -> dict:
    """Drop the combinations the validator rightly refuses (retries without a strategy...)."""
    for node in [*data["nodes"], data.get("defaults", {})]:
        retry = node.get("retry")
        if retry and retry.get("initialDelay") is not None and retry.get("maxDelay") is not None:
            retry.pop("maxDelay")
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=definitions())
def test_round_trip_yaml_and_json(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("rt")
    data = _valid(data, folder)
    defn = load_definition(data, base_dir=folder, check_programs=False)
    for name in ("wf.yaml", "wf.json"):
        path = save_definition(defn, folder / name)
        again = load_definition(path, check_programs=False)
        assert again == defn
        assert definition_checksum(again) == definition_checksum(defn)
    for text, fmt in ((dump_yaml(defn), "yaml"), (dump_json(defn), "json")):
        assert load_definition_text(text, format=fmt, base_dir=folder) == defn
    # the dict form is stable too: saving what was loaded from a save changes nothing
    assert to_dict(load_definition(to_dict(defn), base_dir=folder)) == to_dict(defn)


def test_saved_sample_keeps_its_shape(tmp_path, fake_programs):
    (tmp_path / "scripts").mkdir()
    for script in ("fetch.ps1", "process.csx", "save.csx"):
        (tmp_path / "scripts" / script).write_text("")
    source = tmp_path / "pipeline.yaml"
    source.write_text((FIXTURES / "original-sample.yaml").read_text())
    defn = load_definition(source)
    assert yaml.safe_load(dump_yaml(defn)) == yaml.safe_load(source.read_text())
    assert json.loads(dump_json(defn)) == json.loads((FIXTURES / "original-sample.json").read_text())


def test_defaults_are_written_once_and_node_keys_only_when_they_differ(tmp_path):
    data = {"workflowId": "wf", "defaults": {"timeout": "10m", "priority": "high"}, "nodes": [
        {"nodeId": "a", "runtimeType": "Noop"},
        {"nodeId": "b", "runtimeType": "Noop", "timeout": "1m30s", "priority": "low"}]}
    out = to_dict(load_definition(data))
    assert out["defaults"] == {"timeout": "10m", "priority": "high"}
    assert out["nodes"] == [{"nodeId": "a", "runtimeType": "Noop"},
                            {"nodeId": "b", "runtimeType": "Noop", "timeout": "90s",
                             "priority": "low"}]


def test_paths_are_saved_relative_to_the_target_folder(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.py").write_text("def run(ctx):\n    return 1\n")
    data = {"workflowId": "wf", "nodes": [
        {"nodeId": "p", "runtimeType": "Python", "scriptPath": "scripts/run.py"}]}
    defn = load_definition(data, base_dir=tmp_path)
    save_definition(defn, tmp_path / "wf.yaml")
    assert "scriptPath: scripts/run.py" in (tmp_path / "wf.yaml").read_text()
    (tmp_path / "sub").mkdir()
    save_definition(defn, tmp_path / "sub" / "wf.json")
    saved = json.loads((tmp_path / "sub" / "wf.json").read_text())
    assert saved["nodes"][0]["scriptPath"] == str(tmp_path / "scripts" / "run.py")
    assert load_definition(tmp_path / "sub" / "wf.json") == defn


def test_without_a_folder_paths_are_written_absolute(tmp_path):
    (tmp_path / "run.py").write_text("def run(ctx):\n    return 1\n")
    data = {"workflowId": "wf", "nodes": [
        {"nodeId": "p", "runtimeType": "Python", "scriptPath": "run.py", "workingDir": "."}]}
    defn = load_definition(data, base_dir=tmp_path)
    node = to_dict(defn)["nodes"][0]
    assert (node["scriptPath"], node["workingDir"]) == (str(tmp_path / "run.py"), str(tmp_path))
    assert load_definition(to_dict(defn)) == defn  # from any current directory


def test_checksum_follows_content():
    base = {"workflowId": "wf", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]}
    first = definition_checksum(load_definition(base))
    assert first == definition_checksum(load_definition(json.loads(json.dumps(base))))
    changed = {**base, "description": "now different"}
    assert definition_checksum(load_definition(changed)) != first
    assert len(first) == 64


def test_save_to_a_format_returns_text():
    defn = load_definition({"workflowId": "wf", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]})
    assert save_definition(defn, "json") == dump_json(defn)
    assert save_definition(defn, "yaml").startswith("workflowId: wf\n")


def test_round_trip_of_an_each_join(tmp_path):
    from durableflow.definitions import dump_json, dump_yaml, load_definition_text
    data = {"workflowId": "each", "nodes": [
        {"nodeId": "a", "runtimeType": "Noop"}, {"nodeId": "b", "runtimeType": "Noop"},
        {"nodeId": "c", "runtimeType": "Noop", "joinMode": "each"}],
        "connections": [{"sourceNodeId": "a", "targetNodeId": "c"},
                        {"sourceNodeId": "b", "targetNodeId": "c"}]}
    defn = load_definition(data, base_dir=tmp_path)
    assert load_definition_text(dump_yaml(defn), format="yaml", base_dir=tmp_path) == defn
    assert load_definition_text(dump_json(defn), format="json", base_dir=tmp_path) == defn
