"""Marathon's event stream (``GET /v2/events``, server-sent events): the ``--sse`` source.

Why a stream and not only callbacks: nothing has to reach *us* (no port to
open, no subscription to leak when we die), and a broken stream is noticed
at once.  Three things make it dependable:

* **Stall watchdog**: the socket read timeout is the watchdog.  Marathon
  sends keep-alive comments; when nothing at all (no event, no keep-alive)
  arrives for ``stall_timeout`` seconds the connection is dropped and
  re-opened, so a half-dead TCP connection cannot silently freeze routing.
* **Reconnect** with jittered exponential backoff (:class:`Backoff`), moving
  to the next ``--marathon`` host after each failure, so a fleet of routers
  does not reconnect in lockstep to a Marathon that just came back.
* **Full resync on every (re)connect** (``on_connect``): events sent while
  we were away are lost, so the caller refetches everything once.

Parsing (:class:`SSEParser`) is pure; :class:`EventStream` is the thread
that owns the connection.  ``event_type`` query parameters ask Marathon
(1.x) to send only the events that matter; older versions ignore them and
the caller's own classification filters the rest.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from servicerouter.source.backoff import Backoff
from servicerouter.source.changes import APP_EVENT_TYPES
from servicerouter.source.marathon import ClientSettings, _first_line, describe_error
from servicerouter.source.marathon_urls import _redact

log = logging.getLogger("servicerouter.events")

# What routing needs (sent as Marathon's server-side ``event_type`` filter).
ROUTING_EVENTS: tuple[str, ...] = (
    "status_update_event",
    "health_status_changed_event",
    *APP_EVENT_TYPES,
    "group_change_success",
)
MAX_EVENT_BYTES = 16 * 1024 * 1024  # deployment events carry whole app groups


@dataclass
class SSEParser:
    """Server-sent events framing: ``event:``/``data:`` lines, a blank line ends one.

    ``feed`` takes raw bytes as they arrive (any split) and returns the
    complete events, each as ``(event name, data text)``.  Comment lines
    (``:`` keep-alives) produce nothing but count as traffic.
    """

    max_event_bytes: int = MAX_EVENT_BYTES
    _buffer: bytes = b""
    _name: str = ""
    _data: list[str] = field(default_factory=list)
    _size: int = 0
    oversized: int = 0

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._buffer += chunk
        events: list[tuple[str, str]] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > self.max_event_bytes:  # a line that never ends
                    self._buffer = b""
                    self._reset()
                    self.oversized += 1
                return events
            raw, self._buffer = self._buffer[:newline], self._buffer[newline + 1:]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self._data:
                    events.append((self._name or "message", "\n".join(self._data)))
                self._reset()
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                self._name = value
            elif key == "data":
                self._size += len(value)
                if self._size > self.max_event_bytes:
                    self.oversized += 1
                    self._data = []
                    self._size = 0
                    continue
                self._data.append(value)

    def _reset(self) -> None:
        self._name = ""
        self._data = []
        self._size = 0


def decode_event(name: str, data: str) -> dict[str, Any] | None:
    """An event dict from one SSE message; None if it is not a JSON object."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    if not isinstance(event.get("eventType"), str) and name and name != "message":
        event["eventType"] = name
    return event


@dataclass
class StreamStatus:
    """What /status shows about the stream."""

    connected: bool = False
    host: str | None = None
    connected_since: float | None = None
    last_traffic: float | None = None
    connects: int = 0
    failures: int = 0
    last_error: str | None = None
    events: int = 0
    bad_events: int = 0


class EventStream:
    """A thread reading ``/v2/events`` from the ``--marathon`` hosts, forever.

    ``on_event(event)`` gets every decoded event; ``on_connect(host)`` runs
    each time a stream is established (resync then); ``on_error(reason)``
    for every failed attempt or dropped stream.  Callbacks run on the stream
    thread and must be quick (they only queue work).
    """

    def __init__(
        self,
        hosts: Sequence[str],
        on_event: Callable[[dict[str, Any]], None],
        on_connect: Callable[[str], None],
        on_error: Callable[[str], None] | None = None,
        *,
        settings: ClientSettings | None = None,
        event_types: Iterable[str] = ROUTING_EVENTS,
        stall_timeout: float = 60.0,
        backoff: Backoff | None = None,
        healthy_after: float = 10.0,
    ) -> None:
        if not hosts:
            raise ValueError("at least one Marathon host is needed")
        self.hosts = [h.rstrip("/") for h in hosts]
        self.on_event = on_event
        self.on_connect = on_connect
        self.on_error = on_error or (lambda _reason: None)
        self.settings = settings or ClientSettings()
        self.event_types = tuple(event_types)
        self.stall_timeout = stall_timeout
        self.backoff = backoff or Backoff()
        self.healthy_after = healthy_after
        self.status = StreamStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: requests.Response | None = None
        self._lock = threading.Lock()
        self._host_index = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="marathon-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; wakes a blocked read by shutting the socket down."""
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shutdown(response)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        failures = 0
        session = self._session()
        try:
            while not self._stop.is_set():
                host = self.hosts[self._host_index % len(self.hosts)]
                started = time.monotonic()
                reason = self._read_stream(session, host)
                if self._stop.is_set():
                    return
                lasted = time.monotonic() - started
                failures = 0 if lasted >= self.healthy_after else failures + 1
                self.status.failures += 1
                self.status.last_error = reason
                self.on_error(reason)
                if failures:
                    self._host_index += 1  # try the next host
                delay = self.backoff.delay(max(failures - 1, 0))
                log.warning("event stream from %s: %s; reconnecting in %.1fs",
                            _redact(host), reason, delay)
                if self._stop.wait(delay):
                    return
        finally:
            session.close()

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.headers.update({"Accept": "text/event-stream", "Cache-Control": "no-cache"})
        if self.settings.auth:
            session.auth = self.settings.auth
        if self.settings.token_auth is not None:
            session.auth = self.settings.token_auth
        session.verify = self.settings.verify
        if self.settings.client_cert:
            session.cert = self.settings.client_cert
        return session

    def _read_stream(self, session: requests.Session, host: str) -> str:
        """Read one connection until it ends; returns why it ended."""
        url = host + "/v2/events"
        params = {"event_type": list(self.event_types)} if self.event_types else None
        try:
            response = session.get(url, params=params, stream=True,
                                   timeout=(self.settings.connect_timeout, self.stall_timeout))
        except requests.exceptions.Timeout:
            return "connect timed out"
        except requests.exceptions.RequestException as err:
            return describe_error(err)
        with self._lock:
            self._response = response
        try:
            if response.status_code != 200:
                return f"HTTP {response.status_code} {response.reason or ''}".strip()
            content_type = response.headers.get("Content-Type", "")
            if "text/event-stream" not in content_type:
                return f"not an event stream (Content-Type {content_type!r})"
            self.status.connected = True
            self.status.host = host
            self.status.connected_since = time.time()
            self.status.connects += 1
            log.info("event stream connected to %s", _redact(host))
            self._host_index = self.hosts.index(host)
            self.on_connect(host)
            return self._consume(response)
        finally:
            self.status.connected = False
            with self._lock:
                self._response = None
            response.close()

    def _consume(self, response: requests.Response) -> str:
        parser = SSEParser()
        try:
            for chunk in _chunks(response):
                if self._stop.is_set():
                    return "stopped"
                self.status.last_traffic = time.time()
                for name, data in parser.feed(chunk):
                    event = decode_event(name, data)
                    if event is None:
                        self.status.bad_events += 1
                        log.warning("event stream: ignoring a message that is not a JSON "
                                    "object (%d bytes)", len(data))
                        continue
                    self.status.events += 1
                    try:
                        self.on_event(event)
                    except Exception:  # a handler bug must not kill the stream
                        log.exception("error while handling %s", event.get("eventType"))
        except (requests.exceptions.RequestException, OSError, ValueError) as err:
            if self._stop.is_set():
                return "stopped"
            text = _first_line(err)
            if "timed out" in text.lower() or "timeout" in type(err).__name__.lower():
                return f"stalled: nothing received for {self.stall_timeout:.0f}s"
            return f"stream broken: {text}"
        except Exception as err:  # urllib3 protocol errors are not all RequestExceptions
            if self._stop.is_set():
                return "stopped"
            text = _first_line(err)
            if "timed out" in text.lower():
                return f"stalled: nothing received for {self.stall_timeout:.0f}s"
            return f"stream broken: {type(err).__name__}: {text}"
        return "stream closed by Marathon"


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """Bytes as they arrive (not in fixed-size blocks, which would delay events)."""
    raw = response.raw
    if getattr(raw, "chunked", False) and raw.supports_chunked_reads():
        yield from raw.read_chunked(decode_content=True)
        return
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        while True:
            data = read1(65536)
            if not data:
                return
            yield data
    else:  # pragma: no cover - urllib3 1.x without read1
        yield from raw.stream(1, decode_content=True)


def _shutdown(response: requests.Response) -> None:
    """Wake a thread blocked reading ``response`` (closing alone does not)."""
    connection = getattr(response.raw, "_connection", None) or getattr(
        response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


__all__ = [
    "ROUTING_EVENTS",
    "Backoff",
    "EventStream",
    "SSEParser",
    "StreamStatus",
    "decode_event",
]
