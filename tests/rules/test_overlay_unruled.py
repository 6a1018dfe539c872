"""OverlayCache without rules: the apps as they are, a forged rule key stripped.

A Marathon app could carry servicerouter's own rule key (``_servicerouterRules``)
to claim a header match or a traffic split no operator gave it; the overlay
strips it whether or not any rule exists.  With no rule at all (the usual
one-shot) the cache takes a short path per app; these tests hold it to what
:func:`overlay_rules` returns.
"""

from __future__ import annotations

from typing import Any

from servicerouter.model.rule_values import RULE_KEY
from servicerouter.rules.overlay import OverlayCache, overlay_rules

APPS: list[Any] = [
    {"id": "/plain", "labels": {"HAPROXY_GROUP": "external"}},
    {"id": "/forged", "labels": {}, RULE_KEY: {"0": {"id": "x", "split": [["/a", 0, 100]]}}},
    "not an app",
    {"no": "id"},
]


def test_without_rules_apps_are_kept_and_forged_rule_keys_stripped() -> None:
    out = OverlayCache().apply(APPS, {})
    assert out == overlay_rules(APPS, {})
    assert out[0] is APPS[0] and out[2] is APPS[2] and out[3] is APPS[3]
    assert RULE_KEY not in out[1] and out[1] == {"id": "/forged", "labels": {}}
    assert RULE_KEY in APPS[1]  # Marathon's document itself is not changed


def test_a_later_apply_without_rules_forgets_earlier_copies() -> None:
    cache = OverlayCache()
    cache.apply(APPS, {})
    assert cache.overlaid(APPS[1]) == {"id": "/forged", "labels": {}}
    assert not cache.has_rules("/plain")
