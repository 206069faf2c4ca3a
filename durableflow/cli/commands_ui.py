"""`durableflow ui`: the web dashboard."""

from __future__ import annotations

import re
import threading
from urllib.parse import quote

import click

from durableflow.cli.app import State, note
from durableflow.cli.signals import StopOnSignal
from durableflow.errors import DurableflowError, ValidationError

TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]{16,256}")


@click.command("ui")
@click.option("--db", "db", metavar="PATH",
              help="The database file; the same as the global --db (given here, it wins).")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="The address to listen on. Anything but loopback needs --token or --read-only: "
                   "whoever reaches it could otherwise pause and cancel your runs.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="The port to listen on (0: any free port; the address printed says which).")
@click.option("--read-only", is_flag=True,
              help="No controls: the pages only read, and the database is never written.")
@click.option("--token", envvar="DURABLEFLOW_UI_TOKEN", show_envvar=True, metavar="TOKEN",
              help="An access token every request must carry (the address printed ends in ?token=...; "
                   "the browser keeps it in a cookie, scripts send an X-Durableflow-Token header). "
                   "At least 16 characters of A-Z a-z 0-9 . _ ~ -.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Another name the Host header may carry (a reverse proxy's); repeatable. Other "
                   "names are refused, so a web page cannot reach the dashboard by DNS rebinding.")
@click.pass_obj
def ui(state: State, db: str | None, host: str, port: int, read_only: bool, token: str | None,
       allow_hosts: tuple[str, ...]) -> None:
    """Serve the web dashboard: runs, a live graph of each run, its timeline, and controls.

    Pages: the runs (filter, search, paging), a run (its graph coloured by node status and
    updated live from the run's events, each node's attempts, the timeline), workflows and
    their definitions, dead letters, schedules, circuit breakers, stats. Controls (pause,
    resume, cancel, rerun from a node, signal) each ask first; --read-only removes them.

    The database is opened read-only; the controls write through a second connection opened
    the first time one is used. Ctrl-C stops the server.
    """
    from durableflow.ui import Dashboard, DashboardServer, is_loopback

    if token is not None and not TOKEN_CHARS.fullmatch(token):
        raise ValidationError("--token: give at least 16 characters of A-Z a-z 0-9 . _ ~ - (e.g. "
                              "python3 -c 'import secrets; print(secrets.token_urlsafe())')")
    if not is_loopback(host) and not read_only and token is None:
        raise ValidationError(f"--host {host} is not a loopback address: anyone who reaches it could "
                              f"control your runs; add --token TOKEN (every request must carry it) "
                              f"or --read-only")
    dash = Dashboard(db or state.db, read_only=read_only, token=token)
    try:
        server = DashboardServer(dash, host, port, allowed_hosts=allow_hosts)
    except OSError as exc:
        dash.close()
        raise DurableflowError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    address = server.url + (f"?token={quote(token)}" if token else "")
    mode = "read-only, no controls" if read_only else "controls on"
    note(f"dashboard for {dash.path} at {address} ({mode}); Ctrl-C stops it")
    thread = threading.Thread(target=server.serve, name="durableflow-ui-server", daemon=True)
    try:
        with StopOnSignal() as signals:
            thread.start()
            signals.requested.wait()
    finally:
        server.shutdown()
        thread.join(5)
        server.close()
    note("dashboard stopped")


COMMANDS = (ui,)
