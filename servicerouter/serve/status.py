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
import math
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from servicerouter.serve.addresses import is_loopback, parse_listen
from servicerouter.serve.httpd import (
    CONNECTION_DEADLINE,
    MAX_CONNECTIONS,
    GuardedHandler,
    GuardedHTTPServer,
)

log = logging.getLogger("servicerouter.status")

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LabelKey = tuple[tuple[str, str], ...]


def _label_key(labels: Mapping[str, str] | None) -> LabelKey:
    return tuple(sorted((labels or {}).items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(key: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = list(key) + list(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


class Counter(_Metric):
    """A counter, optionally labelled.

    ``series``: the label sets known in advance, exported at 0 from the start,
    so a series exists before its first increment (a ``rate()`` or an alert on
    ``{result="failed"}`` sees 0, not nothing, and an unlabelled 0 never turns
    into labelled series later).
    """

    kind = "counter"

    def __init__(self, name: str, help_text: str,
                 series: Iterable[Mapping[str, str]] = ()) -> None:
        super().__init__(name, help_text)
        self._values: dict[LabelKey, float] = {_label_key(dict(labels)): 0.0
                                               for labels in series}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _label_key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_label_key(labels), 0.0)

    def total(self) -> float:
        return sum(self._values.values())

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items()) or [((), 0.0)]
        return [f"{self.name}{_labels_text(k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_label_key(labels)] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str,
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        with self._lock:
            self._sum += value
            self._count += 1
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[index] += 1

    @property
    def count(self) -> int:
        return self._count

    def lines(self) -> list[str]:
        with self._lock:
            out = [f'{self.name}_bucket{{le="{_number(b)}"}} {c}'
                   for b, c in zip(self.buckets, self._counts, strict=True)]
            out.append(f'{self.name}_bucket{{le="+Inf"}} {self._count}')
            out.append(f"{self.name}_sum {_number(self._sum)}")
            out.append(f"{self.name}_count {self._count}")
        return out


def _each(label: str, *values: str) -> list[dict[str, str]]:
    return [{label: value} for value in values]


class Metrics:
    """Every metric servicerouter exports (one instance per router).

    Labelled counters whose label values are known start with every series at
    0; ``event_types`` are the event type labels to start with (the live
    engine passes the bounded set it counts).
    """

    def __init__(self, event_types: Iterable[str] = ()) -> None:
        self.syncs = Counter("servicerouter_syncs_total",
                             "Syncs by kind (full, incremental) and result (ok, error).",
                             [{"kind": kind, "result": result}
                              for kind in ("full", "incremental") for result in ("ok", "error")])
        self.sync_duration = Histogram("servicerouter_sync_duration_seconds",
                                       "Duration of a sync, from fetch to applied.")
        self.reloads = Counter("servicerouter_reloads_total",
                               "HAProxy reloads by result (ok, failed).",
                               _each("result", "ok", "failed"))
        self.runtime_updates = Counter(
            "servicerouter_runtime_updates_total",
            "Server changes applied through the Runtime API without a reload.")
        self.runtime_servers = Counter(
            "servicerouter_runtime_servers_total",
            "Servers changed through the Runtime API by action (add, remove, readdress, reweight).",
            _each("action", "add", "remove", "readdress", "reweight"))
        self.cert_updates = Counter(
            "servicerouter_cert_updates_total",
            "Certificates swapped through the Runtime API without a reload, by result "
            "(ok, failed: a reload applied it instead).", _each("result", "ok", "failed"))
        self.events = Counter("servicerouter_events_total", "Marathon events received by type.",
                              _each("type", *event_types))
        self.marathon_errors = Counter("servicerouter_marathon_errors_total",
                                       "Failed Marathon requests and event stream drops.")
        self.quarantined = Gauge("servicerouter_quarantined_apps",
                                 "Apps left out because HAProxy rejected their config.")
        self.route_conflicts = Gauge(
            "servicerouter_route_conflicts",
            "Losing claims on a vhost(+path) or bind port another (older) app owns.")
        self.event_to_apply = Histogram(
            "servicerouter_event_to_apply_seconds",
            "From the first event of a burst to its change being live in HAProxy.")
        self.validations = Counter("servicerouter_validations_total",
                                   "haproxy -c runs by result (ok, failed).",
                                   _each("result", "ok", "failed"))
        self.resync_drift = Counter(
            "servicerouter_resync_drift_total",
            "Full resyncs that found routing different from what events had built.")
        self.haproxy_restarts = Counter("servicerouter_haproxy_restarts_total",
                                        "Managed HAProxy restarted after it died.")
        self.marathon_up = Gauge("servicerouter_marathon_up",
                                 "1 when the last Marathon request succeeded.")
        self.services = Gauge("servicerouter_services", "Routed service ports.")
        self.last_sync = Gauge("servicerouter_last_sync_timestamp_seconds",
                               "Unix time of the last successful sync.")
        # Removal holds (servicerouter.engine.holds): the last config keeps serving.
        self.removal_held = Gauge("servicerouter_removal_held",
                                  "1 while a large removal is held, else 0.")
        self.removal_held_servers = Gauge("servicerouter_removal_held_servers",
                                          "Servers the held removal would take away.")
        self.build: dict[str, str] = {}
        self.set_build(None)

    def set_build(self, haproxy_version: str | None) -> None:
        """``servicerouter_build_info{version,python,haproxy} 1`` and /status's "build".

        Which servicerouter, Python and HAProxy run is the first question about any
        dashboard anomaly; a constant-1 gauge with labels is how Prometheus says it.
        """
        import platform

        from servicerouter import __version__

        self.build = {"version": __version__, "python": platform.python_version(),
                      "haproxy": haproxy_version or "unknown"}
        self.build_info = Gauge("servicerouter_build_info",
                                "Always 1: the running servicerouter, Python and HAProxy "
                                "versions are its labels.", [self.build])
        self.build_info.set(1, **self.build)

    def all(self) -> list[_Metric]:
        return [m for m in vars(self).values() if isinstance(m, _Metric)]

    def exposition(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines.extend(metric.header())
            lines.extend(metric.lines())
        return "\n".join(lines) + "\n"


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
