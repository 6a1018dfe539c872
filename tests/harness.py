"""Building blocks for end-to-end tests: real HAProxy, real backends, real traffic.

End-to-end tests prove what unit tests cannot: that the config servicerouter
writes makes a real HAProxy 2.6 route real HTTP/TLS/TCP traffic, and that its
reload command swaps configs without dropping requests. Everything here runs on
127.0.0.1 with ports reserved for this process (:func:`free_port`), waits by polling a condition with a bounded
timeout (never a bare sleep), and stops what it started by PID -- including from a
session finalizer, so a failing test cannot leak processes into the next one.

HAProxy process model (the choice, and why)
-------------------------------------------
:class:`HAProxy` always runs ``haproxy -D -f CFG -p PIDFILE`` (daemon + pidfile)
rather than ``-db`` (foreground), and reloads with ``-sf OLDPID`` (plus ``-x SOCK``
when the config has ``stats socket ... expose-fd listeners``). That is how the
init scripts servicerouter.py was written against reloaded HAProxy, and it makes a
reload triggered by the harness and one triggered by servicerouter's ``--command``
(:attr:`HAProxy.reload_command`, which runs ``tests/haproxy_reload.py`` in another
process) the same code: :func:`tests.haproxy_reload.launch`. The current pid is
always re-read from disk (``PIDFILE.pids``), so the object follows reloads it did
not perform itself.

A daemonised HAProxy is not our child: when it exits it stays a zombie (which
``os.kill(pid, 0)`` still finds) until its parent reaps it, and in containers whose
init does not reap promptly that can be forever. So the first :meth:`HAProxy.start`
makes the test process a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): every
orphaned descendant, including HAProxy started by servicerouter's reload command,
is re-parented to the test process, which reaps the pids it recorded. Side effect:
other orphans of the test process stay zombies until it exits; they hold no ports.

The module-level mutable state is ``_PORTS`` (ports reserved for this process, see
:func:`free_port`) and ``_REGISTRY``, the record of every pid (and
HAProxy pid log) the harness started, which :func:`reap_all` kills at session end
(``tests/conftest.py``) and again at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import ipaddress
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import requests

from tests import haproxy_reload
from tests.haproxy_reload import LaunchError, is_alive, owns, wait_gone

__all__ = [
    "Backend",
    "HAProxy",
    "HAProxyError",
    "find_haproxy",
    "free_port",
    "http_get",
    "reap_all",
    "self_signed_cert",
    "tcp_exchange",
    "wait_for_port",
    "wait_until",
]

TESTS_DIR = Path(__file__).resolve().parent
BACKEND_SCRIPT = str(TESTS_DIR / "backend_server.py")
RELOAD_SCRIPT = str(TESTS_DIR / "haproxy_reload.py")
LOCALHOST = "127.0.0.1"
_PR_SET_CHILD_SUBREAPER = 36

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


def self_signed_cert(
    path: str | os.PathLike[str], hostnames: Iterable[str] = ("localhost", LOCALHOST),
    days: int = 7,
) -> str:
    """Write a self-signed certificate + key bundle (HAProxy ``crt`` format) to ``path``.

    The bundle works as HAProxy's ``crt``, backend_server's ``--tls-cert`` and
    requests' ``verify=``. ``hostnames`` become SANs (IP addresses as IP SANs).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names = list(hostnames)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    Path(path).write_bytes(pem)
    return str(path)


# --------------------------------------------------------------------------- pid registry


class _PidRegistry:
    """Every process the harness started, so the session can kill what tests left.

    Entries carry a marker that must appear in the process's command line before
    it is signalled, so a recycled pid is never hit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: dict[int, str] = {}
        self._haproxy_pidfiles: set[str] = set()

    def add_pid(self, pid: int, marker: str) -> None:
        with self._lock:
            self._pids[pid] = marker

    def discard_pid(self, pid: int) -> None:
        with self._lock:
            self._pids.pop(pid, None)

    def add_haproxy(self, pidfile: str) -> None:
        with self._lock:
            self._haproxy_pidfiles.add(pidfile)

    def discard_haproxy(self, pidfile: str) -> None:
        with self._lock:
            self._haproxy_pidfiles.discard(pidfile)

    def reap_all(self) -> list[int]:
        """Kill every recorded process still alive; return the pids that were."""
        with self._lock:
            pids, self._pids = self._pids, {}
            pidfiles, self._haproxy_pidfiles = self._haproxy_pidfiles, set()
        targets = dict(pids)
        for pidfile in pidfiles:
            targets.update(dict.fromkeys(haproxy_reload.recorded_pids(pidfile), pidfile))
        leaked = [pid for pid, marker in targets.items() if owns(pid, marker)]
        _terminate(leaked, targets, [(signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)])
        for pidfile in pidfiles:
            shutil.rmtree(os.path.dirname(pidfile), ignore_errors=True)
        return leaked


_REGISTRY = _PidRegistry()
atexit.register(_REGISTRY.reap_all)  # outside pytest too; a no-op once the session reaped


def reap_all() -> list[int]:
    """Kill every process the harness started that is still running (session cleanup)."""
    return _REGISTRY.reap_all()


def _terminate(
    pids: list[int], markers: dict[int, str], steps: list[tuple[signal.Signals, float]]
) -> list[int]:
    """Send each signal in turn to the pids still alive, waiting up to its timeout."""
    alive = [pid for pid in pids if is_alive(pid)]
    for sig, timeout in steps:
        for pid in alive:
            if owns(pid, markers[pid]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        alive = wait_gone(alive, timeout)
        if not alive:
            break
    return alive


def _become_subreaper() -> None:
    """Adopt our orphaned descendants (daemonised HAProxy) so we can reap them."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


# --------------------------------------------------------------------------- backends


class Backend:
    """A ``tests/backend_server.py`` process answering with its name on 127.0.0.1."""

    def __init__(
        self,
        name: str,
        port: int | None = None,
        mode: str = "http",
        tls_cert: str | os.PathLike[str] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if mode not in ("http", "tcp"):
            raise ValueError(f"mode must be 'http' or 'tcp', not {mode!r}")
        self.name = name
        self.port = port if port is not None else free_port()
        self.mode = mode
        self.tls_cert = str(tls_cert) if tls_cert is not None else None
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"backend {self.name!r} was never started")
        return self._proc.pid

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_cert and self.mode == "http" else "http"
        return f"{scheme}://{LOCALHOST}:{self.port}"

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, port={self.port}, mode={self.mode!r})"

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError(f"{self!r} already started")
        argv = [
            sys.executable,
            BACKEND_SCRIPT,
            "--name",
            self.name,
            "--port",
            str(self.port),
            "--mode",
            self.mode,
        ]
        if self.tls_cert:
            argv += ["--tls-cert", self.tls_cert]
        with tempfile.TemporaryFile() as stderr:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
            )
            _REGISTRY.add_pid(self._proc.pid, BACKEND_SCRIPT)
            try:
                self._wait_ready()
            except BaseException:
                self.stop()
                stderr.seek(0)
                output = stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"{self!r} did not start:\n{output}") from None

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        deadline = time.monotonic() + self.start_timeout
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no 'ready' within {self.start_timeout}s")
                if selector.select(remaining):
                    chunk = os.read(stdout.fileno(), 64)
                    if not chunk:
                        raise RuntimeError(f"exited with status {self._proc.wait()}")
                    line += chunk
        stdout.close()  # it prints nothing after "ready"
        if line.strip() != b"ready":
            raise RuntimeError(f"unexpected output {line!r}")

    def kill(self) -> None:
        """Crash it: SIGKILL, and return once the process is gone (its sockets closed)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.kill()
        proc.wait(timeout=5.0)
        if proc.stdout is not None:
            proc.stdout.close()
        _REGISTRY.discard_pid(proc.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 3 s. Idempotent."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3.0)
        if proc.stdout is not None:
            proc.stdout.close()
        _REGISTRY.discard_pid(proc.pid)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- haproxy


class HAProxyError(RuntimeError):
    """HAProxy refused to start or reload; the message includes its output."""


def find_haproxy(haproxy_bin: str) -> str:
    found = shutil.which(haproxy_bin)
    if found is None and haproxy_bin == "haproxy" and os.access("/usr/sbin/haproxy", os.X_OK):
        found = "/usr/sbin/haproxy"  # not on PATH for non-root users on Debian
    if found is None:
        raise FileNotFoundError(f"haproxy not installed (looked for {haproxy_bin!r})")
    return found


class HAProxy:
    """A real HAProxy for one config file, managed by pid (see the module docstring).

    ``pid`` follows reloads done by anyone (the harness or ``reload_command``);
    ``pids`` lists every process started for this instance, old ones included.
    """

    def __init__(self, config_path: str | os.PathLike[str], haproxy_bin: str = "haproxy") -> None:
        self.config_path = os.path.abspath(config_path)
        self.haproxy_bin = find_haproxy(haproxy_bin)
        self._state_dir = tempfile.mkdtemp(prefix="sr-haproxy-")
        self.pidfile = os.path.join(self._state_dir, "haproxy.pid")
        self.reload_command: list[str] = [
            sys.executable,
            RELOAD_SCRIPT,
            "--haproxy",
            self.haproxy_bin,
            "--config",
            self.config_path,
            "--pidfile",
            self.pidfile,
        ]
        self.last_output = ""  # HAProxy's stderr from the last start/reload (warnings)
        self._stopped_pids: list[int] | None = None

    def __repr__(self) -> str:
        pids = self.pids
        return f"HAProxy({self.config_path!r}, pid={pids[-1] if pids else None})"

    @property
    def pid(self) -> int:
        pids = self.pids
        if not pids:
            raise RuntimeError(f"haproxy for {self.config_path} was never started")
        return pids[-1]

    @property
    def pids(self) -> list[int]:
        if self._stopped_pids is not None:
            return list(self._stopped_pids)
        return haproxy_reload.recorded_pids(self.pidfile)

    def running_pids(self) -> list[int]:
        return [pid for pid in self.pids if is_alive(pid)]

    def start(self) -> None:
        """Start HAProxy; raises HAProxyError with its output if it does not come up."""
        if self._stopped_pids is not None:
            raise RuntimeError(f"{self!r} was stopped; create a new HAProxy")
        if self.running_pids():
            raise RuntimeError(f"{self!r} is already running")
        _become_subreaper()
        _REGISTRY.add_haproxy(self.pidfile)
        self._launch(wait_old_timeout=0.0)

    def reload(self, timeout: float = 10.0, wait_old: bool = True) -> None:
        """Soft reload: the new process takes over, the old one finishes and exits.

        Raises HAProxyError (old process still serving) if the new one does not start,
        TimeoutError if the old one is still running after ``timeout`` seconds: it
        waits for its open connections (idle HTTP keep-alive ones it closes at once;
        an open TCP-mode connection holds it until the client or a timeout closes it).
        ``wait_old=False`` returns as soon as the new process runs, e.g. to check
        that an established connection survives the reload.
        """
        result = self._launch(wait_old_timeout=timeout if wait_old else 0.0)
        if wait_old and not result.old_exited:
            raise TimeoutError(
                f"old haproxy pid {result.old_pid} still running {timeout:g}s after "
                f"reload to pid {result.pid} (a client holding a connection open?)"
            )

    def _launch(self, wait_old_timeout: float) -> haproxy_reload.LaunchResult:
        try:
            result = haproxy_reload.launch(
                self.haproxy_bin,
                self.config_path,
                self.pidfile,
                wait_old_timeout=wait_old_timeout,
            )
        except LaunchError as exc:
            self.last_output = exc.output
            raise HAProxyError(f"{self.config_path}: {exc}") from None
        self.last_output = result.output
        return result

    def stop(self, grace: float = 2.0) -> None:
        """Soft-stop every process of this instance (SIGUSR1), then SIGTERM, then SIGKILL.

        Raises RuntimeError if a process survives SIGKILL. Idempotent.
        """
        markers = dict.fromkeys(self.pids, self.pidfile)
        survivors = _terminate(
            list(markers),
            markers,
            [(signal.SIGUSR1, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)],
        )
        if survivors:
            raise RuntimeError(f"haproxy pids {survivors} survived SIGKILL")
        _REGISTRY.discard_haproxy(self.pidfile)
        if self._stopped_pids is None:
            self._stopped_pids = self.pids
        shutil.rmtree(self._state_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
