"""Processes for end-to-end tests: real backends, real HAProxy, and the pid registry.

Part of the end-to-end harness; :mod:`tests.harness` explains the HAProxy process
model (daemon + pidfile, reload with ``-sf``, the test process as child subreaper).
The module-level mutable state is ``_REGISTRY``, the record of every pid (and
HAProxy pid log) the harness started, which :func:`reap_all` kills at session end
(``tests/conftest.py``) and again at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests import haproxy_reload
from tests.haproxy_reload import LaunchError, is_alive, owns, wait_gone
from tests.harness_net import LOCALHOST, free_port

TESTS_DIR = Path(__file__).resolve().parent
BACKEND_SCRIPT = str(TESTS_DIR / "backend_server.py")
RELOAD_SCRIPT = str(TESTS_DIR / "haproxy_reload.py")
_PR_SET_CHILD_SUBREAPER = 36


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
