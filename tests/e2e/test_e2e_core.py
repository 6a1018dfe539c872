"""End to end: configs servicerouter renders from the emulator route real traffic.

Each test starts real backend processes, the Marathon emulator, runs
servicerouter (a real process) to write the config and a real HAProxy on
free 127.0.0.1 ports, then sends real HTTP, TLS and TCP requests.
"""

from __future__ import annotations

import os
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.tls.bundles import generate_self_signed
from tests.harness import HAProxy, free_port, http_get, tcp_exchange, wait_for_port, wait_until
from tests.paths import REPO

pytestmark = pytest.mark.e2e


@dataclass
class Edge:
    """Ports of one rendered HAProxy."""

    http: int
    https: int
    appid: int
    stats: int
    cfg: Path
    workdir: Path

    def flags(self) -> list[str]:
        return ["--haproxy-config", str(self.cfg), "--syslog-socket", "/dev/null",
                "--bind-addr", "127.0.0.1", "--http-port", str(self.http),
                "--https-port", str(self.https), "--appid-port", str(self.appid),
                "--stats-port", str(self.stats), "--state-dir", str(self.workdir / "state"),
                "--certs-dir", str(self.workdir / "certs")]


def make_edge(tmp_path: Path) -> Edge:
    (tmp_path / "certs").mkdir()
    return Edge(free_port(), free_port(), free_port(), free_port(), tmp_path / "haproxy.cfg",
                tmp_path)


def servicerouter(edge: Edge, marathon_url: str, *extra: str,
                  cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One run; ``cwd``: where it runs (the checkout's ./templates is then not read, so
    the built-in fragments are the defaults, as on an installed host)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bin" / "servicerouter.py"), "-m", marathon_url,
         "--command", "true", *edge.flags(), *extra],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def app(app_id: str, port: int, backends: list, **labels: str) -> dict:
    return {"id": app_id, "portDefinitions": [{"port": port}], "labels": labels,
            "instances": len(backends),
            "tasks": [{"id": f"{app_id[1:].replace('/', '_')}.{b.name}", "host": "127.0.0.1",
                       "ports": [b.port], "state": "TASK_RUNNING"} for b in backends]}


def start(edge: Edge, apps: list[dict], haproxy_factory, *extra: str) -> MarathonEmulator:
    marathon, _proxy = start_with_proxy(edge, apps, haproxy_factory, *extra)
    return marathon


def start_with_proxy(edge: Edge, apps: list[dict], haproxy_factory,
                     *extra: str) -> tuple[MarathonEmulator, HAProxy]:
    marathon = MarathonEmulator(apps).start()
    servicerouter(edge, marathon.url, *extra)
    proxy = haproxy_factory(str(edge.cfg))
    wait_for_port(edge.stats)  # :80 binds only when a vhost needs it
    return marathon, proxy


def names(responses: list[requests.Response]) -> list[str]:
    return [r.text.strip() for r in responses]


def test_vhost_routing_tcp_round_robin_appid_and_redirect(tmp_path, backend_factory,
                                                          haproxy_factory) -> None:
    edge = make_edge(tmp_path)
    a1, a2, b1 = backend_factory("a1"), backend_factory("a2"), backend_factory("b1")
    t1, t2 = backend_factory("t1", mode="tcp"), backend_factory("t2", mode="tcp")
    tcp_port, secure_port = free_port(), free_port()
    apps = [
        app("/a", free_port(), [a1, a2], HAPROXY_0_VHOST="a.example.com"),
        app("/b", free_port(), [b1], HAPROXY_0_VHOST="b.example.com"),
        app("/tcp", tcp_port, [t1, t2], HAPROXY_0_BIND_ADDR="127.0.0.1"),
        app("/secure", secure_port, [b1], HAPROXY_0_VHOST="secure.example.com",
            HAPROXY_0_REDIRECT_TO_HTTPS="true"),
    ]
    marathon = start(edge, apps, haproxy_factory)
    try:
        url = f"http://127.0.0.1:{edge.http}/"
        a = names([http_get(url, host_header="a.example.com") for _ in range(10)])
        assert set(a) == {"a1", "a2"}
        assert set(names([http_get(url, host_header="B.Example.com") for _ in range(5)])) == {"b1"}
        # Host with a port still matches its vhost.
        assert http_get(url, host_header=f"a.example.com:{edge.http}").text.strip() in {"a1", "a2"}
        # Unknown host: no backend.
        assert http_get(url, host_header="nope.example.com").status_code == 503

        greetings = [tcp_exchange(tcp_port, b"ping\n").split(b"\n")[0] for _ in range(6)]
        assert set(greetings) == {b"t1", b"t2"}
        assert greetings.count(b"t1") == 3  # round robin

        appid = http_get(f"http://127.0.0.1:{edge.appid}/", headers={"X-Marathon-App-Id": "/b"})
        assert appid.text.strip() == "b1"

        redirect = http_get(f"{url}path?q=1", host_header="secure.example.com",
                            allow_redirects=False)
        assert redirect.status_code == 301
        assert redirect.headers["Location"] == "https://secure.example.com/path?q=1"
        # Other vhosts are not redirected.
        assert http_get(url, host_header="a.example.com", allow_redirects=False).status_code == 200
    finally:
        marathon.stop()


def test_sticky_vhost_keeps_a_client_on_one_backend(tmp_path, backend_factory,
                                                    haproxy_factory) -> None:
    edge = make_edge(tmp_path)
    s1, s2, s3 = (backend_factory(n) for n in ("s1", "s2", "s3"))
    marathon = start(edge, [app("/sticky", free_port(), [s1, s2, s3],
                                HAPROXY_0_VHOST="sticky.example.com", HAPROXY_0_STICKY="true")],
                     haproxy_factory)
    try:
        with requests.Session() as session:
            session.trust_env = False
            seen = {session.get(f"http://127.0.0.1:{edge.http}/",
                                headers={"Host": "sticky.example.com"}, timeout=5).text.strip()
                    for _ in range(20)}
            assert len(seen) == 1
            assert "mesosphere_server_id" in session.cookies
        # Without the cookie jar, requests spread.
        fresh = {http_get(f"http://127.0.0.1:{edge.http}/", host_header="sticky.example.com")
                 .text.strip() for _ in range(6)}
        assert len(fresh) == 3
    finally:
        marathon.stop()


def https_request(port: int, sni: str, host: str) -> tuple[str, list[str]]:
    """GET / over TLS to 127.0.0.1 with the given SNI and Host; (body, presented SANs)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names_ = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names_ = []
    return data.split(b"\r\n\r\n", 1)[1].decode().strip(), names_


def test_https_with_sni_and_host_reaches_the_right_app(tmp_path, backend_factory,
                                                      haproxy_factory) -> None:
    edge = make_edge(tmp_path)
    (edge.workdir / "certs" / "a.pem").write_text(generate_self_signed("a.example.com"))
    (edge.workdir / "certs" / "b.pem").write_text(generate_self_signed("b.example.com"))
    a1, b1 = backend_factory("a1"), backend_factory("b1")
    marathon = start(edge, [app("/a", free_port(), [a1], HAPROXY_0_VHOST="a.example.com"),
                            app("/b", free_port(), [b1], HAPROXY_0_VHOST="b.example.com")],
                     haproxy_factory)
    try:
        wait_for_port(edge.https)
        body, sans = https_request(edge.https, "a.example.com", "a.example.com")
        assert (body, sans) == ("a1", ["a.example.com"])
        body, sans = https_request(edge.https, "b.example.com", "b.example.com")
        assert (body, sans) == ("b1", ["b.example.com"])
        # Routing follows the Host header; SNI only picks the certificate.
        body, sans = https_request(edge.https, "a.example.com", "b.example.com")
        assert (body, sans) == ("b1", ["a.example.com"])
        # An unknown name gets the default: the certs directory's first bundle by name.
        _body, sans = https_request(edge.https, "other.example.net", "a.example.com")
        assert sans == ["a.example.com"]
    finally:
        marathon.stop()


class Load:
    """Sequential requests on a thread until stopped; counts failures (bounded).

    ``between`` runs between two requests once ``at`` requests succeeded: a node
    that dies mid-response loses that response whatever the proxy does, so the
    kill happens between requests and every request after it must succeed.
    """

    def __init__(self, send, limit: int = 5000, seconds: float = 30.0,
                 at: int | None = None, between=None) -> None:
        self.send, self.limit, self.seconds = send, limit, seconds
        self.at, self.between = at, between
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and self.ok + self.failed < self.limit \
                and time.monotonic() < deadline:
            if self.between is not None and self.ok == self.at:
                self.between()
                self.between = None
            try:
                self.send()
                self.ok += 1
            except Exception as err:  # every failure counts, whatever it is
                self.failed += 1
                self.errors.append(repr(err))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_killing_a_backend_loses_no_request(tmp_path, backend_factory, haproxy_factory) -> None:
    """Marathon still lists the dead task: HAProxy alone must route around it."""
    edge = make_edge(tmp_path)
    h1, h2 = backend_factory("h1"), backend_factory("h2")
    t1, t2 = backend_factory("t1", mode="tcp"), backend_factory("t2", mode="tcp")
    http_port, tcp_port = free_port(), free_port()
    marathon = start(edge, [
        app("/web", http_port, [h1, h2], HAPROXY_0_BIND_ADDR="127.0.0.1", HAPROXY_0_MODE="http"),
        app("/tcp", tcp_port, [t1, t2], HAPROXY_0_BIND_ADDR="127.0.0.1"),
    ], haproxy_factory)
    try:
        def http_send() -> None:
            response = http_get(f"http://127.0.0.1:{http_port}/")
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")

        def tcp_send() -> None:
            if tcp_exchange(tcp_port, b"x\n")[:1] != b"t":
                raise RuntimeError("no greeting")

        with Load(http_send, at=20, between=h2.kill) as http_load, \
                Load(tcp_send, at=20, between=t2.kill) as tcp_load:
            wait_until(lambda: http_load.ok > 150 and tcp_load.ok > 150, timeout=25)
        assert http_load.failed == 0, http_load.errors[:5]
        assert tcp_load.failed == 0, tcp_load.errors[:5]
        # The survivors answer everything now.
        assert {http_get(f"http://127.0.0.1:{http_port}/").text.strip() for _ in range(4)} == {"h1"}
    finally:
        marathon.stop()


def test_listening_mode_follows_marathon_events(tmp_path, backend_factory,
                                                haproxy_factory) -> None:
    """--listening: subscribe, regenerate on a callback, reload, unsubscribe on SIGTERM."""
    edge = make_edge(tmp_path)
    first, second = backend_factory("first"), backend_factory("second")
    port = free_port()
    marathon, proxy = start_with_proxy(
        edge, [app("/live", port, [first], HAPROXY_0_VHOST="live.example.com")], haproxy_factory)
    callback = free_port()
    router = subprocess.Popen(
        [sys.executable, str(REPO / "bin" / "servicerouter.py"), "-m", marathon.url,
         "--listening", f"http://127.0.0.1:{callback}", "--listening-addr", "127.0.0.1",
         "--command", shlex.join(proxy.reload_command), "--min-wait", "0.05",
         "--max-wait", "0.3", *edge.flags()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_until(lambda: f"http://127.0.0.1:{callback}" in marathon.subscriptions, timeout=20)
        url = f"http://127.0.0.1:{edge.http}/"
        assert http_get(url, host_header="live.example.com").text.strip() == "first"
        marathon.add_task("/live", "127.0.0.1", [second.port])
        wait_until(lambda: "second" in {http_get(url, host_header="live.example.com").text.strip()
                                        for _ in range(4)}, timeout=20)
        # A bad callback body is refused, and the router keeps running.
        bad = requests.post(f"http://127.0.0.1:{callback}/", data=b"{nope",
                            headers={"Content-Type": "application/json"}, timeout=5)
        assert bad.status_code == 400
        assert router.poll() is None
    finally:
        router.terminate()
        output = router.communicate(timeout=20)[0]
        marathon.stop()
    assert router.returncode == 0, output
    assert f"http://127.0.0.1:{callback}" not in marathon.subscriptions
    assert "removing subscription" in output
    assert len(proxy.pids) >= 2  # it really reloaded
