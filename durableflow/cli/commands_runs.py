"""Commands that look at and steer runs: runs, status, history, pause, resume, cancel."""

from __future__ import annotations

import contextlib
import json
import sys

import click
from rich.text import Text

from durableflow.cli.app import State
from durableflow.cli.formatting import (clip, compact, event_to_dict, figures_lines, node_table,
                                        print_json, progress_line, run_to_dict, seconds, show,
                                        status_text, table, when)
from durableflow.cli.params import POSITIVE_DURATION
from durableflow.errors import InvalidTransition

RUN_STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled", "compensating")
_JSON = click.option("--json", "as_json", is_flag=True,
                     help="Print JSON to stdout instead of a table.")


@click.command()
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs in this status.")
@click.option("--workflow", "workflow_id", metavar="ID", help="Only runs of this workflow id.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many runs, newest first.")
@click.option("--all", "show_all", is_flag=True,
              help="Child runs too (of Subflow, ForEach and While nodes), each with its parent.")
@_JSON
@click.pass_obj
def runs(state: State, status: str | None, workflow_id: str | None, limit: int, show_all: bool,
         as_json: bool) -> None:
    """List top-level runs, newest first (--all: child runs too)."""
    engine = state.engine(create=False)
    rows = engine.runs(status=status, workflow_id=workflow_id, limit=limit + 1, top_level=not show_all)
    more, rows = len(rows) > limit, rows[:limit]
    if as_json:   # the same keys either way; parent_run_id is null for a top-level run
        print_json(rows)
        return
    if not rows:
        click.echo("no runs")
    else:
        reruns = any(r["rerun_of"] for r in rows)
        columns = ["run", *(["parent"] if show_all else []), "workflow", "status", "created", "finished",
                   *(["rerun of"] if reruns else []), "error"]
        show(table(columns, ([r["run_id"], *([_parent(r)] if show_all else []),
                              f"{r['workflow_id']} v{r['workflow_version']}",
                              status_text(r["status"]), when(r["created_at"]), when(r["finished_at"]),
                              *([r["rerun_of"] or ""] if reruns else []), clip(r["error"], 60)]
                             for r in rows), no_wrap=("run", "parent", "rerun of")))
    # Notes on stderr: stdout stays the table.
    if more:
        click.echo(f"(the newest {limit}; there are more: --limit N, --status, --workflow)", err=True)
    if not show_all and engine.store.has_child_runs():
        click.echo("(top-level runs only; --all shows the child runs of Subflow, ForEach and While "
                   "nodes too)", err=True)


def _parent(row: dict) -> str:
    """A child run's parent run and the node that started it; empty at the top level."""
    if not row["parent_run_id"]:
        return ""
    return f"{row['parent_run_id']} ({row['parent_node_id']})" if row["parent_node_id"] else row["parent_run_id"]


@click.command()
@click.argument("run_id", metavar="RUN")
@_JSON
@click.pass_obj
def status(state: State, run_id: str, as_json: bool) -> None:
    """Show a run: its header, progress, time, retries and queue, and every node attempt.

    time: started to finished (to now while it runs), and the average of its completed node
    attempts. queue: its messages ready now, delayed (a timer, a retry's backoff) and held (a
    paused run, a concurrency limit); leased: in a worker's hands."""
    run = state.engine(create=False).get_run(run_id)
    if as_json:
        print_json(run_to_dict(run))
        return
    header = Text(f"run {run.run_id}  {run.workflow_id} v{run.workflow_version}  ")
    header.append_text(status_text(run.status))
    lines: list = [header]
    if run.parent_run_id:
        lines.append(f"parent:   {run.parent_run_id}")
    if run.rerun_of:
        how = (f" from {run.rerun_of['from']}" if run.rerun_of["from"]
               else " fresh" if run.rerun_of["fresh"] else "")
        lines.append(f"rerun of: {run.rerun_of['run_id']}{how}")
    lines.append(f"created:  {when(run.created_at)}"
                 + (f"  started: {when(run.started_at)}" if run.started_at else "")
                 + (f"  finished: {when(run.finished_at)}" if run.finished_at else ""))
    if run.paused_until:
        lines.append(f"paused until: {when(run.paused_until)}")
    lines.append(f"inputs:   {compact(run.inputs, 200) or '{}'}")
    if run.outputs is not None:
        lines.append(f"outputs:  {compact(run.outputs, 200)}")
    if run.error:
        lines.append(f"error:    {run.error}")
    lines.append(f"progress: {progress_line(run.progress)}")
    lines.extend(figures_lines(run.progress, run.finished))
    show(*lines)
    if run.nodes:
        show(node_table(run.nodes))


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new events until the run finishes. With --json: one JSON "
                   "object per line, as each event comes.")
@_JSON
@click.pass_obj
def history(state: State, run_id: str, follow: bool, as_json: bool) -> None:
    """Print a run's events in order: seq, time, node, type, data."""
    engine = state.engine(create=False)
    engine.store.get_run_row(run_id)  # RunNotFound for an unknown id
    events = engine.events(run_id, after=0, follow=follow)
    if as_json and follow:  # a stream: one object per line, written as it comes
        for e in events:
            click.echo(json.dumps(event_to_dict(e), ensure_ascii=False))
            sys.stdout.flush()
        return
    if as_json:
        print_json([event_to_dict(e) for e in events])
        return
    if follow:  # one line per event, as it comes
        for e in events:
            show(f"{e['seq']:>6}  {e['at']}  {e['node_id'] or '-':<16} {e['type']:<18} "
                 f"{_data(e)}")
        return
    show(table(["seq", "at", "node", "type", "data"],
               ([e["seq"], e["at"], e["node_id"] or "", e["type"], _data(e)]
                for e in events), no_wrap=("at", "type")))


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--for", "for_seconds", type=POSITIVE_DURATION, metavar="DURATION",
              help="Resume by itself after DURATION (e.g. 10m); without it, until `resume`.")
@click.pass_obj
def pause(state: State, run_id: str, for_seconds: float | None) -> None:
    """Pause a run: nodes running now finish, nothing new starts."""
    engine = state.engine(create=False)
    with _refused(engine, run_id, "pause"):
        engine.pause(run_id, for_seconds=for_seconds)
    suffix = f" for {seconds(for_seconds)}" if for_seconds else ""
    click.echo(f"run {run_id} paused{suffix}")


@click.command()
@click.argument("run_id", metavar="RUN")
@click.pass_obj
def resume(state: State, run_id: str) -> None:
    """Resume a paused run."""
    engine = state.engine(create=False)
    with _refused(engine, run_id, "resume"):
        engine.resume(run_id)
    click.echo(f"run {run_id} resumed")


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--reason", default="cancelled with `durableflow cancel`", show_default=True,
              help="Why, kept as the run's error so its history says who stopped it.")
@click.option("--compensate", is_flag=True,
              help="Undo what the run completed first: each completed node's compensationNodeId "
                   "runs, newest first (the run is compensating meanwhile, then cancelled).")
@click.pass_obj
def cancel(state: State, run_id: str, reason: str, compensate: bool) -> None:
    """Cancel a run.

    Pending nodes are cancelled and running ones are told to stop. Nothing is undone unless
    --compensate says so.

    Cancelling a cancelled run does nothing; exit 1 if the run had completed or failed.
    """
    status = state.engine(create=False).cancel(run_id, reason=reason, compensate=compensate)
    if status == "compensating":
        click.echo(f"run {run_id} compensating: it is cancelled once its compensations have run")
    else:
        click.echo(f"run {run_id} cancelled")


def _data(event: dict) -> str:
    """An event's data as one tight line of JSON, as it is stored."""
    data = event["data"]
    return "" if data is None else clip(json.dumps(data, separators=(",", ":"), ensure_ascii=False), 120)


@contextlib.contextmanager
def _refused(engine, run_id: str, verb: str):
    """Name the run and its status when the lifecycle refuses a change."""
    try:
        yield
    except InvalidTransition:
        current = engine.store.get_run_row(run_id)["status"]  # RunNotFound for an unknown id
        raise InvalidTransition(f"cannot {verb} run {run_id}: it is {current}") from None


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("name")
@click.option("--data", "data", metavar="JSON", default=None,
              help="The signal's payload, as JSON (the waiting node's output). Default: null.")
@click.pass_obj
def signal(state: State, run_id: str, name: str, data: str | None) -> None:
    """Send signal NAME to RUN: a WaitForSignal node waiting for it (now or later) takes it."""
    try:
        payload = None if data is None else json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    state.engine(create=False).signal(run_id, name, payload)
    click.echo(f"signal {name!r} sent to run {run_id}")


COMMANDS = (runs, status, history, pause, resume, cancel, signal)
