"""Waiting and traffic for end-to-end tests: reserved ports, polling, HTTP/TCP clients.

Part of the end-to-end harness (see :mod:`tests.harness` for the whole picture);
everything binds and connects on 127.0.0.1 only. The module-level mutable state
is ``_PORTS``, the ports reserved for this process (see :func:`free_port`).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests

LOCALHOST = "127.0.0.1"

T = TypeVar("T")


# --------------------------------------------------------------------------- waiting


class _PortReservations:
    """Ports reserved for this test process, so whoever binds them later cannot lose a race.

    The old way (bind port 0, read the number, close, let HAProxy or a backend bind it
    later) raced: in between, the OS could hand the same ephemeral port to anyone else's
    ``bind(0)`` or outgoing connection, most often to a second copy of the suite running
    beside this one. Ports here come from a range *below* the kernel's ephemeral range
    (``ip_local_port_range``), which the OS never hands out on its own, and each one is
    claimed across processes by a POSIX record lock on byte ``port`` of one shared file;
    the kernel drops the locks when this process exits, however it exits. A port still
    has to bind right now (a service outside the suite may listen there) before it is
    handed out; then only a process ignoring the lock could take it.
    """

    LOCK_FILE = os.path.join(tempfile.gettempdir(), "servicerouter-test-ports.lock")
    SPAN = 10000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None  # never closed: closing any fd of the file drops our locks
        self._given: set[int] = set()
        self._low, self._high = self._range()
        self._next = self._low + (os.getpid() * 7919) % (self._high - self._low)

    @classmethod
    def _range(cls) -> tuple[int, int]:
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
                ephemeral_low = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            ephemeral_low = 32768  # Linux's default
        high = min(ephemeral_low, 32768)
        return max(1024, high - cls.SPAN), high

    def take(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
            for _ in range(self._high - self._low):
                port = self._next
                self._next = self._low + (port + 1 - self._low) % (self._high - self._low)
                if port in self._given or not self._claim(port):
                    continue
                if self._binds(port):
                    self._given.add(port)
                    return port
                self._release(port)
            raise RuntimeError(f"no free port left in {self._low}-{self._high}")

    def _claim(self, port: int) -> bool:
        import fcntl

        assert self._fd is not None
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
            return True
        except OSError:  # another process of the suite holds it
            return False

    def _release(self, port: int) -> None:
        import fcntl

        assert self._fd is not None
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, port)

    @staticmethod
    def _binds(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy binds
            try:
                sock.bind((LOCALHOST, port))
            except OSError:
                return False
        return True


_PORTS = _PortReservations()


def free_port() -> int:
    """A TCP port on 127.0.0.1 reserved for this test process (see :class:`_PortReservations`).

    Safe to hand to a process that binds it later (HAProxy, a backend, servicerouter):
    no other copy of the suite and no ephemeral allocation can take it meanwhile. A
    port is not reused within one process, so a "dead" URL built on one stays dead.
    """
    return _PORTS.take()


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Exceptions from ``predicate`` count as "not yet" (a server that is still
    starting refuses connections); the last one is named in the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # any failure means "not yet"
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else ""
            raise TimeoutError(f"{message} (waited {timeout:g}s{detail})")
        time.sleep(interval)


def wait_for_port(port: int, host: str = LOCALHOST, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""

    def accepts() -> bool:
        with socket.create_connection((host, port), timeout=min(1.0, timeout)):
            return True

    wait_until(accepts, timeout, message=f"nothing accepts connections on {host}:{port}")


# --------------------------------------------------------------------------- traffic


def http_get(
    url: str, host_header: str | None = None, timeout: float = 5.0, **kw: Any
) -> requests.Response:
    """GET ``url`` on a fresh connection, ignoring proxy/netrc settings from the environment.

    ``host_header`` sets ``Host`` (virtual-host routing while connecting to
    127.0.0.1); other keyword arguments go to ``requests`` (``headers``, ``verify``,
    ``allow_redirects``, ``cert``...). A fresh session per call means each request is
    a new TCP connection, so round-robin and reload tests see every routing decision.
    """
    headers = dict(kw.pop("headers", None) or {})
    if host_header is not None:
        headers["Host"] = host_header
    session = requests.Session()
    session.trust_env = False
    try:
        return session.get(url, headers=headers, timeout=timeout, **kw)
    finally:
        if not kw.get("stream"):
            session.close()


def tcp_exchange(
    port: int, payload: bytes = b"", host: str = LOCALHOST, timeout: float = 5.0
) -> bytes:
    """Talk to a tcp-mode backend (directly or through HAProxy): greeting line + echo.

    Reads the greeting line, sends ``payload``, reads back as many bytes as were
    sent (or until the peer closes), and returns greeting + echo. An empty result
    means the connection was closed without a greeting (e.g. no server available).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        received = b""
        while b"\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                return received
            received += chunk
        greeting, _, echo = received.partition(b"\n")
        if payload:
            sock.sendall(payload)
            while len(echo) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                echo += chunk
        return greeting + b"\n" + echo


def trickle_until_closed(sock: socket.socket, chunks: Iterable[bytes],
                         wait: float = 0.2) -> bool:
    """Send ``chunks`` one at a time, ``wait`` seconds apart (a slow client); True as soon
    as the server closes the connection, False if every chunk went out and it did not."""
    sock.settimeout(wait)
    for chunk in chunks:  # bounded by the caller's chunks
        try:
            sock.sendall(chunk)
            if sock.recv(1) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False
