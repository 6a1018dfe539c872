"""Tests of the Marathon emulator: REST shapes against real payloads, events over SSE
and HTTP callbacks, auth, TLS, outages, the control API and the command line.

Everything runs on 127.0.0.1 with free ports and is stopped by the test that started
it; the autouse fixture fails a test that leaves an emulator thread running.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.emulator.payloads import service_ports
from tests.paths import MARATHON_FIXTURES, REPO

FIXTURES = MARATHON_FIXTURES
ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("emulator-")]
        if not left:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left behind: {left}")


@pytest.fixture
def emulator() -> Iterator[MarathonEmulator]:
    with MarathonEmulator(keepalive_interval=0.2) as emu:
        yield emu


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


# --------------------------------------------------------------------------- helpers


class _Collector(BaseHTTPRequestHandler):
    """Records every POST it receives (an event callback endpoint)."""

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.put((self.path, self.headers.get("Content-Type"), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def callback_server() -> Iterator[tuple[str, queue.Queue[tuple[str, str, bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = queue.Queue()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callback", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def next_event(
    received: queue.Queue[tuple[str, str, bytes]], event_type: str, timeout: float = 3.0
) -> tuple[str, dict[str, Any]]:
    """The next callback POST carrying ``event_type`` (content type, event)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {event_type} delivered")
        _, content_type, body = received.get(timeout=remaining)
        event = json.loads(body)
        if event["eventType"] == event_type:
            return content_type, event


class SSE:
    """A minimal SSE reader over requests' streaming (events and keep-alive comments)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.response = requests.get(
            url, stream=True, timeout=(2, 3), headers={"Accept": "text/event-stream"}, **kwargs
        )
        self._lines = self.response.iter_lines()

    def next(self, *, comments: bool = False) -> tuple[str, Any]:
        """The next event as (type, data), or ("comment", text) when ``comments``."""
        event_type, data = "message", []
        for raw in self._lines:
            line = raw.decode()
            if line.startswith(":"):
                if comments:
                    return "comment", line[1:]
                continue
            if not line:
                if data:
                    return event_type, json.loads("\n".join(data))
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event_type = value
            elif name == "data":
                data.append(value)
        raise EOFError("stream closed")

    def next_of(self, event_type: str) -> dict[str, Any]:
        while True:
            kind, data = self.next()
            if kind == event_type:
                return data

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> SSE:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def make_app(app_id: str = "/web", port: int = 10100, **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "instances": 1, "portDefinitions": [{"port": port}], **extra}


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


# --------------------------------------------------------------------------- security, outages


def test_basic_auth(session: requests.Session) -> None:
    with MarathonEmulator(credentials=("user", "s3cret")) as emu:
        for path in ("/ping", "/v2/apps"):
            r = session.get(emu.url + path)
            assert r.status_code == 401
            assert r.headers["WWW-Authenticate"] == 'Basic realm="Mesosphere"'
        assert session.get(emu.url + "/v2/apps", auth=("user", "wrong")).status_code == 401
        assert session.get(emu.url + "/v2/apps", auth=("user", "s3cret")).status_code == 200
        assert session.get(emu.url + "/ping", auth=("user", "s3cret")).text == "pong"
        # control endpoints are open
        r = session.post(emu.url + "/_emulator/apps", json=make_app())
        assert r.status_code == 200


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and its PEM."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "emulator.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    return context, pem


def test_https(tmp_path: Path, session: requests.Session) -> None:
    context, pem = _self_signed(tmp_path)
    with MarathonEmulator(ssl_context=context, keepalive_interval=0.2) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        assert session.get(emu.url + "/ping", verify=str(pem)).text == "pong"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(emu.url + "/ping", verify=True, timeout=2)  # not a trusted CA
        with SSE(emu.url + "/v2/events", verify=str(pem)) as stream:
            assert stream.next()[0] == "event_stream_attached"


def test_outage(emulator: MarathonEmulator, session: requests.Session) -> None:
    emulator.put_app(make_app())
    with SSE(emulator.url + "/v2/events") as stream:
        stream.next_of("event_stream_attached")
        emulator.set_unavailable(True, 503)
        with pytest.raises(EOFError):  # open streams are cut
            stream.next()
    r = session.get(emulator.url + "/v2/apps")
    assert r.status_code == 503 and "message" in r.json()
    assert session.get(emulator.url + "/ping").status_code == 503
    emulator.set_unavailable(True, status=0)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(emulator.url + "/v2/apps", timeout=2)
    # the control API keeps working during an outage
    r = session.post(emulator.url + "/_emulator/outage", json={"unavailable": False})
    assert r.json() == {"unavailable": False, "status": 503}
    assert session.get(emulator.url + "/v2/apps").status_code == 200


# --------------------------------------------------------------------------- control API


def test_control_api(emulator: MarathonEmulator, session: requests.Session) -> None:
    base = emulator.url + "/_emulator"
    r = session.post(base + "/apps", json=make_app("/group/web"))
    assert r.status_code == 200 and r.json()["id"] == "/group/web"
    r = session.post(
        base + "/apps/group/web/tasks", json={"host": "10.0.0.9", "ports": [31009], "healthy": True}
    )
    assert r.status_code == 200
    task = r.json()
    assert task["host"] == "10.0.0.9" and task["healthCheckResults"][0]["alive"]
    r = session.post(base + f"/apps/group/web/tasks/{task['id']}/health", json={"alive": False})
    assert r.status_code == 200
    assert emulator.apps()[0]["tasks"][0]["healthCheckResults"][0]["alive"] is False
    assert session.delete(base + f"/apps/group/web/tasks/{task['id']}").status_code == 200
    assert emulator.apps()[0]["tasks"] == []
    assert session.delete(base + "/apps/group/web/tasks/nope").status_code == 404
    assert session.post(base + "/apps/missing/tasks", json={"host": "h"}).status_code == 404
    assert session.delete(base + "/apps/group/web").status_code == 200
    assert emulator.apps() == []

    state = fixture("marathon-1.x-apps-zdd.json")
    assert session.post(base + "/state", json=state).status_code == 200
    assert [a["id"] for a in emulator.apps()] == ["/nginx-blue", "/nginx-green"]
    assert (
        session.post(
            base + "/state", data=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    r = session.post(base + "/outage", json={"unavailable": True, "status": 500})
    assert r.status_code == 200
    assert session.get(emulator.url + "/v2/apps").status_code == 500
    emulator.set_unavailable(False)
    assert ("POST", "/_emulator/outage") in emulator.request_log
    assert ("GET", "/v2/apps") in emulator.request_log


def test_constructor_apps_and_lifecycle() -> None:
    emu = MarathonEmulator(apps=fixture("marathon-1.5-apps-embed-tasks.json")["apps"])
    assert [a["id"] for a in emu.apps()] == ["/pywebserver"]
    emu.start()
    try:
        assert requests.get(emu.url + "/v2/apps/pywebserver", timeout=2).status_code == 200
        with pytest.raises(RuntimeError):
            emu.start()
    finally:
        emu.stop()
    emu.stop()  # idempotent
    url = emu.url
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/ping", timeout=1)
    # a restart (Marathon coming back) serves the same state on the same port
    with emu:
        assert emu.url == url
        assert requests.get(url + "/v2/apps/pywebserver", timeout=2).status_code == 200


def test_stop_ends_open_streams_and_keepalive_connections(session: requests.Session) -> None:
    emu = MarathonEmulator(keepalive_interval=5.0).start()
    session.get(emu.url + "/ping")  # leaves an idle keep-alive connection open
    stream = SSE(emu.url + "/v2/events")
    try:
        stream.next()
        start = time.monotonic()
        emu.stop()
        assert time.monotonic() - start < 2
        with pytest.raises((EOFError, requests.exceptions.RequestException)):
            stream.next()
    finally:
        stream.close()
        emu.stop()


# --------------------------------------------------------------------------- command line


def test_cli_serves_state_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servicerouter.emulator.marathon",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--state",
            str(FIXTURES / "marathon-1.x-apps-zdd.json"),
            "--port-file",
            str(port_file),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line + proc.stderr.read()
        port = int(port_file.read_text())
        assert line.strip() == f"listening on http://127.0.0.1:{port}"
        r = requests.get(f"http://127.0.0.1:{port}/v2/apps?embed=apps.tasks", timeout=2)
        assert [len(a["tasks"]) for a in r.json()["apps"]] == [1, 3]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


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
