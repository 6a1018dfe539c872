"""Rules as a pure input to derivation: the apps as the rules say they route.

:func:`overlay_rules` returns the apps with each ruled port's routing labels
replaced by its rule (a rule wins over the app's own labels for the same port),
and what no label can say (header matches, a weighted split, paths on any
host) attached under :data:`~servicerouter.model.rule_values.RULE_KEY`.  The
model then derives those apps like any other, so the one-shot and the live
engine, the preview and the task path all see the same thing.  Apps without a
rule are passed through as the same objects (the live engine's per-app caches
keep working); a document that already carries the rule key (Marathon never
sends it) has it removed, so only the operator's store can set it.

Which labels a rule replaces: ``HAPROXY_{n}_VHOST`` (its hosts, or none),
``HAPROXY_{n}_PATH`` (its paths under its hosts, or none) and
``HAPROXY_{n}_BACKEND_WEIGHT`` (its priority), always;
``HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`` only when the rule has an
allow-list (a rule never loosens the app's own restriction by saying nothing).
All other labels (certificates, mode, balance, health checks...) stay the app's.

Rules naming the same hosts, paths and headers split that route by weight:
the first by id holds the route, the others give up their hosts and are
reached through it (see servicerouter.render.rule_routes).  Not the heaviest:
stepping a canary's weights (5, 20, 50, 80...) must never move the route to
another port, so that new weights are map entries only, never a reload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from servicerouter.model.rule_values import RULE_KEY
from servicerouter.rules.model import Rule


def split_groups(rules: Mapping[str, Rule]) -> dict[str, tuple[Rule, ...]]:
    """Rule id -> the rules splitting its route (by id: the first holds it), for routes
    with 2+ rules."""
    groups: dict[tuple[Any, ...], list[Rule]] = {}
    for rule in rules.values():
        if rule.hosts or rule.paths:
            groups.setdefault(rule.route_key, []).append(rule)
    out: dict[str, tuple[Rule, ...]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        ordered = tuple(sorted(members, key=lambda r: r.id))
        for rule in ordered:
            out[rule.id] = ordered
    return out


def _port_labels(rule: Rule, labels: dict[str, Any], env: dict[str, Any],
                 holds_route: bool) -> None:
    prefix = f"HAPROXY_{rule.port_index}_"
    hosts = rule.hosts if holds_route else ()
    # http: a split member is reached from the shared HTTP frontends only, as is a
    # port routed by path on any host (hosts make a port http already).
    force_http = not holds_route or (not hosts and bool(rule.paths))
    replaced = ["VHOST", "PATH", "BACKEND_WEIGHT"]
    replaced += ["BACKEND_NETWORK_ALLOWED_ACL"] if rule.allow_cidrs else []
    replaced += ["MODE"] if force_http else []
    for suffix in replaced:
        env.pop(prefix + suffix, None)
        labels.pop(prefix + suffix, None)
    labels[prefix + "VHOST"] = ",".join(hosts)
    if hosts and rule.paths:
        labels[prefix + "PATH"] = ("-i " if rule.path_ignore_case else "") + " ".join(rule.paths)
    labels[prefix + "BACKEND_WEIGHT"] = str(rule.priority)
    if rule.allow_cidrs:
        labels[prefix + "BACKEND_NETWORK_ALLOWED_ACL"] = " ".join(rule.allow_cidrs)
    if force_http:
        labels[prefix + "MODE"] = "http"


def _extras(rule: Rule, group: tuple[Rule, ...] | None, holds_route: bool) -> dict[str, Any]:
    extras: dict[str, Any] = {"id": rule.id}
    if not holds_route:
        return extras
    if rule.headers:
        extras["headers"] = [h.to_json() for h in rule.headers]
    if group:
        extras["split"] = [[r.app_id, r.port_index, r.weight] for r in group]
    if rule.paths and not rule.hosts:
        extras["any_host_paths"] = list(rule.paths)
        extras["path_ignore_case"] = rule.path_ignore_case
    return extras


def overlay_rules(apps: Iterable[Any], rules: Mapping[str, Rule]) -> list[Any]:
    """``apps`` (Marathon's documents) as ``rules`` make them route; see the module doc."""
    by_app: dict[str, list[Rule]] = {}
    for rule in rules.values():
        by_app.setdefault(rule.app_id, []).append(rule)
    groups = split_groups(rules) if by_app else {}
    out: list[Any] = []
    for app in apps:
        app_id = app.get("id") if isinstance(app, Mapping) else None
        ruled = by_app.get(app_id) if isinstance(app_id, str) else None
        if ruled is None:
            if isinstance(app, Mapping) and RULE_KEY in app:
                app = {k: v for k, v in app.items() if k != RULE_KEY}
            out.append(app)
            continue
        labels = dict(app.get("labels") or {}) if isinstance(app.get("labels"), Mapping) else {}
        env = dict(app.get("env") or {}) if isinstance(app.get("env"), Mapping) else {}
        extras: dict[str, Any] = {}
        for rule in sorted(ruled, key=lambda r: r.port_index):
            group = groups.get(rule.id)
            holds_route = group is None or group[0] is rule
            _port_labels(rule, labels, env, holds_route)
            extras[str(rule.port_index)] = _extras(rule, group, holds_route)
        out.append({**app, "labels": labels, "env": env, RULE_KEY: extras})
    return out


def rule_targets(apps: Iterable[Any], rules: Mapping[str, Rule]) -> dict[str, str]:
    """Each rule's standing: "ok", "no such app" or "no such port" (kept, shown as such)."""
    ports: dict[str, int] = {}
    for app in apps:
        if isinstance(app, Mapping) and isinstance(app.get("id"), str):
            definitions = app.get("portDefinitions") or app.get("ports") or ()
            mappings = ((app.get("container") or {}).get("portMappings")
                        if isinstance(app.get("container"), Mapping) else None) or ()
            count = max(len(definitions) if isinstance(definitions, list) else 0,
                        len(mappings) if isinstance(mappings, list) else 0)
            ports[app["id"]] = count
    standing: dict[str, str] = {}
    for rule_id, rule in rules.items():
        count = ports.get(rule.app_id)
        standing[rule_id] = ("no such app" if count is None
                             else "no such port" if rule.port_index >= count and count
                             else "ok")
    return standing


def _unruled(app: Any) -> Any:
    """An app no rule names, as :func:`overlay_rules` leaves it: a forged rule key stripped."""
    if type(app) is dict and RULE_KEY not in app:
        return app
    return overlay_rules((app,), {})[0]


class OverlayCache:
    """:func:`overlay_rules` that hands back the same copy for the same app and rules.

    The live engine's task path recognises the running model's services by the
    identity of their app document; an app with a rule is a copy made by the
    overlay, so the copy must stay the same object while neither the app nor
    its rules change (then task events of ruled apps take the task path too).
    """

    def __init__(self) -> None:
        # app id -> (Marathon's document, what its rules say, the overlaid copy)
        self._copies: dict[str, tuple[Any, Any, Any]] = {}
        self._rules: Mapping[str, Rule] = {}
        self._signatures: dict[str, Any] = {}

    def apply(self, apps: Iterable[Any], rules: Mapping[str, Rule]) -> list[Any]:
        """All of ``apps`` overlaid with ``rules`` (a full build: forgets apps gone)."""
        self._set_rules(rules)
        copies: dict[str, tuple[Any, Any, Any]] = {}
        if not self._signatures:  # no rule names an app (the usual case): only strip forged keys
            out = [_unruled(app) for app in apps]
        else:
            out = [self._one(app, copies) for app in apps]
        self._copies = copies
        return out

    def overlaid(self, app: Any) -> Any:
        """One app under the rules of the last :meth:`apply` (the task path's apps)."""
        return self._one(app, self._copies)

    def has_rules(self, app_id: str) -> bool:
        """Whether a rule of the last :meth:`apply` names ``app_id`` (its routes are the rule's)."""
        return app_id in self._signatures

    def map_routed(self, app_id: str) -> bool:
        """Whether the rules of ``app_id`` (of the last :meth:`apply`) say only hosts and
        paths under them, which the shared frontends route through map files like labels:
        no header match, no weighted split, no paths on any host (those are rule lines
        whose order is global).  The live app path can then apply its updates alone."""
        return all(group is None and not rule.headers and (rule.hosts or not rule.paths)
                   for rule, group in self._signatures.get(app_id, ()))

    def _set_rules(self, rules: Mapping[str, Rule]) -> None:
        if rules == self._rules:
            return
        self._rules = dict(rules)
        groups = split_groups(self._rules)
        signatures: dict[str, list[Any]] = {}
        for rule in self._rules.values():
            signatures.setdefault(rule.app_id, []).append((rule, groups.get(rule.id)))
        self._signatures = {app_id: tuple(sorted(items, key=lambda item: item[0].id))
                            for app_id, items in signatures.items()}

    def _one(self, app: Any, copies: dict[str, tuple[Any, Any, Any]]) -> Any:
        app_id = app.get("id") if isinstance(app, Mapping) else None
        signature = self._signatures.get(app_id) if isinstance(app_id, str) else None
        if signature is None:
            return overlay_rules((app,), {})[0]  # strips a forged rule key, if any
        known = self._copies.get(app_id)
        if known is not None and known[0] is app and known[1] == signature:
            copies[app_id] = known
            return known[2]
        copy = overlay_rules((app,), {rule.id: rule for rule in self._rules.values()
                                      if rule.app_id == app_id or self._shares(rule, app_id)})[0]
        copies[app_id] = (app, signature, copy)
        return copy

    def _shares(self, rule: Rule, app_id: str) -> bool:
        """Whether ``rule`` is in a split with one of ``app_id``'s rules."""
        return any(group is not None and rule in group
                   for _, group in self._signatures.get(app_id, ()))
