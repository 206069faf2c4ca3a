"""What the dashboard's requests share: the database, opened read-only for every page, and a
writing Engine opened only when a control is first used (never with --read-only)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from durableflow.engine import Engine
from durableflow.errors import DatabaseReadOnly, StorageError
from durableflow.storage import migrate
from durableflow.ui.security import CSRF_COOKIE, TOKEN_COOKIE, Secrets

T = TypeVar("T")


@dataclass(frozen=True)
class CookieNames:
    """Cookies ignore ports: two dashboards on one host keep theirs apart by the port in the name."""
    browser: str = CSRF_COOKIE
    token: str = TOKEN_COOKIE

    @classmethod
    def for_port(cls, port: int) -> "CookieNames":
        return cls(f"{CSRF_COOKIE}_{port}", f"{TOKEN_COOKIE}_{port}")


class Dashboard:
    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, token: str | None = None):
        text = os.fspath(path)
        if not text.startswith("file:") and not Path(text).exists():
            raise StorageError(f"{text}: no such database (use --db PATH or $DURABLEFLOW_DB)")
        self.path = text
        self.label = text if text.startswith("file:") else Path(text).name   # the header's; the CLI prints the path
        self.read_only = read_only
        self.secrets = Secrets(token)
        self.cookie_names = CookieNames()
        self.stop = threading.Event()
        self.engine = Engine(text, readonly=True)
        self._writer: Engine | None = None
        self._writer_lock = threading.Lock()
        self._streams = 0
        self._streams_lock = threading.Lock()
        self.max_streams = 12
        try:
            self._check_schema()
        except BaseException:
            self.close()
            raise

    def _check_schema(self) -> None:
        """A file written by an older durableflow is migrated by the writing Engine (as any
        command that writes would); with --read-only it cannot be, and is refused."""
        have = self.engine.store.schema_version()
        want = migrate.available()[-1].version
        if have >= want:
            return
        if self.read_only:
            raise StorageError(f"{self.path}: schema version {have} is older than this durableflow's "
                               f"({want}); run the dashboard once without --read-only, or any command "
                               f"that writes (e.g. `durableflow recover`), to migrate it")
        self.writer()

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(conn, ...) in one read transaction: one snapshot."""
        return self.engine.store.read(fn, *args, **kwargs)

    def data_version(self) -> int:
        return self.engine.store.data_version()

    def writer(self) -> Engine:
        """The Engine the controls write through, opened on first use."""
        if self.read_only:
            raise DatabaseReadOnly("this dashboard is read-only (--read-only): no controls")
        with self._writer_lock:
            if self._writer is None:
                self._writer = Engine(self.path)
            return self._writer

    def open_stream(self) -> bool:
        with self._streams_lock:
            if self._streams >= self.max_streams:
                return False
            self._streams += 1
            return True

    def close_stream(self) -> None:
        with self._streams_lock:
            self._streams -= 1

    def close(self) -> None:
        self.stop.set()
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.engine.close()
