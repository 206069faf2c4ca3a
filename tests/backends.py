"""The storage backends the storage contract suite and the engine integration tests run against.

Each backend here opens a fresh, empty database for one test. A second backend (PostgreSQL)
joins BACKENDS with its own `target`; tests that look behind the store's back with sqlite3
(the `raw` fixture) stay SQLite's.
"""

from __future__ import annotations

from pathlib import Path

BACKENDS = ["sqlite"]


def target(backend: str, tmp_path: Path, name: str = "durableflow.db"):
    """What `Store(...)` and `Engine(...)` are given to open a fresh database of `backend`."""
    if backend == "sqlite":
        return tmp_path / name
    raise ValueError(f"unknown storage backend {backend!r}")
