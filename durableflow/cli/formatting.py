"""Output: rich tables for people, JSON for programs. Everything here writes to stdout;
errors and notes go to stderr through app.error_line / app.note."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from typing import Any, Iterable, Sequence

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "completed": "green", "failed": "red", "cancelled": "yellow", "running": "blue",
    "paused": "magenta", "compensating": "magenta", "skipped": "dim", "pending": "",
    "waiting": "cyan", "ready": "", "leased": "blue", "acked": "green", "dead": "red",
}
_PIPE_WIDTH = 200  # rich's 80 columns would wrap run ids and errors when piped


def console() -> Console:
    """A console on the current stdout (looked up per call: CliRunner swaps sys.stdout)."""
    out = sys.stdout
    tty = out.isatty()
    return Console(file=out, highlight=False, width=None if tty else _PIPE_WIDTH,
                   force_terminal=None if tty else False)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def compact(value: Any, limit: int | None = 80) -> str:
    """A value on one line: JSON, clipped."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return clip(text, limit)


def clip(text: str | None, limit: int | None = 80) -> str:
    if not text:
        return ""
    text = " ".join(str(text).split())
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def when(stamp: str | None) -> str:
    """`2026-11-27T23:44:24.893Z` -> `2026-11-27 23:44:24`."""
    if not stamp:
        return ""
    return stamp.replace("T", " ")[:19]


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.2f}s"
    minutes, secs = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def status_text(status: str | None) -> Text:
    status = status or ""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
          no_wrap: Sequence[str] = ()) -> Table:
    """A plain table; cells are text (never rich markup: user data may hold `[brackets]`)."""
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", show_edge=False,
              pad_edge=False)
    for name in columns:
        t.add_column(name, no_wrap=name in no_wrap, overflow="fold")
    for row in rows:
        t.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell))
                    for cell in row))
    return t


def show(*renderables: Any) -> None:
    """Print to stdout; when piped, without the trailing blanks that pad table cells."""
    out = console()
    with contextlib.ExitStack() as stack:
        capture = None if out.is_terminal else stack.enter_context(out.capture())
        for r in renderables:
            if isinstance(r, str):
                out.print(r, markup=False, highlight=False, soft_wrap=True)
            else:
                out.print(r)
    if capture is not None:
        text = "\n".join(line.rstrip() for line in capture.get().splitlines())
        click.echo(text)


# --- shapes for JSON ------------------------------------------------------------------------------

def run_to_dict(run) -> dict:
    data = dataclasses.asdict(run)
    for node, instance in zip(data["nodes"], run.nodes):
        node["duration"] = instance.duration
    return data


def event_to_dict(event: dict) -> dict:
    data = dict(event)
    if isinstance(data.get("data"), str):
        try:
            data["data"] = json.loads(data["data"])
        except ValueError:
            pass
    return data


def node_table(nodes, *, title: str | None = None) -> Table:
    """One row per attempt: node, status, attempt, duration, error (iteration when any loops)."""
    loops = any(n.iteration for n in nodes)
    columns = ["node", *(["iter"] if loops else []), "status", "attempt", "duration", "error"]
    rows = []
    for n in nodes:
        error = n.error or (n.waiting_reason and f"waiting: {n.waiting_reason}") or ""
        if n.status == "running" and n.progress is not None:
            error = f"{n.progress:.0f}% {n.progress_message or ''}".strip()
        name = f"{n.node_id} (undoes {n.compensates})" if getattr(n, "compensates", None) else n.node_id
        rows.append([name, *([n.iteration] if loops else []), status_text(n.status),
                     n.attempt, seconds(n.duration), clip(error, 100)])
    return table(columns, rows, title=title, no_wrap=("node",))


def figures_lines(progress: dict, finished: bool) -> list[str]:
    """A run's time, retries and queue, as `status` prints them under its progress line."""
    elapsed, avg = progress.get("elapsed_seconds"), progress.get("avg_node_seconds")
    time = "not started" if elapsed is None else seconds(elapsed) + ("" if finished else " so far")
    if avg is not None:
        time += f", {seconds(avg)} per completed node on average"
    return [f"time:     {time}",
            f"retries:  {progress.get('retries_used') or 0}",
            f"queue:    {progress.get('queue_depth') or 0} ({progress.get('queue_ready') or 0} ready, "
            f"{progress.get('queue_delayed') or 0} delayed, {progress.get('queue_held') or 0} held), "
            f"{progress.get('queue_leased') or 0} leased"]


def progress_line(progress: dict) -> str:
    done = sum(progress.get(k, 0) for k in ("completed", "failed", "skipped", "cancelled"))
    parts = [f"{done}/{progress.get('total', 0)} nodes done ({progress.get('percent', 0)}%)"]
    for key in ("running", "waiting", "pending", "failed", "skipped", "cancelled", "unreached"):
        if progress.get(key):
            parts.append(f"{progress[key]} {'never reached' if key == 'unreached' else key}")
    eta = progress.get("eta_seconds")
    if eta:
        parts.append(f"eta {seconds(eta)}")
    return ", ".join(parts)
