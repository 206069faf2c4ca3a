"""A built wheel carries the dashboard's script and style sheet (package data, read through
importlib.resources), so `pip install .` serves the same pages as a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_dashboards_static_files(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-cache-dir", "-q", "-w", str(tmp_path), str(ROOT)], check=True,
                   timeout=120, capture_output=True, env=env, cwd=tmp_path)
    [wheel] = tmp_path.glob("durableflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = {f"durableflow/ui/static/{p.name}" for p in (ROOT / "durableflow" / "ui" / "static").iterdir()}
    assert {"durableflow/ui/static/app.js", "durableflow/ui/static/app.css"} <= static <= names
    assert "durableflow/storage/sqlite/ui.sql" in names
