"""A real servicerouter process for end-to-end tests, and the load that checks it.

``start_router`` runs ``servicerouter --sse --manage-haproxy`` against an emulator
(127.0.0.1 only, free ports, stopped by PID at teardown); :class:`LoadGenerator`
sends bounded HTTP load through the HAProxy it manages and counts every failure.
Shared by the live end-to-end tests of several packages (engine, e2e, rules, serve).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.harness import Backend, free_port, http_get, wait_until
from tests.paths import REPO

# --------------------------------------------------------------------------- load


@dataclass
class LoadGenerator:
    """Threads sending GETs through HAProxy until stopped, the budget or the deadline."""

    targets: list[tuple[int, str | None]]  # (port, Host header)
    max_requests: int = 200_000
    max_seconds: float = 240.0
    threads: int = 2
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> LoadGenerator:
        deadline = time.monotonic() + self.max_seconds
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index, deadline), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, index: int, deadline: float) -> None:
        turn = index
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.sent >= self.max_requests:
                    return
                self.sent += 1
            port, host = self.targets[turn % len(self.targets)]
            turn += 1
            error = self._one(port, host)
            if error:
                with self._lock:
                    self.failures.append(error)

    @staticmethod
    def _one(port: int, host: str | None) -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Host": host} if host else {})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                return f"{port} {host}: HTTP {response.status}"
        except (OSError, http.client.HTTPException) as err:
            return f"{port} {host}: {type(err).__name__}: {err}"
        finally:
            conn.close()
        return None

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)


# --------------------------------------------------------------------------- router process


@dataclass
class RouterProcess:
    proc: subprocess.Popen[bytes]
    status_port: int
    workdir: Path
    log_path: Path
    token: str | None = None  # --status-token, sent with every status request

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def status(self) -> dict[str, Any]:
        return json.loads(http_get(f"http://127.0.0.1:{self.status_port}/status",
                                   headers=self.headers()).text)

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.status_port}/metrics",
                        headers=self.headers()).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def servers_of(status: dict[str, Any], app_id: str) -> set[str]:
    return {s for svc in status["services"] if svc["app"] == app_id for s in svc["servers"]}


@pytest.fixture
def start_router(tmp_path: Path, haproxy_bin: str) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []

    def start(emulator: MarathonEmulator, *extra: str) -> RouterProcess:
        workdir = tmp_path / f"r{len(started)}"  # short: HAProxy socket paths max 97
        workdir.mkdir()
        status_port = free_port()
        argv = [
            sys.executable, "-m", "servicerouter", "-m", emulator.url, "--sse",
            "--manage-haproxy", "--haproxy-stop-on-exit", "--haproxy-bin", haproxy_bin,
            "--haproxy-config", str(workdir / "haproxy.cfg"), "--group", "*",
            "--syslog-socket", "/dev/null", "--bind-addr", "127.0.0.1",
            "--http-port", str(free_port()), "--https-port", str(free_port()),
            "--appid-port", str(free_port()), "--stats-port", str(free_port()),
            "--status-listen", str(status_port), "--min-wait", "0.05", "--max-wait", "0.5",
            "--backoff-initial", "0.2", "--backoff-max", "1", "--drain-timeout", "2",
            "--hard-stop-after", "10s", "--log-level", "debug", *extra,
        ]
        log_path = workdir / "servicerouter.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(argv, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONPATH=str(REPO)))
        token = extra[extra.index("--status-token") + 1] if "--status-token" in extra else None
        router = RouterProcess(proc, status_port, workdir, log_path, token)
        started.append(router)
        wait_until(lambda: router.status()["last_apply"] in ("written", "reload", "runtime",
                                                             "unchanged")
                   and router.status()["haproxy"]["running"], 30,
                   message="servicerouter did not come up")
        return router

    yield start
    for router in started:
        stop_router_process(router.proc, router.workdir)


def stop_router_process(proc: subprocess.Popen[bytes], workdir: Path) -> None:
    """SIGTERM (as systemd does), SIGKILL if it hangs, then any HAProxy it left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _kill_left_haproxy(workdir)


def _kill_left_haproxy(workdir: Path) -> None:
    """Belt and braces: the managed HAProxy is ours, by pidfile and command line."""
    pidfile = workdir / ".servicerouter" / "haproxy.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if str(workdir).encode() in cmdline:
            os.kill(pid, signal.SIGKILL)


def web_app(port: int, **labels: str) -> dict[str, Any]:
    return {"id": "/web", "portDefinitions": [{"port": port}],
            "labels": {"HAPROXY_0_VHOST": "web.test", **labels}}


def http_port(router: RouterProcess) -> int:
    text = (router.workdir / "haproxy.cfg").read_text()
    block = text.split("frontend marathon_http_in", 1)[1]
    return int(block.split("bind ", 1)[1].split()[0].rsplit(":", 1)[1])


def answer(port: int, host: str | None = None) -> str:
    return http_get(f"http://127.0.0.1:{port}/", host_header=host).text.strip()


# --------------------------------------------------------------------------- two vhost apps


def put_app(emulator: MarathonEmulator, app_id: str, port: int, **labels: str) -> None:
    emulator.put_app({"id": app_id, "portDefinitions": [{"port": port}], "labels": labels})


@dataclass
class TwoVhostApps:
    """Apps ``/one`` and ``/two`` (vhosts one.test and two.test, one backend each)
    routed by a live servicerouter: the start of every map-entry test."""

    emulator: MarathonEmulator
    router: RouterProcess
    http: int  # HAProxy's HTTP frontend port
    port_one: int
    port_two: int

    def put(self, app_id: str, port: int, **labels: str) -> None:
        put_app(self.emulator, app_id, port, **labels)

    def routes(self, host: str, name: str, path: str = "/") -> bool:
        """``host`` + ``path`` reach the backend called ``name`` ("503": none does)."""
        reply = http_get(f"http://127.0.0.1:{self.http}{path}", host_header=host)
        return (reply.text.strip() if reply.status_code == 200 else "503") == name


@pytest.fixture
def two_vhost_apps(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> Iterator[Callable[..., TwoVhostApps]]:
    """``start(*router_flags)``: both apps routed, each vhost answering with its backend."""
    one, two = backend_factory("one"), backend_factory("two")
    with contextlib.ExitStack() as stack:

        def start(*router_flags: str) -> TwoVhostApps:
            port_one, port_two = free_port(), free_port()
            emu = stack.enter_context(MarathonEmulator(keepalive_interval=1.0))
            put_app(emu, "/one", port_one, HAPROXY_0_VHOST="one.test")
            put_app(emu, "/two", port_two, HAPROXY_0_VHOST="two.test")
            emu.add_task("/one", "127.0.0.1", [one.port])
            emu.add_task("/two", "127.0.0.1", [two.port])
            router = start_router(emu, *router_flags)
            http = http_port(router)
            wait_until(lambda: answer(http, "one.test") == "one"
                       and answer(http, "two.test") == "two", 15)
            return TwoVhostApps(emu, router, http, port_one, port_two)

        yield start
