"""The JSON Schema (schema.json, shipped in the package) as the first check, with one-line errors."""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from durableflow.definitions.report import (
    connection_label, field, join_path, line, node_label, short, suggest)

_JSON_TYPES = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}
_SCHEMA_TYPES = {"object": "mapping", "array": "list"}


@functools.lru_cache(maxsize=1)
def definition_schema() -> dict:
    text = resources.files("durableflow.definitions").joinpath("schema.json").read_text("utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(definition_schema())


def schema_errors(data: Any) -> list[str]:
    """Every schema violation, one line each, in document order."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: _sort_key(e.absolute_path))
    lines: list[str] = []
    for error in errors:
        where, path = locate(data, list(error.absolute_path))
        for name, message in _describe(error, path):
            lines.append(line(where or ("" if name else "top level"), name, message))
    return list(dict.fromkeys(lines))


def _sort_key(path: Any) -> tuple:
    """Document order: top-level keys as the schema lists them (nodes before connections)."""
    order = list(definition_schema()["properties"])
    return tuple((0, part, "") if isinstance(part, int)
                 else (1, order.index(part) if part in order else len(order), str(part))
                 for part in path)


def locate(data: Any, path: list) -> tuple[str, list]:
    """Split a path into where (`node 'a': body: connections[0] x->y`) and the field path left."""
    where: list[str] = []
    value, index = data, 0
    while index < len(path):
        key = path[index]
        nxt = path[index + 1] if index + 1 < len(path) else None
        if key in ("nodes", "connections") and isinstance(nxt, int) and isinstance(value, dict):
            items = value.get(key)
            item = items[nxt] if isinstance(items, list) and nxt < len(items) else None
            raw = item if isinstance(item, dict) else {}
            if key == "nodes":
                where.append(node_label(raw.get("nodeId"), nxt))
            else:
                where.append(connection_label(nxt, raw.get("sourceNodeId"), raw.get("targetNodeId"),
                                              raw.get("id")))
            value, index = item, index + 2
        elif (key == "body" and where and nxt in ("nodes", "connections")
              and isinstance(value, dict) and isinstance(value.get("body"), dict)):
            where.append("body")
            value, index = value["body"], index + 1
        else:
            return ": ".join(where), path[index:]
    return ": ".join(where), []


def _describe(error: SchemaError, path: list) -> list[tuple[str, ...]]:
    """(field, message) parts for one schema error; several for several unknown keys."""
    name = join_path(path)
    kind = error.validator
    if kind == "required":
        match = re.match(r"'(.*)' is a required property", error.message)
        key = match.group(1) if match else "?"
        return [(field(join_path([*path, key])), "required key is missing")]
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extras = [key for key in error.instance
                  if key not in known and not any(re.search(p, key) for p in patterns)]
        return [(field(join_path([*path, key])), "unknown key" + suggest(key, known))
                for key in extras]
    where = field(name) if name else ""
    if path and path[-1] == "maxStreamBytes" and kind in ("type", "minimum"):
        return [(where, f"{short(error.instance)} is not a whole number of bytes > 0 "
                        "(e.g. 4194304 for 4 MiB)")]
    if kind == "enum":
        valid = ", ".join(str(v) for v in error.validator_value)
        if path and path[-1] == "runtimeType":
            return [(where, f"unknown runtime type {short(error.instance)} (valid: {valid})")]
        return [(where, f"{short(error.instance)} is not one of: {valid}")]
    if kind == "type":
        wanted = error.validator_value
        wanted = wanted if isinstance(wanted, list) else [wanted]
        expected = " or ".join(_SCHEMA_TYPES.get(kind, kind) for kind in wanted)
        got = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        return [(where, f"expected {expected}, got {got}")]
    if kind == "pattern" and path and path[-1] in (
            "workflowId", "nodeId", "sourceNodeId", "targetNodeId",
            "compensationNodeId", "fallbackNodeId"):
        return [(where, f"{short(error.instance)} may only use ASCII letters, digits, '_', '.' "
                        "and '-'")]
    if kind == "minItems" and error.validator_value == 1:
        return [(where, "must not be empty")]
    message = " ".join(error.message.split())
    return [(where, message if len(message) <= 200 else message[:197] + "...")]


def schema_runtime_types() -> tuple:
    """The runtime types the schema accepts (a test holds them equal to model.RUNTIME_TYPES)."""
    node = definition_schema()["$defs"]["node"]["properties"]["runtimeType"]
    return tuple(node["enum"])

