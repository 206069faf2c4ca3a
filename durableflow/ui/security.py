"""Who may talk to the dashboard: the Host header (against DNS rebinding), the access token, and
the CSRF token every control carries.

DNS rebinding: a page on attacker.example whose name is made to resolve to 127.0.0.1 can send
requests to a server on loopback from the victim's browser; they arrive with `Host:
attacker.example`. Only the names the server was bound to are accepted (its address, and the
loopback names when it listens on loopback). An IP address literal cannot be rebound, so a
server listening on every interface also accepts the addresses of this machine.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
CSRF_COOKIE = "durableflow_csrf"
TOKEN_COOKIE = "durableflow_token"
TOKEN_HEADER = "X-Durableflow-Token"


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine's loopback only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def host_name(header: str | None) -> str | None:
    """The name in a Host header, without its port; None when there is none."""
    if not header:
        return None
    text = header.strip().lower()
    if text.startswith("["):          # [::1]:8080
        end = text.find("]")
        return text[1:end] if end > 0 else None
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".") or None


class HostCheck:
    """The Host names a server bound to `bound` accepts, plus `extra` names given by the user."""

    def __init__(self, bound: str, extra: tuple[str, ...] = ()):
        self.bound = bound.strip("[]").lower()
        self.names = {self.bound, *(e.lower().rstrip(".") for e in extra)}
        if is_loopback(self.bound):
            self.names.update(LOOPBACK_NAMES)
            self.names.update(("127.0.0.1", "::1"))
        self.wildcard = is_wildcard(self.bound)
        if self.wildcard:
            self.names.update((socket.gethostname().lower(), socket.getfqdn().lower(),
                               *LOOPBACK_NAMES))

    def allows(self, header: str | None) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        if self.wildcard:
            try:
                ipaddress.ip_address(name)
                return True       # an address literal: nothing to rebind
            except ValueError:
                return False
        return False


class Secrets:
    """The access token (if any) and the key CSRF tokens are made with (new per server)."""

    def __init__(self, token: str | None):
        self.token = token
        self._key = secrets.token_bytes(32)

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    @staticmethod
    def new_browser_id() -> str:
        return secrets.token_urlsafe(24)

    def csrf_for(self, browser_id: str) -> str:
        """The CSRF token of one browser (its csrf cookie): a form must carry it back."""
        return hmac.new(self._key, browser_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, browser_id: str | None, given: str | None) -> bool:
        if not browser_id or not given:
            return False
        return hmac.compare_digest(self.csrf_for(browser_id), given)
