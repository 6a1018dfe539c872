"""The dashboard's data: the live engine's state as plain values, built when asked.

The dashboard (:mod:`servicerouter.serve.dashboard`) is a pure function of
what this module returns.  Nothing here runs per sync: a page request reads
the last sync's services (already kept for /status) and, for the services on
the page only, asks the running HAProxy for its servers' states through the
Runtime API, so a page costs the same with 50 or 5,000 apps behind it.

Where a port's routing came from is shown both ways: the app's own labels
(``HAPROXY_{n}_VHOST`` / ``HAPROXY_{n}_PATH``) and the operator rule for the
same app and port, if any; a rule wins over the labels, so ``origin`` is
``rule`` whenever one exists.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from servicerouter.apply.runtime_api import RuntimeAPI
from servicerouter.apply.server_states import server_states
from servicerouter.model.values import Service

log = logging.getLogger("servicerouter.dashboard")

# Backends asked about per Runtime API connection (commands joined with ";").


def _label(labels: Mapping[str, Any], index: int, name: str) -> str:
    value = labels.get(f"HAPROXY_{index}_{name}")
    return value if isinstance(value, str) else ""


def service_rows(services: Sequence[Service],
                 rules: Mapping[tuple[str, int], Mapping[str, Any]],
                 apps: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One plain row per routed service port (what the services table shows).

    ``rules``: operator rules as plain dicts by (app id, port index); ``apps``:
    Marathon's apps by id as fetched, whose labels are the app's own (a
    service's app is the copy the rules were laid over).
    """
    rows = []
    for service in services:
        rule = rules.get((service.app_id, service.index))
        # the model's word on it: the rule that actually routes this port, if any
        applied = getattr(service.settings, "rule", None)
        raw = (apps or {}).get(service.app_id)
        labels = raw.get("labels") if isinstance(raw, Mapping) else service.labels
        labels = labels if isinstance(labels, Mapping) else {}
        rows.append({
            "app": service.app_id,
            "port_index": service.index,
            "backend": service.backend,
            "bind": f"{service.bind_addr}:{service.bind_port}",
            "mode": service.mode,
            "vhosts": list(service.vhosts),
            "paths": list(service.paths),
            "label_vhost": _label(labels, service.index, "VHOST"),
            "label_path": _label(labels, service.index, "PATH"),
            "rule": dict(rule) if rule is not None else None,
            "origin": "rule" if rule is not None or applied is not None else (
                "label" if service.settings.vhosts or service.settings.path else "port"),
            # The immutable Server tuples as they are: named and formatted only for
            # the rows a page shows (a 5,000-app snapshot holds ~50,000 of them).
            "servers": service.servers,
            # what the text filter searches, built once with the row
            "search": " ".join([service.app_id, service.backend, service.mode,
                                *service.vhosts, *service.paths]).lower(),
        })
    return rows


def dashboard_snapshot(status: Mapping[str, Any], services: Sequence[Service],
                       rules: Sequence[Mapping[str, Any]] = (),
                       apps: Mapping[str, Any] | None = None,
                       rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """/status's snapshot with a richer service list and the rules (pure).

    ``status`` is :meth:`StatusReport.snapshot`'s answer minus its services,
    ``rules`` the operator rules as dicts with ``app_id`` and ``port_index``,
    ``apps`` Marathon's apps by id (for the labels the rules override).
    Rules for apps or ports that do not exist (yet) are listed as such.
    ``rows``: the service rows of these same services and rules, if already built.
    """
    by_port = {(str(rule.get("app_id")), int(rule.get("port_index") or 0)): rule
               for rule in rules}
    if rows is None:
        rows = service_rows(services, by_port, apps)
    routed = {(row["app"], row["port_index"]) for row in rows}
    snapshot = {key: value for key, value in status.items() if key != "services"}
    # /status's "rules" is the store's health; here "rules" lists the rules themselves
    snapshot["rules_store"] = status.get("rules") if isinstance(status.get("rules"),
                                                                 Mapping) else None
    snapshot["services"] = rows
    snapshot["rules"] = [dict(rule) for rule in rules]
    snapshot["orphan_rules"] = [dict(rule) for key, rule in sorted(by_port.items())
                                if key not in routed]
    return snapshot


class DashboardData:
    """What the status server's dashboard asks the live engine for.

    ``status``: the engine's /status snapshot; ``services``: the last sync's
    routed services; ``rules``: the operator rules as dicts (none until rules
    are wired in); ``apps``: Marathon's apps by id as fetched; ``api``: the
    Runtime API for server states, if any.
    """

    def __init__(self, status: Callable[[], dict[str, Any]],
                 services: Callable[[], Sequence[Service]],
                 rules: Callable[[], Sequence[Mapping[str, Any]]] = lambda: (),
                 api: RuntimeAPI | None = None,
                 apps: Callable[[], Mapping[str, Any] | None] = lambda: None) -> None:
        self._status = status
        self._services = services
        self._rules = rules
        self._apps = apps
        self.api = api
        # The rows of the last services and rules asked about: a sync gives a new
        # services tuple, so rows are built once per sync that a page asks after,
        # never per sync (~0.1 s at 5,000 apps on a loaded machine).
        self._rows: tuple[Sequence[Service], list[Mapping[str, Any]],
                          list[dict[str, Any]]] | None = None
        self._rows_lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        services, rules, status = self._services(), list(self._rules()), self._status()
        with self._rows_lock:
            cached = self._rows
        rows = cached[2] if cached and cached[0] is services and cached[1] == rules else None
        snapshot = dashboard_snapshot(status, services, rules, self._apps(), rows)
        if rows is None:
            with self._rows_lock:
                self._rows = (services, rules, snapshot["services"])
        return snapshot

    def server_states(self, backends: Iterable[str]
                      ) -> tuple[dict[str, dict[str, dict[str, str]]], str]:
        return server_states(self.api, backends)


def live_dashboard_data(live: Any,
                        rules: Callable[[], Sequence[Mapping[str, Any]]] = lambda: ()
                        ) -> DashboardData:
    """The dashboard's data source for a :class:`~servicerouter.engine.live.LiveRouter`."""
    runtime = live.runtime
    api = runtime.api if runtime is not None else None
    if api is None and live.manager is not None:  # runtime updates off: still readable
        api = RuntimeAPI(live.manager.settings.runtime_socket)

    def status() -> dict[str, Any]:  # what /status adds to the engine's snapshot too
        return {**live.snapshot(services=False), "build": live.metrics.build}

    return DashboardData(status=status, services=live.routed_services, rules=rules, api=api,
                         apps=lambda: live._apps)


__all__ = ["DashboardData", "dashboard_snapshot", "live_dashboard_data", "service_rows"]
