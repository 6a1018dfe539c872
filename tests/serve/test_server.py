"""The --listening callback endpoint under hostile clients (servicerouter.serve.callback).

Raw sockets on 127.0.0.1, so every byte is under the test's control: size limits,
JSON-only bodies, 4xx for anything malformed, slow clients cut off, a connection cap,
and the optional callback token. A bad request never reaches ``on_event``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator

import pytest

from servicerouter.serve import callback as server_module
from servicerouter.serve.addresses import is_loopback
from servicerouter.serve.callback import (
    MAX_BODY,
    CallbackServer,
    callback_port,
    callback_token,
)
from tests.harness import trickle_until_closed

EVENT = json.dumps({"eventType": "status_update_event", "appId": "/web"}).encode()


@pytest.fixture
def events() -> list[dict[str, object]]:
    return []


@pytest.fixture
def make_server(events: list[dict[str, object]],
                monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``make(**kwargs)`` -> a started CallbackServer on 127.0.0.1 with short timeouts."""
    monkeypatch.setattr(server_module._Handler, "timeout", 0.5)
    started: list[CallbackServer] = []

    def make(**kwargs: object) -> CallbackServer:
        kwargs.setdefault("connection_deadline", 1.5)
        srv = CallbackServer(("127.0.0.1", 0), events.append, **kwargs)  # type: ignore[arg-type]
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def port(make_server: object) -> int:
    return make_server().port  # type: ignore[operator]


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def exchange(port: int, raw: bytes) -> int:
    """Send ``raw``, half-close, return the status code of the answer (0: none)."""
    with _connect(port) as sock:
        sock.sendall(raw)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        answer = _read_all(sock)
    if answer.startswith(b"HTTP/"):
        return int(answer.split(b" ", 2)[1])
    # A request line too broken to have a version gets an HTTP/0.9 answer: body only.
    match = re.search(rb"Error code: (\d{3})", answer)
    return int(match.group(1)) if match else 0


def post(body: bytes, *, target: str = "/", content_type: str | None = "application/json",
         length: str | None = None) -> bytes:
    headers = [f"POST {target} HTTP/1.1", "Host: x", "Connection: close"]
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    headers.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def test_event_is_accepted(port: int, events: list[dict[str, object]]) -> None:
    assert exchange(port, post(EVENT)) == 200
    assert events == [json.loads(EVENT)]


@pytest.mark.parametrize("raw, status", [
    (post(EVENT, length=None).replace(b"Content-Length", b"X-Length"), 411),
    (post(EVENT, length="ten"), 400),
    (post(EVENT, length="-1"), 413),
    (post(b"", length=str(MAX_BODY + 1)), 413),
    (post(EVENT, content_type="text/plain"), 400),
    (post(EVENT, content_type="application/x-www-form-urlencoded"), 400),
    (post(b"not json"), 400),
    (post(b"\xff\xfe{}"), 400),
    (post(b"[1, 2]"), 400),
    (post(b'{"type": "status_update_event"}'), 400),
    (post(b'{"eventType": 5}'), 400),
    (post(b'{"eventType": "x"'), 400),
    (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"this is not http\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
])
def test_malformed_requests_get_4xx(port: int, events: list[dict[str, object]], raw: bytes,
                                    status: int) -> None:
    assert exchange(port, raw) == status
    assert events == []


def test_large_body_is_refused_before_it_is_read(port: int) -> None:
    """413 comes back while the client is still (claiming to be) sending."""
    with _connect(port) as sock:
        sock.sendall(post(b"", length=str(MAX_BODY * 4)) + b"{" * 1000)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_truncated_body_times_out(port: int, events: list[dict[str, object]]) -> None:
    with _connect(port) as sock:
        sock.sendall(post(EVENT[:10], length=str(len(EVENT))))
        assert _read_all(sock) == b""  # closed without an answer, nothing delivered
    assert events == []


def test_slow_headers_are_cut_off(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        assert _read_all(sock) == b""  # closed after the read timeout, no answer
    # The server is still serving others.
    assert exchange(port, post(EVENT)) == 200


def test_trickling_client_is_cut_off_at_the_deadline(make_server: object,
                                                     events: list[dict[str, object]]) -> None:
    """One byte at a time, each within the read timeout: the connection deadline ends it."""
    srv = make_server(connection_deadline=1.0)  # type: ignore[operator]
    with _connect(srv.port) as sock:
        sock.sendall(post(b"", length=str(len(EVENT))))
        closed = trickle_until_closed(sock, (bytes([byte]) for byte in EVENT), wait=0.3)
        assert closed, "the server kept a trickling connection open"
    assert events == []


def test_connection_cap(make_server: object, events: list[dict[str, object]]) -> None:
    srv = make_server(max_connections=2, connection_deadline=30.0)  # type: ignore[operator]
    idle = [_connect(srv.port), _connect(srv.port)]
    try:
        exchange_status = None
        for _ in range(50):  # the two idle ones may take a moment to be accepted
            exchange_status = exchange(srv.port, post(EVENT))
            if exchange_status == 0:
                break
        assert exchange_status == 0, "a third connection was served"
    finally:
        for sock in idle:
            sock.close()
    for _ in range(100):  # slots come back once the idle connections are gone
        if exchange(srv.port, post(EVENT)) == 200:
            break
    assert events, "no request served after the idle connections closed"


def test_token_is_required_when_configured(make_server: object,
                                           events: list[dict[str, object]]) -> None:
    srv = make_server(token="s3cret")  # type: ignore[operator]
    assert exchange(srv.port, post(EVENT)) == 403
    assert exchange(srv.port, post(EVENT, target="/?token=wrong")) == 403
    assert exchange(srv.port, post(EVENT, target="/?token=")) == 403
    assert events == []
    assert exchange(srv.port, post(EVENT, target="/callback?token=s3cret")) == 200
    assert len(events) == 1


def test_handler_bug_does_not_break_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module._Handler, "timeout", 0.5)

    def broken(_event: dict[str, object]) -> None:
        raise RuntimeError("boom")

    srv = CallbackServer(("127.0.0.1", 0), broken)
    srv.start()
    try:
        assert exchange(srv.port, post(EVENT)) == 200
        assert exchange(srv.port, post(EVENT)) == 200
    finally:
        srv.stop()


def test_keep_alive_requests_share_a_connection(port: int,
                                                events: list[dict[str, object]]) -> None:
    one = post(EVENT).replace(b"Connection: close", b"Connection: keep-alive")
    with _connect(port) as sock:
        sock.sendall(one + one)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 200") == 2
    assert len(events) == 2


def test_helpers(caplog: pytest.LogCaptureFixture) -> None:
    assert callback_token("http://lb1:8080/?token=abc&x=1") == "abc"
    assert callback_token("http://lb1:8080/callback") is None
    assert callback_port("http://lb1/") == 8000
    assert callback_port("http://lb1:[bad/") == 8000
    # the callback server decides on the warning with the status server's check
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("") and not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    with caplog.at_level(logging.WARNING, logger="servicerouter"):
        srv = CallbackServer(("127.0.0.1", 0), lambda _e: None)
        srv.server_close()
    assert not any("anyone" in r.getMessage() for r in caplog.records)


def _isolate_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo what an earlier in-process cli.main() did to the servicerouter logger
    (its own stderr handler, no propagation), so stderr and caplog see only this test."""
    logger = logging.getLogger("servicerouter")
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", [])


@pytest.mark.parametrize("body", [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"eventType": "x", "plan": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
])
def test_deeply_nested_json_is_a_400_not_a_traceback(port: int, events: list[dict[str, object]],
                                                     body: bytes,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    _isolate_logging(monkeypatch)
    assert exchange(port, post(body)) == 400
    assert events == []
    assert exchange(port, post(EVENT)) == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("error, level", [
    (RuntimeError("boom\nsecond line"), logging.WARNING),
    (ConnectionResetError(104, "Connection reset by peer"), logging.DEBUG),  # client hung up
])
def test_connection_errors_are_one_log_line_not_a_traceback(
        make_server: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str], error: Exception, level: int) -> None:
    def fail(_self: object) -> None:
        raise error

    monkeypatch.setattr(server_module._Handler, "do_GET", fail)
    _isolate_logging(monkeypatch)
    srv = make_server()  # type: ignore[operator]
    with caplog.at_level(logging.DEBUG, logger="servicerouter"):
        exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for _ in range(100):  # logged on the server's thread, after the client is gone
            if any("connection from" in r.getMessage() for r in caplog.records):
                break
            time.sleep(0.02)
    lines = [r for r in caplog.records if "connection from 127.0.0.1" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == level
    assert "\n" not in lines[0].getMessage() and lines[0].exc_info is None
    assert capfd.readouterr().err == ""
