"""The safe expression language: what works, what is refused at load time, what fails cleanly."""

from __future__ import annotations

import threading

import pytest

from durableflow.errors import ExpressionError
from durableflow.expressions import (
    compile_expression, compile_inputs, iter_templates, resolve_inputs, template_expression,
    validate_names)
from durableflow.model import freeze

NAMES = {
    "output": {"rows": 3, "items": [1, 2, 3], "status": "OK", "nested": {"deep": {"x": 7}}},
    "inputs": {"fetch": {"count": 10}},
    "vars": {"threshold": 2},
}


def ev(text, names=NAMES):
    return compile_expression(text).evaluate(names)


@pytest.mark.parametrize("text, expected", [
    ("output.rows > 0", True),
    ('output["rows"] == 3', True),
    ("inputs.fetch.count", 10),
    ('inputs["fetch"].count + output.nested.deep.x', 17),
    ("output.items", [1, 2, 3]),             # the key, not dict.items
    ("len(output.items)", 3),
    ("output.rows > vars.threshold and output.status == 'OK'", True),
    ("not output.rows or False", False),
    ("2 in output.items", True),
    ("'rows' in output", True),
    ("min(output.items) + max(output.items) + sum(output.items)", 10),
    ("abs(-2) + int('3') + float('1.5') + round(2.6)", 9.5),
    ("str(output.rows) + '!'", "3!"),
    ("bool(0) or any([0, 1]) and all([1, 1])", True),
    ("output.status.lower().startswith('o')", True),
    ("[x * 2 for x in output.items if x > 1]", [4, 6]),
    ("'big' if output.rows > 2 else 'small'", "big"),
    ("get(output, 'missing', 5)", 5),
    ("output.items[-1]", 3),
    ("f'{output.rows} rows'", "3 rows"),
    ("sorted(output.items, reverse=True)", [3, 2, 1]),
    ("get(output, 'missing') == null", True),      # JSON's words work as Python's do
    ("true and not false", True),
    ("output.rows == null or output.rows < 5", True),
])
def test_evaluates(text, expected):
    assert ev(text) == expected


def test_frozen_definition_values_work_as_names():
    assert ev("output.items[0] + output.nested.deep.x", {"output": freeze(NAMES["output"])}) == 8


def test_free_names_are_the_top_level_names_only():
    expr = compile_expression("[x for x in output.items if x > vars.n] and len(inputs.a) > 0")
    assert expr.names == {"output", "vars", "inputs"}
    assert compile_expression("output == null or true").names == {"output"}


@pytest.mark.parametrize("text, fragment", [
    ("output.rows >", "invalid syntax"),
    ("", "empty expression"),
    ("output.__class__", "attribute '__class__' is not allowed"),
    ("output.items()", "method 'items' is not allowed"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("__import__('os')", "unknown function '__import__'"),
    ("(lambda: 1)()", "only named functions can be called"),
    ("[y := 1]", "':=' assignment is not allowed"),
    ("{x for x in output}", "set comprehension is not allowed"),
    ("len(*output.items)", "'*' unpacking is not allowed"),
    ("dict(**output)", "'**' is not allowed"),
    ("f'{output.rows:>1000000000}'", "format specs in f-strings are not allowed"),
    ("x = 1", "invalid syntax"),
    ("-" * 200 + "1", "nested too deeply"),
    ("1 + " * 2000 + "1", "longer than"),
])
def test_refused_at_compile_time(text, fragment):
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, fragment", [
    ("output.missing", "no key 'missing'"),
    ("output.items[10]", "index out of range"),
    ("output.status > 1", "TypeError"),
    ("1 / 0", "division by zero"),
    ("2 ** 10000000", "Sorry"),
    ("'a' * 10 ** 9", "Sorry"),
    ("'%999999999s' % 1", "'%' string formatting is not allowed"),
    ("output.rows.real", "int value has no attribute 'real'"),
    ("int('x')", "ValueError"),
])
def test_runtime_failures_are_clean_expression_errors(text, fragment):
    with pytest.raises(ExpressionError) as info:
        ev(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert message.startswith("expression ")


def test_validate_names_catches_typos():
    with pytest.raises(ExpressionError) as info:
        validate_names("outptu.rows > 0", {"output", "inputs", "vars"})
    assert str(info.value) == ("expression 'outptu.rows > 0': unknown name 'outptu' "
                               "(did you mean 'output'? known: inputs, output, vars)")
    assert validate_names("output.rows > 0", {"output"}).names == {"output"}


def test_compile_is_cached():
    assert compile_expression("output.rows > 0") is compile_expression("output.rows > 0")


def test_evaluation_is_safe_across_threads():
    expr = compile_expression("output.n * 2")
    results, errors = [], []

    def work(n):
        try:
            for _ in range(200):
                results.append(expr.evaluate({"output": {"n": n}}) == n * 2)
        except Exception as exc:  # pragma: no cover - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and all(results) and len(results) == 1600


# --- ${ expr } inputs ------------------------------------------------------------------------------

def test_template_strings():
    assert template_expression("${ output.rows }") == "output.rows"
    assert template_expression("${output.rows}") == "output.rows"
    assert template_expression("rows: ${ output.rows }") is None
    assert template_expression(5) is None


def test_resolve_inputs_evaluates_templates_and_keeps_literals():
    mapping = freeze({"rows": "${ input.rows + 1 }", "label": "plain", "n": 3,
                      "nested": {"list": ["${ vars.day }", "x"]}})
    names = {"input": {"rows": 1}, "vars": {"day": "2026-11-27"}}
    assert resolve_inputs(mapping, names) == {"rows": 2, "label": "plain", "n": 3,
                                              "nested": {"list": ["2026-11-27", "x"]}}
    assert resolve_inputs(None, names) == {}


def test_compile_inputs_fails_at_load_time():
    assert list(iter_templates({"a": ["${ x }"]})) == [("a[0]", "x")]
    with pytest.raises(ExpressionError, match="invalid syntax"):
        compile_inputs({"a": {"b": "${ 1 + }"}})


def test_an_expression_with_a_comprehension_stops_at_its_cpu_budget():
    """Issue 11, point 10: element limits do not bound the work per element; a CPU budget does."""
    costly = compile_expression("len(str([str(output) for a in output])) > 0")
    with pytest.raises(ExpressionError, match=r"gave up after 0.05s of work"):
        costly.evaluate({"output": list(range(9000))}, 0.05)
    assert costly.evaluate({"output": list(range(10))}, 0.05) is True
