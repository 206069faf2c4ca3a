"""The controls of a run page: pause, resume, cancel, rerun (from a node), signal.

Each is a POST form carrying the browser's CSRF token (checked by the server before this runs)
and asks first: the page's script puts up a confirm() and adds `confirm=yes`; without the
script, the server answers a form without it with a page that asks. `--read-only` leaves the
forms out and refuses the POSTs. The writes go through the Engine, like any other caller's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from durableflow.errors import ValidationError
from durableflow.ui.html import Markup, href, html, join, page, url

ACTIVE = ("pending", "running", "paused", "compensating")


@dataclass(frozen=True)
class Action:
    label: str
    when: tuple[str, ...]     # run statuses in which it is offered
    question: str             # what the confirmation asks; {run} is the run id


ACTIONS = {
    "pause": Action("Pause", ("pending", "running"),
                    "Pause run {run}? Nodes already running finish; nothing new starts until it is resumed."),
    "resume": Action("Resume", ("paused",), "Resume run {run}?"),
    "cancel": Action("Cancel", ACTIVE, "Cancel run {run}? Its running nodes are stopped; this cannot be undone."),
    "rerun": Action("Rerun", ("completed", "failed", "cancelled"),
                    "Start run {run} again as a new run?"),
    "signal": Action("Send signal", ("pending", "running", "paused"), "Send this signal to run {run}?"),
}

# What a redirect after a control may say: a code in the URL, never text from it.
NOTICES = {"paused": "Run paused.", "resumed": "Run resumed.", "cancelled": "Run cancelled.",
           "signalled": "Signal sent.", "rerun": "Rerun started: this is the new run."}
FRESH = "*fresh"     # no node id can be this (ids are [A-Za-z0-9_.-]+)


def controls_of(ctx, run: dict, defn) -> Markup:
    """The control forms of a run, each hidden unless the run's status allows it (the page's
    script shows and hides them as the status changes)."""
    if ctx.dash.read_only:
        return Markup("")
    run_id = run["run_id"]
    forms = []
    for name, action in ACTIONS.items():
        fields = Markup("")
        if name == "rerun":
            nodes = [n.node_id for n in defn.nodes] if defn is not None else []
            options = join(html('<option value="{}">from node {} (and downstream)</option>', n, n) for n in nodes)
            fields = html('<select name="from" aria-label="rerun from"><option value="">what failed or '
                          'never finished</option>{}<option value="{}">everything, fresh</option></select>',
                          options, FRESH)
        elif name == "signal":
            names = sorted({str(n.config.get("signal")) for n in defn.nodes
                            if n.runtime_type == "WaitForSignal" and n.config.get("signal")}) if defn else []
            choices = join(html('<option value="{}">', s) for s in names)
            fields = html('<input name="name" required placeholder="signal name" list="signal-names" '
                          'aria-label="signal name" autocomplete="off" value="{}"><datalist id="signal-names">{}'
                          '</datalist><input name="data" placeholder="data (JSON, optional)" aria-label="signal data" '
                          'autocomplete="off">', names[0] if len(names) == 1 else "", choices)
        forms.append(html(
            '<form class="control c-{}" method="post" action="{}" data-confirm="{}" data-when="{}"{}>'
            '<input type="hidden" name="csrf" value="{}">{}<button type="submit">{}</button></form>',
            name, href("runs", run_id, name), action.question.format(run=run_id), " ".join(action.when),
            Markup("") if run["status"] in action.when else Markup(" hidden"),
            ctx.csrf, fields, action.label))
    return html('<section class="controls" aria-label="controls">{}</section>', join(forms))


def confirm_page(ctx, run_id: str, name: str) -> Markup:
    """Asks before doing it: the same form again, with confirm=yes."""
    action = ACTIONS[name]
    kept = join(html('<input type="hidden" name="{}" value="{}">', k, v) for k, v in ctx.form.items()
                if k not in ("csrf", "confirm"))
    details = join(html("<li>{}: <code>{}</code></li>", k, v) for k, v in ctx.form.items()
                   if k not in ("csrf", "confirm") and v)
    body = html('<h1>{}</h1><p>{}</p><ul>{}</ul><form method="post" action="{}">'
                '<input type="hidden" name="csrf" value="{}"><input type="hidden" name="confirm" value="yes">{}'
                '<button type="submit">Yes, {}</button> <a href="{}">No, back to the run</a></form>',
                action.label, action.question.format(run=run_id), details, href("runs", run_id, name), ctx.csrf,
                kept, action.label.lower(), href("runs", run_id))
    return page(action.label, body, active="runs", db=ctx.dash.label)


def carry_out(ctx, run_id: str, name: str) -> str:
    """Do it; returns where to go next (the run, or the new run of a rerun) with its notice."""
    engine = ctx.dash.writer()
    form = ctx.form
    if name == "pause":
        engine.pause(run_id)
        return url(href("runs", run_id), notice="paused")
    if name == "resume":
        engine.resume(run_id)
        return url(href("runs", run_id), notice="resumed")
    if name == "cancel":
        engine.cancel(run_id, reason="cancelled from the dashboard")
        return url(href("runs", run_id), notice="cancelled")
    if name == "rerun":
        start = form.get("from") or None
        new_id = engine.rerun(run_id, None if start == FRESH else start, fresh=start == FRESH)
        return url(href("runs", new_id), notice="rerun")
    if name == "signal":
        signal = (form.get("name") or "").strip()
        if not signal:
            raise ValidationError("signal: give the signal's name")
        text = (form.get("data") or "").strip()
        try:
            data = json.loads(text) if text else None
        except ValueError as exc:
            raise ValidationError(f"signal {signal!r}: data is not JSON ({exc})") from None
        engine.signal(run_id, signal, data)
        return url(href("runs", run_id), notice="signalled")
    raise ValidationError(f"no control {name!r}")
