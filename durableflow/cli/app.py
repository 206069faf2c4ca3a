"""The `durableflow` command group: the global `--db` option, the lazily opened Engine, and the
one place where errors become a single stderr line and an exit code.

Exit codes: 0 success; 1 a failed/cancelled run or any durableflow error (storage, not found,
refused transition); 2 usage errors and invalid definitions (click's own usage errors are 2).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from durableflow import __version__
from durableflow.storage.postgres.dsn import SecretDsn, is_dsn
from durableflow.errors import (
    DatabaseReadOnly, DefinitionError, DurableflowError, StorageError, ValidationError)

DEFAULT_DB = "durableflow.db"
EXIT_FAILED = 1
EXIT_USAGE = 2


def error_line(message: str) -> None:
    click.echo(f"durableflow: error: {message}", err=True)


def _not_reported_elsewhere(record: logging.LogRecord) -> bool:
    """A worker logs the error it stops on and keeps it in `worker.errors`; the command reports
    those itself, as its one error line."""
    return not getattr(record, "durableflow_reported", False)


def note(message: str) -> None:
    """A progress or status line for people; stderr, so stdout stays parseable."""
    click.echo(f"durableflow: {message}", err=True)


def _is_uri(path: str) -> bool:
    return path.startswith("file:") or is_dsn(path)


class State:
    """What every command shares: the database path and the Engine opened on first use."""

    def __init__(self, db: str, max_deliveries: int = 5, max_nesting: int | None = None):
        # A PostgreSQL DSN prints without its password wherever a message names the database.
        self.db = SecretDsn(db) if is_dsn(db) else db
        self.max_deliveries = max_deliveries
        self.max_nesting = max_nesting
        self._engine = None

    def engine(self, *, create: bool = True, check: bool = False, secrets: str | None = None):
        """The Engine on --db. With create=False a missing file is an error rather than a new,
        empty database, and a read-only file is opened read-only (for commands that only read).

        check=True (the commands that carry out work: `worker`, `run`) reads the whole file
        through (quick_check) before anything is written to it, and refuses a damaged file
        untouched. The other commands read or write a few rows and do not scan: SQLite checks
        every page they read, and damage in those pages is reported the same way.

        secrets: the `--secrets FILE` of the commands that run node bodies; checked before the
        database is opened."""
        if self._engine is None:
            from durableflow.engine import Engine
            if not create and not self.exists():
                raise StorageError(f"{self.db}: no such database (use --db PATH or $DURABLEFLOW_DB)")
            options = {"max_deliveries": self.max_deliveries}
            if self.max_nesting is not None:
                options["max_nesting"] = self.max_nesting
            try:
                self._engine = Engine(self.db, check=check, secrets=secrets, **options)
            except DatabaseReadOnly:
                if create:
                    raise
                self._engine = Engine(self.db, readonly=True, **options)
        return self._engine

    def exists(self) -> bool:
        """Whether there is a database to open (a `file:` URI or a PostgreSQL DSN is taken to
        name one)."""
        return _is_uri(self.db) or Path(self.db).exists()

    def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.close()


class DurableflowGroup(click.Group):
    """Turns durableflow's exceptions into one `durableflow: error: ...` line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            for problem in exc.errors or [exc.message]:
                error_line(problem)
            ctx.exit(EXIT_USAGE)
        except DefinitionError as exc:
            error_line(exc.message)
            ctx.exit(EXIT_USAGE)
        except DurableflowError as exc:
            error_line(exc.message)
            ctx.exit(EXIT_FAILED)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as exc:  # a bug: still one line, the traceback only on request
            if os.environ.get("DURABLEFLOW_DEBUG"):
                raise
            error_line(f"internal error: {type(exc).__name__}: {exc} "
                       "(set DURABLEFLOW_DEBUG=1 for the traceback)")
            ctx.exit(EXIT_FAILED)


@click.group("durableflow", cls=DurableflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", metavar="PATH", envvar="DURABLEFLOW_DB", default=DEFAULT_DB,
              show_default=True, show_envvar=True,
              help="The SQLite database file (or a `file:` URI, e.g. `file:app.db?mode=ro`), or a "
                   "PostgreSQL DSN: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=NAME].")
@click.option("--max-deliveries", type=click.IntRange(min=1), default=5, show_default=True,
              help="Deliveries a node message may lose (worker died, lease expired) before it is "
                   "dead-lettered. Stored with each message when it is queued: it applies to "
                   "messages queued by this command, not to those already waiting (`start` "
                   "queues a run's first nodes; the worker queues the rest: give it there).")
@click.option("--max-nesting", type=click.IntRange(min=1), default=None, metavar="N",
              help="How deep runs started by Subflow, ForEach and While nodes may nest (default "
                   "100) before such a node fails with NestingTooDeep. It applies where those "
                   "nodes run: give it to `worker` and `run`.")
@click.version_option(__version__, "--version", prog_name="durableflow",
                      help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, db: str, max_deliveries: int, max_nesting: int | None) -> None:
    """durableflow: a durable workflow engine that lives inside one SQLite file.

    Define workflows in YAML or JSON, `run` them in-process, or `start` runs and let
    `worker` processes carry them out; every state change is a row you can query.
    """
    state = State(db, max_deliveries, max_nesting)
    worker_log = logging.getLogger("durableflow.worker")
    if _not_reported_elsewhere not in worker_log.filters:
        worker_log.addFilter(_not_reported_elsewhere)
    ctx.obj = state
    ctx.call_on_close(state.close)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`durableflow`, `python -m durableflow`)."""
    logging.basicConfig(level=logging.WARNING, format="durableflow: %(levelname)s: %(message)s")
    try:
        cli.main(args=argv, prog_name="durableflow")
    except BrokenPipeError:  # `durableflow history RUN | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_FAILED)
