"""Commands that make work happen: run (in-process), start (enqueue), worker (a long-lived
process that carries runs out)."""

from __future__ import annotations

import sys

import click

from durableflow.cli.app import EXIT_FAILED, State, error_line, note
from durableflow.cli.formatting import (compact, node_table, print_json, run_to_dict, seconds,
                                        show, status_text)
from durableflow.cli.params import DURATION, MEMORY, POSITIVE_DURATION, build_inputs, input_options
from durableflow.cli.output import node_output_to_stderr
from durableflow.cli.signals import EXIT_INTERRUPTED, StopOnSignal
from durableflow.clock import parse_iso
from durableflow.durations import format_duration
from durableflow.errors import DurableflowError, WaitTimeout
from durableflow.model import TERMINAL_RUN_STATUSES

_CONCURRENCY = click.IntRange(min=1)


def secrets_option(fn):
    return click.option(
        "--secrets", "secrets_file", metavar="FILE",
        help="Values for {\"$secret\": NAME} references, looked up before the environment: "
             "NAME=value lines or a JSON object, in a file readable by its owner only "
             "(chmod 600).")(fn)
TICK = 0.05  # how often `worker` looks at its stop flag and, with --until-idle, at the queue


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@input_options
@click.option("--concurrency", "-c", type=_CONCURRENCY, default=4, show_default=True, metavar="N",
              help="Node bodies run at once by the in-process worker.")
@click.option("--timeout", type=POSITIVE_DURATION, metavar="DURATION",
              help="Give up after DURATION (e.g. 30s, 5m): the run is cancelled and the exit "
                   "code is 1.")
@click.option("--idempotency-key", metavar="KEY",
              help="Reuse the run already started with KEY instead of starting a new one.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the finished run as JSON instead of the summary table.")
@secrets_option
@click.pass_obj
def run_cmd(state: State, file: str, input_pairs, inputs_file, concurrency: int,
            timeout: float | None, idempotency_key: str | None, as_json: bool,
            secrets_file: str | None) -> None:
    """Run a workflow file in this process until it finishes.

    Registers FILE, starts a run and works on it here, with a progress bar on a terminal.
    The worker it starts is a worker like any other: while it waits for this run it also
    takes other work queued in the same database.
    Prints a summary of every node attempt, then the run's status and outputs.
    Exit 0 when the run completed, 1 when it failed or was cancelled.
    """
    from durableflow.cli.live import follow
    from durableflow.definitions import load_definition
    inputs = build_inputs(input_pairs, inputs_file)
    defn = load_definition(file)  # an invalid file is refused before the database is opened
    # A damaged database is refused before anything is written, a bad secrets file before it is opened.
    engine = state.engine(check=True, secrets=secrets_file)
    run_id = engine.start(defn, inputs, idempotency_key=idempotency_key)
    live = sys.stdout.isatty() and not as_json
    timed_out = False
    w = engine.worker(concurrency=concurrency)
    with StopOnSignal(w) as signals, node_output_to_stderr():
        try:
            w.start()
        except DurableflowError as exc:   # e.g. its workers row could not be written
            raise type(exc)(f"{exc.message}; run {run_id} was started, and `durableflow worker` "
                            f"carries it on") from None
        try:
            run = follow(engine, run_id, timeout=timeout, live=live, stop=signals.requested, worker=w)
        except WaitTimeout:
            timed_out = True
            engine.cancel(run_id, reason=f"cancelled: `durableflow run --timeout "
                                         f"{format_duration(timeout)}` passed")
            run = engine.wait(run_id)
        finally:
            if signals.requested.is_set():
                note(f"interrupted: finishing {w.busy} node(s) in hand "
                     "(Ctrl-C again to quit at once)")
            # A worker stopped by an error (storage that keeps failing) records nothing more:
            # the nodes in hand are told to stop rather than waited for.
            w.stop(wait=not w.errors)
    if w.errors:
        raise w.errors[0]
    if run is not None:
        run = engine.get_run(run_id)  # after the nodes in hand settled (a failed run cancels them)
    if run is None:
        now = engine.store.run_statuses([run_id]).get(run_id)
        if now in TERMINAL_RUN_STATUSES:
            error_line(f"interrupted; run {run_id} is {now}")
        else:
            error_line(f"interrupted; run {run_id} is left {now}: `durableflow worker` carries "
                       "it on, `durableflow cancel` stops it")
        click.get_current_context().exit(EXIT_INTERRUPTED)
    if timed_out:
        error_line(f"run {run_id} did not finish within {seconds(timeout)}; cancelled")
    if as_json:
        print_json(run_to_dict(run))
    else:
        show(node_table(run.nodes))
        _print_run_result(run)
    if run.status != "completed":
        click.get_current_context().exit(EXIT_FAILED)


def _print_run_result(run) -> None:
    from rich.text import Text
    line = Text(f"run {run.run_id} ")
    line.append_text(status_text(run.status))
    if run.started_at and run.finished_at:
        line.append(f" in {seconds(parse_iso(run.finished_at) - parse_iso(run.started_at))}")
    show(line)
    if run.error:
        show(f"error: {run.error}")
    if run.outputs:
        show(f"outputs: {compact(run.outputs, None)}")


@click.command()
@click.argument("workflow", metavar="FILE|WORKFLOW_ID")
@input_options
@click.option("--idempotency-key", metavar="KEY",
              help="If a run with KEY exists, print its id instead of starting another.")
@click.option("--version", "version", type=click.IntRange(min=1), metavar="N",
              help="Version of a registered workflow to start (default: the latest).")
@click.option("--priority", type=click.Choice(["high", "normal", "low"]), default="normal",
              show_default=True, help="Claim priority of the run's nodes, after each node's own priority (see "
                   "the README's claim order).")
@click.pass_obj
def start(state: State, workflow: str, input_pairs, inputs_file, idempotency_key: str | None,
          version: int | None, priority: str) -> None:
    """Start a run and print its id.

    WORKFLOW is a definition file or the id of a registered workflow.

    A file is registered first (same content, same version). Nothing runs until a
    `durableflow worker` picks the run up.
    """
    from durableflow.cli.commands_definitions import looks_like_file
    if version is not None and looks_like_file(workflow):
        raise click.UsageError("--version applies to a registered workflow id, not to a file "
                               "(a file's version is its `version` key)")
    from durableflow.definitions import load_definition
    inputs = build_inputs(input_pairs, inputs_file)
    source = load_definition(workflow) if looks_like_file(workflow) else workflow
    engine = state.engine()
    run_id = engine.start(source, inputs, idempotency_key=idempotency_key, version=version,
                          priority=priority)
    click.echo(run_id)


@click.command()
@click.option("--concurrency", "-c", type=_CONCURRENCY, default=4, show_default=True, metavar="N",
              help="Node bodies run at once.")
@click.option("--lease", "lease", type=POSITIVE_DURATION, default="30s", show_default=True,
              metavar="DURATION",
              help="Lease length on a claimed node; renewed while the node runs. Another worker "
                   "takes the node over when a lease runs out.")
@click.option("--until-idle", is_flag=True,
              help="Exit once nothing is claimable, running or leased, and nothing becomes "
                   "visible within --max-wait.")
@click.option("--max-wait", type=DURATION, default="60s", show_default=True, metavar="DURATION",
              help="With --until-idle: wait for work due within DURATION (a retry's backoff), "
                   "not for work due later (a 3-day Wait).")
@click.option("--cpu", type=click.FloatRange(min=0, min_open=True), default=None, metavar="N",
              help="CPUs this worker offers nodes that declare `resources` (default: the "
                   "machine's cores).")
@click.option("--memory", type=MEMORY, default=None, metavar="SIZE",
              help="Memory it offers them, e.g. 8G or 512M (default: the machine's).")
@secrets_option
@click.pass_obj
def worker(state: State, concurrency: int, lease: float, until_idle: bool, max_wait: float,
           cpu: float | None, memory: int | None, secrets_file: str | None) -> None:
    """Work on runs until stopped (or idle, with --until-idle).

    SIGTERM or Ctrl-C: stop claiming, finish the nodes in hand, exit 0.

    Starts by recovering: the leases of dead workers on this host are reclaimed at once,
    those of other hosts once they expire. Several workers may share one database.
    """
    # A damaged database is refused before anything is written, a bad secrets file before it is opened.
    engine = state.engine(check=True, secrets=secrets_file)
    offered = {k: v for k, v in (("cpu", cpu), ("memoryMb", memory)) if v is not None}
    w = engine.worker(concurrency=concurrency, lease_seconds=lease, resources=offered or None)
    with StopOnSignal(w) as signals, node_output_to_stderr():
        w.start()
        recovered = w.recovered
        if recovered["reclaimed"] or recovered["dead_workers"]:
            stopped = recovered["processes_killed"]
            note(f"recovered {recovered['reclaimed']} message(s) from "
                 f"{len(recovered['dead_workers'])} dead worker(s)"
                 + (f", stopping {stopped} node process(es) they left running" if stopped else ""))
        try:
            cpus, megabytes = w.capacity
            note(f"worker {w.worker_id} started on {engine.path} (concurrency {concurrency}, "
                 f"lease {format_duration(lease)}, offers {cpus:g} cpu and {megabytes} MB)")
            while not signals.requested.wait(TICK):
                if w.errors:
                    break
                if until_idle and _drained(engine, w, max_wait):
                    note(f"worker {w.worker_id}: idle, exiting")
                    break
        finally:
            if signals.requested.is_set():
                note(f"worker {w.worker_id} stopping: finishing {w.busy} node(s) in hand "
                     "(Ctrl-C again to quit at once)")
            w.stop(wait=not w.errors)
    if w.errors:
        err = w.errors[0]
        error_line(f"worker {w.worker_id} stopped: {err}" if isinstance(err, DurableflowError)
                   else f"worker {w.worker_id} crashed: {type(err).__name__}: {err}")
        click.get_current_context().exit(EXIT_FAILED)
    note(f"worker {w.worker_id} stopped")


def _drained(engine, w, max_wait: float) -> bool:
    """Nothing for this worker to do now or within max_wait, and nobody holding a lease.

    The worker's own upkeep runs once a second; an idle worker may be about to exit before
    that. So a pause or a deadline due within max_wait counts as work to wait for, and one
    already due gets the upkeep here (the pause resumes, the run past its deadline fails)."""
    rounds = w.claim_rounds
    if not w.idle.is_set() or w.busy:
        return False
    store = engine.store
    if store.leased_count():
        return False
    now = engine.clock.now()
    run_due = store.next_run_due_at()
    if run_due is not None and parse_iso(run_due) <= now:
        engine.maintain()
        return False
    for due in (store.next_visible_at(), run_due):
        if due is not None and parse_iso(due) - now <= max_wait:
            return False
    # Still idle, and no claim began while we looked: one that committed between the reads
    # above could have taken the last ready message and left its node's next one unwritten.
    return w.idle.is_set() and not w.busy and w.claim_rounds == rounds


COMMANDS = (run_cmd, start, worker)
