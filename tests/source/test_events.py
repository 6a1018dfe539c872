"""The --sse source (servicerouter.source.events): parsing, backoff, the stream thread."""

from __future__ import annotations

import logging
import random
import socket
import threading
from collections.abc import Iterator

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.source.events import Backoff, EventStream, SSEParser, decode_event
from servicerouter.source.marathon import ClientSettings
from tests.harness import free_port, wait_until

# --------------------------------------------------------------------------- parser


def test_parser_handles_any_split_comments_and_crlf() -> None:
    stream = (b": keep-alive\n\nevent: status_update_event\r\ndata: {\"a\":\n"
              b"data: 1}\r\n\r\n:\n\ndata: {\"eventType\":\"x\"}\n\n")
    for size in (1, 3, 7, len(stream)):
        parser = SSEParser()
        events = []
        for start in range(0, len(stream), size):
            events.extend(parser.feed(stream[start:start + size]))
        assert events == [("status_update_event", '{"a":\n1}'), ("message", '{"eventType":"x"}')]


def test_parser_drops_oversized_events_and_recovers() -> None:
    parser = SSEParser(max_event_bytes=10)
    assert parser.feed(b"data: 0123456789abc\n\n") == []
    assert parser.feed(b"x" * 20) == []  # a line that never ends
    assert parser.feed(b"\n\ndata: ok\n\n") == [("message", "ok")]
    assert parser.oversized == 2


def test_decode_event() -> None:
    assert decode_event("message", '{"eventType": "a"}') == {"eventType": "a"}
    assert decode_event("named", '{"x": 1}') == {"x": 1, "eventType": "named"}
    assert decode_event("message", "not json") is None
    assert decode_event("message", "[1, 2]") is None


def test_backoff_grows_jittered_and_capped() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(4))
    for failures, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0), (500, 8.0)]:
        delays = {backoff.delay(failures) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


# --------------------------------------------------------------------------- stream


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.connects: list[str] = []
        self.errors: list[str] = []

    def types(self) -> list[str]:
        return [e["eventType"] for e in self.events]


def make_stream(hosts: list[str], rec: Recorder, **kw) -> EventStream:
    kw.setdefault("backoff", Backoff(base=0.05, cap=0.2, rng=random.Random(1)))
    return EventStream(hosts, rec.events.append, rec.connects.append, rec.errors.append,
                       settings=ClientSettings(connect_timeout=1.0), **kw)


@pytest.fixture
def emulator() -> Iterator[MarathonEmulator]:
    with MarathonEmulator(keepalive_interval=0.2) as emu:
        emu.put_app({"id": "/web", "portDefinitions": [{"port": 0}]})
        yield emu


def test_stream_delivers_events_with_a_server_side_filter(emulator: MarathonEmulator) -> None:
    rec = Recorder()
    stream = make_stream([emulator.url], rec, event_types=["status_update_event"])
    stream.start()
    try:
        wait_until(lambda: rec.connects, 5)
        emulator.add_task("/web", "127.0.0.1", [31000])
        emulator.emit({"eventType": "framework_message_event"})  # filtered out by Marathon
        wait_until(lambda: "status_update_event" in rec.types(), 5)
        assert "framework_message_event" not in rec.types()
        assert any("/v2/events?event_type=status_update_event" in target
                   for _method, target in emulator.request_log)
        assert stream.status.connected and stream.status.events >= 1
    finally:
        stream.stop()
    assert not stream.status.connected


def test_stream_reconnects_after_an_outage_and_fails_over(emulator: MarathonEmulator) -> None:
    rec = Recorder()
    dead = f"http://127.0.0.1:{free_port()}"
    stream = make_stream([dead, emulator.url], rec)
    stream.start()
    try:
        wait_until(lambda: len(rec.connects) == 1, 5)
        assert rec.connects == [emulator.url] and rec.errors  # the dead host was tried first
        emulator.set_unavailable(True)
        wait_until(lambda: not stream.status.connected, 5)
        emulator.set_unavailable(False)
        wait_until(lambda: len(rec.connects) == 2, 10)
        assert stream.status.failures >= 2
    finally:
        stream.stop()


def test_stalled_stream_is_dropped_and_reopened() -> None:
    """A server that sends headers, then nothing: the watchdog must notice."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    rec = Recorder()
    stream = make_stream([f"http://127.0.0.1:{listener.getsockname()[1]}"], rec,
                         stall_timeout=0.3)
    stream.start()
    try:
        wait_until(lambda: len(rec.connects) >= 2, 10)
        assert any("stalled" in e for e in rec.errors)
    finally:
        stream.stop()
        # shutdown() wakes the accept() in serve(); a bare close() would leave it
        # blocked on a descriptor number a later test's listener may be given.
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        assert not thread.is_alive()
        for conn in conns:
            conn.close()


def test_non_event_stream_answers_are_errors(emulator: MarathonEmulator) -> None:
    emulator.set_unavailable(True, status=503)
    rec = Recorder()
    stream = make_stream([emulator.url], rec)
    stream.start()
    try:
        wait_until(lambda: rec.errors, 5)
        assert rec.errors[0].startswith("HTTP 503") and not rec.connects
    finally:
        stream.stop()


def test_handler_errors_do_not_kill_the_stream(emulator: MarathonEmulator) -> None:
    seen: list[dict] = []

    def explode(event: dict) -> None:
        seen.append(event)
        raise RuntimeError("handler bug")

    connects: list[str] = []
    stream = EventStream([emulator.url], explode, connects.append, event_types=(),
                         backoff=Backoff(base=0.05, cap=0.1))
    stream.start()
    try:
        wait_until(lambda: connects, 5)
        emulator.emit({"eventType": "a_event"})
        emulator.emit({"eventType": "b_event"})
        wait_until(lambda: len([e for e in seen if e["eventType"] in ("a_event", "b_event")]) == 2, 5)
        assert len(connects) == 1
    finally:
        stream.stop()


def test_stream_errors_are_one_readable_line_with_the_os_cause(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused port and an unresolvable host: host, what failed and the OS's words.

    Never urllib3's nested reprs ("HTTPConnectionPool(host=...): Max retries exceeded
    ... <urllib3.connection.HTTPConnection object at 0x...>"), which were cut at 200
    characters, mid-word, before the cause.
    """
    refused = f"http://127.0.0.1:{free_port()}"
    unresolvable = "http://no-such-host.invalid:8080"
    rec = Recorder()
    stream = make_stream([refused, unresolvable], rec)
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)
    stream.start()
    try:
        wait_until(lambda: len(rec.errors) >= 2, 10)
    finally:
        stream.stop()
    assert rec.errors[0] == "connection failed: Connection refused"
    assert rec.errors[1] in ("connection failed: Name or service not known",
                             "connection failed: Temporary failure in name resolution",
                             "connection failed: No address associated with hostname")
    lines = [r.getMessage() for r in caplog.records if "event stream from" in r.getMessage()]
    assert any(line.startswith(f"event stream from {refused}: connection failed: Connection "
                               "refused; reconnecting in") for line in lines), lines
    for line in lines:
        assert "\n" not in line and "object at 0x" not in line and "Pool(" not in line


def test_long_error_text_is_cut_at_a_word_without_urllib3_reprs() -> None:
    from servicerouter.source.marathon import _first_line

    err = RuntimeError(
        "HTTPConnectionPool(host='10.0.0.1', port=8080): Max retries exceeded with url: "
        "/v2/events (Caused by ProtocolError('Connection aborted.', "
        "<urllib3.connection.HTTPConnection object at 0x7f3a2b1c>: " + "wordy " * 60 + "))")
    text = _first_line(err)
    assert "Pool(" not in text and "object at 0x" not in text
    assert text.startswith("(Caused by ProtocolError('Connection aborted.', wordy")
    assert text.endswith("wordy ...") and len(text) <= 204
