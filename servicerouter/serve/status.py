"""Observability: metrics and the ``--status-listen`` HTTP endpoint.

``/healthz`` answers 200 while the router loop is alive (503 once it is
stuck or a managed HAProxy is down), ``/status`` is a JSON snapshot (last
sync, Marathon host and outage, services, quarantined apps, route
conflicts (which app owns a contested vhost or port, which lost), reload and
runtime-update counts, certificate expiry) and ``/metrics`` is Prometheus
text exposition.  The metrics are a few dozen lines of our own rather than a
client library: counters, gauges and histograms with labels are all we need.

The endpoint binds to loopback unless told otherwise; on any other address
a token is mandatory (``Authorization: Bearer TOKEN``) for /status and
/metrics, because /status names every app and backend address.  /healthz
never needs it (liveness probes cannot send one): without the token it says
only ``ok`` or ``unhealthy``, with it the reason too.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from servicerouter.serve.addresses import is_loopback, parse_listen
from servicerouter.serve.httpd import (
    CONNECTION_DEADLINE,
    MAX_CONNECTIONS,
    GuardedHandler,
    GuardedHTTPServer,
)
from servicerouter.serve.metrics import Counter, Gauge, Histogram, Metrics

log = logging.getLogger("servicerouter.status")

def route_conflicts(problems: Iterable[Any]) -> list[dict[str, Any]]:
    """/status's conflict list: per route, the app that owns it and the apps that lost.

    Built from the structured fields of conflict problems (``kind == "conflict"``),
    never from their text.  A route is ``host[/path]`` or ``:PORT`` (a bind port).
    """
    by_route: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for problem in problems:
        if getattr(problem, "kind", None) != "conflict":
            continue
        key = (str(problem.route), str(problem.owner))
        loser = {"app": problem.app_id, "port_index": problem.port_index}
        if loser not in by_route.setdefault(key, []):
            by_route[key].append(loser)
    return [{"route": route, "owner": owner,
             "losers": sorted(losers, key=lambda x: (x["app"], x["port_index"] or 0))}
            for (route, owner), losers in sorted(by_route.items())]


# --------------------------------------------------------------------------- HTTP


class _Handler(GuardedHandler):
    server: StatusServer
    timeout = 10.0
    log_name = "status"
    cache_control = "no-store"
    not_allowed_text = "read-only: GET or HEAD\n"

    def _authorized(self) -> bool:
        token = self.server.token
        if not token:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode())

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        """``POST /removal/confirm``: apply a held removal now (the only action here).

        Changing routing needs the token even on loopback, where GET does not:
        any local user, or a web page through a browser, can reach 127.0.0.1.
        """
        path = self.path.split("?", 1)[0]
        if self.server.api is not None and self.server.api.handle(self, "POST"):
            return  # servicerouter.serve.rules_api
        if self.server.dashboard is not None and self.server.dashboard.serve(self, "POST"):
            return  # "/", "/rules", sign-in: servicerouter.serve.dashboard_http
        confirm = self.server.confirm_removal
        if path != "/removal/confirm" or confirm is None:
            self.not_allowed()
            return
        self._drain_body()
        if not self.server.token or not self._authorized():
            self.close_connection = True
            self.send_text(401 if self.server.token else 403,
                       "token required\n" if self.server.token
                       else "confirming a removal needs --status-token\n",
                       "text/plain; charset=utf-8")
            return
        try:
            held = confirm()
        except Exception:  # a bug here must never take the router down
            log.exception("status endpoint failed on %s", path)
            self.send_text(500, "internal error\n", "text/plain; charset=utf-8")
            return
        if held is None:
            self.send_text(409, json.dumps({"confirmed": False, "error": "no removal is held"})
                       + "\n", "application/json")
            return
        self.send_text(202, json.dumps({"confirmed": True, "removal_hold": held},
                                   sort_keys=True, default=str) + "\n", "application/json")

    def _drain_body(self) -> None:
        """Read a small request body so the connection stays usable (none is needed)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= 4096:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def do_PUT(self) -> None:  # noqa: N802 - stdlib name; DELETE too: the rules API's
        if self.server.api is None or not self.server.api.handle(self, self.command):
            self.not_allowed()
    do_DELETE = do_PUT

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if self.server.dashboard is not None and self.server.dashboard.serve(self, "GET"):
            return  # "/", "/rules", sign-in: servicerouter.serve.dashboard_http
        authorized = self._authorized()
        if path == "/healthz":
            # Liveness probes cannot send tokens: /healthz needs none, and without
            # one it says only "ok" or "unhealthy" (the reason is for token holders).
            self._healthz(authorized)
            return
        if not authorized:
            self.close_connection = True
            self.send_text(401, "token required\n", "text/plain; charset=utf-8")
            return
        if self.command == "GET" and self.server.api and self.server.api.handle(self, "GET"):
            return  # /api/rules, /api/services, /api/state: servicerouter.serve.rules_api
        try:
            if path == "/status":
                build = self.server.metrics.build
                snapshot = {**self.server.snapshot(), "version": build["version"], "build": build}
                body = json.dumps(snapshot, indent=2, sort_keys=True, default=str)
                self.send_text(200, body + "\n", "application/json")
            elif path.startswith("/api/backends/") and self.server.backend_servers:
                found = self.server.backend_servers(path[len("/api/backends/"):])
                self.send_text(200 if found else 404, json.dumps(
                    found or {"error": "no such backend"}, sort_keys=True) + "\n",
                    "application/json")
            elif path == "/metrics":
                self.send_text(200, self.server.metrics.exposition(),
                           "text/plain; version=0.0.4; charset=utf-8")
            else:
                self.send_text(404, "not found: try /healthz, /status or /metrics\n",
                           "text/plain; charset=utf-8")
        except Exception:  # a status bug must never take the router down
            log.exception("status endpoint failed on %s", path)
            self.send_text(500, "internal error\n", "text/plain; charset=utf-8")


    def _healthz(self, authorized: bool) -> None:
        try:
            healthy, reason = self.server.health()
        except Exception:  # a health-check bug reads as unhealthy, never as a crash
            log.exception("status endpoint failed on /healthz")
            healthy, reason = False, "health check failed"
        if not authorized:
            reason = "ok" if healthy else "unhealthy"
        self.send_text(200 if healthy else 503, reason + "\n", "text/plain; charset=utf-8")


class StatusServer(GuardedHTTPServer):
    """Serves /healthz, /status and /metrics on a daemon thread.

    Slow or numerous clients are bounded as on the callback server
    (:mod:`servicerouter.serve.httpd`): a deadline per connection and a connection cap.
    """

    label = "status server"
    logger = log
    thread_name = "status"

    def __init__(self, address: tuple[str, int], metrics: Metrics,
                 snapshot: Callable[[], dict[str, Any]],
                 health: Callable[[], tuple[bool, str]],
                 token: str | None = None, *, max_connections: int = MAX_CONNECTIONS,
                 connection_deadline: float = CONNECTION_DEADLINE,
                 confirm_removal: Callable[[], dict[str, Any] | None] | None = None,
                 backend_servers: Callable[[str], dict[str, Any] | None] | None = None,
                 api: Any = None, dashboard: Any = None) -> None:
        host = address[0]
        if not is_loopback(host) and not token:
            raise ValueError(f"--status-listen on {host} (not loopback) needs --status-token")
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler, max_connections=max_connections,
                         connection_deadline=connection_deadline)
        self.metrics = metrics
        self.snapshot = snapshot
        self.health = health
        self.token = token
        # POST /removal/confirm (live runs): the held removal's status, None if none.
        self.confirm_removal = confirm_removal
        # GET /api/backends/NAME (servicerouter.serve.backends_api), None: not found.
        self.backend_servers = backend_servers
        self.api = api  # servicerouter.serve.rules_api.RulesApi: rules and Bamboo's API
        self.dashboard = dashboard  # servicerouter.serve.dashboard_http.Dashboard: "/"


__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
    "StatusServer",
    "is_loopback",
    "parse_listen",
    "route_conflicts",
]
