"""The builder is typed for real: mypy --strict accepts the examples and the authoring package,
and rejects each mistake in typecheck/mistakes.py, on its line, with the expected error code.

The mistakes are checked as a user's file would be, outside the repository, against durableflow
as installed: mypy reads an installed package's annotations only when it ships py.typed (without
it, every builder call is Any, none of the mistakes is found, and mypy only says that the
package is untyped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.authoring.conftest import ROOT

MISTAKES = Path(__file__).parent / "typecheck" / "mistakes.py"


def mypy(cache: Path, *paths: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                           "--show-error-codes", "--no-color-output", "--cache-dir", str(cache),
                           *paths], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**environ, **env})


def test_the_examples_and_the_authoring_package_type_check(tmp_path):
    examples = sorted(str(p.relative_to(ROOT))
                      for p in (ROOT / "examples" / "python-authored").glob("*.py"))
    assert len(examples) >= 3
    done = mypy(tmp_path / "cache", *examples, "durableflow/authoring", MYPYPATH=str(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_each_deliberate_mistake_is_rejected_on_its_line(tmp_path):
    expected = {(number, match.group(1))
                for number, text in enumerate(MISTAKES.read_text().splitlines(), start=1)
                for match in [re.search(r"# expect: ([a-z-]+)", text)] if match}
    assert len(expected) >= 10
    users_file = tmp_path / "mistakes.py"
    users_file.write_text(MISTAKES.read_text())
    done = mypy(tmp_path / "cache", users_file.name, cwd=tmp_path)
    found = {(int(m.group(1)), m.group(2)) for m in re.finditer(
        r"^\S*mistakes\.py:(\d+): error: .*\[([a-z-]+)\]$", done.stdout, re.M)}
    assert done.returncode == 1, done.stdout + done.stderr
    assert found == expected, done.stdout
