"""The per-line hot path of a render: server lines.

A config at 5,000 apps is 62,500 server lines; this loop runs once per line,
so it avoids what a general fragment render costs (a values dict per line)
whenever the output is provably the same text.  Pure, as the rest of the render.
"""

from __future__ import annotations

from typing import Any

from servicerouter.model.values import Service, clean_host, clean_name
from servicerouter.render.mlb_backend import check_ports


def render_servers(service: Service, values: dict[str, Any], server_line: Any,
                    server_check: Any, out: list[str], host_names: dict[str, str],
                    check_interval: int | None = None) -> None:
    """One line per server; health-check options rendered once unless Jinja2.

    ``check_interval``: the check options' ``healthCheckIntervalSeconds`` when
    --max-check-rate scales it (see servicerouter.render.check_rate).

    ``host_names``: cleaned task hosts of this render (host -> name part), sized to
    the cluster: 50,000 distinct task addresses are cleaned once each, not once
    per port, and no bounded cache thrashes.  A legacy server fragment (the
    default) is a compiled function of its six values: no values dict per line.
    """
    check_text = ""
    per_server_check = server_check is not None and server_check.is_jinja
    if server_check is not None and not per_server_check:
        check_text = server_check.render(_check_values(values, check_interval))
    # servicerouter.py's ' check cookie NAME', unless the backend's sticky fragment set
    # a dynamic cookie: then HAProxy derives each server's cookie (and can add servers live).
    cookie_per_server = service.settings.sticky and not values.get("dynamicCookie")
    render_args = server_line.render_args
    # HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX: each server checked on its own port
    check_port = check_ports(service) if server_check is not None else None
    if render_args is not None and not per_server_check and not cookie_per_server \
            and not check_port:
        drained = check_text + " weight 0"
        block = server_line.render_block
        if block is not None:
            try:  # all the lines in one go (compile_server_block)
                out.append(block(service.servers, check_text, drained))
                return
            except Exception:  # noqa: S110 - a weighted server: the loop below does it
                pass
        append = out.append
        for server in service.servers:
            if len(server) == 5:  # (host, ipv4, port, task_id, draining): unpacked in C
                host, ipv4, port, _task_id, draining = server
                options = drained if draining else check_text
            else:  # a deployment group's weighted server
                host, ipv4, port, _task_id, draining = server[:5]
                options = drained if draining else _weighted(check_text, server)
            clean = host_names.get(host)
            if clean is None:
                clean = host_names[host] = clean_host(host)
            name = f"{clean}_{port}" if type(port) is int else clean_name(f"{host}_{port}")
            append(render_args(name, host, ipv4, port, "", options))
        return
    render = server_line.render
    for server in service.servers:
        name = server.name
        values["serverName"] = name
        values["host"] = server.host
        values["host_ipv4"] = server.ipv4
        values["port"] = server.port
        values["server"] = server
        values["cookieOptions"] = " check cookie " + name if cookie_per_server else ""
        if per_server_check:
            check_text = server_check.render(_check_values(values, check_interval))
        # A task being killed keeps its sessions but gets no new ones.
        text = check_text
        if check_port:
            text = f"{check_text} port {check_port.get((server.host, server.port), server.port)}"
        values["healthCheckOptions"] = text + " weight 0" if server.draining \
            else text if len(server) == 5 else _weighted(text, server)
        out.append(render(values))


def _weighted(options: str, server: Any) -> str:
    """A deployment group's explicit weight (see servicerouter.model.deployment_groups)."""
    return f"{options} weight {int(server.weight)}"


def _check_values(values: dict[str, Any], check_interval: int | None) -> dict[str, Any]:
    if check_interval is None:
        return values
    return dict(values, healthCheckIntervalSeconds=check_interval)
