"""Store commands: migrate-store (a SQLite store moved to PostgreSQL)."""

from __future__ import annotations

import re

import click

from durableflow.cli.app import note
from durableflow.cli.formatting import print_json, show, table
from durableflow.errors import StorageError
from durableflow.storage.postgres.dsn import is_dsn, mask


@click.command("migrate-store")
@click.argument("sqlite_file", type=click.Path(dir_okay=False))
@click.argument("target", metavar="POSTGRESQL_DSN")
@click.option("--json", "as_json", is_flag=True, help="Print what was copied as JSON.")
def migrate_store(sqlite_file: str, target: str, as_json: bool) -> None:
    """Copy a SQLite store into an empty PostgreSQL database, then check it row by row.

    Every table is copied with its ids (runs, events with their seq, messages, node
    instances, schedules, signals, limits, workers, ...). Refused, with nothing written: a
    target that holds rows, a source of another schema version, and a source whose workers
    are still running or whose leases are in force. The global --db is not used.
    """
    from durableflow.storage.transfer import migrate_store as run
    if not is_dsn(target):
        # Not a PostgreSQL DSN, but it may still carry a password (mysql://user:pw@...).
        shown = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", target)
        raise StorageError(f"{shown}: the target must be a postgresql:// DSN")
    try:
        report = run(sqlite_file, target)
    except StorageError as exc:
        raise StorageError(mask(exc.message)) from None
    if as_json:
        print_json({"source": report.source, "target": report.target,
                    "schema_version": report.schema_version, "rows": report.rows,
                    "checked": report.checked,
                    "tables": [{"table": t.table, "rows": t.rows, "digest": t.digest}
                               for t in report.tables]})
        return
    show(table(["table", "rows", "digest"], [[t.table, t.rows, t.digest] for t in report.tables]))
    click.echo(f"copied {report.rows} rows in {len(report.tables)} tables from {report.source} "
               f"to {report.target} (schema version {report.schema_version})")
    click.echo("check: passed (every column of every row equal on both sides)")
    note("point workers and commands at the new database with --db or $DURABLEFLOW_DB")


COMMANDS = [migrate_store]
