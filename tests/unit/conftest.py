"""Shared fixtures for unit tests of pure modules."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from durableflow.definitions import load_definition
from durableflow.errors import ValidationError


class DefinitionKit:
    """Builds small definitions as dicts, writes them under tmp_path and loads them."""

    def __init__(self, folder: Path):
        self.folder = folder

    @staticmethod
    def py(node_id: str, **keys) -> dict:
        return {"nodeId": node_id, "runtimeType": "Python", "script": "output = 1", **keys}

    @staticmethod
    def node(node_id: str, runtime_type: str, **keys) -> dict:
        return {"nodeId": node_id, "runtimeType": runtime_type, **keys}

    @staticmethod
    def conn(source: str, target: str, **keys) -> dict:
        return {"sourceNodeId": source, "targetNodeId": target, **keys}

    @staticmethod
    def workflow(*nodes: dict, connections=(), **top) -> dict:
        data = {"workflowId": "wf", "nodes": list(nodes), **top}
        if connections:
            data["connections"] = list(connections)
        return data

    def write(self, data, name: str = "wf.yaml") -> Path:
        path = self.folder / name
        if isinstance(data, (bytes, str)):
            path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        elif name.endswith(".json"):
            path.write_text(json.dumps(data), encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def load(self, data, name: str = "wf.yaml", **options):
        options.setdefault("check_programs", False)
        self.write(data, name)
        return load_definition(name, **options)  # relative: the kit runs inside its folder

    def errors(self, data, name: str = "wf.yaml", **options) -> list[str]:
        with pytest.raises(ValidationError) as info:
            self.load(data, name, **options)
        for line in info.value.errors:
            assert "\n" not in line and line.startswith(name + ": "), line
        return info.value.errors

    def error(self, data, *needles: str, **options) -> str:
        """The one error line that contains every needle (fails if none does)."""
        lines = self.errors(data, **options)
        found = [line for line in lines if all(needle in line for needle in needles)]
        assert found, f"no error containing {needles}; got:\n" + "\n".join(lines)
        return found[0]


@pytest.fixture
def kit(tmp_path, monkeypatch) -> DefinitionKit:
    monkeypatch.chdir(tmp_path)  # errors name the file as given: "wf.yaml: ..."
    return DefinitionKit(tmp_path)


@pytest.fixture
def fake_programs(tmp_path, monkeypatch):
    """Stand-in `pwsh` and `dotnet` executables, first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("pwsh", "dotnet"):
        program = folder / name
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder


@pytest.fixture
def empty_path(tmp_path, monkeypatch):
    """A PATH on which neither pwsh nor dotnet can be found."""
    folder = tmp_path / "nothing"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder
