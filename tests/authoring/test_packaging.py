"""The built wheel carries py.typed (PEP 561: without it mypy ignores an installed package's
annotations) and the authoring package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from tests.authoring.conftest import ROOT


def test_the_wheel_ships_py_typed_and_the_authoring_package(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-cache-dir", "-q", "-w", str(tmp_path), str(ROOT)], check=True,
                   timeout=120, capture_output=True, env=env, cwd=tmp_path)
    [wheel] = tmp_path.glob("durableflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"durableflow/authoring/{p.name}"
               for p in (ROOT / "durableflow" / "authoring").glob("*.py")}
    assert "durableflow/py.typed" in names
    assert len(modules) >= 8 and modules <= names, sorted(modules - names)
