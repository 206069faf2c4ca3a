"""The dashboard's HTTP server: the standard library's http.server, a route table, and the checks
every request passes (Host header, access token, CSRF token on every POST).

Requests are served by a fixed pool of threads, not a thread per request (ThreadingHTTPServer):
the store keeps one SQLite read connection per thread, so a thread per request would open a new
connection for each and keep them all. HTTP/1.0 (one request per connection) keeps an idle
browser connection from holding a pool thread; a live view holds one for as long as it is open,
and at most STREAMS of them run at once.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from durableflow.errors import (
    DatabaseReadOnly, DurableflowError, InvalidTransition, NotFound, ValidationError)
from durableflow.ui import controls, graph, live, views_other, views_runs
from durableflow.ui.dashboard import CookieNames, Dashboard
from durableflow.ui.html import Markup, html, page
from durableflow.ui.security import TOKEN_HEADER, HostCheck

log = logging.getLogger("durableflow.ui")

THREADS = 16
STREAMS = 12          # live views at once; the rest of the pool stays for pages
MAX_FORM = 64 * 1024
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
VALUE_CSP = "default-src 'none'; sandbox"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list = field(default_factory=list)
    stream: object = None          # an iterator of bytes: sent as it comes (server-sent events)


@dataclass
class Ctx:
    """What a view sees of one request."""
    dash: Dashboard
    query: dict
    form: dict
    csrf: str
    notice: str | None = None


def page_response(markup: Markup, status: int = 200) -> Response:
    return Response(status, markup.encode("utf-8"))


def text_response(text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(200, text.encode("utf-8"), content_type, [("Content-Security-Policy", VALUE_CSP)])


def _unauthorized(why: str) -> Response:
    """Plain text: without the token, nothing of the dashboard (not even the file's name)."""
    return Response(HTTPStatus.UNAUTHORIZED, (why + "\n").encode(), "text/plain; charset=utf-8")


def redirect(location: str, status: int = HTTPStatus.SEE_OTHER) -> Response:
    return Response(status, b"", headers=[("Location", location)])


def error_page(dash: Dashboard, status: int, message: str) -> Response:
    body = html('<h1>{} {}</h1><p class="err">{}</p><p><a href="/runs">Back to the runs</a></p>',
                status, HTTPStatus(status).phrase, message)
    return page_response(page(HTTPStatus(status).phrase, body, db=dash.label, read_only=dash.read_only), status)


# --- routes -----------------------------------------------------------------------------------

def _run_stream(ctx: Ctx, run_id: str, last_event_id: str | None) -> Response:
    text = last_event_id or ctx.query.get("after") or "0"
    if not text.isdigit():
        raise ValidationError(f"after must be an event number, not {text!r}")
    ctx.dash.engine.store.get_run_row(run_id)      # RunNotFound: a 404, not a stream
    if not ctx.dash.open_stream():
        return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"too many live views open", "text/plain",
                        [("Retry-After", "5")])
    frames = live.run_stream(ctx.dash.read, ctx.dash.data_version, run_id, int(text), ctx.dash.stop)
    return Response(200, content_type="text/event-stream; charset=utf-8",
                    headers=[("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")], stream=frames)


def _attempt_value(ctx: Ctx, run_id: str, instance_id: str, name: str) -> Response:
    value = views_runs.attempt_value(ctx, run_id, instance_id, name)
    if value is None:
        raise NotFound(f"run {run_id} has no attempt {instance_id} with an {name}")
    return text_response(value)


def _static(name: str) -> Response:
    if name == "status.css":
        body = graph.status_css().encode()
        return Response(200, body, "text/css; charset=utf-8", [("Cache-Control", "max-age=60")])
    if name not in STATIC:
        raise NotFound(f"no static file {name!r}")
    body = resources.files("durableflow.ui").joinpath("static", name).read_bytes()
    return Response(200, body, STATIC[name], [("Cache-Control", "max-age=60")])


Route = Callable[..., Response]
GET: list[tuple[re.Pattern, Route]] = [(re.compile(p), f) for p, f in (
    (r"/", lambda ctx, req: redirect("/runs")),
    (r"/favicon\.ico", lambda ctx, req: Response(HTTPStatus.NO_CONTENT)),
    (r"/runs", lambda ctx, req: page_response(views_runs.runs_list(ctx))),
    (r"/runs/([^/]+)", lambda ctx, req, r: page_response(views_runs.run_page(ctx, r))),
    (r"/runs/([^/]+)/attempts", lambda ctx, req, r: page_response(views_runs.attempts_fragment(ctx, r))),
    (r"/runs/([^/]+)/attempts/(\d+)/(input|output|error)", lambda ctx, req, r, i, n: _attempt_value(ctx, r, i, n)),
    (r"/runs/([^/]+)/events", lambda ctx, req, r: _run_stream(ctx, r, req.headers.get("Last-Event-ID"))),
    (r"/workflows", lambda ctx, req: page_response(views_other.workflows(ctx))),
    (r"/workflows/([^/]+)", lambda ctx, req, w: page_response(views_other.workflow(ctx, w))),
    (r"/workflows/([^/]+)/definition\.json",
     lambda ctx, req, w: text_response(views_other.definition_json(ctx, w), "application/json")),
    (r"/dead-letters", lambda ctx, req: page_response(views_other.dead_letters(ctx))),
    (r"/schedules", lambda ctx, req: page_response(views_other.schedules(ctx))),
    (r"/schedules/([^/]+)", lambda ctx, req, s: page_response(views_other.schedule(ctx, s))),
    (r"/breakers", lambda ctx, req: page_response(views_other.breakers(ctx))),
    (r"/stats", lambda ctx, req: page_response(views_other.stats(ctx))),
    (r"/static/([A-Za-z0-9_.-]+)", lambda ctx, req, n: _static(n)),
)]
CONTROL = re.compile(r"/runs/([^/]+)/(" + "|".join(controls.ACTIONS) + ")")


def _control(ctx: Ctx, run_id: str, name: str) -> Response:
    if ctx.dash.read_only:
        return error_page(ctx.dash, HTTPStatus.FORBIDDEN, "this dashboard is read-only (--read-only): no controls")
    if ctx.form.get("confirm") != "yes":
        return page_response(controls.confirm_page(ctx, run_id, name))
    return redirect(controls.carry_out(ctx, run_id, name))


# --- the handler ------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    server_version = "durableflow-ui"
    protocol_version = "HTTP/1.0"
    timeout = 30          # a client that sends nothing for this long is dropped
    server: "DashboardServer"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _serve(self, method: str) -> None:
        dash = self.server.dash
        cookies = self._cookies()
        set_cookies: list[str] = []
        try:
            response = self._checked(method, dash, cookies, set_cookies)
        except Exception:   # a bug: one line in the log, a page that says so
            log.exception("dashboard: %s %s failed", method, self.path)
            response = error_page(dash, 500, "internal error (the server's log has the traceback)")
        self._send(response, set_cookies)

    def _checked(self, method: str, dash: Dashboard, cookies: dict, set_cookies: list) -> Response:
        if not self.server.hosts.allows(self.headers.get("Host")):
            return Response(HTTPStatus.BAD_REQUEST, b"Host header not accepted (this server answers to the "
                            b"address it listens on)\n", "text/plain; charset=utf-8")
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        names = dash.cookie_names
        if dash.secrets.token is not None:
            given = query.get("token")
            if given is not None:
                if not dash.secrets.token_ok(given):
                    return _unauthorized("wrong access token")
                set_cookies.append(f"{names.token}={given}; Path=/; HttpOnly; SameSite=Strict")
                rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
                return redirect(parts.path + ("?" + rest if rest else ""))
            bearer = self.headers.get("Authorization", "")
            offered = (self.headers.get(TOKEN_HEADER) or (bearer[7:] if bearer.startswith("Bearer ") else None)
                       or cookies.get(names.token))
            if not dash.secrets.token_ok(offered):
                return _unauthorized("this dashboard needs its access token: open the address "
                                     "`durableflow ui` printed (it ends in ?token=...)")
        browser = cookies.get(names.browser)
        if not browser or not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", browser):
            browser = dash.secrets.new_browser_id()
            set_cookies.append(f"{names.browser}={browser}; Path=/; HttpOnly; SameSite=Strict")
        ctx = Ctx(dash, query, {}, dash.secrets.csrf_for(browser), controls.NOTICES.get(query.get("notice", "")))
        try:
            if method == "POST":
                return self._post(ctx, parts.path, cookies.get(names.browser))
            return self._get(ctx, parts.path)
        except NotFound as exc:
            return error_page(dash, HTTPStatus.NOT_FOUND, exc.message)
        except ValidationError as exc:
            return error_page(dash, HTTPStatus.BAD_REQUEST, exc.message)
        except InvalidTransition as exc:
            return error_page(dash, HTTPStatus.CONFLICT, exc.message)
        except DatabaseReadOnly as exc:
            return error_page(dash, HTTPStatus.FORBIDDEN, exc.message)
        except DurableflowError as exc:
            return error_page(dash, HTTPStatus.INTERNAL_SERVER_ERROR, exc.message)

    def _get(self, ctx: Ctx, raw_path: str) -> Response:
        for pattern, view in GET:
            m = pattern.fullmatch(raw_path)
            if m:
                return view(ctx, self, *(unquote(g) for g in m.groups()))
        raise NotFound(f"no page {raw_path}")

    def _post(self, ctx: Ctx, raw_path: str, browser: str | None) -> Response:
        m = CONTROL.fullmatch(raw_path)
        if not m:
            return error_page(ctx.dash, HTTPStatus.NOT_FOUND, f"nothing to post to at {raw_path}")
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            return error_page(ctx.dash, HTTPStatus.FORBIDDEN, "this form came from another site")
        if self.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
            return error_page(ctx.dash, HTTPStatus.FORBIDDEN, "this form came from another site")
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            return error_page(ctx.dash, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the control's form as it is")
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM:
            return error_page(ctx.dash, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "form too large")
        body = self.rfile.read(length).decode("utf-8", "replace")
        ctx.form = dict(parse_qsl(body, keep_blank_values=True))
        if not ctx.dash.secrets.csrf_ok(browser, ctx.form.get("csrf")):
            return error_page(ctx.dash, HTTPStatus.FORBIDDEN, "the form's CSRF token does not match: reload "
                              "the page and try again")
        return _control(ctx, unquote(m.group(1)), m.group(2))

    def _cookies(self) -> dict:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie") or "")
        except CookieError:
            return {}
        return {k: v.value for k, v in jar.items()}

    def _send(self, response: Response, set_cookies: list[str]) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("X-Content-Type-Options", "nosniff")
            # Not no-referrer: under it Chromium sends `Origin: null` with the controls' forms.
            self.send_header("Referrer-Policy", "same-origin")
            self.send_header("X-Frame-Options", "DENY")
            if response.content_type.startswith("text/html"):
                self.send_header("Content-Security-Policy", PAGE_CSP)
                self.send_header("Cache-Control", "no-store")
            for name, value in response.headers:
                self.send_header(name, value)
            for cookie in set_cookies:
                self.send_header("Set-Cookie", cookie)
            if response.stream is None:
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)
                return
            self.end_headers()
            self.wfile.flush()
            self._stream(response.stream)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass   # the browser went away

    def _stream(self, frames) -> None:
        try:
            for chunk in frames:
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            frames.close()
            self.server.dash.close_stream()


class DashboardServer(HTTPServer):
    """http.server's HTTPServer whose requests run on a fixed pool of threads."""

    request_queue_size = 64    # a browser opens several connections at once

    def __init__(self, dash: Dashboard, host: str, port: int, *, allowed_hosts: tuple[str, ...] = ()):
        self.dash = dash
        self.hosts = HostCheck(host, allowed_hosts)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="durableflow-ui")
        self._active: set[socket.socket] = set()      # connections in hand
        self._active_lock = threading.Lock()
        super().__init__((host.strip("[]"), port), Handler)
        dash.cookie_names = CookieNames.for_port(self.server_address[1])
        dash.max_streams = STREAMS

    def process_request(self, request, client_address) -> None:
        with self._active_lock:
            self._active.add(request)
        self._pool.submit(self._work, request, client_address)

    def _work(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._active_lock:
                self._active.discard(request)
            self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        log.debug("dashboard: request from %s failed", client_address, exc_info=True)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def serve(self) -> None:
        """Serve until shutdown() is called from another thread."""
        self.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop the live views and drop the connections in hand (a browser keeps spare ones open,
        idle, which would hold their threads until they time out), then the pool, then the
        database."""
        self.dash.stop.set()
        self.server_close()
        with self._active_lock:
            for request in list(self._active):
                try:
                    request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.dash.close()
