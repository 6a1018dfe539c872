"""The rule editor's backend: the rules package's store, validator and preview.

The dashboard's forms and the JSON API (:mod:`servicerouter.serve.rules_api`)
share one store, one validator (``validate_rule``: a bad rule is refused
before it is stored, with the field at fault) and one preview (the engine's
config diff).  This adapter gives the editor that, with errors it can show
next to a field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from servicerouter.rules.model import rule_to_json, validate_rule
from servicerouter.rules.overlay import rule_targets
from servicerouter.rules.store import StoreError
from servicerouter.serve.dashboard_editor import FieldError

if TYPE_CHECKING:
    from servicerouter.serve.rules_api import RulesApi


class StoreBackend:
    """:class:`~servicerouter.serve.dashboard_editor.RuleBackend` over a RulesApi's parts."""

    def __init__(self, api: RulesApi) -> None:
        self.api = api
        self.store = api.store

    def rules(self) -> list[dict[str, Any]]:
        """Every rule as JSON, with ``standing``: ok, no such app, no such port."""
        rules = self.store.rules()
        standing = rule_targets(self.api.apps(), rules)
        return [dict(rule_to_json(rule), standing=standing.get(rule_id, "ok"))
                for rule_id, rule in sorted(rules.items())]

    def history(self, limit: int) -> list[dict[str, Any]]:
        try:
            return [change.to_json() for change in self.store.history(limit)]
        except StoreError:
            return []  # the page still shows the rules; /status names the store's trouble

    def preview(self, data: Mapping[str, Any] | None, rule_id: str) -> str:
        """The config diff of saving ``data`` (or deleting ``rule_id``); RuleError if bad."""
        rules = self.store.rules()
        if data is None:
            rules.pop(rule_id, None)
        else:
            rule = validate_rule(data)
            rules[rule.id] = rule
        if self.api.preview is None:
            raise FieldError("preview", "no config to preview against yet")
        try:
            return self.api.preview(rules)
        except RuntimeError as err:  # no apps fetched yet, or the config cannot render
            raise FieldError("preview", str(err)) from None

    def save(self, data: Mapping[str, Any], actor: str) -> str:
        rule = validate_rule(data)
        try:
            self.store.put(rule, actor)
        except StoreError as err:
            raise FieldError("store", str(err)) from None
        return rule.id

    def delete(self, rule_id: str, actor: str) -> bool:
        try:
            self.store.delete(rule_id, actor)
        except KeyError:
            return False
        except StoreError as err:
            raise FieldError("store", str(err)) from None
        return True


__all__ = ["StoreBackend"]
