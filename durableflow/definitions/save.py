"""Model -> camelCase dict -> YAML/JSON, so that load(save(d)) == d.

A node key is written only when its value differs from what the node would get without it (the
`defaults` block, then the built-in defaults), so a saved file keeps the shape of a hand-written
one. Durations are written in their shortest exact spelling (90.0 -> "90s").
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from durableflow.definitions.parse import duration, effective_defaults
from durableflow.durations import format_duration
from durableflow.errors import DefinitionError
from durableflow.model import NodeDef, RetryPolicy, WorkflowDef, thaw

_RETRY_KEYS = (("strategy", "strategy"), ("maxAttempts", "max_attempts"),
               ("initialDelay", "initial_delay"), ("maxDelay", "max_delay"),
               ("multiplier", "multiplier"), ("jitter", "jitter"), ("retryOn", "retry_on"))
_PLAIN_RETRY = RetryPolicy()


def to_dict(defn: WorkflowDef, *, base_dir: str | os.PathLike | None = None) -> dict:
    """The definition as plain camelCase data; paths relative to `base_dir` (default: the folder
    of the file it was loaded from) when they lie inside it, absolute otherwise."""
    if base_dir is not None:
        folder: Path | None = Path(base_dir).absolute()
    else:  # no folder known: absolute paths, which reload the same from any directory
        folder = Path(defn.source_path).absolute().parent if defn.source_path else None
    out: dict[str, Any] = {"workflowId": defn.workflow_id}
    _put(out, "workflowName", defn.name)
    _put(out, "version", defn.version)
    _put(out, "description", defn.description)
    if defn.variables:
        out["variables"] = thaw(defn.variables)
    if defn.inputs_schema is not None:
        out["inputsSchema"] = thaw(defn.inputs_schema)
    _put(out, "maxConcurrency", defn.max_concurrency)
    if defn.timeout is not None:
        out["timeout"] = _duration(defn.timeout)
    _put(out, "retryBudget", defn.retry_budget)
    if defn.defaults:
        out["defaults"] = thaw(defn.defaults)
    out.update(thaw(defn.extra))
    defaults = effective_defaults(defn.defaults)
    out["nodes"] = [_node(node, defaults, folder) for node in defn.nodes]
    if defn.connections:
        out["connections"] = [_connection(conn) for conn in defn.connections]
    return out


def _put(out: dict, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _node(node: NodeDef, defaults: dict, folder: Path | None) -> dict:
    out: dict[str, Any] = {"nodeId": node.node_id}
    _put(out, "name", node.name)
    out["runtimeType"] = node.runtime_type
    _put(out, "script", node.script)
    if node.script_path is not None:
        out["scriptPath"] = _path(node.script_path, folder)
    _put(out, "callable", node.callable)
    if node.command is not None:
        # a one-element command with shell: true is the shell line itself
        one_line = node.shell and len(node.command) == 1
        out["command"] = thaw(node.command[0] if one_line else node.command)
    if node.shell:
        out["shell"] = True
    if node.output_format != "text":
        out["outputFormat"] = node.output_format
    if node.isolation != defaults["isolation"]:
        out["isolation"] = node.isolation
    if node.env:
        out["env"] = thaw(node.env)
    if node.working_dir is not None:
        out["workingDir"] = _path(node.working_dir, folder)
    _put(out, "maxStreamBytes", node.max_stream_bytes)
    for key, value in (("timeout", node.timeout), ("retry", node.retry)):
        if value != defaults[key]:
            if value is None:  # only a hand-built NodeDef can get here
                raise DefinitionError(f"node {node.node_id!r}: 'no {key}' cannot be written "
                                      f"while the defaults block sets one")
            out[key] = _duration(value) if key == "timeout" else retry_dict(value)
    if node.priority != defaults["priority"]:
        out["priority"] = node.priority
    if node.join_mode != "all":
        out["joinMode"] = node.join_mode
    if node.inputs is not None:
        out["inputs"] = thaw(node.inputs)
    _put(out, "compensationNodeId", node.compensation_node_id)
    _put(out, "fallbackNodeId", node.fallback_node_id)
    out.update(thaw(node.config))
    return out


def _duration(seconds: float) -> str | float:
    text = format_duration(seconds)
    return text if duration(text) == seconds else seconds  # the spelling must reload exactly


def retry_dict(policy: RetryPolicy) -> dict:
    out: dict[str, Any] = {}
    for key, attr in _RETRY_KEYS:
        value = getattr(policy, attr)
        if value == getattr(_PLAIN_RETRY, attr):
            continue
        if key in ("initialDelay", "maxDelay"):
            value = _duration(value)
        elif key == "retryOn":
            value = list(value)
        out[key] = value
    return out


def _connection(conn: Any) -> dict:
    out: dict[str, Any] = {}
    _put(out, "id", conn.connection_id)
    out["sourceNodeId"] = conn.source_node_id
    out["targetNodeId"] = conn.target_node_id
    out["triggerMessageType"] = conn.trigger  # always written: it is what a connection means
    _put(out, "condition", conn.condition)
    _put(out, "sourcePort", conn.source_port)
    _put(out, "targetPort", conn.target_port)
    return out


def _path(path: Path, folder: Path | None) -> str:
    if folder is None:
        return str(path)
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return str(path)


# --- text and files ---------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if any(char in value for char in "\x85\u2028\u2029"):
        style = '"'  # PyYAML folds these unicode line breaks in its other styles
    elif "\n" in value:
        style = "|"  # inline scripts stay readable
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def storable(defn: WorkflowDef) -> tuple[str, str]:
    """(checksum, JSON) of a definition as the database keeps it: absolute script paths, so the
    row alone says what runs, and no `version` key in the checksum (it files the content, it is
    not part of it)."""
    stored = dataclasses.replace(defn, source_path=None)
    return definition_checksum(dataclasses.replace(stored, version=None)), dump_json(stored)


def dump_yaml(defn: WorkflowDef, *, base_dir: str | os.PathLike | None = None) -> str:
    return yaml.dump(to_dict(defn, base_dir=base_dir), Dumper=_Dumper, sort_keys=False,
                     allow_unicode=True, default_flow_style=False, width=100)


def dump_json(defn: WorkflowDef, *, base_dir: str | os.PathLike | None = None) -> str:
    return json.dumps(to_dict(defn, base_dir=base_dir), indent=2, ensure_ascii=False) + "\n"


def save_definition(defn: WorkflowDef, path_or_format: str | os.PathLike) -> Path | str:
    """Write to a .yaml/.yml/.json file (atomically; paths relative to its folder) and return the
    Path; or, given "yaml" or "json", return the text."""
    if path_or_format in ("yaml", "json"):
        return dump_yaml(defn) if path_or_format == "yaml" else dump_json(defn)
    target = Path(path_or_format)
    suffix = target.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise DefinitionError(f"{target}: unknown format (use .yaml, .yml or .json)")
    folder = target.absolute().parent
    text = dump_json(defn, base_dir=folder) if suffix == ".json" else dump_yaml(defn, base_dir=folder)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def definition_checksum(defn: WorkflowDef) -> str:
    """sha256 of the canonical JSON of to_dict: equal definitions, equal checksums."""
    canonical = json.dumps(to_dict(defn), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
