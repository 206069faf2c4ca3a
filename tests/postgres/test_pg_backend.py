"""The PostgreSQL backend as a user meets it (issue 18): a `postgresql://` DSN chooses it in
Engine, Store, `--db` and $DURABLEFLOW_DB; `?schema=` puts the tables in a schema of their own;
a password is never printed; the same one-line errors as on SQLite for a server that is down,
a wrong password, a database from a newer version and a full disk (injected, and for real on a
small tmpfs where this machine lets the tests mount one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from durableflow import Engine
from durableflow.clock import ManualClock
from durableflow.errors import DatabaseUnavailable, DiskFull, SchemaVersionError, StorageError
from durableflow.records import NewMessage
from durableflow.storage import Store
from tests import pg_cluster
from tests.backends import PgRaw
from tests.cli.cli_helpers import subprocess_env

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[test]')")

T0 = 1_800_000_000.0
FLOW = {"workflowId": "pg-hello", "nodes": [
    {"nodeId": "a", "runtimeType": "Python", "script": "output = {'n': 1}"},
    {"nodeId": "b", "runtimeType": "Python", "script": "output = {'n': ctx.input['n'] + 1}"}],
    "connections": [{"sourceNodeId": "a", "targetNodeId": "b", "triggerMessageType": "Complete"}]}


@pytest.fixture
def cluster(pg_cluster_session):
    return pg_cluster_session


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def tables_in(dsn: str, schema: str) -> set[str]:
    raw = PgRaw(dsn)
    try:
        return {r[0] for r in raw.execute(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = ?", (schema,))}
    finally:
        raw.close()


# --- choosing the backend ------------------------------------------------------------------------

def test_an_engine_on_a_dsn_runs_a_workflow_into_postgresql(pg_dsn):
    with Engine(pg_dsn, clock=ManualClock(T0)) as engine:
        assert type(engine.store).__name__ == "PgStore" and engine.store.backend == "postgres"
        run = engine.execute(FLOW, timeout=60)
        assert run.status == "completed" and run.outputs == {"b": {"n": 2}}
    raw = PgRaw(pg_dsn)
    try:
        assert raw.execute("SELECT status FROM runs WHERE run_id = ?", (run.run_id,)).fetchone() == ("completed",)
        assert raw.execute("SELECT count(*) FROM node_instances WHERE status = 'completed'").fetchone() == (2,)
    finally:
        raw.close()


def test_the_schema_option_keeps_two_stores_apart_in_one_database(pg_dsn):
    with Engine(pg_dsn + "?schema=team_a", clock=ManualClock(T0)) as a, \
            Engine(pg_dsn + "?schema=team_b", clock=ManualClock(T0)) as b:
        run = a.execute(FLOW, timeout=60)
        assert [r["run_id"] for r in a.runs()] == [run.run_id]
        assert b.runs() == []
    assert {"runs", "messages", "schema_version"} <= tables_in(pg_dsn, "team_a")
    assert tables_in(pg_dsn, "team_a") == tables_in(pg_dsn, "team_b")
    assert tables_in(pg_dsn, "public") == set()


@pytest.mark.parametrize("schema", ["1abc", "a-b", "x;drop"])
def test_a_schema_name_that_is_not_plain_is_refused(pg_dsn, schema):
    with pytest.raises(StorageError, match=r"schema '.*' is not a plain PostgreSQL name") as exc:
        Store(pg_dsn + f"?schema={schema}")
    one_line(exc.value)


def test_a_schema_holding_someone_elses_tables_is_refused_untouched(pg_dsn):
    raw = PgRaw(pg_dsn)
    try:
        raw.execute("CREATE TABLE invoices (id int)")
        with pytest.raises(StorageError, match="not a durableflow database .*invoices") as exc:
            Store(pg_dsn)
        one_line(exc.value)
        assert raw.execute("SELECT to_regclass('runs')").fetchone() == (None,)
    finally:
        raw.close()


def test_reopening_keeps_the_data_and_migrates_nothing(pg_dsn):
    with Store(pg_dsn, clock=ManualClock(T0)) as s:
        [mid] = s.enqueue(NewMessage(kind="t", payload="1"))
        version = s.schema_version()
    with Store(pg_dsn, clock=ManualClock(T0)) as s:
        assert s.schema_version() == version and s.message(mid)["payload"] == "1"


# --- the password ----------------------------------------------------------------------------------

def test_a_password_is_never_printed(cluster):
    name = cluster.new_database("pw", owner=pg_cluster.PASSWORD_ROLE)
    try:
        dsn = cluster.dsn(name, user=pg_cluster.PASSWORD_ROLE, password=pg_cluster.PASSWORD)
        with Engine(dsn, clock=ManualClock(T0)) as engine:
            run = engine.execute(FLOW, timeout=60)
            assert run.status == "completed"
            shown = [str(engine.path), repr(engine.path), f"{engine.store.path}", engine.store.label]
            assert all(pg_cluster.PASSWORD not in s and ":***@" in s for s in shown), shown
            # The path reopens the same database: the password travels, it is not shown.
            with Engine(engine.path, clock=ManualClock(T0)) as again:
                assert again.get_run(run.run_id).status == "completed"
        engine.close()
        with pytest.raises(StorageError) as exc:
            engine.get_run(run.run_id)         # closed: the message names the database
        assert pg_cluster.PASSWORD not in str(exc.value) and ":***@" in str(exc.value)
    finally:
        cluster.drop_database(name)


def test_a_wrong_password_is_one_line_that_does_not_repeat_it(cluster):
    dsn = cluster.dsn("postgres", user=pg_cluster.PASSWORD_ROLE, password="not-the-secret")
    with pytest.raises(DatabaseUnavailable, match="refused the login: wrong password or user") as exc:
        Engine(dsn)
    text = one_line(exc.value)
    assert "not-the-secret" not in text and ":***@" in text


# --- errors, one line each -----------------------------------------------------------------------

def test_a_server_that_is_down_is_one_line():
    port = pg_cluster._free_port()      # nothing listens there
    with pytest.raises(DatabaseUnavailable, match="cannot reach the PostgreSQL server; is it running") as exc:
        Store(f"postgresql://durableflow:pw@127.0.0.1:{port}/nowhere")
    text = one_line(exc.value)
    assert "pw@" not in text and f"127.0.0.1:{port}/nowhere" in text


def test_a_server_that_goes_down_is_one_line_and_work_resumes_when_it_is_back():
    """A cluster of this test's own, stopped under an open store and started again."""
    own = pg_cluster.PgCluster().start()
    try:
        dsn = own.dsn(own.new_database("down"), password="pw")
        with Store(dsn, clock=ManualClock(T0)) as store:
            [first] = store.enqueue(NewMessage(kind="t"))
            own.pause()
            with pytest.raises(DatabaseUnavailable, match="PostgreSQL server") as exc:
                store.enqueue(NewMessage(kind="t"))
            assert "pw@" not in one_line(exc.value)
            with pytest.raises(DatabaseUnavailable):
                store.queue_counts()
            own.resume()
            [second] = store.enqueue(NewMessage(kind="t"))      # the writer connects again
            assert store.queue_counts()["ready"] == 2 and second > first
    finally:
        own.stop()


def test_a_database_that_does_not_exist_is_named(cluster):
    with pytest.raises(DatabaseUnavailable, match="no such database") as exc:
        Store(cluster.dsn("no_such_db_here"))
    one_line(exc.value)


def test_a_database_of_a_newer_version_is_refused_untouched(pg_dsn):
    Store(pg_dsn).close()
    raw = PgRaw(pg_dsn)
    try:
        raw.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'future', 'x')")
        before = raw.execute("SELECT count(*), max(version) FROM schema_version").fetchone()
        with pytest.raises(SchemaVersionError, match="schema is version 999, newer than this durableflow") as exc:
            Engine(pg_dsn)
        one_line(exc.value)
        assert raw.execute("SELECT count(*), max(version) FROM schema_version").fetchone() == before
    finally:
        raw.close()


def test_a_full_disk_rolls_back_is_one_line_and_work_resumes(pg_dsn):
    """The server's disk_full (SQLSTATE 53100), injected by a trigger on the events table."""
    with Store(pg_dsn, clock=ManualClock(T0)) as store:
        [mid] = store.enqueue(NewMessage(kind="t"))
        [c] = store.claim("w1")
        raw = PgRaw(pg_dsn)
        try:
            raw.execute("CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS "
                        "'BEGIN RAISE EXCEPTION ''could not extend file: No space left on device'' "
                        "USING ERRCODE = ''disk_full''; END'")
            raw.execute("CREATE TRIGGER full_disk BEFORE INSERT ON events FOR EACH ROW "
                        "EXECUTE FUNCTION full_disk()")
            with pytest.raises(DiskFull, match="disk full on the database server, transaction rolled back") as exc:
                store.ack(c.id, c.token)
            one_line(exc.value)
            assert store.message(mid)["status"] == "leased"      # nothing half-written
            raw.execute("DROP TRIGGER full_disk ON events")
        finally:
            raw.close()
        store.ack(c.id, c.token)
        assert store.message(mid)["status"] == "acked"


def _mount_tmpfs(size_mb: int) -> Path:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="df-pg-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    shutil.chown(where, "postgres", "postgres")
    return where


def test_a_really_full_disk_is_disk_full_and_what_was_written_stays(cluster):
    """The database lives on a 16 MB tmpfs (a tablespace; its catalogs take about 8): writing
    until the server finds no space."""
    where = _mount_tmpfs(16)
    name = f"full_{os.getpid()}"
    try:
        cluster.admin_sql(f"CREATE TABLESPACE df_small LOCATION '{where}'")
        cluster.admin_sql(f'CREATE DATABASE "{name}" OWNER {pg_cluster.TEST_ROLE} TEMPLATE template0 '
                          f'TABLESPACE df_small')
        with Store(cluster.dsn(name), clock=ManualClock(T0)) as store:
            # A reader connected before the disk fills: a new connection has the server write a
            # cache file into the database's folder, which a full disk refuses.
            assert store.queue_counts()["ready"] == 0
            written = 0
            with pytest.raises(DiskFull, match="disk full on the database server") as exc:
                for _ in range(10_000):
                    store.enqueue(*[NewMessage(kind="t", payload=os.urandom(2000).hex()) for _ in range(20)])
                    written += 20
            one_line(exc.value)
            assert written > 0 and store.queue_counts()["ready"] == written
    finally:
        cluster.drop_database(name)
        cluster.admin_sql("DROP TABLESPACE IF EXISTS df_small")
        subprocess.run(["umount", str(where)], check=False)
        where.rmdir()


# --- the command line ------------------------------------------------------------------------------

def _cli(*args, env_db: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = subprocess_env()
    if env_db is not None:
        env["DURABLEFLOW_DB"] = env_db
    return subprocess.run([sys.executable, "-m", "durableflow", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_the_cli_runs_a_workflow_on_db_and_reads_it_back_through_the_environment(pg_dsn, tmp_path):
    flow = tmp_path / "flow.json"
    import json
    flow.write_text(json.dumps(FLOW), encoding="utf-8")
    done = _cli("--db", pg_dsn, "run", flow)
    assert done.returncode == 0, done.stderr
    listed = _cli("runs", env_db=pg_dsn)
    assert listed.returncode == 0, listed.stderr
    assert "pg-hello" in listed.stdout and "completed" in listed.stdout


def test_the_cli_says_a_wrong_password_in_one_line_without_it(cluster):
    dsn = cluster.dsn("postgres", user=pg_cluster.PASSWORD_ROLE, password="hunter2-wrong")
    done = _cli("--db", dsn, "runs")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("durableflow: error:"), done.stderr
    assert "hunter2-wrong" not in done.stderr + done.stdout and "refused the login" in lines[0]
