"""Handles on the nodes of a workflow being built, and the connections `>>` draws between them.

`a >> b` is a Complete connection from a to b; the left side may name the message and its port
(`a.on_fail`, `a.on_any`, `check.on("true")`), add a condition (`a.when("output.rows > 0")`), and
the right side the key the input arrives under in the target's `ctx.inputs` (`b.input("left")`).
`>>` returns its right side (a node), so chains read left to right: `a >> b >> c`; a list on
either side fans out or in: `a >> [b, c]`, `[b, c] >> d`.

A NodeRef stands for a node's output at run time, not for a value: using it as one (`if ref:`,
`ref["rows"]`) is refused with a sentence saying what to write instead.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Sequence, TypeVar, overload

from durableflow.authoring.where import Where, caller

if TYPE_CHECKING:
    from durableflow.authoring.graph import Graph
    from durableflow.authoring.policies import NodeOptions

    if sys.version_info >= (3, 11):
        from typing import Self, Unpack
    else:
        from typing_extensions import Self, Unpack

Trigger = Literal["Complete", "Fail", "Any"]
_T = TypeVar("_T", bound="NodeRef")


class _Source:
    """What may stand left of `>>`: a node (its Complete message) or an Outlet."""

    def _outlet(self) -> Outlet:
        raise NotImplementedError

    @overload
    def __rshift__(self, other: _T) -> _T: ...

    @overload
    def __rshift__(self, other: Inlet) -> NodeRef: ...

    @overload
    def __rshift__(self, other: Sequence[NodeRef | Inlet]) -> list[NodeRef]: ...

    def __rshift__(self, other: Any) -> Any:
        targets = _targets(other)
        if targets is None:
            return NotImplemented
        where = caller()
        outlet = self._outlet()
        for node, port in targets:
            outlet.source._graph._connect(outlet, node, port, where)
        if isinstance(other, Inlet):
            return other.node
        if isinstance(other, (list, tuple)):
            return [node for node, _port in targets]
        return other


class NodeRef(_Source):
    """A node declared in a Workflow or Body (what `wf.python(...)`, `wf.shell(...)`, ... and a
    call of an `@node` function inside `@workflow` return)."""

    def __init__(self, graph: Graph, node_id: str, runtime_type: str, keys: dict[str, Any],
                 where: Where, body: Any = None):
        self._graph = graph
        self.node_id = node_id
        self.runtime_type = runtime_type
        self._keys = keys          # camelCase definition keys, values already plain data
        self.where = where         # the user's line that declared it
        self._body = body          # a ForEach/While body: a Body, or a reference dict

    # --- what a connection starts from -----------------------------------------------------

    def _outlet(self) -> Outlet:
        return Outlet(self, "Complete")

    @property
    def on_complete(self) -> Outlet:
        """Its Complete message (what `node >> other` connects)."""
        return Outlet(self, "Complete")

    @property
    def on_fail(self) -> Outlet:
        """Its Fail message, sent once its retries are spent: `charge.on_fail >> refund`."""
        return Outlet(self, "Fail")

    @property
    def on_any(self) -> Outlet:
        """Either message: the target runs whether this node completed or failed."""
        return Outlet(self, "Any")

    def on(self, port: str) -> Outlet:
        """Its Complete message on a named output port (`ports=[...]`, or a Switch's cases)."""
        return Outlet(self, "Complete", port=port)

    def when(self, condition: str) -> Outlet:
        """Its Complete message, delivered only when `condition` (over `output`, `inputs`,
        `vars`) holds: `fetch.when("output.rows > 0") >> process`."""
        return Outlet(self, "Complete", condition=condition)

    def input(self, port: str) -> Inlet:
        """This node as a target whose input arrives under `port` in `ctx.inputs` (targetPort)."""
        return Inlet(self, port)

    def connect(self, target: NodeRef | Inlet, *, trigger: Trigger = "Complete",
                condition: str | None = None, source_port: str | None = None,
                target_port: str | None = None, id: str | None = None) -> NodeRef:
        """Every field of a connection spelled out, including its `id`; returns the target."""
        node, port = (target.node, target.port) if isinstance(target, Inlet) else (target, None)
        if not isinstance(node, NodeRef):
            raise TypeError(f"connect() needs a node or node.input(...) to connect to, "
                            f"not {type(target).__name__}")
        outlet = Outlet(self, trigger, source_port, condition)
        self._graph._connect(outlet, node, target_port or port, caller(), id)
        return node

    # --- changing it after the fact ----------------------------------------------------------

    def configure(self, **options: Unpack[NodeOptions]) -> Self:
        """Set or change node options after declaring it, e.g. a compensation node declared
        later: `charge.configure(compensation=refund)`."""
        self._graph._configure(self, dict(options), caller())
        return self

    # --- not a value ---------------------------------------------------------------------------

    def _not_a_value(self, what: str) -> TypeError:
        return TypeError(
            f"node {self.node_id!r} stands for its output at run time, not for a value, so "
            f"{what} has no meaning while the workflow is declared; route on it with a condition "
            f"(node.when('output.rows > 0') >> next) or an if_else/switch node")

    def __bool__(self) -> bool:
        raise self._not_a_value("its truth")

    def __getitem__(self, key: Any) -> Any:
        raise self._not_a_value(f"[{key!r}]")

    def __iter__(self) -> Any:
        raise self._not_a_value("iterating it")

    def __rrshift__(self: _T, other: Sequence[NodeRef | Outlet]) -> _T:
        return _fan_in(other, self)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<{self.runtime_type} node {self.node_id!r} declared at {self.where}>"


class IfElseRef(NodeRef):
    """An IfElse node: route its two ports, `check.on("true") >> a; check.on("false") >> b`."""

    def on(self, port: Literal["true", "false"]) -> Outlet:  # type: ignore[override]
        return Outlet(self, "Complete", port=port)


class SwitchRef(NodeRef):
    """A Switch node: route each case's port, `route.on("eu") >> europe`, and its default."""


@dataclass(frozen=True)
class Outlet(_Source):
    """A node's message of one kind, on one port, under one condition: the left side of `>>`."""

    source: NodeRef
    trigger: Trigger
    port: str | None = None
    condition: str | None = None

    def _outlet(self) -> Outlet:
        return self

    def when(self, condition: str) -> Outlet:
        """The same message, delivered only when `condition` holds."""
        if self.condition is not None:
            raise TypeError(f"this connection from node {self.source.node_id!r} already has the "
                            f"condition {self.condition!r}; write both in one: "
                            f"'({self.condition}) and ({condition})'")
        return replace(self, condition=condition)

    def __bool__(self) -> bool:
        raise self.source._not_a_value("its truth")

    def __iter__(self) -> Any:
        raise self.source._not_a_value("iterating it")


@dataclass(frozen=True)
class Inlet:
    """A node as the target of a connection whose input arrives under `port` (targetPort)."""

    node: NodeRef
    port: str

    def __rrshift__(self, other: Sequence[NodeRef | Outlet]) -> NodeRef:
        return _fan_in(other, self)  # type: ignore[no-any-return]


def _targets(other: Any) -> list[tuple[NodeRef, str | None]] | None:
    items = other if isinstance(other, (list, tuple)) else [other]
    out: list[tuple[NodeRef, str | None]] = []
    for item in items:
        if isinstance(item, NodeRef):
            out.append((item, None))
        elif isinstance(item, Inlet):
            out.append((item.node, item.port))
        else:
            return None
    return out


def _fan_in(sources: Any, target: NodeRef | Inlet) -> Any:
    """`[a, b.on_fail] >> c`: a connection from each source."""
    if not isinstance(sources, (list, tuple)) or not all(
            isinstance(s, (NodeRef, Outlet)) for s in sources):
        return NotImplemented
    node, port = (target.node, target.port) if isinstance(target, Inlet) else (target, None)
    where = caller()
    for source in sources:
        outlet = source._outlet()
        outlet.source._graph._connect(outlet, node, port, where)
    return node
