"""Where, in the user's Python, a workflow, node or connection was declared: `etl.py:12`.

Errors about a node built in Python point at the line that declared it, as errors about a YAML
file name the file. The line is the first frame outside this package, found when the object is
made (one frame walk per declaration, nothing kept but a file name and a number).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Where:
    filename: str
    lineno: int

    def __str__(self) -> str:
        return f"{_shown(self.filename)}:{self.lineno}"

    @property
    def folder(self) -> Path | None:
        """The folder of a real file (not `<stdin>`, `<string>`), where its relative paths start."""
        path = Path(self.filename)
        return path.absolute().parent if path.is_file() else None


def caller() -> Where:
    """The first frame outside durableflow.authoring: the user's line."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if os.path.dirname(os.path.abspath(filename)) != _PACKAGE:
            return Where(filename, frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return Where("<unknown>", 0)


def _shown(filename: str) -> str:
    """Relative to the current directory when inside it (shorter, and editors follow it)."""
    if filename.startswith("<"):
        return filename
    try:
        return os.path.relpath(filename) if Path(filename).absolute().is_relative_to(
            Path.cwd()) else filename
    except (ValueError, OSError):
        return filename
