"""Marathon's own HTTP API as the emulator serves it (``/ping``, ``/v2/...``), behind the
front door every request passes: request log, simulated outage, basic auth, errors.

The routes read the store's cached bodies and change state only through the
emulator's writers (``apps``, ``tasks``), so an HTTP change and a Python API change
emit the same events.
"""

from __future__ import annotations

import base64
import copy
import hmac
import logging
import re
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from servicerouter.emulator.apps import AppDefinitions
from servicerouter.emulator.control_api import TASKS_PATH, ControlApi
from servicerouter.emulator.dcos_login import LOGIN_PATH, DcosLogin
from servicerouter.emulator.events import EventBus, EventStreamSettings, serve_event_stream
from servicerouter.emulator.payloads import (
    EmulatorError,
    dumps,
    normalize_app_id,
    now_iso,
    task_state,
)
from servicerouter.emulator.server import RequestHandler, allow, json_body
from servicerouter.emulator.store import AppStore

if TYPE_CHECKING:
    from servicerouter.emulator.marathon import MarathonEmulator

log = logging.getLogger(__name__)

_REQUEST_LOG_LIMIT = 100_000
_EMBED_PREFIXES = ("group.apps.", "apps.", "app.")


def embeds(params: dict[str, list[str]]) -> set[str]:
    """``embed`` values without their prefix, as Marathon's InfoEmbedResolver reads them
    (``apps.tasks``, ``app.tasks`` and ``tasks`` are the same)."""
    found = set()
    for value in params.get("embed", []):
        for item in value.split(","):
            item = item.strip()
            prefix = next((p for p in _EMBED_PREFIXES if item.startswith(p)), "")
            found.add(item[len(prefix):])
    return found


_VERSIONS_PATH = re.compile(r"^(?P<app>/.+)/versions(?:/(?P<version>[^/]+))?$")


def _forced(params: dict[str, list[str]]) -> bool:
    """``?force=true``: override the lock a running deployment holds on an app."""
    return (params.get("force") or ["false"])[0] == "true"


class MarathonHttpApi:
    """Answers every request: ``/_emulator`` goes to the control API, the rest is
    Marathon's REST API (``/ping``, ``/v2/apps``, ``/v2/tasks``, ``/v2/events``...)."""

    def __init__(self, emulator: MarathonEmulator, store: AppStore, definitions: AppDefinitions,
                 bus: EventBus, control: ControlApi, *, host: str,
                 credentials: tuple[str, str] | None,
                 dcos_login: DcosLogin | None = None) -> None:
        self._emulator = emulator
        self._store = store
        self._definitions = definitions
        self._bus = bus
        self._control = control
        self._host = host
        self._credentials = credentials
        self._dcos_login = dcos_login

    def handle(self, handler: RequestHandler, method: str) -> None:
        """Entry point of every request: log, outage, auth, route, map errors."""
        self._log_request(method, handler.path)
        try:
            # Read the body first, whatever the answer, so keep-alive stays in sync.
            handler.body = handler.read_body()
        except (ValueError, OSError):
            handler.close_connection = True
            handler.send_json(400, {"message": "Unreadable request body"})
            return
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path == "/_emulator" or path.startswith("/_emulator/"):
                self._control.route(handler, method, path)
                return
            unavailable, status = self._emulator.unavailable
            if unavailable:
                if status <= 0:
                    handler.close_connection = True
                    try:
                        handler.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                handler.send_json(status, {"message": "Marathon is unavailable (emulated)"})
                return
            if self._dcos_login is not None:
                if path == LOGIN_PATH:
                    allow(method, "POST")
                    status, answer = self._dcos_login.login(json_body(handler))
                    cookie = ({"Set-Cookie": f"dcos-acs-auth-cookie={answer['token']}"}
                              if status == 200 else None)
                    handler.send_json(status, answer, headers=cookie)
                    return
                if not self._dcos_login.authorized(handler.headers.get("Authorization", "")):
                    handler.send_json(401, {"message": "invalid or expired token"},
                                      headers={"WWW-Authenticate": "acsjwt"})
                    return
            elif not self._authorized(handler):
                handler.send_json(401, {"message": "Invalid username or password."},
                                  headers={"WWW-Authenticate": 'Basic realm="Mesosphere"'})
                return
            self._route(handler, method, path, params)
        except EmulatorError as exc:
            handler.send_json(exc.status, exc.body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        except Exception as exc:  # noqa: BLE001 - answer 500 like a server would
            log.exception("error handling %s %s", method, handler.path)
            handler.close_connection = True
            try:
                handler.send_json(500, {"message": f"internal error: {exc}"})
            except OSError:
                pass

    def _log_request(self, method: str, target: str) -> None:
        request_log = self._emulator.request_log
        if len(request_log) >= _REQUEST_LOG_LIMIT:
            del request_log[: _REQUEST_LOG_LIMIT // 2]
        request_log.append((method, target))

    def _authorized(self, handler: RequestHandler) -> bool:
        if self._credentials is None:
            return True
        header = handler.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        want_user, want_password = self._credentials
        return (hmac.compare_digest(user.encode(), want_user.encode())
                & hmac.compare_digest(password.encode(), want_password.encode()))

    def _route(self, handler: RequestHandler, method: str, path: str,
               params: dict[str, list[str]]) -> None:
        path = path.rstrip("/") or "/"
        emulator = self._emulator
        if path == "/ping":
            allow(method, "GET", "HEAD")
            handler.send_body(200, b"pong", "text/plain; charset=utf-8")
        elif path == "/v2/apps":
            self._route_apps(handler, method, params)
        elif path.startswith("/v2/apps/"):
            self._route_app(handler, method, path[len("/v2/apps"):], params)
        elif path == "/v2/tasks":
            allow(method, "GET", "HEAD")
            handler.send_body(200, self._tasks_for(params))
        elif path == "/v2/tasks/delete":
            allow(method, "POST")
            body = json_body(handler)
            ids = body.get("ids") if isinstance(body, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise EmulatorError(422, "Object is not valid",
                                    details=[{"path": "/ids", "errors": ["error.expected.jsarray"]}])
            scale = (params.get("scale") or ["false"])[0] == "true"
            try:
                handler.send_json(200, self._definitions.kill_tasks(ids, scale=scale))
            except KeyError as exc:
                raise EmulatorError(404, str(exc.args[0])) from None
        elif path == "/v2/eventSubscriptions":
            self._route_subscriptions(handler, method, params)
        elif path == "/v2/events":
            allow(method, "GET")
            settings = EventStreamSettings(
                keepalive_interval=emulator.keepalive_interval,
                max_outstanding_events=emulator.max_outstanding_events,
                state_lock=self._store.lock, emit=emulator.emit,
                serving=lambda: emulator.serving)
            serve_event_stream(handler, params, self._bus, settings)
        elif path == "/v2/deployments":
            allow(method, "GET", "HEAD")
            handler.send_json(200, self._definitions.deployments.listing())
        elif path.startswith("/v2/deployments/"):
            # Marathon rolls a cancelled deployment back unless ?force=true; here it
            # always stops where it is (the force form), which zdd's rollback never needs.
            allow(method, "DELETE")
            if not self._definitions.deployments.cancel(path[len("/v2/deployments/"):]):
                raise EmulatorError(404, "DeploymentPlan does not exist")
            handler.send_json(202, {})
        elif path == "/v2/leader":
            allow(method, "GET", "HEAD")
            handler.send_json(200, {"leader": f"{self._host}:{emulator.port}"})
        elif path == "/v2/info":
            allow(method, "GET", "HEAD")
            handler.send_json(200, {
                "name": "marathon", "version": "1.5.0-emulator",
                "leader": f"{self._host}:{emulator.port}",
                "frameworkId": "marathon-emulator", "elected": True,
                "event_subscriber": {"type": "http_callback",
                                     "http_endpoints": emulator.subscriptions},
            })
        else:
            raise EmulatorError(404, f"Unknown path: {path}")

    def _tasks_for(self, params: dict[str, list[str]]) -> bytes:
        status = {s.lower() for v in params.get("status", []) for s in v.split(",") if s}
        if not status:
            return self._store.tasks_body()
        wanted = {f"TASK_{s.upper()}" for s in status}
        with self._store.lock:
            tasks = [t for i in self._store.ids() for t in self._store.records[i].task_entries()
                     if task_state(t) in wanted]
            return dumps({"tasks": tasks})

    def _route_apps(self, handler: RequestHandler, method: str,
                    params: dict[str, list[str]]) -> None:
        if method in ("GET", "HEAD"):
            embed = embeds(params)
            embed_tasks = bool(embed & {"tasks", "failures"})
            embed_readiness = "readiness" in embed
            id_filter = (params.get("id") or [""])[0]
            if not id_filter:
                body = self._store.apps_body(embed_tasks, embed_readiness)
                if self._emulator.apps_answer_delay > 0:  # made now, sent late: see there
                    time.sleep(self._emulator.apps_answer_delay)
                handler.send_body(200, body)
                return
            with self._store.lock:
                parts = [self._store.records[i].fragment(embed_tasks, embed_readiness)
                         for i in self._store.ids() if id_filter in i]
            handler.send_body(200, b'{"apps":[' + b",".join(parts) + b"]}")
        elif method == "POST":
            app = json_body(handler)
            if isinstance(app, dict) and app.get("id"):
                with self._store.lock:
                    if normalize_app_id(app["id"]) in self._store.records:
                        raise EmulatorError(
                            409, f"An app with id [{normalize_app_id(app['id'])}] already exists.")
                    _, stored, result = self._definitions.upsert(
                        app, partial=False, client_ip=handler.client_address[0],
                        uri="/v2/apps")
            else:
                self._definitions.upsert(app, partial=False, client_ip="", uri="")  # raises 422
                return
            stored["deployments"] = [{"id": result["deploymentId"]}]
            handler.send_json(201, stored,
                              headers={"Location": f"{self._emulator.url}/v2/apps{stored['id']}"})
        else:
            raise EmulatorError(405, "HTTP 405 Method Not Allowed")

    def _route_app(self, handler: RequestHandler, method: str, rest: str,
                   params: dict[str, list[str]]) -> None:
        """``/v2/apps/{id}``, ``/v2/apps/{id}/tasks`` and ``/v2/apps/{id}/tasks/{taskId}``."""
        match = TASKS_PATH.match(rest)
        if match and match.group("health") is None:
            with self._store.lock:
                record = self._store.records.get(normalize_app_id(match.group("app")))
            if record is not None:
                task_id = match.group("task")
                if task_id is None:
                    allow(method, "GET", "HEAD")
                    with self._store.lock:
                        tasks = record.task_entries()
                    handler.send_json(200, {"tasks": tasks})
                    return
                allow(method, "DELETE")
                try:
                    with self._store.lock:
                        task = copy.deepcopy(record.tasks[task_id])
                    self._emulator.kill_task(record.app["id"], task_id)
                except KeyError:
                    raise EmulatorError(404, f"Task '{task_id}' does not exist") from None
                handler.send_json(200, {"task": task})
                return
        versions = _VERSIONS_PATH.match(rest)
        if versions is not None:
            allow(method, "GET", "HEAD")
            handler.send_json(200, self._versions(normalize_app_id(versions.group("app")),
                                                  versions.group("version")))
            return
        app_id = normalize_app_id(rest)
        if method in ("GET", "HEAD"):
            # Marathon always embeds one app's tasks (for compatibility); readiness
            # only when asked for.
            readiness = "readiness" in embeds(params)
            with self._store.lock:
                record = self._store.records.get(app_id)
                body = dumps({"app": record.document(True, readiness)}) if record else None
            if body is None:
                raise EmulatorError(404, f"App '{app_id}' does not exist")
            handler.send_body(200, body)
        elif method in ("PUT", "PATCH"):
            app = json_body(handler)
            if not isinstance(app, dict):
                self._definitions.upsert(app, partial=True, client_ip="", uri="")  # raises 422
                return
            app = {**app, "id": app_id}
            partial = method == "PATCH" or (params.get("partialUpdate") or ["true"])[0] != "false"
            created, stored, result = self._definitions.upsert(
                app, partial=partial, client_ip=handler.client_address[0],
                uri=f"/v2/apps{app_id}", force=_forced(params))
            headers = {"Location": f"{self._emulator.url}/v2/apps{app_id}"} if created else None
            handler.send_json(201 if created else 200, result, headers=headers)
        elif method == "DELETE":
            try:
                result = self._definitions.delete(app_id, force=_forced(params))
            except KeyError:
                raise EmulatorError(404, f"App '{app_id}' does not exist") from None
            handler.send_json(200, result)
        else:
            raise EmulatorError(405, "HTTP 405 Method Not Allowed")

    def _versions(self, app_id: str, version: str | None) -> dict[str, Any]:
        """``/v2/apps/{id}/versions`` (newest first) or one version's definition."""
        with self._store.lock:
            record = self._store.records.get(app_id)
            if record is None:
                raise EmulatorError(404, f"App '{app_id}' does not exist")
            history = record.versions or [record.app]  # loaded state: its current version
            if version is None:
                return {"versions": [v.get("version") for v in reversed(history)]}
            for definition in history:
                if definition.get("version") == version:
                    return {k: v for k, v in copy.deepcopy(definition).items()
                            if k != "deployments"}
        raise EmulatorError(404, f"App '{app_id}' does not exist in version {version}")

    def _route_subscriptions(self, handler: RequestHandler, method: str,
                             params: dict[str, list[str]]) -> None:
        if method in ("GET", "HEAD"):
            handler.send_json(200, {"callbackUrls": self._emulator.subscriptions})
            return
        allow(method, "POST", "DELETE")
        url = (params.get("callbackUrl") or [""])[0]
        if not url:
            raise EmulatorError(400, "callbackUrl is required")
        client_ip = handler.client_address[0]
        if method == "POST":
            self._bus.subscribe(url)
            event_type = "subscribe_event"
        else:
            self._bus.unsubscribe(url)
            event_type = "unsubscribe_event"
        event = {"callbackUrl": url, "clientIp": client_ip, "eventType": event_type,
                 "timestamp": now_iso()}
        self._emulator.emit(event)
        handler.send_json(200, event)
