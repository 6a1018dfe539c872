"""Child processes of the benchmarks: their environment, timing, and the emulator.

Every figure of ``benchmarks/run.py`` comes from a whole fresh process, timed
from outside: wall time, CPU time and peak RSS from ``os.wait4``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS_PATH = "/v2/apps?embed=apps.tasks"


@dataclass
class Run:
    """One child process: wall and CPU seconds, peak RSS (KiB) and what it logged."""

    wall: float
    cpu: float  # user + system: less sensitive than wall time to other load
    rss_kb: int
    returncode: int
    stderr: str


def child_env(workdir: str | None = None) -> dict[str, str]:
    """The children's environment: this checkout first, no proxies, byte-code cached.

    An installed package has its modules compiled (pip writes the .pyc files), and so
    does every floor's ``requests``; with PYTHONDONTWRITEBYTECODE set, as in some CI
    and sandbox shells, servicerouter alone would compile ~40 modules from source on
    every run and the ratio would measure that.  So byte code is cached, under
    ``workdir`` (PYTHONPYCACHEPREFIX, for floors and servicerouter alike), and the
    warm-up round writes it.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(name, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if workdir is not None:
        env["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")
    return env


def run_process(cmd: Sequence[str], cwd: str, env: dict[str, str], log_path: str,
                timeout: float = 600.0) -> Run:
    """Run ``cmd`` to completion; time it and read its peak RSS with wait4."""
    with open(log_path, "w+b") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)
        reaped = threading.Event()

        def kill_if_hung() -> None:
            if not reaped.is_set():
                proc.kill()

        killer = threading.Timer(timeout, kill_if_hung)
        killer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            reaped.set()
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss, proc.returncode, text)


@contextmanager
def emulator(state_file: str, workdir: str, env: dict[str, str]) -> Iterator[str]:
    """The Marathon emulator serving ``state_file`` in its own process; yields its URL."""
    port_file = os.path.join(workdir, "emulator.port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    log = open(os.path.join(workdir, "emulator.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "servicerouter.emulator.marathon", "--host", "127.0.0.1",
         "--state", state_file, "--port-file", port_file],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        port = None
        while port is None:
            if proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {proc.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start within 300s")
            try:
                with open(port_file, encoding="utf-8") as handle:
                    port = int(handle.read().strip())
            except (FileNotFoundError, ValueError):
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        # Build the emulator's cached body before anything is timed.
        with urllib.request.urlopen(url + APPS_PATH, timeout=300) as answer:
            answer.read()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
