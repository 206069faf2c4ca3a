"""A throwaway PostgreSQL cluster for the tests, started from the server binaries on the machine.

Debian's `postgresql` package puts them under /usr/lib/postgresql/<version>/bin, off PATH: the
highest version there is used. `initdb` refuses to run as root, so as root the cluster belongs to
the `postgres` user and lives in a folder that user owns. It listens on a free port on 127.0.0.1
only (no Unix socket in a system folder), trusts the test role `durableflow` and asks role
`df_password` for its password (the wrong-password test). fsync is off: the tests kill workers,
never the server, so durability of the server's own files is not what they check, and speed is.

`PgCluster.new_database()` gives each test an empty database of its own; `stop()` kills the
server (`-m immediate`) and removes every file.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

TEST_ROLE = "durableflow"
PASSWORD_ROLE = "df_password"
PASSWORD = "s3cret-pw"


def find_bin_dir() -> Path | None:
    """The `bin` folder of the highest installed PostgreSQL server version, or None."""
    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.name
        return tuple(int(x) for x in re.findall(r"\d+", part)) or (0,)

    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.isfile(os.path.join(d, "initdb"))]
    if not found:
        return None
    return Path(max(found, key=version))


def skip_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    if find_bin_dir() is None:
        return ("PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb); "
                "install Debian's `postgresql` package (.ci/run does)")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg / psycopg-pool not installed (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self) -> None:
        bindir = find_bin_dir()
        if bindir is None:
            raise RuntimeError(skip_reason())
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="df-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self._as_postgres = os.geteuid() == 0
        self._count = 0
        self._lock = threading.Lock()
        self._started = False
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    # -- running the server's programs as its owner --------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def start(self) -> "PgCluster":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        conf = self.data / "postgresql.conf"
        with open(conf, "a") as f:
            f.write(
                f"\nlisten_addresses = '{self.host}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 300\nfsync = off\nfull_page_writes = off\n"
                "synchronous_commit = off\nshared_buffers = 32MB\n"
                "log_min_messages = warning\nlogging_collector = off\n"
            )
        # First match wins: the password role must prove itself, everyone else is trusted.
        (self.data / "pg_hba.conf").write_text(
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
            "local all all trust\n"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")
        self._started = True
        self.admin_sql(
            f"CREATE ROLE {TEST_ROLE} LOGIN CREATEDB",
            f"CREATE ROLE {PASSWORD_ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'",
        )
        return self

    def pause(self) -> None:
        """Stop the server (a server that is down), keeping its files."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self._started = False

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    # -- connecting -----------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str = TEST_ROLE, password: str | None = None,
            **query: str) -> str:
        auth = user if password is None else f"{user}:{password}"
        url = f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return url

    def admin_sql(self, *statements: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.dsn(dbname, user="postgres"), autocommit=True) as conn:
            for stmt in statements:
                conn.execute(stmt)

    def new_database(self, prefix: str = "t", owner: str = TEST_ROLE) -> str:
        """Create an empty database owned by the test role; return its name."""
        with self._lock:
            self._count += 1
            name = f"{prefix}_{os.getpid()}_{self._count}"
        self.admin_sql(f'CREATE DATABASE "{name}" OWNER {owner} TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        self.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def server_log(self) -> str:
        try:
            return (self.root / "server.log").read_text()
        except OSError:
            return ""


_cluster: PgCluster | None = None
_cluster_error: str | None = None


def shared_cluster() -> PgCluster:
    """One cluster per test session, started on first use (pytest's session fixture stops it)."""
    global _cluster, _cluster_error
    if _cluster is None and _cluster_error is None:
        try:
            _cluster = PgCluster().start()
        except Exception as exc:  # surfaced as the skip/failure reason by the fixture
            _cluster_error = f"could not start a throwaway PostgreSQL cluster: {exc}"
    if _cluster is None:
        raise RuntimeError(_cluster_error)
    return _cluster


def stop_shared_cluster() -> None:
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None
