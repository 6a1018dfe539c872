"""The emulator's HTTP plumbing: a threading server that can end every connection it
opened, and a request handler that hands each request to one dispatch function.

Why tracked connections: ``stop()`` must leave nothing behind (idle keep-alive
connections and open event streams included), so a test can start and stop emulators
freely; and a TLS handshake runs in the connection's thread, never in the accept loop.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servicerouter.emulator.payloads import EmulatorError, dumps

log = logging.getLogger(__name__)

Dispatch = Callable[["RequestHandler", str], None]
"""Answers one request (handler, method)."""


class EmulatorServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so ``stop()`` can end them."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dispatch: Dispatch,
                 ssl_context: ssl.SSLContext | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.dispatch = dispatch
        self.ssl_context = ssl_context
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (can be slow)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._run, args=(request, client_address),
                                  name="emulator-conn", daemon=True)
        with self._conn_lock:
            self._conn_threads.add(thread)
        thread.start()

    def _run(self, request: socket.socket, client_address: Any) -> None:
        try:
            if self.ssl_context is not None:
                request.settimeout(10)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            with self._conn_lock:
                self._connections.add(request)
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection from %s ended: %s", client_address, exc)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the server
            log.exception("error serving %s", client_address)
        finally:
            with self._conn_lock:
                self._connections.discard(request)
                self._conn_threads.discard(threading.current_thread())
            self.shutdown_request(request)

    def close_connections(self) -> None:
        """Abort every open connection (idle keep-alive ones and event streams)."""
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, timeout: float) -> None:
        with self._conn_lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(timeout)


class RequestHandler(BaseHTTPRequestHandler):
    """Routes one HTTP request to the emulator; speaks HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "MarathonEmulator/1.0"
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this
    server: EmulatorServer
    body: bytes = b""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.dispatch(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.dispatch(self, "POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.server.dispatch(self, "PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self.server.dispatch(self, "DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self.server.dispatch(self, "PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.dispatch(self, "HEAD")

    # helpers used by the emulator
    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_body(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, dumps(obj), headers=headers)


def json_body(handler: RequestHandler) -> Any:
    """The request body as JSON (``null`` when empty); 400 when it is not JSON."""
    try:
        return json.loads(handler.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise EmulatorError(400, f"Invalid JSON: {exc}") from None


def expect_dict(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise EmulatorError(422, "expected a JSON object")
    return body


def allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise EmulatorError(405, "HTTP 405 Method Not Allowed")
