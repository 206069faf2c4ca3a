"""What a definition may say about limits: impossible settings are refused with the node and
field named; one rate-limit or breaker key declared with other settings by two workflows is
refused at register, naming both; limits load without a "not enforced" warning."""

from __future__ import annotations

import pytest
from df_it_support import py, wf

from durableflow.definitions import load_definition
from durableflow.errors import ValidationError


@pytest.mark.parametrize("keys, message", [
    ({"circuitBreaker": {"failureThreshold": 1.5}},
     "node 'a': field 'circuitBreaker.failureThreshold': 1.5 is greater than the maximum of 1"),
    ({"circuitBreaker": {"failureThreshold": -0.1}},
     "node 'a': field 'circuitBreaker.failureThreshold': -0.1 is less than or equal to the minimum of 0"),
    ({"circuitBreaker": {"window": "0s"}}, "node 'a': field 'circuitBreaker.window': '0s' must be longer than zero"),
    ({"rateLimit": {"rate": 0}}, "node 'a': field 'rateLimit.rate': 0 is less than or equal to the minimum of 0"),
    ({"rateLimit": {"rate": 1, "per": 0}}, "node 'a': field 'rateLimit.per': 0 must be longer than zero"),
    ({"circuitBreaker": {}, "fallbackNodeId": "ghost"}, "node 'a': field 'fallbackNodeId': unknown node 'ghost'"),
    ({"concurrencyKey": "api"},
     "node 'a': field 'concurrencyKey': needs maxConcurrentExecutions (how many may run at once)"),
    ({"maxConcurrentExecutions": 1, "concurrencyKey": "${ input.customer + }"}, "node 'a': field 'concurrencyKey'"),
    ({"maxWait": "1m"}, "node 'a': field 'maxWait': bounds a wait for maxConcurrentExecutions, rateLimit or "
                        "resources; the node has none"),
    ({"resources": {"cpu": 0}}, "node 'a': field 'resources.cpu': 0 is less than or equal to the minimum of 0"),
])
def test_settings_that_cannot_work_are_refused_naming_node_and_field(keys, message):
    with pytest.raises(ValidationError) as caught:
        load_definition(wf("bad", {"nodeId": "a", "runtimeType": "Noop", **keys}))
    assert message in str(caught.value)


def test_one_rate_key_with_two_settings_is_refused_at_register_naming_both(engine):
    engine.register(wf("orders", py("sync", rateLimit={"key": "crm", "rate": 5, "per": "1s"})))
    with pytest.raises(ValidationError) as caught:
        engine.register(wf("invoices", py("push", rateLimit={"key": "crm", "rate": 50, "per": "1s"})))
    assert str(caught.value) == (
        "workflow 'invoices': node 'push': field 'rateLimit': key 'crm' is declared by orders:sync with "
        "rate 5 per 1s, burst 1; here with rate 50 per 1s, burst 1 (one key, one setting: give it another "
        "key, or the same settings)")
    assert [w["workflow_id"] for w in engine.workflows()] == ["orders"]   # nothing stored
    # The same settings are fine, and the workflow that declared a key may change it.
    engine.register(wf("invoices", py("push", rateLimit={"key": "crm", "rate": 5, "per": "1s"})))
    engine.register(wf("orders", py("sync", rateLimit={"key": "crm", "rate": 8, "per": "1s"})))


def test_one_breaker_key_with_two_settings_is_refused_at_register(engine):
    engine.register(wf("orders", py("charge", circuitBreaker={"key": "pay", "minimumCalls": 3})))
    with pytest.raises(ValidationError, match="key 'pay' is declared by orders:charge with failureThreshold "
                                              "0.5, minimumCalls 3, window 60s, openDuration 30s, "
                                              "halfOpenSuccesses 1; here with .*minimumCalls 10"):
        engine.register(wf("refunds", py("refund", circuitBreaker={"key": "pay", "minimumCalls": 10})))
