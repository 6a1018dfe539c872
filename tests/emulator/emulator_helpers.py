"""Helpers of the Marathon emulator tests: fixture payloads, an SSE reader, callbacks.

``SSE`` reads the emulator's event stream, ``next_event`` the events a callback
endpoint (``_Collector``, served by the ``callback_server`` fixture) received.
"""

from __future__ import annotations

import json
import queue
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests

from tests.paths import MARATHON_FIXTURES

FIXTURES = MARATHON_FIXTURES
ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


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

    def next_of(self, event_type: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next ``event_type`` event; TimeoutError after ``timeout`` seconds (the
        stream's keep-alive comments would otherwise keep a missed event waited for ever)."""
        deadline = time.monotonic() + timeout
        while True:
            kind, data = self.next(comments=True)
            if kind == event_type:
                return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event_type} event within {timeout} s")

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
