"""The nodes and connections of a workflow being built in Python: one method per node type.

`Graph` is what a `Workflow` and a loop `Body` share: the node factories (every runtime type of
SPEC section 2, every policy of section 3 as keyword options), the connections `>>` records, and
their lowering to the camelCase data a YAML file would hold. Values are turned into plain data
when they are given (durations, policies, node handles); what they mean is checked later, by the
same loader a YAML file goes through. Only what a file cannot express is refused here, at once:
a function workers could not import, a node id declared twice, a connection between workflows.
"""

from __future__ import annotations

import inspect
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence, TypeVar, Union

from durableflow.authoring.callables import NotImportable, callable_path
from durableflow.authoring.policies import (
    NODE_KEYS, POLICY_TYPES, Duration, NodeOptions, PythonOptions, duration, known_keys)
from durableflow.authoring.refs import IfElseRef, NodeRef, Outlet, SwitchRef, Trigger
from durableflow.authoring.where import Where, caller
from durableflow.errors import ValidationError

if TYPE_CHECKING:
    from durableflow.authoring.workflow import Workflow

    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

PathText = Union[str, "os.PathLike[str]"]
OutputFormat = Literal["text", "json"]
Env = Mapping[str, Union[str, int, float, bool]]
BodySpec = Union["Body", "Workflow", str, Callable[["Body"], object], Callable[[], object]]
"""A loop body: a Body or a function that builds one (inline), or a registered workflow (its
Workflow or its id)."""
_R = TypeVar("_R", bound=NodeRef)

_TRACE: ContextVar[Graph | None] = ContextVar("durableflow_authoring_trace", default=None)


def active() -> Graph | None:
    """The workflow or body a `@workflow` (or body) function is being traced into, if any."""
    return _TRACE.get()


def trace(graph: Graph, fn: Callable[..., object]) -> None:
    """Run a declaring function once, with `@node` calls landing in `graph`."""
    token = _TRACE.set(graph)
    try:
        fn(graph) if _takes_argument(fn) else fn()
    finally:
        _TRACE.reset(token)


def _takes_argument(fn: Callable[..., object]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


@dataclass(frozen=True)
class Edge:
    """A connection as declared, with the line that declared it."""

    source: str
    target: str
    trigger: Trigger
    condition: str | None
    source_port: str | None
    target_port: str | None
    id: str | None
    where: Where

    def raw(self) -> dict[str, Any]:
        """As a hand-written file has it: only what differs from the default (a loop body's
        connections are kept verbatim in the definition, so this shape is what compares)."""
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out.update(sourceNodeId=self.source, targetNodeId=self.target)
        for key, value in (("triggerMessageType", None if self.trigger == "Complete"
                            else self.trigger), ("condition", self.condition),
                           ("sourcePort", self.source_port), ("targetPort", self.target_port)):
            if value is not None:
                out[key] = value
        return out


class Graph:
    """Nodes and connections; see Workflow (a whole definition) and Body (a loop's body)."""

    def __init__(self, where: Where):
        self.where = where
        self._nodes: list[NodeRef] = []
        self._by_id: dict[str, NodeRef] = {}
        self._edges: list[Edge] = []

    @property
    def label(self) -> str:
        raise NotImplementedError

    @property
    def nodes(self) -> tuple[NodeRef, ...]:
        return tuple(self._nodes)

    def __getitem__(self, node_id: str) -> NodeRef:
        return self._by_id[node_id]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    # --- bodies of work ------------------------------------------------------------------------

    def python(self, node_id: str, fn: Callable[..., Any] | str | None = None, *,
               script: str | None = None, script_path: PathText | None = None,
               **options: Unpack[PythonOptions]) -> NodeRef:
        """A Python node: `fn` (a function workers can import, or "pkg.mod:func") is called as
        fn(ctx); or an inline `script` that sets `output`; or a `script_path` defining run(ctx).
        An `@node` function brings its own options; those given here win."""
        where = caller()
        keys: dict[str, Any] = {"script": script, "scriptPath": _path(script_path)}
        if fn is not None and not isinstance(fn, str):
            options = {**getattr(fn, "node_options", {}), **options}
            try:
                keys["callable"] = callable_path(fn)
            except NotImportable as exc:
                raise self._error(where, node_id, "callable", str(exc)) from None
        else:
            keys["callable"] = fn
        return self._add(node_id, "Python", keys, options, where, PythonOptions)

    def shell(self, node_id: str, command: Sequence[str] | str | None = None, *,
              script_path: PathText | None = None, shell: bool = False,
              output_format: OutputFormat | None = None, env: Env | None = None,
              working_dir: PathText | None = None, max_stream_bytes: int | None = None,
              **options: Unpack[NodeOptions]) -> NodeRef:
        """A Shell node: `command` as an argv list (a string needs `shell=True`), or a
        `script_path`; `output_format="json"` parses stdout."""
        keys = _process_keys(output_format, env, working_dir, max_stream_bytes)
        keys.update(command=list(command) if isinstance(command, (list, tuple)) else command,
                    scriptPath=_path(script_path), shell=shell or None)
        return self._add(node_id, "Shell", keys, options, caller())

    def powershell(self, node_id: str, script: str | None = None, *,
                   script_path: PathText | None = None, output_format: OutputFormat | None = None,
                   env: Env | None = None, working_dir: PathText | None = None,
                   max_stream_bytes: int | None = None, **options: Unpack[NodeOptions]) -> NodeRef:
        """A PowerShell node (`pwsh -NoProfile -NonInteractive`): `script` or `script_path`."""
        keys = _process_keys(output_format, env, working_dir, max_stream_bytes)
        keys.update(script=script, scriptPath=_path(script_path))
        return self._add(node_id, "PowerShell", keys, options, caller())

    def csharp_script(self, node_id: str, script_path: PathText, *,
                      output_format: OutputFormat | None = None, env: Env | None = None,
                      working_dir: PathText | None = None, max_stream_bytes: int | None = None,
                      **options: Unpack[NodeOptions]) -> NodeRef:
        """A CSharpScript node: a `.csx` file run by `dotnet script`."""
        keys = _process_keys(output_format, env, working_dir, max_stream_bytes)
        keys["scriptPath"] = _path(script_path)
        return self._add(node_id, "CSharpScript", keys, options, caller())

    # --- routing -------------------------------------------------------------------------------

    def if_else(self, node_id: str, condition: str, **options: Unpack[NodeOptions]) -> IfElseRef:
        """Passes its input on port "true" or "false": `check.on("true") >> a`."""
        return self._add(node_id, "IfElse", {"condition": condition}, options, caller(),
                         ref=IfElseRef)

    def switch(self, node_id: str, expression: str, cases: Mapping[str, str], *,
               default: str | None = None, **options: Unpack[NodeOptions]) -> SwitchRef:
        """Passes its input on the port of the case its `expression` matches (`cases` maps a
        value to a port), else on `default` (the port named "default" when not given)."""
        keys = {"expression": expression, "cases": dict(cases), "default": default}
        return self._add(node_id, "Switch", keys, options, caller(), ref=SwitchRef)

    def noop(self, node_id: str, **options: Unpack[NodeOptions]) -> NodeRef:
        """Passes its input on: a join point, a placeholder."""
        return self._add(node_id, "Noop", {}, options, caller())

    # --- loops and child runs ------------------------------------------------------------------

    def for_each(self, node_id: str, items: str, body: BodySpec, *,
                 max_parallelism: int | None = None, continue_on_error: bool | None = None,
                 body_version: int | None = None, **options: Unpack[NodeOptions]) -> NodeRef:
        """Runs `body` once per item of the `items` expression (inputs {item, index}); its
        output is the list of body outputs, in item order. With `continue_on_error=True` a
        failed item takes its place as {"error": {"type", "message"}} instead of failing it."""
        where = caller()
        keys = {"items": items, "maxParallelism": max_parallelism, "continueOnError": continue_on_error}
        return self._loop(node_id, "ForEach", keys, body, body_version, options, where)

    def while_loop(self, node_id: str, condition: str, body: BodySpec, *,
                   max_iterations: int | None = None, body_version: int | None = None,
                   **options: Unpack[NodeOptions]) -> NodeRef:
        """Runs `body` while `condition` (over `output`, `iteration`, `vars`) holds (inputs
        {input, previous, iteration}: `previous` is the last body output); its output is the
        last body output."""
        where = caller()
        keys = {"condition": condition, "maxIterations": max_iterations}
        return self._loop(node_id, "While", keys, body, body_version, options, where)

    def subflow(self, node_id: str, workflow: Workflow | str, *, version: int | None = None,
                **options: Unpack[NodeOptions]) -> NodeRef:
        """Starts a run of a registered workflow (register it too) and waits for it; its
        output is the child run's outputs. `inputs=` maps literals or "${ expr }"."""
        keys = {"workflowId": _workflow_id(workflow), "version": version}
        return self._add(node_id, "Subflow", keys, options, caller())

    # --- waiting -------------------------------------------------------------------------------

    def wait(self, node_id: str, duration: Duration | None = None, *,
             until: datetime | str | None = None, **options: Unpack[NodeOptions]) -> NodeRef:
        """A durable timer: `duration`, or `until` (a datetime with a zone, an ISO-8601 string,
        or "${ expr }")."""
        when = until.isoformat() if isinstance(until, datetime) else until
        keys = {"duration": _duration(duration), "until": when}
        return self._add(node_id, "Wait", keys, options, caller())

    def wait_for_signal(self, node_id: str, signal: str,
                        **options: Unpack[NodeOptions]) -> NodeRef:
        """Waits for `engine.signal(run_id, signal, data)`; outputs the data. `timeout=` makes
        it fail with SignalTimeout."""
        return self._add(node_id, "WaitForSignal", {"signal": signal}, options, caller())

    # --- triggers ------------------------------------------------------------------------------

    def manual(self, node_id: str, **options: Unpack[NodeOptions]) -> NodeRef:
        """A trigger for runs started by hand; outputs the run's inputs."""
        return self._add(node_id, "Manual", {}, options, caller())

    def timer(self, node_id: str, *, cron: str | None = None, interval: Duration | None = None,
              timezone: str | None = None, catch_up: Literal["none", "one", "all"] | None = None,
              **options: Unpack[NodeOptions]) -> NodeRef:
        """A schedule trigger: `cron` or `interval`."""
        keys = {"cron": cron, "interval": _duration(interval), "timezone": timezone,
                "catchUp": catch_up}
        return self._add(node_id, "Timer", keys, options, caller())

    def event(self, node_id: str, event: str, **options: Unpack[NodeOptions]) -> NodeRef:
        """A trigger for runs started by an emitted event named `event`."""
        return self._add(node_id, "Event", {"event": event}, options, caller())

    # --- the bookkeeping ---------------------------------------------------------------------

    def _loop(self, node_id: str, kind: str, keys: dict[str, Any], body: BodySpec,
              body_version: int | None, options: Any, where: Where) -> NodeRef:
        label = f"{self.label}: node {node_id!r}: body"
        if isinstance(body, Body):
            if body._owner is not None:
                raise self._error(where, node_id, "body", f"this Body is already the body of "
                                  f"{body._owner}; build one Body per loop")
            body._owner = label
            spec: Any = body
        elif isinstance(body, (Graph, str)):   # a Workflow (the one other Graph) or its id
            spec = {"workflowId": _workflow_id(body)}
            if body_version is not None:
                spec["version"] = body_version
        elif callable(body):
            spec = Body(_where=where, _label=label)
            trace(spec, body)
        else:
            raise self._error(where, node_id, "body", f"expected a Body, a function that builds "
                              f"one, a Workflow or a workflow id, not {type(body).__name__}")
        return self._add(node_id, kind, keys, options, where, body=spec)

    def _add(self, node_id: str, kind: str, keys: dict[str, Any], options: Any, where: Where,
             allowed: type = NodeOptions, ref: type[_R] = NodeRef,  # type: ignore[assignment]
             body: Any = None) -> _R:
        known_keys(allowed, options, f"{kind} node {node_id!r}")
        if node_id in self._by_id:
            first = self._by_id[node_id]
            raise self._error(where, node_id, "nodeId", f"duplicate node id (also declared at "
                              f"{first.where})")
        plain = {key: value for key, value in keys.items() if value is not None}
        plain.update(self._options(node_id, options, where))
        node = ref(self, node_id, kind, plain, where, body)
        self._nodes.append(node)
        self._by_id[node_id] = node
        return node

    def _configure(self, node: NodeRef, options: dict[str, Any], where: Where) -> None:
        allowed = PythonOptions if node.runtime_type == "Python" else NodeOptions
        known_keys(allowed, options, f"configure() of node {node.node_id!r}")
        node._keys.update(self._options(node.node_id, options, where))

    def _options(self, node_id: str, options: Mapping[str, Any], where: Where) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in options.items():
            if key == "extra":
                out.update(self._extra(value, where, node_id))
                continue
            name = NODE_KEYS[key]
            if key in POLICY_TYPES:
                value = self._policy(key, value, where, node_id)
            elif key == "timeout":
                value = duration(value)
            elif key in ("compensation", "fallback"):
                value = self._node_id_of(value, where, node_id, name)
            elif key == "ports" and isinstance(value, (list, tuple)):
                value = list(value)
            elif key in ("inputs", "env") and isinstance(value, Mapping):
                value = dict(value)
            elif key == "working_dir":
                value = _path(value)
            out[name] = value
        return out

    def _policy(self, key: str, value: Any, where: Where, node_id: str | None) -> Any:
        kind = POLICY_TYPES[key]
        if isinstance(value, kind):
            return value.to_dict()
        if isinstance(value, Mapping):
            return dict(value)
        raise self._error(where, node_id, NODE_KEYS.get(key, key), f"expected {kind.__name__}"
                          f"(...), not {type(value).__name__} {value!r}")

    def _extra(self, value: Mapping[str, Any], where: Where, node_id: str | None) -> dict[str, Any]:
        for key in value:
            if not (isinstance(key, str) and key.startswith("x-")):
                raise self._error(where, node_id, "extra", f"{key!r}: extension keys start "
                                  f"with 'x-'")
        return dict(value)

    def _node_id_of(self, value: Any, where: Where, node_id: str, name: str) -> Any:
        if isinstance(value, NodeRef):
            if value._graph is not self:
                raise self._error(where, node_id, name, f"node {value.node_id!r} belongs to "
                                  f"{value._graph.label}, not {self.label}")
            return value.node_id
        return value

    def _connect(self, outlet: Outlet, target: NodeRef, target_port: str | None, where: Where,
                 conn_id: str | None = None) -> None:
        source = outlet.source
        if target._graph is not self:
            raise ValidationError(f"{where}: {self.label}: cannot connect node "
                                  f"{source.node_id!r} to node {target.node_id!r} of "
                                  f"{target._graph.label}: a connection joins nodes of one "
                                  f"workflow (a Subflow node runs another)")
        self._edges.append(Edge(source.node_id, target.node_id, outlet.trigger, outlet.condition,
                                outlet.port, target_port, conn_id, where))

    def _error(self, where: Where, node_id: str | None, name: str | None,
               message: str) -> ValidationError:
        parts = [str(where), self.label]
        if node_id is not None:
            parts.append(f"node {node_id!r}")
        if name is not None:
            parts.append(f"field {name!r}")
        return ValidationError(": ".join([*parts, message]))

    def _raw_graph(self) -> dict[str, Any]:
        """{nodes, connections} as a YAML file would hold them."""
        nodes = []
        for node in self._nodes:
            raw = {"nodeId": node.node_id, "runtimeType": node.runtime_type, **node._keys}
            if node._body is not None:
                raw["body"] = (node._body._raw_graph() if isinstance(node._body, Body)
                               else dict(node._body))
            nodes.append(raw)
        out: dict[str, Any] = {"nodes": nodes}
        if self._edges:
            out["connections"] = [edge.raw() for edge in self._edges]
        return out


class Body(Graph):
    """The body of a ForEach or While node, built like a workflow: `body = Body();
    body.python("score", score); wf.for_each("scores", "input.words", body)`. It becomes the
    inline `body: {nodes, connections}` (registered as `<workflowId>.<nodeId>`)."""

    def __init__(self, *, _where: Where | None = None, _label: str | None = None):
        super().__init__(_where or caller())
        self._owner: str | None = _label

    @property
    def label(self) -> str:
        return self._owner or "body"


def _path(value: PathText | None) -> str | None:
    return None if value is None else os.fspath(value)


def _duration(value: Duration | None) -> Any:
    return None if value is None else duration(value)


def _process_keys(output_format: str | None, env: Env | None, working_dir: PathText | None,
                  max_stream_bytes: int | None) -> dict[str, Any]:
    return {"outputFormat": output_format, "env": dict(env) if env is not None else None,
            "workingDir": _path(working_dir), "maxStreamBytes": max_stream_bytes}


def _workflow_id(workflow: Any) -> Any:
    return getattr(workflow, "workflow_id", workflow)
