"""The dashboard's other pages: workflows and their definitions, dead letters, schedules,
circuit breakers, stats."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from durableflow.clock import iso
from durableflow.definitions.save import dump_yaml
from durableflow.errors import DefinitionError, ValidationError
from durableflow.storage import ui as reads
from durableflow.ui import graph
from durableflow.ui.html import Markup, badge, clip, href, html, join, link, page, seconds, table, url, when
from durableflow.ui.views_runs import run_link

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}


def _page(ctx, title: str, body: Any, active: str) -> Markup:
    return page(title, body, active=active, db=ctx.dash.label, read_only=ctx.dash.read_only,
                notice=ctx.notice)


# --- workflows --------------------------------------------------------------------------------

def workflows(ctx) -> Markup:
    versions = ctx.dash.engine.workflows()
    rows = ((link(url(href("workflows", w["workflow_id"]), version=w["version"]), w["workflow_id"]),
             link(url(href("workflows", w["workflow_id"]), version=w["version"]), f"v{w['version']}"),
             when(w["created_at"]), link(url("/runs", workflow=w["workflow_id"], children="1"), w["runs"]),
             html('<span class="mono" title="{}">{}</span>', w["source_path"] or "", clip(w["source_path"], 60)))
            for w in versions)
    body = html("<h1>Workflows</h1>{}", table(("workflow", "version", "registered", "runs", "registered from"),
                                               rows, empty="no workflows registered yet"))
    return _page(ctx, "Workflows", body, "workflows")


def workflow(ctx, workflow_id: str) -> Markup:
    text = ctx.query.get("version")
    if text and not text.isdigit():
        raise ValidationError(f"version must be a whole number, not {text!r}")
    row = ctx.dash.engine.store.get_workflow(workflow_id, int(text) if text else None)
    version = row["version"]
    others = [w["version"] for w in ctx.dash.engine.workflows() if w["workflow_id"] == workflow_id]
    tabs = join(html('<a class="{}" href="{}">v{}</a>', "active" if v == version else "",
                     url(href("workflows", workflow_id), version=v), v) for v in others)
    try:
        defn = ctx.dash.engine.definition(workflow_id, version)
        drawing, shown = graph.svg(defn), dump_yaml(defn)
        name = defn.name
    except DefinitionError as exc:
        drawing = html('<p class="empty">{}</p>', exc.message)
        shown, name = json.dumps(json.loads(row["definition"]), indent=2, ensure_ascii=False), None
    facts = join(html("<tr><th>{}</th><td>{}</td></tr>", k, v) for k, v in (
        ("name", name or ""), ("version", version), ("registered", when(row["created_at"])),
        ("from", row["source_path"] or ""), ("checksum", html('<span class="mono">{}</span>', row["checksum"])),
        ("runs", link(url("/runs", workflow=workflow_id), "runs of this workflow")),
        ("JSON", link(url(href("workflows", workflow_id, "definition.json"), version=version), "as stored"))))
    body = html('<h1>Workflow <span class="mono">{}</span></h1><p class="tabs">{}</p>'
                '<table class="facts">{}</table><section class="graph-box"><h2>Graph</h2>{}</section>'
                '<section><h2>Definition</h2><pre class="value definition">{}</pre></section>',
                workflow_id, tabs, facts, drawing, shown)
    return _page(ctx, f"Workflow {workflow_id}", body, "workflows")


def definition_json(ctx, workflow_id: str) -> str:
    text = ctx.query.get("version")
    if text and not text.isdigit():
        raise ValidationError(f"version must be a whole number, not {text!r}")
    return ctx.dash.engine.store.get_workflow(workflow_id, int(text) if text else None)["definition"]


# --- dead letters -----------------------------------------------------------------------------

def dead_letters(ctx) -> Markup:
    text = ctx.query.get("before")
    if text and not text.isdigit():
        raise ValidationError(f"before must be a whole number, not {text!r}")
    limit = 50
    rows = ctx.dash.read(reads.dead_letters_page, before=int(text) if text else None, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    body = html('<h1>Dead letters</h1><p class="hint">A message is dead-lettered when its delivery was lost '
                'too many times (its worker died each time); its node failed. Run the node again with a rerun '
                '<code>--from</code> it.</p>{}<div class="pager">{}{}</div>',
                table(("message", "run", "node", "kind", "deliveries lost", "at", "error", "payload"),
                      ((d["message_id"], run_link(d["run_id"]), d["target_node_id"] or "", d["kind"], d["attempts"],
                        when(d["created_at"]), html('<span class="err">{}</span>', clip(d["error"], 120)),
                        html('<span class="mono">{}</span>', clip(d["payload"], 80))) for d in rows),
                      empty="no dead letters"),
                link("/dead-letters", "← Newest", "button") if text else "",
                link(url("/dead-letters", before=rows[-1]["id"]), "Older →", "button") if more else "")
    return _page(ctx, "Dead letters", body, "dead-letters")


# --- schedules --------------------------------------------------------------------------------

def schedules(ctx) -> Markup:
    rows = ((link(href("schedules", s["schedule_id"]), s["schedule_id"]),
             link(href("workflows", s["workflow_id"]), s["workflow_id"]),
             html('<span class="mono">{}</span>', s["expression"]), s["timezone"], badge(s["state"]),
             when(s["last_at"]), when(s["next_at"]), s["overlap"], s["catch_up"])
            for s in ctx.dash.engine.schedules())
    body = html("<h1>Schedules</h1>{}", table(
        ("schedule", "workflow", "when", "time zone", "state", "last fire", "next fire", "overlap", "catch up"),
        rows, empty="no schedules: a registered workflow whose entry node is a Timer has one"))
    return _page(ctx, "Schedules", body, "schedules")


def schedule(ctx, schedule_id: str) -> Markup:
    s = ctx.dash.engine.schedule(schedule_id, fires=50)
    facts = join(html("<tr><th>{}</th><td>{}</td></tr>", k, v) for k, v in (
        ("workflow", link(href("workflows", s["workflow_id"]), s["workflow_id"])), ("node", s["node_id"]),
        ("when", s["expression"]), ("time zone", s["timezone"]), ("state", badge(s["state"])),
        ("last fire", when(s["last_at"])), ("next fire", when(s["next_at"])), ("overlap", s["overlap"]),
        ("catch up", s["catch_up"]), ("misfire grace", seconds(s["misfire_grace_s"]))))
    fires = table(("fire time", "status", "run", "why", "recorded"),
                  ((when(f["fire_at"]), badge(f["status"]), run_link(f["run_id"]), f["reason"] or "",
                    when(f["created_at"])) for f in s["fires"]), empty="no fires yet")
    body = html('<h1>Schedule <span class="mono">{}</span></h1><table class="facts">{}</table>'
                '<section><h2>Recent fires</h2>{}</section>', schedule_id, facts, fires)
    return _page(ctx, f"Schedule {schedule_id}", body, "schedules")


# --- circuit breakers -------------------------------------------------------------------------

def breakers(ctx) -> Markup:
    """The engine's breakers() where it has one; else the table's rows where there are any;
    else a note that they are not there yet."""
    engine = ctx.dash.engine
    if callable(getattr(engine, "breakers", None)):
        items = [_as_dict(b) for b in engine.breakers()]
        columns = list(dict.fromkeys(k for item in items for k in item))
        content = table(columns, ([_cell(item.get(c)) for c in columns] for item in items),
                        empty="no circuit breaker has recorded a call yet")
    else:
        columns, rows = ctx.dash.read(reads.breakers)
        if rows:
            content = table(columns, ([_cell(v) for v in row] for row in rows))
        else:
            content = Markup('<p class="empty">Not yet: this version of durableflow does not act on '
                             '<code>circuitBreaker</code> (the definition key loads, with a warning). '
                             'The breakers and their state show here once it does.</p>')
    return _page(ctx, "Circuit breakers", html("<h1>Circuit breakers</h1>{}", content), "breakers")


def _as_dict(item: Any) -> dict:
    if isinstance(item, dict):
        return item
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    if hasattr(item, "_asdict"):
        return item._asdict()
    return {"breaker": item}


def _cell(value: Any) -> Any:
    if value in ("closed", "open", "half_open"):
        return html('<span class="badge b-{}">{}</span>', value, value)
    if isinstance(value, (dict, list)):
        return clip(json.dumps(value, ensure_ascii=False), 120)
    return clip(str(value), 120) if value is not None else ""


# --- stats ------------------------------------------------------------------------------------

def stats(ctx) -> Markup:
    window = ctx.query.get("window") or "24h"
    if window not in WINDOWS:
        raise ValidationError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    span = WINDOWS[window]
    since = iso(ctx.dash.engine.clock.now() - span)
    data = ctx.dash.read(reads.stats, since=since)
    by_status = data["runs_by_status"]
    total = sum(by_status.values())
    status_rows = ((link(url("/runs", status=s, children="1"), badge(s)), f"{n:,}",
                    f"{100.0 * n / total:.1f}%" if total else "") for s, n in sorted(by_status.items()))
    hours = data["finished_by_hour"]
    finished = sum(sum(h.values()) for h in hours.values())
    tabs = join(html('<a class="{}" href="{}">{}</a>', "active" if w == window else "", url("/stats", window=w), w)
                for w in WINDOWS)
    slow = table(("workflow", "node", "completed", "average", "slowest"),
                 ((s["workflow_id"], s["node_id"], s["completed"], seconds(s["avg_s"]), seconds(s["max_s"]))
                  for s in data["slowest_nodes"]), empty="no completed nodes in this window")
    body = html('<h1>Stats</h1><p class="tabs">{}</p><div class="cards">'
                '<section><h2>Runs by status</h2>{}<p class="hint">all {} runs, child runs included</p></section>'
                '<section><h2>Throughput</h2><p class="big">{}</p><p class="hint">runs finished in the last {} '
                '({} per hour)</p>{}</section></div><section><h2>Slowest nodes</h2>'
                '<p class="hint">average time of completed attempts in the runs started in the last {}</p>{}</section>',
                tabs, table(("status", "runs", "share"), status_rows, empty="no runs yet"), f"{total:,}",
                f"{finished:,}", window, f"{finished / (span / 3600):.1f}", _hours_chart(hours), window, slow)
    return _page(ctx, "Stats", body, "stats")


def _hours_chart(hours: dict[str, dict[str, int]]) -> Markup:
    """Runs finished per hour as SVG bars (completed, failed, cancelled stacked)."""
    if not hours:
        return Markup('<p class="empty">no run finished in this window</p>')
    peak = max(sum(h.values()) for h in hours.values()) or 1
    bar_w, height = 14, 80
    bars = []
    for i, (hour, counts) in enumerate(sorted(hours.items())):
        y: float = height
        for status in ("completed", "failed", "cancelled"):
            n = counts.get(status, 0)
            if not n:
                continue
            tall = height * n / peak
            y -= tall
            bars.append(html('<rect class="bar s-{}" x="{}" y="{}" width="{}" height="{}">'
                             '<title>{}:00 {} {}</title></rect>',
                             status, i * (bar_w + 2), f"{y:.1f}", bar_w - 1, f"{tall:.1f}",
                             hour.replace("T", " "), n, status))
    width = len(hours) * (bar_w + 2)
    return html('<svg class="chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
                'aria-label="runs finished per hour">{}</svg>', width, height, width, height, join(bars))
