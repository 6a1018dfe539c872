"""Start or soft-reload a test HAProxy, from the test process or from any other.

End-to-end tests hand servicerouter a reload command (``--command``) and then check
that the new config is live. That command runs in servicerouter's process, not in
the test's, so the reload logic lives here, in a stdlib-only script that both
sides use: ``tests/harness.py`` imports :func:`launch` for ``HAProxy.start()`` and
``HAProxy.reload()``, and servicerouter runs this file as a program. One code path,
whoever reloads.

Design (the sysvinit way HAProxy was reloaded when servicerouter.py was current):

* HAProxy always runs daemonised, ``haproxy -D -f CFG -p PIDFILE``. The launcher
  process binds every listener, forks the worker, writes its pid to ``PIDFILE`` and
  exits 0 -- or exits non-zero with the reason on stderr. So "did it start, and if
  not why" is just the launcher's exit status and stderr; no polling, no log files.
* A reload is the same command plus ``-sf OLDPID``: the new process binds, then
  tells the old one to finish its connections and exit (SIGUSR1, soft stop).
* If the config has ``stats socket PATH ... expose-fd listeners``, ``-x PATH`` is
  added so the new process takes over the old one's listening sockets. Without it,
  on Linux, connections queued on the old socket at the moment it closes are reset:
  measured here as about one reset per 40 reloads under load, enough to make a
  "no request fails during a reload" test flaky. HAProxy refuses to start when
  ``-x`` fails to fetch the sockets, so that one failure is retried without it.
* Every pid started is appended to ``PIDFILE.pids`` (our file, append-only, never
  truncated -- HAProxy truncates ``PIDFILE`` before writing it). The last line is
  the current pid; all lines are what a cleanup must make sure is gone.
* A daemon outlives its launcher, so its parent becomes the nearest subreaper
  (``tests/harness.py`` makes the test process one) or init. Until that parent
  reaps it an exited HAProxy is a zombie, which ``kill(pid, 0)`` still finds; so
  liveness here means "exists and is not a zombie".

Usage as a program (this is what ``HAProxy.reload_command`` contains)::

    python tests/haproxy_reload.py --haproxy BIN --config CFG --pidfile PIDFILE [--wait-old S]

It returns once the new HAProxy is running and the old one has exited (or after
``--wait-old`` seconds, with a warning: the reload itself has succeeded). Exit 1
with HAProxy's output on stderr if the new process could not start; the old one then
keeps serving.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

POLL_INTERVAL = 0.01
LAUNCH_TIMEOUT = 30.0
_STATS_SOCKET = re.compile(r"^\s*stats\s+socket\s+(\S+)(.*)$")
_EXPOSE_FD = re.compile(r"\bexpose-fd\s+listeners\b")
_SOCKET_TRANSFER_FAILED = "Failed to get the sockets from the old process"


class LaunchError(RuntimeError):
    """HAProxy did not start; ``output`` is what it printed (config errors, bind errors)."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n{output}".rstrip())
        self.output = output


@dataclass(frozen=True)
class LaunchResult:
    pid: int
    old_pid: int | None
    old_exited: bool  # True when there was no old process
    output: str  # HAProxy's stderr (warnings) from the successful launch


def pid_log_path(pidfile: str) -> str:
    return pidfile + ".pids"


def recorded_pids(pidfile: str) -> list[int]:
    """Every pid ever started for this pidfile, oldest first."""
    try:
        with open(pid_log_path(pidfile)) as log:
            return [int(line) for line in log.read().split()]
    except FileNotFoundError:
        return []


def current_pid(pidfile: str) -> int | None:
    pids = recorded_pids(pidfile)
    return pids[-1] if pids else None


def proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def is_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie; reaps it if it is our exited child.

    Never call this for a pid owned by a ``subprocess.Popen``: it may reap it.
    """
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if proc_state(pid) in (None, "Z", "X"):
        _reap(pid)  # exited since the first look: reap it now if it is ours
        return False
    return True


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is our exited child; True if it was."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False  # not our child (or already reaped): its parent reaps it


def owns(pid: int, marker: str) -> bool:
    """True if ``pid`` is alive and its command line contains ``marker``.

    Guards every signal we send against pid reuse: a pid we recorded long ago may
    belong to an unrelated process by now.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return is_alive(pid) and marker.encode() in args


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` is alive; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if is_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


def exposed_socket(config_path: str) -> str | None:
    """The ``stats socket`` path that exposes listening fds to a reload (``-x``), if any."""
    try:
        with open(config_path) as config:
            lines = config.read().splitlines()
    except OSError:
        return None
    for line in lines:
        match = _STATS_SOCKET.match(line.split("#", 1)[0])
        if match and _EXPOSE_FD.search(match.group(2)):
            path = match.group(1).removeprefix("unix@")
            if "@" not in path:  # ipv4@, abns@, fd@ ... cannot be passed to -x
                return os.path.abspath(path)
    return None


def _socket_transfer_args(config_path: str) -> list[str]:
    sock = exposed_socket(config_path)
    return ["-x", sock] if sock and os.path.exists(sock) else []


def _run_haproxy(argv: list[str]) -> tuple[int, str]:
    # stderr goes to a file, never a pipe: a daemon that kept an inherited pipe open
    # would make whoever reads it (servicerouter capturing --command output) hang.
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=LAUNCH_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LaunchError(f"{argv[0]} did not return within {LAUNCH_TIMEOUT}s", "") from exc
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace")


def _read_pidfile(pidfile: str) -> int:
    with open(pidfile) as f:
        return int(f.read().split()[0])


def launch(
    haproxy_bin: str,
    config_path: str,
    pidfile: str,
    *,
    wait_old_timeout: float = 10.0,
) -> LaunchResult:
    """Start HAProxy, soft-replacing the one recorded for ``pidfile`` if it still runs.

    Returns once the new process runs and the old one (if any) has exited or
    ``wait_old_timeout`` has passed (see ``LaunchResult.old_exited``). Raises
    :class:`LaunchError` with HAProxy's output if the new process does not start, in
    which case the old process is untouched and keeps serving.
    """
    config_path = os.path.abspath(config_path)
    pidfile = os.path.abspath(pidfile)
    with open(pidfile + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one reload at a time per HAProxy
        old = current_pid(pidfile)
        if old is not None and not owns(old, pidfile):
            old = None  # crashed or stopped: this is a plain start
        base = [haproxy_bin, "-D", "-f", config_path, "-p", pidfile]
        stop_old = [] if old is None else ["-sf", str(old)]  # -sf takes the rest of argv
        take_sockets = [] if old is None else _socket_transfer_args(config_path)
        code, output = _run_haproxy(base + take_sockets + stop_old)
        if code != 0 and take_sockets and _SOCKET_TRANSFER_FAILED in output:
            code, output = _run_haproxy(base + stop_old)  # old process did not hand them over
        if code != 0:
            raise LaunchError(f"haproxy exited with status {code}", output)

        pid = _read_pidfile(pidfile)
        if not is_alive(pid):
            raise LaunchError(f"haproxy reported pid {pid} but it is not running", output)
        fd = os.open(pid_log_path(pidfile), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{pid}\n".encode())
        finally:
            os.close(fd)

    old_exited = old is None or not wait_gone([old], wait_old_timeout)
    return LaunchResult(pid=pid, old_pid=old, old_exited=old_exited, output=output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or soft-reload a test HAProxy.")
    parser.add_argument("--haproxy", default="haproxy", help="haproxy binary")
    parser.add_argument("--config", required=True)
    parser.add_argument("--pidfile", required=True)
    parser.add_argument(
        "--wait-old",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the replaced process to finish (default 10)",
    )
    args = parser.parse_args(argv)
    try:
        result = launch(args.haproxy, args.config, args.pidfile, wait_old_timeout=args.wait_old)
    except LaunchError as exc:
        print(f"haproxy_reload: {exc}", file=sys.stderr)
        return 1
    if not result.old_exited:
        print(
            f"haproxy_reload: warning: old pid {result.old_pid} still running after "
            f"{args.wait_old}s (open connections?)",
            file=sys.stderr,
        )
    print(f"haproxy_reload: pid {result.old_pid} -> {result.pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
