"""A Python function as the `callable: "module:qualname"` a worker imports and calls.

Workers find a node's function by name, so only a function reachable as an attribute path of its
module can be a node: not a lambda, not a function defined inside another, not one whose name
now holds something else. Each is refused with a sentence saying why, when the node is declared.

A function of `__main__` (the script being run) becomes `__main__:name`: it runs in workers of
that same program (`engine.execute`, `engine.worker()` inside it); a worker running another
program (`durableflow worker`) cannot see it, and its node fails saying so.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable


class NotImportable(ValueError):
    """A function the workers could not import by name; the message says why."""


def callable_path(fn: Callable[..., Any]) -> str:
    """"module:qualname" for `fn`, checked to lead back to it."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise NotImportable(f"{fn!r} has no module and name to import it by; use a function "
                            "defined with def at the top level of a module")
    name = getattr(fn, "__name__", qualname)
    if name == "<lambda>":
        raise NotImportable("a lambda has no name workers can import it by; define the function "
                            "with def at the top level of a module")
    if "<locals>" in qualname:
        outer = qualname.split(".<locals>")[0]
        raise NotImportable(f"function {name!r} is defined inside {outer!r}; workers import a "
                            f"callable by module and name, so define it at the top level of "
                            f"module {module!r}")
    found = _lookup(sys.modules.get(module), qualname)
    if found is None:
        raise NotImportable(f"{module}:{qualname} does not lead to the function (module "
                            f"{module!r} has no {qualname!r} now); define it at the top level of "
                            f"a module under that name")
    if not _same(found, fn):
        raise NotImportable(f"{module}:{qualname} now names {_kind(found)}, not this function; "
                            f"workers would call that instead")
    return f"{module}:{qualname}"


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _same(found: Any, fn: Any) -> bool:
    """`found` is `fn`, or wraps the same function (@node, functools.wraps), so that calling
    it calls `fn`'s body."""
    try:
        return found is fn or inspect.unwrap(found) is inspect.unwrap(fn)
    except ValueError:  # a __wrapped__ cycle
        return False


def _kind(obj: Any) -> str:
    return f"a {type(obj).__name__}"
