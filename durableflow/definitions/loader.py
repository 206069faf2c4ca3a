"""Read a definition file into plain JSON data, refusing anything hostile or ambiguous.

Both parsers produce only dicts (str keys), lists, str, int, finite float, bool and None. YAML is
built from the parser's event stream by a small iterative builder rather than PyYAML's recursive
composer, so that depth, alias expansion and node count are capped before anything is built and
a 10,000-level document cannot exhaust the Python stack.
"""

from __future__ import annotations

import json
import math
import re
import stat
import sys
from pathlib import Path
from typing import Any

import yaml

from durableflow.errors import DefinitionError

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 200_000        # values after alias expansion: a "billion laughs" stops here
MAX_ALIASES = 1_000

YAML_SUFFIXES = frozenset({".yaml", ".yml"})
JSON_SUFFIXES = frozenset({".json"})

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {
    _TAG + "str": "construct_yaml_str", _TAG + "int": "construct_yaml_int",
    _TAG + "float": "construct_yaml_float", _TAG + "bool": "construct_yaml_bool",
    _TAG + "null": "construct_yaml_null",
}
_MERGE_TAG = _TAG + "merge"
_NOTHING = object()
_MERGE = object()


def read_source(path: str | Path) -> tuple[Any, str]:
    """Return (data, format) for a file; format by extension, else guessed from the content."""
    name = str(path)
    file = Path(path)
    try:
        info = file.stat()
    except FileNotFoundError:
        if "\n" in name or len(name) > 255:
            # Text, not a path: say so instead of echoing it back as a file name.
            raise DefinitionError(f"{name.splitlines()[0][:60]!r}...: no such file; to load a definition "
                                  f"from text, parse it first (e.g. yaml.safe_load) and pass the dict") from None
        raise DefinitionError(f"{name}: file not found") from None
    except OSError as exc:
        raise DefinitionError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DefinitionError(f"{name}: is a directory, not a definition file")
    if info.st_size > MAX_BYTES:
        raise DefinitionError(f"{name}: file is {info.st_size} bytes, over the {_limit()} limit")
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)  # stat can lie (growing file, FIFO)
    except OSError as exc:
        raise DefinitionError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise DefinitionError(f"{name}: file is over the {_limit()} limit")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            f"{name}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    suffix = file.suffix.lower()
    if suffix in JSON_SUFFIXES:
        fmt = "json"
    elif suffix in YAML_SUFFIXES:
        fmt = "yaml"
    else:
        fmt = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    return parse_text(text, fmt, name), fmt


def parse_text(text: str, fmt: str, name: str = "<text>") -> Any:
    if len(text) > MAX_BYTES:  # characters, a cheap upper bound for text not read from a file
        raise DefinitionError(f"{name}: definition is over the {_limit()} limit")
    if fmt == "json":
        data = parse_json(text, name)
    elif fmt == "yaml":
        data = parse_yaml(text, name)
    else:
        raise DefinitionError(f"{name}: unknown format {fmt!r} (use yaml or json)")
    check_storable(data, name)
    return data


def _limit() -> str:
    return f"{MAX_BYTES // (1024 * 1024)} MB"


def max_int_digits() -> int:
    """The digits Python converts between int and str (sys.set_int_max_str_digits; 0: no limit).

    A longer integer could be read but never written back (json.dumps raises), so a definition
    holding one is refused at load with one line instead of failing when it is stored.
    """
    getter = getattr(sys, "get_int_max_str_digits", None)
    return getter() if getter is not None else 0


def _too_many_digits(count: int) -> str:
    return (f"integer with {count} digits is too long (at most {max_int_digits()} digits; "
            "write it as a string)")


def _shown_number(word: str) -> str:
    return word if len(word) <= 30 else f"{word[:20]}...({len(word)} characters)"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_problem(text: str) -> str | None:
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (f"string has a lone UTF-16 surrogate \\u{ord(found.group()):04x} at character "
            f"{found.start()}, which is not text (not storable as UTF-8)")


class _Refused:
    """What the JSON number hooks return for a number that cannot be kept: the walk after
    parsing reports it with its key path (json.loads does not say where a number is)."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


# --- JSON -------------------------------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def parse_json(text: str, name: str = "<json>") -> Any:
    depth = 0
    for match in _JSON_TOKEN.finditer(text):  # json.loads recurses in C: measure depth first
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise DefinitionError(f"{name}: line {line}: nested deeper than {MAX_DEPTH} levels")
        elif token in "]}":
            depth -= 1

    def pairs(items: list) -> dict:
        result: dict = {}
        for key, value in items:
            if key in result:
                raise DefinitionError(f"{name}: duplicate key {key!r}")
            result[key] = value
        return result

    def constant(word: str) -> Any:
        raise DefinitionError(f"{name}: {word} is not allowed (JSON numbers must be finite)")

    def number(word: str) -> float | _Refused:
        value = float(word)
        if not math.isfinite(value):
            return _Refused(f"number {_shown_number(word)} is out of range")
        return value

    limit = max_int_digits()

    def integer(word: str) -> int | _Refused:
        digits = len(word) - word.startswith("-")
        if limit and digits > limit:
            return _Refused(_too_many_digits(digits))
        return int(word)

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant, parse_float=number,
                          parse_int=integer)
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"{name}: line {exc.lineno}, column {exc.colno}: JSON syntax error: {exc.msg}") from None
    except RecursionError:  # the scan above makes this unreachable; never show a traceback anyway
        raise DefinitionError(f"{name}: nested too deeply") from None


# --- YAML -------------------------------------------------------------------------------------

class _SafeLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: `2026-11-27` stays a string, as in JSON."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TAG + "timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class _Frame:
    __slots__ = ("container", "anchor", "key", "key_mark", "merges", "start_count", "height")

    def __init__(self, container: Any, anchor: str | None, start_count: int):
        self.container = container
        self.anchor = anchor
        self.key = _NOTHING
        self.key_mark = None
        self.merges: list = []
        self.start_count = start_count
        self.height = 0


def parse_yaml(text: str, name: str = "<yaml>") -> Any:
    loader = None
    try:
        loader = _SafeLoader(text)  # the reader checks characters here already
        return _YamlBuilder(loader, name).build()
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{name}: {_yaml_message(exc)}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar constructor gave up
        raise DefinitionError(f"{name}: YAML value error: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _YamlBuilder:
    def __init__(self, loader: _SafeLoader, name: str):
        self.loader = loader
        self.name = name
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # anchor -> (value, values, height)
        self.stack: list[_Frame] = []
        self.root: Any = _NOTHING
        self.count = 0
        self.aliases = 0
        limit = max_int_digits()
        self.too_big = 10 ** limit if limit else 0

    def fail(self, mark: Any, message: str) -> None:
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise DefinitionError(f"{self.name}: {where}{message}")

    def build(self) -> Any:
        documents = 0
        loader = self.loader
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    self.fail(event.start_mark, "more than one YAML document in the file")
            elif isinstance(event, yaml.ScalarEvent):
                self.scalar(event)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self.start(event)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                self.end(event)
            elif isinstance(event, yaml.AliasEvent):
                self.alias(event)
        return None if self.root is _NOTHING else self.root

    def scalar(self, event: yaml.ScalarEvent) -> None:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _MERGE_TAG:
            value: Any = _MERGE
        elif tag in _SCALAR_TAGS:
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
            if tag == _TAG + "int":
                self.check_digits(event)
            try:
                value = getattr(self.loader, _SCALAR_TAGS[tag])(node)
            except (ValueError, TypeError, OverflowError):
                kind = tag[len(_TAG):]
                self.fail(event.start_mark,
                          f"{_shown_number(event.value)!r} is not a valid {kind} (quote it to keep it as a string)")
            if isinstance(value, float) and not math.isfinite(value):
                self.fail(event.start_mark,
                          f"{_shown_number(event.value)} is not allowed (numbers must be finite)")
            if (isinstance(value, int) and not isinstance(value, bool) and self.too_big
                    and abs(value) >= self.too_big):   # 0x..., 0o...: no digit limit to read
                self.fail(event.start_mark, f"integer {_shown_number(event.value)} has more than "
                          f"{max_int_digits()} decimal digits (write it as a string)")
        else:
            self.refuse_tag(event, tag)
        self.counted(event, 1)
        if event.anchor:
            self.anchors[event.anchor] = (value, 1, 0)
        self.add(value, 0, event)

    def check_digits(self, event: yaml.ScalarEvent) -> None:
        """A decimal integer longer than Python converts: say so, with its line."""
        limit = max_int_digits()
        word = event.value.replace("_", "").lstrip("+-")
        if limit and len(word) > limit and word.isdigit():
            self.fail(event.start_mark, _too_many_digits(len(word)))

    def start(self, event: Any) -> None:
        mapping = isinstance(event, yaml.MappingStartEvent)
        expected = _TAG + ("map" if mapping else "seq")
        if event.tag not in (None, "!", expected):
            self.refuse_tag(event, event.tag)
        if len(self.stack) >= MAX_DEPTH:
            self.fail(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        self.counted(event, 1)
        self.stack.append(_Frame({} if mapping else [], event.anchor, self.count))

    def end(self, event: Any) -> None:
        frame = self.stack.pop()
        value = frame.container
        for merged in reversed(frame.merges):  # explicit keys win over merged ones
            for key, item in merged.items():
                value.setdefault(key, item)
        height = frame.height + 1
        if frame.anchor:
            self.anchors[frame.anchor] = (value, self.count - frame.start_count + 1, height)
        self.add(value, height, event)

    def alias(self, event: yaml.AliasEvent) -> None:
        if event.anchor not in self.anchors:
            self.fail(event.start_mark, f"alias *{event.anchor} refers to no complete anchor")
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            self.fail(event.start_mark, f"more than {MAX_ALIASES} aliases")
        value, values, height = self.anchors[event.anchor]
        self.counted(event, values)
        self.add(value, height, event)

    def counted(self, event: Any, values: int) -> None:
        self.count += values
        if self.count > MAX_VALUES:
            self.fail(event.start_mark,
                      f"document expands to more than {MAX_VALUES} values (alias bomb?)")

    def add(self, value: Any, height: int, event: Any) -> None:
        if not self.stack:
            self.root = value
            return
        parent = self.stack[-1]
        if len(self.stack) + height > MAX_DEPTH:  # an alias can graft a deep tree
            self.fail(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        parent.height = max(parent.height, height)
        container = parent.container
        if isinstance(container, list):
            if value is _MERGE:
                self.fail(event.start_mark, "'<<' is only allowed as a mapping key")
            container.append(value)
        elif parent.key is _NOTHING:
            if value is not _MERGE and not isinstance(value, str):
                shown = getattr(event, "value", None) or repr(value)
                self.fail(event.start_mark, f"key {shown} is not a string (quote it)")
            parent.key, parent.key_mark = value, event.start_mark
        else:
            key, parent.key = parent.key, _NOTHING
            if key is _MERGE:
                self.merge(parent, value, event)
            elif value is _MERGE:
                self.fail(event.start_mark, "'<<' is only allowed as a mapping key")
            elif key in container:
                self.fail(parent.key_mark, f"duplicate key {key!r}")
            else:
                container[key] = value

    def merge(self, parent: _Frame, value: Any, event: Any) -> None:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            self.fail(event.start_mark, "'<<' needs a mapping or a list of mappings")
        parent.merges.extend(sources)

    def refuse_tag(self, event: Any, tag: str) -> None:
        shown = "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag
        self.fail(event.start_mark, f"tag {shown!r} is not allowed (plain YAML only: mappings, "
                                    "lists, strings, numbers, booleans, null)")


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {problem}"
    return "YAML syntax error: " + " ".join(str(exc).split())


# --- data handed over as Python objects -------------------------------------------------------

def check_plain_data(data: Any, name: str) -> None:
    """A dict given to load_definition must be JSON data too: same types, finite, not too deep,
    and storable (integers Python can print, strings that are UTF-8 text)."""
    limit = max_int_digits()
    too_big = 10 ** limit if limit else None
    stack = [(data, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise DefinitionError(f"{name}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise DefinitionError(
                        f"{name}: {where or 'top level'}: key {key!r} is not a string")
                _check_string(key, name, f"{where or 'top level'}: key")
                stack.append((item, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_string(value, name, where or "top level")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise DefinitionError(
                    f"{name}: {where}: {value} is not allowed (numbers must be finite)")
        elif isinstance(value, int) and not isinstance(value, bool):
            if too_big is not None and abs(value) >= too_big:
                raise DefinitionError(f"{name}: {where or 'top level'}: integer with more than "
                                      f"{limit} digits is too long (write it as a string)")
        elif value is not None and not isinstance(value, bool):
            raise DefinitionError(
                f"{name}: {where or 'top level'}: {type(value).__name__} is not JSON data")


def check_storable(data: Any, name: str) -> None:
    """After parsing a file: numbers the JSON hooks refused, and lone surrogates (JSON and YAML
    both accept a `\\ud800` escape) are reported with the key path of the value."""
    stack = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_string(key, name, f"{where or 'top level'}: key")
                stack.append((item, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_string(value, name, where or "top level")
        elif isinstance(value, _Refused):
            raise DefinitionError(f"{name}: {where or 'top level'}: {value.message}")


def _check_string(text: str, name: str, where: str) -> None:
    problem = _surrogate_problem(text)
    if problem is not None:
        raise DefinitionError(f"{name}: {where}: {problem}")
