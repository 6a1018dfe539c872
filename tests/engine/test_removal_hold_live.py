"""The live engine with --health-check after a Marathon leader change (marathon#3419).

Every task comes back without health results: the engine keeps the tasks its
running config routes (a new task still waits for its first healthy result).
Holds are turned off here, so only the health rule can keep the servers.
"""

from __future__ import annotations

from dataclasses import replace

from servicerouter.engine.holds import HoldSettings
from tests.engine.test_runner_live import Rig, rig_factory  # noqa: F401 - the rig fixture
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
