"""The live engine and the operator rules: change -> sync, preview, /status block.

A store change (this node's API, or another node's through ZooKeeper) only
asks the loop for a rebuild from the apps it holds (no Marathon fetch); the
sync itself runs on the loop thread as any other.  A rule that only changes
hosts/paths of existing backends becomes map-entry changes, which the apply
step sends through the Runtime API with no reload (servicerouter.render.routing).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from servicerouter.engine import removal_guard
from servicerouter.rules.model import Rule
from servicerouter.rules.overlay import rule_targets
from servicerouter.rules.store import RuleStore

if TYPE_CHECKING:
    from servicerouter.engine.live import LiveRouter
    from servicerouter.serve.rules_api import RulesApi


def held_apps(live: LiveRouter) -> list[Any]:
    """Marathon's apps as the live engine last fetched them."""
    apps = live._apps
    return list(apps.values()) if apps is not None else []


def preview_diff(live: LiveRouter, rules: Mapping[str, Rule]) -> str:
    """The unified diff from the serving config to the one ``rules`` would give.

    The engine's own pipeline (model, certificates, templates, render) on the
    apps it holds, under the sync lock; nothing is written, validated or applied.
    """
    with live._sync_lock:
        apps = live._apps
        if apps is None:
            raise RuntimeError("no apps fetched yet")
        previous = (removal_guard.live_previous(live)
                    if live.router.settings.health_check else None)
        derived = live.router.full_pass(apps.values(), previous, live=True,
                                        keep=live._apply_quarantine, rules=rules)
        before = live._applied_text or ""
    if derived.rendered is None:
        raise RuntimeError(derived.error or "the config cannot be rendered")
    after = derived.rendered.text
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        "serving", "with the change"))


def attach_rules(live: LiveRouter, store: RuleStore) -> RulesApi:
    """Sync on every rule change; the API object for the status server."""
    from servicerouter.serve.rules_api import RulesApi

    store.subscribe(live.request_rebuild)
    return RulesApi(store, apps=lambda: held_apps(live),
                    preview=lambda rules: preview_diff(live, rules))


def rules_status(live: LiveRouter, store: RuleStore) -> dict[str, Any]:
    """The /status block: the store's health and rules whose app or port is missing."""
    rules = store.rules()
    standing = rule_targets(held_apps(live), rules)
    return {**store.health(),
            "unmatched": {rule_id: why for rule_id, why in sorted(standing.items())
                          if why != "ok"}}
