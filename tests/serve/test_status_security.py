"""The admin endpoint (--status-listen: /healthz, /status, /metrics) against hostile clients.

Off loopback it refuses to start without a token; with a token /status, /metrics (and any
other path) want ``Authorization: Bearer TOKEN`` (not a query string, not another scheme),
while /healthz answers liveness probes without it but says only "ok" or "unhealthy"; slow
clients are cut off; anything but GET/HEAD and anything malformed gets a 4xx; and what it
shows never holds Marathon credentials.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator

import pytest

from servicerouter.serve import status as status_module
from servicerouter.serve.status import Metrics, StatusServer
from servicerouter.source.marathon import MarathonClient
from tests.harness import trickle_until_closed

TOKEN = "t0ken-Secret"


@pytest.fixture(scope="module")
def secured() -> Iterator[StatusServer]:
    """One token-protected server for the module, with a short read timeout."""
    timeout = status_module._Handler.timeout
    status_module._Handler.timeout = 0.5
    srv = StatusServer(("127.0.0.1", 0), Metrics(), lambda: {"ok": True},
                       lambda: (True, "ok"), token=TOKEN)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        status_module._Handler.timeout = timeout


def _request(port: int, raw: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if data.startswith(b"HTTP/"):
        return int(data.split(b" ", 2)[1]), data
    # A request line too broken to have a version gets an HTTP/0.9 answer: body only.
    match = re.search(rb"Error code: (\d{3})", data)
    return (int(match.group(1)) if match else 0), data


def _get(port: int, path: str, *headers: str, method: str = "GET") -> int:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close", *headers]
    return _request(port, ("\r\n".join(lines) + "\r\n\r\n").encode())[0]


def test_off_loopback_without_token_is_refused_before_binding() -> None:
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.com"):
        with pytest.raises(ValueError, match="needs --status-token"):
            StatusServer((host, 0), Metrics(), dict, lambda: (True, "ok"))


@pytest.mark.parametrize("path", ["/status", "/metrics", "/nope", "/healthz/../status"])
def test_every_endpoint_but_healthz_needs_the_token(secured: StatusServer, path: str) -> None:
    port = secured.port
    assert _get(port, path) == 401
    assert _get(port, path, "Authorization: Bearer wrong") == 401
    assert _get(port, path, f"Authorization: Basic {TOKEN}") == 401
    assert _get(port, path, f"Authorization: Bearer {TOKEN}x") == 401
    assert _get(port, f"{path}?token={TOKEN}") == 401
    assert _get(port, path, f"Authorization: Bearer {TOKEN}") in (200, 404)


def _body(port: int, path: str, *headers: str) -> tuple[int, bytes]:
    lines = [f"GET {path} HTTP/1.1", "Host: x", "Connection: close", *headers]
    status, data = _request(port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("healthy, reason, status, anonymous", [
    (True, "starting", 200, b"ok\n"),
    (False, "managed HAProxy is not running", 503, b"unhealthy\n"),
])
def test_healthz_needs_no_token_and_says_only_ok_or_unhealthy(
        healthy: bool, reason: str, status: int, anonymous: bytes) -> None:
    srv = StatusServer(("127.0.0.1", 0), Metrics(), lambda: {"apps": ["/secret"]},
                       lambda: (healthy, reason), token=TOKEN)
    srv.start()
    try:
        for headers in ((), ("Authorization: Bearer wrong",), (f"Authorization: Basic {TOKEN}",)):
            assert _body(srv.port, "/healthz", *headers) == (status, anonymous)
        assert _body(srv.port, f"/healthz?token={TOKEN}") == (status, anonymous)
        # A token holder gets the reason; /status stays closed to everyone else.
        assert _body(srv.port, "/healthz", f"Authorization: Bearer {TOKEN}") == \
            (status, reason.encode() + b"\n")
        assert _get(srv.port, "/healthz", method="HEAD") == status
        assert _get(srv.port, "/status") == 401
    finally:
        srv.stop()


def test_a_failing_health_check_is_unhealthy_not_a_crash() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("bug with /secret/details")

    srv = StatusServer(("127.0.0.1", 0), Metrics(), dict, broken, token=TOKEN)
    srv.start()
    try:
        assert _body(srv.port, "/healthz") == (503, b"unhealthy\n")
    finally:
        srv.stop()


def test_401_says_nothing(secured: StatusServer) -> None:
    status, data = _request(secured.port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 401 and b'"ok"' not in data


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "FOO"])
def test_only_reads_are_allowed(secured: StatusServer, method: str) -> None:
    assert _get(secured.port, "/status", f"Authorization: Bearer {TOKEN}",
                "Content-Length: 0", method=method) == 405


@pytest.mark.parametrize("raw, expected", [
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /status HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /status HTTP/9.9\r\n\r\n", 505),
    (b"GET /status HTTP/1.1 extra\r\n\r\n", 400),
])
def test_malformed_requests(secured: StatusServer, raw: bytes, expected: int) -> None:
    status, data = _request(secured.port, raw)
    assert status == expected, data[:200]


def test_slow_client_is_cut_off(secured: StatusServer) -> None:
    with socket.create_connection(("127.0.0.1", secured.port), timeout=10) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        assert sock.recv(1024) == b""  # the server hangs up after its read timeout
    assert _get(secured.port, "/healthz", f"Authorization: Bearer {TOKEN}") == 200


def test_marathon_host_shown_on_status_has_no_credentials() -> None:
    client = MarathonClient(["http://router:pa55word@127.0.0.1:1"])
    try:
        # credentials move out of the URL into the session: nothing left to show
        assert client.current == "http://127.0.0.1:1"
        assert client.settings.auth == ("router", "pa55word")
    finally:
        client.close()


@pytest.fixture
def bounded() -> Iterator[StatusServer]:
    """A status server with a short connection deadline and a cap of two connections."""
    srv = StatusServer(("127.0.0.1", 0), Metrics(), lambda: {"ok": True},
                       lambda: (True, "ok"), token=TOKEN, max_connections=2,
                       connection_deadline=1.0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_trickling_client_is_cut_off_at_the_deadline(bounded: StatusServer) -> None:
    """One header byte every 0.2 s, well inside the read timeout: the deadline ends it."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\n")
        closed = trickle_until_closed(sock, [b"X"] * 25)  # 25 x 0.2 s at most
    assert closed, "the status server kept a trickling connection open"
    assert time.monotonic() - start < 3


def test_connection_cap(bounded: StatusServer) -> None:
    idle = [socket.create_connection(("127.0.0.1", bounded.port), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.2)  # both accepted and holding their slots
        with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as third:
            try:
                third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = third.recv(1024)
            except OSError:  # closed before the request got there
                answer = b""
        assert answer == b"", "a third connection was served"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5  # slots come back once the idle ones are gone
    while True:
        try:
            if _get(bounded.port, "/healthz") == 200:
                break
        except OSError:  # still dropped: the slots are not back yet
            pass
        assert time.monotonic() < deadline, "no slot came back"
        time.sleep(0.05)


def test_connection_errors_are_one_log_line(bounded: StatusServer,
                                            monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    def fail(_self: object) -> bool:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(status_module._Handler, "_authorized", fail)
    # an earlier in-process cli.main() leaves its own handler and no propagation
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("servicerouter"), "handlers", [])
    with caplog.at_level(logging.DEBUG, logger="servicerouter"):
        _request(bounded.port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 2
        while not any("connection from" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "nothing logged"
            time.sleep(0.02)
    assert [r.getMessage() for r in caplog.records if "connection from" in r.getMessage()] == [
        "status server: connection from 127.0.0.1 ended: BrokenPipeError: [Errno 32] Broken pipe"]
    assert capfd.readouterr().err == ""
