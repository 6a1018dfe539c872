"""marathon-lb's shared-frontend rule templates: routing-only, ACL-only and auth.  Pure.

marathon-lb builds a port's rules in the shared frontends from a different set of
templates depending on the port: several vhosts (``HAPROXY_{n}_VHOST`` with a
comma) get one ``_ACL_ONLY`` host ACL per vhost, all under one ACL name, then one
``_ROUTING_ONLY`` line gluing it to the backend; a path adds ``_ACL_ONLY_WITH_PATH``;
``HAPROXY_{n}_AUTH`` switches to the ``_WITH_AUTH`` variants, which ask for
credentials in the frontend (``http-request auth``); HTTPS rules of a port with a
path start with ``HTTPS_FRONTEND_ACL_ONLY_WITH_PATH``.  :func:`plan` is that
choice, template by template.

The engine routes every vhost with its own rule (or map entry) and asks for
credentials in the backend, which ends the same for a request; so the built-in
files of these templates are used only where an operator or an app changes one:
a port whose plan (HTTP or HTTPS side) names one of these templates that is not
built in (a file in the templates directory, or the app's label) has that side's
rules rendered marathon-lb's way, all of them, in marathon-lb's order, as one
rule at the rank of its most specific vhost.  Values are marathon-lb's:
``cleanedUpHostname`` is its ACL name (the first vhost and the app id, cleaned),
``realm`` the realm; the userlist is ``user_<backend>``, its name.
With ``HAPROXY_{n}_REDIRECT_TO_HTTPS``, marathon-lb's HTTP side defines the host ACLs
(and ``path_<backend>`` with a path) and ends with ``BACKEND_REDIRECT_HTTP_TO_HTTPS``
(``..._WITH_PATH`` with a path), whose text names those ACLs
(``if !{ ssl_fc } host_{cleanedUpHostname} path_{backend}``): it only works in the
shared frontend.  A changed redirect template in marathon-lb's syntax (one naming
``{cleanedUpHostname}``; any ``_WITH_PATH`` one) is rendered there, in that plan
(:func:`redirects_in_shared_frontend`); servicerouter.py's own (``{bindAddr}`` only)
stays in the port's frontend.  The engine's default redirects in the backend instead,
which answers the same requests with the same 301 (the path and query are kept).
``HTTPS_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH``, ``HTTPS_FRONTEND_AUTH_ACL_ONLY``
and ``HTTPS_FRONTEND_AUTH_REQUEST_ONLY`` are defined by marathon-lb but never
rendered by it; they are not rendered here either (the label check says so).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from servicerouter.model.values import clean_name, route_order_key
from servicerouter.render.fragments import Fragment
from servicerouter.render.routing import host_acl_name, path_rules

# The templates only this module renders (the rest of a plan are the engine's own).
FAMILY: tuple[str, ...] = (
    "HAPROXY_HTTP_FRONTEND_ACL_ONLY", "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY",
    "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH", "HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH",
    "HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH", "HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
    "HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH",
    "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH",
    "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
    "HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH", "HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HAPROXY_HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
)
# marathon-lb names them, never renders them.
NEVER_RENDERED: tuple[str, ...] = (
    "HTTPS_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH", "HTTPS_FRONTEND_AUTH_ACL_ONLY",
    "HTTPS_FRONTEND_AUTH_REQUEST_ONLY",
)
REDIRECT = "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS"
REDIRECT_WITH_PATH = "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH"
# Changed (marathon-lb's text), these render a port's HTTP side its way (side_rules).
REDIRECTS: tuple[str, ...] = (REDIRECT, REDIRECT_WITH_PATH)
_FAMILY = frozenset(FAMILY) | frozenset(REDIRECTS)
Picker = Callable[[Fragment, str], Fragment]
# (template, how often): "once" per port, per "path", per "vhost", per "vhost+path".
Step = tuple[str, str]


def plan(https: bool, several_vhosts: bool, has_path: bool, auth: bool,
         redirect: bool = False) -> tuple[Step, ...]:
    """The templates marathon-lb renders for one port's side, in its order.

    ``redirect``: the port redirects HTTP to HTTPS (``HAPROXY_{n}_REDIRECT_TO_HTTPS``);
    marathon-lb then defines the HTTP side's ACLs and redirects, without its auth
    templates (every matching request is redirected before any credentials check).
    """
    if redirect and not https:
        if not several_vhosts and not has_path:
            return (("HAPROXY_HTTP_FRONTEND_ACL", "vhost"), (REDIRECT, "once"))
        steps_r: list[Step] = []
        if several_vhosts and has_path:
            steps_r.append(("HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH", "path"))
        steps_r.append(("HAPROXY_HTTP_FRONTEND_ACL_ONLY", "vhost"))
        if has_path and not several_vhosts:
            steps_r.append(("HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH", "path"))
        steps_r.append((REDIRECT_WITH_PATH if has_path else REDIRECT, "once"))
        return tuple(steps_r)
    if https:
        if has_path:
            last = ("HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH" if auth
                    else "HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH")
            return (("HAPROXY_HTTPS_FRONTEND_ACL_ONLY_WITH_PATH", "path"), (last, "vhost+path"))
        return (("HAPROXY_HTTPS_FRONTEND_ACL_WITH_AUTH" if auth
                 else "HAPROXY_HTTPS_FRONTEND_ACL", "vhost"),)
    if not several_vhosts:
        if has_path:
            return (("HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH" if auth
                     else "HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH", "vhost+path"),)
        return (("HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH" if auth
                 else "HAPROXY_HTTP_FRONTEND_ACL", "vhost"),)
    steps: list[Step] = []
    if has_path:
        steps.append(("HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH" if auth
                      else "HAPROXY_HTTP_FRONTEND_ACL_ONLY_WITH_PATH", "path"))
    steps.append(("HAPROXY_HTTP_FRONTEND_ACL_ONLY", "vhost"))
    steps.append((_ROUTING[has_path, auth], "once"))
    return tuple(steps)


_ROUTING = {
    (False, False): "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY",
    (False, True): "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH",
    (True, False): "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH",
    (True, True): "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
}


def acl_name(service: Any) -> str:
    """marathon-lb's ACL name of a port's vhosts: its first vhost and the app id, cleaned."""
    return clean_name(service.rule_vhosts[0]) + "_" + service.app_id[1:].replace("/", "_")


def redirects_in_shared_frontend(fragment: Fragment) -> bool:
    """Whether a redirect template goes in the shared HTTP frontend (marathon-lb's place).

    The built-in ones are empty (the backend redirects).  A changed ``_WITH_PATH`` one
    always does (it only exists there); a changed ``BACKEND_REDIRECT_HTTP_TO_HTTPS``
    in str.format text when it names ``{cleanedUpHostname}``: marathon-lb's host ACL,
    defined only in the shared frontend.  servicerouter.py's file (``{bindAddr}``) and
    Jinja2 ones keep the port's frontend, as documented before marathon-lb support.
    """
    if fragment.builtin:
        return False
    if fragment.spec.name == REDIRECT_WITH_PATH:
        return True
    if fragment.is_jinja:
        return False
    try:
        return any(field[1] == "cleanedUpHostname"
                   for field in string.Formatter().parse(fragment.text))
    except ValueError:
        return False


def side_rules(service: Any, values: Mapping[str, Any], fragments: Mapping[str, Fragment],
               pick: Picker, https: bool) -> str | None:
    """One side's rules rendered marathon-lb's way, or None: the engine's own rules.

    Only when the side's plan names a template of :data:`FAMILY` that is changed
    (not built in, or the app's label): otherwise the built-in files would render
    what the engine's rules already do.
    """
    # A vhost an older app owns stays that app's (the engine's claim rule).
    hosts = tuple(h for h in service.rule_vhosts if h not in service.shadowed_vhosts)
    if not hosts:
        return None
    auth = service.settings.auth
    redirect_name = REDIRECT_WITH_PATH if service.paths else REDIRECT
    redirect = (not https and service.settings.redirect_to_https
                and redirects_in_shared_frontend(pick(fragments[redirect_name], redirect_name)))
    steps = plan(https, len(service.rule_vhosts) > 1, bool(service.paths), auth is not None,
                 redirect)
    chosen = {name: pick(fragments[name], name) for name, _how in steps}
    if redirect and "HAPROXY_HTTP_FRONTEND_ACL" in chosen \
            and chosen["HAPROXY_HTTP_FRONTEND_ACL"].builtin:
        # The engine's own HTTP_FRONTEND_ACL names its ACLs its way: marathon-lb's
        # redirect text needs host_{cleanedUpHostname}, which the ACL_ONLY file defines.
        only = "HAPROXY_HTTP_FRONTEND_ACL_ONLY"
        chosen["HAPROXY_HTTP_FRONTEND_ACL"] = pick(fragments[only], only)
    if not any(name in _FAMILY and not chosen[name].builtin for name in chosen):
        return None
    base = dict(values, cleanedUpHostname=acl_name(service),
                realm=auth.realm if auth is not None else None)
    paths = path_rules(service.backend, service.paths) if service.paths else ((None, ""),)
    out: list[str] = []
    for name, how in steps:
        for host in hosts if how in ("vhost", "vhost+path") else (None,):
            for path, path_acl in paths if how in ("path", "vhost+path") else ((None, ""),):
                scoped = dict(base)
                if host is not None:
                    scoped.update(hostname=host, vhost=host, hostAcl=host_acl_name(host))
                if path is not None:
                    scoped.update(path=path, pathAcl=path_acl,
                                  pathIgnoreCase=service.path_ignore_case)
                out.append(chosen[name].render(scoped))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class OwnRules:
    """A port's shared-frontend rules rendered marathon-lb's way (None: that side keeps
    the engine's rules), and the rank of its most specific vhost rule."""

    http: str | None
    https: str | None
    rank: tuple[Any, ...]


def own_rules(service: Any, values: Mapping[str, Any], fragments: Mapping[str, Fragment],
              pick: Picker) -> OwnRules | None:
    """:func:`side_rules` of both sides, or None when both keep the engine's rules."""
    http = side_rules(service, values, fragments, pick, https=False)
    https = side_rules(service, values, fragments, pick, https=True)
    if http is None and https is None:
        return None
    rank = min(route_order_key(service, host, path) + (":" not in host,)
               for host in service.rule_vhosts for path in (service.paths or (None,)))
    return OwnRules(http, https, rank)
