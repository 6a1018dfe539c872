"""Fixtures of the emulator tests: an emulator, an HTTP session, a callback endpoint.

``no_leftover_threads`` fails a test that leaves an emulator thread running; the
emulator test modules use it for every test (``pytest.mark.usefixtures``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from tests.emulator.emulator_helpers import _Collector


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("emulator-")]
        if not left:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left behind: {left}")


@pytest.fixture
def emulator() -> Iterator[MarathonEmulator]:
    with MarathonEmulator(keepalive_interval=0.2) as emu:
        yield emu


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def callback_server() -> Iterator[tuple[str, queue.Queue[tuple[str, str, bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = queue.Queue()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callback", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
