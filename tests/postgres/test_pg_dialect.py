"""SQLite's parameter syntax as psycopg's, rewritten once at load (issue 18): `?` and `:name`
become `%s` and `%(name)s`; casts, quotes and comments are left alone; `%` is doubled only where
psycopg would read it; text already rewritten (a multi-row INSERT built from a statement) stays."""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[test]')")

from durableflow.storage.buffers import _events_insert  # noqa: E402
from durableflow.storage.postgres.connection import POSTGRES, convert  # noqa: E402
from durableflow.storage.statements import FAMILIES  # noqa: E402


@pytest.mark.parametrize("sql, expected", [
    ("SELECT * FROM t WHERE a = ? AND b = ?", ("SELECT * FROM t WHERE a = %s AND b = %s", True)),
    ("UPDATE t SET a = :a WHERE id = :id AND a = :a", ("UPDATE t SET a = %(a)s WHERE id = %(id)s AND a = %(a)s", True)),
    ("SELECT x::bigint FROM t WHERE y = :y", ("SELECT x::bigint FROM t WHERE y = %(y)s", True)),
    ("SELECT ':not' || '?' FROM t WHERE a = ?", ("SELECT ':not' || '?' FROM t WHERE a = %s", True)),
    ("SELECT 1 -- why? :because\nFROM t WHERE a = ?", ("SELECT 1 -- why? :because\nFROM t WHERE a = %s", True)),
    ("SELECT a FROM t WHERE b LIKE 'x%' AND c = ?", ("SELECT a FROM t WHERE b LIKE 'x%%' AND c = %s", True)),
    ("SELECT a % 7 FROM t WHERE c = ?", ("SELECT a %% 7 FROM t WHERE c = %s", True)),
    ("SELECT a FROM t WHERE b LIKE 'x%'", ("SELECT a FROM t WHERE b LIKE 'x%'", False)),
    ('SELECT "odd?name" FROM t', ('SELECT "odd?name" FROM t', False)),
    ("BEGIN; SELECT pg_advisory_xact_lock(1)", ("BEGIN; SELECT pg_advisory_xact_lock(1)", False)),
])
def test_parameters_are_rewritten_and_nothing_else(sql, expected):
    assert convert(sql) == expected


def test_text_already_rewritten_stays_as_it_is():
    once = convert("INSERT INTO events (a, b) VALUES (?, ?)")[0]
    assert convert(once) == (once, True)
    three = _events_insert(once, 3)
    assert convert(three) == ("INSERT INTO events (a, b) VALUES(%s, %s), (%s, %s), (%s, %s)", True)


def test_the_dialect_has_every_family_rewritten():
    for family in FAMILIES:
        for name in getattr(POSTGRES, family).names():
            text = getattr(getattr(POSTGRES, family), name)
            assert "?" not in text.replace("'?'", ""), (family, name)
