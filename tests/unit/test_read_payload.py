"""A claimed node message's payload read with its input's JSON text kept (issue 12): the same
dict json.loads gives, and the text only when it is exactly the input's, as the engine wrote it."""

from __future__ import annotations

import json

import pytest

from durableflow.execution.attempts import _read_payload


@pytest.mark.parametrize("text, input_json", [
    ('{"input":{"a":[1,2]},"inputs":{"x":{"a":[1,2]}}}', '{"a":[1,2]}'),
    ('{"input":null,"inputs":{}}', "null"),
    ('{"input":7}', "7"),
    ('{"input":"s","inputs":{"k":"s"},"fallbackFor":"n"}', '"s"'),
    ('{"input":"caf\\u00e9 \\"q\\"","inputs":{}}', '"caf\\u00e9 \\"q\\""'),
    # Not as the engine writes it: read the long way, no text.
    ('{"input": 5}', None),
    ('{"input":1 , "inputs":{}}', None),
    ('{"inputs":{},"input":3}', None),
    ('{"input":1,"input":2}', None),
    ("{}", None),
])
def test_the_payload_reads_as_json_loads_and_keeps_the_inputs_text(text, input_json):
    payload, got = _read_payload(text)
    assert payload == json.loads(text)
    assert got == input_json
    if got is not None:
        assert json.loads(got) == payload["input"]


def test_no_payload_is_an_empty_one():
    assert _read_payload(None) == ({}, None) and _read_payload("") == ({}, None)
