"""``/_emulator/...``: the control API that lets another process (a benchmark driver, the
demo, a test running the emulator as a subprocess) drive the state over HTTP.

It is a thin HTTP face of the emulator's Python API (same methods, same events) and
needs no auth, and keeps working during a simulated outage.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from servicerouter.emulator.payloads import EmulatorError
from servicerouter.emulator.server import RequestHandler, allow, expect_dict, json_body
from servicerouter.emulator.store import AppStore
from servicerouter.emulator.tasks import check_tasks

if TYPE_CHECKING:
    from servicerouter.emulator.marathon import MarathonEmulator

TASKS_PATH = re.compile(r"^(?P<app>/.+)/tasks(?:/(?P<task>[^/]+)(?P<health>/health)?)?$")
"""``{app}/tasks``, ``{app}/tasks/{task}`` and ``{app}/tasks/{task}/health``."""


class ControlApi:
    """Routes ``/_emulator`` requests to the emulator's Python API."""

    def __init__(self, emulator: MarathonEmulator, store: AppStore) -> None:
        self._emulator = emulator
        self._store = store

    def route(self, handler: RequestHandler, method: str, path: str) -> None:
        """``/_emulator/...``: drive the state from another process (no auth)."""
        emulator = self._emulator
        rest = path[len("/_emulator"):].rstrip("/")
        try:
            if rest == "/apps" and method == "POST":
                handler.send_json(200, emulator.put_app(expect_dict(json_body(handler))))
            elif rest == "/apps" and method == "GET":
                handler.send_json(200, {"apps": emulator.apps()})
            elif rest == "/state" and method == "POST":
                body = json_body(handler)
                try:
                    emulator.load_state(body)
                except ValueError as exc:
                    raise EmulatorError(422, str(exc)) from None
                handler.send_json(200, {"apps": len(self._store.records)})
            elif rest == "/outage" and method == "POST":
                body = expect_dict(json_body(handler))
                emulator.set_unavailable(bool(body.get("unavailable", True)),
                                         int(body.get("status", 503)))
                unavailable, status = emulator.unavailable
                handler.send_json(200, {"unavailable": unavailable, "status": status})
            elif rest == "/events" and method == "POST":
                try:
                    emulator.emit(expect_dict(json_body(handler)))
                except ValueError as exc:
                    raise EmulatorError(422, str(exc)) from None
                handler.send_json(200, {})
            elif rest == "/auth/expire" and method == "POST":
                if emulator.dcos_login is None:
                    raise EmulatorError(409, "no service account is configured")
                handler.send_json(200, {"expired": emulator.dcos_login.expire_tokens()})
            elif rest == "/requests" and method == "GET":
                handler.send_json(200, {"requests": [list(r) for r in emulator.request_log]})
            elif rest.startswith("/apps/"):
                self._route_app(handler, method, rest[len("/apps"):])
            else:
                raise EmulatorError(404, f"Unknown control path: {method} {path}")
        except KeyError as exc:
            raise EmulatorError(404, str(exc.args[0]) if exc.args else "not found") from None

    def _route_app(self, handler: RequestHandler, method: str, rest: str) -> None:
        emulator = self._emulator
        if rest.endswith("/readiness") and method == "PUT":
            body = json_body(handler)
            results = body.get("readinessCheckResults") if isinstance(body, dict) else body
            try:
                emulator.set_readiness(rest[: -len("/readiness")], results)
            except ValueError as exc:
                raise EmulatorError(422, str(exc)) from None
            handler.send_json(200, {})
            return
        match = TASKS_PATH.match(rest)
        if match is None:
            if method == "DELETE":
                emulator.remove_app(rest)
                handler.send_json(200, {})
            elif method == "GET":
                handler.send_json(200, {"app": emulator.app(rest)})
            else:
                raise EmulatorError(405, "HTTP 405 Method Not Allowed")
            return
        app_id, task_id = match.group("app"), match.group("task")
        if task_id is None:
            if method == "POST":
                body = expect_dict(json_body(handler))
                if "host" not in body:
                    raise EmulatorError(422, "a task needs a host")
                try:
                    task = emulator.add_task(
                        app_id, str(body["host"]), list(body.get("ports") or []),
                        task_id=body.get("id") or body.get("task_id"),
                        state=body.get("state") or "TASK_RUNNING",
                        ip_addresses=body.get("ip_addresses") or body.get("ipAddresses"),
                        healthy=body.get("healthy"))
                except (TypeError, ValueError) as exc:
                    raise EmulatorError(422, str(exc)) from None
                handler.send_json(200, task)
            elif method == "PUT":
                body = json_body(handler)
                tasks = body.get("tasks") if isinstance(body, dict) else body
                check_tasks(tasks)
                emulator.set_tasks(app_id, tasks, quiet=bool(isinstance(body, dict)
                                                             and body.get("quiet")))
                handler.send_json(200, {})
            else:
                raise EmulatorError(405, "HTTP 405 Method Not Allowed")
        elif match.group("health"):
            allow(method, "POST", "PUT")
            body = expect_dict(json_body(handler))
            emulator.set_task_health(app_id, task_id, bool(body.get("alive", True)))
            handler.send_json(200, {})
        else:
            allow(method, "DELETE")
            emulator.kill_task(app_id, task_id)
            handler.send_json(200, {})
