"""End to end: ``servicerouter zdd`` blue/green and canary deployments on a real HAProxy.

A real servicerouter (``--sse --manage-haproxy``) follows the emulator, whose task
launcher starts a real backend process per task and stops it when Marathon kills the
task; ``servicerouter zdd`` runs as its own process against the emulator's REST API and
servicerouter's status API.  The app is marathon-lb's published zdd example
(``tests/fixtures/published/mlb-tests-1-nginx.json``) with a vhost, free ports and a
health check path the test backends answer.  Bounded clients (new connection per
request, and keep-alive) send traffic the whole time; every failure is counted.
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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import (  # noqa: F401 - start_router is a fixture
    LoadGenerator,
    RouterProcess,
    http_port,
    start_router,
)
from tests.harness import Backend, free_port, wait_until
from tests.paths import REPO

pytestmark = pytest.mark.e2e

PUBLISHED = REPO / "tests" / "fixtures" / "published" / "mlb-tests-1-nginx.json"
VHOST = "nginx.test"


class BackendLauncher:
    """Marathon's task launcher for the emulator: one real backend process per task,
    named after its colour; health per colour ("ok": passes 0.5 s after start)."""

    def __init__(self, factory: Callable[..., Backend]) -> None:
        self.factory = factory
        self.health: dict[str, str] = {"blue": "ok", "green": "ok"}
        self.running: dict[int, Backend] = {}
        self.started = Counter[str]()
        self._lock = threading.Lock()

    def launch(self, app: dict[str, Any]) -> dict[str, Any]:
        colour = app["labels"].get("HAPROXY_DEPLOYMENT_COLOUR", "none")
        with self._lock:
            self.started[colour] += 1
            name = f"{colour}{self.started[colour]}"
        for attempt in range(3):  # a process outside the suite may grab a reserved port
            try:
                backend = self.factory(name)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        with self._lock:
            self.running[backend.port] = backend
        spec: dict[str, Any] = {"host": "127.0.0.1", "ports": [backend.port], "healthy": False}
        if self.health.get(colour) == "ok":
            spec["healthyAfter"] = 0.5
        return spec

    def stop(self, task: dict[str, Any]) -> None:
        with self._lock:
            backend = self.running.pop(task["ports"][0], None)
        if backend is not None:
            backend.stop()


@dataclass
class KeepAliveClient:
    """One connection reused for every request (reconnecting after a failure), until
    stopped or its budget or deadline; counts answers per backend name and failures."""

    port: int
    host: str
    max_requests: int = 100_000
    max_seconds: float = 240.0
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> KeepAliveClient:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while (not self._stop.is_set() and time.monotonic() < deadline
               and self.sent < self.max_requests):
            self.sent += 1
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                response = conn.getresponse()
                body = response.read().decode().strip()
                if response.status != 200:
                    self.failures.append(f"HTTP {response.status}")
                else:
                    self.answers[body] += 1
            except (OSError, http.client.HTTPException) as err:
                self.failures.append(f"{type(err).__name__}: {err}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            time.sleep(0.002)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class Setup:
    emulator: MarathonEmulator
    router: RouterProcess
    launcher: BackendLauncher
    app_path: Path
    service_port: int
    front: int

    def argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "servicerouter", "zdd", str(self.app_path),
                "--marathon", self.emulator.url,
                "--status", f"http://127.0.0.1:{self.router.status_port}",
                "--force", "--step-delay", "0.3", *extra]

    def zdd(self, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*extra), capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, PYTHONPATH=str(REPO)),
                              check=False)

    def colours(self) -> dict[str, int]:
        return {app["id"]: app["instances"] for app in self.emulator.apps()}

    def answers(self, count: int) -> Counter[str]:
        """Which colour answered ``count`` requests on new connections through the vhost."""
        seen = Counter[str]()
        for _ in range(count):
            conn = http.client.HTTPConnection("127.0.0.1", self.front, timeout=5)
            try:
                conn.request("GET", "/", headers={"Host": VHOST})
                seen[conn.getresponse().read().decode().strip().rstrip("0123456789")] += 1
            finally:
                conn.close()
        return seen


def _watch_weights(env: Setup, backend: str, seen: set[int], stop: threading.Event) -> None:
    """Every server weight HAProxy reports for ``backend`` until ``stop``."""
    while not stop.wait(0.1):
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", env.router.status_port, timeout=5)
            try:
                conn.request("GET", f"/api/backends/{backend}")
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    seen.update(int(s["weight"]) for s in json.loads(body)["servers"])
            finally:
                conn.close()


def haproxy_processes(workdir: Path) -> list[int]:
    """HAProxy processes (master and workers) running this router's config."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"haproxy" in cmdline[0] and any(str(workdir).encode() in a for a in cmdline):
                status = (entry / "status").read_text()
                if "State:\tZ" not in status:
                    found.append(int(entry.name))
    return found


@pytest.fixture
def setup(tmp_path: Path, start_router: Callable[..., RouterProcess],  # noqa: F811
          backend_factory: Callable[..., Backend]) -> Iterator[Callable[..., Setup]]:
    emulators: list[MarathonEmulator] = []

    def make(blue_instances: int = 4) -> Setup:
        launcher = BackendLauncher(backend_factory)
        emulator = MarathonEmulator(keepalive_interval=1.0, launcher=launcher).start()
        emulators.append(emulator)
        router = start_router(emulator)
        (app,) = json.loads(PUBLISHED.read_text())["apps"]
        app = {k: v for k, v in app.items() if k != "tasks"}
        service_port, alt_port = free_port(), free_port()
        app["container"]["docker"]["portMappings"][0]["servicePort"] = service_port
        app["ports"] = [service_port]
        app["instances"] = blue_instances
        app["labels"].update({"HAPROXY_DEPLOYMENT_ALT_PORT": str(alt_port),
                              "HAPROXY_0_VHOST": VHOST})
        app["healthChecks"][0].update(path="/health", intervalSeconds=1)
        app_path = tmp_path / "nginx.json"
        app_path.write_text(json.dumps(app))
        made = Setup(emulator, router, launcher, app_path, service_port, 0)
        first = made.zdd("--max-wait", "60")
        assert first.returncode == 0, first.stderr[-3000:] + router.log()[-3000:]
        made.front = http_port(router)  # the shared frontend comes with the first app
        assert made.colours() == {"/nginx-blue": blue_instances}
        wait_until(lambda: set(made.answers(8)) == {"blue"}, 30, message="blue not routed")
        return made

    yield make
    for emulator in emulators:
        emulator.stop()


@pytest.mark.parametrize("steps", [(), ("--step-percent", "10,25,50")],
                         ids=["by-instances", "weight-steps"])
def test_blue_green_under_load_loses_nothing_and_never_reloads(
        setup: Callable[..., Setup], tmp_path: Path, steps: tuple[str, ...]) -> None:
    env = setup()
    blue_tasks = {t["id"] for t in env.emulator.app("/nginx-blue")["tasks"]}
    hook_log = tmp_path / "hook.log"
    hook = tmp_path / "pre-kill.sh"
    hook.write_text(f'#!/bin/sh\nprintf "%s\\n" "$2" >> {hook_log}\n')
    hook.chmod(0o755)
    before = env.router.status()
    load = LoadGenerator([(env.service_port, None), (env.front, VHOST)],
                         max_seconds=240).start()
    keep_alive = KeepAliveClient(env.front, VHOST).start()
    weights_seen: set[int] = set()
    watching = threading.Event()
    watcher = threading.Thread(target=_watch_weights, daemon=True, args=(
        env, f"nginx_{env.service_port}", weights_seen, watching))
    watcher.start()
    try:
        time.sleep(1)
        done = env.zdd("--max-wait", "90", "--pre-kill-hook", str(hook), *steps)
        time.sleep(1)
    finally:
        watching.set()
        watcher.join(10)
        load.stop()
        keep_alive.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    after = env.router.status()
    print(f"\nblue->green {steps}: {load.sent} new-connection requests ({len(load.failures)} failed), "
          f"{keep_alive.sent} keep-alive requests ({len(keep_alive.failures)} failed), "
          f"keep-alive answers by backend: {dict(sorted(keep_alive.answers.items()))}, "
          f"reloads {before['reloads']} -> {after['reloads']}, "
          f"runtime updates {before['runtime_updates']} -> {after['runtime_updates']}, "
          f"server weights seen {sorted(weights_seen)}")
    assert load.failures == [] and keep_alive.failures == []
    assert load.sent > 200 and keep_alive.sent > 200
    # weights HAProxy had: steps split by weights (10% of 1 green vs 3 blue: 1 and 3),
    # marathon-lb's count only drains (0) or serves (1)
    assert (max(weights_seen) > 1) == bool(steps), weights_seen
    assert after["reloads"] == before["reloads"], "a deployment step reloaded HAProxy"
    assert after["runtime_updates"] > before["runtime_updates"]
    assert env.colours() == {"/nginx-green": 4}
    assert set(env.answers(40)) == {"green"}
    # the pre-kill hook was told each batch of drained blue tasks before they were killed
    hooked = [task for line in hook_log.read_text().splitlines() for task in json.loads(line)]
    assert hooked and set(hooked) <= blue_tasks
    assert any(name.startswith("green") for name in keep_alive.answers)
    # one master and one worker (the worker the first reload left behind, if any, is gone
    # once its last connection is: hard-stop-after bounds that)
    wait_until(lambda: len(haproxy_processes(env.router.workdir)) == 2, 15,
               message="not exactly one HAProxy master and one worker")
    assert after["haproxy"]["master_pid"] in haproxy_processes(env.router.workdir)


def test_failing_green_rolls_back_without_losing_a_request(setup: Callable[..., Setup]) -> None:
    env = setup()
    env.launcher.health["green"] = "never"
    blue_tasks = {t["id"] for t in env.emulator.app("/nginx-blue")["tasks"]}
    before = env.router.status()
    load = LoadGenerator([(env.service_port, None), (env.front, VHOST)],
                         max_seconds=120).start()
    keep_alive = KeepAliveClient(env.front, VHOST).start()
    try:
        failed = env.zdd("--max-wait", "6")
        time.sleep(1)
    finally:
        load.stop()
        keep_alive.stop()
    after = env.router.status()
    print(f"\nfailing green: {load.sent} new-connection requests ({len(load.failures)} failed), "
          f"{keep_alive.sent} keep-alive requests ({len(keep_alive.failures)} failed), "
          f"answers {dict(sorted(keep_alive.answers.items()))}")
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "rolling back" in failed.stderr
    assert load.failures == [] and keep_alive.failures == []
    assert not any(name.startswith("green") for name in keep_alive.answers)
    assert env.launcher.started["green"] >= 1 and not env.emulator.deployments()
    # the cluster as zdd found it: the same blue tasks, no green
    assert env.colours() == {"/nginx-blue": 4}
    assert {t["id"] for t in env.emulator.app("/nginx-blue")["tasks"]} == blue_tasks
    assert after["reloads"] == before["reloads"]
    assert set(env.answers(12)) == {"blue"}


@pytest.mark.parametrize(("blue_instances", "extra", "held"), [
    (4, (), {"/nginx-blue": 3, "/nginx-green": 1}),  # by instances this would be 25%
    (8, ("--new-instances", "4"), {"/nginx-blue": 4, "/nginx-green": 4}),  # 50% by instances
], ids=["3+1", "4+4"])
def test_canary_holds_at_the_asked_share_by_server_weights(
        setup: Callable[..., Setup], blue_instances: int, extra: tuple[str, ...],
        held: dict[str, int]) -> None:
    env = setup(blue_instances)
    before = env.router.status()
    done = env.zdd("--canary", "10", *extra, "--max-wait", "90")
    assert done.returncode == 0, done.stderr[-3000:]
    assert env.colours() == held
    wait_until(lambda: "green" in env.answers(20), 15)
    seen = env.answers(1000)
    share = 100.0 * seen["green"] / sum(seen.values())
    after = env.router.status()
    print(f"\ncanary 10% on {held}: {dict(seen)} over 1000 requests = {share:.1f}% green, "
          f"reloads {before['reloads']} -> {after['reloads']}, runtime updates "
          f"{before['runtime_updates']} -> {after['runtime_updates']}")
    assert 5.0 <= share <= 15.0 and sum(seen.values()) == 1000
    assert after["reloads"] == before["reloads"]
    # and --complete-cur finishes it: all on green
    completed = env.zdd("--complete-cur", "--max-wait", "90")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert env.colours() == {"/nginx-green": blue_instances}
    assert set(env.answers(20)) == {"green"}
    assert env.router.status()["reloads"] == before["reloads"]


def _ctrl_c_interrupts() -> None:
    """In the zdd child: SIGINT raises KeyboardInterrupt, as at a terminal.

    A suite started in the background by a shell without job control (``cmd &``
    in a script) inherits SIGINT ignored, and Python then installs no handler: the
    Ctrl-C these tests send would be lost (zdd honours the shell's choice)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_rolls_back_and_dry_run_changes_nothing(setup: Callable[..., Setup]) -> None:
    env = setup(blue_instances=2)
    blue_tasks = {t["id"] for t in env.emulator.app("/nginx-blue")["tasks"]}
    dry = env.zdd("--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["id"] == "/nginx-green"
    assert env.colours() == {"/nginx-blue": 2}
    env.launcher.health["green"] = "never"
    proc = subprocess.Popen(env.argv("--max-wait", "120"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            preexec_fn=_ctrl_c_interrupts)
    try:
        wait_until(lambda: "/nginx-green" in env.colours(), 30)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, err[-3000:]
    assert env.colours() == {"/nginx-blue": 2}
    assert {t["id"] for t in env.emulator.app("/nginx-blue")["tasks"]} == blue_tasks
    assert set(env.answers(8)) == {"blue"}


def test_canary_undone_by_complete_prev(setup: Callable[..., Setup]) -> None:
    env = setup()
    before = env.router.status()
    held = env.zdd("--new-instances", "2", "--max-wait", "90")
    assert held.returncode == 0, held.stderr[-3000:]
    assert env.colours() == {"/nginx-blue": 2, "/nginx-green": 2}
    refused = env.zdd("--max-wait", "30")  # a hybrid group is finished or undone first
    assert refused.returncode == 2 and "--complete-prev" in refused.stderr
    undone = env.zdd("--complete-prev", "--max-wait", "90")
    assert undone.returncode == 0, undone.stderr[-3000:]
    assert env.colours() == {"/nginx-blue": 4}
    assert set(env.answers(20)) == {"blue"}
    assert env.router.status()["reloads"] == before["reloads"]


def test_ctrl_c_after_old_tasks_were_killed_scales_them_back(
        setup: Callable[..., Setup]) -> None:
    env = setup()
    before = env.router.status()
    load = LoadGenerator([(env.service_port, None), (env.front, VHOST)],
                         max_seconds=180).start()
    keep_alive = KeepAliveClient(env.front, VHOST).start()
    proc = subprocess.Popen(env.argv("--max-wait", "120", "--step-delay", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            preexec_fn=_ctrl_c_interrupts)
    try:
        # interrupted once green serves and a drained blue task was killed with scale
        wait_until(lambda: env.colours().get("/nginx-blue") == 3, 60)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
        time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        load.stop()
        keep_alive.stop()
    print(f"\nCtrl-C mid-deployment: {load.sent} new-connection requests "
          f"({len(load.failures)} failed), {keep_alive.sent} keep-alive requests "
          f"({len(keep_alive.failures)} failed), answers {dict(sorted(keep_alive.answers.items()))}")
    assert proc.returncode == 130, err[-3000:]
    assert env.colours() == {"/nginx-blue": 4}
    assert load.failures == [] and keep_alive.failures == []
    wait_until(lambda: set(env.answers(12)) == {"blue"}, 15)
    assert env.router.status()["reloads"] == before["reloads"]
