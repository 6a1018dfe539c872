"""The rules JSON API on the ``--status-listen`` server, and Bamboo's API paths.

``/api/rules`` (ours) and ``/api/services`` + ``/api/state`` (Bamboo's paths and
JSON shapes, so a Bamboo user's scripts keep working).  Every write needs the
admin token (``--status-token``, ``Authorization: Bearer``), even on loopback:
any local user or a web page in a browser can reach 127.0.0.1.  Reads follow
the status endpoint (a token is required whenever one is configured, and one
must be configured off loopback).  A write is validated before it reaches the
store: a bad rule gets 400 with the field and the reason, and changes nothing.

The handler thread never touches HAProxy: a stored change notifies the engine,
which syncs on its own thread (the store's subscribers only schedule work).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from servicerouter.rules.bamboo import rule_from_service, service_json, services_json
from servicerouter.rules.model import Rule, RuleError, parse_rule_id, rule_to_json, validate_rule
from servicerouter.rules.overlay import rule_targets
from servicerouter.rules.store import RuleStore, StoreError, clean_actor

log = logging.getLogger("servicerouter.rules.api")

MAX_BODY = 64 * 1024
OUR_PATHS = ("/api/rules", "/api/services", "/api/state")
JSON_TYPE = "application/json"
# Preview: the unified diff of the config the rules would give (engine-made, nothing applied).
Preview = Callable[[Mapping[str, Rule]], str]


@dataclass
class RulesApi:
    """What the API needs from the router: the store, the apps, a config preview."""

    store: RuleStore
    apps: Callable[[], list[Any]] = list  # Marathon's apps as last fetched
    preview: Preview | None = None

    def handle(self, handler: Any, method: str) -> bool:
        """Answer ``handler``'s request if it is an API path; False: not ours."""
        raw_path, _, query = handler.path.partition("?")
        if not raw_path.startswith(OUR_PATHS):  # /api/backends/... is another module's
            return False
        try:
            self._route(handler, method, raw_path, parse_qs(query))
        except _Answer as answer:
            _send_json(handler, answer.status, answer.body)
        except Exception:  # an API bug must never take the router down
            log.exception("rules API failed on %s %s", method, raw_path)
            _send_json(handler, 500, {"error": "internal error"})
        return True

    # ------------------------------------------------------------------ routing

    def _route(self, handler: Any, method: str, path: str, query: dict[str, list[str]]) -> None:
        if method != "GET":
            _require_token(handler)
        if path == "/api/rules":
            if method == "GET":
                raise _Answer(200, self._list())
            if method == "POST":
                raise _Answer(*self._create(handler))
        elif path == "/api/rules/preview" and method == "POST":
            raise _Answer(200, self._preview(_body(handler)))
        elif path == "/api/rules/history" and method == "GET":
            raise _Answer(200, self._history(query))
        elif path.startswith("/api/rules/"):
            rule_id = unquote(path[len("/api/rules/"):])
            if method == "GET":
                rule = self.store.rules().get(rule_id)
                if rule is None:
                    raise _Answer(404, {"error": f"no rule {rule_id}"})
                raise _Answer(200, {"rule": rule_to_json(rule)})
            if method == "PUT":
                raise _Answer(200, self._put(handler, rule_id))
            if method == "DELETE":
                raise _Answer(200, self._delete(handler, rule_id))
        elif path.startswith("/api/services") or path == "/api/state":
            self._bamboo(handler, method, path)
            return
        raise _Answer(404 if method == "GET" else 405,
                      {"error": f"no {method} {path}: see /api/rules, /api/rules/{{id}}, "
                                "/api/rules/preview, /api/rules/history, /api/services, "
                                "/api/state"})  # (/api/rulesX and the like)

    # ------------------------------------------------------------------ ours

    def _list(self) -> dict[str, Any]:
        rules = self.store.rules()
        standing = rule_targets(self.apps(), rules)
        return {"rules": [dict(rule_to_json(r), standing=standing.get(k, "ok"))
                          for k, r in sorted(rules.items())],
                "store": self.store.health()}

    def _create(self, handler: Any) -> tuple[int, dict[str, Any]]:
        rule = _validated(_body(handler))
        if rule.id in self.store.rules():
            return 409, {"error": f"rule {rule.id} exists: PUT /api/rules/{rule.id} replaces it",
                         "field": "id"}
        return 201, self._store_put(handler, rule)

    def _put(self, handler: Any, rule_id: str) -> dict[str, Any]:
        data = _body(handler)
        try:
            app_id, index = parse_rule_id(rule_id)
        except RuleError as err:
            raise _Answer(400, err.to_json()) from None
        if not isinstance(data, Mapping):
            raise _Answer(400, {"field": "rule", "error": "must be a JSON object"})
        if "app_id" not in data and "id" not in data:
            data = {**data, "app_id": app_id, "port_index": index}
        rule = _validated(data)
        if rule.id != f"{app_id}:{index}":
            raise _Answer(400, {"field": "id", "error": f"the body names {rule.id}, the path "
                                f"{app_id}:{index}"})
        return self._store_put(handler, rule)

    def _store_put(self, handler: Any, rule: Rule) -> dict[str, Any]:
        try:
            change = self.store.put(rule, _actor(handler))
        except StoreError as err:
            raise _Answer(503, {"error": str(err)}) from None
        return {"rule": rule_to_json(rule), "change": change.to_json()}

    def _delete(self, handler: Any, rule_id: str) -> dict[str, Any]:
        _body(handler, optional=True)
        try:
            change = self.store.delete(rule_id, _actor(handler))
        except KeyError:
            raise _Answer(404, {"error": f"no rule {rule_id}"}) from None
        except StoreError as err:
            raise _Answer(503, {"error": str(err)}) from None
        return {"deleted": rule_id, "change": change.to_json()}

    def _preview(self, data: Any) -> dict[str, Any]:
        if self.preview is None:
            raise _Answer(503, {"error": "no config to preview against yet"})
        rules = self.store.rules()
        if isinstance(data, Mapping) and set(data) == {"delete"}:
            rule_id = data["delete"]
            if not isinstance(rule_id, str) or rule_id not in rules:
                raise _Answer(404, {"error": f"no rule {rule_id!s:.200}"})
            del rules[rule_id]
            subject: dict[str, Any] = {"delete": rule_id}
        else:
            rule = _validated(data.get("rule") if isinstance(data, Mapping)
                              and set(data) == {"rule"} else data)
            rules[rule.id] = rule
            subject = {"rule": rule_to_json(rule)}
        diff = self.preview(rules)
        return {**subject, "diff": diff, "changes_config": bool(diff)}

    def _history(self, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = max(0, min(500, int(query.get("limit", ["100"])[0])))
        except ValueError:
            raise _Answer(400, {"field": "limit", "error": "must be an integer"}) from None
        try:
            return {"changes": [c.to_json() for c in self.store.history(limit)]}
        except StoreError as err:
            raise _Answer(503, {"error": str(err)}) from None

    # ------------------------------------------------------------------ Bamboo

    def _bamboo(self, handler: Any, method: str, path: str) -> None:
        if path == "/api/state" and method == "GET":
            raise _Answer(200, {"Apps": [_bamboo_app(a) for a in self.apps()
                                         if isinstance(a, Mapping)],
                                "Services": services_json(self.store.rules())})
        if path == "/api/services":
            if method == "GET":
                raise _Answer(200, services_json(self.store.rules()))
            if method == "POST":
                raise _Answer(200, self._bamboo_put(handler, None))
        elif path.startswith("/api/services/"):
            app_id = unquote(path[len("/api/services/"):])
            app_id = app_id if app_id.startswith("/") else "/" + app_id
            if method == "PUT":
                raise _Answer(200, self._bamboo_put(handler, app_id))
            if method == "DELETE":
                self._delete(handler, f"{app_id}:0")
                raise _Answer(200, {})
            if method == "GET":
                rule = self.store.rules().get(f"{app_id}:0")
                if rule is None:
                    raise _Answer(404, {"error": f"no service {app_id}"})
                raise _Answer(200, service_json(rule))
        raise _Answer(405, {"error": f"no {method} {path} in Bamboo's API"})

    def _bamboo_put(self, handler: Any, path_id: str | None) -> dict[str, Any]:
        data = _body(handler)
        app_hint = path_id
        if isinstance(data, Mapping) and path_id is None:
            app_hint = next((data[k] for k in ("id", "Id", "ID") if isinstance(data.get(k), str)),
                            None)
        keep = None
        if app_hint:
            app_hint = app_hint if app_hint.startswith("/") else "/" + app_hint
            keep = self.store.rules().get(f"{app_hint}:0")
        try:
            rule = rule_from_service(data, path_id, keep)
        except RuleError as err:
            raise _Answer(400, err.to_json()) from None
        self._store_put(handler, rule)
        return service_json(rule)


class _Answer(Exception):
    """An answer decided deep in a handler: status and JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _send_json(handler: Any, status: int, body: Any) -> None:
    text = json.dumps(body, sort_keys=True, default=str) + "\n"
    if status >= 400:
        handler.close_connection = handler.close_connection or status in (401, 403, 413)
    handler.send_text(status, text, JSON_TYPE)


def _require_token(handler: Any) -> None:
    server = handler.server
    if not server.token:
        _drain(handler)
        raise _Answer(403, {"error": "changing rules needs --status-token"})
    if not handler._authorized():
        _drain(handler)
        raise _Answer(401, {"error": "token required"})


def _drain(handler: Any) -> None:
    handler.close_connection = True


def _body(handler: Any, optional: bool = False) -> Any:
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > MAX_BODY:
        handler.close_connection = True
        raise _Answer(413, {"error": f"body must be at most {MAX_BODY} bytes"})
    data = handler.rfile.read(length) if length else b""
    if optional and not data:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Answer(400, {"field": "body", "error": "Unable to decode JSON request"}) from None


def _validated(data: Any) -> Rule:
    try:
        return validate_rule(data)
    except RuleError as err:
        raise _Answer(400, err.to_json()) from None


def _actor(handler: Any) -> str:
    """Who made a change: the X-Actor header the client sent (else "api"), and from where."""
    named = clean_actor(handler.headers.get("X-Actor") or "api")
    return f"{named} ({handler.client_address[0]})"


def _bamboo_app(app: Mapping[str, Any]) -> dict[str, Any]:
    """One app in Bamboo's /api/state shape (the fields its templates read)."""
    app_id = str(app.get("id", ""))
    checks = app.get("healthChecks") if isinstance(app.get("healthChecks"), list) else []
    http_check = next((c for c in checks if isinstance(c, Mapping)
                       and str(c.get("protocol", "")).upper() == "HTTP"), None)
    tasks = app.get("tasks") if isinstance(app.get("tasks"), list) else []
    ports = app.get("ports") if isinstance(app.get("ports"), list) else [
        d.get("port") for d in app.get("portDefinitions") or [] if isinstance(d, Mapping)]
    return {
        "Id": app_id,
        "EscapedId": app_id.replace("/", "::"),
        "HealthCheckPath": (http_check or {}).get("path", ""),
        "Tasks": [{"Id": t.get("id", ""), "Host": t.get("host", ""),
                   "Port": (t.get("ports") or [0])[0], "Ports": t.get("ports") or []}
                  for t in tasks if isinstance(t, Mapping)],
        "ServicePort": ports[0] if ports else 0,
        "ServicePorts": ports,
        "Env": app.get("env") if isinstance(app.get("env"), Mapping) else {},
        "Labels": app.get("labels") if isinstance(app.get("labels"), Mapping) else {},
    }
