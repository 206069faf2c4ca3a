"""HTML built so that whatever is shown is escaped unless it was built as HTML here.

`Markup` is text already HTML; `h(x)` escapes anything else; `html(template, *args)` escapes
every argument that is not Markup (markupsafe's idea, in a few lines). Pages are assembled from
these only, so a node id, an output or an error holding `<script>` is shown as text.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Iterable
from urllib.parse import quote, urlencode

STATUSES = ("pending", "waiting", "running", "paused", "compensating", "completed", "failed",
            "cancelled", "skipped")


class Markup(str):
    """Text that is HTML already; joining or formatting it with other text escapes that text."""

    __slots__ = ()

    def __add__(self, other: Any) -> "Markup":
        return Markup(str.__add__(self, h(other)))

    def __radd__(self, other: Any) -> "Markup":
        return Markup(str.__add__(h(other), self))

    def join(self, parts: Iterable[Any]) -> "Markup":  # type: ignore[override]
        return Markup(str.join(self, (h(p) for p in parts)))


def h(value: Any) -> Markup:
    """`value` as HTML: Markup as it is, None as nothing, anything else as escaped text."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(escape(str(value), quote=True))


def html(template: str, *args: Any, **kwargs: Any) -> Markup:
    """`template` (trusted: written here) with each argument escaped unless it is Markup."""
    return Markup(template.format(*(h(a) for a in args), **{k: h(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(sep).join(parts)


def href(*segments: Any) -> str:
    """`/a/b` from segments, each percent-encoded: an id holding `/`, `?` or `#` stays one segment."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


def url(path: str, **query: Any) -> str:
    """A path with its query; None and empty values are left out. Escape it with h() in HTML."""
    pairs = [(k, v) for k, v in query.items() if v not in (None, "", False)]
    return path + ("?" + urlencode(pairs) if pairs else "")


def badge(status: str | None) -> Markup:
    word = status or ""
    kind = word if word in STATUSES else "other"
    return html('<span class="badge s-{}">{}</span>', kind, word)


def when(stamp: str | None) -> Markup:
    """A stored timestamp, shortened, with the whole of it as the tooltip."""
    if not stamp:
        return Markup("")
    return html('<time datetime="{}" title="{}">{}</time>', stamp, stamp, stamp.replace("T", " ")[:19])


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def clip(text: str | None, limit: int = 120) -> str:
    if not text:
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty_json(text: str | None) -> str:
    """Stored JSON text indented for reading; text that does not parse (cut short) as it is."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], *, empty: str = "nothing here",
          cls: str = "") -> Markup:
    head = join(html("<th>{}</th>", c) for c in headers)
    body = [html("<tr>{}</tr>", join(html("<td>{}</td>", cell) for cell in row)) for row in rows]
    if not body:
        return html('<p class="empty">{}</p>', empty)
    return html('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
                cls, head, join(body))


def link(href: str, text: Any, cls: str = "") -> Markup:
    if cls:
        return html('<a class="{}" href="{}">{}</a>', cls, href, text)
    return html('<a href="{}">{}</a>', href, text)


NAV = (("runs", "/runs", "Runs"), ("workflows", "/workflows", "Workflows"),
       ("schedules", "/schedules", "Schedules"), ("dead-letters", "/dead-letters", "Dead letters"),
       ("breakers", "/breakers", "Breakers"), ("stats", "/stats", "Stats"))


def page(title: str, body: Any, *, active: str = "", db: str = "", read_only: bool = False,
         notice: str | None = None) -> Markup:
    """A whole page: head, navigation, an optional notice, the body."""
    nav = join(html('<a class="{}" href="{}">{}</a>', "active" if key == active else "", href, label)
               for key, href, label in NAV)
    mode = Markup('<span class="mode">read-only</span>') if read_only else Markup("")
    note = html('<p class="notice" role="status">{}</p>', notice) if notice else Markup("")
    return html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{} · durableflow</title><link rel="stylesheet" href="/static/app.css">'
        '<script src="/static/app.js" defer></script></head><body>'
        '<header><a class="brand" href="/runs">durableflow</a><nav>{}</nav>'
        '<span class="db" title="{}">{}</span>{}</header><main>{}{}</main></body></html>',
        title, nav, db, db, mode, note, body)
