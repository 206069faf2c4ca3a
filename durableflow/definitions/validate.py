"""Checks on a built WorkflowDef: per-node rules, connections, ports, expressions and the graph.

Pure apart from two optional looks at the machine: whether script files exist, and whether the
interpreters PowerShell and C# script nodes need are on PATH. Every problem is one line naming
the node or connection and the field (see report.py); nothing stops at the first problem.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections import deque
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from durableflow.definitions.parse import base_dir_of, duration, parse_body
from durableflow.definitions.topology import entry_points, find_cycles, handler_nodes, output_ports
from durableflow.definitions.report import (
    connection_label, field, line, node_label, suggest, unique)
from durableflow.errors import ExpressionError
from durableflow.expressions import compile_expression, iter_templates, template_expression, validate_names
from durableflow.model import RUNTIME_TYPES, TRIGGER_RUNTIMES, NodeDef, WorkflowDef
from durableflow.secrets import is_ref, ref_problems

# the names each kind of expression sees (SPEC section 9)
CONNECTION_NAMES = frozenset({"output", "inputs", "vars"})
NODE_NAMES = frozenset({"input", "inputs", "vars"})
WHILE_NAMES = frozenset({"output", "iteration", "vars"})

PROGRAMS = {"PowerShell": "pwsh", "CSharpScript": "dotnet"}
BODY_TYPES = frozenset({"ForEach", "While"})
TRIGGERS = ("Complete", "Fail", "Any")

# keys in NodeDef.config that belong to one kind of node
TYPE_KEYS = {
    "IfElse": ("condition",), "Switch": ("expression", "cases", "default"),
    "ForEach": ("items", "body", "maxParallelism", "continueOnError"), "While": ("condition", "body", "maxIterations"),
    "Subflow": ("workflowId", "version"), "Wait": ("duration", "until"),
    "WaitForSignal": ("signal",),
    "Timer": ("cron", "interval", "catchUp", "timezone", "misfireGrace", "overlap", "maxCatchUp"),
    "Event": ("event",),
}
REQUIRED_KEYS = {
    "IfElse": ("condition",), "Switch": ("expression", "cases"), "ForEach": ("items", "body"),
    "While": ("condition", "body"), "Subflow": ("workflowId",), "WaitForSignal": ("signal",),
    "Event": ("event",),
}
# the body keys each executing runtime accepts; other runtimes accept none of them
SCRIPT_KEYS = {
    "Python": ("script", "scriptPath", "callable", "env", "workingDir"),
    "Shell": ("command", "scriptPath", "shell", "outputFormat", "env", "workingDir",
              "maxStreamBytes"),
    "PowerShell": ("script", "scriptPath", "outputFormat", "env", "workingDir", "maxStreamBytes"),
    "CSharpScript": ("scriptPath", "outputFormat", "env", "workingDir", "maxStreamBytes"),
}
# exactly one of these gives the node its body
BODY_CHOICES = {
    "Python": ("script", "scriptPath", "callable"), "Shell": ("command", "scriptPath"),
    "PowerShell": ("script", "scriptPath"), "CSharpScript": ("scriptPath",),
}
_CRON_WORDS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")


def validate_definition(defn: WorkflowDef, *, base_dir: Path | None = None, check_files: bool = True,
                        check_programs: bool = True, which: Callable[[str], str | None] = shutil.which,
                        prefix: str = "", in_body: bool = False) -> list[str]:
    """Every problem found, one line each (without the file name); empty when valid."""
    checker = _Checker(defn, base_dir_of(defn, base_dir), prefix)
    checker.secret_refs(None, "variables", defn.variables)
    checker.nodes(in_body)
    checker.connections()
    checker.graph()
    if check_files:
        checker.files()
    if check_programs:
        checker.programs(which)
    for node in defn.nodes:
        if node.runtime_type in BODY_TYPES:
            checker.body(node, check_files=check_files, check_programs=check_programs, which=which)
    return unique(checker.errors)


class _Checker:
    def __init__(self, defn: WorkflowDef, base_dir: Path, prefix: str):
        self.defn = defn
        self.base_dir = base_dir
        self.prefix = prefix
        self.errors: list[str] = []
        self.ids = {n.node_id for n in defn.nodes}
        self.by_id: dict[str, NodeDef] = {}
        for node in defn.nodes:
            self.by_id.setdefault(node.node_id, node)

    def report(self, where: str | None, name: str | None, message: str) -> None:
        self.errors.append(line(self.prefix, where, field(name) if name else None, message))

    def expression(self, text: Any, names: frozenset, where: str, name: str) -> None:
        try:
            validate_names(compile_expression(text), names)
        except ExpressionError as exc:
            self.report(where, name, exc.message)

    def node_ref(self, node_id: str | None, where: str, name: str, own_id: str) -> None:
        if node_id is None:
            return
        if node_id == own_id:
            self.report(where, name, "refers to the node itself")
        elif node_id not in self.ids:
            self.report(where, name, f"unknown node {node_id!r}" + suggest(node_id, self.ids))

    # --- nodes ----------------------------------------------------------------------------

    def nodes(self, in_body: bool) -> None:
        first_index: dict[str, int] = {}
        for index, node in enumerate(self.defn.nodes):
            where = node_label(node.node_id, index)
            if node.node_id in first_index:
                first = first_index[node.node_id]
                self.report(where, "nodeId", f"duplicate node id (also nodes[{first}])")
                continue
            first_index[node.node_id] = index
            kind = node.runtime_type
            if kind not in RUNTIME_TYPES:
                self.report(where, "runtimeType", f"unknown runtime type {kind!r} "
                            f"(valid: {', '.join(RUNTIME_TYPES)})")
                continue
            if in_body and kind in TRIGGER_RUNTIMES:
                self.report(where, "runtimeType", f"a {kind} trigger cannot be part of a body")
            self.script_keys(node, where)
            self.type_keys(node, where)
            self.node_ref(node.compensation_node_id, where, "compensationNodeId", node.node_id)
            self.node_ref(node.fallback_node_id, where, "fallbackNodeId", node.node_id)
            self.limits(node, where)
            self.node_secrets(node, where)
            for path, text in iter_templates(node.inputs or {}):
                self.expression(text, NODE_NAMES, where, f"inputs.{path}")

    def node_secrets(self, node: NodeDef, where: str) -> None:
        """`{"$secret": NAME}` references wherever a node holds values; env and command hold
        text (env also numbers and booleans) or a reference, nothing else."""
        holders = [(f"env.{key}", value, "text, a number, a boolean")
                   for key, value in (node.env or {}).items()]
        if isinstance(node.command, (list, tuple)):
            holders += [(f"command[{i}]", value, "text") for i, value in enumerate(node.command)]
        for name, value, kinds in holders:
            if isinstance(value, Mapping) and not is_ref(value):
                self.report(where, name, f'expected {kinds} or {{"$secret": NAME}}')
            else:
                self.secret_refs(where, name, value)
        self.secret_refs(where, "inputs", node.inputs)
        # An inline body's nodes are checked as nodes of their own.
        self.secret_refs(where, "", {k: v for k, v in node.config.items() if k != "body"})

    def secret_refs(self, where: str | None, name: str, value: Any) -> None:
        for path, problem in ref_problems(value or {}, name):
            self.report(where, path, problem)

    def limits(self, node: NodeDef, where: str) -> None:
        """Limits that could never act: a key without a limit, a fallback without a breaker."""
        config = node.config
        if "concurrencyKey" in config and "maxConcurrentExecutions" not in config:
            self.report(where, "concurrencyKey", "needs maxConcurrentExecutions (how many may run at once)")
        key = config.get("concurrencyKey")
        if isinstance(key, str) and template_expression(key) is not None:
            self.expression(template_expression(key), NODE_NAMES, where, "concurrencyKey")
        for path in (("rateLimit", "per"), ("circuitBreaker", "window")):
            value = config.get(path[0])
            value = value.get(path[1]) if isinstance(value, Mapping) else None
            try:
                zero = value is not None and duration(value) <= 0
            except ValueError:
                zero = False        # parse reports it
            if zero:
                self.report(where, ".".join(path), f"{value!r} must be longer than zero")
        if "maxWait" in config and not any(k in config for k in ("maxConcurrentExecutions", "rateLimit",
                                                                   "resources")):
            self.report(where, "maxWait", "bounds a wait for maxConcurrentExecutions, rateLimit or "
                        "resources; the node has none")

    def script_keys(self, node: NodeDef, where: str) -> None:
        given = {
            "script": node.script is not None, "scriptPath": node.script_path is not None,
            "callable": node.callable is not None, "command": node.command is not None,
            "shell": node.shell, "outputFormat": node.output_format != "text",
            "env": bool(node.env), "workingDir": node.working_dir is not None,
            "maxStreamBytes": node.max_stream_bytes is not None,
        }
        allowed = SCRIPT_KEYS.get(node.runtime_type, ())
        for key, present in given.items():
            if present and key not in allowed:
                users = [k for k, keys in SCRIPT_KEYS.items() if key in keys]
                self.report(where, key, f"does not apply to runtime type {node.runtime_type} "
                            f"(used by {', '.join(users)})")
        choices = BODY_CHOICES.get(node.runtime_type)
        if choices:
            chosen = [key for key in choices if given[key]]
            if len(chosen) != 1:
                options = ", ".join(repr(c) for c in choices)
                found = ", ".join(repr(c) for c in chosen) or "none"
                need = f"needs exactly one of {options}" if len(choices) > 1 else f"needs {options}"
                self.report(where, None, f"{node.runtime_type} node {need} (given: {found})")
        if node.runtime_type == "Python" and node.script is not None:
            self.python_source(node.script, where)
        size = node.max_stream_bytes
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            # a hand-built NodeDef: files are held to this by the schema already
            self.report(where, "maxStreamBytes", f"{size!r} is not a whole number of bytes > 0 "
                        "(e.g. 4194304 for 4 MiB)")

    def python_source(self, script: str, where: str) -> None:
        """Compile an inline Python body now, so a syntax error fails validation, not a run."""
        try:
            compile(textwrap.dedent(script), "<script>", "exec")
        except (SyntaxError, ValueError) as exc:
            lineno, message = _syntax_error(exc)
            line = f" (line {lineno})" if lineno else ""
            self.report(where, "script", f"Python syntax error{line}: {message}")

    def type_keys(self, node: NodeDef, where: str) -> None:
        kind, config = node.runtime_type, node.config
        own = TYPE_KEYS.get(kind, ())
        for key in dict.fromkeys(k for keys in TYPE_KEYS.values() for k in keys):
            if key in config and key not in own:
                users = [k for k, keys in TYPE_KEYS.items() if key in keys]
                self.report(where, key, f"does not apply to runtime type {kind} "
                            f"(used by {', '.join(users)})")
        if "ports" in config and kind in ("IfElse", "Switch"):
            self.report(where, "ports", f"{kind} ports are fixed ({', '.join(output_ports(node))})")
        for key in REQUIRED_KEYS.get(kind, ()):
            if key not in config:
                self.report(where, key, f"required for runtime type {kind}")
        if kind in ("IfElse", "While") and "condition" in config:
            self.expression(config["condition"], WHILE_NAMES if kind == "While" else NODE_NAMES,
                            where, "condition")
        if kind == "Switch" and "expression" in config:
            self.expression(config["expression"], NODE_NAMES, where, "expression")
        if kind == "ForEach" and "items" in config:
            self.expression(config["items"], NODE_NAMES, where, "items")
        if kind in BODY_TYPES and isinstance(config.get("body"), Mapping):
            body = config["body"]
            if ("nodes" in body) == ("workflowId" in body):
                self.report(where, "body", "needs either inline 'nodes' or a 'workflowId', not both")
            elif "version" in body and "workflowId" not in body:
                self.report(where, "body.version", "only applies with 'workflowId'")
        if kind == "Wait":
            self.wait(config, where)
        if kind == "Timer":
            self.timer(config, where)

    def wait(self, config: Mapping, where: str) -> None:
        if ("duration" in config) == ("until" in config):
            self.report(where, None, "Wait node needs exactly one of 'duration', 'until'")
        until = config.get("until")
        if not isinstance(until, str):
            return
        templates = list(iter_templates(until))
        if templates:
            self.expression(templates[0][1], NODE_NAMES, where, "until")
            return
        try:
            moment = datetime.fromisoformat(until.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            self.report(where, "until", f"{until!r} is not an ISO-8601 time with a timezone "
                        "(e.g. 2026-11-27T09:00:00Z) nor a ${ expression }")

    def timer(self, config: Mapping, where: str) -> None:
        from durableflow.timing import check_cron, check_zone  # croniter: only Timer nodes pay
        if ("cron" in config) == ("interval" in config):
            self.report(where, None, "Timer node needs exactly one of 'cron', 'interval'")
        cron = config.get("cron")
        if isinstance(cron, str):
            problem = check_cron(cron)
            if problem is not None:
                self.report(where, "cron", f"{cron!r} is not a cron expression ({problem}; 5 fields: "
                            f"minute hour day month weekday, or @daily, @hourly, ...)")
        for key in ("interval", "misfireGrace"):
            value = config.get(key)
            if value is None:
                continue
            try:
                if duration(value) <= 0 and key == "interval":
                    self.report(where, key, f"{value!r} must be longer than zero")
            except ValueError:
                self.report(where, key, f"{value!r} is not a duration (e.g. 30s, 10m, 1h)")
        zone = config.get("timezone")
        if isinstance(zone, str) and not check_zone(zone):
            self.report(where, "timezone", f"unknown IANA time zone {zone!r} (e.g. 'Europe/Berlin', "
                                           f"'America/New_York', 'UTC')")

    # --- connections ------------------------------------------------------------------------

    def connections(self) -> None:
        seen: dict[tuple, int] = {}
        seen_ids: dict[str, int] = {}
        for index, conn in enumerate(self.defn.connections):
            where = connection_label(index, conn.source_node_id, conn.target_node_id,
                                     conn.connection_id)
            for name, node_id in (("sourceNodeId", conn.source_node_id),
                                  ("targetNodeId", conn.target_node_id)):
                if node_id not in self.ids:
                    self.report(where, name, f"unknown node {node_id!r}" + suggest(node_id, self.ids))
            if conn.trigger not in TRIGGERS:
                self.report(where, "triggerMessageType",
                            f"{conn.trigger!r} is not one of: {', '.join(TRIGGERS)}")
            if conn.condition is not None:
                self.expression(conn.condition, CONNECTION_NAMES, where, "condition")
            self.port(conn, where)
            if conn.connection_id is not None:
                if conn.connection_id in seen_ids:
                    first = seen_ids[conn.connection_id]
                    self.report(where, "id", f"duplicate connection id (also connections[{first}])")
                seen_ids.setdefault(conn.connection_id, index)
            key = (conn.source_node_id, conn.target_node_id, conn.trigger, conn.condition,
                   conn.source_port, conn.target_port)
            if key in seen:
                self.report(where, None, f"duplicate of connections[{seen[key]}]")
            seen.setdefault(key, index)

    def port(self, conn: Any, where: str) -> None:
        source = self.by_id.get(conn.source_node_id)
        if source is None:
            return
        ports = output_ports(source)
        if conn.source_port is None:
            if source.runtime_type in ("IfElse", "Switch") and conn.trigger != "Fail":
                self.report(where, "sourcePort", f"required on a {conn.trigger} connection from "
                            f"{source.runtime_type} node {source.node_id!r} "
                            f"(ports: {', '.join(ports)})")
            return
        if conn.trigger == "Fail":
            self.report(where, "sourcePort", "a Fail message has no port")
        elif not ports:
            self.report(where, "sourcePort", f"unknown port {conn.source_port!r}: node "
                        f"{source.node_id!r} has no named output ports (declare them with 'ports')")
        elif conn.source_port not in ports:
            self.report(where, "sourcePort", f"unknown port {conn.source_port!r} on node "
                        f"{source.node_id!r} (ports: {', '.join(ports)})")

    # --- the graph --------------------------------------------------------------------------

    def graph(self) -> None:
        edges: dict[str, list[str]] = {node_id: [] for node_id in self.by_id}
        for index, conn in enumerate(self.defn.connections):
            if conn.source_node_id in edges and conn.target_node_id in edges:
                edges[conn.source_node_id].append(conn.target_node_id)
                target = self.by_id[conn.target_node_id]
                if target.runtime_type in TRIGGER_RUNTIMES:
                    where = connection_label(index, conn.source_node_id, conn.target_node_id,
                                             conn.connection_id)
                    self.report(where, "targetNodeId", f"{target.runtime_type} node "
                                f"{target.node_id!r} is a trigger and cannot have incoming connections")
        for cycle in find_cycles(edges):
            self.report(None, None, "cycle: " + " -> ".join([*cycle, cycle[0]])
                        + " (loops must be While or ForEach nodes)")
        entries = [e for e in entry_points(self.defn) if e in self.by_id]
        if not entries:
            self.report(None, None, "no entry point: every node has an incoming connection "
                        "(start from a node without one, or a Manual trigger)")
            return
        reached = set(entries) | (handler_nodes(self.defn) & self.ids)
        queue = deque(reached)
        while queue:
            for target in edges.get(queue.popleft(), ()):
                if target not in reached:
                    reached.add(target)
                    queue.append(target)
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        for index, node in enumerate(self.defn.nodes):
            if node.node_id not in reached:
                self.report(node_label(node.node_id, index), None,
                            f"unreachable from any entry point (entry points: {shown})")
        if not self.errors:
            self.each_joins(edges)
            self.join_keys()

    def each_joins(self, edges: dict[str, list[str]]) -> None:
        """A `joinMode: each` node runs once per delivery, as iterations 0, 1, ...; a join
        further down counts inputs per iteration, so every input it has must come through
        that node, or the later iterations would wait for inputs that never come."""
        sources: dict[str, set[str]] = {nid: set() for nid in edges}
        for source, targets in edges.items():
            for target in targets:
                sources[target].add(source)
        for node in self.defn.nodes:
            if node.join_mode != "each":
                continue
            below, queue = {node.node_id}, deque([node.node_id])
            while queue:
                for target in edges.get(queue.popleft(), ()):
                    if target not in below:
                        below.add(target)
                        queue.append(target)
            for join_id in below - {node.node_id}:
                joined = self.by_id[join_id]
                outside = sorted(sources[join_id] - below)
                if joined.join_mode != "each" and len(sources[join_id]) > 1 and outside:
                    self.report(node_label(join_id), "joinMode",
                                f"joins inputs from {', '.join(map(repr, outside))} with the "
                                f"iterations of joinMode 'each' node {node.node_id!r}; make "
                                f"{join_id!r} joinMode 'each' too, or join before {node.node_id!r}")

    def join_keys(self) -> None:
        """An `all` join keeps one input per key (targetPort, else the source node id): two
        connections under one key that can both deliver would lose one input without a word."""
        incoming: dict[str, list[tuple[int, Any]]] = {}
        for index, conn in enumerate(self.defn.connections):
            incoming.setdefault(conn.target_node_id, []).append((index, conn))
        for target, conns in incoming.items():
            if len(conns) < 2 or self.by_id[target].join_mode != "all":
                continue
            for i, (first, a) in enumerate(conns):
                for second, b in conns[i + 1:]:
                    key = a.target_port or a.source_node_id
                    if key == (b.target_port or b.source_node_id) and _may_both_deliver(a, b):
                        self.report(connection_label(second, b.source_node_id, b.target_node_id,
                                                     b.connection_id), "targetPort",
                                    f"node {target!r} would get two inputs under {key!r} (also "
                                    f"connections[{first}]), and a joinMode 'all' node keeps one "
                                    f"per key; give them different targetPorts, or make {target!r} "
                                    f"joinMode 'any' or 'each'")

    # --- the machine ----------------------------------------------------------------------

    def files(self) -> None:
        for index, node in enumerate(self.defn.nodes):
            path = node.script_path
            if path is not None and not Path(path).is_file():
                problem = "is a directory, not a file" if Path(path).is_dir() else "file not found"
                self.report(node_label(node.node_id, index), "scriptPath",
                            f"script {problem}: {self.shown(path)}")
            elif path is not None and node.runtime_type == "Python":
                self.python_file(Path(path), node_label(node.node_id, index))

    def python_file(self, path: Path, where: str) -> None:
        """Parse a scriptPath file now (never run it): a syntax error, or no `run` defined at
        its top level, fails validation instead of the node's first run."""
        try:
            tree = ast.parse(path.read_bytes(), str(path))
        except (SyntaxError, ValueError) as exc:
            lineno, message = _syntax_error(exc)
            line = f", line {lineno}" if lineno else ""
            self.report(where, "scriptPath", f"{self.shown(path)}{line}: Python syntax error: {message}")
            return
        except OSError as exc:
            self.report(where, "scriptPath", f"{self.shown(path)}: cannot read it ({exc.strerror})")
            return
        except (RecursionError, MemoryError):
            self.report(where, "scriptPath", f"{self.shown(path)}: too deeply nested to parse")
            return
        if not _binds_top_level(tree, "run"):
            self.report(where, "scriptPath", f"{self.shown(path)} defines no run(ctx) function")

    def shown(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.base_dir).as_posix()
        except ValueError:
            return str(path)

    def programs(self, which: Callable[[str], str | None]) -> None:
        for index, node in enumerate(self.defn.nodes):
            program = PROGRAMS.get(node.runtime_type)
            if program and which(program) is None:
                self.report(node_label(node.node_id, index), None,
                            f"runtime {node.runtime_type} needs {program!r} on PATH, not found")

    def body(self, node: NodeDef, **options: Any) -> None:
        prefix = line(self.prefix, node_label(node.node_id), "body")
        sub, errors = parse_body(node, self.defn, base_dir=self.base_dir, prefix=prefix)
        if sub is None:
            return
        self.errors.extend(errors)
        self.errors.extend(validate_definition(sub, base_dir=self.base_dir, prefix=prefix,
                                               in_body=True, **options))


def _syntax_error(exc: Exception) -> tuple[int | None, str]:
    """(line, message) of what compile() or ast.parse() refused (ValueError: a NUL byte, say)."""
    return getattr(exc, "lineno", None), getattr(exc, "msg", None) or str(exc)


def _binds_top_level(tree: ast.Module, name: str) -> bool:
    """Whether running the module may bind `name` at its top level: any binding outside function
    and class bodies (def, class, assignment, for/with/except/match targets, walrus, import) or
    a star import. Generous on purpose: it only refuses a file that cannot define it."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
            stack.extend(node.decorator_list)   # a body's names are not the module's
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" or (a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name:
            return True
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name == name:
            return True
        elif isinstance(node, (ast.Global, ast.Nonlocal)) and name in node.names:
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def _may_both_deliver(a: Any, b: Any) -> bool:
    """Whether two connections can both deliver in one run: always from two sources; from one
    source only if they can match the same outcome on the same port."""
    if a.source_node_id != b.source_node_id:
        return True
    if {a.trigger, b.trigger} == {"Complete", "Fail"}:
        return False
    return a.source_port is None or b.source_port is None or a.source_port == b.source_port
