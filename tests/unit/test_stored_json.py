"""storage.events.loads: stored JSON read back through the decoder's scanner, with json.loads's
results and errors."""

import json

import pytest

from durableflow.storage.events import dumps, loads

VALUES = [
    None, True, 0, -7, 1.5, 1e300, "", "é — 😀", "\ud800", [], {}, [1, [2, [3]]],
    {"input": {"x": 1}, "inputs": {"a": {"b": [None, "c"]}}}, {"k": "quote \" and \\ backslash"},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_what_dumps_wrote_reads_back_as_json_loads_reads_it(value):
    text = dumps(value)
    assert loads(text) == json.loads(text) == value


@pytest.mark.parametrize("text", [' {"a": 1}', '{"a": 1} ', "\n[1]\n", '{ "a" : [ 1 , 2 ] }'])
def test_text_with_spaces_around_it_is_read_the_long_way(text):
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a":1}x', "[1]]", "nul", "{'a': 1}", "1 2"])
def test_what_is_not_one_json_document_raises_as_json_loads_does(text):
    with pytest.raises(json.JSONDecodeError) as got:
        loads(text)
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    assert str(got.value) == str(expected.value)


def test_decoded_objects_are_not_shared_between_calls():
    text = '{"a":{"b":1}}'
    first, second = loads(text), loads(text)
    first["a"]["b"] = 2
    assert second == {"a": {"b": 1}}
