"""The README's history queries on PostgreSQL: each PostgreSQL form (```sql postgresql blocks),
and each query that needs none as written for SQLite, runs on a PostgreSQL copy of a real
history and answers what SQLite answers on the original; the engine's figures are those forms."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from durableflow.storage.transfer import migrate_store
from durableflow.storage.statements import load
from tests import pg_cluster
from tests.readme_history import make_history, plain_sql

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[test]')")

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
SQLITE_QUERIES = re.findall(r"```sql\n(.*?)```", README, re.S)
PG_FORMS = {int(re.match(r"\s*-- (\d+)\.", q).group(1)): q
            for q in re.findall(r"```sql postgresql\n(.*?)```", README, re.S)}
PG_METRICS = load(REPO / "durableflow" / "storage" / "postgres" / "metrics.sql")

pytestmark = pytest.mark.skipif(pg_cluster.skip_reason() is not None,
                                reason=pg_cluster.skip_reason() or "")


def test_the_readme_gives_the_postgresql_form_of_each_query_whose_sql_differs():
    assert len(SQLITE_QUERIES) == 13
    sqlite_only = re.compile(r"INDEXED BY|julianday|strftime|sum\(status =|sum\(")
    differ = {n for n, q in enumerate(SQLITE_QUERIES, 1) if sqlite_only.search(q)}
    assert differ and set(PG_FORMS) == differ
    for n, q in PG_FORMS.items():
        assert not re.search(r"INDEXED BY|julianday|strftime", q), f"PostgreSQL form of query {n}"


def pg_query(number: int) -> str:
    return PG_FORMS.get(number) or SQLITE_QUERIES[number - 1]


def for_psycopg(sql: str) -> str:
    """psql's :'run_id' and SQLite's :run_id as psycopg's %(run_id)s."""
    return re.sub(r":'run_id'|(?<!:):run_id\b", "%(run_id)s", sql)


# --- a history, in SQLite and copied into PostgreSQL ------------------------------------------

@pytest.fixture(scope="module")
def histories(tmp_path_factory, pg_cluster_session):
    db = tmp_path_factory.mktemp("readme-pg") / "history.db"
    run_id = make_history(db, waiting=True)
    name = pg_cluster_session.new_database("readme")
    migrate_store(db, pg_cluster_session.dsn(name))
    conn = psycopg.connect(pg_cluster_session.dsn(name), autocommit=True)
    try:
        yield db, conn, run_id
    finally:
        conn.close()
        pg_cluster_session.drop_database(name)


def normalized(rows) -> list[tuple]:
    """Rows as comparable values: numbers to three decimals (julianday differences are not
    exact), booleans and integers alike; order left to each query's ORDER BY, else sorted."""
    def value(v):
        if isinstance(v, (float, Decimal)):
            return round(float(v), 3)
        if isinstance(v, bool):
            return int(v)
        return v
    return [tuple(value(v) for v in row) for row in rows]


ORDERED = {1, 3, 4, 8, 9, 12, 13}   # the queries whose ORDER BY decides the whole order
MUST_FIND = {1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13}


@pytest.mark.parametrize("number", range(1, 14))
def test_each_query_answers_on_postgresql_as_on_sqlite(histories, number):
    db, conn, run_id = histories
    lite = sqlite3.connect(db)
    try:
        expected = normalized(lite.execute(SQLITE_QUERIES[number - 1], {"run_id": run_id}).fetchall())
    finally:
        lite.close()
    actual = normalized(conn.execute(for_psycopg(pg_query(number)), {"run_id": run_id}).fetchall())
    if number in MUST_FIND:
        assert actual, f"query {number} found nothing on PostgreSQL"
    if number not in ORDERED:
        expected, actual = sorted(expected, key=repr), sorted(actual, key=repr)
    assert_same_rows(actual, expected)


def assert_same_rows(actual: list[tuple], expected: list[tuple]) -> None:
    """Equal, but for numbers a millisecond apart: SQLite's julianday is not exact, so a
    duration of 0.5 ms rounds to 0.0 there and to 0.001 here."""
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected):
        assert len(got) == len(want), (got, want)
        for a, e in zip(got, want):
            if isinstance(a, float) or isinstance(e, float):
                assert a == pytest.approx(e, abs=0.0015), (got, want)
            else:
                assert a == e, (got, want)


# The README's time where the engine binds its clock's.
PG_NOW = "to_char(now() AT TIME ZONE 'UTC'"
PG_CLOCK = {PG_NOW + " - interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')": ":since",
            PG_NOW + " - interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')": ":since",
            PG_NOW + ", 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')": ":now",
            ":'run_id'": ":run_id"}


@pytest.mark.parametrize("number, name", [(4, "slowest_nodes"), (11, "run_figures"), (12, "runs_by_status"),
                                          (13, "throughput")])
def test_status_and_stats_run_the_readme_form_itself(number, name):
    readme = PG_FORMS[number]
    for text, param in PG_CLOCK.items():
        readme = readme.replace(text, param)
    assert plain_sql(readme) == plain_sql(PG_METRICS[name])
