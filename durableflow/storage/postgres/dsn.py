"""Telling a PostgreSQL DSN from a SQLite path, and saying it without its password.

`postgresql://user:password@host:port/db?schema=NAME`: `schema` is ours (the PostgreSQL schema
durableflow's tables live in, created if missing; default `public`), every other parameter goes
to libpq as given. The label every message uses has the password replaced by `***`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from durableflow.errors import StorageError

PREFIXES = ("postgresql://", "postgres://")
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SECRET_PARAMS = {"password", "sslpassword"}


def is_dsn(target: object) -> bool:
    return isinstance(target, str) and target.lower().startswith(PREFIXES)


class SecretDsn(str):
    """A DSN that prints without its password: its text is the masked label, `full` is what
    connects. A Store's and an Engine's `path` is one, so `Engine(engine.path)` reopens the same
    database while every message that shows the path shows no password."""

    full: str

    def __new__(cls, full: str) -> "SecretDsn":
        self = super().__new__(cls, _mask_url(full))
        self.full = full
        return self

    def __reduce__(self):
        return (SecretDsn, (self.full,))


def full_text(target: str | os.PathLike) -> str:
    """The DSN with its password, from a plain string or a SecretDsn."""
    return getattr(target, "full", None) or os.fspath(target)


@dataclass(frozen=True)
class Dsn:
    conninfo: str      # what libpq is given (without our `schema` parameter)
    schema: str
    label: str         # the DSN with its password masked: safe in messages and logs


def mask(text: str) -> str:
    """`text` with the password of any postgresql:// DSN in it replaced by ***."""
    def one(m: re.Match) -> str:
        return _mask_url(m.group(0))
    return re.sub(r"postgres(?:ql)?://\S+", one, text, flags=re.IGNORECASE)


def _mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse(target: str | os.PathLike) -> Dsn:
    text = full_text(target)
    label = _mask_url(text)
    try:
        parts = urlsplit(text)
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise StorageError(f"{label}: not a valid PostgreSQL DSN ({exc})") from None
    schema = "public"
    rest = []
    for key, value in pairs:
        if key == "schema":
            schema = value
        else:
            rest.append((key, value))
    if not _SCHEMA.match(schema):
        raise StorageError(f"{label}: schema {schema!r} is not a plain PostgreSQL name "
                           f"(letters, digits and _, not starting with a digit)")
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path,
                           urlencode(rest, quote_via=quote), parts.fragment))
    return Dsn(conninfo, schema, label)
