"""marathon-lb's ``--haproxy-map``: its map files and lookup lines, in one render.  Pure.

With the flag, marathon-lb routes every exact virtual host without a path through
``domain2backend.map`` and every app id through ``app2backend.map``, both beside the
config (``{haproxy_dir}``), one ``key backend`` line per entry; each shared frontend
reads them with one line from its ``HAPROXY_MAP_*`` template, rendered once, for the
first app that has an entry (marathon-lb's order: app id, then service port).  Its
users' tooling reads those files (``/_haproxy_getvhostmap``) and their custom map
templates name them, so the files and the lines are marathon-lb's; everything else
(paths, wildcards, hosts with a port) stays in the engine's own maps and rules,
ranked as always.  The entries travel in the config's map block like the engine's
own (:mod:`servicerouter.render.routing`), so they are validated with the config,
written atomically, and a vhost added to or removed from an existing backend is an
``add map`` / ``del map`` on the running HAProxy, not a reload.

Differences from marathon-lb, on purpose: the built-in lines look the key up once
more as their condition (``if { ... -m found }``), so a host not in the map falls
through to the wildcard rules after it instead of ending on an unknown backend; the
built-in HTTPS line matches the Host header (as every other HTTPS rule here) where
marathon-lb's matched SNI; a vhost of an app with HAPROXY_{n}_AUTH or
HAPROXY_{n}_REDIRECT_TO_HTTPS is in the map too (both are done in the backend here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from servicerouter.render.fragments import Fragment
from servicerouter.render.routing import MapEntry

_VHOST_KINDS = ("beg", "end")
_MLB_VHOST_KINDS = ("beg", "dom", "end")
# Shared frontend -> the map kind its marathon-lb line reads.
_KIND = {"http": "dom", "https": "dom", "appid": "app"}
# Shared frontend -> template of its line (the HTTP one: marathon-lb's _ACL_ONLY variant
# when the first app with an entry has several vhosts).
_TEMPLATE = {"http": "HAPROXY_MAP_HTTP_FRONTEND_ACL", "https": "HAPROXY_MAP_HTTPS_FRONTEND_ACL",
             "appid": "HAPROXY_MAP_HTTP_FRONTEND_APPID_ACL"}
_MULTI_VHOST_HTTP = "HAPROXY_MAP_HTTP_FRONTEND_ACL_ONLY"
Picker = Callable[[Fragment, str], Fragment]


def haproxy_dir(map_dir: str) -> str:
    """The config's directory (marathon-lb's ``{haproxy_dir}``): ``map_dir``'s parent."""
    return map_dir.rstrip("/").rsplit("/", 1)[0]


class MlbMaps:
    """Gathers marathon-lb's map entries and renders their lines during one render."""

    __slots__ = ("enabled", "_dir", "_frag", "_lines")

    def __init__(self, options: Any, fragments: Mapping[str, Fragment]) -> None:
        self.enabled = bool(options.haproxy_map and options.map_dir)
        self._dir = haproxy_dir(options.map_dir) if self.enabled else ""
        self._frag = fragments
        self._lines: dict[str, tuple[str, str]] = {}  # frontend -> (app id, line)

    def kinds(self, engine_maps: bool) -> tuple[str, ...]:
        """The map kinds a vhost frontend reads even when empty (see routing.assemble)."""
        if not engine_maps:
            return ()
        return _MLB_VHOST_KINDS if self.enabled else _VHOST_KINDS

    def _line(self, frontend: str, name: str, values: dict[str, Any], pick: Picker) -> None:
        """Render a frontend's line for the first app with an entry there (its label
        template, if it has one, as marathon-lb)."""
        if frontend not in self._lines:
            text = pick(self._frag[name], name).render(dict(values, haproxy_dir=self._dir))
            self._lines[frontend] = (values["appId"], text)

    def vhost_entry(self, entry: MapEntry | None, path: str | None, shared_fragment: bool,
                    values: dict[str, Any], pick: Picker, frontend: str) -> MapEntry | None:
        """The domain2backend.map entry of a vhost rule, or None (the rule stays as is).

        Only an exact host without a path or port, routed by the shared ACL fragment
        (an app's own HAPROXY_{n}_HTTP_FRONTEND_ACL label keeps its own rule).
        """
        if not (self.enabled and shared_fragment and entry is not None
                and entry.kind == "beg" and not path):
            return None
        name = _TEMPLATE[frontend]
        if frontend == "http" and len(values["service"].rule_vhosts) > 1:
            name = _MULTI_VHOST_HTTP
        self._line(frontend, name, values, pick)
        return MapEntry("dom", entry.key.split("/", 1)[0], entry.backend)

    def appid_entry(self, service: Any, shared_fragment: bool, values: dict[str, Any],
                    pick: Picker) -> MapEntry | None:
        """The app2backend.map entry of an app (its id as Marathon spells it), or None."""
        if not (self.enabled and shared_fragment):
            return None
        self._line("appid", _TEMPLATE["appid"], values, pick)
        return MapEntry("app", service.app_id, service.backend)

    def forget(self, app_id: str | None) -> None:
        """Drop the lines rendered for an app a fragment then failed on (it is left out)."""
        for frontend in [f for f, (owner, _text) in self._lines.items() if owner == app_id]:
            del self._lines[frontend]

    def lines(self, frontend: str) -> dict[str, str]:
        """Map kind -> the rendered line reading it, for one shared frontend.

        No entry there yet: the shared template's line all the same, so that the
        first entry is an ``add map``, not a new line and a reload (a template that
        cannot render without an app's values gives no line until then).
        """
        if not self.enabled:
            return {}
        found = self._lines.get(frontend)
        if found is not None:
            return {_KIND[frontend]: found[1]}
        try:
            text = self._frag[_TEMPLATE[frontend]].render(
                {"haproxy_dir": self._dir, "options": None, "services": ()})
        except Exception:  # noqa: BLE001 - an operator's template needing an app's values
            text = ""
        return {_KIND[frontend]: text}
