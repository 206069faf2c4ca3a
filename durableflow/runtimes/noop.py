"""Noop: passes its input through. Cheap enough for the engine to run inline (INLINE_RUNTIMES)."""

from __future__ import annotations

from typing import Any

from ..model import NodeDef
from .base import NodeContext

__all__ = ["Noop"]


class Noop:
    runtime_type = "Noop"

    def execute(self, node: NodeDef, ctx: NodeContext, *, timeout: float | None) -> Any:
        ctx.check_cancelled()
        return ctx.input
