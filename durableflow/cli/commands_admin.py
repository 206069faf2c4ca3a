"""Upkeep commands: recover, doctor, dead-letters, stats."""

from __future__ import annotations

import click

from durableflow.cli.app import EXIT_FAILED, State
from durableflow.cli.formatting import clip, compact, print_json, seconds, show, table, when
from durableflow.errors import DatabaseCorrupt


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was reclaimed as JSON.")
@click.pass_obj
def recover(state: State, as_json: bool) -> None:
    """Reclaim the leases of dead workers now.

    A worker also does this when it starts.

    Workers on this host whose process is gone lose their leases at once (the node
    processes they left running are stopped first); others when their leases expire. A
    message delivered too often is dead-lettered.
    """
    result = state.engine(create=False).recover()
    if as_json:
        print_json(result)
        return
    dead = result["dead_workers"]
    click.echo(f"dead workers: {len(dead)}" + (f" ({', '.join(dead)})" if dead else ""))
    click.echo(f"messages reclaimed: {result['reclaimed']}")
    click.echo(f"dead-lettered: {result['dead_lettered']}")
    click.echo(f"node processes stopped: {result['processes_killed']}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def doctor(state: State, as_json: bool) -> None:
    """Check the database's integrity; exit 1 if it is not ok.

    Also shows the schema version and what the queue holds.
    """
    try:
        report = state.engine(create=False).doctor()
    except DatabaseCorrupt as exc:
        # Opening already failed on the damage: say so without sending the user back here.
        raise DatabaseCorrupt(exc.message.replace("; run `durableflow doctor`", "")
                              + "; SQLite cannot read it: restore it from a backup, or copy out what "
                                "is readable with `sqlite3 FILE .recover | sqlite3 NEW.db`") from None
    ok = report["integrity"] == "ok"
    if as_json:
        print_json({**report, "ok": ok})
    else:
        click.echo(f"database:       {report['path']}")
        if "schema_version" in report:
            click.echo(f"schema version: {report['schema_version']}")
        if ok:
            click.echo("integrity:      ok")
        else:
            click.echo("integrity:      FAILED")
            for problem in report["integrity"]:
                click.echo(f"  {problem}")
        queue = report.get("queue")
        if queue:
            click.echo("queue:          " + ", ".join(f"{k} {v}" for k, v in queue.items()))
        for dead in report.get("dead_workers", ()):
            click.echo(f"dead worker:    {dead['worker_id']} (pid {dead['pid']} is gone; its leases "
                       f"go back with the next worker or `durableflow recover`)")
    if not ok:
        click.get_current_context().exit(EXIT_FAILED)


@click.command("dead-letters")
@click.option("--requeue", "requeue_id", type=click.IntRange(1, 2**63 - 1), metavar="MESSAGE_ID",
              help="Put this dead message back on the queue (refused if its run is finished).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON to stdout instead of a table.")
@click.pass_obj
def dead_letters(state: State, requeue_id: int | None, as_json: bool) -> None:
    """List dead-lettered messages, or requeue one.

    A message is dead-lettered when it was delivered too often; its node failed.
    """
    engine = state.engine(create=False)
    if requeue_id is not None:
        engine.requeue_dead_letter(requeue_id)
        if as_json:
            print_json({"requeued": requeue_id})
        else:
            click.echo(f"message {requeue_id} requeued")
        return
    rows = engine.dead_letters()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no dead letters")
        return
    show(table(["message", "run", "node", "attempts", "at", "error", "payload"],
               ([r["message_id"], r["run_id"] or "", r["target_node_id"] or "", r["attempts"],
                 when(r["created_at"]), clip(r["error"], 60), compact(r["payload"], 40)]
                for r in rows), no_wrap=("run",)))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts and figures as JSON.")
@click.pass_obj
def stats(state: State, as_json: bool) -> None:
    """Runs, node instances and messages by status, the last hour's throughput, and the
    slowest nodes of the last day.

    Throughput: runs finished (child runs too) and node attempts completed in the last hour, in
    all and per minute (--json: minute by minute). Slowest nodes: per workflow and node, the
    attempts completed in the last 24 hours, the ten slowest on average.
    """
    counts = state.engine(create=False).stats()
    if as_json:
        print_json(counts)
        return
    for key in ("runs", "node_instances", "messages"):
        by_status = counts[key]
        click.echo(f"{key + ':':<19}{sum(by_status.values()):>8}  "
                   + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()) if v))
    for key in ("dead_letters", "events", "workers_running", "workers_dead", "workflows",
                "workflow_versions", "database_bytes"):
        value = counts[key]
        click.echo(f"{key + ':':<19}{'-' if value is None else value:>8}")   # no size for a URI
    hour = counts["throughput_last_hour"]
    click.echo(f"{'last hour:':<19}{hour['runs_finished']:>8}  runs finished, "
               f"{hour['runs_per_minute']:g} a minute")
    click.echo(f"{'':<19}{hour['nodes_completed']:>8}  nodes completed, "
               f"{hour['nodes_per_minute']:g} a minute")
    slowest = counts["slowest_nodes_last_day"]["nodes"]
    if not slowest:
        click.echo("slowest nodes, last day: none completed")
        return
    show(table(["workflow", "node", "completed", "average", "max"],
               ([s["workflow_id"], s["node_id"], s["completed"], seconds(s["avg_s"]), seconds(s["max_s"])]
                for s in slowest), title="slowest nodes, last day", no_wrap=("workflow", "node")))


COMMANDS = (recover, doctor, dead_letters, stats)
