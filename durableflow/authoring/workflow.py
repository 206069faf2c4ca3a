"""A workflow built in Python, compiled to the definition a YAML file of it would load to.

`to_definition()` writes the camelCase data a YAML file would hold and hands it to the same
`load_definition` a file goes through: the same schema, conversions and graph checks, the same
one-line errors, each with the Python line that declared what it names in front. `to_yaml()`,
`to_json()` and `save()` write that definition out, so it can be read, diffed, registered and
run by the CLI like any other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from durableflow.authoring.graph import Graph
from durableflow.authoring.located import located
from durableflow.authoring.policies import WORKFLOW_KEYS, WorkflowSettings, duration, known_keys
from durableflow.authoring.where import caller
from durableflow.definitions import dump_json, dump_yaml, load_definition, save_definition, to_dict
from durableflow.errors import DefinitionError, ValidationError
from durableflow.model import WorkflowDef, thaw

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self, Unpack
    else:
        from typing_extensions import Self, Unpack


class Workflow(Graph):
    """`Workflow("etl", timeout="30m", ...)`: add nodes with its methods (`python`, `shell`,
    `if_else`, `for_each`, ...), connect them with `>>`, and hand it to `engine.register`,
    `engine.start` or `engine.execute` as you would a file.

    Relative paths (`script_path=`, `working_dir=`) resolve against `base_dir`, by default the
    folder of the Python file that made the Workflow, as a YAML file's resolve against its own.
    """

    def __init__(self, workflow_id: str, **settings: Unpack[WorkflowSettings]) -> None:
        where = caller()
        super().__init__(where)
        known_keys(WorkflowSettings, settings, "Workflow()")
        self.workflow_id = workflow_id
        self._settings: dict[str, Any] = dict(settings)
        base = settings.get("base_dir")
        self.base_dir = Path(base).absolute() if base is not None else (where.folder or Path.cwd())

    @property
    def label(self) -> str:
        return f"workflow {self.workflow_id!r}"

    def configure(self, **settings: Unpack[WorkflowSettings]) -> Self:
        """Set or change workflow-level settings after creating it."""
        known_keys(WorkflowSettings, settings, "configure()")
        if "base_dir" in settings:
            self.base_dir = Path(settings["base_dir"]).absolute()
        self._settings.update(settings)
        return self

    # --- compiling -----------------------------------------------------------------------------

    def to_definition(self) -> WorkflowDef:
        """The definition, checked exactly as a YAML file of it would be (ValidationError with
        every problem, one line each, prefixed with the declaring `file:line`)."""
        name = f"workflow {self.workflow_id!r}" if isinstance(self.workflow_id, str) \
            else "<definition>"
        try:
            return load_definition(self._raw(), base_dir=self.base_dir)
        except ValidationError as exc:
            raise ValidationError(located(self, name, exc.errors)) from None
        except DefinitionError as exc:
            raise DefinitionError(located(self, name, [exc.message])[0]) from None

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain camelCase data (paths relative to `base_dir`)."""
        return to_dict(self.to_definition(), base_dir=self.base_dir)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_definition(), base_dir=self.base_dir)

    def to_json(self) -> str:
        return dump_json(self.to_definition(), base_dir=self.base_dir)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write it to a .yaml/.yml/.json file (paths relative to that file's folder)."""
        saved = save_definition(self.to_definition(), path)
        return Path(saved)

    def _raw(self) -> dict[str, Any]:
        """What a YAML file of this workflow would hold, before any check."""
        raw: dict[str, Any] = {"workflowId": self.workflow_id}
        extra: dict[str, Any] = {}
        for key, value in self._settings.items():
            if key == "base_dir":
                continue
            if key == "extra":
                extra = self._extra(value, self.where, None)
                continue
            if key == "defaults":
                value = self._policy("defaults", value, self.where, None)
            elif key == "timeout":
                value = duration(value)
            raw[WORKFLOW_KEYS[key]] = value
        raw.update(extra)
        raw.update(self._raw_graph())
        return thaw(raw)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Workflow {self.workflow_id!r}: {len(self._nodes)} nodes, declared at {self.where}>"
