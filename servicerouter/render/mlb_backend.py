"""marathon-lb's backend rules: source allow-lists, the root redirect, ProxyPass and
reverse-proxy Location rewriting, health checks on another port index.

Each rule is a fragment with marathon-lb's template name and placeholders
(``HAPROXY_HTTP_BACKEND_PROXYPASS_GLUE`` gets ``hostname`` and ``proxypath``...), so
an operator's template directory or an app's label template can replace it.  The
directives are HAProxy 2.x equivalents of marathon-lb's (``reqirep``/``rspirep`` are
gone): ``http-request replace-path``, ``http-response replace-header``,
``http-request redirect``.  The allow-list's refusal is fixed text, never a
fragment: a replaced ACL line can make the allow-list refuse more, never admit more.
Pure: strings in, strings out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from servicerouter.model.mlb_values import logformat_literal, regex_literal
from servicerouter.model.services import Service
from servicerouter.render.fragments import Fragment, FragmentSet

Pick = Callable[[Fragment, str], Fragment]

_REFUSE = {
    "http": "  http-request deny if !network_allowed\n",
    "tcp": "  tcp-request content reject if !network_allowed\n",
}


def backend_rules(service: Service, values: dict[str, Any], frag: FragmentSet,
                  pick: Pick) -> list[str]:
    """The backend lines the port's marathon-lb settings ask for (often none)."""
    settings = service.settings
    out: list[str] = []
    if settings.allowed_networks:
        name = f"HAPROXY_{service.mode.upper()}_BACKEND_NETWORK_ALLOWED_ACL"
        values["network_allowed"] = " ".join(settings.allowed_networks)
        out.append(pick(frag[name], name).render(values))
        out.append(_REFUSE[service.mode])
    if service.mode != "http":
        return out
    hostname = values.get("hostname")
    if settings.redirect_path is not None:
        values["redirpath"] = settings.redirect_path
        values["redirpathFmt"] = logformat_literal(settings.redirect_path)
        values["redirConditions"] = redirect_conditions(service.rule_vhosts)
        out.append(pick(frag["HAPROXY_HTTP_BACKEND_REDIR"], "HAPROXY_HTTP_BACKEND_REDIR")
                   .render(values))
    if settings.proxypass_path is not None:
        values["proxypath"] = settings.proxypass_path
        values["proxypathRegex"] = regex_literal(settings.proxypass_path.rstrip("/"))
        out.append(pick(frag["HAPROXY_HTTP_BACKEND_PROXYPASS_GLUE"],
                        "HAPROXY_HTTP_BACKEND_PROXYPASS_GLUE").render(values))
    if settings.revproxy_path is not None:
        values["rootpath"] = settings.revproxy_path
        values["rootpathFmt"] = logformat_literal(settings.revproxy_path)
        exact = hostname if hostname and not hostname.startswith("*.") else None
        values["hostnameRegex"] = regex_literal(exact) if exact else ""
        out.append(pick(frag["HAPROXY_HTTP_BACKEND_REVPROXY_GLUE"],
                        "HAPROXY_HTTP_BACKEND_REVPROXY_GLUE").render(values))
    return out


def redirect_conditions(vhosts: tuple[str, ...]) -> list[str]:
    """Host conditions of the root redirect, one rule each: the exact hosts in one,
    the wildcards' suffixes in another; no vhost at all: any host (one empty one)."""
    exact = [h for h in vhosts if not h.startswith("*.")]
    wild = [h[1:] for h in vhosts if h.startswith("*.")]
    conditions = []
    if exact:
        conditions.append(" { req.hdr(host),field(1,:) -i " + " ".join(exact) + " }")
    if wild:
        conditions.append(" { req.hdr(host),field(1,:) -m end -i " + " ".join(wild) + " }")
    return conditions or [""]


def check_ports(service: Service) -> Mapping[tuple[str, int], int]:
    """(server host, port) -> the port to health-check it on, for
    HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX: the same task's port at that index.

    An index past the task's ports checks the routed port (no entry), as marathon-lb
    falls back to the port itself.
    """
    wanted = service.settings.healthcheck_port_index
    if wanted is None or service.health_check is None:
        return {}
    tasks = service.app.get("tasks")
    ports: dict[tuple[str, int], int] = {}
    for task in tasks if isinstance(tasks, list) else ():
        if not isinstance(task, Mapping):
            continue
        host, task_ports = task.get("host"), task.get("ports")
        if (isinstance(host, str) and isinstance(task_ports, list)
                and service.index < len(task_ports) and wanted < len(task_ports)):
            routed, checked = task_ports[service.index], task_ports[wanted]
            if type(routed) is int and type(checked) is int and 0 < checked < 65536:
                ports[(host, routed)] = checked
    return ports
