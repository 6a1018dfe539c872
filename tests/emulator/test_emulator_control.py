"""Tests of how a test drives the Marathon emulator: auth, TLS, outages, the control API
and the command line.

Everything runs on 127.0.0.1 with free ports and is stopped by the test that started it.
"""

from __future__ import annotations

import datetime
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from tests.emulator.emulator_helpers import (
    FIXTURES,
    SSE,
    fixture,
    make_app,
)
from tests.paths import REPO

# the emulator's threads must all be gone after each test (tests/emulator/conftest.py)
pytestmark = pytest.mark.usefixtures("no_leftover_threads")


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


def test_a_late_apps_answer_describes_the_state_when_asked(session: requests.Session) -> None:
    """``apps_answer_delay``: the full /v2/apps answer arrives that late and holds the
    state of when it was asked (a task added meanwhile is not in it, as with a big
    Marathon whose answer is still on the wire); other requests are not held."""
    import threading

    with MarathonEmulator([make_app()]) as emu:
        emu.apps_answer_delay = 1.5
        got: list[tuple[float, dict]] = []
        started = time.monotonic()

        def fetch() -> None:
            answer = session.get(emu.url + "/v2/apps?embed=apps.tasks", timeout=10)
            got.append((time.monotonic() - started, answer.json()))

        fetcher = threading.Thread(target=fetch)
        fetcher.start()
        deadline = time.monotonic() + 10
        while not any(t.startswith("/v2/apps?") for _, t in emu.request_log):
            assert time.monotonic() < deadline, "the apps request never arrived"
            time.sleep(0.01)
        time.sleep(0.3)  # the answer is made right after the request is logged
        emu.add_task("/web", "10.0.0.1", [31000])
        assert session.get(emu.url + "/ping", timeout=10).status_code == 200  # not held
        fetcher.join(10)
        elapsed, body = got[0]
        assert elapsed >= 1.5
        assert body["apps"][0]["tasks"] == []
        emu.apps_answer_delay = 0.0
        now = session.get(emu.url + "/v2/apps?embed=apps.tasks", timeout=10).json()
        assert [t["host"] for t in now["apps"][0]["tasks"]] == ["10.0.0.1"]
