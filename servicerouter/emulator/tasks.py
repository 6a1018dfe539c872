"""Tasks of the emulated apps: how a declared task is filled in, health results, readiness,
and the events Marathon sends when they change.

Tasks are never "run", they are declared (by a test, a driver process or the control
API); this module turns those declarations into Marathon-shaped tasks and emits
``status_update_event`` / ``health_status_changed_event`` as Marathon would.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

from servicerouter.emulator.payloads import (
    STAGED_STATES,
    EmulatorError,
    ip_addresses,
    is_ip,
    now_iso,
    readiness_list,
    service_ports,
    task_id_prefix,
    task_state,
)
from servicerouter.emulator.store import AppRecord, AppStore

Emit = Callable[[dict[str, Any]], None]


def check_tasks(tasks: Any) -> None:
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise EmulatorError(422, "tasks must be a list of objects")


def new_task(app: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A Marathon-shaped task of ``app`` from a partial one (host, ports, state...)."""
    now = now_iso()
    state = spec.get("state") or "TASK_RUNNING"
    host = str(spec.get("host") or "")
    task: dict[str, Any] = {
        "id": spec.get("id") or f"{task_id_prefix(app['id'])}.{uuid.uuid1()}",
        "appId": app["id"],
        "host": host,
        "ports": [int(p) for p in spec.get("ports") or []],
        "servicePorts": service_ports(app),
        "slaveId": f"{uuid.uuid5(uuid.NAMESPACE_DNS, host or 'localhost')}-S0",
        "stagedAt": now,
        "startedAt": None if state in STAGED_STATES else now,
        "version": app.get("version") or now,
        "state": state,
        "ipAddresses": ip_addresses([host]) if is_ip(host) else [],
    }
    for key, value in spec.items():
        if key == "ipAddresses" and value and isinstance(value[0], str):
            value = ip_addresses(value)
        task[key] = value
    task["appId"] = app["id"]
    return task


def health_result(task: dict[str, Any], alive: bool,
                  old: dict[str, Any] | None) -> dict[str, Any]:
    """A ``healthCheckResults`` entry, carrying over what ``old`` knew."""
    now = now_iso()
    old = old or {}
    failures = 0 if alive else int(old.get("consecutiveFailures") or 0) + 1
    return {
        "alive": alive,
        "consecutiveFailures": failures,
        "firstSuccess": old.get("firstSuccess") or (now if alive else None),
        "lastFailure": old.get("lastFailure") if alive else now,
        "lastSuccess": now if alive else old.get("lastSuccess"),
        "lastFailureCause": old.get("lastFailureCause") if alive else "emulated failure",
        "taskId": task["id"],
    }


def status_update_event(record: AppRecord, task: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "eventType": "status_update_event",
        "slaveId": task.get("slaveId"),
        "taskId": task["id"],
        "taskStatus": status,
        "message": "",
        "appId": record.app["id"],
        "host": task.get("host"),
        "ipAddresses": task.get("ipAddresses") or [],
        "ports": task.get("ports") or [],
        "version": task.get("version") or record.app.get("version"),
    }


def health_changed_event(record: AppRecord, task: dict[str, Any], alive: bool) -> dict[str, Any]:
    prefix, _, suffix = task["id"].partition(".")
    return {
        "eventType": "health_status_changed_event",
        "appId": record.app["id"],
        "taskId": task["id"],
        "instanceId": f"{prefix}.marathon-{suffix}" if suffix else task["id"],
        "version": task.get("version") or record.app.get("version"),
        "alive": alive,
    }


class TaskStates:
    """Declares, kills and re-checks tasks of stored apps, emitting Marathon's events.

    Every change holds the store's lock until its events are published, so events leave
    in the order of the changes. Unknown apps/tasks raise KeyError.
    """

    def __init__(self, store: AppStore, emit: Emit) -> None:
        self._store = store
        self._emit = emit

    def add(self, app_id: str, spec: dict[str, Any], healthy: bool | None) -> dict[str, Any]:
        """Declare one task from ``spec``; returns a copy of it."""
        with self._store.lock:
            record = self._store.record(app_id)
            task = new_task(record.app, spec)
            if task["id"] in record.tasks:
                raise ValueError(f"task {task['id']} already exists")
            if healthy is not None:
                task["healthCheckResults"] = [health_result(task, healthy, None)]
            record.tasks[task["id"]] = task
            self._store.changed(record)
            self._emit(status_update_event(record, task, task["state"]))
            if healthy is not None:
                self._emit(health_changed_event(record, task, healthy))
            return copy.deepcopy(task)

    def kill(self, app_id: str, task_id: str) -> None:
        with self._store.lock:
            record = self._store.record(app_id)
            task = record.tasks.pop(task_id, None)
            if task is None:
                raise KeyError(f"Task '{task_id}' does not exist")
            self._store.changed(record)
            self._emit(status_update_event(record, task, "TASK_KILLED"))

    def set_health(self, app_id: str, task_id: str, alive: bool) -> None:
        with self._store.lock:
            record = self._store.record(app_id)
            task = record.tasks.get(task_id)
            if task is None:
                raise KeyError(f"Task '{task_id}' does not exist")
            previous = task.get("healthCheckResults") or []
            was_alive = all(r.get("alive") for r in previous) if previous else None
            old = previous[0] if previous else None
            new = {**task, "healthCheckResults": [health_result(task, alive, old)]}
            record.tasks[task_id] = new
            self._store.changed(record)
            if was_alive is None or was_alive != alive:
                self._emit(health_changed_event(record, new, alive))

    def set_all(self, app_id: str, tasks: list[dict[str, Any]], *, quiet: bool) -> None:
        with self._store.lock:
            record = self._store.record(app_id)
            self.replace(record, tasks, quiet=quiet)
            self._store.changed(record)

    def replace(self, record: AppRecord, tasks: list[dict[str, Any]], *, quiet: bool) -> None:
        """Make ``tasks`` the record's tasks; unless ``quiet``, one ``status_update_event``
        per removed (TASK_KILLED), added or changed task. The caller holds the lock."""
        new = {}
        for spec in tasks:
            task = new_task(record.app, spec)
            new[task["id"]] = task
        old, record.tasks = record.tasks, new
        if quiet:
            return
        for task_id, task in old.items():
            if task_id not in new:
                self._emit(status_update_event(record, task, "TASK_KILLED"))
        watched = ("host", "ports", "state", "ipAddresses")
        for task_id, task in new.items():
            before = old.get(task_id)
            if before is None or any(before.get(k) != task.get(k) for k in watched):
                self._emit(status_update_event(record, task, task_state(task)))

    def set_readiness(self, app_id: str, results: list[dict[str, Any]]) -> None:
        results = readiness_list(results)
        with self._store.lock:
            record = self._store.record(app_id)
            record.readiness = results
            self._store.changed(record)
