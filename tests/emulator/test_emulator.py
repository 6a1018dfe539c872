"""Tests of the Marathon emulator: REST shapes against real payloads, and readiness.

Everything runs on 127.0.0.1 with free ports and is stopped by the test that started
it; ``no_leftover_threads`` fails a test that leaves an emulator thread running.
Events are in test_emulator_events.py; auth, TLS, outages, the control API and the
command line in test_emulator_control.py.
"""

from __future__ import annotations

import time

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.emulator.payloads import service_ports
from tests.emulator.emulator_helpers import (
    fixture,
    make_app,
)

# the emulator's threads must all be gone after each test (tests/emulator/conftest.py)
pytestmark = pytest.mark.usefixtures("no_leftover_threads")


# --------------------------------------------------------------------------- REST shapes


def test_ping(emulator: MarathonEmulator, session: requests.Session) -> None:
    r = session.get(emulator.url + "/ping")
    assert r.status_code == 200
    assert r.text == "pong"
    assert r.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    "name", ["marathon-1.5-apps-embed-tasks.json", "marathon-1.x-apps-zdd.json"]
)
def test_apps_embed_tasks_serves_fixture_back(
    emulator: MarathonEmulator, session: requests.Session, name: str
) -> None:
    body = fixture(name)
    emulator.load_state(body)
    r = session.get(
        emulator.url + "/v2/apps",
        params={"embed": "apps.tasks"},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"apps": sorted(body["apps"], key=lambda a: a["id"])}


def test_apps_without_embed_has_no_tasks(
    emulator: MarathonEmulator, session: requests.Session
) -> None:
    emulator.load_state(fixture("marathon-1.x-apps-zdd.json"))
    apps = session.get(emulator.url + "/v2/apps").json()["apps"]
    assert [a["id"] for a in apps] == ["/nginx-blue", "/nginx-green"]  # sorted by id
    assert all("tasks" not in a for a in apps)
    assert apps[1]["tasksRunning"] == 3 and apps[1]["tasksHealthy"] == 3
    # embed is a repeatable parameter
    r = session.get(emulator.url + "/v2/apps?embed=apps.counts&embed=apps.tasks")
    assert [len(a["tasks"]) for a in r.json()["apps"]] == [1, 3]
    r = session.get(emulator.url + "/v2/apps", params={"id": "green"})
    assert [a["id"] for a in r.json()["apps"]] == ["/nginx-green"]


def test_app_by_nested_id_and_missing_app(
    emulator: MarathonEmulator, session: requests.Session
) -> None:
    emulator.put_app(make_app("/group/sub/app", 10200))
    task = emulator.add_task("/group/sub/app", "10.0.0.7", [31001])
    r = session.get(emulator.url + "/v2/apps/group/sub/app")
    assert r.status_code == 200
    app = r.json()["app"]
    assert app["id"] == "/group/sub/app"
    assert [t["id"] for t in app["tasks"]] == [task["id"]]
    assert task["id"].startswith("group_sub_app.")
    assert task["servicePorts"] == [10200] and task["appId"] == "/group/sub/app"
    for key in (
        "host",
        "ports",
        "slaveId",
        "stagedAt",
        "startedAt",
        "version",
        "state",
        "ipAddresses",
    ):
        assert key in task
    assert task["ipAddresses"] == [{"ipAddress": "10.0.0.7", "protocol": "IPv4"}]
    r = session.get(emulator.url + "/v2/apps/group/sub/app/tasks")
    assert r.json()["tasks"][0]["servicePorts"] == [10200]
    r = session.get(emulator.url + "/v2/apps/nope")
    assert r.status_code == 404
    assert r.json() == {"message": "App '/nope' does not exist"}


def test_v2_tasks_matches_fixture(emulator: MarathonEmulator, session: requests.Session) -> None:
    expected = fixture("marathon-1.x-tasks.json")["tasks"]
    apps = []
    for task in expected:
        stored = {k: v for k, v in task.items() if k != "servicePorts"}
        apps.append({"id": task["appId"], "ports": task["servicePorts"], "tasks": [stored]})
    emulator.load_state({"apps": apps})
    assert session.get(emulator.url + "/v2/tasks").json() == {"tasks": expected}
    running = session.get(emulator.url + "/v2/tasks", params={"status": "running"}).json()
    assert len(running["tasks"]) == 2
    assert session.get(emulator.url + "/v2/tasks?status=staging").json() == {"tasks": []}


def test_service_ports_of_every_shape() -> None:
    assert service_ports(fixture("marathon-0.11-app_list.json")["apps"][0]) == [10013, 10015]
    assert service_ports(fixture("app-definition-docker-bridge.json")) == [10000]
    assert service_ports(fixture("app-definition-marathon1.5.json")) == [10000]
    assert service_ports({"portDefinitions": [{"port": 1}, {"port": 2}]}) == [1, 2]


def test_create_update_scale_delete(emulator: MarathonEmulator, session: requests.Session) -> None:
    url = emulator.url + "/v2/apps"
    definition = fixture("app-definition-marathon1.5.json")
    r = session.post(url, json=definition)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == "/nginx"
    assert created["deployments"] and created["deployments"][0]["id"]
    assert created["version"] == created["versionInfo"]["lastConfigChangeAt"]
    assert r.headers["Location"].endswith("/v2/apps/nginx")
    assert session.post(url, json=definition).status_code == 409

    time.sleep(0.002)
    r = session.put(url + "/nginx", json={"instances": 3})  # scaling only
    assert r.status_code == 200
    assert set(r.json()) == {"deploymentId", "version"}
    app = session.get(url + "/nginx").json()["app"]
    assert app["instances"] == 3 and app["labels"] == definition["labels"]  # partial update
    assert app["version"] == r.json()["version"] == app["versionInfo"]["lastScalingAt"]
    assert app["versionInfo"]["lastConfigChangeAt"] == created["version"]

    time.sleep(0.002)
    r = session.put(url + "/nginx", json={**definition, "labels": {"HAPROXY_GROUP": "internal"}})
    app = session.get(url + "/nginx").json()["app"]
    assert app["versionInfo"]["lastConfigChangeAt"] == r.json()["version"] != created["version"]
    assert app["versionInfo"]["lastConfigChangeAt"].endswith("Z")

    r = session.put(url + "/other", json={"cmd": "sleep 1"})  # PUT creates, as Marathon
    assert r.status_code == 201
    assert session.delete(url + "/nginx").status_code == 200
    assert session.get(url + "/nginx").status_code == 404
    assert session.delete(url + "/nginx").status_code == 404
    assert [a["id"] for a in emulator.apps()] == ["/other"]


def test_assigns_service_ports_for_zero(emulator: MarathonEmulator) -> None:
    first = emulator.put_app({"id": "/a", "portDefinitions": [{"port": 0}, {"port": 0}]})
    second = emulator.put_app(
        {"id": "/b", "container": {"portMappings": [{"containerPort": 80, "servicePort": 0}]}}
    )
    ports = service_ports(first) + service_ports(second)
    assert len(set(ports)) == 3 and all(10000 <= p < 20000 for p in ports)


def test_errors(emulator: MarathonEmulator, session: requests.Session) -> None:
    r = session.post(
        emulator.url + "/v2/apps", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "message" in r.json()
    r = session.put(
        emulator.url + "/v2/apps/x", data=b"[1,", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert session.post(emulator.url + "/v2/apps", json={"cmd": "no id"}).status_code == 422
    r = session.get(emulator.url + "/v3/nothing")
    assert r.status_code == 404 and "message" in r.json()
    # the connection is still usable after errors with bodies (keep-alive stays in sync)
    assert session.get(emulator.url + "/ping").text == "pong"


def test_state_changes_invalidate_cached_bodies(
    emulator: MarathonEmulator, session: requests.Session
) -> None:
    emulator.put_app(make_app())

    def tasks() -> list[str]:
        apps = session.get(emulator.url + "/v2/apps?embed=apps.tasks").json()["apps"]
        return [t["host"] for t in apps[0]["tasks"]]

    assert tasks() == []
    task = emulator.add_task("/web", "10.0.0.1", [31000])
    assert tasks() == ["10.0.0.1"]
    assert len(session.get(emulator.url + "/v2/tasks").json()["tasks"]) == 1
    emulator.kill_task("/web", task["id"])
    assert tasks() == []
    assert session.get(emulator.url + "/v2/tasks").json() == {"tasks": []}
    emulator.set_tasks(
        "/web", [{"host": "h1", "ports": [1]}, {"host": "h2", "ports": [2]}], quiet=True
    )
    assert tasks() == ["h1", "h2"]
    emulator.remove_app("/web")
    assert session.get(emulator.url + "/v2/apps").json() == {"apps": []}


def test_python_api_returns_copies_and_raises_on_unknown(emulator: MarathonEmulator) -> None:
    emulator.put_app(make_app())
    emulator.apps()[0]["labels"]["X"] = "mutated"
    assert emulator.apps()[0]["labels"] == {}
    with pytest.raises(KeyError):
        emulator.add_task("/missing", "h", [1])
    with pytest.raises(KeyError):
        emulator.kill_task("/web", "web.nope")
    with pytest.raises(KeyError):
        emulator.remove_app("/missing")
    with pytest.raises(ValueError):
        emulator.put_app({"cmd": "no id"})


# --------------------------------------------------------------------------- readiness


READY = [{"name": "ready", "taskId": "web.1", "ready": True, "lastResponse": None},
         {"name": "ready", "taskId": "web.2", "ready": False, "lastResponse": None}]


def test_readiness_results_only_with_embed_readiness(
    emulator: MarathonEmulator, session: requests.Session
) -> None:
    """As Marathon (AppInfo.Embed.Readiness): absent unless asked for, then [] if none."""
    emulator.load_state({"apps": [{**make_app("/web"), "readinessCheckResults": READY,
                                   "tasks": [{"id": "web.1", "host": "h", "ports": [1]}]},
                                  make_app("/other", 10101)]})
    plain = session.get(emulator.url + "/v2/apps?embed=apps.tasks").json()["apps"]
    assert all("readinessCheckResults" not in a for a in plain)
    assert [len(a["tasks"]) for a in plain] == [0, 1]
    both = session.get(emulator.url + "/v2/apps?embed=apps.tasks&embed=apps.readiness")
    assert [a.get("readinessCheckResults") for a in both.json()["apps"]] == [[], READY]
    assert [len(a["tasks"]) for a in both.json()["apps"]] == [0, 1]
    # Marathon accepts the embed with any prefix, or none; readiness alone has no tasks
    only = session.get(emulator.url + "/v2/apps?embed=readiness").json()["apps"]
    assert only[1]["readinessCheckResults"] == READY and "tasks" not in only[1]
    # the served body is cached per embed: asking without readiness again still hides it
    again = session.get(emulator.url + "/v2/apps?embed=apps.tasks").json()["apps"]
    assert all("readinessCheckResults" not in a for a in again)

    one = session.get(emulator.url + "/v2/apps/web").json()["app"]
    assert "readinessCheckResults" not in one and len(one["tasks"]) == 1  # tasks always
    one = session.get(emulator.url + "/v2/apps/web?embed=app.tasks&embed=app.readiness")
    assert one.json()["app"]["readinessCheckResults"] == READY


def test_set_readiness_python_and_control_api(
    emulator: MarathonEmulator, session: requests.Session
) -> None:
    emulator.put_app({**make_app("/web"), "readinessCheckResults": READY})  # not a definition
    url = emulator.url + "/v2/apps?embed=apps.readiness"
    assert session.get(url).json()["apps"][0]["readinessCheckResults"] == []
    emulator.set_readiness("/web", READY)
    assert session.get(url).json()["apps"][0]["readinessCheckResults"] == READY
    r = session.put(emulator.url + "/_emulator/apps/web/readiness",
                    json={"readinessCheckResults": READY[:1]})
    assert r.status_code == 200
    assert session.get(url).json()["apps"][0]["readinessCheckResults"] == READY[:1]
    r = session.put(emulator.url + "/_emulator/apps/web/readiness", json={"x": 1})
    assert r.status_code == 422
    emulator.put_app(make_app("/web", 10102))  # a new definition keeps the results
    assert session.get(url).json()["apps"][0]["readinessCheckResults"] == READY[:1]
    with pytest.raises(KeyError):
        emulator.set_readiness("/missing", [])
