"""The runs list and a run's page: its graph, controls, nodes' attempts, child runs, timeline.

Each page is one read transaction of storage/ui.py (one snapshot), paged by cursor from an index.
"""

from __future__ import annotations

from durableflow.clock import parse_iso
from durableflow.errors import DefinitionError, ValidationError
from durableflow.model import RunStatus
from durableflow.storage import ui as reads
from durableflow.ui import graph
from durableflow.ui.controls import controls_of
from durableflow.ui.html import (
    Markup, badge, clip, href, html, join, link, page, pretty_json, seconds, table, url, when)

RUN_STATUSES = tuple(s.value for s in RunStatus)
FINISHED = ("completed", "failed", "cancelled")
PAGE_SIZES = (20, 50, 100, 200)
CAP = 2000          # characters of a value shown in a page; the rest is a link away


def duration(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return parse_iso(end) - parse_iso(start)
    except ValueError:
        return None


def run_link(run_id: str | None, length: int = 12) -> Markup:
    if not run_id:
        return Markup("")
    return html('<a class="mono" href="{}" title="{}">{}</a>', href("runs", run_id), run_id,
                run_id if len(run_id) <= length else run_id[:length] + "…")


# --- the list ---------------------------------------------------------------------------------

def runs_list(ctx) -> Markup:
    q = ctx.query
    status = q.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
    workflow_id = q.get("workflow") or None
    search = (q.get("q") or "").strip().lower()
    top_level = q.get("children") != "1"
    limit = _whole(q.get("limit"), "limit", default=50)
    if limit not in PAGE_SIZES:
        raise ValidationError(f"limit must be one of {', '.join(map(str, PAGE_SIZES))}, not {limit}")
    before = q.get("before") or None
    filters = {"status": status, "workflow_id": workflow_id, "top_level": top_level}

    def txn(conn):
        if search:
            found = reads.runs_by_id_prefix(conn, search, before=before, limit=limit, **filters)
        else:
            found = reads.runs_page(conn, before=_cursor(before), limit=limit, **filters)
        return found, reads.workflow_ids(conn)
    found, workflow_ids = ctx.dash.read(txn)
    rows = found.runs

    keep = {"status": status, "workflow": workflow_id, "q": search or None,
            "children": None if top_level else "1", "limit": None if limit == 50 else limit}
    older = Markup("")
    if found.next is not None:
        cursor = found.next if search else f"{found.next[0]}~{found.next[1]}"
        older = link(url("/runs", **keep, before=cursor), "Older →", "button")
    stopped = (html('<p class="hint">Looked through {} runs without filling this page; Older → goes on '
                    'from there.</p>', f"{reads.SCAN_CAP:,}") if found.stopped else Markup(""))
    newest = link(url("/runs", **keep), "← Newest", "button") if before else Markup("")
    body = html('<h1>Runs</h1>{}{}{}<div class="pager">{}{}</div>',
                _filters(status, workflow_id, search, top_level, limit, workflow_ids), stopped,
                table(("run", "workflow", "status", "created", "took", "from", "error"),
                      (_run_row(r) for r in rows), cls="runs",
                      empty="no runs match" if (status or workflow_id or search or before) else "no runs yet"),
                newest, older)
    return page("Runs", body, active="runs", db=ctx.dash.label, read_only=ctx.dash.read_only,
                notice=ctx.notice)


def _run_row(r: dict) -> tuple:
    origin = Markup("")
    if r["parent_run_id"]:
        origin = html("child of {} ({})", run_link(r["parent_run_id"], 10), r["parent_node_id"] or "")
    elif r["rerun_of"]:
        origin = html("rerun of {}", run_link(r["rerun_of"], 10))
    took = duration(r["started_at"] or r["created_at"], r["finished_at"])
    return (run_link(r["run_id"], 32),
            link(url(href("workflows", r["workflow_id"]), version=r["workflow_version"]),
                 f"{r['workflow_id']} v{r['workflow_version']}"),
            badge(r["status"]), when(r["created_at"]), seconds(took), origin,
            html('<span class="err" title="{}">{}</span>', r["error"] or "", clip(r["error"], 80)))


def _filters(status, workflow_id, search, top_level, limit, workflow_ids) -> Markup:
    statuses = join(html('<option value="{}"{}>{}</option>', s, Markup(" selected") if s == status else "", s)
                    for s in RUN_STATUSES)
    ids = list(workflow_ids)
    if workflow_id and workflow_id not in ids:
        ids.append(workflow_id)
    workflows = join(html('<option value="{}"{}>{}</option>', w, Markup(" selected") if w == workflow_id else "", w)
                     for w in ids)
    sizes = join(html('<option value="{}"{}>{} per page</option>', n, Markup(" selected") if n == limit else "", n)
                 for n in PAGE_SIZES)
    return html(
        '<form class="filters" method="get" action="/runs">'
        '<label>status <select name="status"><option value="">any</option>{}</select></label>'
        '<label>workflow <select name="workflow"><option value="">any</option>{}</select></label>'
        '<label>run id <input name="q" value="{}" placeholder="id or its start" size="24" '
        'autocomplete="off" spellcheck="false"></label>'
        '<label><input type="checkbox" name="children" value="1"{}> child runs too</label>'
        '<select name="limit" aria-label="page size">{}</select>'
        '<button type="submit">Show</button></form>',
        statuses, workflows, search, Markup(" checked") if not top_level else "", sizes)


def _cursor(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    at, sep, rowid = text.rpartition("~")
    if not sep or not at or not rowid.isdigit():
        raise ValidationError(f"before: not a position in the list: {text!r}")
    return at, int(rowid)


def _whole(text: str | None, what: str, default: int) -> int:
    if text in (None, ""):
        return default
    if not text.isdigit():
        raise ValidationError(f"{what} must be a whole number, not {text!r}")
    return int(text)


# --- one run ----------------------------------------------------------------------------------

def run_page(ctx, run_id: str) -> Markup:
    before = ctx.query.get("events_before")
    events_before = _whole(before, "events_before", default=0) or None
    data = ctx.dash.read(reads.run_page, run_id, cap=CAP, events_before=events_before)
    run = data["run"]
    try:
        defn = ctx.dash.engine.definition(run["workflow_id"], run["workflow_version"])
        problem = None
    except DefinitionError as exc:
        defn, problem = None, exc.message
    attempts = data["attempts"]
    latest = latest_status(attempts)
    drawing = graph.svg(defn, latest) if defn is not None else html('<p class="empty">{}</p>', problem)
    events = data["events"]
    newest_seq = max((e["seq"] for e in events), default=0)
    live = run["status"] not in FINISHED and events_before is None
    earlier = Markup("")
    if events and len(events) >= 200:
        earlier = link(url(href("runs", run_id), events_before=events[0]["seq"]) + "#timeline",
                       "← earlier events", "button")
    later = link(href("runs", run_id) + "#timeline", "latest events →", "button") if events_before else Markup("")
    body = html(
        '<div id="run" data-run="{}" data-events="{}" data-after="{}" data-live="{}" data-status="{}">'
        '<h1>Run <span class="mono">{}</span> <span id="run-status">{}</span></h1>'
        '<div class="run-top"><div>{}{}</div><section class="graph-box" aria-label="graph">{}{}</section></div>'
        '<section><h2>Nodes</h2><div id="attempts" data-src="{}">{}</div></section>'
        '{}<section id="timeline"><h2>Timeline <span class="live" hidden>live</span></h2>'
        '<label class="toggle"><input type="checkbox" id="show-queue"> queue events (message.*)</label>{}'
        '<table class="timeline"><thead><tr><th>#</th><th>at</th><th>node</th><th>event</th><th>data</th></tr></thead>'
        '<tbody id="timeline-rows">{}</tbody></table>{}</section></div>',
        run_id, href("runs", run_id, "events"), newest_seq, "1" if live else "0", run["status"], run_id,
        badge(run["status"]), _facts(run, data), controls_of(ctx, run, defn), drawing, _legend(),
        href("runs", run_id, "attempts"), attempts_html(run_id, attempts, defn, data["attempts_limit"]),
        _children(data), earlier, join(_event_row(e) for e in events), later)
    return page(f"Run {run_id[:12]}", body, active="runs", db=ctx.dash.label,
                read_only=ctx.dash.read_only, notice=ctx.notice)


def latest_status(attempts: list[dict]) -> dict[str, str]:
    """Each node's status: that of its most recent attempt (the highest id)."""
    newest: dict[str, tuple[int, str]] = {}
    for a in attempts:
        if a["node_id"] not in newest or a["id"] > newest[a["node_id"]][0]:
            newest[a["node_id"]] = (a["id"], a["status"])
    return {node: status for node, (_id, status) in newest.items()}


def _facts(run: dict, data: dict) -> Markup:
    rows = [("workflow", link(url(href("workflows", run["workflow_id"]), version=run["workflow_version"]),
                              f"{run['workflow_id']} v{run['workflow_version']}")),
            ("created", when(run["created_at"])), ("started", when(run["started_at"])),
            ("finished", when(run["finished_at"])),
            ("took", seconds(duration(run["started_at"], run["finished_at"])))]
    if run["parent_run_id"]:
        rows.append(("parent", html("{} (node {})", run_link(run["parent_run_id"], 32), run["parent_node_id"] or "")))
    if run["rerun_of"]:
        rerun = run["rerun_of"]
        how = "fresh" if rerun["fresh"] else (f"from node {rerun['from']}" if rerun["from"] else "what had not finished")
        rows.append(("rerun of", html("{} ({})", run_link(rerun["run_id"], 32), how)))
    if run["scheduled_at"]:
        rows.append(("scheduled for", when(run["scheduled_at"])))
    if run["paused_until"]:
        rows.append(("paused until", when(run["paused_until"])))
    if run["error"]:
        rows.append(("error", html('<pre class="err">{}</pre>', run["error"])))
    for key in ("inputs", "outputs", "variables"):
        text = run[key]
        if text not in (None, "{}", "null"):
            rows.append((key, _value(text)))
    cells = join(html("<tr><th>{}</th><td>{}</td></tr>", k, v) for k, v in rows)
    return html('<table class="facts">{}</table>', cells)


def _value(text: str | None, full: str | None = None, length: int | None = None) -> Markup:
    """A stored JSON value, indented; past CAP characters, its start and a link to all of it."""
    if text is None:
        return Markup('<span class="empty">none</span>')
    total = len(text) if length is None else length
    if total <= CAP:
        return html('<pre class="value">{}</pre>', pretty_json(text))
    more = (html('<a href="{}">the whole value ({} characters)</a>', full, total) if full
            else html('<span class="empty">cut at {} of {} characters</span>', CAP, total))
    return html('<pre class="value">{}…</pre>{}', text[:CAP], more)


def _legend() -> Markup:
    return html('<p class="legend">{}</p>', join(badge(s) for s in ("pending", "waiting", "running",
                                                                    "completed", "failed", "skipped", "cancelled")))


def attempts_html(run_id: str, attempts: list[dict], defn, limit: int) -> Markup:
    """Each node's attempts, nodes in the definition's order (then any the definition lacks)."""
    by_node: dict[str, list[dict]] = {}
    for a in attempts:
        by_node.setdefault(a["node_id"], []).append(a)
    order = [n.node_id for n in defn.nodes] if defn is not None else []
    order += [n for n in by_node if n not in order]
    kinds = {n.node_id: n.runtime_type for n in defn.nodes} if defn is not None else {}
    sections = []
    for node_id in order:
        rows = by_node.get(node_id)
        if not rows:
            sections.append(html('<details class="node-attempts" data-node="{}"><summary><span class="mono">{}</span> '
                                 '<span class="kind">{}</span> {}</summary></details>',
                                 node_id, node_id, kinds.get(node_id, ""), Markup('<span class="empty">not reached</span>')))
            continue
        last = rows[-1]
        sections.append(html(
            '<details class="node-attempts" data-node="{}"><summary><span class="mono">{}</span> '
            '<span class="kind">{}</span> {} <span class="count">{} attempt(s)</span></summary>{}</details>',
            node_id, node_id, kinds.get(node_id, ""), badge(last["status"]), len(rows),
            join(_attempt(run_id, a) for a in rows)))
    cut = (html('<p class="empty">the first {} attempts are shown</p>', limit)
           if len(attempts) >= limit else Markup(""))
    return join(sections) + cut


def _attempt(run_id: str, a: dict) -> Markup:
    took = duration(a["started_at"], a["finished_at"])
    facts = [("status", badge(a["status"])), ("attempt", a["attempt"]), ("iteration", a["iteration"]),
             ("created", when(a["created_at"])), ("started", when(a["started_at"])),
             ("finished", when(a["finished_at"])), ("took", seconds(took)), ("worker", a["worker_id"] or "")]
    if a["port"]:
        facts.append(("port", a["port"]))
    if a["waiting_reason"]:
        facts.append(("waiting for", a["waiting_reason"]))
    if a["progress"] is not None:
        facts.append(("progress", f"{a['progress']:.0f}% {a['progress_message'] or ''}"))
    if a["error_type"]:
        facts.append(("error type", a["error_type"]))
    values = []
    for field in ("input", "output", "error"):
        if a[field] is not None:
            full = href("runs", run_id, "attempts", a["id"], field)
            values.append(html("<h4>{}</h4>{}", field, _value(a[field], full, a[f"{field}_length"])))
    return html('<div class="attempt"><dl>{}</dl>{}</div>',
                join(html("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in facts), join(values))


def _children(data: dict) -> Markup:
    children = data["children"]
    if not children:
        return Markup("")
    rows = ((run_link(c["run_id"], 32), c["parent_node_id"] or "", f"{c['workflow_id']} v{c['workflow_version']}",
             badge(c["status"]), when(c["created_at"]), clip(c["error"], 60)) for c in children)
    more = (html('<p class="empty">{} of {} child runs shown</p>', len(children), data["child_count"])
            if data["child_count"] > len(children) else Markup(""))
    return html('<section><h2>Child runs</h2>{}{}</section>',
                table(("run", "node", "workflow", "status", "created", "error"), rows), more)


def _event_row(e: dict) -> Markup:
    queue = e["type"].startswith("message.")
    return html('<tr class="{}"><td>{}</td><td><time datetime="{}" title="{}">{}</time></td><td class="mono">{}</td>'
                '<td>{}</td><td class="data">{}</td></tr>', "ev-queue" if queue else "", e["seq"], e["at"], e["at"],
                e["at"][11:23], e["node_id"] or "", e["type"], clip(e["data"], 200))


def attempts_fragment(ctx, run_id: str) -> Markup:
    """The nodes' attempts alone: what the live page fetches again when a node changes."""
    data = ctx.dash.read(reads.run_page, run_id, cap=CAP, events=0, children=0)
    run = data["run"]
    try:
        defn = ctx.dash.engine.definition(run["workflow_id"], run["workflow_version"])
    except DefinitionError:
        defn = None
    return attempts_html(run_id, data["attempts"], defn, data["attempts_limit"])


def attempt_value(ctx, run_id: str, instance_id: str, field: str) -> str | None:
    if not instance_id.isdigit() or field not in reads.ATTEMPT_FIELDS:
        return None
    return ctx.dash.read(reads.attempt_value, run_id, int(instance_id), field)

