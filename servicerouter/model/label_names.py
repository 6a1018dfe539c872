"""Every ``HAPROXY_*`` label name an app may carry, and what we say about the others.

Apps written for marathon-lb carry its label names; a name we do not act on must
never be dropped without a word (the app would route, but not as its owner
expects).  :func:`label_notices` looks at an app's labels once per build and
returns one :class:`~servicerouter.model.labels.Problem` per name that is:

* unknown: with "did you mean HAPROXY_0_VHOST?" when a known name is close
  (a typo such as ``HAPROXY_0_VHOTS`` is the usual cause);
* known from marathon-lb but not implemented here yet: one line naming it;
* a comma list with blank entries (``"koding.yourcompany.com,"``, as Universe
  packages render): the entries are ignored, the port still routes.

The names are facts about marathon-lb's interface (its label list and its per-app
template names), kept here so ``--longhelp``/README and the checks agree.  Only
labels are checked, not env: containers carry unrelated ``HAPROXY_*`` env vars
(the haproxy image sets ``HAPROXY_VERSION``).  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from servicerouter.model.label_values import shorten
from servicerouter.model.labels import SETTINGS, Problem

# marathon-lb's per-port template labels: HAPROXY_{n}_<NAME> replaces its template
# NAME for that port (str.format text with marathon-lb's placeholders).
MLB_TEMPLATE_NAMES: tuple[str, ...] = (
    "BACKEND_HEAD", "BACKEND_HSTS_OPTIONS", "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_HTTP_OPTIONS", "BACKEND_REDIRECT_HTTP_TO_HTTPS",
    "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH", "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_SERVER_OPTIONS", "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
    "BACKEND_STICKY_OPTIONS", "BACKEND_TCP_HEALTHCHECK_OPTIONS", "FRONTEND_BACKEND_GLUE",
    "FRONTEND_HEAD", "HTTPS_FRONTEND_ACL", "HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
    "HTTPS_FRONTEND_AUTH_ACL_ONLY", "HTTPS_FRONTEND_AUTH_REQUEST_ONLY",
    "HTTPS_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
    "HTTPS_FRONTEND_ACL_WITH_AUTH", "HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HTTPS_FRONTEND_ACL_WITH_PATH", "HTTP_BACKEND_NETWORK_ALLOWED_ACL",
    "HTTP_BACKEND_PROXYPASS_GLUE", "HTTP_BACKEND_REVPROXY_GLUE", "HTTP_FRONTEND_ACL",
    "HTTP_FRONTEND_ACL_ONLY", "HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
    "HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH", "HTTP_FRONTEND_ACL_WITH_AUTH",
    "HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH", "HTTP_FRONTEND_ACL_WITH_PATH",
    "HTTP_FRONTEND_APPID_ACL", "HTTP_FRONTEND_ROUTING_ONLY",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH", "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH", "MAP_HTTPS_FRONTEND_ACL",
    "MAP_HTTP_FRONTEND_ACL", "MAP_HTTP_FRONTEND_ACL_ONLY", "MAP_HTTP_FRONTEND_APPID_ACL",
    "TCP_BACKEND_NETWORK_ALLOWED_ACL", "USERLIST_HEAD",
)

# Of those, the ones an app may replace here (with --allow-label-templates): the
# per-service fragments of servicerouter.render.fragment_registry that marathon-lb
# also has.  A test keeps this in step with the fragment registry.
SUPPORTED_TEMPLATE_NAMES: frozenset[str] = frozenset({
    "BACKEND_HEAD", "BACKEND_HSTS_OPTIONS", "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_HTTP_OPTIONS", "BACKEND_REDIRECT_HTTP_TO_HTTPS",
    "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS", "BACKEND_SERVER_OPTIONS",
    "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS", "BACKEND_STICKY_OPTIONS",
    "BACKEND_TCP_HEALTHCHECK_OPTIONS", "FRONTEND_BACKEND_GLUE", "FRONTEND_HEAD",
    "HTTPS_FRONTEND_ACL", "HTTPS_FRONTEND_ACL_WITH_PATH", "HTTP_FRONTEND_ACL",
    "HTTP_FRONTEND_ACL_WITH_PATH", "HTTP_FRONTEND_APPID_ACL", "USERLIST_HEAD",
    "HTTP_BACKEND_NETWORK_ALLOWED_ACL", "TCP_BACKEND_NETWORK_ALLOWED_ACL",
    "HTTP_BACKEND_PROXYPASS_GLUE", "HTTP_BACKEND_REVPROXY_GLUE",
    "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH",  # render.mlb_frontend, shared HTTP frontend
    # --haproxy-map's lines (render.mlb_maps): the first app with an entry renders them.
    "MAP_HTTP_FRONTEND_ACL", "MAP_HTTP_FRONTEND_ACL_ONLY", "MAP_HTTPS_FRONTEND_ACL",
    "MAP_HTTP_FRONTEND_APPID_ACL",
    # marathon-lb's routing-only, ACL-only and auth rule templates (render.mlb_frontend).
    "HTTP_FRONTEND_ACL_ONLY", "HTTP_FRONTEND_ROUTING_ONLY", "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH",
    "HTTP_FRONTEND_ACL_WITH_AUTH", "HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HTTP_FRONTEND_ACL_ONLY_WITH_PATH", "HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH", "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
    "HTTPS_FRONTEND_ACL_WITH_AUTH", "HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
})

# marathon-lb documents these templates but never renders them; neither does servicerouter.
MLB_NEVER_RENDERED: frozenset[str] = frozenset({
    "HTTPS_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH", "HTTPS_FRONTEND_AUTH_ACL_ONLY",
    "HTTPS_FRONTEND_AUTH_REQUEST_ONLY",
})

# Template names of ours only (no marathon-lb counterpart), also accepted as labels.
OWN_TEMPLATE_NAMES: frozenset[str] = frozenset({"BACKEND_AUTH_OPTIONS"})

# marathon-lb per-port settings not implemented here yet, and what they do there
# (all of them are now: kept so the next one is one line).
MLB_PENDING_PORT: Mapping[str, str] = {}

# marathon-lb app-wide labels: bookkeeping of its blue/green deploy script (zdd.py)
# and of the deployment grouping marathon-lb does while both colours run.
MLB_APP_NAMES: Mapping[str, str] = {
    "DEPLOYMENT_GROUP": "blue/green deployment group",
    "DEPLOYMENT_ALT_PORT": "blue/green alternate service port",
    "DEPLOYMENT_COLOUR": "blue/green deployment colour",
    "DEPLOYMENT_STARTED_AT": "blue/green deployment start time",
    "DEPLOYMENT_TARGET_INSTANCES": "blue/green target instance count",
    "DEPLOYMENT_NEW_INSTANCES": "blue/green new instance count",
    "APP_ID": "app id recorded by the blue/green deploy script",
}

# App-wide labels of our own blue/green deployments (``servicerouter zdd`` writes them,
# servicerouter.model.deployment_groups reads them): known, so never "unknown label".
OWN_APP_NAMES: Mapping[str, str] = {
    "DEPLOYMENT_NEW_WEIGHT_PERCENT": "the new colour's share of requests (canary or steps)",
}

# marathon-lb app-wide labels not implemented here yet (the deployment labels are:
# servicerouter.model.deployment_groups and ``servicerouter zdd``).
MLB_APP_PENDING: frozenset[str] = frozenset()

_PORT_KEY_RE = re.compile(r"^HAPROXY_([0-9]{1,4})_([A-Z0-9_]+)$")
_OWN_PORT_SUFFIXES = frozenset(s.key.removeprefix("HAPROXY_{n}_") for s in SETTINGS if s.per_port)
_OWN_APP_KEYS = frozenset(s.key for s in SETTINGS if not s.per_port)
# Comma-list settings whose blank entries are ignored with a warning (see
# servicerouter.model.label_values.parse_vhosts).
_COMMA_LISTS = frozenset({"VHOST", "BACKEND_NETWORK_ALLOWED_ACL"})


def known_port_suffixes() -> frozenset[str]:
    """Every per-port name (after ``HAPROXY_{n}_``) that is not unknown."""
    return (_OWN_PORT_SUFFIXES | frozenset(MLB_TEMPLATE_NAMES) | OWN_TEMPLATE_NAMES
            | frozenset(MLB_PENDING_PORT))


_KNOWN_PORT = known_port_suffixes()
_KNOWN_APP = _OWN_APP_KEYS | frozenset(f"HAPROXY_{name}" for name in (*MLB_APP_NAMES,
                                                                       *OWN_APP_NAMES))


def _suggestion(key: str) -> str | None:
    """The known name closest to ``key`` (same port index), if one is close."""
    import difflib  # only for an unknown label name: most syncs never need it

    match = _PORT_KEY_RE.match(key)
    if match is not None:
        index, suffix = match.groups()
        close = difflib.get_close_matches(suffix, sorted(_KNOWN_PORT), n=1, cutoff=0.75)
        if close:
            return f"HAPROXY_{index}_{close[0]}"
    candidates = sorted(_KNOWN_APP) + [f"HAPROXY_0_{s}" for s in sorted(_KNOWN_PORT)]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.8)
    if close:
        name = close[0]
        # A port key written without its index (HAPROXY_VHOST): say which form.
        return name.replace("HAPROXY_0_", "HAPROXY_{n}_") if name.startswith("HAPROXY_0_") else name
    return None


def _blank_entries(value: str) -> bool:
    parts = value.split(",")
    return len(parts) > 1 and any(not p.strip() for p in parts) and any(p.strip() for p in parts)


def label_notices(app_id: str, labels: Mapping[str, Any],
                  port_count: int | None = None) -> list[Problem]:
    """One notice per ``HAPROXY_*`` label of the app we do not act on as written.

    ``port_count``: the app's number of service ports, to say so when a label
    names a port index the app does not have (None: not checked).
    Notices (``kind`` "label") never stop a port from routing: only the label is
    ignored, whatever else happens to the port.
    """
    return key_notices(app_id, labels,
                       [k for k in labels if isinstance(k, str) and k.startswith("HAPROXY_")],
                       port_count)


def key_notices(app_id: str, labels: Mapping[str, Any], keys: list[str],
                port_count: int | None = None) -> list[Problem]:
    """:func:`label_notices` for ``keys``, the app's ``HAPROXY_*`` label names.

    Most labels need no notice, and whether one does mostly depends on the name
    alone: those names are looked up in a table made once (:data:`_QUIET`), and only
    the others go through the parsing and close-match search of :func:`_notice`.
    """
    said: list[str] = []
    for key in keys:
        quiet = _QUIET.get(key)
        if quiet is not None:
            index, comma_list = quiet
            if (port_count is None or index < port_count) and not (
                    comma_list and isinstance(value := labels[key], str) and "," in value
                    and _blank_entries(value)):
                continue
        said.append(key)
    notices: list[Problem] = []
    for key in sorted(said):
        notice = _notice(app_id, key, labels[key], port_count)
        if notice is not None:
            notices.append(notice)
    return notices


def _quiet_names(indexes: int = 16) -> dict[str, tuple[int, bool]]:
    """Label names :func:`_notice` says nothing about, whatever their value, while the
    port index (-1 for app-wide names) is one the app has: name -> (index, whether the
    value is a comma list, checked for blank entries).  Port indexes below ``indexes``;
    other names take :func:`_notice`'s path, which gives the same answer."""
    suffixes = [suffix for suffix in sorted(_KNOWN_PORT)
                if suffix not in MLB_PENDING_PORT and suffix not in MLB_NEVER_RENDERED
                and (suffix not in MLB_TEMPLATE_NAMES or suffix in SUPPORTED_TEMPLATE_NAMES)]
    quiet = {f"HAPROXY_{index}_{suffix}": (index, suffix in _COMMA_LISTS)
             for index in range(indexes) for suffix in suffixes}
    quiet.update((key, (-1, False)) for key in _KNOWN_APP
                 if key.removeprefix("HAPROXY_") not in MLB_APP_PENDING)
    return quiet


_QUIET = _quiet_names()


def _safe_key(key: str) -> str:
    """A label name fit for one log line: hostile names (line breaks, controls) escaped."""
    return shorten(key if key.isprintable() else repr(key)[1:-1], 100)


def _notice(app_id: str, key: str, raw: Any, port_count: int | None) -> Problem | None:
    """The notice for one label, or None (most labels: acted on as written)."""
    value = raw if isinstance(raw, str) else None
    match = _PORT_KEY_RE.match(key)
    if match is not None:
        index, suffix = int(match.group(1)), match.group(2)
        if suffix in _KNOWN_PORT:
            if port_count is not None and index >= port_count:
                return Problem(app_id, f"the app has no service port index {index} "
                               f"({port_count} port{'s' if port_count != 1 else ''}); label ignored",
                               None, key, _shown(value), kind="label")
            elif suffix in MLB_PENDING_PORT:
                return Problem(app_id, f"marathon-lb label not implemented yet "
                               f"({MLB_PENDING_PORT[suffix]}); ignored",
                               index, key, _shown(value), kind="label")
            elif suffix in MLB_NEVER_RENDERED:
                return Problem(app_id, "marathon-lb never renders this template (it is only "
                               "documented); ignored", index, key, _shown(value), kind="label")
            elif suffix in MLB_TEMPLATE_NAMES and suffix not in SUPPORTED_TEMPLATE_NAMES:
                return Problem(app_id, "marathon-lb template label not implemented yet; ignored",
                               index, key, _shown(value), kind="label")
            elif suffix in _COMMA_LISTS and value is not None and _blank_entries(value):
                return Problem(app_id, "blank entries in the comma list ignored",
                               index, key, _shown(value), kind="label")
            return None
    elif key in _KNOWN_APP:
        name = key.removeprefix("HAPROXY_")
        if name in MLB_APP_PENDING:
            return Problem(app_id, f"marathon-lb label not implemented yet "
                           f"({MLB_APP_NAMES[name]}); ignored",
                           None, key, _shown(value), kind="label")
        return None
    hint = _suggestion(key)
    reason = "unknown label, ignored" + (f"; did you mean {hint}?" if hint else "")
    key = _safe_key(key)
    index = int(match.group(1)) if match is not None else None
    if index is not None and port_count is not None and index >= port_count:
        index = None
    return Problem(app_id, reason, index, key, _shown(value), kind="label")


def _shown(value: str | None) -> str | None:
    """A label value as a notice shows it (only built when there is a notice)."""
    return shorten(value, 60) if value is not None else None
