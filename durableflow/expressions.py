"""Safe expressions for conditions, Switch/ForEach/While and `${ expr }` inputs, on simpleeval.

Never eval/exec: an expression is parsed once with `ast.parse(mode="eval")`, every node type is
checked against a short allow-list at load time, and the cached tree is then walked by a
simpleeval evaluator. Names are JSON values; on a mapping, `a.b` reads the key `b` (so
`input.items` is the key "items", not `dict.items`), and `a["b"]` works too. Python's and
JSON's literals both work: `None`/`null`, `True`/`true`, `False`/`false`.
"""

from __future__ import annotations

import ast
import difflib
import functools
import re
import threading
import time
from typing import Any, Iterator, Mapping

from simpleeval import DEFAULT_OPERATORS, EvalWithCompoundTypes

from durableflow.errors import ExpressionError

MAX_LENGTH = 4000
MAX_DEPTH = 50
# CPU seconds an evaluation may use. Connection and While conditions are evaluated inside the
# transaction that records a node, holding the database's write lock: they get far less.
CPU_BUDGET = 2.0
IN_TRANSACTION_CPU_BUDGET = 0.25
_CHECK_EVERY = 64     # evaluation steps between two looks at the CPU time used

_MISSING = object()


def _get(container: Any, key: Any, default: Any = None) -> Any:
    """`get(output, "rows", 0)`: a key or index that may be absent."""
    try:
        return container[key]
    except (KeyError, IndexError, TypeError):
        return default


FUNCTIONS: dict[str, Any] = {
    "len": len, "min": min, "max": max, "abs": abs, "int": int, "float": float, "str": str,
    "bool": bool, "round": round, "sum": sum, "any": any, "all": all, "sorted": sorted,
    "list": list, "tuple": tuple, "dict": dict, "set": set, "get": _get,
}

# Only these may be called as methods, and only on strings (no replace/join/center: they can
# build strings far larger than their inputs).
STR_METHODS = frozenset({
    "lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "title",
    "capitalize", "casefold", "isdigit", "isalpha", "isalnum", "isspace", "count", "find",
})

_ALLOWED_NODES = tuple(getattr(ast, name) for name in (
    "Expression", "BoolOp", "And", "Or", "BinOp", "Add", "Sub", "Mult", "Div", "FloorDiv", "Mod",
    "Pow", "LShift", "RShift", "BitOr", "BitXor", "BitAnd", "UnaryOp", "Not", "USub", "UAdd",
    "Invert", "IfExp", "Compare", "Eq", "NotEq", "Lt", "LtE", "Gt", "GtE", "In", "NotIn", "Is",
    "IsNot", "Call", "keyword", "Constant", "Attribute", "Subscript", "Slice", "Name", "Load",
    "Store", "List", "Tuple", "Dict", "Set", "ListComp", "GeneratorExp", "DictComp",
    "comprehension", "JoinedStr", "FormattedValue",
))
_FRIENDLY = {
    "Lambda": "lambda", "NamedExpr": "':=' assignment", "SetComp": "set comprehension",
    "Starred": "'*' unpacking", "MatMult": "'@'", "Await": "await", "Yield": "yield",
    "YieldFrom": "yield",
}
_LITERAL_NAMES = frozenset({"True", "False", "None"})


class Expression:
    """A compiled expression: `text`, the checked tree, and the free `names` it reads."""

    __slots__ = ("text", "tree", "names", "loops")

    def __init__(self, text: str, tree: ast.AST, names: frozenset, loops: bool = False):
        self.text = text
        self.tree = tree
        self.names = names
        self.loops = loops      # has a comprehension: the data decides how much work it does

    def evaluate(self, names: Mapping[str, Any], cpu_budget: float = CPU_BUDGET) -> Any:
        """The value of the expression over `names`. One with a comprehension may use at most
        `cpu_budget` seconds of this thread's CPU: data can make it do a great deal of work.
        (Without one, the work is bounded by the expression's length and the data's size.)"""
        evaluator = _evaluator(self.loops)
        evaluator.names = names
        if self.loops:
            evaluator.start(cpu_budget)
        try:
            return evaluator.eval(self.text, previously_parsed=self.tree)
        except ExpressionError:
            raise
        except _TooCostly:
            raise ExpressionError(
                f"expression {_short(self.text)}: gave up after {cpu_budget:g}s of work; keep "
                f"conditions cheap and do heavy work in a Python node") from None
        except Exception as exc:  # anything the data can provoke becomes one clean line
            raise ExpressionError(f"expression {_short(self.text)}: {_describe(exc)}") from None

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Expression:
    """Parse and check `text` once (cached); raises ExpressionError with a one-line message."""
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be a string, got {type(text).__name__}")
    source = text.strip()
    if not source:
        raise ExpressionError("empty expression")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"invalid expression {_short(source)}: {exc.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ExpressionError(f"invalid expression {_short(source)}: cannot be parsed") from None
    tree = _JsonLiterals().visit(tree)
    names = _check(tree, source)
    loops = any(isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.DictComp)) for node in ast.walk(tree))
    return Expression(source, tree.body, names, loops)


class _JsonLiterals(ast.NodeTransformer):
    """`null`, `true` and `false` read as None, True and False: definitions are JSON and YAML,
    and their authors write JSON's words (the SPEC's own While example says `null`)."""

    _WORDS = {"null": None, "true": True, "false": False}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in self._WORDS:
            return ast.copy_location(ast.Constant(self._WORDS[node.id]), node)
        return node


def _check(tree: ast.Expression, source: str) -> frozenset:
    """Refuse every construct outside the allow-list; return the free names. Iterative on purpose."""
    loads: set[str] = set()
    bound: set[str] = set()
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(f"invalid expression {_short(source)}: nested too deeply")
        if not isinstance(node, _ALLOWED_NODES):
            kind = type(node).__name__
            raise ExpressionError(
                f"invalid expression {_short(source)}: {_FRIENDLY.get(kind, kind)} is not allowed")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(
                f"invalid expression {_short(source)}: attribute {node.attr!r} is not allowed")
        elif isinstance(node, ast.Call):
            _check_call(node, source)
        elif isinstance(node, ast.keyword) and node.arg is None:
            raise ExpressionError(f"invalid expression {_short(source)}: '**' is not allowed")
        elif isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            raise ExpressionError(
                f"invalid expression {_short(source)}: format specs in f-strings are not allowed")
        elif isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else loads).add(node.id)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return frozenset(loads - bound - _LITERAL_NAMES - FUNCTIONS.keys())


def _check_call(node: ast.Call, source: str) -> None:
    func = node.func
    if isinstance(func, ast.Name):
        if func.id not in FUNCTIONS:
            raise ExpressionError(
                f"invalid expression {_short(source)}: unknown function {func.id!r}"
                f" (available: {', '.join(sorted(FUNCTIONS))})")
    elif isinstance(func, ast.Attribute):
        if func.attr not in STR_METHODS:
            raise ExpressionError(
                f"invalid expression {_short(source)}: method {func.attr!r} is not allowed"
                f" (string methods: {', '.join(sorted(STR_METHODS))})")
    else:
        raise ExpressionError(
            f"invalid expression {_short(source)}: only named functions can be called")


def validate_names(expr: Expression | str, allowed: set | frozenset) -> Expression:
    """Raise ExpressionError naming the first unknown top-level name (e.g. a typo `outptu`)."""
    compiled = compile_expression(expr) if isinstance(expr, str) else expr
    unknown = sorted(compiled.names - set(allowed))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, sorted(allowed), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        known = ", ".join(sorted(allowed)) or "none"
        raise ExpressionError(
            f"expression {_short(compiled.text)}: unknown name {name!r} ({hint}known: {known})")
    return compiled


# --- `${ expr }` values in inputs mappings ------------------------------------------------------

_TEMPLATE = re.compile(r"\$\{(.*)\}", re.DOTALL)


def template_expression(value: Any) -> str | None:
    """The expression text of a `"${ expr }"` string, else None (the value is a literal)."""
    if isinstance(value, str):
        match = _TEMPLATE.fullmatch(value)
        if match:
            return match.group(1).strip()
    return None


def iter_templates(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield (path, expression text) for every `${ }` string in a nested inputs value."""
    text = template_expression(value)
    if text is not None:
        yield path, text
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_templates(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from iter_templates(item, f"{path}[{index}]")


def compile_inputs(mapping: Mapping[str, Any] | None) -> None:
    """Compile every `${ }` value now, so a bad one fails at load time (results are cached)."""
    for _path, text in iter_templates(mapping or {}):
        compile_expression(text)


def resolve_inputs(mapping: Mapping[str, Any] | None, names: Mapping[str, Any]) -> dict:
    """A plain dict with every `${ expr }` value evaluated against `names`; the rest is literal."""
    return _resolve(mapping or {}, names)


def _resolve(value: Any, names: Mapping[str, Any]) -> Any:
    text = template_expression(value)
    if text is not None:
        return compile_expression(text).evaluate(names)
    if isinstance(value, Mapping):
        return {key: _resolve(item, names) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve(item, names) for item in value]
    return value


# --- evaluation -------------------------------------------------------------------------------

def _safe_mod(left: Any, right: Any) -> Any:
    # '%' on a string is printf formatting: "%999999999s" % x would build a gigabyte string.
    if isinstance(left, (str, bytes)):
        raise TypeError("'%' string formatting is not allowed; use f-strings")
    return left % right


class _TooCostly(Exception):
    pass


class _Evaluator(EvalWithCompoundTypes):
    def __init__(self) -> None:
        operators = dict(DEFAULT_OPERATORS)
        operators[ast.Mod] = _safe_mod
        super().__init__(operators=operators, functions=dict(FUNCTIONS), names={})

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        value = self._eval(node.value)
        if isinstance(value, Mapping):
            item = value.get(node.attr, _MISSING)
            if item is _MISSING:
                raise KeyError(node.attr)
            return item
        if isinstance(value, str) and node.attr in STR_METHODS:
            return getattr(value, node.attr)
        raise AttributeError(f"{type(value).__name__} value has no attribute {node.attr!r}")

    def _check_disallowed_items(self, item: Any) -> None:
        # simpleeval walks every intermediate value (whole outputs, on every node) looking for
        # modules and dangerous functions. None can arise here: names are JSON data, calls are
        # limited to FUNCTIONS and str methods, and attributes only read mapping keys.
        return None


class _BudgetedEvaluator(_Evaluator):
    """Counts evaluation steps and looks at the thread's CPU time every few of them."""

    def __init__(self) -> None:
        super().__init__()
        self._steps = _CHECK_EVERY
        self._cpu_deadline = 0.0

    def start(self, cpu_budget: float) -> None:
        # The thread's CPU time, not a clock: it measures the work done, whatever else runs.
        self._cpu_deadline = time.thread_time() + cpu_budget
        self._steps = _CHECK_EVERY

    def _eval(self, node: ast.AST) -> Any:
        self._steps -= 1
        if self._steps <= 0:
            self._steps = _CHECK_EVERY
            if time.thread_time() > self._cpu_deadline:
                raise _TooCostly()
        return super()._eval(node)


_local = threading.local()


def _evaluator(budgeted: bool) -> _Evaluator:
    # One evaluator of each kind per thread: simpleeval keeps the names and the expression on
    # the instance.
    name = "budgeted" if budgeted else "plain"
    evaluator = getattr(_local, name, None)
    if evaluator is None:
        evaluator = _BudgetedEvaluator() if budgeted else _Evaluator()
        setattr(_local, name, evaluator)
    return evaluator


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc.args[0]!r}" if exc.args else "missing key"
    if isinstance(exc, IndexError):
        return "index out of range"
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {message}" if isinstance(exc, (TypeError, ValueError)) else message


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
