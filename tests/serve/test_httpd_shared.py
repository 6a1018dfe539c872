"""What the callback and status endpoints answer alike (servicerouter.serve.httpd).

Both answer a method they do not serve with 405 (not the stdlib's 501), each with its
own words and headers, log each request at debug level on their own logger, and
never send a body to HEAD; both start and stop their serving thread the same way.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from servicerouter.serve.callback import CallbackServer
from servicerouter.serve.httpd import GuardedHTTPServer
from servicerouter.serve.status import Metrics, StatusServer


@pytest.fixture
def servers() -> Iterator[dict[str, GuardedHTTPServer]]:
    """A started callback server and status server on 127.0.0.1, stopped afterwards."""
    started: dict[str, GuardedHTTPServer] = {
        "callback": CallbackServer(("127.0.0.1", 0), lambda _event: None),
        "status": StatusServer(("127.0.0.1", 0), Metrics(), dict, lambda: (True, "ok")),
    }
    for server in started.values():
        server.start()
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def raw_answer(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` on a new connection; the status line, headers and whatever
    bytes follow the headers until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines)}
    return status_line, headers, rest


@pytest.mark.parametrize(("endpoint", "method", "body", "extra"), [
    ("callback", "PUT", b"only GET and POST\n", {"allow": "GET, POST"}),
    ("status", "FOO", b"read-only: GET or HEAD\n", {"cache-control": "no-store"}),
])
def test_a_method_not_served_is_405_with_the_endpoints_own_answer(
        servers: dict[str, GuardedHTTPServer], endpoint: str, method: str, body: bytes,
        extra: dict[str, str]) -> None:
    port = servers[endpoint].server_address[1]
    status_line, headers, rest = raw_answer(
        port, f"{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    assert status_line.split()[1] == "405"
    assert rest == body and headers["content-length"] == str(len(body))
    assert {k: headers.get(k) for k in extra} == extra


@pytest.mark.parametrize("endpoint", ["callback", "status"])
def test_head_answers_never_carry_a_body(servers: dict[str, GuardedHTTPServer],
                                         endpoint: str) -> None:
    """HTTP forbids a body on a HEAD answer: a client reading the next answer on the
    connection would take those bytes for it. (The callback endpoint's 405 to HEAD
    used to send one.)"""
    port = servers[endpoint].server_address[1]
    status_line, headers, rest = raw_answer(
        port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_line.split()[1] == ("405" if endpoint == "callback" else "200")
    assert int(headers["content-length"]) > 0 and rest == b""


def test_requests_are_logged_at_debug_on_each_servers_logger(
        servers: dict[str, GuardedHTTPServer], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("servicerouter.server", "servicerouter.status"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    caplog.set_level(logging.DEBUG)
    for endpoint in ("callback", "status"):
        raw_answer(servers[endpoint].server_address[1],
                   b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    lines = {(r.name, r.getMessage().split(":")[0]) for r in caplog.records
             if '"GET / HTTP/1.1"' in r.getMessage()}
    assert lines == {("servicerouter.server", "callback 127.0.0.1"),
                     ("servicerouter.status", "status 127.0.0.1")}


def test_start_names_the_thread_and_stop_ends_it() -> None:
    server = CallbackServer(("127.0.0.1", 0), lambda _event: None)
    server.start()
    assert server.port > 0
    assert any(t.name == "callbacks" for t in threading.enumerate())
    server.stop()
    assert not any(t.name == "callbacks" for t in threading.enumerate())
