"""End to end: app updates of blue/green group members take the app path, no reload.

A real servicerouter follows the emulator and runs a real HAProxy.  The apps
/shop-blue and /shop-green share ``HAPROXY_DEPLOYMENT_GROUP`` (one backend under
blue's routes), green a 10% canary.  Updating green's share, relabelling blue's
virtual hosts and ending the canary (blue's task drains) are app updates of
one member each: every one must reach HAProxy through the Runtime API
while requests flow, none may reload, and none may take the full path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import LoadGenerator, RouterProcess, answer, http_port
from tests.engine.test_live_paths_e2e import settled
from tests.harness import Backend, free_port, wait_until

pytestmark = pytest.mark.e2e

CHECK = [{"protocol": "HTTP", "path": "/", "portIndex": 0}]


def test_group_member_updates_take_the_app_path_without_reload(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    blue, green = backend_factory("blue"), backend_factory("green")
    group_port, alt_port = free_port(), free_port()
    apps: dict[str, dict[str, Any]] = {}

    def put(colour: str, instances: int = 1, **labels: str) -> None:
        app = apps.setdefault(colour, {
            "id": f"/shop-{colour}", "instances": 1, "healthChecks": CHECK,
            "portDefinitions": [{"port": group_port if colour == "blue" else alt_port}],
            "labels": {"HAPROXY_DEPLOYMENT_GROUP": "shop", "HAPROXY_0_MODE": "http",
                       "HAPROXY_0_PORT": str(group_port), "HAPROXY_0_VHOST": "shop.test",
                       "HAPROXY_DEPLOYMENT_ALT_PORT": str(alt_port),
                       "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "2"}})
        app["instances"] = instances
        app["labels"].update(labels)
        emu.put_app(dict(app))

    def shares(port: int, host: str | None = None, count: int = 20) -> Counter[str]:
        return Counter(answer(port, host) for _ in range(count))

    with MarathonEmulator(keepalive_interval=1.0) as emu:
        put("blue", HAPROXY_DEPLOYMENT_STARTED_AT="2026-01-01T10:00:00")
        put("green", HAPROXY_DEPLOYMENT_STARTED_AT="2026-01-01T11:00:00",
            HAPROXY_DEPLOYMENT_NEW_INSTANCES="1", HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT="10")
        emu.add_task("/shop-blue", "127.0.0.1", [blue.port], healthy=True)
        emu.add_task("/shop-green", "127.0.0.1", [green.port], healthy=True)
        router = start_router(emu)
        front = http_port(router)
        # a 10% canary: weights 9 (blue) and 1 (green), round robin
        wait_until(lambda: shares(group_port) == Counter(blue=18, green=2), 20)
        before = settled(router)
        load = LoadGenerator([(group_port, None), (front, "shop.test")]).start()
        try:
            put("green", HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT="50")
            wait_until(lambda: shares(group_port) == Counter(blue=10, green=10), 15,
                       message="the new canary share is not in HAProxy")
            # the canary ends, green is a deployment of one instance: blue drains
            put("green", instances=2, HAPROXY_DEPLOYMENT_NEW_INSTANCES="0",
                HAPROXY_DEPLOYMENT_TARGET_INSTANCES="1")
            wait_until(lambda: shares(group_port) == Counter(green=20), 15,
                       message="blue still serves after green grew past its canary")
            # (while a canary runs, this would make blue the colour scaled last: the new one)
            put("blue", HAPROXY_0_VHOST="shop.test,shop2.test")
            wait_until(lambda: answer(front, "shop2.test") == "green", 15,
                       message="blue's new virtual host does not route to the group")
            assert shares(front, "shop.test") == Counter(green=20)
        finally:
            load.stop()
        assert load.sent > 0 and not load.failures, load.failures[:5]
        wait_until(lambda: router.status()["task_path_syncs"] - before["task_path_syncs"] >= 3,
                   15)
        after = router.status()
        assert after["reloads"] == before["reloads"], "a group member's update reloaded"
        assert after["failed_reloads"] == 0
        full = [line for line in router.log().splitlines() if " full path" in line
                and "shop" in line]
        assert not full, full
        assert after["last_sync_path"] == "task", after.get("last_full_path_reason")
