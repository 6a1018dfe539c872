"""The emulator's event side: the ``/v2/events`` SSE streams and HTTP callback delivery.

Why queues: events are serialized once and fanned out through queues, one per SSE client
and one for the callback delivery thread, so a state change never waits on the network.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from servicerouter.emulator.payloads import dumps

if TYPE_CHECKING:
    from servicerouter.emulator.server import RequestHandler

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTSTANDING_EVENTS = 10_000
"""Events buffered per SSE client before it is dropped as too slow. Marathon does the
same (``--event_stream_max_outstanding_messages``, default 50); ours is lenient."""


@dataclass
class SseClient:
    """One attached ``/v2/events`` stream."""

    remote: str
    event_types: frozenset[str]
    events: queue.Queue[bytes | None] = field(
        default_factory=lambda: queue.Queue(DEFAULT_MAX_OUTSTANDING_EVENTS))

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class EventBus:
    """Fans serialized events out to SSE clients and HTTP callback subscribers.

    ``publish`` only enqueues; the callback thread POSTs, and each SSE handler thread
    writes its own stream, so a publisher never blocks on a slow consumer.
    """

    def __init__(self, callback_timeout: float) -> None:
        self._lock = threading.Lock()
        self._clients: list[SseClient] = []
        self._callbacks: list[str] = []
        self._outbox: queue.Queue[tuple[tuple[str, ...], bytes] | None] = queue.Queue()
        self._timeout = callback_timeout
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._outbox = queue.Queue()
        self._thread = threading.Thread(target=self._deliver_loop, name="emulator-callbacks",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._outbox.put(None)
        self.detach_all()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)
            self._thread = None

    # callbacks
    @property
    def callbacks(self) -> list[str]:
        with self._lock:
            return list(self._callbacks)

    def subscribe(self, url: str) -> None:
        with self._lock:
            if url not in self._callbacks:
                self._callbacks.append(url)

    def unsubscribe(self, url: str) -> bool:
        with self._lock:
            if url in self._callbacks:
                self._callbacks.remove(url)
                return True
            return False

    # SSE
    def attach(self, client: SseClient) -> None:
        with self._lock:
            self._clients.append(client)

    def detach(self, client: SseClient) -> bool:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
                return True
            return False

    def detach_all(self) -> None:
        """End every SSE stream (stop, simulated outage)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            self._close_client(client)

    @staticmethod
    def _close_client(client: SseClient) -> None:
        try:
            client.events.put_nowait(None)
        except queue.Full:
            # The writer is far behind; make room for the end marker.
            try:
                while True:
                    client.events.get_nowait()
            except queue.Empty:
                pass
            client.events.put_nowait(None)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, event: dict[str, Any]) -> None:
        """Serialize once, enqueue for every interested SSE client and every callback."""
        data = dumps(event)
        event_type = str(event.get("eventType", ""))
        sse = b"event: " + event_type.encode() + b"\ndata: " + data + b"\n\n"
        slow: list[SseClient] = []
        with self._lock:
            for client in self._clients:
                if client.wants(event_type):
                    try:
                        client.events.put_nowait(sse)
                    except queue.Full:
                        slow.append(client)
            for client in slow:
                self._clients.remove(client)
            callbacks = tuple(self._callbacks)
        for client in slow:
            log.warning("dropping slow event stream client %s", client.remote)
            self._close_client(client)
        if callbacks and not self._stopping.is_set():
            self._outbox.put((callbacks, data))

    def _deliver_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._stopping.is_set():
                return
            urls, data = item
            for url in urls:
                if self._stopping.is_set():
                    return
                self._post(url, data)

    def _post(self, url: str, data: bytes) -> None:
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # Marathon logs failed callback deliveries and carries on.
            log.warning("event callback to %s failed: %s", url, exc)


@dataclass
class EventStreamSettings:
    """What ``/v2/events`` needs from the emulator besides the bus, read per request."""

    keepalive_interval: float
    max_outstanding_events: int
    state_lock: AbstractContextManager[Any]
    """Held while attaching and announcing, so no state event slips in before
    ``event_stream_attached``."""
    emit: Callable[[dict[str, Any]], None]
    serving: Callable[[], bool]


def serve_event_stream(handler: RequestHandler, params: dict[str, list[str]], bus: EventBus,
                       settings: EventStreamSettings) -> None:
    """``/v2/events``: a chunked ``text/event-stream`` until the client or we hang up."""
    types = frozenset(t for v in params.get("event_type", []) for t in v.split(",") if t)
    remote = handler.client_address[0]
    client = SseClient(remote=remote, event_types=types,
                       events=queue.Queue(settings.max_outstanding_events))
    handler.close_connection = True
    chunked = handler.request_version != "HTTP/1.0"

    def write(data: bytes) -> None:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    # Subscribed before the answer's headers go out: a client that has them (requests'
    # get(stream=True) returns then) gets every event emitted after, as from Marathon.
    with settings.state_lock:  # attach and announce atomically: "attached" comes first
        bus.attach(client)
        settings.emit({"eventType": "event_stream_attached", "remoteAddress": remote})
    try:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        while True:
            try:
                item = client.events.get(timeout=settings.keepalive_interval)
            except queue.Empty:
                if not settings.serving():
                    break  # stopped while this stream was being set up
                write(b":\n\n")
                continue
            if item is None:
                break
            write(item)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
    except (OSError, ValueError):
        pass  # client went away
    finally:
        if bus.detach(client):
            settings.emit({"eventType": "event_stream_detached", "remoteAddress": remote})
