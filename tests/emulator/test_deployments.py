"""The emulator's deployments with a task launcher: what a blue/green deploy tool needs.

Tasks follow ``instances``, deployments stay listed until the tasks pass their health
checks, kill with scale lowers ``instances``, a locked app refuses changes without
``force``, and every step is announced on the event stream in Marathon's shapes.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from tests.emulator.emulator_helpers import SSE, wait_for


class CountingLauncher:
    """Tasks on 127.0.0.1 with made-up ports; health as the test asks."""

    def __init__(self, healthy: bool | None = None, after: float | None = None) -> None:
        self.ports = itertools.count(31000)
        self.healthy = healthy
        self.after = after
        self.stopped: list[str] = []
        self._lock = threading.Lock()

    def launch(self, app: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = {"host": "127.0.0.1", "ports": [next(self.ports)],
                                "healthy": self.healthy}
        if self.after is not None:
            spec["healthyAfter"] = self.after
        return spec

    def stop(self, task: dict[str, Any]) -> None:
        with self._lock:
            self.stopped.append(task["id"])


def checked_app(app_id: str, instances: int) -> dict[str, Any]:
    return {"id": app_id, "instances": instances, "portDefinitions": [{"port": 10000}],
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}]}


@pytest.fixture
def launcher() -> CountingLauncher:
    return CountingLauncher(healthy=False, after=0.3)


@pytest.fixture
def emu(launcher: CountingLauncher) -> Iterator[MarathonEmulator]:
    with MarathonEmulator(keepalive_interval=0.2, launcher=launcher) as emulator:
        yield emulator


def test_post_starts_tasks_and_the_deployment_finishes_when_they_turn_healthy(
        emu: MarathonEmulator, launcher: CountingLauncher) -> None:
    launcher.after = None  # health turns below, when the test says so
    with SSE(f"{emu.url}/v2/events") as stream:
        posted = requests.post(f"{emu.url}/v2/apps", json=checked_app("/blue", 3), timeout=5)
        assert posted.status_code == 201
        deployment = posted.json()["deployments"][0]["id"]
        listed = requests.get(f"{emu.url}/v2/deployments", timeout=5).json()
        assert [d["id"] for d in listed] == [deployment]
        assert listed[0]["affectedApps"] == ["/blue"]
        assert listed[0]["currentActions"][0]["action"] == "StartApplication"
        app = requests.get(f"{emu.url}/v2/apps/blue", timeout=5).json()["app"]
        assert len(app["tasks"]) == 3 and app["deployments"] == [{"id": deployment}]
        assert all(t["healthCheckResults"][0]["alive"] is False for t in app["tasks"])
        info = stream.next_of("deployment_info")
        assert info["plan"]["id"] == deployment
        for _ in range(3):
            assert stream.next_of("status_update_event")["taskStatus"] == "TASK_RUNNING"
        for task in app["tasks"][:2]:
            emu.set_task_health("/blue", task["id"], True)
        assert [d["id"] for d in emu.deployments()] == [deployment]  # one still failing
        emu.set_task_health("/blue", app["tasks"][2]["id"], True)
        changed = stream.next_of("health_status_changed_event")
        while not changed["alive"]:  # the first results fail, then turn alive
            changed = stream.next_of("health_status_changed_event")
        assert changed["appId"] == "/blue"
        success = stream.next_of("deployment_success")
        assert success["id"] == deployment
    assert requests.get(f"{emu.url}/v2/deployments", timeout=5).json() == []
    app = requests.get(f"{emu.url}/v2/apps/blue", timeout=5).json()["app"]
    assert app["deployments"] == [] and app["tasksHealthy"] == 3


def test_scale_up_by_put_and_down_by_kill_with_scale(
        emu: MarathonEmulator, launcher: CountingLauncher) -> None:
    emu.put_app(checked_app("/blue", 2))
    wait_for(lambda: emu.deployments() == [], 5)
    first_version = emu.app("/blue")["version"]
    put = requests.put(f"{emu.url}/v2/apps/blue", json={"instances": 4}, timeout=5)
    assert put.status_code == 200 and "deploymentId" in put.json()
    app = emu.app("/blue")
    assert len(app["tasks"]) == 4 and app["version"] != first_version
    assert app["versionInfo"]["lastConfigChangeAt"] <= first_version < \
        app["versionInfo"]["lastScalingAt"]
    # a locked app refuses another change unless forced (Marathon's 409)
    refused = requests.put(f"{emu.url}/v2/apps/blue", json={"instances": 1}, timeout=5)
    assert refused.status_code == 409 and refused.json()["deployments"]
    wait_for(lambda: emu.deployments() == [], 5)
    doomed = sorted(t["id"] for t in emu.app("/blue")["tasks"])[:2]
    with SSE(f"{emu.url}/v2/events") as stream:
        killed = requests.post(f"{emu.url}/v2/tasks/delete?scale=true",
                               json={"ids": doomed}, timeout=5)
        assert killed.status_code == 200 and set(killed.json()) == {"deploymentId", "version"}
        for _ in doomed:
            event = stream.next_of("status_update_event")
            assert event["taskStatus"] == "TASK_KILLED" and event["taskId"] in doomed
        assert stream.next_of("deployment_success")["id"] == killed.json()["deploymentId"]
    app = emu.app("/blue")
    assert app["instances"] == 2 and sorted(t["id"] for t in app["tasks"]) != doomed
    assert not set(doomed) & {t["id"] for t in app["tasks"]}
    assert set(doomed) <= set(launcher.stopped)
    # without scale, Marathon replaces a killed task
    left = app["tasks"][0]["id"]
    plain = requests.post(f"{emu.url}/v2/tasks/delete", json={"ids": [left]}, timeout=5)
    assert plain.json()["tasks"][0]["id"] == left
    app = emu.app("/blue")
    assert app["instances"] == 2 and len(app["tasks"]) == 2
    assert left not in {t["id"] for t in app["tasks"]}
    assert requests.post(f"{emu.url}/v2/tasks/delete", json={"ids": ["nope.1"]},
                         timeout=5).status_code == 404
    # every definition is an app version: created (2), scaled by PUT (4), by kill (2)
    versions = requests.get(f"{emu.url}/v2/apps/blue/versions", timeout=5).json()["versions"]
    assert len(versions) == 3 and versions[-1] == first_version
    assert versions[0] == emu.app("/blue")["version"]
    instances = [requests.get(f"{emu.url}/v2/apps/blue/versions/{v}", timeout=5).json()
                 ["instances"] for v in versions]
    assert instances == [2, 4, 2]
    assert requests.get(f"{emu.url}/v2/apps/blue/versions/1999-01-01T00:00:00.000Z",
                        timeout=5).status_code == 404


def test_never_healthy_app_stays_deploying_and_is_deleted_with_force(
        launcher: CountingLauncher) -> None:
    launcher.after = None  # health checks never pass
    with MarathonEmulator(keepalive_interval=0.2, launcher=launcher) as emu:
        emu.put_app(checked_app("/green", 2))
        (deployment,) = emu.deployments()
        assert requests.delete(f"{emu.url}/v2/apps/green", timeout=5).status_code == 409
        with SSE(f"{emu.url}/v2/events") as stream:
            deleted = requests.delete(f"{emu.url}/v2/apps/green?force=true", timeout=5)
            assert deleted.status_code == 200
            assert stream.next_of("deployment_failed")["id"] == deployment["id"]
            assert stream.next_of("app_terminated_event")["appId"] == "/green"
        assert emu.deployments() == [] and len(launcher.stopped) == 2
        # the control API sets health too, which finishes a deployment
        emu.put_app(checked_app("/green", 1))
        (task,) = emu.app("/green")["tasks"]
        assert requests.post(f"{emu.url}/_emulator/apps/green/tasks/{task['id']}/health",
                             json={"alive": True}, timeout=5).status_code == 200
        assert emu.deployments() == []


def test_without_launcher_deployments_finish_at_once_and_tasks_are_declared() -> None:
    with MarathonEmulator(keepalive_interval=0.2) as emu:
        emu.put_app(checked_app("/plain", 3))
        assert emu.app("/plain")["tasks"] == [] and emu.deployments() == []
