"""Workflow definitions: YAML/JSON in, frozen model objects out, and back again.

load_definition runs, in order: safe reading (size cap, UTF-8, hostile YAML/JSON refused; a
DefinitionError), the JSON Schema shipped as schema.json, conversion to the model, and the graph
checks. Problems from the last three are collected and raised together as one ValidationError
whose `errors` are single lines: `pipeline.yaml: node 'fetch': field 'timeout': ...`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from durableflow.definitions.draw import to_dot, to_mermaid
from durableflow.definitions.loader import check_plain_data, parse_text, read_source
from durableflow.definitions.parse import body_workflow, parse_workflow
from durableflow.definitions.report import unique
from durableflow.definitions.save import (
    definition_checksum, dump_json, dump_yaml, save_definition, storable, to_dict)
from durableflow.definitions.schema import definition_schema, schema_errors
from durableflow.definitions.topology import entry_points, handler_nodes, output_ports, switch_port
from durableflow.definitions.validate import (
    CONNECTION_NAMES, NODE_NAMES, WHILE_NAMES, validate_definition)
from durableflow.errors import DefinitionError, ValidationError
from durableflow.model import WorkflowDef, thaw

__all__ = [
    "CONNECTION_NAMES", "NODE_NAMES", "WHILE_NAMES", "body_workflow", "definition_checksum",
    "definition_schema", "dump_json", "dump_yaml", "entry_points", "handler_nodes",
    "load_definition", "load_definition_text", "output_ports", "save_definition", "storable",
    "switch_port",
    "to_dict", "to_dot", "to_mermaid", "validate_definition",
]


def load_definition(source: str | os.PathLike | Mapping[str, Any], *,
                    base_dir: str | os.PathLike | None = None, check_programs: bool = True,
                    check_files: bool = True) -> WorkflowDef:
    """Load, check and freeze a definition from a file path or a dict.

    Relative paths in the definition resolve against `base_dir`, by default the file's folder
    (the current directory for a dict). `check_programs=False` skips only the PATH lookup of
    pwsh/dotnet; `check_files=False` only the existence of script files.
    """
    if isinstance(source, Mapping):
        name = _dict_name(source)
        check_plain_data(source, name)
        data = thaw(source)  # jsonschema knows lists, not the tuples of a frozen definition
        source_path = None
        folder = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    elif isinstance(source, (str, os.PathLike)):
        name = str(source)
        data, _fmt = read_source(source)
        source_path = Path(source).absolute()
        folder = Path(base_dir).absolute() if base_dir is not None else source_path.parent
    else:
        raise DefinitionError(f"a definition is a file path or a mapping, not {type(source).__name__}")
    return _build(data, name, folder, source_path, check_programs=check_programs,
                  check_files=check_files)


def load_definition_text(text: str, *, format: str = "yaml", name: str = "<text>",
                         base_dir: str | os.PathLike | None = None, check_programs: bool = True,
                         check_files: bool = True) -> WorkflowDef:
    """The same checks for text already in memory (stdin, a database column)."""
    data = parse_text(text, format, name)
    folder = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    return _build(data, name, folder, None, check_programs=check_programs, check_files=check_files)


def _build(data: Any, name: str, folder: Path, source_path: Path | None, *,
           check_programs: bool, check_files: bool) -> WorkflowDef:
    if data is None:
        raise DefinitionError(f"{name}: the definition is empty")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise DefinitionError(f"{name}: the top level must be a mapping, not {kind}")
    problems = schema_errors(data)
    if problems:
        raise ValidationError([f"{name}: {problem}" for problem in problems])
    defn, problems = parse_workflow(data, base_dir=folder, source_path=source_path)
    problems += validate_definition(defn, base_dir=folder, check_files=check_files,
                                    check_programs=check_programs)
    if problems:
        raise ValidationError([f"{name}: {problem}" for problem in unique(problems)])
    return defn


def _dict_name(data: Mapping) -> str:
    workflow_id = data.get("workflowId")
    return f"workflow {workflow_id!r}" if isinstance(workflow_id, str) else "<definition>"
