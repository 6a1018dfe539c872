"""Operator routing rules (issue 12): how requests reach each Marathon app, set by the
people who run the edge rather than by app labels, shared by every edge node.

The interface (what the engine, the API and the dashboard use):

``servicerouter.rules.model`` (pure)
    ``Rule`` (frozen): ``app_id``, ``port_index``, ``id`` (property, ``"/shop/web:0"``),
    ``hosts`` (exact names and ``*.`` wildcards), ``paths`` (URL prefixes; on any
    host when ``hosts`` is empty), ``path_ignore_case``, ``headers``
    (``HeaderMatch(name, value, prefix)``: all must match), ``allow_cidrs``,
    ``priority`` (int, higher first among equally specific routes), ``weight``
    (1..256, default 100: the share when several rules name the same hosts, paths
    and headers: a canary split), ``note``.
    ``validate_rule(data: Mapping) -> Rule`` raises ``RuleError(field, message)``
    (``err.field``, ``err.message``, ``err.to_json()``); values go through the
    label parsers, so nothing can reach HAProxy but one safe token.
    ``rule_to_json(rule)`` / ``rule_from_json(data)``; ``parse_rule_id("/a:1")``.
``servicerouter.rules.bamboo`` (pure)
    ``parse_acl(acl) -> dict`` of rule fields (``hdr(host) -i X``, ``hdr_dom(host) -i X``,
    ``path_beg [-i] X``, ``hdr(NAME) X``, ``hdr_beg(NAME) X``, ``or``/``||``; anything
    else is a ``RuleError("acl", ...)`` naming what is supported);
    ``rule_from_service(json, path_id, keep)``, ``service_json(rule)``,
    ``services_json(rules)``: Bamboo's shapes.
``servicerouter.rules.overlay`` (pure)
    ``overlay_rules(apps, rules) -> apps``: the rules as a pure input to
    derivation (a rule wins over the app's labels for the same port);
    ``rule_targets(apps, rules) -> {rule id: "ok" | "no such app" | "no such port"}``;
    ``split_groups(rules)``.
``servicerouter.rules.store``
    ``RuleStore`` protocol: ``rules() -> dict[str, Rule]``, ``put(rule, actor) -> Change``,
    ``delete(rule_id, actor) -> Change`` (``KeyError`` if absent), ``history(limit) ->
    list[Change]`` (newest first), ``health() -> dict`` (``backend``, ``connected``,
    ``last_error``, ``last_change``, ``rules``, ``invalid``), ``subscribe(callback)``,
    ``close()``; writes raise ``StoreError`` when the backend cannot take them.
    ``Change``: ``rule_id``, ``actor``, ``at`` (epoch s), ``old``/``new`` (rule JSON or
    None), ``node``, ``action``, ``to_json()``.
    ``FileRuleStore(path)``: the default, ``rules.json`` in the state dir.
``servicerouter.rules.zk``
    ``ZooKeeperRuleStore(hosts, path, auth=(user, password), cache_path=...)``;
    ``parse_zk_url("zk://h:p,h:p/path")``.
    ``OverlayCache``: the same, keeping each ruled app's copy while app and rules stay
    (the engine's ``Router.rules_overlay``; the live task path relies on it).
``servicerouter.rules.wiring``
    ``open_store(spec, state_dir, auth)`` for ``--rules-store`` / ``--rules-zk-auth``.
``servicerouter.serve.rules_api``
    ``RulesApi(store, apps=..., preview=...)``, hooked into the status server
    (``StatusServer(api=...)``): ``GET/POST /api/rules``, ``GET/PUT/DELETE
    /api/rules/{id}``, ``POST /api/rules/preview`` (a rule, ``{"rule": ...}`` or
    ``{"delete": id}`` -> ``{"diff": unified diff}``), ``GET /api/rules/history``;
    Bamboo's ``GET/POST /api/services``, ``GET/PUT/DELETE /api/services/{id}``,
    ``GET /api/state``.  Writes need ``--status-token``.

In the engine: ``Router.rules_store`` (None: labels only) is read by
``Router.build_model``; ``Router.derive_config(..., rules=...)`` previews other rules;
``LiveRouter.request_rebuild()`` (what a store change calls) syncs from the apps held,
without a Marathon fetch; ``servicerouter.engine.rules_link`` wires store, preview and
``/status`` (its ``rules`` block: the store's health plus ``unmatched`` rule ids).
``/status`` services carry ``port_index``, ``paths`` and ``rule`` (the id of the rule that
routes them, None for labels); a port's ``PortSettings.rule`` is its
``servicerouter.model.rule_values.RuleExtras``.
"""

from typing import Any

# Loaded when first asked for (PEP 562): every run opens a rule store, and a one-shot
# whose Marathon answer is unchanged (or whose state dir holds no rules) never parses
# a rule, so it should not load the rule model and the label parsers under it.
_LAZY = {
    "Rule": "servicerouter.rules.model",
    "RuleError": "servicerouter.rules.model",
    "parse_rule_id": "servicerouter.rules.model",
    "rule_from_json": "servicerouter.rules.model",
    "rule_id": "servicerouter.rules.model",
    "rule_to_json": "servicerouter.rules.model",
    "validate_rule": "servicerouter.rules.model",
    "Change": "servicerouter.rules.store",
    "FileRuleStore": "servicerouter.rules.store",
    "RuleStore": "servicerouter.rules.store",
    "StoreError": "servicerouter.rules.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Change",
    "FileRuleStore",
    "Rule",
    "RuleError",
    "RuleStore",
    "StoreError",
    "parse_rule_id",
    "rule_from_json",
    "rule_id",
    "rule_to_json",
    "validate_rule",
]
