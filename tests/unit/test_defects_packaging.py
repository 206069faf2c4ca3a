"""The CLI imports click: it must be a declared runtime dependency, not a transitive one."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_click_is_a_declared_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    names = {re.split(r"[<>=!~\[; ]", dep, 1)[0].lower(): dep for dep in project["dependencies"]}
    assert "click" in names, project["dependencies"]
    assert names["click"].replace(" ", "") == "click>=8"
    cli_sources = "".join(p.read_text("utf-8") for p in (REPO / "durableflow" / "cli").glob("*.py"))
    assert "import click" in cli_sources      # the reason it is declared
