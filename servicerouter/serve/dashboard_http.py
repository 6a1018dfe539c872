"""The dashboard over HTTP: who may read, who may write, and the forms' requests.

Served by the status server (:mod:`servicerouter.serve.status`) at ``/``,
``/rules``, ``/signin`` and ``/signout``.  The rules are those of /status:

- reads: free when the router has no ``--status-token`` (it then listens on
  loopback only); otherwise they need the token, as ``Authorization: Bearer``
  (scripts) or a session cookie (browsers cannot send a bearer header);
- writes (rule changes, sign-out) need a session *and* its CSRF token in
  the form.  Signing in with the admin token creates the session: a random
  id in an ``HttpOnly; SameSite=Strict`` cookie, kept server-side with its
  own random CSRF token; the CSRF token is only ever written into this
  site's forms.  A POST whose ``Origin`` names another site is refused too.
  Without ``--status-token`` nothing can be written from the dashboard
  (any local user, or a web page through a browser, can reach 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import hmac
import http.cookies
import logging
import secrets
import socket
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from servicerouter.engine.dashboard_snapshot import DashboardData
from servicerouter.serve.dashboard import (
    Rendered,
    SessionView,
    parse_query,
    render_dashboard,
    render_signin,
    select_services,
)
from servicerouter.serve.dashboard_editor import (
    FieldError,
    RuleBackend,
    error_of,
    form_to_rule,
    history_rows,
    render_rules,
    rule_to_form,
)

log = logging.getLogger("servicerouter.dashboard")

COOKIE = "sr_session"
SESSION_TTL = 8 * 3600.0
MAX_SESSIONS = 256
MAX_FORM = 64 * 1024
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
     "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),  # "no-referrer" makes browsers send Origin: null
]
GET_PATHS = frozenset({"/", "/rules", "/signin"})
POST_PATHS = frozenset({"/signin", "/signout", "/rules"})


@dataclass
class Session:
    csrf: str
    expires: float


class Sessions:
    """Signed-in browsers: random ids -> their CSRF token, bounded and expiring."""

    def __init__(self, ttl: float = SESSION_TTL, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), self.clock() + self.ttl)
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > self.limit:  # the oldest sign-in goes first
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires < self.clock():
                del self._sessions[session_id]
                return None
            return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


def _cookie(headers: Mapping[str, str], name: str) -> str | None:
    jar = http.cookies.SimpleCookie()
    try:
        jar.load(headers.get("Cookie") or "")
    except http.cookies.CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _same_origin(headers: Mapping[str, str]) -> bool:
    """A browser's POST from another site names it in Origin; none (curl) is fine."""
    origin = headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    parsed = urllib.parse.urlsplit(origin)
    return parsed.netloc.lower() == (headers.get("Host") or "").lower()


def _redirect(location: str, *headers: tuple[str, str]) -> Rendered:
    return Rendered(303, "", [("Location", location), *headers])


class Dashboard:
    """Answers the dashboard's requests (see the module docstring).

    ``data``: the engine's snapshot and server states; ``token``: the router's
    ``--status-token`` (None: reads free, no writes); ``rules``: the rule
    editor's backend (None: rules not enabled, the page says so).
    """

    def __init__(self, data: DashboardData, token: str | None,
                 rules: RuleBackend | None = None, sessions: Sessions | None = None,
                 cookie: str = COOKIE) -> None:
        self.data = data
        self.token = token or None
        self.rules = rules
        self.sessions = sessions or Sessions()
        # Browsers send a host's cookies to every port on it: two routers on one host
        # name their cookies apart (wiring adds the port), or each signs the other out.
        self.cookie = cookie

    def handles(self, method: str, path: str) -> bool:
        return path in (GET_PATHS if method in ("GET", "HEAD") else POST_PATHS)

    def serve(self, handler: Any, method: str) -> bool:
        """The status server's hook: answer ``handler`` if the path is ours."""
        return serve(self, handler, method)

    # ----------------------------------------------------------------- entry

    def respond(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
                bearer_ok: bool, client: str = "") -> Rendered:
        """One request -> one answer; never raises for bad input.

        ``client``: the peer's address, recorded with each rule change it makes.
        """
        path, _, query = target.partition("?")
        session_id = _cookie(headers, self.cookie)
        session = self.sessions.get(session_id)
        view = SessionView(signed_in=session is not None,
                           csrf=session.csrf if session is not None else "",
                           token_required=self.token is not None,
                           can_write=session is not None and self.token is not None)
        if method == "POST":
            if len(body) > MAX_FORM:
                return Rendered(413, "form too large\n")
            if not _same_origin(headers):
                return Rendered(403, "cross-site form refused\n")
            form = {k: v[0] for k, v in urllib.parse.parse_qs(
                body.decode("utf-8", "replace"), keep_blank_values=True).items()}
            return self._post(path, form, session_id, session, view, client)
        readable = self.token is None or bearer_ok or session is not None
        if path == "/signin" or not readable:
            status = 200 if path == "/signin" else 401
            return Rendered(status, render_signin(self._status_only(), view))
        if path == "/rules":
            return self._rules_page(view, query)
        return self._dashboard(view, query)

    # ----------------------------------------------------------------- reads

    def _status_only(self) -> dict[str, Any]:
        """What the sign-in page shows of the router: nothing (not even its versions,
        which /healthz keeps from anonymous callers too), and it costs no snapshot."""
        return {}

    def _dashboard(self, view: SessionView, query: str) -> Rendered:
        snapshot = self.data.snapshot()
        page = select_services(snapshot["services"], parse_query(query))
        states, error = self.data.server_states(row["backend"] for row in page.rows)
        return Rendered(200, render_dashboard(snapshot, page, states, view, states_error=error))

    def _rules_page(self, view: SessionView, query: str, *, form: Mapping[str, str] | None = None,
                    errors: Mapping[str, str] | None = None, preview: str | None = None,
                    notice: str = "", status: int = 200) -> Rendered:
        snapshot = self.data.snapshot()
        rules = self.rules.rules() if self.rules is not None else []
        history = history_rows(self.rules.history(20)) if self.rules is not None else []
        if form is None:
            params = urllib.parse.parse_qs(query)
            wanted = (params.get("id") or [""])[0]
            form = next((rule_to_form(rule) for rule in rules if rule.get("id") == wanted),
                        None)
            if form is None and params.get("app"):
                form = {"app_id": params["app"][0], "port_index": (params.get("port")
                                                                   or ["0"])[0]}
            notice = notice or (f"Saved {(params.get('saved') or [''])[0]}."
                                if params.get("saved") else "")
            if params.get("deleted"):
                notice = f"Deleted {params['deleted'][0]}."
        apps_page = select_services(snapshot["services"], parse_query(query), "/rules")
        return Rendered(status, render_rules(snapshot, view, apps_page=apps_page, rules=rules,
                                             history=history, form=form, errors=errors,
                                             preview=preview, notice=notice,
                                             editor_on=self.rules is not None))

    # ----------------------------------------------------------------- writes

    def _post(self, path: str, form: Mapping[str, str], session_id: str | None,
              session: Session | None, view: SessionView, client: str) -> Rendered:
        if path == "/signin":
            return self._signin(form, view)
        if self.token is None:
            return Rendered(403, "writing from the dashboard needs --status-token\n")
        if session is None or session_id is None:
            return Rendered(401, render_signin(self._status_only(), view,
                                               "Sign in first (or your session expired)."))
        if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            return Rendered(403, "bad or missing CSRF token: reload the page\n")
        if path == "/signout":
            self.sessions.drop(session_id)
            return _redirect("/", ("Set-Cookie", f"{self.cookie}=; Max-Age=0; Path=/; HttpOnly; "
                                                 "SameSite=Strict"))
        return self._rule_write(form, view, f"dashboard ({client})" if client else "dashboard")

    def _signin(self, form: Mapping[str, str], view: SessionView) -> Rendered:
        if self.token is None:
            return Rendered(403, render_signin(self._status_only(), view))
        given = form.get("token", "").strip()
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            time.sleep(0.2)  # a guess costs time
            return Rendered(401, render_signin(self._status_only(), view, "Wrong token."))
        session_id, _ = self.sessions.create()
        cookie = (f"{self.cookie}={session_id}; Path=/; HttpOnly; SameSite=Strict; "
                  f"Max-Age={int(self.sessions.ttl)}")
        return _redirect("/", ("Set-Cookie", cookie))

    def _rule_write(self, form: Mapping[str, str], view: SessionView, actor: str) -> Rendered:
        backend = self.rules
        if backend is None:
            return Rendered(404, "operator rules are not enabled on this router\n")
        action = form.get("action", "save")
        fields = {name: form.get(name, "") for name in form if name not in ("csrf", "action")}
        try:
            if action == "delete":
                rule_id = form.get("id", "")
                if not backend.delete(rule_id, actor):
                    return self._rules_page(view, "", notice=f"No rule {rule_id}.", status=404)
                return _redirect("/rules?" + urllib.parse.urlencode({"deleted": rule_id}))
            data = form_to_rule(form)
            if action == "preview":
                diff = backend.preview(data, f"{data['app_id']}:{data['port_index']}")
                return self._rules_page(view, "", form=fields, preview=diff)
            rule_id = backend.save(data, actor)
        except FieldError as err:
            return self._rules_page(view, "", form=fields, errors=error_of(err), status=400)
        except Exception as err:  # the validator's RuleError: shown inline, nothing stored
            if not hasattr(err, "field"):
                raise
            return self._rules_page(view, "", form=fields, errors=error_of(err), status=400)
        return _redirect("/rules?" + urllib.parse.urlencode({"saved": rule_id}))





def serve(dashboard: Dashboard, handler: Any, method: str) -> bool:
    """Answer the status server's request if it is the dashboard's; False if not.

    Kept here, not in the status module: the body read, the call and the
    headers (security ones on every answer) are the dashboard's business.
    """
    path = handler.path.split("?", 1)[0]
    if not dashboard.handles(method, path):
        return False
    server = handler.server
    body = b""
    if method == "POST":
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM:
            handler.close_connection = True
            _write(handler, Rendered(413, "form too large\n"))
            return True
        body = handler.rfile.read(length)
    try:
        bearer_ok = bool(server.token) and handler._authorized()
        answer = dashboard.respond(method, handler.path, handler.headers, body, bearer_ok,
                                   client=str(handler.client_address[0]))
    except Exception:  # a dashboard bug must never take the router down
        log.exception("dashboard failed on %s %s", method, path)
        answer = Rendered(500, "internal error\n")
    _write(handler, answer)
    return True


def _write(handler: Any, answer: Rendered) -> None:
    data = answer.body.encode()
    # headers and body leave in two writes: without this, Nagle's algorithm holds the
    # body until the client's delayed ACK (~40 ms on Linux) on a kept-alive connection
    with contextlib.suppress(OSError, AttributeError):
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    handler.send_response(answer.status)
    html = answer.body.startswith("<!doctype")
    handler.send_header("Content-Type", "text/html; charset=utf-8" if html
                        else "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Cache-Control", "no-store")
    for name, value in [*SECURITY_HEADERS, *answer.headers]:
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


__all__ = ["COOKIE", "Dashboard", "SECURITY_HEADERS", "Session", "Sessions", "serve"]
