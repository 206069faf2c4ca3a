"""`@node` and `@workflow`: functions as nodes, and a function that wires them, traced once.

`@node(retry=..., timeout=...)` on `def fetch(ctx)` makes it a callable node (`callable:
"module:fetch"`, run as fetch(ctx) by a worker). Called with a real context it is the plain
function, so workers, tests and other code call it as before.

`@workflow` runs the decorated function once, when it is decorated, with a fresh `Workflow`, and
replaces it with that Workflow. Inside it, calling an `@node` function adds its node and returns
its NodeRef, a placeholder for the node's output at run time, never the output itself:

- `fetch()` with no arguments: an entry node, whose `ctx.input` is the run's inputs;
- `transform(raw)`: a connection raw -> transform; `ctx.input` is raw's output;
- `merge(a, b)`: a join of both; `ctx.inputs` has each output under its node id;
- `merge(left=a, right=b)`: the same under the names given (targetPort);
- `alert(charge.on_fail)`, `ship(order.when("output.total < 100"))`, `approve(check.on("true"))`:
  any outlet a `>>` accepts.

Python `if`/`for` in the body run once, while declaring: they decide what the graph holds, not
what a run does. A run branches on conditions, IfElse/Switch ports and Fail connections; loops
over data are ForEach/While nodes. The workflow is checked when it is declared: a mistake fails
the import, naming the line.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar, Union, overload

from durableflow.authoring.graph import active, trace
from durableflow.authoring.policies import PythonOptions, WorkflowSettings, known_keys
from durableflow.authoring.refs import Inlet, NodeRef, Outlet
from durableflow.authoring.where import caller
from durableflow.authoring.workflow import Workflow
from durableflow.errors import ValidationError
from durableflow.runtimes.base import NodeContext

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

R = TypeVar("R")
Upstream = Union[NodeRef, Outlet]
WorkflowBody = Union[Callable[[Workflow], object], Callable[[], object]]


class NodeFunction(Generic[R]):
    """A function made a node by `@node`: call it with a context to run it, or with upstream
    nodes (or none) inside `@workflow` to add its node."""

    def __init__(self, fn: Callable[[NodeContext], R], node_id: str | None,
                 options: PythonOptions):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.node_id: str = node_id or fn.__name__
        self.node_options = options

    @overload
    def __call__(self, ctx: NodeContext, /) -> R: ...

    @overload
    def __call__(self, *upstream: Upstream, **named: Upstream) -> NodeRef: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        given = [*args, *kwargs.values()]
        if given and not any(isinstance(v, (NodeRef, Outlet, Inlet)) for v in given):
            return self.fn(*args, **kwargs)          # a run: fn(ctx)
        if not given and active() is None:
            raise TypeError(f"{self.node_id}() runs with a context, {self.node_id}(ctx), and "
                            f"declares its node when called inside a @workflow function")
        return self._declare(args, kwargs)

    def named(self, node_id: str) -> NodeFunction[R]:
        """The same function as a node of another id: to use it twice in one workflow."""
        return NodeFunction(self.fn, node_id, self.node_options)

    def with_options(self, **options: Unpack[PythonOptions]) -> NodeFunction[R]:
        """The same function with some node options changed."""
        known_keys(PythonOptions, options, f"{self.node_id}.with_options()")
        merged: Any = {**self.node_options, **options}
        return NodeFunction(self.fn, self.node_id, merged)

    def _declare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NodeRef:
        where = caller()
        graph = active()
        for value in [*args, *kwargs.values()]:
            if not isinstance(value, (NodeRef, Outlet)):
                raise ValidationError(f"{where}: {self.node_id}(...) declares a node: its "
                                      f"arguments are upstream nodes (or outlets such as "
                                      f"node.on_fail), not {type(value).__name__} {value!r}")
            owner = (value.source if isinstance(value, Outlet) else value)._graph
            if graph is None:
                graph = owner
        if graph is None:  # unreachable: no arguments and no trace are a plain call
            raise ValidationError(f"{where}: {self.node_id}() declares a node only inside a "
                                  f"@workflow function")
        if self.node_id in graph:
            raise ValidationError(f"{where}: {graph.label}: node {self.node_id!r}: field 'nodeId': "
                                  f"duplicate node id (also declared at "
                                  f"{graph[self.node_id].where}); to run the function again, give "
                                  f"it another id: {self.node_id}.named('{self.node_id}_2')(...)")
        ref = graph.python(self.node_id, self)
        for value in args:
            value >> ref
        for port, value in kwargs.items():
            value >> ref.input(port)
        return ref

    def __repr__(self) -> str:
        return f"<node function {self.fn.__module__}:{self.fn.__qualname__} (node {self.node_id!r})>"


@overload
def node(fn: Callable[[NodeContext], R], /) -> NodeFunction[R]: ...


@overload
def node(*, node_id: str | None = None,
         **options: Unpack[PythonOptions]) -> Callable[[Callable[[NodeContext], R]],
                                                      NodeFunction[R]]: ...


def node(fn: Any = None, /, *, node_id: str | None = None, **options: Any) -> Any:
    """Make `def f(ctx)` a Python node (`@node` or `@node(retry=Retry.exponential(3), ...)`);
    its node id is the function's name unless `node_id=` says otherwise."""
    known_keys(PythonOptions, options, "@node()")
    if fn is not None:
        return NodeFunction(fn, node_id, options)  # type: ignore[arg-type]

    def decorate(fn: Callable[[NodeContext], R]) -> NodeFunction[R]:
        return NodeFunction(fn, node_id, options)  # type: ignore[arg-type]
    return decorate


@overload
def workflow(fn: WorkflowBody, /) -> Workflow: ...


@overload
def workflow(*, workflow_id: str | None = None,
             **settings: Unpack[WorkflowSettings]) -> Callable[[WorkflowBody], Workflow]: ...


def workflow(fn: Any = None, /, *, workflow_id: str | None = None, **settings: Any) -> Any:
    """Trace `fn` once into a Workflow (`@workflow` or `@workflow(timeout="5m", ...)`); its id
    is the function's name unless `workflow_id=` says otherwise. `fn` gets the Workflow (for
    if_else, switch, wait, ...) if it takes an argument."""
    known_keys(WorkflowSettings, settings, "@workflow()")

    def build(fn: WorkflowBody) -> Workflow:
        wf = Workflow(workflow_id or str(getattr(fn, "__name__", "workflow")), **settings)
        trace(wf, fn)
        wf.to_definition()   # check it now: a mistake fails the import, naming the line
        return wf

    return build(fn) if fn is not None else build


__all__ = ["NodeFunction", "node", "workflow"]
