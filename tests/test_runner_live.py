"""The live engine (servicerouter.live) against the Marathon emulator.

HAProxy itself is replaced by recording fakes here (the real thing is in
test_live_e2e.py); ``haproxy -c`` is real, so validation and quarantine are.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from servicerouter.confdiff import RuntimePlan
from servicerouter.emulator import MarathonEmulator
from servicerouter.events import Backoff, EventStream
from servicerouter.live import LiveRouter, LiveSettings
from servicerouter.manager import ReloadResult, RuntimeStats, RuntimeUpdateError
from servicerouter.marathon import ClientSettings, MarathonClient
from servicerouter.render import RenderOptions
from servicerouter.runner import Router, RouterSettings
from servicerouter.templates import load_fragments
from tests.harness import wait_until

APPS_FETCH = "/v2/apps?embed=apps.tasks"


@dataclass
class FakeReloader:
    results: list[bool] = field(default_factory=list)
    calls: int = 0
    fail: bool = False

    def reload(self) -> ReloadResult:
        self.calls += 1
        return ReloadResult(not self.fail, "fake")


@dataclass
class FakeRuntime:
    plans: list[RuntimePlan] = field(default_factory=list)
    refuse: bool = False
    stats: RuntimeStats = field(default_factory=RuntimeStats)

    def apply(self, plan: RuntimePlan) -> None:
        if self.refuse:
            raise RuntimeUpdateError("refused")
        self.plans.append(plan)

    def forget(self) -> None:
        pass


def app(app_id: str, port: int, **labels: str) -> dict:
    return {"id": app_id, "portDefinitions": [{"port": port}], "labels": labels}


@dataclass
class Rig:
    emulator: MarathonEmulator
    live: LiveRouter
    reloader: FakeReloader
    runtime: FakeRuntime
    config: Path

    def full_fetches(self) -> int:
        return sum(1 for _m, target in self.emulator.request_log if target == APPS_FETCH)

    def text(self) -> str:
        return self.config.read_text() if self.config.exists() else ""


@pytest.fixture
def rig_factory(tmp_path: Path, haproxy_bin: str) -> Iterator[Callable[..., Rig]]:
    stops: list[Callable[[], None]] = []

    def make(apps: list[dict], templates: Path | None = None, stream: bool = True,
             **live_kw) -> Rig:
        emulator = MarathonEmulator(keepalive_interval=0.5).start()
        stops.append(emulator.stop)
        for spec in apps:
            emulator.put_app(spec)
        config = tmp_path / "haproxy.cfg"
        settings = RouterSettings(
            config_path=str(config), groups=("*",), haproxy_bin=haproxy_bin,
            render_options=RenderOptions(bind_addr="127.0.0.1"),
            state_dir=str(tmp_path / "state"), certs_dir=None)
        client = MarathonClient([emulator.url], ClientSettings(read_timeout=5))
        router = Router(client, load_fragments([templates] if templates else []), settings)
        reloader, runtime = FakeReloader(), FakeRuntime()
        live_kw.setdefault("settings", LiveSettings(min_wait=0.02, max_wait=0.2,
                                                    backoff_base=0.05, backoff_cap=0.2))
        live = LiveRouter(router, reloader=reloader, runtime=runtime,  # type: ignore[arg-type]
                          rng_seed=1, **live_kw)
        if stream:
            events = EventStream([emulator.url], live.submit,
                                 lambda host: live.request_resync("connected"),
                                 backoff=Backoff(0.05, 0.2))
            live.stream = events
            events.start()
            stops.append(events.stop)
        thread = threading.Thread(target=live.run, kwargs={"initial_sync": not stream},
                                  daemon=True)
        thread.start()
        stops.append(lambda: (live.stop(), thread.join(5)))
        rig = Rig(emulator, live, reloader, runtime, config)
        wait_until(lambda: live.state.syncs >= 1 and live.state.last_apply, 10)
        return rig

    yield make
    for stop in reversed(stops):
        stop()


def test_task_events_apply_without_refetching_or_reloading(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001), app("/api", 10002)])
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31001])
    emu.add_task("/api", "127.0.0.1", [31002])
    wait_until(lambda: "127.0.0.1:31001" in rig.text() and "127.0.0.1:31002" in rig.text(), 10)
    reloads, fetches = rig.reloader.calls, rig.full_fetches()
    assert reloads >= 1  # the frontends appeared: a reload

    emu.add_task("/web", "127.0.0.1", [31003])
    wait_until(lambda: "127.0.0.1:31003" in rig.text(), 10)
    task = next(t for t in emu.app("/web")["tasks"] if t["ports"] == [31001])
    emu.kill_task("/web", task["id"])
    wait_until(lambda: "127.0.0.1:31001" not in rig.text(), 10)

    assert rig.reloader.calls == reloads
    assert rig.full_fetches() == fetches
    assert not any("/v2/apps/web" in t for _m, t in emu.request_log)
    added = [s.address for p in rig.runtime.plans for _b, s in p.add]
    removed = [s.address for p in rig.runtime.plans for _b, s in p.remove]
    assert "127.0.0.1:31003" in added and removed == ["127.0.0.1:31001"]
    snapshot = live.snapshot()
    assert snapshot["runtime_updates"] >= 2 and snapshot["last_apply"] == "runtime"
    assert live.metrics.syncs.value(kind="incremental", result="ok") >= 2
    assert live.metrics.event_to_apply.count >= 2


def test_app_events_refetch_that_app_and_reload(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001), app("/api", 10002)])
    emu = rig.emulator
    emu.add_task("/web", "127.0.0.1", [31001])
    emu.add_task("/api", "127.0.0.1", [31002])
    wait_until(lambda: "31002" in rig.text(), 10)
    reloads, fetches = rig.reloader.calls, rig.full_fetches()
    emu.put_app(app("/web", 10001, HAPROXY_0_VHOST="web.example.com"))
    wait_until(lambda: "web.example.com" in rig.text(), 10)
    assert rig.reloader.calls == reloads + 1
    assert rig.full_fetches() == fetches
    assert any(t.startswith("/v2/apps/web?embed=app.tasks") for _m, t in emu.request_log)

    emu.remove_app("/api")
    wait_until(lambda: "api_10002" not in rig.text(), 10)
    assert rig.full_fetches() == fetches


def test_a_burst_becomes_few_syncs(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)])
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: "31000" in rig.text(), 10)
    syncs = live.state.syncs
    for port in range(31001, 31041):
        emu.add_task("/web", "127.0.0.1", [port])
    wait_until(lambda: "127.0.0.1:31040" in rig.text(), 10)
    assert live.state.syncs - syncs <= 4
    assert sum(len(p.add) for p in rig.runtime.plans) == 40


def test_runtime_refusal_falls_back_to_reload(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)])
    rig.emulator.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: "31000" in rig.text(), 10)
    reloads = rig.reloader.calls
    rig.runtime.refuse = True
    rig.emulator.add_task("/web", "127.0.0.1", [31001])
    wait_until(lambda: "31001" in rig.text(), 10)
    assert rig.reloader.calls == reloads + 1


def test_outage_keeps_routing_reports_and_resyncs_once_back(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)], stream=False,
                      settings=LiveSettings(min_wait=0.02, max_wait=0.2, backoff_base=0.2,
                                            backoff_cap=0.4, resync_interval=3600))
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    live.request_resync("test")
    wait_until(lambda: "31000" in rig.text(), 10)
    before = rig.text()
    emu.set_unavailable(True)
    live.request_resync("test")
    wait_until(lambda: live.outage is not None, 10)
    snapshot = live.snapshot()
    assert snapshot["marathon"]["available"] is False and "503" in snapshot["marathon"]["error"]
    assert live.metrics.marathon_up.value() == 0
    wait_until(lambda: live.outage is not None and live.outage.failures >= 2, 10)  # backoff retries
    assert rig.text() == before
    emu.set_unavailable(False, status=503)
    wait_until(lambda: live.outage is None, 10)
    assert live.snapshot()["marathon"]["available"] is True
    assert live.metrics.marathon_errors.total() >= 2


def test_garbage_from_marathon_is_an_outage_not_a_crash(rig_factory, monkeypatch) -> None:
    rig = rig_factory([app("/web", 10001)], stream=False)
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    live.request_resync("test")
    wait_until(lambda: "31000" in rig.text(), 10)
    monkeypatch.setattr(live.source, "fetch_apps_body", lambda: b"<html>proxy error</html>")
    live.request_resync("test")
    wait_until(lambda: live.outage is not None, 10)
    assert "invalid JSON" in live.outage.error and "31000" in rig.text()


BAD_TEMPLATE = """backend {{ backend }}
  balance roundrobin
  mode {{ mode }}
{% if labels.get('EXTRA') %}
  {{ labels.get('EXTRA') }}
{% endif %}
"""


def test_rejected_apps_are_bisected_quarantined_and_released(rig_factory, tmp_path: Path) -> None:
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "HAPROXY_BACKEND_HEAD.j2").write_text(BAD_TEMPLATE)
    apps = [app(f"/app{i:02d}", 10100 + i) for i in range(16)]
    rig = rig_factory(apps, templates=templates)
    emu, live = rig.emulator, rig.live
    for i in range(16):
        emu.add_task(f"/app{i:02d}", "127.0.0.1", [31000 + i])
    wait_until(lambda: "127.0.0.1:31015" in rig.text(), 10)

    validations = live.metrics.validations.total()
    emu.put_app(app("/bad", 10200, EXTRA="no-such-directive here"))
    emu.add_task("/bad", "127.0.0.1", [32000])
    emu.put_app(app("/app03", 10103, EXTRA="timeout server 5s"))  # a good change, same burst
    wait_until(lambda: live.quarantine, 10)
    wait_until(lambda: "timeout server 5s" in rig.text(), 10)
    assert list(live.quarantine) == ["/bad"]
    assert "bad_10200" not in rig.text()
    used = live.metrics.validations.total() - validations
    assert used <= math.ceil(math.log2(17)) + 3, used
    snapshot = live.snapshot()
    assert snapshot["quarantined"][0]["app"] == "/bad" and snapshot["quarantined"][0]["reason"]
    assert live.metrics.quarantined.value() == 1

    # a known-good app going bad keeps its last good version routed (frozen)
    emu.put_app(app("/app05", 10105, EXTRA="bogus-keyword"))
    wait_until(lambda: "/app05" in live.quarantine, 10)
    assert "app05_10105" in rig.text() and "bogus-keyword" not in rig.text()
    assert live.snapshot()["quarantined"][1]["frozen_services"] == 1

    emu.put_app(app("/bad", 10200))  # fixed
    wait_until(lambda: "bad_10200" in rig.text(), 10)
    assert list(live.quarantine) == ["/app05"]
    assert live.metrics.quarantined.value() == 1


def test_dry_mode_prints_instead_of_applying(tmp_path: Path, haproxy_bin: str, capsys) -> None:
    with MarathonEmulator() as emu:
        emu.put_app(app("/web", 10001))
        emu.add_task("/web", "127.0.0.1", [31000])
        settings = RouterSettings(config_path=str(tmp_path / "h.cfg"), groups=("*",), dry=True,
                                  haproxy_bin=haproxy_bin, state_dir=str(tmp_path / "s"),
                                  certs_dir=None)
        live = LiveRouter(Router(MarathonClient([emu.url]), load_fragments([]), settings),
                          reloader=FakeReloader())
        live.request_resync("test")
        assert live.step()
        assert "127.0.0.1:31000" in capsys.readouterr().out
        assert not (tmp_path / "h.cfg").exists()


def test_listening_mode_signals_and_clean_exit(tmp_path: Path, haproxy_bin: str) -> None:
    """--listening through the live loop: callbacks, SIGHUP resync, SIGTERM unsubscribes."""
    import os
    import signal
    import subprocess
    import sys

    from tests.harness import free_port

    root = Path(__file__).resolve().parent.parent
    with MarathonEmulator() as emu:
        emu.put_app(app("/web", 10001))
        emu.add_task("/web", "127.0.0.1", [31000])
        callback = f"http://127.0.0.1:{free_port()}/callback"
        config = tmp_path / "haproxy.cfg"
        argv = [sys.executable, "-m", "servicerouter", "-m", emu.url, "--listening", callback,
                "--listening-addr", "127.0.0.1", "--haproxy-config", str(config),
                "--command", "true", "--group", "*", "--syslog-socket", "/dev/null",
                "--haproxy-bin", haproxy_bin, "--min-wait", "0.02", "--max-wait", "0.2",
                "--certs-dir", str(tmp_path / "none")]
        with open(tmp_path / "servicerouter.log", "wb") as log_file:
            proc = subprocess.Popen(argv, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONPATH=str(root)))
        try:
            wait_until(lambda: emu.subscriptions == [callback], 15)
            wait_until(lambda: config.exists() and "127.0.0.1:31000" in config.read_text(), 15)
            fetches = sum(1 for _m, t in emu.request_log if t == APPS_FETCH)
            emu.add_task("/web", "127.0.0.1", [31001])
            wait_until(lambda: "127.0.0.1:31001" in config.read_text(), 15)
            assert sum(1 for _m, t in emu.request_log if t == APPS_FETCH) == fetches
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: sum(1 for _m, t in emu.request_log if t == APPS_FETCH)
                       == fetches + 1, 15)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert emu.subscriptions == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
