"""The live engine (servicerouter.engine.live) against the Marathon emulator: events.

HAProxy itself is replaced by recording fakes here (``tests/engine/live_rig.py``; the
real thing is in test_live_e2e.py); ``haproxy -c`` is real. Task events go through
the Runtime API, app events refetch one app, bursts coalesce, outages and garbage
from Marathon keep routing. Failures are in test_live_failures.py, callbacks in
test_live_callbacks.py, the process-level runs in test_live_process.py.
"""

from __future__ import annotations

import logging

from servicerouter.engine.live import LiveSettings
from tests.engine.live_rig import (
    app,
    reloaded_with,
    settled,
)
from tests.harness import wait_until


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
