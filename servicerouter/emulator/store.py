"""The emulator's state: every app with its tasks, and the response bodies built from them.

Why it is shaped this way: reads must stay cheap at 10,000 apps / 100,000 tasks, so every
app keeps its own JSON fragments (with and without tasks, and its ``/v2/tasks``
entries), the full bodies are joined from those fragments and cached until the next
state change, and a change re-serializes only the app it touched. Writers (``apps``,
``tasks``) hold :attr:`AppStore.lock` and call :meth:`AppStore.changed`.
"""

from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from servicerouter.emulator.payloads import (
    RUNNING_STATES,
    STAGED_STATES,
    dumps,
    normalize_app_id,
    readiness_list,
    service_ports,
    task_id_prefix,
    task_state,
)


@dataclass
class AppRecord:
    """One app: its definition (without tasks), its tasks by id, and cached JSON."""

    app: dict[str, Any]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # readinessCheckResults: state, not definition; served only when asked for.
    readiness: list[dict[str, Any]] = field(default_factory=list)
    # Every definition the app had, oldest first (``/v2/apps/{id}/versions``).
    versions: list[dict[str, Any]] = field(default_factory=list)
    _fragments: dict[tuple[bool, bool], bytes] = field(default_factory=dict)
    _tasks_json: bytes | None = None

    def invalidate(self) -> None:
        self._fragments.clear()
        self._tasks_json = None

    def _with_counts(self) -> dict[str, Any]:
        staged = running = healthy = unhealthy = 0
        for task in self.tasks.values():
            state = task_state(task)
            running += state in RUNNING_STATES
            staged += state in STAGED_STATES
            results = task.get("healthCheckResults") or []
            if results:
                if all(r.get("alive") for r in results):
                    healthy += 1
                else:
                    unhealthy += 1
        out = dict(self.app)
        out.update(tasksStaged=staged, tasksRunning=running, tasksHealthy=healthy,
                   tasksUnhealthy=unhealthy)
        out.setdefault("deployments", [])
        return out

    def document(self, embed_tasks: bool, embed_readiness: bool = False) -> dict[str, Any]:
        """The app as Marathon shows it (shares nested objects: copy before mutating).

        ``readinessCheckResults`` only with ``embed_readiness`` (Marathon's
        ``embed=apps.readiness`` / ``app.readiness``), then always, ``[]`` when none.
        """
        out = self._with_counts()
        if embed_tasks:
            out["tasks"] = list(self.tasks.values())
        if embed_readiness:
            out["readinessCheckResults"] = list(self.readiness)
        return out

    def fragment(self, embed_tasks: bool, embed_readiness: bool = False) -> bytes:
        """The app's JSON, cached until the record changes."""
        key = (embed_tasks, embed_readiness)
        body = self._fragments.get(key)
        if body is None:
            body = self._fragments[key] = dumps(self.document(embed_tasks, embed_readiness))
        return body

    def task_entries(self) -> list[dict[str, Any]]:
        """Tasks as ``/v2/tasks`` lists them: with ``appId`` and the app's ``servicePorts``."""
        ports = service_ports(self.app)
        return [{**t, "appId": self.app["id"], "servicePorts": ports} for t in self.tasks.values()]

    def tasks_fragment(self) -> bytes:
        """Comma-joined ``/v2/tasks`` entries of this app (empty when it has none)."""
        if self._tasks_json is None:
            self._tasks_json = b",".join(dumps(t) for t in self.task_entries())
        return self._tasks_json


def records_from_state(body: dict[str, Any] | list[dict[str, Any]]) -> dict[str, AppRecord]:
    """Records from a ``/v2/apps?embed=apps.tasks`` body (ValueError if malformed).

    Apps and tasks are kept as given (only ids are normalized and tasks get their
    ``appId``), so serving the state back reproduces the document.
    """
    apps = body.get("apps") if isinstance(body, dict) else body
    if not isinstance(apps, list):
        raise ValueError('expected {"apps": [...]}')
    records: dict[str, AppRecord] = {}
    for raw in apps:
        if not isinstance(raw, dict):
            raise ValueError("every app must be an object")
        app = copy.deepcopy(raw)
        app["id"] = normalize_app_id(app.get("id", ""))
        tasks = app.pop("tasks", None) or []
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise ValueError(f"tasks of {app['id']} must be a list of objects")
        readiness = readiness_list(app.pop("readinessCheckResults", None) or [])
        record = AppRecord(app, readiness=readiness)
        for task in tasks:
            task.setdefault("appId", app["id"])
            if not task.get("id"):
                task["id"] = f"{task_id_prefix(app['id'])}.{uuid.uuid1()}"
            record.tasks[task["id"]] = task
        records[app["id"]] = record
    return records


class AppStore:
    """Every app record by id, under one re-entrant lock, with joined bodies cached.

    The lock is held by every writer for the whole change *and* its events, so events
    leave in the order the changes happened; it is re-entrant because writers call each
    other (an app update replaces tasks).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.records: dict[str, AppRecord] = {}
        self._sorted_ids: list[str] | None = None
        self._body_cache: dict[str, bytes] = {}

    def ids(self) -> list[str]:
        """App ids, sorted (as Marathon lists them); cached until an app comes or goes."""
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self.records)
        return self._sorted_ids

    def record(self, app_id: str) -> AppRecord:
        try:
            return self.records[normalize_app_id(app_id)]
        except (KeyError, ValueError):
            raise KeyError(f"App '{app_id}' does not exist") from None

    def changed(self, record: AppRecord | None = None, *, structure: bool = False) -> None:
        """Drop what a change made stale: the record's fragments, the joined bodies and,
        with ``structure`` (an app added or removed), the sorted ids."""
        if record is not None:
            record.invalidate()
        if structure:
            self._sorted_ids = None
        self._body_cache.clear()

    def replace_all(self, records: dict[str, AppRecord]) -> None:
        with self.lock:
            self.records = records
            self._sorted_ids = None
            self._body_cache.clear()

    def apps_body(self, embed_tasks: bool, embed_readiness: bool = False) -> bytes:
        key = "apps" + ("+tasks" if embed_tasks else "") + ("+readiness" if embed_readiness else "")
        with self.lock:
            body = self._body_cache.get(key)
            if body is None:
                parts = [self.records[i].fragment(embed_tasks, embed_readiness)
                         for i in self.ids()]
                body = b'{"apps":[' + b",".join(parts) + b"]}"
                self._body_cache[key] = body
            return body

    def tasks_body(self) -> bytes:
        with self.lock:
            body = self._body_cache.get("tasks")
            if body is None:
                parts = [f for f in (self.records[i].tasks_fragment() for i in self.ids()) if f]
                body = b'{"tasks":[' + b",".join(parts) + b"]}"
                self._body_cache["tasks"] = body
            return body
