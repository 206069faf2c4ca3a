"""Parameter types and shared options: durations, `k=v` inputs, an inputs file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from durableflow.durations import parse_duration
from durableflow.errors import DefinitionError


class Duration(click.ParamType):
    """`500ms`, `10s`, `5m`, `2h`, `1d`, `1h30m` or a number of seconds; converts to seconds."""

    name = "duration"

    def __init__(self, *, positive: bool = False, unit_required: bool = False):
        self.positive = positive
        self.unit_required = unit_required

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        if self.unit_required and str(value).strip().replace(".", "", 1).isdigit():
            self.fail(f"{value!r} has no unit; write e.g. {value}d or {value}h (a bare number "
                      f"would be seconds)", param, ctx)
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.positive and seconds <= 0:
            self.fail(f"must be more than zero, not {value!r}", param, ctx)
        return seconds


DURATION = Duration()
POSITIVE_DURATION = Duration(positive=True)
# For what cannot be undone (prune): `--older-than 30` must not quietly mean 30 seconds.
AGE_WITH_UNIT = Duration(positive=True, unit_required=True)


class MemorySize(click.ParamType):
    """`8G`, `512M`, `1.5GB` or a bare number of megabytes; converts to whole megabytes."""

    name = "size"
    _UNITS = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024,
              "t": 1024 ** 2, "tb": 1024 ** 2, "tib": 1024 ** 2}

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = match and self._UNITS.get(match.group(2).lower())
        if not unit:
            self.fail(f"{value!r} is not a size; write e.g. 512M, 8G or a number of megabytes",
                      param, ctx)
        megabytes = int(float(match.group(1)) * unit)
        if megabytes <= 0:
            self.fail(f"must be at least 1 megabyte, not {value!r}", param, ctx)
        return megabytes


MEMORY = MemorySize()


class KeyValue(click.ParamType):
    """`key=value`; the value is JSON when it parses as JSON (numbers, true, objects), else text."""

    name = "key=value"

    def convert(self, value, param, ctx) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, text = value.partition("=")
        key = key.strip()
        if not sep or not key:
            self.fail(f"{value!r} is not key=value (e.g. --input day=2026-11-27 --input n=3)",
                      param, ctx)
        try:
            parsed: Any = json.loads(text, parse_constant=_not_json)
        except ValueError:
            parsed = text  # NaN and Infinity too: run inputs are strict JSON
        return key, parsed


def _not_json(word: str):
    raise ValueError(word)


KEY_VALUE = KeyValue()


def read_inputs_file(path: str) -> Any:
    """The JSON or YAML document in `path`, read with the same safe reader as definitions."""
    from durableflow.definitions.loader import read_source
    try:
        data, _fmt = read_source(Path(path))
    except DefinitionError as exc:
        raise click.BadParameter(exc.message, param_hint="'--inputs'") from None
    return data


def build_inputs(pairs: tuple[tuple[str, Any], ...], inputs_file: str | None) -> Any:
    """--inputs FILE first, then each --input k=v on top of it. A key given twice with --input
    is refused: one of the two values would be dropped without a word."""
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            raise click.BadParameter(f"key {key!r} given twice", param_hint="'--input'")
        seen.add(key)
    inputs: Any = read_inputs_file(inputs_file) if inputs_file else {}
    if inputs is None:
        inputs = {}
    if pairs:
        if not isinstance(inputs, dict):
            raise click.BadParameter(
                f"{inputs_file} holds a {type(inputs).__name__}, not a mapping, so --input "
                "cannot add keys to it", param_hint="'--inputs'")
        inputs = {**inputs, **dict(pairs)}
    return inputs


def input_options(fn):
    """--input k=v (repeatable) and --inputs FILE, shared by `run` and `start`."""
    fn = click.option("--inputs", "inputs_file", metavar="FILE",
                      type=click.Path(dir_okay=False),
                      help="A JSON or YAML file holding the run's inputs; --input keys go on top.")(fn)
    fn = click.option("--input", "-i", "input_pairs", multiple=True, type=KEY_VALUE,
                      metavar="KEY=VALUE",
                      help="One run input; VALUE is parsed as JSON when it can be (3, true, "
                           "{\"a\": 1}), else taken as text. Repeatable.")(fn)
    return fn

