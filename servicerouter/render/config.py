"""Services + fragments -> HAProxy config text.  Pure: no I/O, no clock.

The assembly is servicerouter.py's, so that a templates directory holding
its fragments renders byte for byte what it wrote: five buffers (head, HTTP
frontend, app-id frontend, HTTPS frontend, per-port frontends, backends),
services visited sorted by (app id, bind port), one server line per task.
Each buffer is a list joined once at the end.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicerouter.model.labels import Problem
from servicerouter.model.services import Service, clean_name, route_order_key
from servicerouter.render.failures import describe_failure, service_failure
from servicerouter.render.fragments import Fragment, FragmentSet
from servicerouter.render.lines import render_servers
from servicerouter.render.mlb_backend import backend_rules
from servicerouter.render.mlb_frontend import (
    FAMILY,
    REDIRECTS,
    own_rules,
    redirects_in_shared_frontend,
)
from servicerouter.render.mlb_maps import MlbMaps
from servicerouter.render.options import RenderOptions
from servicerouter.render.routing import (
    Rule,
    appid_entry,
    assemble,
    host_acl_name,
    host_entry,
    map_block,
    path_rules,
)
from servicerouter.render.rule_routes import any_host_routes, rule_routes

# Per-service fragment overrides (HAPROXY_{n}_<FRAGMENT> label templates), by backend name.
Overrides = Mapping[str, Mapping[str, Fragment]]


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


def dynamic_cookie_key(backend: str, secret: str | None) -> str:
    """The ``dynamic-cookie-key`` of a sticky backend: the same on every edge node.

    HAProxy's dynamic cookie is a 64-bit hash of this key and the server's IP and
    port.  Every node behind one DNS name must give a server the same cookie, or
    a client moving between nodes would lose its server, so the key depends only
    on the backend name and the operator's ``--cookie-secret-file`` (the same file
    on every node).  With the secret it is an HMAC, and a cookie does not give a
    server's address away to someone trying likely addresses; without it, it is
    a hash of the name alone, which still hides the address no worse than
    servicerouter.py's cookie (the server name ``host_port`` itself).  Per backend
    either way, so a label template that prints its own key learns nothing about
    other apps.
    """
    if secret is None:
        return hashlib.sha256(b"servicerouter-cookie\0" + backend.encode()).hexdigest()[:32]
    return hmac.new(secret.encode(), backend.encode(), hashlib.sha256).hexdigest()[:32]


def says_dynamic_cookie(text: str) -> bool:
    """Whether a rendered sticky fragment sets ``cookie ... dynamic``: its servers then
    need no ``cookie`` of their own, which keeps them addable through the Runtime API."""
    for line in text.splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "cookie" and "dynamic" in words[2:]:
            return True
    return False


def service_values(service: Service, options: RenderOptions,
                   services: Sequence[Service]) -> dict[str, Any]:
    """Every name a service-level fragment may use (legacy and Jinja2)."""
    settings = service.settings
    cert = settings.ssl_cert
    if cert and options.cert_paths:
        cert = dict(options.cert_paths).get(cert, cert)
    values: dict[str, Any] = {
        "backend": service.backend,
        "bindAddr": service.bind_addr,
        "servicePort": service.bind_port,
        "mode": service.mode,
        "sslCertOptions": " ssl crt " + cert if cert else "",
        "appId": service.app_id,
        "cleanedUpAppId": clean_name(service.app_id),
        "hostname": service.rule_vhosts[0] if service.rule_vhosts else None,
        "service": service,
        "app": service.app,
        "labels": service.labels,
        "servers": service.servers,
        "vhosts": service.vhosts,
        "options": options,
        "services": services,
        "bindOptions": " " + " ".join(settings.bind_options) if settings.bind_options else "",
    }
    if settings.sticky:
        values["dynamicCookieKey"] = dynamic_cookie_key(service.backend, options.cookie_secret)
    if settings.auth is not None:
        values["realm"] = settings.auth.realm
        values["user"] = settings.auth.user
        values["passwordHash"] = settings.auth.password_hash
    values.update(_health_check_values(service))
    return values


class RenderError(Exception):
    """A fragment rendered once for the whole config (a head) failed: nothing to skip."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A guarded render: the config, the services in it, and the ones left out."""

    text: str
    services: tuple[Service, ...]
    problems: tuple[Problem, ...] = ()


def render_config(services: Sequence[Service], fragments: FragmentSet,
                  options: RenderOptions | None = None,
                  overrides: Overrides | None = None) -> str:
    """The whole config for ``services`` (already filtered and sorted).

    ``overrides`` replaces fragments for single services (label templates).
    Any fragment error propagates (the startup check wants it as it is);
    :func:`render_guarded` is the variant a sync uses.
    """
    return _render(services, fragments, options, overrides, None)


def render_guarded(services: Sequence[Service], fragments: FragmentSet,
                   options: RenderOptions | None = None,
                   overrides: Overrides | None = None) -> Rendered:
    """:func:`render_config`, leaving out every app a fragment fails to render for.

    A fragment can pass the startup check and still raise on one app's data
    (``{{ labels.TEAM.split('-')[1] }}``), or refuse a value that would break a
    line.  Such an app (all its ports) is skipped with a :class:`Problem`
    naming its port index, the fragment file and line; everything else renders.
    Only a failure in a fragment rendered once for all (a head) raises
    :class:`RenderError`.  The output is always exactly ``render_config`` of the
    services it reports.
    """
    failures: list[Problem] = []
    text = _render(services, fragments, options, overrides, failures)
    if not failures:
        return Rendered(text, tuple(services))
    problems = list(failures)
    bad = {p.app_id for p in failures}
    kept = [s for s in services if s.app_id not in bad]
    # The first pass removed the output of each failed app's ports (they are adjacent,
    # as services come sorted); render again if they were not, or if any fragment
    # might have looked at the failed apps through ``services``.
    while failures and (_reads_services(fragments, overrides)
                        or not _adjacent(services, bad)):
        failures = []
        text = _render(kept, fragments, options, overrides, failures)
        problems += failures
        bad.update(p.app_id for p in failures)
        kept = [s for s in kept if s.app_id not in bad]
    return Rendered(text, tuple(kept), tuple(problems))


def _reads_services(fragments: FragmentSet, overrides: Overrides | None) -> bool:
    frags = list(fragments.fragments.values())
    for override in (overrides or {}).values():
        frags.extend(override.values())
    return any(getattr(f, "uses_services", True) for f in frags)


def _adjacent(services: Sequence[Service], apps: set[str]) -> bool:
    """Whether every app in ``apps`` has its services next to each other."""
    done: set[str] = set()
    previous = None
    for service in services:
        app_id = service.app_id
        if app_id != previous:
            if app_id in done:
                return False
            if previous in apps:
                done.add(previous)
            previous = app_id
    return True


def _render(services: Sequence[Service], fragments: FragmentSet,
            options: RenderOptions | None, overrides: Overrides | None,
            failures: list[Problem] | None, pieces: dict[str, str] | None = None) -> str:
    """The assembly; with ``failures``, an app a fragment fails on is skipped and listed.
    ``pieces`` gets the backend sections apart from the rest (see render.pieces)."""
    options = options or RenderOptions()
    frag = fragments.fragments
    global_values: dict[str, Any] = {"options": options, "services": services}

    # The shared frontends bind only when some service needs them (built-in heads).
    vhosts_needed = options.bind_http_https and (any(s.rule_vhosts for s in services)
                                                 or any_host_routes(services))
    appid_needed = any(s.mode == "http" for s in services)
    try:
        head = [frag["HAPROXY_HEAD"].render(global_values)]
        http = [frag["HAPROXY_HTTP_FRONTEND_HEAD"].render(dict(global_values,
                                                               needed=vhosts_needed))]
        appid_head = frag["HAPROXY_HTTP_FRONTEND_APPID_HEAD"].render(
            dict(global_values, needed=appid_needed))
        https = [frag["HAPROXY_HTTPS_FRONTEND_HEAD"].render(dict(
            global_values, needed=vhosts_needed or (options.bind_http_https
                                                    and options.tls_configured)))]
    except Exception as err:
        if failures is None:
            raise
        raise RenderError(describe_failure(err)) from err
    frontends: list[str] = []
    backends: list[str] = []

    frontend_head = frag["HAPROXY_FRONTEND_HEAD"]
    redirect = frag["HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS"]
    backend_head = frag["HAPROXY_BACKEND_HEAD"]
    http_acl = frag["HAPROXY_HTTP_FRONTEND_ACL"]
    https_acl = frag["HAPROXY_HTTPS_FRONTEND_ACL"]
    http_path_acl = frag["HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH"]
    https_path_acl = frag["HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH"]
    userlist = frag["HAPROXY_USERLIST_HEAD"]
    auth_options = frag["HAPROXY_BACKEND_AUTH_OPTIONS"]
    hsts_options = frag["HAPROXY_BACKEND_HSTS_OPTIONS"]
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
    appid: list[Rule] = []
    # Map routing for rules of built-in fragments in built-in frontends (routing.py).
    map_http = _maps_for(options, frag["HAPROXY_HTTP_FRONTEND_HEAD"])
    map_https = _maps_for(options, frag["HAPROXY_HTTPS_FRONTEND_HEAD"])
    map_appid = _maps_for(options, frag["HAPROXY_HTTP_FRONTEND_APPID_HEAD"])
    mlb = MlbMaps(options, frag)  # --haproxy-map: marathon-lb's files and their lines
    mlb_rules = any(not frag[name].builtin for name in FAMILY + REDIRECTS)  # mlb_frontend
    host_names: dict[str, str] = {}  # task host -> its cleaned name, for this render
    ruled_cache: dict[str, Any] = {"maps": (map_http, map_https)}  # rule_routes.py
    # Vhost rules: (rank, sequence, http rule, https rule). HAProxy takes the first
    # use_backend that matches, so they are written by rank (longest path first);
    # equal ranks keep service order, as servicerouter.py.
    routes: list[tuple[tuple[int, int, bool, bool], int, Rule | None, Rule | None]] = []
    # Where the current app's output starts in each buffer, to take it back if a
    # fragment fails on one of its ports (guarded renders only).
    current_app: str | None = None
    failed_app: str | None = None
    marks = (0, 0, 0, 0)
    for service in services:
        if service.app_id != current_app:
            current_app = service.app_id
            marks = (len(frontends), len(backends), len(appid), len(routes))
        elif current_app == failed_app:
            continue  # the other ports of an app a fragment failed on
        try:
            values = service_values(service, options, services)
            pick = _picker(overrides.get(service.backend) if overrides else None)
            settings = service.settings
            frontends.append(pick(frontend_head, "HAPROXY_FRONTEND_HEAD").render(values))
            if settings.redirect_to_https:
                chosen_redirect = pick(redirect, "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS")
                if not redirects_in_shared_frontend(chosen_redirect):  # else mlb_frontend's
                    frontends.append(chosen_redirect.render(values))
            if settings.auth is not None:
                backends.append(pick(userlist, "HAPROXY_USERLIST_HEAD").render(values))
            backends.append(pick(backend_head, "HAPROXY_BACKEND_HEAD").render(values))
            backends.extend(backend_rules(service, values, frag, pick))  # marathon-lb's

            paths = service.paths
            if not paths:
                route_http = pick(http_acl, "HAPROXY_HTTP_FRONTEND_ACL")
                route_https = pick(https_acl, "HAPROXY_HTTPS_FRONTEND_ACL")
                rules: tuple[tuple[str | None, str], ...] = ((None, "path_" + service.backend),)
            else:
                route_http = pick(http_path_acl, "HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH")
                route_https = pick(https_path_acl, "HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH")
                rules = path_rules(service.backend, paths)
            shadowed = service.shadowed_vhosts
            lost_paths, shadowed_paths = service.lost_paths, service.shadowed_paths
            ignore_case = service.path_ignore_case if paths else False
            own = own_rules(service, values, frag, pick) if (
                mlb_rules or pick is not _shared_fragment) else None  # marathon-lb's, changed
            if own is not None:
                routes.append((own.rank, len(routes), own.http, own.https))
            # Operator rules' header, split and any-host routes (servicerouter.render.rule_routes)
            ruled, own_lines = rule_routes(service, services, len(routes), ruled_cache)
            routes.extend(ruled)
            for host in () if own_lines else service.rule_vhosts:
                for path, path_acl in rules:
                    if lost_paths and (host, path) in lost_paths:
                        continue  # an older app owns this prefix of the vhost
                    hidden = host in shadowed or (shadowed_paths
                                                  and (host, path) in shadowed_paths)
                    rank = route_order_key(service, host, path) + (":" not in host,)
                    if not route_http.is_jinja:
                        # servicerouter.py's own ACL fragments match the Host header exactly,
                        # so wildcards and ports need no precedence: keep its order.
                        rank = (False, rank[1], rank[2], True)
                    entry = None if ignore_case else host_entry(host, path, service.backend)
                    dom = mlb.vhost_entry(entry, path, route_http is http_acl, values, pick, "http")
                    dom_s = mlb.vhost_entry(entry, path, route_https is https_acl, values, pick, "https")
                    # An older app owns a hidden vhost and its rule comes first: only
                    # servicerouter.py's own (legacy) fragments still write this one.
                    write_http = not (hidden and route_http.is_jinja) \
                        and not (own and own.http is not None)
                    write_https = not (hidden and route_https.is_jinja) \
                        and not (own and own.https is not None)
                    # A map entry needs no fragment render: the rule's values (a copy of
                    # the service's, two cleaned names) only for a rule rendered.
                    http_rule: Rule | None = (dom or (entry if entry and map_http
                                                       and route_http.builtin else None)
                                              ) if write_http else None
                    https_rule: Rule | None = (dom_s or (entry if entry and map_https
                                                          and route_https.builtin else None)
                                               ) if write_https else None
                    if (write_http and http_rule is None) or (write_https and https_rule is None):
                        vhost_values = dict(values, hostname=host,
                                            cleanedUpHostname=clean_name(host), vhost=host,
                                            hostAcl=host_acl_name(host), path=path,
                                            pathAcl=path_acl, pathIgnoreCase=ignore_case)
                        if write_http and http_rule is None:
                            http_rule = route_http.render(vhost_values)
                        if write_https and https_rule is None:
                            https_rule = route_https.render(vhost_values)
                    routes.append((rank, len(routes), http_rule, https_rule))

            if service.mode == "http" and service.app_id not in apps_with_appid_acl:
                apps_with_appid_acl.add(service.app_id)
                appid_rule = pick(appid_acl, "HAPROXY_HTTP_FRONTEND_APPID_ACL")
                appid.append(mlb.appid_entry(service, appid_rule is appid_acl, values, pick)
                             or (appid_entry(service.app_id, service.backend)
                                 if map_appid and appid_rule.builtin
                                 else appid_rule.render(values)))

            if service.mode == "http":
                if settings.auth is not None:
                    backends.append(pick(auth_options, "HAPROXY_BACKEND_AUTH_OPTIONS")
                                    .render(values))
                backends.append(pick(http_options, "HAPROXY_BACKEND_HTTP_OPTIONS")
                                .render(values))

            server_check = None
            if service.health_check is not None:
                backend_check = backend_checks.get(service.mode)
                if backend_check is not None:
                    backend_check = pick(backend_check, backend_check.spec.name)
                if backend_check is not None and not backend_check.is_empty:
                    backends.append(backend_check.render(values))
                server_check = server_checks.get(service.mode)
                if server_check is not None:
                    server_check = pick(server_check, server_check.spec.name)
                if server_check is not None and server_check.is_empty:
                    server_check = None

            values["dynamicCookie"] = False
            if settings.sticky:
                sticky_text = pick(sticky_options, "HAPROXY_BACKEND_STICKY_OPTIONS") \
                    .render(values)
                backends.append(sticky_text)
                values["dynamicCookie"] = says_dynamic_cookie(sticky_text)
            if settings.use_hsts and service.mode == "http":
                backends.append(pick(hsts_options, "HAPROXY_BACKEND_HSTS_OPTIONS")
                                .render(values))

            frontends.append(pick(glue, "HAPROXY_FRONTEND_BACKEND_GLUE").render(values))
            render_servers(service, values,
                            pick(server_line, "HAPROXY_BACKEND_SERVER_OPTIONS"),
                            server_check, backends, host_names,
                            _scaled_interval(service, server_check, options))
        except Exception as err:
            if failures is None:
                raise
            failures.append(service_failure(service, err))
            failed_app = current_app
            del frontends[marks[0]:], backends[marks[1]:], appid[marks[2]:], routes[marks[3]:]
            mlb.forget(current_app)

    routes.sort(key=lambda route: (route[0], route[1]))
    maps: dict[str, list[tuple[str, str]]] = {}
    map_dir = options.map_dir or ""
    shared: list[str] = []
    if options.bind_http_https and _bound(frag["HAPROXY_HTTP_FRONTEND_HEAD"], http[0]):
        shared += http + assemble("http", (route[2] for route in routes), map_dir, maps,
                                  mlb.kinds(map_http), mlb.lines("http"))
    if _bound(frag["HAPROXY_HTTP_FRONTEND_APPID_HEAD"], appid_head):
        shared += [appid_head] + assemble("appid", appid, map_dir, maps, (), mlb.lines("appid"))
    if options.bind_http_https and _bound(frag["HAPROXY_HTTPS_FRONTEND_HEAD"], https[0]):
        shared += https + assemble("https", (route[3] for route in routes), map_dir, maps,
                                   mlb.kinds(map_https), mlb.lines("https"))
    maps_text = map_block(maps)
    if pieces is not None:  # the backend sections apart from the rest (see render.pieces)
        pieces["rest"] = "".join(head + shared + frontends) + maps_text
        pieces["backends"] = "".join(backends)
    return "".join(head + shared + frontends + backends) + maps_text



def _scaled_interval(service: Service, server_check: Fragment | None,
                     options: RenderOptions) -> int | None:
    """The server-check interval (seconds) when --max-check-rate scales it: built-in
    server-check fragments only (see servicerouter.render.check_rate), else None."""
    scale = options.check_interval_scale
    check = service.health_check
    if (scale == 1 or server_check is None or not server_check.builtin or check is None
            or check.interval_seconds <= 0):
        return None
    return check.interval_seconds * scale


def _maps_for(options: RenderOptions, frontend_head: Fragment) -> bool:
    """Whether a shared frontend's built-in rules go into map files: a map directory is
    set and the frontend is the built-in one (a user's head keeps its own rules)."""
    return options.map_dir is not None and frontend_head.builtin


def _bound(frontend_head: Fragment, text: str) -> bool:
    """A Jinja2 shared-frontend head that rendered nothing binds nothing: its rules
    would land in the section before, so they go too.  Legacy heads always bind."""
    return not frontend_head.is_jinja or bool(text.strip())


def _picker(override: Mapping[str, Fragment] | None) -> Any:
    """The fragment to use for one service: its label template, else the shared one."""
    if not override:
        return _shared_fragment

    def pick(default: Fragment, name: str) -> Fragment:
        return override.get(name, default)

    return pick


def _shared_fragment(default: Fragment, _name: str) -> Fragment:
    return default


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
            # where the routing came from: an operator rule's id, or None (labels)
            "port_index": s.index, "paths": list(s.paths),
            "rule": s.settings.rule.rule_id if s.settings.rule is not None else None,
        }
        for s in services
    ]
