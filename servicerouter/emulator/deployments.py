"""Deployments that take time: tasks launched and killed to reach ``instances``, health
that changes over time, and deployments listed until they finish.

Why: a blue/green deploy tool (``servicerouter zdd``, marathon-lb's ``zdd.py``) posts an
app and waits for Marathon to start its tasks, watches their health, scales by
``PUT /v2/apps/{id}`` and ``POST /v2/tasks/delete?scale=true`` and deletes apps.  With a
:class:`Launcher` the emulator does what Marathon does there: an app's tasks follow its
``instances``, a deployment stays in ``/v2/deployments`` (and in the app's
``deployments``) until the app has its instances and, if it has health checks, all of
them pass; then ``deployment_success``.  A deployment replaced by a forced change or a
deletion ends with ``deployment_failed``.  Without a launcher (the default) tasks are
only declared by the caller and deployments finish at once, as before.

A launcher decides where a task runs (a test hands out real backend processes) and
how its health evolves: the spec it returns may carry ``healthy`` (the first health
result; None: none yet) and ``healthyAfter`` (seconds until the result turns alive).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from servicerouter.emulator.payloads import EmulatorError, now_iso
from servicerouter.emulator.store import AppRecord, AppStore
from servicerouter.emulator.tasks import Emit, TaskStates, status_update_event

if TYPE_CHECKING:
    from collections.abc import Iterable


class Launcher(Protocol):
    """Where the emulator's tasks run (see the module docstring for the spec keys)."""

    def launch(self, app: dict[str, Any]) -> dict[str, Any]:
        """A task spec for a new task of ``app``: host, ports, optional health keys."""
        ...

    def stop(self, task: dict[str, Any]) -> None:
        """The task was killed: stop what runs it."""
        ...


class Deployments:
    """The running deployments and the task launcher (all under the store's lock)."""

    def __init__(self, store: AppStore, tasks: TaskStates, emit: Emit) -> None:
        self._store = store
        self._tasks = tasks
        self._emit = emit
        self.launcher: Launcher | None = None
        self._running: dict[str, dict[str, Any]] = {}  # deployment id -> its entry
        self._timers: list[threading.Timer] = []
        self.set_health: Callable[[str, str, bool], None] | None = None

    # ------------------------------------------------------------------ reads

    def listing(self) -> list[dict[str, Any]]:
        """``GET /v2/deployments``: Marathon's shape for each deployment in progress."""
        with self._store.lock:
            return [copy.deepcopy(entry["listing"]) for entry in self._running.values()]

    def of_app(self, app_id: str) -> list[str]:
        with self._store.lock:
            return [d for d, entry in self._running.items() if entry["app"] == app_id]

    # ------------------------------------------------------------------ writes

    def check_unlocked(self, app_id: str, force: bool) -> None:
        """Marathon's 409 for a change to an app a deployment is still changing."""
        running = self.of_app(app_id)
        if running and not force:
            raise EmulatorError(
                409, "App is locked by one or more deployments. Override with the option "
                     "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
                deployments=[{"id": d} for d in running])

    def begin(self, record: AppRecord, plan: dict[str, Any]) -> None:
        """Start ``plan`` for ``record``: finished at once without a launcher, else the
        tasks are brought to ``instances`` and the deployment runs until they are healthy."""
        app_id = record.app["id"]
        for deployment_id in self.of_app(app_id):  # superseded (a forced change)
            self.cancel(deployment_id)
        if self.launcher is None:
            self._emit({"eventType": "deployment_success", "id": plan["id"], "plan": plan})
            return
        self._running[plan["id"]] = {
            "app": app_id, "plan": plan,
            "listing": {
                "id": plan["id"], "version": plan["version"], "affectedApps": [app_id],
                "affectedPods": [], "steps": plan["steps"],
                "currentActions": [{**a, "readinessCheckResults": []}
                                   for a in plan["steps"][0]["actions"]],
                "currentStep": 1, "totalSteps": len(plan["steps"]),
            },
        }
        record.app["deployments"] = [{"id": plan["id"]}]
        self.reconcile(record)
        self.check(app_id)

    def reconcile(self, record: AppRecord) -> None:
        """Launch or kill tasks until the app runs ``instances`` of them (launcher only)."""
        launcher = self.launcher
        if launcher is None:
            return
        wanted = record.app.get("instances")
        wanted = wanted if type(wanted) is int and wanted >= 0 else 1
        while len(record.tasks) > wanted:  # Marathon kills the newest first
            task_id = sorted(record.tasks, key=lambda t: record.tasks[t].get("stagedAt") or "")[-1]
            self.kill(record, task_id)
        while len(record.tasks) < wanted:
            spec = dict(launcher.launch(copy.deepcopy(record.app)))
            healthy = spec.pop("healthy", None)
            after = spec.pop("healthyAfter", None)
            task = self._tasks.add(record.app["id"], spec, healthy)
            if after is not None:
                self._later(float(after), record.app["id"], task["id"])
        self._store.changed(record)

    def kill(self, record: AppRecord, task_id: str) -> dict[str, Any]:
        """Kill one task: the launcher stops it, ``TASK_KILLED`` is emitted."""
        task = record.tasks.pop(task_id)
        if self.launcher is not None:
            self.launcher.stop(task)
        self._store.changed(record)
        self._emit(status_update_event(record, task, "TASK_KILLED"))
        return task

    def check(self, app_id: str) -> None:
        """Finish the app's deployments whose app now runs its instances, all healthy."""
        with self._store.lock:
            record = self._store.records.get(app_id)
            for deployment_id in self.of_app(app_id):
                if record is None or not _settled(record):
                    continue
                entry = self._running.pop(deployment_id)
                record.app["deployments"] = []
                self._store.changed(record)
                self._emit({"eventType": "deployment_success", "id": deployment_id,
                            "plan": entry["plan"]})

    def cancel(self, deployment_id: str) -> bool:
        """Stop a deployment where it is (``deployment_failed``); False if unknown."""
        with self._store.lock:
            entry = self._running.pop(deployment_id, None)
            if entry is None:
                return False
            record = self._store.records.get(entry["app"])
            if record is not None:
                record.app["deployments"] = []
                self._store.changed(record)
            self._emit({"eventType": "deployment_failed", "id": deployment_id,
                        "plan": entry["plan"]})
            return True

    def forget_app(self, app_id: str) -> None:
        """The app is deleted: its running deployments failed."""
        for deployment_id in self.of_app(app_id):
            self.cancel(deployment_id)

    def stop(self) -> None:
        """Cancel pending health changes (the emulator stops)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _later(self, delay: float, app_id: str, task_id: str) -> None:
        def turn_healthy() -> None:
            if self.set_health is None:
                return
            try:
                self.set_health(app_id, task_id, True)
            except KeyError:  # killed meanwhile
                pass
        timer = threading.Timer(delay, turn_healthy)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()]
        self._timers.append(timer)
        timer.start()


def _settled(record: AppRecord) -> bool:
    """The app runs its instances and every one passes its health checks (if any)."""
    wanted = record.app.get("instances")
    wanted = wanted if type(wanted) is int and wanted >= 0 else 1
    if len(record.tasks) != wanted:
        return False
    if not record.app.get("healthChecks"):
        return True
    return all(_alive(task.get("healthCheckResults")) for task in record.tasks.values())


def _alive(results: Iterable[dict[str, Any]] | None) -> bool:
    results = list(results or ())
    return bool(results) and all(r.get("alive") for r in results)


def scale_version(record: AppRecord) -> str:
    """Bump an app's version for a scale-only change (``lastScalingAt`` follows)."""
    version = now_iso()
    info = record.app.get("versionInfo") or {}
    record.app["version"] = version
    record.app["versionInfo"] = {"lastScalingAt": version,
                                 "lastConfigChangeAt": info.get("lastConfigChangeAt", version)}
    return version


__all__ = ["Deployments", "Launcher", "scale_version"]
