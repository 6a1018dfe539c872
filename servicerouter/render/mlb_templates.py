"""Label templates in marathon-lb's syntax: ``str.format`` text with its placeholders.

A marathon-lb app overriding ``HAPROXY_0_BACKEND_HEAD`` writes
``"\\nbackend {backend}\\n  balance {balance}\\n  mode {mode}\\n"``; a Jinja2
environment would print that text literally.  A label template is marathon-lb's
``str.format`` when it uses no ``{{``, ``{%`` or ``{#``, or when it parses as
str.format into that template's placeholders only (``if {{ ssl_fc_sni -m end
.{hostname} }}``, as DC/OS's docs show); Jinja2 otherwise (:func:`is_format_template`).

The format form is sandboxed as tightly as the Jinja one:

* every field is a bare placeholder name marathon-lb gives that template
  (:data:`MLB_PLACEHOLDERS`): no attribute or index access (``{app.__class__}``,
  ``{healthCheck[path]}``), no conversion, no nested or wide format spec, so the
  output is bounded by the text and the values;
* every value printed is checked (:data:`~servicerouter.render.sandbox.SAFE_FORMATTER`):
  nothing that ends a line or starts a comment;
* it runs through the same trial render, ``haproxy -c`` and quarantine as the
  Jinja ones (:mod:`servicerouter.render.label_templates`).

Per-server values are marathon-lb's: ``serverId`` is its stable id (SHA-256 of its
server name ``host_ip_port`` modulo 32767, collisions rehashed, servers numbered in
its order), so a server keeps the id it had under marathon-lb; ``otherOptions`` is
`` disabled`` for a task being killed (marathon-lb's draining), and that server's
``healthCheckOptions`` then lacks the ``weight 0`` the engine's own templates drain with.
``cookieOptions`` (a sticky backend whose cookie is not HAProxy's dynamic one) names
marathon-lb's cookie value (SHA-1 of that server name, 10 hex digits), so clients
holding marathon-lb's cookies keep their server at cutover (docs/migrating-marathon-lb.md).
``serverName`` stays the engine's (``host_port``, servicerouter.py's), which the
Runtime API and /status name servers by.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from servicerouter.model.mlb_values import mlb_cookie, mlb_server_ids, mlb_server_name
from servicerouter.render.fragment_registry import HEALTHCHECK_PLACEHOLDERS, FragmentSpec
from servicerouter.render.fragments import MAX_FORMAT_WIDTH, Fragment, TemplateError
from servicerouter.render.mlb_frontend import FAMILY
from servicerouter.render.sandbox import SAFE_FORMATTER

_HEALTH = HEALTHCHECK_PLACEHOLDERS + ("healthCheckPort", "healthCheckPortOptions")
_ACL = ("cleanedUpHostname", "hostname", "appId", "backend")
_RULES = _ACL + ("path", "realm")  # marathon-lb's routing-only / ACL-only / auth templates

# marathon-lb's placeholder names per template it formats (facts about its interface).
# Templates it uses verbatim (HTTP options, HSTS, sticky) take none.
MLB_PLACEHOLDERS: Mapping[str, tuple[str, ...]] = {
    "HAPROXY_BACKEND_HEAD": ("backend", "balance", "mode"),
    "HAPROXY_FRONTEND_HEAD": ("bindAddr", "backend", "servicePort", "mode", "sslCert",
                              "bindOptions"),
    "HAPROXY_USERLIST_HEAD": ("backend", "user", "passwd"),
    "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS": ("bindAddr", "cleanedUpHostname"),
    "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH": ("bindAddr", "cleanedUpHostname",
                                                         "backend"),
    "HAPROXY_HTTP_FRONTEND_ACL": _ACL,
    "HAPROXY_HTTPS_FRONTEND_ACL": _ACL,
    "HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH": _ACL + ("path",),
    "HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH": _ACL + ("path",),
    "HAPROXY_HTTP_FRONTEND_APPID_ACL": ("cleanedUpAppId", "hostname", "appId", "backend"),
    "HAPROXY_FRONTEND_BACKEND_GLUE": ("backend",),
    "HAPROXY_BACKEND_SERVER_OPTIONS": ("host", "host_ipv4", "port", "serverName", "serverId",
                                       "cookieOptions", "healthCheckOptions", "otherOptions"),
    "HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS": _HEALTH,
    "HAPROXY_BACKEND_TCP_HEALTHCHECK_OPTIONS": _HEALTH,
    "HAPROXY_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS": _HEALTH,
    "HAPROXY_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS": _HEALTH,
    "HAPROXY_HTTP_BACKEND_NETWORK_ALLOWED_ACL": ("network_allowed",),
    "HAPROXY_TCP_BACKEND_NETWORK_ALLOWED_ACL": ("network_allowed",),
    "HAPROXY_HTTP_BACKEND_PROXYPASS_GLUE": ("hostname", "proxypath"),
    "HAPROXY_HTTP_BACKEND_REVPROXY_GLUE": ("hostname", "rootpath"),
    **{name: _RULES for name in FAMILY},
    "HAPROXY_MAP_HTTP_FRONTEND_ACL": ("haproxy_dir",),
    "HAPROXY_MAP_HTTP_FRONTEND_ACL_ONLY": ("haproxy_dir",),
    "HAPROXY_MAP_HTTPS_FRONTEND_ACL": ("haproxy_dir",),
    "HAPROXY_MAP_HTTP_FRONTEND_APPID_ACL": ("haproxy_dir",),
}


def is_format_template(text: str, template: str | None = None) -> bool:
    """Whether a label template is marathon-lb's str.format rather than Jinja2.

    Without ``{{``, ``{%`` or ``{#`` it cannot be Jinja2.  With them it still is
    marathon-lb's when it parses as str.format into placeholders of ``template``
    (marathon-lb's own texts escape HAProxy's braces as ``{{ ssl_fc }}`` next to
    ``{hostname}``), while a Jinja2 ``{{ backend }}`` parses into no placeholder at all.
    """
    if not any(mark in text for mark in ("{{", "{%", "{#")):
        return True
    names = MLB_PLACEHOLDERS.get(template or "", ())
    try:
        fields = [f[1] for f in string.Formatter().parse(text) if f[1] is not None]
    except ValueError:
        return False
    return bool(fields) and all(field in names for field in fields)


def _mlb_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """marathon-lb's names for what a render already knows (computed lazily by name)."""
    service = values.get("service")
    settings = getattr(service, "settings", None)
    server_name = values.get("serverName")
    extra: dict[str, Any] = {
        "balance": (settings.balance if settings is not None else None) or "roundrobin",
        "sslCert": values.get("sslCertOptions", ""),
        "passwd": values.get("passwordHash"),
        "cleanedUpHostname": values.get("cleanedUpHostname")
        or (values.get("backend") if values.get("hostname") else None),
        "otherOptions": "",
        "healthCheckPort": values.get("port"),
        "healthCheckPortOptions": "",
    }
    server = values.get("server")
    if server_name is not None and server is not None:
        servers = tuple((s.host, s.ipv4, s.port) for s in values.get("servers") or (server,))
        ids = mlb_server_ids(servers)
        extra["serverId"] = ids.get((server.host, server.port)) or \
            mlb_server_ids(((server.host, server.ipv4, server.port),))[(server.host, server.port)]
        if values.get("cookieOptions"):  # a cookie per server: marathon-lb's value
            name = mlb_server_name(server.host, server.ipv4, server.port)
            extra["cookieOptions"] = " check cookie " + mlb_cookie(name)
        if server.draining:  # marathon-lb's drain: the server is disabled
            extra["otherOptions"] = " disabled"
            checks = str(values.get("healthCheckOptions", ""))
            extra["healthCheckOptions"] = checks.removesuffix(" weight 0")
    return {**values, **extra}


class FormatTemplate(Fragment):
    """A marathon-lb label template: its text formatted with its placeholder names."""

    __slots__ = ()

    def render(self, values: Mapping[str, Any]) -> str:
        out = SAFE_FORMATTER.vformat(self.text, (), _mlb_values(values))
        if self.spec.strip_prefix:
            out = out.strip()
            return " " + out if out else ""
        return out


def compile_format_template(spec: FragmentSpec, text: str, source: str) -> Fragment:
    """Check a marathon-lb label template against its placeholders; compile it.

    A template marathon-lb uses verbatim (no placeholders) is used verbatim here
    too, single braces and all (``if { ssl_fc }``).
    """
    names = MLB_PLACEHOLDERS.get(spec.name, ())
    if not names:
        return Fragment(replace(spec, placeholders=()), text, source, None)
    for line_no, line in enumerate(text.splitlines() or [""], start=1):
        try:
            fields = [f for f in string.Formatter().parse(line) if f[1] is not None]
        except ValueError as err:
            raise TemplateError(f"{source}: line {line_no}: {err}") from None
        for _literal, field, format_spec, conversion in fields:
            if field not in names:
                raise TemplateError(
                    f"{source}: line {line_no}: {{{field}}} is not a placeholder of "
                    f"{spec.name} (marathon-lb's: {', '.join(names)}; no attribute or index "
                    "access)")
            if conversion:
                raise TemplateError(f"{source}: line {line_no}: {{{field}!{conversion}}}: "
                                    "conversions are not allowed")
            if "{" in format_spec or any(int(n) > MAX_FORMAT_WIDTH for n in
                                         _numbers(format_spec)):
                raise TemplateError(f"{source}: line {line_no}: {{{field}:{format_spec[:40]}}}: "
                                    f"nested or over-{MAX_FORMAT_WIDTH} format spec")
    fragment = FormatTemplate(replace(spec, placeholders=names), text, source, None)
    fragment.render_args = None  # never the compiled fast path: it skips the mapping
    return fragment


def _numbers(spec: str) -> list[str]:
    out, digits = [], ""
    for char in spec + " ":
        if char.isdigit():
            digits += char
        elif digits:
            out.append(digits[:8])
            digits = ""
    return out
