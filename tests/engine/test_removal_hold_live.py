"""The live engine with --health-check after a Marathon leader change (marathon#3419).

Every task comes back without health results: the engine keeps the tasks its
running config routes (a new task still waits for its first healthy result).
Holds are turned off here, so only the health rule can keep the servers.
"""

from __future__ import annotations

from dataclasses import replace

from servicerouter.engine.holds import HoldSettings
from servicerouter.engine.live import LiveSettings
from tests.engine.live_rig import Rig, rig_factory  # noqa: F401 - the rig fixture
from tests.harness import wait_until

CHECKED = {"id": "/web", "portDefinitions": [{"port": 10001}], "labels": {},
           "healthChecks": [{"protocol": "TCP", "portIndex": 0}]}


def health_check_rig(rig_factory) -> Rig:  # noqa: F811 - the fixture
    rig = rig_factory([CHECKED])
    router = rig.live.router
    router.settings = replace(router.settings, health_check=True)
    router.removal_guard.settings = HoldSettings(fetches=0)  # holds off: health rule only
    return rig


def test_unknown_health_after_a_leader_change_keeps_routed_tasks(rig_factory) -> None:  # noqa: F811
    rig = health_check_rig(rig_factory)
    emu, live = rig.emulator, rig.live
    first = emu.add_task("/web", "127.0.0.1", [31001], healthy=True)
    second = emu.add_task("/web", "127.0.0.1", [31002], healthy=True)
    wait_until(lambda: "127.0.0.1:31001" in rig.text() and "127.0.0.1:31002" in rig.text(), 10)

    # the new leader knows the tasks but has no health results yet; a third task started
    unknown = [{k: v for k, v in t.items() if k != "healthCheckResults"}
               for t in (first, second)]
    emu.set_tasks("/web", [*unknown, {"id": "web.new", "host": "127.0.0.1",
                                      "ports": [31003]}], quiet=True)
    syncs = live.state.syncs
    live.request_resync("leader change")
    wait_until(lambda: live.state.syncs > syncs, 10)
    text = rig.text()
    assert "127.0.0.1:31001" in text and "127.0.0.1:31002" in text
    assert "127.0.0.1:31003" not in text  # not routed until healthy, as before

    emu.set_task_health("/web", "web.new", True)
    wait_until(lambda: "127.0.0.1:31003" in rig.text(), 10)
    emu.set_task_health("/web", first["id"], False)  # a verdict, not unknown: it goes
    wait_until(lambda: "127.0.0.1:31001" not in rig.text(), 10)


def test_a_removal_seen_only_through_events_waits_for_a_full_fetch(
        rig_factory, caplog) -> None:  # noqa: F811
    """Apps deleted: the event-built sync holds; only a fresh full fetch applies it."""
    rig = rig_factory([{"id": f"/a{i}", "portDefinitions": [{"port": 10010 + i}],
                        "labels": {}} for i in range(4)],
                      settings=LiveSettings(min_wait=0.3, max_wait=1.0,  # one sync for all
                                            backoff_base=0.05, backoff_cap=0.2))
    emu, live = rig.emulator, rig.live
    for i in range(4):
        emu.add_task(f"/a{i}", "127.0.0.1", [31010 + i])
    wait_until(lambda: all(f"127.0.0.1:{31010 + i}" in rig.text() for i in range(4)), 10)
    # Any removal of one of the four backends (25%) holds, however the three deletion
    # events are grouped into syncs (the first one after a quiet period is applied at
    # once); applied by the first full fetch that sees it (no minimum time).
    live.router.removal_guard.settings = HoldSettings(0.2, 1, 0.0)
    caplog.set_level("INFO", "servicerouter")
    fetches = rig.full_fetches()
    for i in (1, 2, 3):
        emu.remove_app(f"/a{i}")
    wait_until(lambda: "a3_10013" not in rig.text(), 10, message="never applied")
    held = [r.getMessage() for r in caplog.records if "removal held" in r.getMessage()]
    assert held and "(seen 0 over" in held[0]  # the event-built sync held it
    assert rig.full_fetches() > fetches  # and a full fetch applied it
    assert "persisted for 1 syncs" in caplog.text
