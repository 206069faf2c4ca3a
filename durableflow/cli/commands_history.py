"""Moving and cleaning up history: export, import, prune."""

from __future__ import annotations

import json
from pathlib import Path

import click

from durableflow.cli.app import State
from durableflow.cli.formatting import print_json
from durableflow.cli.params import AGE_WITH_UNIT
from durableflow.errors import DefinitionError, ValidationError
from durableflow.storage.history import dumps_export


@click.command("export")
@click.argument("run_id", metavar="RUN")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, writable=True),
              help="Write the JSON document to this file instead of stdout.")
@click.pass_obj
def export_cmd(state: State, run_id: str, output: str | None) -> None:
    """Write a run (definition versions, rows, events, subruns) as one JSON document.

    `durableflow import` restores it into another database, where it can be resumed.
    """
    text = dumps_export(state.engine(create=False).export_run(run_id))
    if output is None:
        click.echo(text)
        return
    try:
        Path(output).write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"--output {output}: cannot write it ({exc.strerror or exc})") from None
    click.echo(f"run {run_id} exported to {output}", err=True)


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the imported run id as JSON.")
@click.pass_obj
def import_cmd(state: State, file: str, as_json: bool) -> None:
    """Restore a run exported with `durableflow export` into this database.

    Work that was leased when it was exported is delivered again; resume a paused run with
    `durableflow resume`. Refused if the run already exists here.
    """
    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DefinitionError(f"{file}: not a JSON run export ({exc})") from None
    try:
        run_id = state.engine().import_run(doc)
    except DefinitionError as exc:
        raise DefinitionError(f"{file}: {exc.message}") from None
    if as_json:
        print_json({"run_id": run_id})
    else:
        click.echo(run_id)


@click.command()
@click.option("--older-than", "older_than", type=AGE_WITH_UNIT, required=True, metavar="DURATION",
              help="Delete runs that finished longer ago than this, e.g. 30d.")
@click.option("--json", "as_json", is_flag=True, help="Print how many runs were deleted as JSON.")
@click.pass_obj
def prune(state: State, older_than: float, as_json: bool) -> None:
    """Delete finished runs and everything that belongs to them (nodes, messages, events).

    The file keeps its size: the pages freed are reused by new runs. To give the space back to
    the disk, run `sqlite3 FILE 'VACUUM'` while no worker is running.
    """
    deleted = state.engine(create=False).prune(older_than)
    if as_json:
        print_json({"deleted_runs": deleted})
    else:
        click.echo(f"deleted {deleted} finished run(s)")
        if deleted:
            click.echo("the file keeps its size (new runs reuse the space); `sqlite3 FILE 'VACUUM'` "
                       "with no worker running gives it back to the disk", err=True)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--from", "from_node", metavar="NODE",
              help="Run NODE and everything after it again too, keeping what RUN recorded elsewhere.")
@click.option("--fresh", is_flag=True,
              help="Run everything again from the start (a completed run can be run again so).")
@click.pass_obj
def rerun(state: State, run_id: str, from_node: str | None, fresh: bool) -> None:
    """Start a finished RUN again as a new run (same workflow version and inputs); print its id.

    By default the new run keeps every node RUN settled (completed, skipped, or failed with its
    Fail handled) and runs what failed or never finished. Nothing runs until a `durableflow
    worker` picks the new run up; its first event names the run it repeats.
    """
    click.echo(state.engine(create=False).rerun(run_id, from_node, fresh=fresh))


COMMANDS = (export_cmd, import_cmd, prune, rerun)
