"""Render every fragment once at startup, so a broken one fails there, not at a sync.

:mod:`servicerouter.render.fragments` refuses unknown placeholders and Jinja2 syntax errors
when it loads a file. What it cannot see is a fragment that parses but raises when
rendered: ``{backend.nope}``, ``{{ service.nope }}`` (strict undefined), ``{{ 1 // 0 }}``,
a filter given the wrong type. :func:`check_fragments` renders a sample config that
uses every fragment (HTTP and TCP ports, virtual hosts with and without a path,
wildcards, sticky sessions, redirects, HSTS, basic auth, a port certificate, HTTP
and TCP health checks, several servers) and turns the first failure into a
:class:`~servicerouter.render.fragments.TemplateError` naming the file and line.

Pure: the sample state is data, host names resolve by a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import Fragment, FragmentSet, TemplateError

# Every field Marathon may put in a health check, so a fragment reading any of them
# through {healthCheck[...]} finds it (a real check without it would fail at a sync).
_CHECK = {"protocol": "HTTP", "path": "/health", "gracePeriodSeconds": 300,
          "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
          "ignoreHttp1xx": False, "delaySeconds": 15, "port": 10000, "portType": "PORT_INDEX",
          "ipProtocol": "IPv4", "command": {"value": "true"}}
SAMPLE_APPS: tuple[dict[str, Any], ...] = (
    {
        "id": "/sample/web",
        "ports": [10000, 10001, 10002],
        "version": "2015-01-01T00:00:00.000Z",
        "labels": {
            "HAPROXY_GROUP": "external",
            "HAPROXY_0_VHOST": "www.example.com,*.example.org",
            "HAPROXY_0_STICKY": "true",
            "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
            "HAPROXY_0_USE_HSTS": "true",
            "HAPROXY_0_SSL_CERT": "/etc/ssl/sample.pem",
            "HAPROXY_0_AUTH": "sample:admin:$6$salt$c2FtcGxlaGFzaA",
            "HAPROXY_1_VHOST": "api.example.com",
            "HAPROXY_1_PATH": "/api",
            "HAPROXY_2_MODE": "tcp",
        },
        "healthChecks": [dict(_CHECK, portIndex=0), dict(_CHECK, portIndex=1),
                         dict(_CHECK, portIndex=2, protocol="TCP")],
        "tasks": [
            {"id": "sample.1", "host": "10.0.0.1", "ports": [31000, 31001, 31002]},
            {"id": "sample.2", "host": "node-2.sample", "ports": [31000, 31001, 31002]},
        ],
    },
    {
        "id": "/sample/db",
        "ports": [10003],
        "version": "2015-01-01T00:00:00.000Z",
        "tasks": [{"id": "db.1", "host": "10.0.0.3", "ports": [31003]}],
    },
)
_HOSTS = {"node-2.sample": "10.0.0.2"}
SAMPLE_OPTIONS = (
    RenderOptions(default_cert="/etc/ssl/default.pem", crt_list="/etc/ssl/crt-list"),
    RenderOptions(default_cert="/etc/ssl/default.pem", runtime_socket="/run/haproxy.sock",
                  hard_stop_after="60s", master_worker=True),
)


class _Checked:
    """A fragment whose render failures name its file and line."""

    def __init__(self, fragment: Fragment) -> None:
        self._fragment = fragment

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fragment, name)

    def render(self, values: Mapping[str, Any]) -> str:
        fragment = self._fragment
        try:
            return fragment.render(values)
        except TemplateError:
            raise
        except Exception as err:
            line = _failing_line(fragment, values, err)
            raise TemplateError(
                f"{fragment.source}: line {line}: {fragment.spec.name} fails to render: "
                f"{type(err).__name__}: {err}") from None


def _failing_line(fragment: Fragment, values: Mapping[str, Any], err: Exception) -> int:
    return fragment.failing_line(values, err)


def check_fragments(fragments: FragmentSet) -> None:
    """Render the sample config with ``fragments``; TemplateError names the culprit."""
    checked = FragmentSet({name: _Checked(fragment)  # type: ignore[misc]
                           for name, fragment in fragments.fragments.items()})
    model = build_model(SAMPLE_APPS, ("*",), lambda host: _HOSTS.get(host, host))
    for options in SAMPLE_OPTIONS:
        render_config(model.services, checked, options)
