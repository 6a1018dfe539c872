"""Where rules live: the store protocol, the change record, and the file store.

The engine reads rules through :class:`RuleStore` only, so one node (a file in
the state directory, :class:`FileRuleStore`) and a cluster (ZooKeeper,
:class:`servicerouter.rules.zk.ZooKeeperRuleStore`) look the same to it.  A
store validates what it reads back (a file or znode may have been edited by
hand): a rule that does not validate is left out and named in ``health()``,
never handed to the engine.  Subscribers are told after every change, made
here or (ZooKeeper) on another node; they must only schedule work.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the rule model is loaded once a rule is read or written (see read_rules)
    from servicerouter.rules.model import Rule

log = logging.getLogger("servicerouter.rules")

RULES_FILE = "rules.json"
HISTORY_LIMIT = 500
_ACTOR_MAX = 128


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded change: who made it, when, and the rule before and after (None: absent)."""

    rule_id: str
    actor: str
    at: float
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    node: str = ""  # the router that made it (its host name)

    @property
    def action(self) -> str:
        return "create" if self.old is None else "delete" if self.new is None else "update"

    def to_json(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "actor": self.actor, "at": self.at,
                "action": self.action, "old": self.old, "new": self.new, "node": self.node}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Change:
        return Change(str(data["rule_id"]), str(data.get("actor", "")), float(data["at"]),
                      data.get("old"), data.get("new"), str(data.get("node", "")))


class RuleStore(Protocol):
    """What the engine, the API and the dashboard use of a rule store."""

    def rules(self) -> dict[str, Rule]:
        """The rules to route by now (the last known ones while a backend is away)."""

    def put(self, rule: Rule, actor: str) -> Change:
        """Create or replace ``rule``; raises :class:`StoreError` when it cannot be stored."""

    def delete(self, rule_id: str, actor: str) -> Change:
        """Remove a rule; :class:`KeyError` when there is none."""

    def history(self, limit: int = 100) -> list[Change]:
        """The last ``limit`` changes, newest first."""

    def health(self) -> dict[str, Any]:
        """backend, connected, last_error, last_change (and the backend's own facts)."""

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments, must not block) after every change."""

    def close(self) -> None:
        """Stop watching and release connections."""


class StoreError(RuntimeError):
    """A change the store could not make (the backend is away or refused it)."""


def clean_actor(actor: str) -> str:
    """An actor name safe to record and show: printable, bounded."""
    text = "".join(ch for ch in str(actor) if ch.isprintable())[:_ACTOR_MAX]
    return text or "unknown"


def read_rules(raw: Mapping[str, Any], invalid: dict[str, str]) -> dict[str, Rule]:
    """Rules from stored JSON, each validated; the bad ones named in ``invalid``.

    The rule model (and the label parsers under it) is imported here, not with the
    store: every run opens a store, most runs of most routers have no rule to read.
    """
    from servicerouter.rules.model import RuleError, rule_from_json

    rules: dict[str, Rule] = {}
    for key, data in raw.items():
        try:
            rule = rule_from_json(data)
        except RuleError as err:
            invalid[str(key)[:200]] = str(err)
            continue
        rules[rule.id] = rule
    return rules


@dataclass
class _Listeners:
    callbacks: list[Callable[[], None]] = field(default_factory=list)

    def notify(self) -> None:
        for callback in list(self.callbacks):
            try:
                callback()
            except Exception:  # a subscriber's bug must not stop the others
                log.exception("rule change subscriber failed")


class FileRuleStore:
    """Rules and their history in one JSON file (default: ``rules.json`` in the state dir).

    Written atomically (temp file, fsync, rename) on every change, read once at
    start; one process owns the file (the router that serves the API).
    """

    backend = "file"

    def __init__(self, path: str, node: str = "") -> None:
        self.path = path
        self.node = node
        self._lock = threading.Lock()
        self._listeners = _Listeners()
        self._invalid: dict[str, str] = {}
        self._last_error: str | None = None
        self._rules, self._history = self._load()

    def _load(self) -> tuple[dict[str, Rule], list[Change]]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}, []
        except (OSError, ValueError) as err:
            self._last_error = f"cannot read {self.path}: {err}"
            log.error("rules: %s (routing without operator rules until it is fixed)",
                      self._last_error)
            return {}, []
        if not isinstance(data, dict) or not isinstance(data.get("rules"), dict):
            self._last_error = f"{self.path} is not a rules file"
            return {}, []
        history = []
        for item in data.get("history", []) if isinstance(data.get("history"), list) else []:
            try:
                history.append(Change.from_json(item))
            except (KeyError, TypeError, ValueError):
                continue
        return read_rules(data["rules"], self._invalid), history

    def _save(self, rules: Mapping[str, Rule], history: list[Change]) -> None:
        from servicerouter.rules.model import rule_to_json
        from servicerouter.tls.bundles import write_private_file

        text = json.dumps({"version": 1,
                           "rules": {k: rule_to_json(r) for k, r in sorted(rules.items())},
                           "history": [c.to_json() for c in history[-HISTORY_LIMIT:]]},
                          indent=1, sort_keys=True)
        try:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            write_private_file(self.path, text + "\n")
        except OSError as err:
            self._last_error = f"cannot write {self.path}: {err.strerror or err}"
            raise StoreError(self._last_error) from err
        self._last_error = None

    def rules(self) -> dict[str, Rule]:
        with self._lock:
            return dict(self._rules)

    def _change(self, rule_id: str, new: Rule | None, actor: str) -> Change:
        from servicerouter.rules.model import rule_to_json

        with self._lock:
            old = self._rules.get(rule_id)
            if new is None and old is None:
                raise KeyError(rule_id)
            change = Change(rule_id, clean_actor(actor), time.time(),
                            rule_to_json(old) if old else None,
                            rule_to_json(new) if new else None, self.node)
            rules = dict(self._rules)
            if new is None:
                del rules[rule_id]
            else:
                rules[rule_id] = new
            history = (self._history + [change])[-HISTORY_LIMIT:]
            self._save(rules, history)  # raises: nothing changed
            self._rules, self._history = rules, history
        self._listeners.notify()
        return change

    def put(self, rule: Rule, actor: str) -> Change:
        return self._change(rule.id, rule, actor)

    def delete(self, rule_id: str, actor: str) -> Change:
        return self._change(rule_id, None, actor)

    def history(self, limit: int = 100) -> list[Change]:
        with self._lock:
            return list(reversed(self._history[-limit:])) if limit > 0 else []

    def health(self) -> dict[str, Any]:
        with self._lock:
            last = self._history[-1].at if self._history else None
            return {"backend": self.backend, "path": self.path, "connected": True,
                    "last_error": self._last_error, "last_change": last,
                    "rules": len(self._rules), "invalid": dict(self._invalid)}

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._listeners.callbacks.append(callback)

    def close(self) -> None:
        pass
