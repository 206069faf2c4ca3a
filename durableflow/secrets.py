"""Secrets by reference: `{"$secret": "NAME"}` in a definition or a run's inputs.

The reference is what is stored, everywhere. The worker looks the value up just before a body
runs (in the node's input, inputs, vars, env and command, as the body sees them) and nothing
goes back: whatever the body hands back (output, error, vars, progress, log lines, a process's
stdout and stderr) has every value it was given replaced by `***` before anything records it.

Where values come from, the first that has the name wins: the secrets the Engine was given (a
file, or a mapping), then the worker's environment. A file is checked when the Engine is made
(it must exist and be readable by its owner only) and read again when it changes.

File format, one of:
- `.env` lines: `NAME=value`; blank lines and lines starting with `#` are skipped; `export `
  before the name is allowed; the value is everything after the first `=`, stripped of the
  spaces around it, or the text inside a pair of quotes (`'...'` as written, `"..."` with
  `\\n`, `\\t`, `\\"` and `\\\\` escapes). No `#` comments after a value, no `$VAR` expansion.
- a JSON object of names to text, when the file's name ends in `.json` or its first character
  (past blanks) is `{`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import stat
import sys
import threading
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from durableflow.errors import NodeError, SecretNotFound, SecretsFileError, ValidationError
from durableflow.model import NodeDef
from durableflow.runtimes.base import escape_controls

__all__ = ["KEY", "MASK", "NO_SECRETS", "Body", "Redactor", "Secrets", "is_ref", "open_body",
           "ref_problems", "resolve", "secret"]

KEY = "$secret"
MASK = "***"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}\Z")
NAME_RULE = "letters, digits and '_', not starting with a digit"
MAX_FILE_BYTES = 1024 * 1024
# A piece of a multi-line value (a PEM key's lines) is masked on its own from this length: a
# body printing the value line by line, or an error quoting one line, still shows none of it.
MIN_PIECE = 8


def secret(name: str) -> dict:
    """`{"$secret": name}`: a reference to put in a definition or a run's inputs."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationError(f"secret name {name!r} is not a name ({NAME_RULE})")
    return {KEY: name}


def is_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and KEY in value


def ref_problems(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, problem) for every malformed reference inside `value` ('' is the value itself)."""
    problems: list[tuple[str, str]] = []
    for where, ref in _refs(value, path):
        extra = [k for k in ref if k != KEY]
        if extra:
            problems.append((where, f'{{"$secret": NAME}} takes no other key (found {str(extra[0])!r})'))
        name = ref[KEY]
        if not isinstance(name, str) or not NAME.match(name):
            shown = repr(name) if isinstance(name, str) and len(name) <= 60 else type(name).__name__
            problems.append((where, f"secret name {shown} is not a name ({NAME_RULE})"))
    return problems


def _refs(value: Any, path: str) -> Iterator[tuple[str, Mapping]]:
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Mapping):
            if KEY in item:
                yield where, item
                continue
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))


# --- where values come from ------------------------------------------------------------------

class Secrets:
    """The values a worker resolves references with: `given` (a file path or a mapping of names
    to text) first, then the environment."""

    def __init__(self, given: str | os.PathLike | Mapping[str, str] | None = None, *,
                 environ: Mapping[str, str] | None = None):
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self.path: Path | None = None
        self._stamp: tuple | None = None
        if given is None:
            self._values: dict[str, str] = {}
        elif isinstance(given, (str, os.PathLike)):
            self.path = Path(os.path.abspath(given))
            self._values, self._stamp = read_file(self.path)
        elif isinstance(given, Mapping):
            self._values = _checked_mapping(given)
        else:
            raise SecretsFileError(f"secrets must be a file path or a mapping of names to text, "
                                   f"not {type(given).__name__}")

    @property
    def where(self) -> str:
        """Where a name was looked for, for an error message."""
        if self.path is not None:
            return f"secrets file {self.path} and the worker's environment"
        if self._values:
            return "the engine's secrets and the worker's environment"
        return "the worker's environment (no secrets file given)"

    def lookup(self, name: str) -> str | None:
        if self.path is not None:
            self._reload_if_changed(self.path)
        value = self._values.get(name)
        return self._environ.get(name) if value is None else value

    def _reload_if_changed(self, path: Path) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise SecretsFileError(f"secrets file {path}: {exc.strerror or exc}") from None
        if _stamp(st) == self._stamp:
            return
        with self._lock:
            self._values, self._stamp = read_file(path)


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)


def _checked_mapping(given: Mapping) -> dict[str, str]:
    values = {}
    for name, value in given.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise SecretsFileError(f"secrets: {name!r} is not a secret name ({NAME_RULE})")
        if not isinstance(value, str):
            raise SecretsFileError(f"secrets: the value of {name} must be text, not {type(value).__name__}")
        values[name] = value
    return values


def read_file(path: Path) -> tuple[dict[str, str], tuple]:
    """The names and values of a secrets file, and its stamp; SecretsFileError (naming the file,
    and the line where it applies, never a value) when it cannot be used."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SecretsFileError(f"secrets file {path}: no such file") from None
    except OSError as exc:
        raise SecretsFileError(f"secrets file {path}: cannot open it: {exc.strerror or exc}") from None
    try:
        # Judged on the file opened, not on the name: it cannot be swapped in between.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretsFileError(f"secrets file {path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise SecretsFileError(f"secrets file {path} has mode {mode:04o}; it must be readable "
                                   f"by its owner only (chmod 600 {path})")
        if st.st_size > MAX_FILE_BYTES:
            raise SecretsFileError(f"secrets file {path}: larger than {MAX_FILE_BYTES // 1024} KiB")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SecretsFileError(f"secrets file {path}: not UTF-8 text (byte {exc.start})") from None
    as_json = path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "[")
    values = _parse_json(text, path) if as_json else _parse_env(text, path)
    return values, _stamp(st)


def _parse_json(text: str, path: Path) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SecretsFileError(f"secrets file {path}: not valid JSON (line {exc.lineno} column "
                               f"{exc.colno})") from None
    except (ValueError, RecursionError):   # an integer too long to read, nesting too deep
        raise SecretsFileError(f"secrets file {path}: not valid JSON (a value it cannot read)") from None
    if not isinstance(data, dict):
        raise SecretsFileError(f"secrets file {path}: must hold one JSON object of names to text")
    try:
        return _checked_mapping(data)
    except SecretsFileError as exc:
        raise SecretsFileError(f"secrets file {path}: {exc.message.removeprefix('secrets: ')}") from None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _parse_env(text: str, path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    first: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"secrets file {path} line {number}"
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export"):].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep:
            raise SecretsFileError(f"{where}: expected NAME=value")
        if not NAME.match(name):
            raise SecretsFileError(f"{where}: {name[:60]!r} is not a secret name ({NAME_RULE})")
        if name in first:
            raise SecretsFileError(f"{where}: {name} is already set on line {first[name]}")
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            if len(value) < 2 or value[-1] != quote:
                raise SecretsFileError(f"{where}: the value of {name} opens a {quote} quote it "
                                       "does not close (on the same line)")
            value = value[1:-1]
            if quote == '"':
                value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), value)
        first[name] = number
        values[name] = value
    return values


# --- resolving -------------------------------------------------------------------------------

def resolve(value: Any, lookup: Callable[[str], str | None], used: dict[str, str], *,
            where: str = "the worker's environment") -> Any:
    """`value` with each reference replaced by its value (recorded in `used`); SecretNotFound
    for a name nothing has. Containers without a reference are returned as they are (no copy)."""
    if isinstance(value, Mapping):
        if KEY in value:
            name = value[KEY]
            if isinstance(name, str) and name in used:
                return used[name]
            if not isinstance(name, str) or not NAME.match(name):
                raise SecretNotFound(f"{{\"$secret\": ...}}: {type(name).__name__} {str(name)[:60]!r} "
                                     f"is not a secret name ({NAME_RULE})")
            try:
                found = lookup(name)
            except SecretsFileError as exc:
                raise NodeError(exc.message, error_type="SecretsFileError") from None
            if found is None:
                raise SecretNotFound(f"secret {name!r} not found in {where}")
            used[name] = found
            return found
        out = None
        for key, item in value.items():
            got = resolve(item, lookup, used, where=where)
            if got is not item:
                if out is None:
                    out = dict(value)
                out[key] = got
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items = None
        for i, item in enumerate(value):
            got = resolve(item, lookup, used, where=where)
            if got is not item:
                if items is None:
                    items = list(value)
                items[i] = got
        if items is None:
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value


# --- redacting -------------------------------------------------------------------------------

class Redactor:
    """Replaces each of a body's secret values with `***` in text and in JSON-like values.

    Besides the value as given it masks the spellings the engine itself may turn it into before
    this sees it: its JSON escapes (a process echoing its input), whitespace run together and
    control characters escaped (one-line errors), and each line of a multi-line value."""

    def __init__(self, values=()):
        patterns: set[str] = set()
        for value in values:
            if not value:
                continue
            collapsed = " ".join(value.split())
            forms = {value, collapsed, escape_controls(collapsed),
                     json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
            if "\n" in value or "\r" in value:
                forms.update(piece.strip() for piece in value.splitlines()
                             if len(piece.strip()) >= MIN_PIECE)
            patterns.update(form for form in forms if form)
        self._pattern = (re.compile("|".join(re.escape(p) for p in sorted(patterns, key=len, reverse=True)))
                         if patterns else None)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: Any) -> Any:
        if self._pattern is None or not isinstance(text, str):
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with the secrets masked in its strings, its keys, and
        its numbers (a number that shows one becomes the text `***`)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return MASK if self._pattern.search(repr(value)) else value
        return value

    def logger(self, logger: logging.Logger) -> logging.LoggerAdapter:
        return _RedactingLog(logger, self)


NO_SECRETS = Redactor()


class _RedactingLog(logging.LoggerAdapter):
    """ctx.log of a body that was given secrets: each record is formatted (traceback included)
    and masked here, before any handler sees it."""

    def __init__(self, logger: logging.Logger, redactor: Redactor):
        super().__init__(logger, {})
        self.redactor = redactor

    def log(self, level, msg, *args, exc_info=None, stack_info=False, stacklevel=1, extra=None):
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError, KeyError):
            text = " ".join(str(part) for part in (msg, *args))
        if exc_info:
            if exc_info is True:
                exc_info = sys.exc_info()
            elif isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            if exc_info[0] is not None:
                text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip("\n")
        self.logger.log(level, "%s", self.redactor.text(text), extra=extra, stack_info=stack_info,
                        stacklevel=stacklevel + 1)


# --- what a body sees ------------------------------------------------------------------------

@dataclass
class Body:
    """A node body's view with its references resolved, and how to take its results back."""

    node: NodeDef
    input: Any
    inputs: dict
    vars: dict | None
    redact: Redactor
    _vars_stored: dict | None = None
    _vars_shown: dict | None = None

    def log(self, node_id: str) -> logging.Logger | logging.LoggerAdapter | None:
        """ctx.log: masked when the body was given secrets, else the default (None)."""
        return self.redact.logger(logging.getLogger(f"durableflow.node.{node_id}")) if self.redact else None

    def stored_vars(self, after: dict) -> dict:
        """The body's vars as they are to be stored: what it left as it was shown keeps its
        reference, what it changed is masked."""
        if not self.redact or self._vars_stored is None:
            return after
        return _restore(after, self._vars_stored, self._vars_shown, self.redact)


def _restore(after: Any, stored: Any, shown: Any, redact: Redactor) -> Any:
    if after == shown:
        return stored
    if isinstance(after, dict) and isinstance(stored, dict) and isinstance(shown, dict):
        return {key: (_restore(value, stored[key], shown[key], redact)
                      if key in stored and key in shown else redact.value(value))
                for key, value in after.items()}
    return redact.value(after)


def open_body(secrets: Secrets, node: NodeDef, input: Any, inputs: dict, variables: dict | None, *,
              payload_text: str | None = None) -> Body:
    """Resolve the references a body is about to see. `variables` (None: the body sees none) are
    copied, never changed. `payload_text`: the message's stored JSON (holding input and inputs);
    when it names no `$secret` those two are not walked."""
    used: dict[str, str] = {}
    where = secrets.where

    def look(value: Any) -> Any:
        return resolve(value, secrets.lookup, used, where=where)

    try:
        if payload_text is None or KEY in payload_text:
            input, inputs = look(input), look(inputs)
        env, command = look(node.env), look(node.command)
        shown = look(variables)
    except SecretNotFound as exc:
        raise SecretNotFound(f"node {node.node_id!r}: {exc.message}") from None
    except NodeError as exc:
        raise NodeError(f"node {node.node_id!r}: {exc.message}", error_type=exc.error_type) from None
    if env is not node.env or command is not node.command:
        node = replace(node, env=env, command=command)
    # The body may change its vars in place: it gets a copy; `shown` and `variables` stay as they
    # were, to tell afterwards what it changed.
    view = None if variables is None else copy.deepcopy(shown)
    if not used:
        return Body(node, input, inputs, view, NO_SECRETS)
    return Body(node, input, inputs, view, Redactor(used.values()), variables, shown)
