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
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("servicerouter.httpd")

CONNECTION_DEADLINE = 30.0  # longest life of a connection, however it trickles
MAX_CONNECTIONS = 64


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose connection ends at the server's deadline."""

    server: GuardedHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # longest wait for any single read

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


class GuardedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, up to a cap, each living at most a deadline."""

    daemon_threads = True
    allow_reuse_address = True
    label = "HTTP server"  # names the server in log lines
    logger = log

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler], *,
                 max_connections: int = MAX_CONNECTIONS,
                 connection_deadline: float = CONNECTION_DEADLINE) -> None:
        super().__init__(address, handler)
        self.connection_deadline = connection_deadline
        self._slots = threading.BoundedSemaphore(max_connections)

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


__all__ = ["CONNECTION_DEADLINE", "MAX_CONNECTIONS", "GuardedHTTPServer", "GuardedHandler",
           "ListenError", "listen_error"]
