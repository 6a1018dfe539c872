"""End to end: marathon-lb's backend labels through a real HAProxy to real backends.

ProxyPass strips its prefix (and sets Host), RevProxy rewrites Location, REDIR
answers '/' with a 301, the network allow-list admits 127.0.0.1 or refuses it
(403 in http mode, a closed connection in tcp mode), and a health check on another
port index marks a server down when only that port is dead.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from tests.harness import (
    free_port,
    http_get,
    self_signed_cert,
    tcp_exchange,
    wait_for_port,
    wait_until,
)

pytestmark = pytest.mark.e2e

ALLOW_US = "10.0.0.0/8, 127.0.0.1"
ALLOW_OTHERS = "10.0.0.0/8 192.168.0.0/16"


def _app(name: str, port: int, labels: dict[str, str], task_ports: list[int],
         **extra: Any) -> dict[str, Any]:
    """An app routed on ``port`` (its first service port; any others are free ports)."""
    return {"id": f"/{name}", "ports": [port] + [free_port() for _ in task_ports[1:]],
            "labels": {"HAPROXY_0_BIND_ADDR": "127.0.0.1", "HAPROXY_1_BIND_ADDR": "127.0.0.1",
                       **labels},
            "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": task_ports}], **extra}


def _edge(tmp_path: Path, apps: list[dict[str, Any]], haproxy_factory: Any) -> int:
    """Render, check and start HAProxy for ``apps``; the shared HTTP port."""
    http = free_port()
    options = RenderOptions(bind_addr="127.0.0.1", http_port=http, https_port=free_port(),
                            appid_port=free_port(), stats_port=free_port(),
                            default_cert=self_signed_cert(tmp_path / "default.pem"))
    model = build_model(apps, ["*"], lambda host: host)
    assert not [p for p in model.problems if p.kind != "label"], model.problems
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_config(model.services, load_fragments(), options))
    haproxy_factory(cfg)
    wait_for_port(apps[0]["ports"][0])
    return http


def test_proxypass_revproxy_redirect_and_allow_list(tmp_path, backend_factory,
                                                     haproxy_factory) -> None:
    web = backend_factory("web").port
    tcp = backend_factory("tcpsrv", mode="tcp").port
    ports = {name: free_port() for name in ("web", "closed", "tcpopen", "tcpclosed")}
    apps = [
        _app("web", ports["web"], {"HAPROXY_0_VHOST": "web.test,",  # a Universe-style trailing comma
                           "HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": "/api",
                           "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": "/my/content",
                           "HAPROXY_0_HTTP_BACKEND_REDIR": "/home",
                           "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": ALLOW_US}, [web]),
        _app("closed", ports["closed"], {"HAPROXY_0_VHOST": "closed.test",
                                   "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": ALLOW_OTHERS}, [web]),
        _app("tcpopen", ports["tcpopen"], {"HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": ALLOW_US}, [tcp]),
        _app("tcpclosed", ports["tcpclosed"], {"HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": ALLOW_OTHERS},
             [tcp]),
    ]
    http = _edge(tmp_path, apps, haproxy_factory)
    url = f"http://127.0.0.1:{http}"

    # ProxyPass: /api/headers reaches the server as /headers, Host set to the vhost.
    reply = http_get(url + "/api/headers", host_header="web.test")
    assert reply.status_code == 200 and reply.headers["X-Backend"] == "web"
    headers = {k.lower(): v for k, v in json.loads(reply.text).items()}
    assert headers["host"] == "web.test"
    # RevProxy: the server's Location (a path) becomes the configured path.
    reply = http_get(url + "/api/location/login", host_header="web.test", allow_redirects=False)
    assert (reply.status_code, reply.headers["Location"]) == (302, "/my/content")
    # REDIR: '/' on the vhost gets a 301 to the path; other paths do not.
    reply = http_get(url + "/", host_header="web.test", allow_redirects=False)
    assert (reply.status_code, reply.headers["Location"]) == (301, "/home")
    assert http_get(url + "/api/x", host_header="web.test").text == "web\n"
    # Allow-list, http: 127.0.0.1 is not among the closed app's networks -> 403.
    assert http_get(url + "/", host_header="closed.test").status_code == 403
    # Allow-list, tcp: admitted gets the greeting, refused gets a closed connection.
    wait_for_port(ports["tcpopen"])
    assert tcp_exchange(ports["tcpopen"], b"hi") == b"tcpsrv\nhi"
    assert tcp_exchange(ports["tcpclosed"], b"hi") == b""


def test_health_check_on_another_port_index(tmp_path, backend_factory, haproxy_factory) -> None:
    app_port = backend_factory("app").port
    admin = backend_factory("admin")
    check = {"protocol": "HTTP", "portIndex": 0, "path": "/health", "intervalSeconds": 1,
             "timeoutSeconds": 1, "maxConsecutiveFailures": 0}
    port = free_port()
    apps = [_app("hc", port, {"HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX": "1",
                               "HAPROXY_0_MODE": "http", "HAPROXY_GROUP": "x"},
                 [app_port, admin.port], healthChecks=[check])]
    _edge(tmp_path, apps, haproxy_factory)
    wait_for_port(port)
    assert http_get(f"http://127.0.0.1:{port}/").text == "app\n"
    admin.stop()  # the app's own port still answers; its check port does not
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/").status_code == 503, timeout=15)
    with socket.create_connection(("127.0.0.1", app_port)):
        pass  # the server itself is up: only the check port went away
