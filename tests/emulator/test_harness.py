"""Proves the end-to-end harness itself, with hand-written HAProxy configs.

Later end-to-end tests trust these pieces to tell them whether servicerouter's
configs route traffic; if the harness were wrong they would pass or fail for the
wrong reasons. So each promise made in tests/harness.py is checked here against a
real HAProxy: routing, TCP, TLS, soft reload without failed requests (from another
process, as servicerouter's --command does), failure reporting, and cleanup.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.harness import (
    Backend,
    HAProxy,
    HAProxyError,
    free_port,
    http_get,
    self_signed_cert,
    tcp_exchange,
    wait_for_port,
    wait_until,
)
from tests.paths import TESTS_DIR

pytestmark = pytest.mark.e2e

BackendFactory = Callable[..., Backend]
HAProxyFactory = Callable[[Path], HAProxy]

DEFAULTS = """\
defaults
    mode {mode}
    timeout connect 2s
    timeout client 10s
    timeout server 10s
"""


def http_config(port: int, backends: list[Backend], global_lines: str = "") -> str:
    servers = "".join(f"    server {b.name} 127.0.0.1:{b.port}\n" for b in backends)
    return (
        f"global\n    maxconn 256\n{global_lines}"
        + DEFAULTS.format(mode="http")
        + f"listen web\n    bind 127.0.0.1:{port}\n    balance roundrobin\n{servers}"
    )


def write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic, as servicerouter writes it
    return path


def names_seen(url: str, count: int) -> list[str]:
    return [http_get(url).text.strip() for _ in range(count)]


# --------------------------------------------------------------------------- backends alone


def test_http_backend_answers_its_name_and_keeps_alive(backend_factory: BackendFactory) -> None:
    backend = backend_factory("alpha")
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=5)
    try:
        conn.request("GET", "/any/path?q=1")
        first = conn.getresponse()
        assert (first.status, first.read(), first.getheader("X-Backend")) == (
            200,
            b"alpha\n",
            "alpha",
        )
        sock = conn.sock
        conn.request("GET", "/health")
        health = conn.getresponse()
        assert (health.status, health.read()) == (200, b"ok")
        conn.request("POST", "/submit", body=b"x" * 1000)
        posted = conn.getresponse()
        assert (posted.status, posted.read()) == (200, b"alpha\n")
        conn.request("HEAD", "/")
        head = conn.getresponse()
        assert (head.status, head.read(), head.getheader("Content-Length")) == (200, b"", "6")
        assert conn.sock is sock, "HTTP/1.1 keep-alive: all requests on one connection"
    finally:
        conn.close()

    echoed = http_get(f"{backend.url}/headers", host_header="app.example", headers={"X-Test": "1"})
    body = echoed.json()
    assert (body["name"], body["Host"], body["X-Test"]) == ("alpha", "app.example", "1")
    assert echoed.headers["Content-Type"] == "application/json"
    assert http_get(f"{backend.url}/status/503").status_code == 503
    assert http_get(f"{backend.url}/status/204").status_code == 204


def test_tcp_backend_greets_and_echoes(backend_factory: BackendFactory) -> None:
    backend = backend_factory("tcp1", mode="tcp")
    assert tcp_exchange(backend.port) == b"tcp1\n"
    assert tcp_exchange(backend.port, b"ping\x00pong") == b"tcp1\nping\x00pong"


def test_backend_context_manager_stops_by_pid() -> None:
    with Backend("ctx") as backend:
        wait_for_port(backend.port)
        pid = backend.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_waits_are_bounded_and_name_what_they_waited_for() -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=str(port)):
        wait_for_port(port, timeout=0.2)
    with pytest.raises(TimeoutError, match="never true.*ZeroDivisionError"):
        wait_until(lambda: 1 / 0, timeout=0.1, message="never true")
    assert wait_until(lambda: 42, timeout=0.1) == 42


# --------------------------------------------------------------------------- through haproxy


def test_http_round_robin(
    tmp_path: Path, backend_factory: BackendFactory, haproxy_factory: HAProxyFactory
) -> None:
    a, b = backend_factory("a"), backend_factory("b")
    port = free_port()
    haproxy_factory(write(tmp_path / "haproxy.cfg", http_config(port, [a, b])))

    seen = names_seen(f"http://127.0.0.1:{port}/", 10)
    assert set(seen) == {"a", "b"}
    assert http_get(f"http://127.0.0.1:{port}/").headers["X-Backend"] in {"a", "b"}


def test_tcp_through_haproxy(
    tmp_path: Path, backend_factory: BackendFactory, haproxy_factory: HAProxyFactory
) -> None:
    backend = backend_factory("db", mode="tcp")
    port = free_port()
    config = (
        "global\n    maxconn 256\n"
        + DEFAULTS.format(mode="tcp")
        + f"listen db\n    bind 127.0.0.1:{port}\n    server db 127.0.0.1:{backend.port}\n"
    )
    haproxy = haproxy_factory(write(tmp_path / "haproxy.cfg", config))
    assert tcp_exchange(port, b"hello") == b"db\nhello"

    # An open TCP connection keeps the old process alive after a soft reload, and
    # keeps working; the old process exits once the client closes it.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as held:
        assert held.recv(3) == b"db\n"
        old_pid = haproxy.pid
        with pytest.raises(TimeoutError, match=str(old_pid)):
            haproxy.reload(timeout=0.3)
        held.sendall(b"still here")
        assert held.recv(100) == b"still here"
        assert tcp_exchange(port, b"new") == b"db\nnew"
        assert haproxy.running_pids() == [old_pid, haproxy.pid]
    wait_until(lambda: haproxy.running_pids() == [haproxy.pid], message="old haproxy exits")


def test_tls_both_sides(
    tmp_path: Path, backend_factory: BackendFactory, haproxy_factory: HAProxyFactory
) -> None:
    cert = self_signed_cert(tmp_path / "site.pem", ["localhost", "127.0.0.1"])
    backend = backend_factory("secure", tls_cert=cert)
    assert http_get(f"{backend.url}/", verify=cert).text == "secure\n"
    port = free_port()
    config = (
        "global\n    maxconn 256\n"
        + DEFAULTS.format(mode="http")
        + f"frontend fe\n    bind 127.0.0.1:{port} ssl crt {cert}\n    default_backend be\n"
        + f"backend be\n    server s 127.0.0.1:{backend.port} ssl verify required"
        f" ca-file {cert} verifyhost localhost sni str(localhost)\n"
    )
    haproxy_factory(write(tmp_path / "haproxy.cfg", config))
    response = http_get(f"https://127.0.0.1:{port}/", verify=cert)
    assert (response.status_code, response.text) == (200, "secure\n")


def test_reload_command_switches_config_without_failed_requests(
    tmp_path: Path, backend_factory: BackendFactory, haproxy_factory: HAProxyFactory
) -> None:
    a, b = backend_factory("a"), backend_factory("b")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # expose-fd listeners lets the new process take over the listening socket (-x):
    # without it Linux resets connections queued on the old socket at the switch.
    seamless = f"    stats socket {tmp_path}/admin.sock mode 600 level admin expose-fd listeners\n"
    cfg = write(tmp_path / "haproxy.cfg", http_config(port, [a, b], seamless))
    haproxy = haproxy_factory(cfg)
    first_pid = haproxy.pid
    assert set(names_seen(url, 10)) == {"a", "b"}

    write(cfg, http_config(port, [a], seamless))
    results: list[subprocess.CompletedProcess[str]] = []

    def reload_three_times() -> None:  # as servicerouter runs --command: another process
        for _ in range(3):
            results.append(
                subprocess.run(haproxy.reload_command, capture_output=True, text=True, timeout=30)
            )

    reloader = threading.Thread(target=reload_three_times)
    reloader.start()
    failures: list[str] = []
    sent = 0
    try:
        while (reloader.is_alive() or sent < 20) and sent < 3000:
            try:
                response = http_get(url, timeout=5)
                if response.status_code != 200:
                    failures.append(f"status {response.status_code}: {response.text!r}")
            except requests.RequestException as exc:
                failures.append(repr(exc))
            sent += 1
    finally:
        reloader.join(timeout=60)
    assert not reloader.is_alive(), "reload command hung"
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert failures == [], f"{len(failures)} of {sent} requests failed during reloads"

    assert names_seen(url, 10) == ["a"] * 10
    assert len(haproxy.pids) == 4 and haproxy.pid != first_pid
    assert haproxy.running_pids() == [haproxy.pid], "old processes exited after soft stop"


def test_failed_reload_reports_haproxy_output_and_keeps_serving(
    tmp_path: Path, backend_factory: BackendFactory, haproxy_factory: HAProxyFactory
) -> None:
    a = backend_factory("a")
    port = free_port()
    cfg = write(tmp_path / "haproxy.cfg", http_config(port, [a]))
    haproxy = haproxy_factory(cfg)
    pid = haproxy.pid

    write(cfg, http_config(port, [a]) + "    no-such-keyword here\n")
    with pytest.raises(HAProxyError, match="no-such-keyword"):
        haproxy.reload()
    failed = subprocess.run(haproxy.reload_command, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1 and "no-such-keyword" in failed.stderr

    assert haproxy.pid == pid and haproxy.running_pids() == [pid]
    assert http_get(f"http://127.0.0.1:{port}/").text == "a\n"


def test_start_failure_fails_fast_with_haproxy_output(tmp_path: Path, haproxy_bin: str) -> None:
    cfg = write(
        tmp_path / "haproxy.cfg", "global\n    maxconn 10\nfrontend f\n    bind :notaport\n"
    )
    haproxy = HAProxy(cfg, haproxy_bin=haproxy_bin)
    try:
        with pytest.raises(HAProxyError, match="ALERT"):
            haproxy.start()
        assert haproxy.running_pids() == []
    finally:
        haproxy.stop()


def test_stop_leaves_no_process(tmp_path: Path, haproxy_bin: str) -> None:
    with Backend("a") as a:
        port = free_port()
        cfg = write(tmp_path / "haproxy.cfg", http_config(port, [a]))
        with HAProxy(cfg, haproxy_bin=haproxy_bin) as haproxy:
            haproxy.reload()
            subprocess.run(haproxy.reload_command, check=True, capture_output=True, timeout=30)
            assert http_get(f"http://127.0.0.1:{port}/").text == "a\n"
            pids = haproxy.pids
        pids.append(a.pid)
    assert len(pids) == 4
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_backend_script_runs_standalone() -> None:
    """The script is also a tool: `python tests/backend_server.py --help` works without the harness."""
    script = TESTS_DIR / "backend_server.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--tls-cert" in out.stdout


# --------------------------------------------------------------------------- free ports


_HOLD_PORTS = """
import sys
from tests.harness import free_port
print(" ".join(str(free_port()) for _ in range(50)), flush=True)
sys.stdin.read()  # hold the reservations until told to go
"""


def test_free_ports_are_reserved_across_processes_and_outside_the_ephemeral_range() -> None:
    """Two copies of the suite never get the same port, and the OS never hands it out.

    A port from bind(0)-then-close sits in the ephemeral range, where any other
    process's bind(0) or outgoing connection can take it before HAProxy binds it.
    """
    other = subprocess.Popen([sys.executable, "-c", _HOLD_PORTS], cwd=TESTS_DIR.parent,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None
        theirs = {int(p) for p in other.stdout.readline().split()}
        ours = {free_port() for _ in range(50)}
        assert len(theirs) == 50 and len(ours) == 50
        assert not theirs & ours
    finally:
        other.communicate("", timeout=10)
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
        ephemeral_low = int(handle.read().split()[0])
    assert max(ours | theirs) < ephemeral_low
    for port in ours:  # and each still binds (nothing else took it)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def test_free_port_skips_a_port_something_listens_on() -> None:
    port = free_port()
    with socket.socket() as squatter:  # as a service outside the suite would
        squatter.bind(("127.0.0.1", port + 1))
        squatter.listen()
        taken = {free_port() for _ in range(3)}
    assert port + 1 not in taken
