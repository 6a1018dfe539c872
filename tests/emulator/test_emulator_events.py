"""Tests of the Marathon emulator's events: HTTP callbacks and the SSE stream.

Everything runs on 127.0.0.1 with free ports and is stopped by the test that started it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from tests.emulator.emulator_helpers import (
    SSE,
    make_app,
    next_event,
    wait_for,
)

# the emulator's threads must all be gone after each test (tests/emulator/conftest.py)
pytestmark = pytest.mark.usefixtures("no_leftover_threads")


# --------------------------------------------------------------------------- events


def test_callbacks_are_really_delivered(
    emulator: MarathonEmulator, session: requests.Session, callback_server: Any
) -> None:
    callback_url, received = callback_server
    subs = emulator.url + "/v2/eventSubscriptions"
    r = session.post(subs, params={"callbackUrl": callback_url})
    assert r.status_code == 200
    assert r.json()["callbackUrl"] == callback_url
    assert r.json()["eventType"] == "subscribe_event" and r.json()["clientIp"] == "127.0.0.1"
    assert session.get(subs).json() == {"callbackUrls": [callback_url]}
    assert emulator.subscriptions == [callback_url]
    content_type, event = next_event(received, "subscribe_event")
    assert content_type == "application/json" and event["callbackUrl"] == callback_url

    emulator.put_app(make_app())
    _, event = next_event(received, "api_post_event")
    assert event["appDefinition"]["id"] == "/web" and event["uri"] == "/v2/apps/web"
    task = emulator.add_task("/web", "10.1.2.3", [31005])
    _, event = next_event(received, "status_update_event")
    assert event["taskId"] == task["id"] and event["taskStatus"] == "TASK_RUNNING"
    assert event["appId"] == "/web" and event["ports"] == [31005] and event["host"] == "10.1.2.3"
    assert event["timestamp"].endswith("Z")

    r = session.delete(subs, params={"callbackUrl": callback_url})
    assert r.json()["eventType"] == "unsubscribe_event"
    assert session.get(subs).json() == {"callbackUrls": []}


def test_failing_callback_never_blocks(session: requests.Session) -> None:
    with MarathonEmulator(callback_timeout=0.5) as emu:
        session.post(
            emu.url + "/v2/eventSubscriptions",
            params={"callbackUrl": "http://127.0.0.1:9/unreachable"},
        )
        emu.put_app(make_app())
        start = time.monotonic()
        for i in range(20):
            emu.add_task("/web", f"10.0.0.{i}", [31000 + i])
        assert time.monotonic() - start < 0.5
        assert len(emu.apps()[0]["tasks"]) == 20


def test_sse_attached_then_status_update(emulator: MarathonEmulator) -> None:
    emulator.put_app(make_app())
    with SSE(emulator.url + "/v2/events") as stream:
        assert stream.response.headers["Content-Type"] == "text/event-stream"
        kind, attached = stream.next()
        assert kind == "event_stream_attached"
        assert attached["eventType"] == "event_stream_attached"
        assert set(attached) == {"remoteAddress", "eventType", "timestamp"}
        task = emulator.add_task("/web", "10.0.0.1", [31000], ip_addresses=["172.17.0.2"])
        event = stream.next_of("status_update_event")
        assert event["taskId"] == task["id"] and event["taskStatus"] == "TASK_RUNNING"
        assert event["ipAddresses"] == [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}]
        for key in ("slaveId", "version", "timestamp"):
            assert event[key]
        emulator.set_task_health("/web", task["id"], False)
        health = stream.next_of("health_status_changed_event")
        assert health["alive"] is False and health["taskId"] == task["id"]
        assert health["appId"] == "/web" and health["instanceId"] and health["version"]
        emulator.kill_task("/web", task["id"])
        assert stream.next_of("status_update_event")["taskStatus"] == "TASK_KILLED"


def test_an_sse_client_with_the_headers_gets_every_later_event(
        emulator: MarathonEmulator) -> None:
    """The stream subscribes before its answer's headers go out: an event emitted as
    soon as the client has them reaches it.  (Headers first and a slow subscribe lost
    it, and a test reading the stream waited for ever behind keep-alive comments.)"""
    emulator.put_app(make_app())
    bus = emulator._bus  # noqa: SLF001 - a slow subscribe, made on purpose
    attach = bus.attach

    def slow_attach(client: Any) -> None:
        time.sleep(0.3)
        attach(client)

    bus.attach = slow_attach  # type: ignore[method-assign]
    with SSE(emulator.url + "/v2/events") as stream:
        task = emulator.add_task("/web", "10.0.0.1", [31000])
        assert stream.next_of("status_update_event", timeout=5)["taskId"] == task["id"]


def test_sse_app_lifecycle_events(emulator: MarathonEmulator, session: requests.Session) -> None:
    with SSE(emulator.url + "/v2/events") as stream:
        stream.next_of("event_stream_attached")
        session.post(emulator.url + "/v2/apps", json=make_app())
        api = stream.next_of("api_post_event")
        assert api["uri"] == "/v2/apps" and api["clientIp"] == "127.0.0.1"
        info = stream.next_of("deployment_info")
        assert info["plan"]["steps"][0]["actions"][0] == {
            "action": "StartApplication",
            "app": "/web",
        }
        assert info["currentStep"]["actions"][0]["app"] == "/web"
        success = stream.next_of("deployment_success")
        assert success["id"] == info["plan"]["id"]
        emulator.add_task("/web", "10.0.0.1", [31000])
        stream.next_of("status_update_event")
        session.delete(emulator.url + "/v2/apps/web")
        assert stream.next_of("status_update_event")["taskStatus"] == "TASK_KILLED"
        assert stream.next_of("app_terminated_event")["appId"] == "/web"
        stream.next_of("deployment_success")


def test_sse_event_type_filter(emulator: MarathonEmulator) -> None:
    emulator.put_app(make_app())
    url = emulator.url + "/v2/events?event_type=status_update_event&event_type=app_terminated_event"
    with SSE(url) as stream:
        wait_for(lambda: emulator.sse_clients == 1)
        emulator.emit({"eventType": "api_post_event", "uri": "/ignored"})
        emulator.add_task("/web", "10.0.0.1", [31000])
        emulator.remove_app("/web")
        kinds = [stream.next()[0] for _ in range(3)]
        assert kinds == ["status_update_event", "status_update_event", "app_terminated_event"]


def test_sse_keepalive_and_disconnect(emulator: MarathonEmulator) -> None:
    stream = SSE(emulator.url + "/v2/events")
    try:
        assert stream.next()[0] == "event_stream_attached"
        start = time.monotonic()
        assert stream.next(comments=True)[0] == "comment"  # keep-alive every 0.2 s
        assert time.monotonic() - start < 1.5
        assert emulator.sse_clients == 1
    finally:
        stream.close()
    wait_for(lambda: emulator.sse_clients == 0)  # noticed at the next keep-alive at the latest


def test_raw_emit_reaches_sse(emulator: MarathonEmulator) -> None:
    with SSE(emulator.url + "/v2/events?event_type=custom_event") as stream:
        wait_for(lambda: emulator.sse_clients == 1)
        emulator.emit({"eventType": "custom_event", "x": 1})
        kind, data = stream.next()
        assert kind == "custom_event" and data["x"] == 1 and data["timestamp"]
    with pytest.raises(ValueError):
        emulator.emit({"no": "type"})


def test_set_tasks_emits_one_event_per_change(emulator: MarathonEmulator) -> None:
    emulator.put_app(make_app())
    keep = emulator.add_task("/web", "h0", [1])
    gone = emulator.add_task("/web", "h1", [2])
    with SSE(emulator.url + "/v2/events?event_type=status_update_event") as stream:
        wait_for(lambda: emulator.sse_clients == 1)
        emulator.set_tasks("/web", [keep, {"host": "h2", "ports": [3]}])
        events = [stream.next()[1] for _ in range(2)]
        assert {(e["taskId"] == gone["id"], e["taskStatus"]) for e in events} == {
            (True, "TASK_KILLED"),
            (False, "TASK_RUNNING"),
        }
        emulator.set_tasks("/web", [], quiet=True)
        emulator.emit({"eventType": "status_update_event", "taskId": "marker"})
        assert stream.next()[1]["taskId"] == "marker"  # nothing came before it
    assert emulator.apps()[0]["tasks"] == []


def test_health_results_and_counts(emulator: MarathonEmulator, session: requests.Session) -> None:
    emulator.put_app(make_app())
    task = emulator.add_task("/web", "10.0.0.1", [31000], healthy=True)
    result = task["healthCheckResults"][0]
    assert result["alive"] is True and result["taskId"] == task["id"]
    emulator.add_task("/web", "10.0.0.2", [31000], state="TASK_STAGING")
    app = session.get(emulator.url + "/v2/apps/web").json()["app"]
    assert (app["tasksRunning"], app["tasksStaged"], app["tasksHealthy"]) == (1, 1, 1)
    emulator.set_task_health("/web", task["id"], False)
    app = session.get(emulator.url + "/v2/apps/web").json()["app"]
    assert (app["tasksHealthy"], app["tasksUnhealthy"]) == (0, 1)
    assert app["tasks"][0]["healthCheckResults"][0]["consecutiveFailures"] == 1
