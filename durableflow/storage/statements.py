"""Named SQL, kept as SQL: one `.sql` file per family of tables, per database engine.

Each file is a list of statements headed `-- name: NAME` (procrastinate's pattern). A backend's
connections carry its dialect as `conn.sql`, so a `*_txn` helper says
`conn.execute(conn.sql.queue.claim_one, ...)` and runs the statement of whichever engine the
connection belongs to: SQL that differs between engines (RETURNING, INSERT OR ..., JSON
functions, INDEXED BY) lives in that engine's folder, beside the same names for the others.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

FAMILIES = ("database", "queue", "events", "workflows", "runs", "nodes", "joins", "signals", "workers",
            "loops", "schedules", "limits", "history", "metrics", "ui")


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


class Statements:
    """One family's statements as plain attributes (`family.claim_one`): a dict lookup per
    statement on the hot path, no __getattr__."""

    def __init__(self, family: str, queries: dict[str, str]):
        self.family = family
        self._names = tuple(sorted(queries))
        self.__dict__.update(queries)

    def __getattr__(self, name: str) -> str:
        raise AttributeError(f"no statement {name!r} in the {self.family} family")

    def names(self) -> tuple[str, ...]:
        return self._names


class Dialect:
    """The SQL of one database engine, by family: `dialect.queue`, `dialect.runs`, ...

    `rewrite`, if given, turns each statement into its driver's text once, at load time (the
    PostgreSQL files are written with SQLite's `?` and `:name` parameters)."""

    def __init__(self, name: str, folder: Path, rewrite: Callable[[str], str] | None = None):
        self.name = name
        for family in FAMILIES:
            queries = load(folder / f"{family}.sql")
            if rewrite is not None:
                queries = {key: rewrite(sql) for key, sql in queries.items()}
            setattr(self, family, Statements(family, queries))

    def families(self) -> dict[str, Statements]:
        return {family: getattr(self, family) for family in FAMILIES}


SQLITE = Dialect("sqlite", Path(__file__).parent / "sqlite")
