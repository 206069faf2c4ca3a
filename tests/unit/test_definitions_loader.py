"""Malformed and hostile files: one clean line naming the file, never a traceback or a hang."""

from __future__ import annotations

import json

import pytest

from durableflow.definitions import load_definition, load_definition_text
from durableflow.definitions.loader import MAX_BYTES, MAX_DEPTH, parse_json, parse_yaml
from durableflow.errors import DefinitionError, ValidationError

GOOD_YAML = "workflowId: wf\nnodes:\n  - nodeId: a\n    runtimeType: Noop\n"


def refused(kit, text, name="wf.yaml") -> str:
    kit.write(text, name)
    with pytest.raises(DefinitionError) as info:
        load_definition(name)
    assert not isinstance(info.value, ValidationError)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name}: "), message
    return message


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['echo hacked']",
    "!!python/name:os.system",
    "!!python/object:collections.OrderedDict {}",
])
def test_python_tags_are_refused(kit, tag):
    message = refused(kit, GOOD_YAML + f"variables:\n  x: {tag}\n")
    assert "line 6: tag '!!python/" in message and "is not allowed" in message


@pytest.mark.parametrize("tag", ["!!set {a}", "!!binary aGk=", "!!timestamp 2026-01-01", "!Ref x"])
def test_other_object_tags_are_refused(kit, tag):
    assert "is not allowed" in refused(kit, GOOD_YAML + f"variables:\n  x: {tag}\n")


def test_alias_bomb_is_refused(kit):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = GOOD_YAML + "variables:\n" + "".join(f"  {line}\n" for line in lines)
    assert "alias bomb" in refused(kit, text)


def test_a_few_aliases_and_merge_keys_are_fine(kit):
    text = ("workflowId: wf\nx-retry: &retry {strategy: fixed, maxAttempts: 3}\nnodes:\n"
            "  - nodeId: a\n    runtimeType: Noop\n    retry: *retry\n"
            "  - {<<: {nodeId: b, runtimeType: Noop}, nodeId: c}\n")
    defn = kit.load(text)
    assert defn.node("a").retry.max_attempts == 3
    assert [n.node_id for n in defn.nodes] == ["a", "c"]


def test_duplicate_yaml_key(kit):
    message = refused(kit, GOOD_YAML + "    runtimeType: Python\n")
    assert message == "wf.yaml: line 5: duplicate key 'runtimeType'"


def test_duplicate_json_key(kit):
    text = '{"workflowId": "wf", "nodes": [{"nodeId": "a", "nodeId": "b", "runtimeType": "Noop"}]}'
    assert refused(kit, text, "wf.json") == "wf.json: duplicate key 'nodeId'"


def test_file_over_the_size_cap_is_refused_before_reading(kit):
    path = kit.folder / "big.yaml"
    with open(path, "wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: no 5 MB written
    with pytest.raises(DefinitionError, match=r"^big.yaml: file is \d+ bytes, over the 5 MB limit$"):
        load_definition("big.yaml")


@pytest.mark.parametrize("text", ["[" * 50_000 + "]" * 50_000,
                                  "".join("  " * i + "a:\n" for i in range(MAX_DEPTH + 5)),
                                  "- " * 5000 + "x\n"])
def test_deep_yaml_is_refused(kit, text):
    assert f"nested deeper than {MAX_DEPTH} levels" in refused(kit, text)


def test_deep_json_is_refused(kit):
    text = '{"workflowId": "wf", "variables": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert f"nested deeper than {MAX_DEPTH} levels" in refused(kit, text, "wf.json")


def test_brackets_inside_json_strings_do_not_count(kit):
    text = json.dumps({"workflowId": "wf", "description": "[" * 500 + '\\"{' * 300,
                       "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]})
    assert kit.load(text, "wf.json").description.startswith("[[[")


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1.0e+999"])
def test_yaml_nan_and_infinity_are_refused(kit, value):
    assert "numbers must be finite" in refused(kit, GOOD_YAML + f"variables: {{x: {value}}}\n")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_json_nan_and_infinity_are_refused(kit, value):
    text = '{"workflowId": "wf", "variables": {"x": ' + value + '}, "nodes": []}'
    message = refused(kit, text, "wf.json")
    assert "not allowed" in message or "out of range" in message


def test_dict_input_with_nan_is_refused():
    with pytest.raises(DefinitionError, match="numbers must be finite"):
        load_definition({"workflowId": "wf", "variables": {"x": float("nan")}, "nodes": []})


def test_dict_input_with_objects_is_refused():
    with pytest.raises(DefinitionError, match="object is not JSON data"):
        load_definition({"workflowId": "wf", "variables": {"x": object()}, "nodes": []})


def test_yaml_syntax_error_is_one_line(kit):
    message = refused(kit, "workflowId: wf\nnodes: [a, b\nc: d\n")
    assert message.startswith("wf.yaml: line 3, column 2: YAML syntax error:")


def test_json_syntax_error_is_one_line(kit):
    assert refused(kit, '{"workflowId": }', "wf.json") == \
        "wf.json: line 1, column 16: JSON syntax error: Expecting value"


def test_not_utf8(kit):
    assert refused(kit, b"workflowId: \xff\xfe\n") == \
        "wf.yaml: not UTF-8 text (byte 0xff at offset 12)"


def test_control_characters(kit):
    assert "YAML syntax error: unacceptable character" in refused(kit, "workflowId: a\x00b\n")


def test_several_documents(kit):
    assert "more than one YAML document" in refused(kit, GOOD_YAML + "---\n" + GOOD_YAML)


def test_non_string_keys(kit):
    assert refused(kit, GOOD_YAML + "variables: {1: one}\n") == \
        "wf.yaml: line 5: key 1 is not a string (quote it)"


def test_empty_file(kit):
    assert refused(kit, "") == "wf.yaml: the definition is empty"


def test_missing_file_and_directory(kit):
    with pytest.raises(DefinitionError, match=r"^nope.yaml: file not found$"):
        load_definition("nope.yaml")
    (kit.folder / "adir.yaml").mkdir()
    with pytest.raises(DefinitionError, match=r"^adir.yaml: is a directory"):
        load_definition("adir.yaml")


def test_byte_order_mark_and_dates_stay_plain(kit):
    text = "\ufeff" + GOOD_YAML + "variables: {day: 2026-11-27, at: 2026-11-27T09:00:00Z}\n"
    defn = kit.load(text)
    assert defn.variables == {"day": "2026-11-27", "at": "2026-11-27T09:00:00Z"}


def test_unknown_extension_is_guessed_from_content(kit):
    assert kit.load(GOOD_YAML, "wf.workflow").workflow_id == "wf"
    as_json = json.dumps({"workflowId": "j", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]})
    assert kit.load(as_json, "wf.txt").workflow_id == "j"


def test_text_loading_uses_the_same_checks():
    assert load_definition_text(GOOD_YAML).workflow_id == "wf"
    with pytest.raises(DefinitionError, match=r"^stdin: line 2: duplicate key 'a'$"):
        load_definition_text("a: 1\na: 2\n", name="stdin")


def test_parsers_return_only_json_types():
    assert parse_yaml("a: [1, 2.5, true, null, '3', 0x10, 1_000]") == \
        {"a": [1, 2.5, True, None, "3", 16, 1000]}
    assert parse_json('{"a": [1, 2.5, true, null]}') == {"a": [1, 2.5, True, None]}
