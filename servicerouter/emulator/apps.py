"""App definitions: create, update (full or partial) and delete apps as Marathon's
deployments do, with versions, service port assignment and deployment events.

Each change is a deployment (``deployment_info``, then ``deployment_success`` once
:mod:`servicerouter.emulator.deployments` says it finished: at once without a task
launcher, when the tasks run and pass their health checks with one); killing tasks
with ``scale`` lowers the app's instances as Marathon's ``/v2/tasks/delete?scale=true``.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from servicerouter.emulator.deployments import Deployments, scale_version
from servicerouter.emulator.payloads import (
    EmulatorError,
    normalize_app_id,
    now_iso,
    service_ports,
)
from servicerouter.emulator.store import AppRecord, AppStore
from servicerouter.emulator.tasks import Emit, TaskStates, check_tasks, status_update_event

SERVICE_PORT_RANGE = (10000, 20000)
"""Marathon's default range for automatically assigned service ports (``port: 0``)."""


def deployment_plan(app_id: str, action: str, original: dict[str, Any] | None,
                    target: dict[str, Any] | None, version: str) -> dict[str, Any]:
    """A deployment plan; groups hold only the affected app (Marathon sends the
    whole tree, which would make every event as large as the state)."""
    def group(app: dict[str, Any] | None) -> dict[str, Any]:
        apps = [copy.deepcopy(app)] if app else []
        return {"id": "/", "apps": apps, "groups": [], "dependencies": [],
                "version": version}
    step = {"actions": [{"action": action, "app": app_id}]}
    return {"id": str(uuid.uuid4()), "original": group(original), "target": group(target),
            "steps": [step], "version": version}


class AppDefinitions:
    """Writes app definitions into the store and emits the events of their deployment."""

    def __init__(self, store: AppStore, tasks: TaskStates, emit: Emit,
                 deployments: Deployments | None = None) -> None:
        self._store = store
        self._tasks = tasks
        self._emit = emit
        self.deployments = deployments or Deployments(store, tasks, emit)

    def upsert(self, app: Any, *, partial: bool, client_ip: str, uri: str,
               force: bool = True) -> tuple[bool, dict[str, Any], dict[str, str]]:
        """Create or update; returns (created, stored app copy, deployment result)."""
        if not isinstance(app, dict):
            raise EmulatorError(422, "Object is not valid",
                                details=[{"path": "/", "errors": ["error.expected.jsobject"]}])
        try:
            app_id = normalize_app_id(app.get("id", ""))
        except ValueError:
            raise EmulatorError(422, "Object is not valid",
                                details=[{"path": "/id", "errors": ["error.path.missing"]}]
                                ) from None
        new = copy.deepcopy(app)
        new["id"] = app_id
        new.pop("readinessCheckResults", None)  # AppInfo state, never part of a definition
        explicit_tasks = new.pop("tasks", None)
        if explicit_tasks is not None:
            check_tasks(explicit_tasks)
        for key in ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy"):
            new.pop(key, None)
        version = now_iso()
        with self._store.lock:
            existing = self._store.records.get(app_id)
            if existing is not None:
                self.deployments.check_unlocked(app_id, force)
            if existing is not None and partial:
                new = {**copy.deepcopy(existing.app), **new}
            for key, default in (("instances", 1), ("env", {}), ("labels", {}),
                                 ("healthChecks", [])):
                new.setdefault(key, default)
            new["deployments"] = []
            self._assign_service_ports(new)
            if existing is None:
                new["version"] = version
                new["versionInfo"] = {"lastScalingAt": version, "lastConfigChangeAt": version}
                action = "StartApplication"
            else:
                old_info = existing.app.get("versionInfo") or {}
                config_keys = set(new) | set(existing.app)
                config_keys -= {"instances", "version", "versionInfo", "deployments"}
                scaling_only = all(new.get(k) == existing.app.get(k) for k in config_keys)
                new["version"] = version
                new["versionInfo"] = {
                    "lastScalingAt": version,
                    "lastConfigChangeAt": (old_info.get("lastConfigChangeAt", version)
                                           if scaling_only else version),
                }
                action = "ScaleApplication" if scaling_only else "RestartApplication"
            record = existing or AppRecord(new)
            original = existing.document(False) if existing else None
            record.app = new
            if existing is None:
                self._store.records[app_id] = record
            ports = service_ports(new)
            for task_id, task in list(record.tasks.items()):
                if "servicePorts" in task and task["servicePorts"] != ports:
                    record.tasks[task_id] = {**task, "servicePorts": ports}
            self._store.changed(record, structure=existing is None)
            record.versions.append(copy.deepcopy(new))

            plan = deployment_plan(app_id, action, original, record.document(False), version)
            self._emit({"eventType": "api_post_event", "clientIp": client_ip, "uri": uri,
                        "appDefinition": copy.deepcopy(new)})
            self._emit({"eventType": "deployment_info", "plan": plan,
                        "currentStep": plan["steps"][0]})
            if explicit_tasks is not None:
                self._tasks.replace(record, explicit_tasks, quiet=False)
                self._store.changed(record)
            self.deployments.begin(record, plan)
            stored = copy.deepcopy(record.document(True))
        return existing is None, stored, {"deploymentId": plan["id"], "version": version}

    def delete(self, app_id: str, force: bool = True) -> dict[str, str]:
        """Remove an app (KeyError if missing), killing its tasks; returns the deployment.

        A deployment still changing the app refuses it (409) unless ``force``."""
        with self._store.lock:
            record = self._store.record(app_id)
            app_id = record.app["id"]
            self.deployments.check_unlocked(app_id, force)
            self.deployments.forget_app(app_id)
            version = now_iso()
            plan = deployment_plan(app_id, "StopApplication", record.document(False), None,
                                   version)
            self._emit({"eventType": "deployment_info", "plan": plan,
                        "currentStep": plan["steps"][0]})
            del self._store.records[app_id]
            self._store.changed(record, structure=True)
            for task in record.tasks.values():
                if self.deployments.launcher is not None:
                    self.deployments.launcher.stop(task)
                self._emit(status_update_event(record, task, "TASK_KILLED"))
            self._emit({"eventType": "app_terminated_event", "appId": app_id})
            self._emit({"eventType": "deployment_success", "id": plan["id"], "plan": plan})
        return {"deploymentId": plan["id"], "version": version}

    def kill_tasks(self, task_ids: list[str], *, scale: bool) -> dict[str, Any]:
        """``POST /v2/tasks/delete``: kill tasks by id (KeyError naming an unknown one).

        ``scale``: each app's ``instances`` drops by the tasks killed (a scale
        deployment, as Marathon); otherwise an app with a launcher gets them replaced.
        """
        with self._store.lock:
            owners: dict[str, list[str]] = {}
            for task_id in task_ids:
                owner = next((i for i, r in self._store.records.items() if task_id in r.tasks),
                             None)
                if owner is None:
                    raise KeyError(f"Task '{task_id}' does not exist")
                owners.setdefault(owner, []).append(task_id)
            killed = []
            result: dict[str, Any] = {}
            for app_id, ids in owners.items():
                record = self._store.records[app_id]
                original = record.document(False)
                for task_id in ids:
                    killed.append(self.deployments.kill(record, task_id))
                if scale:
                    instances = record.app.get("instances")
                    instances = instances if type(instances) is int else len(ids)
                    record.app["instances"] = max(0, instances - len(ids))
                    version = scale_version(record)
                    record.versions.append(copy.deepcopy(record.app))
                    self._store.changed(record)
                    plan = deployment_plan(app_id, "ScaleApplication", original,
                                           record.document(False), version)
                    self._emit({"eventType": "deployment_info", "plan": plan,
                                "currentStep": plan["steps"][0]})
                    self.deployments.begin(record, plan)
                    result = {"deploymentId": plan["id"], "version": version}
                else:
                    self.deployments.reconcile(record)
                    self.deployments.check(app_id)
        return result if scale else {"tasks": killed}

    def _used_service_ports(self, skip: str) -> set[int]:
        return {p for i, r in self._store.records.items() if i != skip
                for p in service_ports(r.app)}

    def _assign_service_ports(self, app: dict[str, Any]) -> None:
        """Give every ``servicePort``/``port`` of 0 a free port from Marathon's range."""
        if 0 not in service_ports(app):
            return
        used = self._used_service_ports(app["id"]) | set(service_ports(app))
        candidates = (p for p in range(*SERVICE_PORT_RANGE) if p not in used)

        def free() -> int:
            port = next(candidates, None)
            if port is None:
                raise EmulatorError(422, "no free service port in {}-{}".format(*SERVICE_PORT_RANGE))
            return port
        container = app.get("container") or {}
        for mappings, key in ((container.get("portMappings"), "servicePort"),
                              ((container.get("docker") or {}).get("portMappings"), "servicePort"),
                              (app.get("portDefinitions"), "port")):
            if mappings:
                for mapping in mappings:
                    if not mapping.get(key):
                        mapping[key] = free()
                return
        if app.get("ports"):
            app["ports"] = [p or free() for p in app["ports"]]
