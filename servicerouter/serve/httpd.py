"""Threaded HTTP servers a hostile client cannot exhaust (callbacks and status).

The stdlib's ``ThreadingHTTPServer`` gives each connection a thread for as
long as the client likes: one header byte sent just inside the read timeout
keeps it forever, and a few hundred such clients hold a few hundred threads.
Both of our endpoints (``--listening`` callbacks, ``--status-listen``) build
on these two classes instead, so both get the same limits:

- :class:`GuardedHTTPServer` serves at most ``max_connections`` at once and
  closes any connection beyond that at once;
- :class:`GuardedHandler` ends every connection at ``connection_deadline``
  seconds, however slowly it trickles (``timeout`` still bounds each read);
- an error on a connection (usually a client hanging up mid-answer) is one
  log line, never a traceback on stderr outside logging.

They also hold what both endpoints answer alike: whole answers with a
Content-Length (:meth:`GuardedHandler.send_text`), 405 for any method an
endpoint does not serve (not the stdlib's 501), the access log at debug level
on the server's logger, and the serving thread's start and stop.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("servicerouter.httpd")

CONNECTION_DEADLINE = 30.0  # longest life of a connection, however it trickles
MAX_CONNECTIONS = 64
TEXT_PLAIN = "text/plain; charset=utf-8"


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose connection ends at the server's deadline."""

    server: GuardedHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # longest wait for any single read
    log_name = "http"  # names the endpoint in its access log lines
    cache_control: str | None = None  # sent with every answer when set
    not_allowed_text = "method not allowed\n"  # the body of a 405
    allow: str | None = None  # the Allow header of a 405, when the endpoint names one

    def setup(self) -> None:
        super().setup()
        # However slowly a client trickles, its connection ends at the deadline.
        self.deadline = time.monotonic() + self.server.connection_deadline
        self._timer = threading.Timer(self.server.connection_deadline, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def finish(self) -> None:
        self._timer.cancel()
        super().finish()

    def _expire(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        self.server.logger.debug("%s %s: " + format, self.log_name, self.client_address[0],
                                 *args)

    def send_text(self, status: int, body: str, content_type: str = TEXT_PLAIN,
                  headers: Sequence[tuple[str, str]] = ()) -> None:
        """One whole answer: always a Content-Length (the connection stays usable),
        ``headers`` after the standard ones, and no body to HEAD (HTTP forbids one)."""
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.cache_control:
            self.send_header("Cache-Control", self.cache_control)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def __getattr__(self, name: str) -> Any:
        # Any method the endpoint does not serve (PUT, FOO...) is a 405, not the stdlib's 501.
        if name.startswith("do_"):
            return self.not_allowed
        raise AttributeError(name)

    def not_allowed(self) -> None:
        self.close_connection = True
        self.send_text(405, self.not_allowed_text,
                       headers=[("Allow", self.allow)] if self.allow else ())


class GuardedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, up to a cap, each living at most a deadline."""

    daemon_threads = True
    allow_reuse_address = True
    label = "HTTP server"  # names the server in log lines
    logger = log
    thread_name = "http"  # the serving thread's name
    poll_interval = 0.5  # how soon stop() is noticed

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler], *,
                 max_connections: int = MAX_CONNECTIONS,
                 connection_deadline: float = CONNECTION_DEADLINE) -> None:
        super().__init__(address, handler)
        self.connection_deadline = connection_deadline
        self._slots = threading.BoundedSemaphore(max_connections)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name,
                                        kwargs={"poll_interval": self.poll_interval},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, up to the cap; beyond it the connection is closed."""
        if not self._slots.acquire(blocking=False):
            self.logger.warning("%s: too many connections, dropping %s", self.label,
                                _host(client_address))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of the stdlib's traceback on stderr."""
        err = sys.exc_info()[1]
        if isinstance(err, OSError):  # hung up, reset, cut at the deadline: routine
            self.logger.debug("%s: connection from %s ended: %s", self.label,
                              _host(client_address), _one_line(err))
        else:
            self.logger.warning("%s: error on a connection from %s: %s", self.label,
                                _host(client_address), _one_line(err))


def _host(client_address: Any) -> str:
    if isinstance(client_address, tuple) and client_address:
        return str(client_address[0])
    return str(client_address)


def _one_line(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


class ListenError(Exception):
    """One of our HTTP servers cannot bind (its port is taken): a startup error.

    The message is one line naming the flag and the address, for the log.
    """


def listen_error(flag: str, address: tuple[str, int], err: OSError) -> ListenError:
    host, port = address
    shown = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
    reason = err.strerror or str(err)
    return ListenError(f"{flag}: cannot listen on {shown}: {reason}")


__all__ = ["CONNECTION_DEADLINE", "MAX_CONNECTIONS", "TEXT_PLAIN", "GuardedHTTPServer",
           "GuardedHandler", "ListenError", "listen_error"]
