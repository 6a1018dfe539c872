"""fetch_apps_body reads Marathon's answer in one call, with requests' own guarantees.

The apps body is read with one urllib3 read instead of requests' 10 KiB chunks
(twice as fast at 40 MB): content and transfer encodings must still be decoded,
a body cut short must still fail (and fail over to the next host), and the
connection must be reusable by the next fetch.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from servicerouter.source.marathon import MarathonClient, MarathonError

BODY = b'{"apps": [' + b",".join(b'{"id": "/a%d"}' % i for i in range(5000)) + b"]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    shape = "plain"
    connections: set[int] = set()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).connections.add(self.client_address)
        if self.shape == "gzip":
            data = gzip.compress(BODY)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.shape == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(BODY), 7000):
                piece = BODY[start:start + 7000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif self.shape == "short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:1000])
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    def log_message(self, *_args: object) -> None:
        pass


def serve(shape: str) -> Iterator[str]:
    handler = type(f"Handler_{shape}", (Handler,), {"shape": shape, "connections": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["plain", "gzip", "chunked"])
def marathon(request: pytest.FixtureRequest) -> Iterator[tuple[str, type]]:
    yield from serve(request.param)


def test_the_body_is_decoded_and_the_connection_reused(marathon: tuple[str, type]) -> None:
    url, handler = marathon
    client = MarathonClient([url])
    assert client.fetch_apps_body() == BODY
    assert client.fetch_apps_body() == BODY
    assert len(handler.connections) == 1  # the second fetch reused the first connection
    client.close()


def test_a_body_cut_short_fails_over_to_the_next_host() -> None:
    short = serve("short")
    good = serve("plain")
    short_url, _ = next(short)
    good_url, _ = next(good)
    try:
        assert MarathonClient([short_url, good_url]).fetch_apps_body() == BODY
        with pytest.raises(MarathonError, match="request failed"):
            MarathonClient([short_url]).fetch_apps_body()
    finally:
        for gen in (short, good):
            gen.close()


def test_a_closed_port_is_a_marathon_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(MarathonError, match="connection failed"):
            MarathonClient([f"http://127.0.0.1:{sock.getsockname()[1]}"]).fetch_apps_body()
