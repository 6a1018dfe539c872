"""The live engine (servicerouter.engine.live) against the Marathon emulator.

HAProxy itself is replaced by recording fakes here (the real thing is in
test_live_e2e.py); ``haproxy -c`` is real, so validation and quarantine are.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from servicerouter.apply.confdiff import RuntimePlan
from servicerouter.apply.managed import ReloadResult
from servicerouter.apply.runtime_api import RuntimeStats, RuntimeUpdateError
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.source.events import Backoff, EventStream
from servicerouter.source.marathon import ClientSettings, MarathonClient
from tests.harness import wait_until
from tests.paths import REPO

APPS_FETCH = "/v2/apps?embed=apps.tasks"


@dataclass
class FakeReloader:
    results: list[bool] = field(default_factory=list)
    calls: int = 0
    fail: bool = False
    # (text, message): a reload of a config holding that text fails once with the message
    refusals: list[tuple[str, str]] = field(default_factory=list)
    config: Path | None = None

    def reload(self) -> ReloadResult:
        self.calls += 1
        if self.refusals and self.config is not None:
            needle, message = self.refusals[0]
            if needle in self.config.read_text():
                self.refusals.pop(0)
                return ReloadResult(False, message)
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

    def applied(self) -> str:
        """The config the engine has applied (reload or Runtime API), not merely written.

        Waits use this: the file is written before the reload and before the counters
        move, so under load a test waiting for the file read them too early.
        """
        return self.live._applied_text or ""


def settled(rig: Rig, timeout: float = 10) -> None:
    """Wait until no sync runs and none is due (what a sync did is all done)."""
    live = rig.live

    def idle() -> bool:
        return (not live._sync_lock.locked() and live._pending.empty
                and live.trigger.due_at() is None)

    wait_until(lambda: idle() and (time.sleep(0.05) or idle()), timeout)


@pytest.fixture
def rig_factory(tmp_path: Path, haproxy_bin: str) -> Iterator[Callable[..., Rig]]:
    stops: list[Callable[[], None]] = []

    def make(apps: list[dict], templates: Path | None = None, stream: bool = True,
             bind_check: bool = False, **live_kw) -> Rig:
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
        reloader, runtime = FakeReloader(config=config), FakeRuntime()
        live_kw.setdefault("settings", LiveSettings(min_wait=0.02, max_wait=0.2,
                                                    backoff_base=0.05, backoff_cap=0.2))
        live = LiveRouter(router, reloader=reloader, runtime=runtime,  # type: ignore[arg-type]
                          rng_seed=1, **live_kw)
        if not bind_check:  # nothing binds here: ports others hold on this host are no matter
            live._leave_out_busy_ports = lambda s, t, o: (s, t)  # type: ignore[method-assign]
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


def reloaded_with(live: LiveRouter, needle: str) -> bool:
    """HAProxy was reloaded with a config holding ``needle``, not merely written.

    Waiting for the file alone raced under load: a test that made the next reload fail
    right then failed the reload still in flight, and "the last good config" was older.
    """
    return needle in (live._applied_text or "")


def test_task_events_apply_without_refetching_or_reloading(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001), app("/api", 10002)])
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31001])
    emu.add_task("/api", "127.0.0.1", [31002])
    wait_until(lambda: reloaded_with(live, "127.0.0.1:31001")
               and reloaded_with(live, "127.0.0.1:31002"), 10)
    settled(rig)
    reloads, fetches = rig.reloader.calls, rig.full_fetches()
    assert reloads >= 1  # the frontends appeared: a reload

    emu.add_task("/web", "127.0.0.1", [31003])
    wait_until(lambda: "127.0.0.1:31003" in rig.applied(), 10)
    task = next(t for t in emu.app("/web")["tasks"] if t["ports"] == [31001])
    emu.kill_task("/web", task["id"])
    # the outcome, not the file: the file is written before the counters move
    wait_until(lambda: "127.0.0.1:31001" not in rig.applied()
               and live.metrics.runtime_updates.total() >= 2
               and live.state.last_apply == "runtime", 10)

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
    wait_until(lambda: "31002" in rig.applied(), 10)
    settled(rig)
    reloads, fetches = rig.reloader.calls, rig.full_fetches()
    emu.put_app(app("/web", 10001, HAPROXY_0_VHOST="web.example.com"))
    wait_until(lambda: "web.example.com" in rig.applied(), 10)
    settled(rig)
    assert rig.reloader.calls == reloads + 1
    assert rig.full_fetches() == fetches
    assert any(t.startswith("/v2/apps/web?embed=app.tasks") for _m, t in emu.request_log)

    emu.remove_app("/api")
    wait_until(lambda: "api_10002" not in rig.applied(), 10)
    assert rig.full_fetches() == fetches


def test_a_burst_becomes_few_syncs(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)])
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: "31000" in rig.applied(), 10)
    syncs = live.state.syncs
    for port in range(31001, 31041):
        emu.add_task("/web", "127.0.0.1", [port])
    wait_until(lambda: "127.0.0.1:31040" in rig.applied(), 10)
    assert live.state.syncs - syncs <= 4
    assert sum(len(p.add) for p in rig.runtime.plans) == 40


def test_runtime_refusal_falls_back_to_reload(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)])
    rig.emulator.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: "31000" in rig.applied(), 10)
    settled(rig)
    reloads = rig.reloader.calls
    rig.runtime.refuse = True
    rig.emulator.add_task("/web", "127.0.0.1", [31001])
    wait_until(lambda: "31001" in rig.applied(), 10)
    settled(rig)
    assert rig.reloader.calls == reloads + 1


def test_outage_keeps_routing_reports_and_resyncs_once_back(rig_factory, caplog,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)
    caplog.set_level(logging.INFO, logger="servicerouter")
    rig = rig_factory([app("/web", 10001)], stream=False,
                      settings=LiveSettings(min_wait=0.02, max_wait=0.2, backoff_base=0.2,
                                            backoff_cap=0.4, resync_interval=3600))
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    live.request_resync("test")
    wait_until(lambda: "31000" in rig.applied(), 10)
    before = rig.text()
    emu.set_unavailable(True)
    live.request_resync("test")
    wait_until(lambda: live.outage is not None, 10)
    snapshot = live.snapshot()
    assert snapshot["marathon"]["available"] is False and "503" in snapshot["marathon"]["error"]
    assert live.metrics.marathon_up.value() == 0
    wait_until(lambda: live.outage is not None and live.outage.failures >= 2, 10)  # backoff retries
    assert rig.text() == before
    # one line for the outage, one for the retrying: not one per retry
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([m for m in said if m.startswith("Marathon unavailable")]) == 1
    assert len([m for m in said if m.startswith("retrying Marathon in")]) == 1
    emu.set_unavailable(False, status=503)
    wait_until(lambda: live.outage is None, 10)
    assert live.snapshot()["marathon"]["available"] is True
    assert live.metrics.marathon_errors.total() >= 2


def test_garbage_from_marathon_is_an_outage_not_a_crash(rig_factory, monkeypatch) -> None:
    rig = rig_factory([app("/web", 10001)], stream=False)
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    live.request_resync("test")
    wait_until(lambda: "31000" in rig.applied(), 10)
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
    wait_until(lambda: "127.0.0.1:31015" in rig.applied(), 10)

    validations = live.metrics.validations.total()
    emu.put_app(app("/bad", 10200, EXTRA="no-such-directive here"))
    emu.add_task("/bad", "127.0.0.1", [32000])
    emu.put_app(app("/app03", 10103, EXTRA="timeout server 5s"))  # a good change, same burst
    wait_until(lambda: live.quarantine, 10)
    wait_until(lambda: "timeout server 5s" in rig.applied(), 10)
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
    wait_until(lambda: "bad_10200" in rig.applied(), 10)
    assert list(live.quarantine) == ["/app05"]
    assert live.metrics.quarantined.value() == 1


def test_a_failed_reload_restores_the_file_and_is_retried_on_sighup(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)],
                      settings=LiveSettings(min_wait=0.02, max_wait=0.2, backoff_base=60,
                                            backoff_cap=120))  # no timer retry in this test
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: reloaded_with(live, "31000"), 10)
    good = rig.text()
    rig.reloader.fail = True
    emu.put_app(app("/web", 10001, HAPROXY_0_VHOST="web.example.com"))
    wait_until(lambda: live.state.last_apply == "failed", 10)
    assert rig.text() == good  # a watchdog restart would load the config HAProxy runs
    settled(rig)
    calls = rig.reloader.calls
    rig.reloader.fail = False
    emu.add_task("/web", "127.0.0.1", [31001])  # an event alone does not retry it
    wait_until(lambda: live.metrics.syncs.total() >= 1 and "31001" not in rig.applied(), 10)
    live.resync_from_signal()
    # durable outcomes only: last_apply == "reload" lasts until the next sync, which may
    # follow at once (the 31001 event) and say "unchanged"
    wait_until(lambda: reloaded_with(live, "web.example.com") and rig.reloader.calls > calls,
               10)
    assert "127.0.0.1:31001" in rig.text() and "web.example.com" in rig.text()


def test_a_failed_reload_is_retried_at_the_periodic_resync(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)], stream=False,
                      settings=LiveSettings(min_wait=0.02, max_wait=0.2, resync_interval=1.0,
                                            backoff_base=60, backoff_cap=120))
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    live.request_resync("test")
    wait_until(lambda: reloaded_with(live, "31000"), 10)
    rig.reloader.fail = True
    emu.put_app(app("/web", 10001, HAPROXY_0_VHOST="web.example.com"))
    live.request_resync("test")
    wait_until(lambda: live.state.last_apply == "failed", 10)
    rig.reloader.fail = False
    wait_until(lambda: reloaded_with(live, "web.example.com"), 10)


def test_a_failed_reload_is_retried_with_backoff(rig_factory) -> None:
    rig = rig_factory([app("/web", 10001)])
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: reloaded_with(live, "31000"), 10)
    rig.reloader.fail = True
    emu.put_app(app("/web", 10001, HAPROXY_0_VHOST="web.example.com"))
    wait_until(lambda: rig.reloader.calls >= 3 and live.state.last_apply == "failed", 10)
    assert "web.example.com" not in rig.text()
    rig.reloader.fail = False  # no event, no signal: the backoff timer retries
    wait_until(lambda: reloaded_with(live, "web.example.com"), 10)


@pytest.fixture
def held_port() -> Iterator[tuple[int, Callable[[], None]]]:
    """A port another process (this one) listens on: (port, release)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1], sock.close
    sock.close()


def test_a_busy_port_named_by_haproxy_quarantines_only_its_app(rig_factory, held_port) -> None:
    port, release = held_port
    # HAProxy's own word, not our pre-check (off in the rig): the port was free a moment
    # before the reload
    rig = rig_factory([app("/web", 10001)])
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: "31000" in rig.applied(), 10)
    rig.reloader.refusals.append((f"frontend clash_{port}", (
        "HAProxy refused the new config: [ALERT]    (1) : Binding [<config>:40] for frontend "
        f"clash_{port}: cannot bind socket (Address already in use) for [127.0.0.1:{port}] | "
        "[ALERT]    (1) : [haproxy.main()] Some protocols failed to start their listeners!")))
    emu.put_app(app("/clash", port))
    emu.add_task("/clash", "127.0.0.1", [31002])
    wait_until(lambda: "/clash" in live.quarantine, 10)
    wait_until(lambda: live.state.last_apply == "unchanged", 10)  # the rest: what runs
    emu.put_app(app("/web", 10001, HAPROXY_0_VHOST="web.example.com"))  # others still apply
    wait_until(lambda: "web.example.com" in rig.applied(), 10)
    assert f"clash_{port}" not in rig.text()
    entry = live.snapshot()["quarantined"][0]
    assert entry["app"] == "/clash" and "Address already in use" in entry["reason"]
    assert live.metrics.quarantined.value() == 1
    release()  # the port is free again: polled, then retried without any event
    wait_until(lambda: f"clash_{port}" in rig.applied() and not live.quarantine, 10)


def test_a_new_frontend_on_a_busy_port_is_left_out_before_reloading(
        rig_factory, held_port) -> None:
    port, release = held_port
    rig = rig_factory([app("/web", 10001)], bind_check=True)
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31000])
    wait_until(lambda: "31000" in rig.applied(), 10)
    emu.put_app(app("/clash", port))
    emu.add_task("/clash", "127.0.0.1", [31002])
    emu.put_app(app("/web", 10001, HAPROXY_0_VHOST="web.example.com"))
    wait_until(lambda: "/clash" in live.quarantine and "web.example.com" in rig.applied(), 10)
    assert f"clash_{port}" not in rig.text()
    assert live.metrics.reloads.value(result="failed") == 0  # found before any reload
    release()
    wait_until(lambda: f"clash_{port}" in rig.applied() and not live.quarantine, 10)


def test_a_frozen_app_keeps_its_current_servers(rig_factory, tmp_path: Path) -> None:
    """Quarantine freezes routing, not servers: Runtime API changes before and after count."""
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "HAPROXY_BACKEND_HEAD.j2").write_text(BAD_TEMPLATE)
    rig = rig_factory([app("/web", 10001)], templates=templates)
    emu, live = rig.emulator, rig.live
    first = emu.add_task("/web", "127.0.0.1", [31000])["id"]
    wait_until(lambda: "127.0.0.1:31000" in rig.applied(), 10)
    settled(rig)
    reloads = rig.reloader.calls
    second = emu.add_task("/web", "127.0.0.1", [31001])["id"]
    emu.kill_task("/web", first)
    wait_until(lambda: "127.0.0.1:31000" not in rig.applied() and "31001" in rig.applied(), 10)
    assert rig.reloader.calls == reloads  # scaled through the Runtime API

    emu.put_app(app("/web", 10001, EXTRA="bogus-keyword"))
    wait_until(lambda: "/web" in live.quarantine, 10)
    text = rig.text()
    assert "127.0.0.1:31001" in text and "127.0.0.1:31000" not in text
    assert "bogus-keyword" not in text

    emu.add_task("/web", "127.0.0.1", [31002])  # Marathon moves on while it is quarantined
    emu.kill_task("/web", second)
    wait_until(lambda: "127.0.0.1:31002" in rig.applied() and "31001" not in rig.applied(), 10)
    assert "/web" in live.quarantine and "bogus-keyword" not in rig.text()


def test_default_state_dir_never_shadows_the_package(tmp_path: Path) -> None:

    from servicerouter.engine.runner import default_state_dir

    config = tmp_path / "haproxy.cfg"
    assert default_state_dir(str(config)) == str(tmp_path / ".servicerouter")
    legacy = tmp_path / "servicerouter"  # an older build's state: used as it is
    legacy.mkdir()
    (legacy / "ip-per-task-ports.json").write_text("{}")
    assert default_state_dir(str(config)) == str(legacy)
    assert (legacy / "ip-per-task-ports.json").read_text() == "{}"  # nothing moved
    (tmp_path / ".servicerouter").mkdir()  # the new one, once there, wins
    assert default_state_dir(str(config)) == str(tmp_path / ".servicerouter")
    other = tmp_path / "other"
    (other / "servicerouter").mkdir(parents=True)  # not state (no state files): left alone
    assert default_state_dir(str(other / "h.cfg")) == str(other / ".servicerouter")
    assert (other / "servicerouter").is_dir()


def test_python_m_servicerouter_starts_twice_beside_its_config(tmp_path: Path,
                                                               haproxy_bin: str) -> None:
    """The state directory beside the config must not shadow the package (cwd is on sys.path)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    root = REPO
    probe = subprocess.run([sys.executable, "-c", "import servicerouter.cli.main"], cwd=tmp_path,
                           env=env, capture_output=True, check=False)
    if probe.returncode != 0:  # not installed: run it from the checkout instead
        env["PYTHONPATH"] = str(root)
    with MarathonEmulator() as emu:
        emu.put_app(app("/web", 10001))
        emu.add_task("/web", "127.0.0.1", [31000])
        argv = [sys.executable, "-m", "servicerouter", "-m", emu.url,
                "--haproxy-config", "haproxy.cfg", "--command", "true", "--group", "*",
                "--syslog-socket", "/dev/null", "--haproxy-bin", haproxy_bin,
                "--certs-dir", str(tmp_path / "none")]
        for run in range(2):
            proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=60, check=False)
            assert proc.returncode == 0, (run, proc.stderr[-2000:])
    assert (tmp_path / ".servicerouter" / "default.pem").exists()
    assert not (tmp_path / "servicerouter").exists()


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

    root = REPO
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


# --------------------------------------------------------------------------- callbacks


@pytest.fixture
def callbacks(rig_factory) -> Iterator[Callable[..., tuple[Rig, str]]]:
    """``make(token)`` -> a rig whose events come only from a real callback server
    (``_start_callbacks``, as --listening wires it) on 127.0.0.1, and its URL."""
    from servicerouter.engine.live import LiveOptions, _start_callbacks
    from tests.harness import free_port

    cleanups: list[Callable[[], None]] = []

    def make(token: str | None = None) -> tuple[Rig, str]:
        rig = rig_factory([app("/web", 10001)], stream=False,
                          settings=LiveSettings(min_wait=0.02, max_wait=0.2,
                                                resync_interval=3600))
        rig.emulator.add_task("/web", "127.0.0.1", [31000])
        rig.live.request_resync("test")
        wait_until(lambda: "127.0.0.1:31000" in rig.applied(), 10)
        url = f"http://127.0.0.1:{free_port()}/" + (f"?token={token}" if token else "")
        _start_callbacks(rig.live, rig.live.source,
                         LiveOptions(mode="listening", callback_url=url,
                                     listen_addr="127.0.0.1"), cleanups)
        wait_until(lambda: rig.emulator.subscriptions == [url], 10)
        return rig, url

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


def _post(url: str, event: dict) -> int:
    import requests

    return requests.post(url, json=event, timeout=10).status_code


def _app_fetches(rig: Rig) -> int:
    return sum(1 for _m, t in rig.emulator.request_log if t.startswith("/v2/apps/web?"))


def test_forged_callback_events_cannot_add_or_remove_servers(callbacks) -> None:
    """No token: a forged event only makes the router ask Marathon about the app it names."""
    rig, url = callbacks()
    live = rig.live
    task = rig.emulator.app("/web")["tasks"][0]["id"]
    forged = [
        {"eventType": "status_update_event", "appId": "/web", "taskId": "x",
         "taskStatus": "TASK_RUNNING", "host": "6.6.6.6", "ports": [4444]},
        {"eventType": "status_update_event", "appId": "/web", "taskId": task,
         "taskStatus": "TASK_KILLED", "host": "127.0.0.1", "ports": [31000]},
        {"eventType": "app_terminated_event", "appId": "/web"},
        {"eventType": "health_status_changed_event", "appId": "/web", "taskId": task,
         "alive": False},
    ]
    for event in forged:
        fetches, syncs = _app_fetches(rig), live.state.syncs
        assert _post(url, event) == 200
        wait_until(lambda f=fetches, n=syncs: _app_fetches(rig) > f and live.state.syncs > n,
                   10)
        text = rig.text()
        assert "6.6.6.6" not in text and "6_6_6_6" not in text
        assert "127.0.0.1:31000" in text and "web_10001" in text
    # An app id that is not a plain Marathon path never reaches a request: a full resync.
    full = rig.full_fetches()
    assert _post(url, dict(forged[0], appId="/../v2/eventSubscriptions")) == 200
    wait_until(lambda: rig.full_fetches() > full, 10)
    assert not any("eventSubscriptions" in t and m == "GET" for m, t in rig.emulator.request_log)
    # Marathon's own events through the same callback still keep routing current.
    rig.emulator.add_task("/web", "127.0.0.1", [31001])
    wait_until(lambda: "127.0.0.1:31001" in rig.applied(), 10)
    assert "6.6.6.6" not in rig.text()


def test_many_hinted_apps_become_one_full_fetch(rig_factory) -> None:
    from servicerouter.engine.live import MAX_HINT_REFETCH

    live = rig_factory([app("/web", 10001)], stream=False).live
    live.trigger.stop()  # hold the loop: look at what the burst queued
    for i in range(MAX_HINT_REFETCH + 5):
        live.submit({"eventType": "status_update_event", "appId": f"/x{i}", "taskId": "t",
                     "taskStatus": "TASK_RUNNING", "host": "6.6.6.6", "ports": [1]},
                    trusted=False)
    pending = live._take_pending()
    assert pending.full and len(pending.refetch) <= MAX_HINT_REFETCH
    assert not pending.task_events


def test_tokened_callback_events_are_applied_incrementally(callbacks, caplog,
                                                          monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)
    caplog.set_level(logging.INFO, logger="servicerouter")
    rig, url = callbacks(token="Tok3n-s3cret")
    assert _post(url.split("?")[0], {"eventType": "status_update_event", "appId": "/web",
                                     "taskId": "x", "taskStatus": "TASK_RUNNING",
                                     "host": "6.6.6.6", "ports": [4444]}) == 403
    fetches, full = _app_fetches(rig), rig.full_fetches()
    rig.emulator.add_task("/web", "127.0.0.1", [31001])
    wait_until(lambda: "127.0.0.1:31001" in rig.applied(), 10)
    assert _app_fetches(rig) == fetches and rig.full_fetches() == full  # folded in, no fetch
    assert "6.6.6.6" not in rig.text()
    assert "Tok3n-s3cret" not in caplog.text and "token=***" in caplog.text



def test_a_failed_first_reload_removes_the_new_file(tmp_path: Path, haproxy_bin: str) -> None:
    """No config when servicerouter started: the refused one is removed, not left to look
    like the running config to the next start; a retry writes and reloads it."""
    with MarathonEmulator() as emu:
        emu.put_app(app("/web", 10001))
        emu.add_task("/web", "127.0.0.1", [31000])
        config = tmp_path / "h.cfg"
        settings = RouterSettings(config_path=str(config), groups=("*",),
                                  haproxy_bin=haproxy_bin, state_dir=str(tmp_path / "s"),
                                  render_options=RenderOptions(bind_addr="127.0.0.1"),
                                  certs_dir=None)
        reloader = FakeReloader(fail=True)
        live = LiveRouter(Router(MarathonClient([emu.url]), load_fragments([]), settings),
                          reloader=reloader,
                          settings=LiveSettings(backoff_base=60, backoff_cap=120))
        try:
            live.request_resync("test")
            assert not live.step()
            assert live.state.last_apply == "failed" and not config.exists()
            reloader.fail = False
            live.resync_from_signal()
            assert live.step()
            assert live.state.last_apply == "reload" and "127.0.0.1:31000" in config.read_text()
        finally:
            live.stop()


def test_command_reloader_reports_the_commands_output() -> None:
    """HAProxy's words reach the log and the bind-failure parser (a busy port's app)."""
    from servicerouter.engine.live import CommandReloader

    result = CommandReloader(["sh", "-c", "echo 'cannot bind socket [0.0.0.0:81]' >&2; exit 1"]
                             ).reload()
    assert not result.ok and "cannot bind socket [0.0.0.0:81]" in result.message
    assert CommandReloader(["true"]).reload().ok
