"""Loads the named queries of `*.sql` files beside this module (procrastinate's pattern)."""

from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def load(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [l for l in body.splitlines() if not l.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        if name in queries:
            raise ValueError(f"{path.name}: query {name!r} defined twice")
        queries[name] = sql
    return queries


class Queries:
    """Attribute access to named SQL: `Q.claim`. Unknown names fail at import of the caller."""

    def __init__(self, *files: str):
        here = Path(__file__).parent
        self._q: dict[str, str] = {}
        for f in files:
            for name, sql in load(here / f).items():
                if name in self._q:
                    raise ValueError(f"query {name!r} defined in two files")
                self._q[name] = sql
        # Plain attributes: a lookup per statement on the hot path, without __getattr__.
        self.__dict__.update(self._q)

    def __getattr__(self, name: str) -> str:
        try:
            return self._q[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._q)


Q = Queries("queries.sql", "runs.sql")
