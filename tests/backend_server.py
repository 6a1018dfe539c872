"""A tiny named backend for end-to-end tests, run as its own process.

End-to-end tests route real traffic through a real HAProxy, so they need real
servers on the other side whose answers say *which* server answered. This script
is that server. It is a standalone program (stdlib only) rather than a thread in
the test process so that it can be started, killed and observed by PID exactly
like a production task, and so that a hung handler can never block the test
runner.

    python tests/backend_server.py --name NAME --port PORT [--mode http|tcp] [--tls-cert PEM]

http mode (HTTP/1.1 with keep-alive; every response carries ``X-Backend: NAME``):
    any path, GET/HEAD/POST/PUT/PATCH/DELETE/OPTIONS -> 200, body ``NAME\\n``
    /health                                          -> 200, body ``ok``
    /headers                                         -> 200, JSON of the request headers plus "name"
    /status/<code>                                   -> <code>, body ``NAME\\n``
    /location/<path>                                 -> 302, ``Location: /<path>``
tcp mode: on connect write ``NAME\\n``, then echo everything until the peer closes.

``--tls-cert PEM`` (certificate and key in one file, as HAProxy's ``crt``) makes the
server speak TLS in either mode; the handshake runs in the connection's own thread.

Binds 127.0.0.1 only. Prints ``ready`` on stdout once listening; exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import urlsplit

HOST = "127.0.0.1"
# Statuses whose responses must not carry a body (RFC 9110 §6.4.1).
NO_BODY_STATUSES = frozenset({204, 304})


class _TLSMixin:
    """Wraps each accepted connection in TLS inside its handler thread.

    Wrapping the listening socket instead would run every handshake in the accept
    loop, so one slow or broken client would stall all others.
    """

    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        if self.tls_context is None:
            super().finish_request(request, client_address)  # type: ignore[misc]
            return
        try:
            tls_sock = self.tls_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # failed handshake: nothing to serve, nothing to report
        try:
            super().finish_request(tls_sock, client_address)  # type: ignore[misc]
        finally:
            tls_sock.close()

    def handle_error(self, request: object, client_address: object) -> None:
        """Peers that vanish mid-request are normal in these tests; stay quiet."""


class HTTPBackend(_TLSMixin, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    backend_name = ""
    # Answers being written now: on SIGTERM the process lets them finish (as a real
    # app given Marathon's kill grace period does) instead of cutting one mid-body.
    answering = 0
    answering_lock = threading.Lock()

    def answers_finished(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the answers being written to finish."""
        deadline = time.monotonic() + timeout
        while self.answering and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.answering


class TCPBackend(_TLSMixin, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    backend_name = ""


class HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response sets Content-Length
    server_version = "servicerouter-test-backend/1"
    server: HTTPBackend

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_POST(self) -> None:
        self._drain_request_body()
        self._respond(send_body=True)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging; tests look at responses, not logs."""

    def _respond(self, send_body: bool) -> None:
        server = self.server
        with server.answering_lock:
            server.answering += 1
        try:
            self._answer(send_body)
        finally:
            with server.answering_lock:
                server.answering -= 1

    def _answer(self, send_body: bool) -> None:
        name = self.server.backend_name
        path = urlsplit(self.path).path
        status, content_type = 200, "text/plain; charset=utf-8"
        location = ""
        body = f"{name}\n".encode()
        if path == "/health":
            body = b"ok"
        elif path == "/headers":
            payload: dict[str, str] = dict(self.headers.items())
            payload["name"] = name
            body = json.dumps(payload, sort_keys=True).encode()
            content_type = "application/json"
        elif path.startswith("/location/"):
            status, location = 302, path.removeprefix("/location")
        elif path.startswith("/status/"):
            code = path.removeprefix("/status/")
            if not (code.isdigit() and 200 <= int(code) <= 599):
                status, body = 400, f"{name}: bad status {code!r}\n".encode()
            else:
                status = int(code)

        self.send_response(status)
        self.send_header("X-Backend", name)
        if location:
            self.send_header("Location", location)
        if status in NO_BODY_STATUSES:
            self.end_headers()
            return
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _drain_request_body(self) -> None:
        """Read and discard the request body so the connection can be kept alive."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                self.rfile.read(size + 2)  # chunk data + CRLF
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)


class TCPHandler(socketserver.BaseRequestHandler):
    server: TCPBackend

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            sock.sendall(f"{self.server.backend_name}\n".encode())
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass  # peer reset: the conversation is over either way


def _tls_context(pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    return context


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--mode", choices=("http", "tcp"), default="http")
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate + key bundle: serve TLS")
    args = parser.parse_args(argv)

    server_class: type[HTTPBackend] | type[TCPBackend]
    if args.mode == "http":
        server_class, handler = HTTPBackend, HTTPHandler
    else:
        server_class, handler = TCPBackend, TCPHandler
    server = server_class((HOST, args.port), handler)
    server.backend_name = args.name
    if args.tls_cert:
        server.tls_context = _tls_context(args.tls_cert)

    signal.signal(signal.SIGTERM, _on_sigterm)
    print("ready", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # no new connections; answers under way still finish
        if isinstance(server, HTTPBackend):
            server.answers_finished(2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
