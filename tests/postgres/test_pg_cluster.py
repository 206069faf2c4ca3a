"""The throwaway cluster's finding of the server binaries (tests/pg_cluster.py): the highest
installed version, and a clear skip, not a failure, where there are none."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import backends, pg_cluster


def test_the_highest_installed_version_is_used(monkeypatch):
    found = ["/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/13/bin"]
    monkeypatch.setattr(pg_cluster.glob, "glob", lambda pattern: list(found))
    monkeypatch.setattr(pg_cluster.os.path, "isfile", lambda path: True)
    assert pg_cluster.find_bin_dir() == Path("/usr/lib/postgresql/15/bin")


def test_without_server_binaries_the_postgres_cases_skip_and_say_why(monkeypatch):
    monkeypatch.setattr(pg_cluster.glob, "glob", lambda pattern: [])
    assert pg_cluster.find_bin_dir() is None
    assert "PostgreSQL server binaries not found" in pg_cluster.skip_reason()
    with pytest.raises(pytest.skip.Exception, match=r"install Debian's `postgresql` package"):
        backends.target("postgres", Path("/nowhere"))
