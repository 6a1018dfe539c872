"""The HTTP endpoint Marathon posts events to (``--listening``).

Only what a callback needs: JSON bodies of bounded size, read with a socket
timeout so a slow client cannot hold a thread forever; anything malformed
gets a 4xx and is otherwise ignored.  Handling an event only schedules a sync
(see :class:`~servicerouter.runner.SyncTrigger`); the sync itself never runs on
a request thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger("servicerouter.server")

MAX_BODY = 16 * 1024 * 1024  # deployment events carry whole app groups
REQUEST_TIMEOUT = 10.0
DEFAULT_CALLBACK_PORT = 8000


def callback_port(callback_url: str) -> int:
    """The port of the callback URL, 8000 when it has none (as servicerouter.py)."""
    try:
        port = urlparse(callback_url).port
    except ValueError:
        port = None
    return port or DEFAULT_CALLBACK_PORT


class _Handler(BaseHTTPRequestHandler):
    server: CallbackServer
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("callback %s: " + format, self.client_address[0], *args)

    def _reply(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._reply(200, "servicerouter\n")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._reply(411, "Content-Length required\n")
            return
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self._reply(400, "bad Content-Length\n")
            return
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._reply(413, f"body larger than {MAX_BODY} bytes\n")
            return
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0]
        if content_type.strip().lower() not in ("application/json", "text/json"):
            self.close_connection = True
            self._reply(415, "JSON bodies only\n")
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            return
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self._reply(400, "body is not JSON\n")
            return
        if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
            self._reply(400, "not a Marathon event (no eventType)\n")
            return
        try:
            self.server.on_event(event)
        except Exception:  # the router must survive any handler bug
            log.exception("error while handling %s", event.get("eventType"))
        self._reply(200, "Got it\n")


class CallbackServer(ThreadingHTTPServer):
    """Serves callbacks on a daemon thread; ``on_event`` gets each event dict."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int],
                 on_event: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(address, _Handler)
        self.on_event = on_event
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
