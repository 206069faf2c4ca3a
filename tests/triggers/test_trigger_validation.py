"""A Timer that cannot work fails validation naming the node and the field."""

from __future__ import annotations

import pytest

from durableflow.definitions import load_definition
from durableflow.errors import ValidationError


def timer(**config) -> dict:
    return {"workflowId": "t", "nodes": [{"nodeId": "tick", "runtimeType": "Timer", **config},
                                         {"nodeId": "work", "runtimeType": "Noop"}],
            "connections": [{"sourceNodeId": "tick", "targetNodeId": "work"}]}


@pytest.mark.parametrize("config, field, words", [
    ({"cron": "61 * * * *"}, "cron", "is not a cron expression"),
    ({"cron": "*/5 * * *"}, "cron", "is not a cron expression"),
    ({"cron": "*/5 * * * *", "timezone": "Mars/Olympus"}, "timezone", "unknown IANA time zone"),
    ({"interval": "0s"}, "interval", "longer than zero"),
    ({"interval": "10m", "overlap": "sometimes"}, "overlap", "sometimes"),
    ({"interval": "10m", "catchUp": "most"}, "catchUp", "most"),
    ({"interval": "10m", "misfireGrace": "soon"}, "misfireGrace", "soon"),
    ({"interval": "10m", "maxCatchUp": 0}, "maxCatchUp", "0"),
])
def test_a_timer_that_cannot_work_is_refused_naming_node_and_field(config, field, words):
    with pytest.raises(ValidationError) as err:
        load_definition(timer(**config))
    lines = [line for line in err.value.errors if f"field '{field}'" in line]
    assert lines and "node 'tick'" in lines[0] and words in lines[0], err.value.errors


def test_a_timer_with_an_incoming_connection_is_refused():
    wf = timer(interval="10m")
    wf["connections"].append({"sourceNodeId": "work", "targetNodeId": "tick"})
    wf["nodes"].append({"nodeId": "start", "runtimeType": "Noop"})
    wf["connections"].append({"sourceNodeId": "start", "targetNodeId": "work"})
    with pytest.raises(ValidationError, match="Timer node 'tick' is a trigger"):
        load_definition(wf)


def test_every_timer_key_loads():
    defn = load_definition(timer(cron="0 6 * * *", timezone="Europe/Berlin", catchUp="all",
                                 misfireGrace="5m", overlap="bufferOne", maxCatchUp=10))
    assert defn.node("tick").config["overlap"] == "bufferOne"
