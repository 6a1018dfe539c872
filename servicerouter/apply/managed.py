"""A managed HAProxy (``--manage-haproxy``): started, reloaded, watched and restarted here.

servicerouter starts HAProxy itself in master-worker mode
(``-W -db -S MASTER_SOCKET``), with a Runtime API socket exposing its
listeners (``expose-fd listeners``) so each new worker takes the listening
sockets over from the old one and no connection is refused during a reload,
and ``hard-stop-after`` so old workers holding long connections cannot pile
up.  A reload is the master CLI's ``reload`` command, *confirmed* by reading
``show proc`` until the master's reload counter moves: a failed reload shows
in its ``failed`` counter, and the old worker keeps serving.  A watchdog
restarts HAProxy if it dies.  A master left running by an earlier
servicerouter (found by pidfile and master socket) is adopted, not duplicated.

Changes applied to the running worker without a reload (the Runtime API) are in
:mod:`servicerouter.apply.runtime_api`.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from servicerouter.apply.reloads import ReloadResult
from servicerouter.apply.runtime_api import (  # the first three: see __all__
    RuntimeAPI,
    RuntimeApplier,
    RuntimeUpdateError,
    unix_command,
)

log = logging.getLogger("servicerouter.manager")
haproxy_log = logging.getLogger("servicerouter.haproxy.process")

_MASTER_LINE = re.compile(r"^(\d+)\s+master\s+(\d+)(?:\s*\[failed:\s*(\d+)\])?")
_PROC_LINE = re.compile(r"^(\d+)\s+(\S+)\s+(\d+)")


class ManagerError(Exception):
    """HAProxy could not be started, reloaded or reached."""


@dataclass(frozen=True)
class ProcInfo:
    """The master's ``show proc``: its reload counters and the workers."""

    master_pid: int
    reloads: int
    failed: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...]


def parse_show_proc(text: str) -> ProcInfo | None:
    """Read ``show proc`` output; None if it is not one."""
    master: tuple[int, int, int] | None = None
    workers: list[int] = []
    old: list[int] = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            section = stripped.lstrip("#").strip().lower()
            continue
        found = _MASTER_LINE.match(stripped)
        if found:
            master = (int(found[1]), int(found[2]), int(found[3] or 0))
            continue
        proc = _PROC_LINE.match(stripped)
        if proc and proc[2] == "worker":
            (old if section.startswith("old") else workers).append(int(proc[1]))
    if master is None:
        return None
    return ProcInfo(master[0], master[1], master[2], tuple(workers), tuple(old))


# Longest socket path we hand HAProxy: 107 bytes of sun_path, less its ".PID.tmp" suffix.
MAX_SOCKET_PATH = 90


def _private_dir(path: str) -> None:
    """Create ``path`` 0700, or accept it only if it is a real directory of ours that
    nobody else can write (it may sit in a world-writable temp dir)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise ManagerError(f"{path} is not a private directory of this user: refusing "
                           "to put HAProxy's sockets there")


@dataclass(frozen=True)
class ManagedSettings:
    """Where a managed HAProxy keeps its sockets and pidfile, and how it is run."""

    haproxy_bin: str
    config_path: str
    state_dir: str
    stop_on_exit: bool = False
    reload_timeout: float = 30.0
    start_timeout: float = 30.0
    watch_interval: float = 1.0

    @property
    def socket_dir(self) -> str:
        """The state dir, unless its socket paths would pass HAProxy's limit.

        A UNIX socket path holds at most 107 bytes, and HAProxy binds through a
        temporary ``PATH.PID.tmp`` name first, so a deep ``--state-dir`` would make
        HAProxy refuse to start. Then the sockets go to a private directory under
        the system temp dir, named after the state dir so restarts find them.
        """
        if len(os.path.join(os.path.abspath(self.state_dir), "master.sock")) <= MAX_SOCKET_PATH:
            return self.state_dir
        digest = hashlib.sha256(os.path.abspath(self.state_dir).encode()).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"servicerouter-{os.getuid()}-{digest}")

    @property
    def master_socket(self) -> str:
        return os.path.join(self.socket_dir, "master.sock")

    @property
    def runtime_socket(self) -> str:
        return os.path.join(self.socket_dir, "haproxy.sock")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.state_dir, "haproxy.pid")


@dataclass
class ManagerStats:
    reloads: int = 0
    failed_reloads: int = 0
    restarts: int = 0
    last_error: str | None = None
    output: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=200))


class ManagedHAProxy:
    """Starts, reloads (confirmed), watches and restarts one master-worker HAProxy."""

    def __init__(self, settings: ManagedSettings,
                 on_restart: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.on_restart = on_restart or (lambda: None)
        self.stats = ManagerStats()
        self._proc: subprocess.Popen[bytes] | None = None
        self._master_pid: int | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._stopping = False
        self._lines = 0  # lines of HAProxy output read so far
        self._output_lock = threading.Lock()
        self._pump: threading.Thread | None = None

    # ------------------------------------------------------------------ queries

    @property
    def master_pid(self) -> int | None:
        return self._master_pid

    @property
    def adopted(self) -> bool:
        """Running, but started by an earlier servicerouter (not our child)."""
        return self._proc is None and self._master_pid is not None

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._master_pid is not None and _pid_alive(self._master_pid)

    def show_proc(self, timeout: float = 2.0) -> ProcInfo | None:
        try:
            text = unix_command(self.settings.master_socket, "show proc", timeout)
        except OSError:
            return None
        return parse_show_proc(text)

    def command_line(self) -> list[str]:
        s = self.settings
        return [s.haproxy_bin, "-W", "-db", "-S", f"{s.master_socket},mode,600",
                "-f", s.config_path, "-p", s.pidfile]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Adopt a running master of ours, or start a new one; ManagerError on failure."""
        with self._lock:
            os.makedirs(self.settings.state_dir, mode=0o700, exist_ok=True)
            _private_dir(self.settings.socket_dir)
            if self._adopt():
                log.info("adopted running HAProxy master %d", self._master_pid)
            else:
                self._spawn()
            if self._watch is None:
                self._watch = threading.Thread(target=self._watch_loop, name="haproxy-watch",
                                               daemon=True)
                self._watch.start()

    def _adopt(self) -> bool:
        try:
            with open(self.settings.pidfile, encoding="ascii") as handle:
                pid = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        if not _pid_alive(pid):
            return False
        info = self.show_proc()
        if info is None or info.master_pid != pid:
            return False
        self._master_pid = pid
        self._proc = None
        return True

    def _spawn(self) -> None:
        s = self.settings
        for stale in (s.master_socket,):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        argv = self.command_line()
        log.info("starting HAProxy: %s", " ".join(argv))
        mark = self._lines
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as err:
            raise ManagerError(f"cannot run {s.haproxy_bin}: {err}") from None
        self._proc = proc
        self._master_pid = proc.pid
        self._pump = threading.Thread(target=self._pump_output, args=(proc,),
                                      name="haproxy-output", daemon=True)
        self._pump.start()
        deadline = time.monotonic() + s.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                self._master_pid = None
                self._pump.join(timeout=2.0)  # all it said, not what was read so far
                raise ManagerError(f"HAProxy exited at start (status {proc.returncode}): "
                                   + self._output_since(mark))
            info = self.show_proc(timeout=1.0)
            if info is not None and info.workers:
                log.info("HAProxy master %d running, worker %s", proc.pid,
                         ",".join(map(str, info.workers)))
                return
            time.sleep(0.05)
        raise ManagerError(f"HAProxy did not come up within {s.start_timeout:.0f}s: "
                           + self._output_tail())

    def _pump_output(self, proc: subprocess.Popen[bytes]) -> None:
        """HAProxy's own messages into our log (and a tail for error reports)."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            with self._output_lock:
                self.stats.output.append(line)
                self._lines += 1
            level = logging.WARNING if ("[ALERT]" in line or "[WARNING]" in line) else logging.INFO
            if "[WARNING]" in line and ("is DOWN" in line or "is UP" in line or "stopped" in line):
                level = logging.INFO
            haproxy_log.log(level, "%s", line)

    def _output_tail(self, lines: int = 8) -> str:
        with self._output_lock:
            kept = list(self.stats.output)[-lines:]
        return " | ".join(kept) or "(no output)"

    def _output_since(self, mark: int, tail: int = 8) -> str:
        """HAProxy's output since line ``mark``: every alert (each failed bind names its
        frontend there), else its last lines."""
        with self._output_lock:
            count = min(self._lines - mark, len(self.stats.output))
            lines = list(self.stats.output)[len(self.stats.output) - count:] if count else []
        alerts = [line for line in lines if "[ALERT]" in line]
        return " | ".join(alerts or lines[-tail:]) or self._output_tail(tail)

    def _wait_output(self, mark: int, marker: str, timeout: float = 1.0) -> None:
        """Give the output reader a moment to catch up with ``marker`` (after ``mark``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._output_lock:
                count = min(self._lines - mark, len(self.stats.output))
                recent = list(self.stats.output)[len(self.stats.output) - count:]
            if any(marker in line for line in recent):
                return
            time.sleep(0.02)

    def reload(self) -> ReloadResult:
        """Reload through the master CLI and wait for its verdict."""
        with self._lock:
            if not self.alive():
                try:
                    self._spawn()
                except ManagerError as err:
                    return self._failed(str(err), started=True)
                self.stats.restarts += 1
                return ReloadResult(True, "HAProxy was not running: started", None,
                                    started=True)
            before = self.show_proc()
            if before is None:
                return self._failed("master CLI does not answer")
            mark = self._lines
            try:
                unix_command(self.settings.master_socket, "reload", timeout=2.0)
            except OSError:
                pass  # the master re-executes itself and may drop the connection
            deadline = time.monotonic() + self.settings.reload_timeout
            while time.monotonic() < deadline:
                time.sleep(0.02)
                info = self.show_proc(timeout=1.0)
                if info is None or info.reloads <= before.reloads:
                    if not self.alive():
                        return self._failed("HAProxy master died during reload: "
                                            + self._output_tail())
                    continue
                if info.failed > before.failed:
                    self._wait_output(mark, "Loading failure")
                    return self._failed("HAProxy refused the new config: "
                                        + self._output_since(mark))
                fresh = [w for w in info.workers if w not in before.workers]
                if fresh:
                    self.stats.reloads += 1
                    return ReloadResult(True, "reloaded", fresh[-1])
            return self._failed(f"no new worker within {self.settings.reload_timeout:.0f}s")

    def _failed(self, message: str, started: bool = False) -> ReloadResult:
        self.stats.failed_reloads += 1
        self.stats.last_error = message
        log.error("HAProxy %s failed: %s", "start" if started else "reload", message)
        return ReloadResult(False, message, started=started)

    def _watch_loop(self) -> None:
        failures = 0
        while not self._stop.wait(self.settings.watch_interval):
            with self._lock:
                if self._stopping or self.alive():
                    failures = 0
                    continue
                log.error("HAProxy (master %s) is gone; restarting it", self._master_pid)
                self._reap()
                try:
                    self._spawn()
                except ManagerError as err:
                    failures += 1
                    self.stats.last_error = str(err)
                    log.error("restarting HAProxy failed: %s", err)
                    self._stop.wait(min(30.0, 0.5 * 2 ** failures))
                    continue
                self.stats.restarts += 1
                failures = 0
            self.on_restart()

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=0.1)

    def stop(self, kill_haproxy: bool | None = None, grace: float = 5.0) -> None:
        """Stop watching; stop HAProxy too if asked (default: the settings say)."""
        self._stopping = True
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=5)
        if kill_haproxy is None:
            kill_haproxy = self.settings.stop_on_exit
        pid = self._master_pid
        if not kill_haproxy or pid is None:
            if pid is not None:
                log.info("leaving HAProxy master %d running", pid)
            return
        log.info("stopping HAProxy master %d", pid)
        for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.alive():
                self._reap()
                time.sleep(0.02)
            if not self.alive():
                break
        self._reap()


def _pid_alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


__all__ = [
    "ManagedHAProxy",
    "ManagedSettings",
    "ManagerError",
    "ProcInfo",
    "ReloadResult",
    "parse_show_proc",
    # Runtime API names, kept importable from here only until engine/live.py (being
    # reworked in parallel) imports them from servicerouter.apply.runtime_api.
    "RuntimeAPI",
    "RuntimeApplier",
    "RuntimeUpdateError",
]
