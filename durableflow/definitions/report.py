"""How a problem in a definition is named: `node 'fetch': field 'retry.initialDelay': ...`.

Every check builds its lines with these helpers, so the schema, the parser and the graph checks
all point at a problem the same way and a user learns one format.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable


def node_label(node_id: Any, index: int | None = None) -> str:
    if isinstance(node_id, str) and node_id:
        return f"node {node_id!r}"
    return f"nodes[{index}]"


def connection_label(index: int, source: Any = None, target: Any = None, conn_id: Any = None) -> str:
    if isinstance(conn_id, str) and conn_id:
        return f"connections[{index}] {conn_id}"
    return f"connections[{index}] {source if isinstance(source, str) else '?'}->" \
           f"{target if isinstance(target, str) else '?'}"


def field(name: str) -> str:
    return f"field {name!r}"


def line(*parts: str | None) -> str:
    """Join the non-empty parts: `node 'a'`, `field 'x'`, message."""
    return ": ".join(part for part in parts if part)


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a near miss, else empty."""
    options = list(choices)
    lowered = {choice.lower(): choice for choice in options}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def join_path(parts: Iterable[Any]) -> str:
    """['retry', 'retryOn', 0] -> 'retry.retryOn[0]'."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unique(lines: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(lines))
