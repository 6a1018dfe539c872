"""The HTTP endpoint Marathon posts events to (``--listening``).

Only what a callback needs: JSON bodies of bounded size, read with a socket
timeout and a whole-request deadline so a slow client cannot hold a thread
forever, at most :data:`MAX_CONNECTIONS` connections at once; anything
malformed gets a 4xx and is otherwise ignored.  Handling an event only
schedules a sync (see :class:`~servicerouter.engine.runner.SyncTrigger`); the sync
itself never runs on a request thread.

A callback URL with a ``token`` query parameter (``-l
'http://lb1:8080/?token=SECRET'``; Marathon posts to the URL as given) makes
the token mandatory: a POST without it gets 403 and triggers nothing.
Without a token anyone who reaches the port can post, so the live router
takes such events only as hints of what to ask Marathon, never their content
(see :meth:`servicerouter.engine.live.LiveRouter.submit`).  The connection limits
are :mod:`servicerouter.serve.httpd`'s, shared with the status endpoint.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

from servicerouter.serve.addresses import is_loopback
from servicerouter.serve.httpd import (
    CONNECTION_DEADLINE,
    MAX_CONNECTIONS,
    GuardedHandler,
    GuardedHTTPServer,
)

log = logging.getLogger("servicerouter.server")

MAX_BODY = 16 * 1024 * 1024  # deployment events carry whole app groups
REQUEST_TIMEOUT = 10.0  # longest wait for any single read
DEFAULT_CALLBACK_PORT = 8000


def callback_port(callback_url: str) -> int:
    """The port of the callback URL, 8000 when it has none (as servicerouter.py)."""
    try:
        port = urlparse(callback_url).port
    except ValueError:
        port = None
    return port or DEFAULT_CALLBACK_PORT


def callback_token(callback_url: str) -> str | None:
    """The ``token`` query parameter of the callback URL, if any."""
    try:
        values = parse_qs(urlparse(callback_url).query).get("token")
    except ValueError:
        return None
    return values[0] if values else None


def _token_of(target: str) -> str:
    values = parse_qs(urlparse(target).query).get("token")
    return values[0] if values else ""


class _Handler(GuardedHandler):
    server: CallbackServer
    timeout = REQUEST_TIMEOUT
    log_name = "callback"
    not_allowed_text = "only GET and POST\n"
    allow = "GET, POST"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.send_text(200, "servicerouter\n")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        token = self.server.token
        if token and not hmac.compare_digest(_token_of(self.path).encode(), token.encode()):
            self.close_connection = True
            self.send_text(403, "token required\n")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self.send_text(411, "Content-Length required\n")
            return
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self.send_text(400, "bad Content-Length\n")
            return
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self.send_text(413, f"body larger than {MAX_BODY} bytes\n")
            return
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0]
        if content_type.strip().lower() not in ("application/json", "text/json"):
            self.close_connection = True
            # 400 like any other bad callback body (Marathon always sends JSON)
            self.send_text(400, "JSON bodies only (Content-Type: application/json)\n")
            return
        try:
            body = self._read_body(length)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if len(body) < length:  # the client went away or the deadline passed
            self.close_connection = True
            return
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self.send_text(400, "body is not JSON\n")
            return
        except RecursionError:  # e.g. 200,000 nested arrays: hostile, not an event
            self.send_text(400, "JSON nested too deeply\n")
            return
        if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
            self.send_text(400, "not a Marathon event (no eventType)\n")
            return
        try:
            self.server.on_event(event)
        except Exception:  # the router must survive any handler bug
            log.exception("error while handling %s", event.get("eventType"))
        self.send_text(200, "Got it\n")

    def _read_body(self, length: int) -> bytes:
        chunks: list[bytes] = []
        remaining = length
        while remaining > 0:
            if time.monotonic() > self.deadline:
                raise TimeoutError("request deadline passed")
            chunk = self.rfile.read1(min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)


class CallbackServer(GuardedHTTPServer):
    """Serves callbacks on a daemon thread; ``on_event`` gets each event dict."""

    label = "callback server"
    logger = log
    thread_name = "callbacks"
    poll_interval = 0.1

    def __init__(self, address: tuple[str, int],
                 on_event: Callable[[dict[str, Any]], None], *, token: str | None = None,
                 max_connections: int = MAX_CONNECTIONS,
                 connection_deadline: float = CONNECTION_DEADLINE) -> None:
        super().__init__(address, _Handler, max_connections=max_connections,
                         connection_deadline=connection_deadline)
        self.on_event = on_event
        self.token = token
        if not token and not is_loopback(address[0]):
            log.warning("callback server on %s:%d takes events from anyone who can reach it "
                        "(so they only make servicerouter ask Marathon); add ?token=SECRET "
                        "to the --listening URL to require one", address[0] or "*", self.port)
