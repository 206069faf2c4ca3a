"""Commands about what starts, holds back or fails fast runs by itself: emit (Event nodes),
schedules (Timer nodes) and breakers (circuit breakers)."""

from __future__ import annotations

import json

import click

from durableflow.cli.app import State
from durableflow.cli.formatting import print_json, show, table, when
from durableflow.timing import OVERLAP

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON to stdout instead of text.")


@click.command()
@click.argument("name")
@click.option("--data", metavar="JSON", default=None,
              help="The event's payload, a JSON object: the inputs of each run it starts.")
@click.option("--dedupe-key", metavar="K", default=None,
              help="Start at most one run per workflow for this key, however often it is emitted.")
@_JSON
@click.pass_obj
def emit(state: State, name: str, data: str | None, dedupe_key: str | None, as_json: bool) -> None:
    """Start a run of every workflow with an Event node for NAME; print the run ids.

    The payload is checked against each workflow's inputsSchema first: all the runs start or
    none does (exit 2). Runs start as `start` starts them: a worker carries them out.
    """
    try:
        payload = {} if data is None else json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    engine = state.engine()
    started = engine.emit(name, payload, dedupe_key=dedupe_key)
    if as_json:
        print_json(started)
    for run_id in started if not as_json else ():
        click.echo(run_id)
    if not started:
        listening = engine.listeners(name)
        if not listening:
            click.echo(f"no workflow listens for event {name!r}; nothing started", err=True)
        else:
            click.echo(f"nothing started: {', '.join(listening)} already started a run for dedupe "
                       f"key {dedupe_key!r}", err=True)


@click.group(invoke_without_command=True)
@_JSON
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List Timer schedules (ID is workflow_id:node_id), or act on one."""
    if ctx.invoked_subcommand is not None:
        return
    rows = ctx.obj.engine(create=False).schedules()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no schedules (a registered workflow with a Timer entry node has one)")
        return
    show(table(["schedule", "expression", "time zone", "state", "last fire", "next fire", "overlap"],
               ([r["schedule_id"], r["expression"], r["timezone"], r["state"], when(r["last_at"]),
                 when(r["next_at"]) if r["state"] == "active" else "", r["overlap"]] for r in rows),
               no_wrap=("schedule",)))


@schedules.command("show")
@click.argument("schedule_id", metavar="ID")
@_JSON
@click.pass_obj
def show_schedule(state: State, schedule_id: str, as_json: bool) -> None:
    """Show one schedule and its most recent fire times."""
    row = state.engine(create=False).schedule(schedule_id)
    if as_json:
        print_json(row)
        return
    click.echo(f"schedule {row['schedule_id']}  {row['expression']} ({row['timezone']})  {row['state']}")
    click.echo(f"catchUp {row['catch_up']}, misfireGrace {row['misfire_grace_s']:g}s, overlap "
               f"{row['overlap']}; last fire {when(row['last_at'])}, next {when(row['next_at'])}")
    if row["fires"]:
        show(table(["fire time", "status", "run", "why"],
                   ([f["fire_at"], f["status"], f["run_id"] or "", f["reason"] or ""] for f in row["fires"]),
                   no_wrap=("fire time", "run")))


@schedules.command("pause")
@click.argument("schedule_id", metavar="ID")
@click.pass_obj
def pause_schedule(state: State, schedule_id: str) -> None:
    """Fire nothing until resumed (the schedule keeps its row)."""
    changed = state.engine(create=False).pause_schedule(schedule_id)
    click.echo(f"schedule {schedule_id} {'paused' if changed else 'was paused already'}")


@schedules.command("resume")
@click.argument("schedule_id", metavar="ID")
@click.pass_obj
def resume_schedule(state: State, schedule_id: str) -> None:
    """Fire again; fire times missed meanwhile follow the schedule's catchUp."""
    changed = state.engine(create=False).resume_schedule(schedule_id)
    click.echo(f"schedule {schedule_id} {'resumed' if changed else 'was not paused'}")


@schedules.command("trigger")
@click.argument("schedule_id", metavar="ID")
@click.pass_obj
def trigger_schedule(state: State, schedule_id: str) -> None:
    """Fire once now; print the run id."""
    click.echo(state.engine(create=False).trigger_schedule(schedule_id))


@schedules.command("backfill")
@click.argument("schedule_id", metavar="ID")
@click.option("--from", "start", metavar="T", required=True,
              help="The first moment, ISO-8601 with a zone (e.g. 2026-12-01T00:00:00Z).")
@click.option("--to", "end", metavar="T", required=True, help="The last moment, ISO-8601 with a zone.")
@click.option("--overlap", type=click.Choice(OVERLAP), default="bufferAll", show_default=True,
              help="When a fire meets a run of the schedule still going: bufferAll runs them one "
                   "after another, none dropped.")
@_JSON
@click.pass_obj
def backfill_schedule(state: State, schedule_id: str, start: str, end: str, overlap: str,
                      as_json: bool) -> None:
    """Run the schedule's workflow once per fire time in a past range.

    Each fire time runs at most once: a backfill run twice adds nothing, and a fire recorded
    as skipped may run now.
    """
    report = state.engine(create=False).backfill_schedule(schedule_id, start, end, overlap)
    if as_json:
        print_json(report)
        return
    for run_id in report["started"]:
        click.echo(run_id)
    click.echo(f"{report['fire_times']} fire time(s): {len(report['started'])} started, "
               f"{report['buffered']} waiting their turn, {report['already']} run before", err=True)


@click.group(invoke_without_command=True)
@_JSON
@click.pass_context
def breakers(ctx: click.Context, as_json: bool) -> None:
    """List circuit breakers: state, calls and failures in the window, when one probes."""
    if ctx.invoked_subcommand is not None:
        return
    rows = ctx.obj.engine(create=False).breakers()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no circuit breakers (a registered node with a circuitBreaker has one)")
        return
    show(table(["key", "state", "calls", "failed", "threshold", "window", "opened", "probes at"],
               ([r["key"], r["state"], r["calls"], r["failed"],
                 f"{r['failure_threshold']:g} of >= {r['minimum_calls']}", f"{r['window_s']:g}s",
                 when(r["opened_at"]), when(r["probe_at"])] for r in rows), no_wrap=("key",)))


@breakers.command("reset")
@click.argument("key")
@click.pass_obj
def reset_breaker(state: State, key: str) -> None:
    """Close breaker KEY by hand; the calls it counted are forgotten."""
    changed = state.engine(create=False).reset_breaker(key)
    click.echo(f"circuit breaker {key!r} {'closed' if changed else 'was closed already'}")


COMMANDS = (emit, schedules, breakers)
