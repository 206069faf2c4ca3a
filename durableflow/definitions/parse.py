"""Schema-valid definition data (camelCase dicts) -> frozen model objects.

Only conversions live here (durations, paths, defaults, retry policies); a value that does not
convert is reported and left as None so that the graph checks still run and every problem is
reported in one go. Keys the model has no field for are kept verbatim (camelCase) in
`NodeDef.config`.

The `defaults` block gives timeout, retry, priority and isolation to every node that does not set
the key itself; a node's own `retry` replaces the default policy as a whole (no field merging),
so what a node retries with can be read off one place.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from durableflow.definitions.report import field, line, node_label
from durableflow.durations import format_duration, parse_duration
from durableflow.errors import ValidationError
from durableflow.model import Connection, NodeDef, RetryPolicy, WorkflowDef, freeze

# camelCase key -> NodeDef field, for the keys the model knows
NODE_FIELDS = {
    "nodeId": "node_id", "runtimeType": "runtime_type", "name": "name", "script": "script",
    "scriptPath": "script_path", "callable": "callable", "command": "command", "shell": "shell",
    "outputFormat": "output_format", "isolation": "isolation", "env": "env",
    "workingDir": "working_dir", "maxStreamBytes": "max_stream_bytes", "timeout": "timeout", "retry": "retry", "priority": "priority",
    "joinMode": "join_mode", "inputs": "inputs", "compensationNodeId": "compensation_node_id",
    "fallbackNodeId": "fallback_node_id",
}
RETRY_FIELDS = {
    "strategy": "strategy", "maxAttempts": "max_attempts", "initialDelay": "initial_delay",
    "maxDelay": "max_delay", "multiplier": "multiplier", "jitter": "jitter", "retryOn": "retry_on",
}
# durations kept verbatim in NodeDef.config: checked here so that consumers can call
# parse_duration on them without a failure path
CONFIG_DURATIONS = (("duration",), ("interval",), ("maxWait",), ("rateLimit", "per"),
                    ("circuitBreaker", "window"), ("circuitBreaker", "openDuration"))
BUILTIN_DEFAULTS = {"timeout": None, "retry": None, "priority": "normal", "isolation": "thread"}


def duration(value: Any) -> float:
    """parse_duration, refusing the infinite ('inf' is a float literal Python accepts)."""
    seconds = parse_duration(value)
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def resolve_path(base_dir: Path, value: str) -> Path:
    """Absolute and normalised, without following symlinks (a saved file must reload equal)."""
    return Path(os.path.abspath(base_dir / os.path.expanduser(value)))


class _Parser:
    def __init__(self, base_dir: Path, errors: list[str], prefix: str = ""):
        self.base_dir = base_dir
        self.errors = errors
        self.prefix = prefix

    def report(self, where: str, name: str | None, message: str) -> None:
        self.errors.append(line(self.prefix, where, field(name) if name else None, message))

    def duration(self, value: Any, where: str, name: str) -> float | None:
        if value is None:
            return None
        try:
            return duration(value)
        except ValueError as exc:
            self.report(where, name, str(exc))
            return None

    def retry(self, raw: Mapping | None, where: str, name: str) -> RetryPolicy | None:
        if raw is None:
            return None
        values: dict[str, Any] = {}
        for key, attr in RETRY_FIELDS.items():
            if key not in raw:
                continue
            value = raw[key]
            if key in ("initialDelay", "maxDelay"):
                value = self.duration(value, where, f"{name}.{key}")
                if value is None:
                    continue
            elif key == "retryOn":
                value = tuple(value)
            elif key in ("multiplier", "jitter"):
                value = float(value)
            elif key == "maxAttempts":
                value = int(value)
            values[attr] = value
        policy = RetryPolicy(**values)
        if policy.strategy == "none" and policy.max_attempts > 1:
            self.report(where, f"{name}.maxAttempts", f"{policy.max_attempts} attempts need a "
                        "strategy (fixed, linear or exponential); 'none' never retries")
        if policy.initial_delay > policy.max_delay:
            self.report(where, f"{name}.maxDelay", "is shorter than initialDelay "
                        f"({format_duration(policy.initial_delay)})")
        return policy

    def defaults(self, raw: Mapping) -> dict:
        effective = dict(BUILTIN_DEFAULTS)
        if "timeout" in raw:
            effective["timeout"] = self.duration(raw["timeout"], "", "defaults.timeout")
        if "retry" in raw:
            effective["retry"] = self.retry(raw["retry"], "", "defaults.retry")
        for key in ("priority", "isolation"):
            if key in raw:
                effective[key] = raw[key]
        return effective

    def node(self, raw: Mapping, index: int, defaults: Mapping) -> NodeDef:
        where = node_label(raw.get("nodeId"), index)
        values: dict[str, Any] = {"node_id": raw["nodeId"], "runtime_type": raw["runtimeType"]}
        for key in ("priority", "isolation"):
            values[key] = raw.get(key, defaults[key])
        values["timeout"] = (self.duration(raw["timeout"], where, "timeout")
                             if "timeout" in raw else defaults["timeout"])
        values["retry"] = (self.retry(raw["retry"], where, "retry")
                           if "retry" in raw else defaults["retry"])
        for key in ("name", "script", "callable", "shell", "outputFormat", "joinMode",
                    "compensationNodeId", "fallbackNodeId"):
            if key in raw:
                values[NODE_FIELDS[key]] = raw[key]
        for key in ("scriptPath", "workingDir"):
            if key in raw:
                values[NODE_FIELDS[key]] = resolve_path(self.base_dir, raw[key])
        if "maxStreamBytes" in raw:   # the schema allows 4194304.0 as an integer; keep an int
            values["max_stream_bytes"] = int(raw["maxStreamBytes"])
        if "command" in raw:
            command = raw["command"]
            if isinstance(command, str):
                if not raw.get("shell"):
                    self.report(where, "command", "a command string needs 'shell: true'; "
                                "otherwise write the command as an argv list")
                command = [command]
            values["command"] = freeze(command)   # a tuple; a {"$secret": NAME} item frozen too
        for key in ("env", "inputs"):
            if key in raw:
                values[key] = freeze(raw[key])
        config = {key: value for key, value in raw.items() if key not in NODE_FIELDS}
        for path in CONFIG_DURATIONS:
            value: Any = config
            for part in path:
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None:
                self.duration(value, where, ".".join(path))
        values["config"] = freeze(config)
        return NodeDef(**values)

    def workflow(self, raw: Mapping, *, source_path: Path | None = None,
                 inherited_defaults: Mapping | None = None) -> WorkflowDef:
        if "defaults" in raw or not inherited_defaults:
            raw_defaults = raw.get("defaults", {})
            defaults = self.defaults(raw_defaults)
        else:  # a body inherits: its parent already reported any problem in the block
            raw_defaults = inherited_defaults
            defaults = effective_defaults(raw_defaults)
        nodes = tuple(self.node(item, index, defaults) for index, item in enumerate(raw["nodes"]))
        connections = tuple(
            Connection(
                source_node_id=item["sourceNodeId"], target_node_id=item["targetNodeId"],
                trigger=item.get("triggerMessageType", "Complete"),
                condition=item.get("condition"), source_port=item.get("sourcePort"),
                target_port=item.get("targetPort"), connection_id=item.get("id"))
            for item in raw.get("connections", ()))
        inputs_schema = raw.get("inputsSchema")
        if inputs_schema is not None:
            try:
                Draft202012Validator.check_schema(inputs_schema)
            except SchemaError as exc:
                self.report("", "inputsSchema", "not a valid JSON Schema: "
                            + " ".join(exc.message.split())[:200])
        return WorkflowDef(
            workflow_id=raw["workflowId"],
            nodes=nodes,
            connections=connections,
            name=raw.get("workflowName"),
            version=int(raw["version"]) if "version" in raw else None,
            description=raw.get("description"),
            variables=freeze(raw.get("variables", {})),
            inputs_schema=freeze(inputs_schema) if inputs_schema is not None else None,
            max_concurrency=raw.get("maxConcurrency"),
            timeout=self.duration(raw.get("timeout"), "", "timeout"),
            retry_budget=raw.get("retryBudget"),
            defaults=freeze(raw_defaults),
            source_path=source_path,
            extra=freeze({k: v for k, v in raw.items() if k == "$schema" or k.startswith("x-")}),
        )


def effective_defaults(raw: Mapping) -> dict:
    """timeout/retry/priority/isolation a node gets when it does not set them itself."""
    return _Parser(Path.cwd(), []).defaults(raw)


def parse_workflow(raw: Mapping, *, base_dir: Path, source_path: Path | None = None,
                   inherited_defaults: Mapping | None = None, prefix: str = ""
                   ) -> tuple[WorkflowDef, list[str]]:
    """Build the model from schema-valid data; returns it with the conversion errors found."""
    errors: list[str] = []
    parser = _Parser(base_dir, errors, prefix)
    defn = parser.workflow(raw, source_path=source_path, inherited_defaults=inherited_defaults)
    return defn, errors


def base_dir_of(defn: WorkflowDef, base_dir: Path | None = None) -> Path:
    if base_dir is not None:
        return Path(base_dir).absolute()
    if defn.source_path is not None:
        return Path(defn.source_path).absolute().parent
    return Path.cwd()


def parse_body(node: NodeDef, parent: WorkflowDef, *, base_dir: Path | None = None,
               prefix: str = "") -> tuple[WorkflowDef | None, list[str]]:
    """The inline body of a ForEach/While node as a workflow of its own, with conversion errors.

    (None, []) for a body that names a registered workflow (`{workflowId: X}`). The body's id is
    `parent.node`; it inherits the parent's defaults block and resolves paths like the parent.
    """
    body = node.config.get("body")
    if not isinstance(body, Mapping) or "nodes" not in body:
        return None, []
    raw = {"workflowId": f"{parent.workflow_id}.{node.node_id}", "nodes": body["nodes"],
           "connections": body.get("connections", ())}
    return parse_workflow(raw, base_dir=base_dir_of(parent, base_dir), source_path=parent.source_path,
                          inherited_defaults=parent.defaults, prefix=prefix)


def body_workflow(node: NodeDef, parent: WorkflowDef, *, base_dir: Path | None = None
                  ) -> WorkflowDef | None:
    """The inline body as a WorkflowDef (None when the body is `{workflowId: X}`).

    The body was fully validated when its parent loaded; a hand-built one that does not convert
    raises ValidationError.
    """
    defn, errors = parse_body(node, parent, base_dir=base_dir,
                              prefix=f"node {node.node_id!r}: body")
    if errors:
        raise ValidationError(errors)
    return defn
