"""The live engine when HAProxy says no: quarantine by bisection, failed reloads, busy ports.

A rejected app is found by bisection and left out (or frozen at its last good
version); a failed reload restores the file and is retried (SIGHUP, periodic resync,
backoff); a busy port quarantines only its app. HAProxy is faked
(``tests/engine/live_rig.py``); ``haproxy -c`` is real.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.source.marathon import MarathonClient
from tests.engine.live_rig import (
    BAD_TEMPLATE,
    FakeReloader,
    app,
    reloaded_with,
    settled,
)
from tests.harness import wait_until


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
