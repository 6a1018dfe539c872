"""Services + fragments -> HAProxy config text.  Pure: no I/O, no clock.

The assembly is servicerouter.py's, so that a templates directory holding
its fragments renders byte for byte what it wrote: five buffers (head, HTTP
frontend, app-id frontend, HTTPS frontend, per-port frontends, backends),
services visited sorted by (app id, bind port), one server line per task.
Each buffer is a list joined once at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicerouter.model import Service, clean_name
from servicerouter.templates import FragmentSet


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Router-wide values the built-in (Jinja2) fragments use."""

    bind_addr: str = "*"
    http_port: int = 80
    https_port: int = 443
    appid_port: int = 81
    stats_port: int = 9090
    stats_bind_addr: str = "127.0.0.1"
    crt_list: str | None = None
    default_cert: str | None = None
    runtime_socket: str | None = None
    hard_stop_after: str | None = None
    master_worker: bool = False

    def reserved_ports(self) -> tuple[int, ...]:
        return (self.http_port, self.https_port, self.appid_port, self.stats_port)


def _health_check_values(service: Service) -> dict[str, Any]:
    check = service.health_check
    if check is None:
        return {}
    return {
        "healthCheck": check.raw,
        "healthCheckPortIndex": check.port_index,
        "healthCheckProtocol": check.protocol,
        "healthCheckPath": check.path,
        "healthCheckTimeoutSeconds": check.timeout_seconds,
        "healthCheckIntervalSeconds": check.interval_seconds,
        "healthCheckIgnoreHttp1xx": check.ignore_http1xx,
        "healthCheckGracePeriodSeconds": check.grace_period_seconds,
        "healthCheckMaxConsecutiveFailures": check.max_consecutive_failures,
        "healthCheckFalls": check.falls,
    }


def service_values(service: Service, options: RenderOptions,
                   services: Sequence[Service]) -> dict[str, Any]:
    """Every name a service-level fragment may use (legacy and Jinja2)."""
    cert = service.settings.ssl_cert
    values: dict[str, Any] = {
        "backend": service.backend,
        "bindAddr": service.bind_addr,
        "servicePort": service.bind_port,
        "mode": service.mode,
        "sslCertOptions": " ssl crt " + cert if cert else "",
        "appId": service.app_id,
        "cleanedUpAppId": clean_name(service.app_id),
        "hostname": service.vhosts[0] if service.vhosts else None,
        "service": service,
        "app": service.app,
        "labels": service.labels,
        "servers": service.servers,
        "vhosts": service.vhosts,
        "options": options,
        "services": services,
    }
    values.update(_health_check_values(service))
    return values


def render_config(services: Sequence[Service], fragments: FragmentSet,
                  options: RenderOptions | None = None) -> str:
    """The whole config for ``services`` (already filtered and sorted)."""
    options = options or RenderOptions()
    frag = fragments.fragments
    global_values: dict[str, Any] = {"options": options, "services": services}

    head = [frag["HAPROXY_HEAD"].render(global_values)]
    http = [frag["HAPROXY_HTTP_FRONTEND_HEAD"].render(global_values)]
    appid = [frag["HAPROXY_HTTP_FRONTEND_APPID_HEAD"].render(global_values)]
    https = [frag["HAPROXY_HTTPS_FRONTEND_HEAD"].render(global_values)]
    frontends: list[str] = []
    backends: list[str] = []

    frontend_head = frag["HAPROXY_FRONTEND_HEAD"]
    redirect = frag["HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS"]
    backend_head = frag["HAPROXY_BACKEND_HEAD"]
    http_acl = frag["HAPROXY_HTTP_FRONTEND_ACL"]
    https_acl = frag["HAPROXY_HTTPS_FRONTEND_ACL"]
    appid_acl = frag["HAPROXY_HTTP_FRONTEND_APPID_ACL"]
    http_options = frag["HAPROXY_BACKEND_HTTP_OPTIONS"]
    sticky_options = frag["HAPROXY_BACKEND_STICKY_OPTIONS"]
    glue = frag["HAPROXY_FRONTEND_BACKEND_GLUE"]
    server_line = frag["HAPROXY_BACKEND_SERVER_OPTIONS"]
    backend_checks = {
        "tcp": frag["HAPROXY_BACKEND_TCP_HEALTHCHECK_OPTIONS"],
        "http": frag["HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS"],
    }
    server_checks = {
        "tcp": frag["HAPROXY_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS"],
        "http": frag["HAPROXY_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS"],
    }

    apps_with_appid_acl: set[str] = set()
    for service in services:
        values = service_values(service, options, services)
        frontends.append(frontend_head.render(values))
        if service.settings.redirect_to_https:
            frontends.append(redirect.render(values))
        backends.append(backend_head.render(values))

        for host in service.vhosts:
            vhost_values = dict(values, hostname=host, cleanedUpHostname=clean_name(host), vhost=host)
            http.append(http_acl.render(vhost_values))
            https.append(https_acl.render(vhost_values))

        if service.mode == "http" and service.app_id not in apps_with_appid_acl:
            apps_with_appid_acl.add(service.app_id)
            appid.append(appid_acl.render(values))

        if service.mode == "http":
            backends.append(http_options.render(values))

        server_check = None
        if service.health_check is not None:
            backend_check = backend_checks.get(service.mode)
            if backend_check is not None and not backend_check.is_empty:
                backends.append(backend_check.render(values))
            server_check = server_checks.get(service.mode)
            if server_check is not None and server_check.is_empty:
                server_check = None

        if service.settings.sticky:
            backends.append(sticky_options.render(values))

        frontends.append(glue.render(values))
        _render_servers(service, values, server_line, server_check, backends)

    return "".join(head + http + appid + https + frontends + backends)


def _render_servers(service: Service, values: dict[str, Any], server_line: Any,
                    server_check: Any, out: list[str]) -> None:
    """One line per server; health-check options rendered once unless Jinja2."""
    check_text = ""
    per_server_check = server_check is not None and server_check.is_jinja
    if server_check is not None and not per_server_check:
        check_text = server_check.render(values)
    sticky = service.settings.sticky
    render = server_line.render
    for server in service.servers:
        name = server.name
        values["serverName"] = name
        values["host"] = server.host
        values["host_ipv4"] = server.ipv4
        values["port"] = server.port
        values["server"] = server
        values["cookieOptions"] = " check cookie " + name if sticky else ""
        if per_server_check:
            check_text = server_check.render(values)
        values["healthCheckOptions"] = check_text
        out.append(render(values))


def describe_services(services: Sequence[Service]) -> list[Mapping[str, Any]]:
    """A JSON-friendly summary of what is routed (for --dry, status pages)."""
    return [
        {
            "app": s.app_id,
            "backend": s.backend,
            "bind": f"{s.bind_addr}:{s.bind_port}",
            "mode": s.mode,
            "vhosts": list(s.vhosts),
            "servers": [f"{srv.ipv4}:{srv.port}" for srv in s.servers],
        }
        for s in services
    ]
